"""The e2e test world: Knot DNS with test zones, receiving servers on their
own loopback addresses, and mxg started as a process."""

from __future__ import annotations

import ssl
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.certs import ca_signed, expired_self_signed, self_signed, spki_sha256
from tests.support.dns import KnotServer, UnboundServer, free_port
from tests.support.https import PolicyServer
from tests.support.mxgproc import MxgProcess
from tests.support.postgres import RELAY_ROLE, Postgres
from tests.support.sinks import Sink

SINK_PORT = free_port("127.0.0.1")
# The test world's resolver on port 53 as well, for posttls-finger, which
# resolves through resolv.conf (tests/e2e/test_posttls_finger.py).
SYSTEM_RESOLVER = "127.0.0.153"
# TLSA owner prefix: mxg and Postfix look TLSA up for the port they
# deliver to (RFC 6698 3), the test world's receivers listen on SINK_PORT.
TLSA = f"_{SINK_PORT}._tcp"

ZONES = {
    "good.test": ["@ MX 10 mx1", "@ MX 20 mx2", "mx1 A 127.0.0.11", "mx2 A 127.0.0.12"],
    "slow.test": ["@ MX 10 mx", "mx A 127.0.0.13"],
    "bad.test": ["@ MX 10 mx", "mx A 127.0.0.14"],
    "sender.test": ["@ MX 10 mx", "mx A 127.0.0.15"],
    "nullmx.test": ["@ MX 0 ."],
    "implicit.test": ["@ A 127.0.0.16"],
    "alias.test": ["@ MX 10 mail", "mail CNAME mx1.good.test."],
    # A real Postfix receives for this domain (tests/e2e/test_postfix.py).
    "postfix.test": ["@ MX 10 mx", "mx A 127.0.0.1"],
    # DNSSEC: a signed zone, a signed zone whose MX host lives in an
    # unsigned one, and a signed zone Unbound holds a wrong key for (bogus).
    "secure.test": ["@ MX 10 mx", "mx A 127.0.0.11"],
    "mixed.test": ["@ MX 10 mx1.good.test."],
    "bogus.test": ["@ MX 10 mx", "mx A 127.0.0.11"],
    # MTA-STS (RFC 8461): policies served by tests/support/https.py.
    "sts.test": [
        "@ MX 10 mx",
        "mx A 127.0.0.21",
        '_mta-sts TXT "v=STSv1; id=1"',
        "mta-sts A 127.0.0.20",
    ],
    "stsbad.test": [
        "@ MX 10 mx",
        "mx A 127.0.0.19",
        '_mta-sts TXT "v=STSv1; id=1"',
        "mta-sts A 127.0.0.20",
    ],
    "stsnomatch.test": [
        "@ MX 10 mx",
        "mx A 127.0.0.21",
        '_mta-sts TXT "v=STSv1; id=1"',
        "mta-sts A 127.0.0.20",
    ],
    "ststesting.test": [
        "@ MX 10 mx",
        "mx A 127.0.0.19",
        '_mta-sts TXT "v=STSv1; id=1"',
        "mta-sts A 127.0.0.20",
    ],
    # A server that speaks only TLS 1.0/1.1, one with RSA key exchange only.
    "tls10.test": ["@ MX 10 mx", "mx A 127.0.0.32"],
    "rsakx.test": ["@ MX 10 mx", "mx A 127.0.0.33"],
    # MTA-STS enforce, the MX presents a self-signed certificate for its name.
    "stsself.test": [
        "@ MX 10 mx",
        "mx A 127.0.0.34",
        '_mta-sts TXT "v=STSv1; id=1"',
        "mta-sts A 127.0.0.20",
    ],
    # Nothing listens on the IPv4 address; the IPv6 one answers.
    "v6.test": ["@ MX 10 mx", "mx A 127.0.0.29", "mx AAAA ::1"],
}


SIGNED = (
    "secure.test",
    "mixed.test",
    "bogus.test",
    "dane.test",
    "danebad.test",
    "danenotls.test",
    "notlsa.test",
    "pkix.test",
    "pkixwrong.test",
    "daneta.test",
    "danetawrong.test",
    "daneexpired.test",
    "danetwo.test",
    "danecname.test",
    "danecname2.test",
)


