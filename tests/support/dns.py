"""An authoritative DNS server (Knot DNS, Debian package ``knot``) serving
test zones on a loopback address, so mxg resolves MX records for real."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_udp_tcp_port(host: str = "127.0.0.1") -> int:
    for _ in range(50):
        port = free_port(host)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port")


class _DnsDaemon:
    """A DNS daemon run in the foreground, its output in ``<name>.log``."""

    name = "dns"
    workdir: Path
    address: str
    port: int
    proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: list[str]) -> None:
        self.log = open(self.workdir / f"{self.name}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)

    def _wait_answers(self, zone: str) -> None:
        deadline = time.monotonic() + 15
        q = dns.message.make_query(zone, dns.rdatatype.SOA)
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                log = (self.workdir / f"{self.name}.log").read_text()
                raise RuntimeError(f"{self.name} exited: {log}")
            try:
                if dns.query.udp(q, self.address, port=self.port, timeout=0.5).answer:
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer in time")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None
            self.log.close()


class KnotServer(_DnsDaemon):
    """Runs knotd with the given zones: ``{"example.test": ["@ MX 10 mx1", ...]}``.

    Zones named in ``signed`` are DNSSEC-signed by Knot itself (ECDSA P-256,
    keys made at start); :meth:`ksk` gives their key-signing key for a
    validating resolver's trust anchor.
    """

    name = "knot"

    def __init__(
        self,
        workdir: Path,
        zones: Mapping[str, Sequence[str]],
        address: str = "127.0.0.1",
        signed: Sequence[str] = (),
    ) -> None:
        self.workdir = workdir
        self.address = address
        self.port = free_udp_tcp_port(address)
        self.zones = zones
        self.signed = set(signed)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> KnotServer:
        knotd = shutil.which("knotd") or "/usr/sbin/knotd"
        for sub in ("zones", "db", "run", "keys"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        conf = [
            "server:",
            f'    rundir: "{self.workdir / "run"}"',
            f"    listen: {self.address}@{self.port}",
            "database:",
            f'    storage: "{self.workdir / "db"}"',
            "log:",
            "  - target: stderr",
            "    any: warning",
            "keystore:",
            "  - id: default",
            "    backend: pem",
            f'    config: "{self.workdir / "keys"}"',
            "policy:",
            "  - id: test",
            "    algorithm: ecdsap256sha256",
            "    ksk-lifetime: 0",
            "    zsk-lifetime: 0",
            "template:",
            "  - id: default",
            f'    storage: "{self.workdir / "zones"}"',
            '    file: "%s.zone"',
            "zone:",
        ]
        for name, records in self.zones.items():
            conf.append(f"  - domain: {name}")
            if name in self.signed:
                conf += ["    dnssec-signing: on", "    dnssec-policy: test"]
            self._write_zone(name, records, serial=1)
        (self.workdir / "knot.conf").write_text("\n".join(conf) + "\n")
        self._spawn([knotd, "-c", str(self.workdir / "knot.conf")])
        self._wait_answers(next(iter(self.zones)))
        for signed_zone in self.signed:
            self.ksk(signed_zone)
        return self

    def _write_zone(self, name: str, records: Sequence[str], serial: int) -> None:
        zone = [
            f"$ORIGIN {name}.",
            "$TTL 30",
            f"@ IN SOA ns.{name}. hostmaster.{name}. {serial} 60 60 600 30",
            f"@ IN NS ns.{name}.",
            f"ns IN A {self.address}",
            *records,
        ]
        (self.workdir / "zones" / f"{name}.zone").write_text("\n".join(zone) + "\n")

    def replace_zone(self, name: str, records: Sequence[str], serial: int) -> None:
        """Publishes new contents for a served zone, as an operator edits a
        zone file and reloads: Knot re-signs a signed zone. `serial` must
        exceed the last one, or Knot keeps the old contents."""
        self._write_zone(name, records, serial)
        knotc = shutil.which("knotc") or "/usr/sbin/knotc"
        subprocess.run(
            [knotc, "-c", str(self.workdir / "knot.conf"), "zone-reload", name],
            check=True,
            capture_output=True,
        )
        deadline = time.monotonic() + 15
        q = dns.message.make_query(name, dns.rdatatype.SOA)
        while time.monotonic() < deadline:
            try:
                answer = dns.query.udp(q, self.address, port=self.port, timeout=0.5).answer
            except Exception:
                answer = []
            if any(rr.rdtype == dns.rdatatype.SOA and rr[0].serial >= serial for rr in answer):
                return
            time.sleep(0.1)
        raise RuntimeError(f"knotd did not load serial {serial} of {name} in time")

    def ksk(self, zone: str) -> str:
        """The zone's key-signing DNSKEY as zone-file text, once Knot signs."""
        q = dns.message.make_query(zone, dns.rdatatype.DNSKEY, want_dnssec=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                r = dns.query.udp(q, self.address, port=self.port, timeout=0.5)
            except Exception:
                r = None
            for rrset in r.answer if r else []:
                for key in rrset:
                    if rrset.rdtype == dns.rdatatype.DNSKEY and key.flags == 257:
                        return f"{zone}. DNSKEY {key.to_text()}"
            time.sleep(0.1)
        raise RuntimeError(f"knotd did not sign {zone} in time")


class UnboundServer(_DnsDaemon):
    """A recursive resolver (Unbound) in front of the test zones, as an
    operator's host would have: mxg talks to it, it asks Knot."""

    name = "unbound"

    def __init__(
        self,
        workdir: Path,
        knot: KnotServer,
        address: str = "127.0.0.1",
        trust_anchors: Sequence[str] = (),
        system_address: str | None = None,
    ) -> None:
        """``trust_anchors``: DNSKEY records (zone-file text) Unbound
        validates with; without any, it only resolves. ``system_address``:
        also listen there on port 53, for tools that only use the system
        resolver (resolv.conf cannot name a port), e.g. posttls-finger."""
        self.trust_anchors = list(trust_anchors)
        self.system_address = system_address
        self.workdir = workdir
        self.knot = knot
        self.address = address
        self.port = free_udp_tcp_port(address)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> UnboundServer:
        unbound = shutil.which("unbound") or "/usr/sbin/unbound"
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = [
            "server:",
            f"    interface: {self.address}@{self.port}",
            *([f"    interface: {self.system_address}@53"] if self.system_address else []),
            f"    port: {self.port}",
            '    username: ""',
            '    chroot: ""',
            f'    directory: "{self.workdir}"',
            f'    pidfile: "{self.workdir / "unbound.pid"}"',
            "    use-syslog: no",
            '    logfile: ""',
            "    verbosity: 1",
            "    do-daemonize: no",
            "    do-not-query-localhost: no",
            "    access-control: 127.0.0.0/8 allow",
            '    module-config: "validator iterator"'
            if self.trust_anchors
            else '    module-config: "iterator"',
            "    cache-max-ttl: 30",
            "    cache-max-negative-ttl: 5",
            "    qname-minimisation: no",
            # RFC 6761 reserves .test; Unbound answers it locally unless told not to.
            '    local-zone: "test." nodefault',
            # Test zones are islands of trust with short-lived keys.
            "    val-permissive-mode: no",
            *(f'    trust-anchor: "{anchor}"' for anchor in self.trust_anchors),
        ]
        for zone in self.knot.zones:
            conf += [
                "stub-zone:",
                f'    name: "{zone}"',
                f"    stub-addr: {self.knot.address}@{self.knot.port}",
            ]
        # unbound-control over a local socket (no certificates), for
        # tests that change a zone and must not wait out the cache.
        conf += [
            "remote-control:",
            "    control-enable: yes",
            f'    control-interface: "{self.workdir / "control.sock"}"',
            "    control-use-cert: no",
        ]
        path = self.workdir / "unbound.conf"
        path.write_text("\n".join(conf) + "\n")
        self._spawn([unbound, "-d", "-c", str(path)])
        self._wait_answers(next(iter(self.knot.zones)))
        return self

    def flush(self, zone: str) -> None:
        """Drops everything cached at and below `zone`, as an operator does
        after changing it, so the next answer comes from Knot."""
        control = shutil.which("unbound-control") or "/usr/sbin/unbound-control"
        subprocess.run(
            [control, "-c", str(self.workdir / "unbound.conf"), "flush_zone", zone],
            check=True,
            capture_output=True,
        )