@pytest.fixture(scope="session")
def dane_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Certificate of the DANE receiving server (127.0.0.17): its name does
    not even match, DANE-EE authenticates by key alone (RFC 7672 3.1.1)."""
    return self_signed(tmp_path_factory.mktemp("dane"), "unrelated.example")


@pytest.fixture(scope="session")
def odd_certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Certificates of the odd servers: one expired in 2020 (127.0.0.31,
    DANE-EE must still pass), an RSA one for the RSA-key-exchange server,
    a self-signed one with the right name for MTA-STS enforce."""
    d = tmp_path_factory.mktemp("odd")
    return {
        "expired": expired_self_signed(d / "expired", "mx.daneexpired.test"),
        "rsa": self_signed(d / "rsa", "mx.rsakx.test", key_type="rsa"),
        "tls10": self_signed(d / "tls10", "mx.tls10.test"),
        "stsself": self_signed(d / "stsself", "mx.stsself.test"),
    }


@pytest.fixture(scope="session")
def pkix_certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A private CA with certificates for mx.pkix.test and other.example."""
    d = tmp_path_factory.mktemp("pkix")
    ca, good_chain, good_key = ca_signed(d, "mxg test CA", ["mx.pkix.test", "mx.daneta.test"])
    _, wrong_chain, wrong_key = ca_signed(d, "mxg test CA", ["other.example"])
    _, sts_chain, sts_key = ca_signed(d, "mxg test CA", ["mx.sts.test", "mx.stsnomatch.test"])
    policy_hosts = [
        f"mta-sts.{z}"
        for z in ("sts.test", "stsbad.test", "stsnomatch.test", "ststesting.test", "stsself.test")
    ]
    _, web_chain, web_key = ca_signed(d, "mxg test CA", policy_hosts)
    return {
        "ca": ca,
        "good_chain": good_chain,
        "good_key": good_key,
        "wrong_chain": wrong_chain,
        "wrong_key": wrong_key,
        "sts_chain": sts_chain,
        "sts_key": sts_key,
        "web_chain": web_chain,
        "web_key": web_key,
    }


@pytest.fixture(scope="session")
def dns_server(
    tmp_path_factory: pytest.TempPathFactory,
    dane_cert: tuple[Path, Path],
    pkix_certs: dict[str, Path],
    odd_certs: dict[str, tuple[Path, Path]],
) -> Iterator[UnboundServer]:
    """The resolver mxg uses: Unbound, recursing into the Knot-served zones."""
    key_hash = spki_sha256(dane_cert[0])
    expired_hash = spki_sha256(odd_certs["expired"][0])
    zones = {
        **ZONES,
        # DANE-EE that matches; one that matches nothing; TLSA but no STARTTLS.
        "dane.test": ["@ MX 10 mx", "mx A 127.0.0.17", f"{TLSA}.mx TLSA 3 1 1 {key_hash}"],
        "danebad.test": ["@ MX 10 mx", "mx A 127.0.0.17", f"{TLSA}.mx TLSA 3 1 1 {'0' * 64}"],
        "danenotls.test": ["@ MX 10 mx", "mx A 127.0.0.11", f"{TLSA}.mx TLSA 3 1 1 {key_hash}"],
        # DANE-EE with a certificate that expired in 2020 (must pass).
        "daneexpired.test": [
            "@ MX 10 mx",
            "mx A 127.0.0.31",
            f"{TLSA}.mx TLSA 3 1 1 {expired_hash}",
        ],
        # Two MX hosts, only the second verifies: its TLSA matches.
        "danetwo.test": [
            "@ MX 10 mx1",
            "@ MX 20 mx2",
            "mx1 A 127.0.0.17",
            "mx2 A 127.0.0.17",
            f"{TLSA}.mx1 TLSA 3 1 1 {'1' * 64}",
            f"{TLSA}.mx2 TLSA 3 1 1 {key_hash}",
        ],
        # The MX host is a CNAME (RFC 7672 2.2.3): TLSA at the expanded
        # name (DANE-TA, the certificate names the expanded name), and TLSA
        # only at the original name (the expanded name has none).
        "danecname.test": ["@ MX 10 mail", "mail CNAME mx.daneta.test."],
        "danecname2.test": [
            "@ MX 10 mail",
            "mail CNAME mx.notlsa.test.",
            f"{TLSA}.mail TLSA 3 1 1 {key_hash}",
        ],
        # Signed, STARTTLS offered, but no TLSA: nothing authenticates it.
        "notlsa.test": ["@ MX 10 mx", "mx A 127.0.0.17"],
        # DANE-TA: TLSA "2 1 1" of the private CA that signed the server's
        # certificate; the server presents its chain. The right name, and
        # a server whose certificate is for another name (must fail).
        "daneta.test": [
            "@ MX 10 mx",
            "mx A 127.0.0.18",
            f"{TLSA}.mx TLSA 2 1 1 {spki_sha256(pkix_certs['ca'])}",
        ],
        "danetawrong.test": [
            "@ MX 10 mx",
            "mx A 127.0.0.19",
            f"{TLSA}.mx TLSA 2 1 1 {spki_sha256(pkix_certs['ca'])}",
        ],
        # dnssec-pkix: signed zones, servers with certificates of a private
        # CA (delivery.ca_file), one for the right name, one for another.
        "pkix.test": ["@ MX 10 mx", "mx A 127.0.0.18"],
        "pkixwrong.test": ["@ MX 10 mx", "mx A 127.0.0.19"],
        "pkixplain.test": ["@ MX 10 mx", "mx A 127.0.0.18"],
    }
    knot = KnotServer(tmp_path_factory.mktemp("knot"), zones, signed=SIGNED).start()
    anchors = [knot.ksk(z) for z in SIGNED if z != "bogus.test"] + [
        # bogus.test is validated with another zone's key: SERVFAIL.
        knot.ksk("secure.test").replace("secure.test.", "bogus.test.", 1),
    ]
    unbound = UnboundServer(
        tmp_path_factory.mktemp("unbound"),
        knot,
        trust_anchors=anchors,
        system_address=SYSTEM_RESOLVER,
    ).start()
    yield unbound
    unbound.stop()
    knot.stop()


def _tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def _old_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """TLS 1.0/1.1 only, which rustls never offers."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    # Python deprecates building such a server: that is the point.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    return ctx


def _rsa_kx_context(cert: Path, key: Path) -> ssl.SSLContext:
    """TLS 1.2 with RSA key exchange only (no forward secrecy): rustls
    implements no such cipher suite."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("AES128-GCM-SHA256:AES256-GCM-SHA384")
    return ctx


@pytest.fixture
def sinks(
    dane_cert: tuple[Path, Path],
    pkix_certs: dict[str, Path],
    odd_certs: dict[str, tuple[Path, Path]],
) -> Iterator[dict[str, Sink]]:
    started = {
        name: Sink(addr, SINK_PORT).start()
        for name, addr in (
            ("good1", "127.0.0.11"),
            ("good2", "127.0.0.12"),
            ("slow", "127.0.0.13"),
            ("bad", "127.0.0.14"),
            ("sender", "127.0.0.15"),
            ("implicit", "127.0.0.16"),
            ("v6", "::1"),
        )
    }
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*dane_cert)
    for name, addr, chain, key in (
        ("sts", "127.0.0.21", pkix_certs["sts_chain"], pkix_certs["sts_key"]),
        ("pkix", "127.0.0.18", pkix_certs["good_chain"], pkix_certs["good_key"]),
        ("pkixwrong", "127.0.0.19", pkix_certs["wrong_chain"], pkix_certs["wrong_key"]),
    ):
        pctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        pctx.load_cert_chain(chain, key)
        started[name] = Sink(addr, SINK_PORT).start(tls_context=pctx, require_starttls=False)
    started["dane"] = Sink("127.0.0.17", SINK_PORT).start(tls_context=ctx, require_starttls=False)
    for name, addr, tls in (
        ("expired", "127.0.0.31", _tls_context(*odd_certs["expired"])),
        ("tls10", "127.0.0.32", _old_tls_context(*odd_certs["tls10"])),
        ("rsakx", "127.0.0.33", _rsa_kx_context(*odd_certs["rsa"])),
        ("stsself", "127.0.0.34", _tls_context(*odd_certs["stsself"])),
    ):
        started[name] = Sink(addr, SINK_PORT).start(tls_context=tls, require_starttls=False)
    yield started
    for s in started.values():
        s.stop()


def mxg_config(
    dns: UnboundServer,
    data: Path,
    extra: str = "",
    level: str = "opportunistic",
    store: str = "",
) -> str:
    return f"""
[server]
hostname = "mxg.test"
listen = ["@LISTEN@"]
client_networks = ["127.0.0.1/32"]
shutdown_grace = "5s"

[data]
directory = "{data}"
store = "{store}"

[dns]
nameservers = ["{dns.address}"]
port = {dns.port}
timeout = "3s"
trust_ad = true
dnssec_probe = "secure.test"

[delivery]
port = {SINK_PORT}
default_level = "{level}"
connect_timeout = "3s"
idle_timeout = "2s"

[queue]
retry_schedule = ["1s"]
scan_interval = "0.2s"
delay_warning_after = 0

[log]
level = "debug"
{extra}
"""


def on_both_stores(request: pytest.FixtureRequest) -> str:
    """The `[data] store` a test's parameter names: "" (the embedded
    SQLite) for ``sqlite``, a fresh PostgreSQL database at the current
    schema for ``postgresql``, as an operator's role that owns it and is
    no superuser (docs/cluster.md, "Preparing PostgreSQL")."""
    if request.param == "sqlite":
        return ""
    pg: Postgres = request.getfixturevalue("postgres")
    return pg.migrated_database(RELAY_ROLE)


@pytest.fixture(params=["sqlite", "postgresql"])
def mxg_store(request: pytest.FixtureRequest) -> str:
    """The relay's `[data] store`: every e2e test runs on both stores
    (issue 18: the whole suite on both). A test about what exists on one
    store only is marked `only_on(store, why)`."""
    return on_both_stores(request)


def only_on(store: str, why: str) -> pytest.MarkDecorator:
    """Runs a test on one store only; `why` says what the other lacks
    (kept in the source, where the reader of the test looks)."""
    assert why
    return pytest.mark.parametrize("mxg_store", [store], indirect=True)


@pytest.fixture
def make_mxg(
    tmp_path: Path, dns_server: UnboundServer, backend: str, mxg_store: str
) -> Iterator[object]:
    """Starts mxg as a process. Every e2e test runs on asyncio+uvloop and
    on trio (the ``backend`` fixture), each on both stores (`mxg_store`)."""
    procs: list[MxgProcess] = []
    default_backend = backend

    def make(
        backend: str = default_backend,
        extra: str = "",
        start: bool = True,
        level: str = "opportunistic",
        env: dict[str, str] | None = None,
    ) -> MxgProcess:
        config = mxg_config(dns_server, tmp_path / "data", extra, level, mxg_store)
        p = MxgProcess(tmp_path, config, backend, env)
        procs.append(p)
        return p.start() if start else p

    yield make
    for p in procs:
        p.stop()


def _policy(mode: str, mx: str) -> tuple[int, str, bytes, dict[str, str]]:
    body = f"version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 86400\r\n"
    return 200, "text/plain", body.encode(), {}


@pytest.fixture(scope="session")
def sts_web(pkix_certs: dict[str, Path]) -> Iterator[PolicyServer]:
    """The MTA-STS policy host of every sts*.test domain (127.0.0.20:443)."""
    server = PolicyServer(
        "127.0.0.20",
        pkix_certs["web_chain"],
        pkix_certs["web_key"],
        {
            "mta-sts.sts.test": _policy("enforce", "mx.sts.test"),
            "mta-sts.stsbad.test": _policy("enforce", "*.stsbad.test"),
            "mta-sts.stsnomatch.test": _policy("enforce", "mail.elsewhere.test"),
            "mta-sts.ststesting.test": _policy("testing", "*.ststesting.test"),
            "mta-sts.stsself.test": _policy("enforce", "mx.stsself.test"),
        },
    ).start()
    yield server
    server.stop()


# A file system small enough to fill in a test (tests/e2e/test_full_disk.py,
# test_metrics.py).
DISK_MB = 24


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of DISK_MB of its own (needs root)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(disk)], check=True
    )
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill_disk(disk: Path) -> Path:
    """Fills the file system of `disk` to the last block; returns the file."""
    filler = disk / "filler"
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True, check=False
    )
    return filler
