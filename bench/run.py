"""mxg against Postfix on the same machine, side by side in one run.

    python -m bench.run [--messages 20000] [--size 5120] [--senders 20]
                        [--repeat 1] [--relays mxg,postfix]
                        [--scenarios plaintext,encrypted,dane,size-1k,size-100k,
                                     rcpts,conns]

Both relays accept durably (Postfix's queue with its fsyncs, mxg's spool
with group-committed fsyncs before 250) and deliver to the same sink,
``mxg-benchsink`` (a pipelining SMTP sink with STARTTLS, built from this
workspace); ``mxg-benchload`` (same crate) is the load generator for both:
pipelining sessions that time every end of DATA to its 250 (accept
latency). Both
find the sink by an MX lookup through a local Unbound over a
DNSSEC-signed zone (Knot); Postfix resolves through resolv.conf, so it
runs in a private mount namespace whose resolv.conf names that Unbound.

Scenarios (the same outbound requirement for both relays):

- ``plaintext``: the sink offers no STARTTLS; mxg ``opportunistic``,
  Postfix ``smtp_tls_security_level = may``.
- ``encrypted``: STARTTLS required, no authentication; mxg ``encrypted``
  (BSI TR-02102-2 profile), Postfix ``encrypt`` with TLS 1.2+.
- ``dane``: TLSA ``3 1 1`` of the sink's key in the signed zone; mxg
  ``qualified``, Postfix ``dane-only``.
- ``size-1k``, ``size-100k``: as ``encrypted`` with 1 KB and 100 KB
  messages (100 KB: a fifth of the messages).
- ``rcpts``: as ``encrypted``, 50 recipients per message over 5 domains
  (a tenth of the messages); Postfix routes the domains by MX through
  ``transport_maps``.
- ``conns``: as ``encrypted`` from 1,000 concurrent inbound connections;
  also reported: memory per idle inbound connection (1,000 connections
  held open after EHLO, PSS above the idle relay's). Postfix may run
  1,100 processes here (``default_process_limit``), as mxg allows 2,000
  sessions.

TLS connections are reused by both (mxg's pool; Postfix's
``smtp_tls_connection_reuse`` through tlsproxy).

Figures per relay: messages/s from the first connection to the moment the
relay's queue is empty again (every message handed to the sink), CPU
milliseconds per message summed over all the relay's processes (getrusage
of the reaped process tree, start-up included; the wrapper is the tree's
subreaper, so the daemons Postfix's master leaves behind at stop count),
and peak proportional memory (PSS) summed over the relay's processes. The
load generator and sink alone are measured first: their rate is the
ceiling of this setup.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.postgres import LockWaits, PgServer
from bench.sink import BenchSink
from tests.support.certs import self_signed, spki_sha256
from tests.support.dns import KnotServer, UnboundServer, free_port
from tests.support.postfix import TLSPROXY, Postfix

ROOT = Path(__file__).resolve().parent.parent
SINK_ADDR = "127.0.0.50"
# The bench's Unbound also on port 53 here, for Postfix (resolv.conf).
SYSTEM_RESOLVER = "127.0.0.153"
SINK = ROOT / "target" / "release" / "mxg-benchsink"
LOAD = ROOT / "target" / "release" / "mxg-benchload"
# The relays: mxg on its SQLite store, mxg on PostgreSQL (one node, two
# nodes sharing the store), Postfix.
RELAYS = ("mxg", "mxg-pg", "mxg-pg2", "postfix")
PG_NODES = {"mxg-pg": 1, "mxg-pg2": 2}
SCENARIOS = ("plaintext", "encrypted", "dane", "size-1k", "size-100k", "rcpts", "conns")


@dataclass(frozen=True)
class Scenario:
    mxg_level: str
    postfix_level: str
    # Usable TLSA records make DANE mandatory (RFC 7672 2.2), so only the
    # dane scenario's domain publishes them.
    domain: str = "plain.test"
    size: int | None = None  # None: --size
    share: float = 1.0  # of --messages
    rcpts: int = 1
    domains: tuple[str, ...] = ()
    senders: int | None = None  # None: --senders

    @property
    def tls(self) -> bool:
        return self.mxg_level != "opportunistic"


RCPT_DOMAINS = tuple(f"r{i}.test" for i in range(1, 6))
SCENARIO = {
    "plaintext": Scenario("opportunistic", "may"),
    "encrypted": Scenario("encrypted", "encrypt"),
    "dane": Scenario("qualified", "dane-only", domain="bench.test"),
    "size-1k": Scenario("encrypted", "encrypt", size=1024),
    "size-100k": Scenario("encrypted", "encrypt", size=100 * 1024, share=0.2),
    "rcpts": Scenario("encrypted", "encrypt", share=0.1, rcpts=50, domains=RCPT_DOMAINS),
    "conns": Scenario("encrypted", "encrypt", senders=1000),
}
IDLE_CONNECTIONS = 1000


@dataclass
class Result:
    scenario: str
    relay: str
    messages: int
    seconds: float
    msgs_per_s: float
    cpu_ms_per_msg: float
    peak_pss_mb: float
    # The sink's CPU per message during the run: its headroom.
    sink_cpu_ms_per_msg: float = 0.0
    # What the sink saw: every message arrived, over how many connections
    # (TLS ones among them).
    sink_messages: int = 0
    sink_connections: int = 0
    sink_tls_connections: int = 0
    # Accept latency seen by the senders: end of DATA to the 250.
    accept_p50_ms: float = 0.0
    accept_p99_ms: float = 0.0
    # The whole transaction, MAIL to that 250: also any wait before the 354.
    txn_p99_ms: float = 0.0
    # Recipients per message and the deliveries the sink must see.
    rcpts: int = 1
    # Memory per idle inbound connection (conns scenario only), KB.
    idle_kb_per_conn: float = 0.0
    # A relay on PostgreSQL: the server's CPU per message, also counted in
    # cpu_ms_per_msg (its memory is in peak_pss_mb).
    store_cpu_ms_per_msg: float = 0.0
    # mxg nodes sharing the load (and the store).
    nodes: int = 1
    # On PostgreSQL: the share of the run during which a transaction waited
    # for the writers' lock.
    lock_wait_share: float = 0.0


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += parents.get(p, [])
    return out


def pss_kb(pids: list[int]) -> int:
    """Proportional set size summed over processes: shared pages (Postfix's
    many daemons share their code) are split between the sharers instead
    of being counted once per process."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


class MemorySampler(threading.Thread):
    def __init__(self, pids: Callable[[], list[int]]) -> None:
        super().__init__(daemon=True)
        self.pids, self.peak_kb, self.stop = pids, 0, threading.Event()

    def run(self) -> None:
        # Once a second: reading smaps of every process is itself work on
        # the machine both relays share.
        while not self.stop.wait(1.0):
            self.peak_kb = max(self.peak_kb, pss_kb(self.pids()))


def load(targets: list[str], sc: Scenario, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """``mxg-benchload``: pipelining sessions, each sending its share of the
    messages over one connection, the sessions spread over the targets (a
    cluster's nodes) in turn; returns its JSON report."""
    cmd = [
        str(LOAD),
        *(arg for t in targets for arg in ("--server", t)),
        "--messages",
        str(messages(sc, args)),
        "--connections",
        str(sc.senders or args.senders),
        "--size",
        str(sc.size or args.size),
        "--from",
        "bench@internal.test",
        "--helo",
        "internal.test",
        "--pipelining",
        "--json",
        str(out),
    ]
    if sc.domains:
        cmd += ["--rcpts", str(sc.rcpts), "--domains", ",".join(sc.domains)]
    else:
        cmd += ["--to", f"user@{sc.domain}"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    report: dict[str, Any] = json.loads(out.read_text())
    if report["accepted"] != messages(sc, args):
        raise RuntimeError(f"load generator: only {report['accepted']} accepted: {report}")
    return report


def messages(sc: Scenario, args: argparse.Namespace) -> int:
    return max(1, int(args.messages * sc.share))


def established(ports: list[int]) -> int:
    match = " or ".join(f"sport = :{p}" for p in ports)
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( {match} )"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return len(out.splitlines())


def idle_memory(ports: list[int], pids: Callable[[], list[int]], work: Path) -> float:
    """PSS per idle inbound connection: 1,000 connections held open after
    EHLO, measured against the relay's idle PSS once all are established."""
    before = pss_kb(pids())
    out = work / "idle.json"
    proc = subprocess.Popen(
        [
            str(LOAD),
            *(arg for p in ports for arg in ("--server", f"127.0.0.1:{p}")),
            "--idle",
            str(IDLE_CONNECTIONS),
            "--hold",
            "3",
            "--json",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    while established(ports) < IDLE_CONNECTIONS and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # every session has answered EHLO by now
    during = pss_kb(pids())
    proc.wait(240)
    report = json.loads(out.read_text())
    held = max(1, int(report.get("idle_ok", 0)))
    return round((during - before) / held, 2)


def wait_until(cond: Callable[[], bool], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError("relay did not drain its queue in time")
        time.sleep(0.02)


def measure(
    scenario: str,
    name: str,
    work: Path,
    ports: list[int],
    *,
    wrapped: list[list[str]],
    queued: Callable[[], int],
    stop: Callable[[subprocess.Popen[bytes]], None],
    args: argparse.Namespace,
    store: PgServer | None = None,
) -> Result:
    """Starts the relay (one wrapped command per node, each listening on
    its port), sends the scenario's load spread over the ports, waits
    until `queued` is 0, stops it; with a PostgreSQL `store`, the server's
    CPU and memory during the run count as the relay's."""
    sc = SCENARIO[scenario]
    usages = [work / f"{name}-{scenario}-{i}-rusage.json" for i in range(len(wrapped))]
    # Each relay starts on a quiet disk: what earlier runs left dirty in the
    # page cache would otherwise be written back during this one.
    os.sync()
    store_cpu = store.cpu_seconds() if store else 0.0
    procs = []
    for i, (cmd, usage) in enumerate(zip(wrapped, usages, strict=True)):
        with open(work / f"{name}-{scenario}-{i}.stderr", "wb") as errors:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.rusage_wrap", str(usage), "--", *cmd],
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                )
            )

    def pids() -> list[int]:
        own = [pid for p in procs for pid in descendants(p.pid)]
        return own + (store.pids() if store else [])

    for port in ports:
        wait_port(port)
    idle_kb = idle_memory(ports, pids, work) if scenario == "conns" else 0.0
    sampler = MemorySampler(pids)
    sampler.start()
    waits = LockWaits(store.current) if store else None
    if waits:
        waits.start()
    t0 = time.monotonic()
    targets = [f"127.0.0.1:{port}" for port in ports]
    report = load(targets, sc, args, work / f"{name}-{scenario}-load.json")
    wait_until(lambda: queued() == 0)
    elapsed = time.monotonic() - t0
    sampler.stop.set()
    lock_wait_share = waits.share() if waits else 0.0
    for proc in procs:
        stop(proc)
    for proc in procs:
        proc.wait(120)
    cpu = 0.0
    for usage in usages:
        ru = json.loads(usage.read_text())
        cpu += ru["utime"] + ru["stime"]
    if store:
        store.wait_idle()
        store_cpu = store.cpu_seconds() - store_cpu
    n = messages(sc, args)
    latency = report.get("latency_ms") or {}
    return Result(
        scenario,
        name,
        n,
        round(elapsed, 3),
        round(n / elapsed, 1),
        round((cpu + store_cpu) * 1000 / n, 3),
        round(sampler.peak_kb / 1024, 1),
        accept_p50_ms=round(latency.get("p50", 0.0), 2),
        accept_p99_ms=round(latency.get("p99", 0.0), 2),
        txn_p99_ms=round((report.get("transaction_ms") or {}).get("p99", 0.0), 2),
        rcpts=sc.rcpts,
        idle_kb_per_conn=idle_kb,
        store_cpu_ms_per_msg=round(store_cpu * 1000 / n, 3),
        nodes=len(wrapped),
        lock_wait_share=round(lock_wait_share, 3),
    )


class Scraper:
    """With --scrape: reads mxg's /metrics every `interval` seconds while
    it runs, as Prometheus would, so that the figures include the cost of
    being monitored. The reading is this process's work; serving it is
    mxg's, and counted."""

    def __init__(self, port: int, interval: float) -> None:
        self.port, self.interval = port, interval
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        url = f"http://127.0.0.1:{self.port}/metrics"
        while not self._stop.wait(self.interval):
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    r.read()
                self.scrapes += 1
            except OSError:
                pass  # not listening yet, or stopping

    def __enter__(self) -> Scraper:
        if self.port:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def run_mxg(
    scenario: str,
    work: Path,
    dns: UnboundServer,
    sink_port: int,
    args: argparse.Namespace,
    *,
    run: int,
    relay: str = "mxg",
    store: PgServer | None = None,
) -> Result:
    """mxg on its embedded SQLite store, or (`store` given) on a fresh
    PostgreSQL database with `PG_NODES[relay]` nodes, each with its own
    data directory and port, sharing the load and the store."""
    nodes = PG_NODES.get(relay, 1)
    url = store.new_database() if store else ""
    ports = [free_port() for _ in range(nodes)]
    metrics_ports = [free_port() if args.scrape else 0 for _ in range(nodes)]
    confs, spools, logs = [], [], []
    for i, (port, metrics_port) in enumerate(zip(ports, metrics_ports, strict=True)):
        tag = f"{relay}-{scenario}-{run}" + (f"-n{i + 1}" if nodes > 1 else "")
        data, conf, log = work / f"data-{tag}", work / f"{tag}.toml", work / f"{tag}.log"
        metrics = f'[metrics]\nlisten = ["127.0.0.1:{metrics_port}"]' if metrics_port else ""
        conf.write_text(f"""
[server]
hostname = "mxg.bench"
listen = ["127.0.0.1:{port}"]
client_networks = ["127.0.0.0/8"]
# All load comes from 127.0.0.1 (the conns scenario opens 1,000 sessions).
max_connections = 2000
max_connections_per_client = 2000
[data]
directory = "{data}"
{f'store = "{url}"' if url else ""}
{f'[cluster]{chr(10)}node = "n{i + 1}"' if nodes > 1 else ""}
[dns]
nameservers = ["{dns.address}"]
port = {dns.port}
trust_ad = true
dnssec_probe = "bench.test"
[delivery]
port = {sink_port}
[classes.normal]
level = "{SCENARIO[scenario].mxg_level}"
[log]
level = "info"
file = "{log}"
{metrics}
""")
        confs.append(conf)
        spools.append(data / "spool" / "queue")
        logs.append(log)
    mxg = [sys.executable, "-m", "mxg"]
    if url:
        subprocess.run([*mxg, "-c", str(confs[0]), "store", "migrate"], check=True, cwd=ROOT)

    def queued() -> int:
        return sum(len(os.listdir(q)) if q.exists() else 1 for q in spools)

    with contextlib.ExitStack() as scrapers:
        started = [scrapers.enter_context(Scraper(p, args.scrape)) for p in metrics_ports]
        result = measure(
            scenario,
            relay,
            work,
            ports,
            wrapped=[[*mxg, "-c", str(conf), "run"] for conf in confs],
            queued=queued,
            stop=lambda p: p.send_signal(signal.SIGTERM),
            args=args,
            store=store,
        )
    if args.scrape and not all(s.scrapes for s in started):
        raise RuntimeError(f"{relay}/{scenario}: --scrape given, but /metrics never answered")
    for log in logs:
        if scenario == "dane" and "method=dane-ee" not in log.read_text():
            raise RuntimeError(f"{relay}/dane: no DANE-verified delivery in {log.name}")
    return result


def run_postfix(scenario: str, sink_port: int, args: argparse.Namespace, work: Path) -> Result:
    port = free_port()
    resolv = work / "resolv.conf"
    resolv.write_text(f"nameserver {SYSTEM_RESOLVER}\noptions trust-ad edns0\n")
    pf = Postfix(
        "bench",
        port,
        {
            "myhostname": "postfix.bench",
            # No brackets: an MX lookup, as mxg does; several domains are
            # routed by MX to the sink's port through transport_maps.
            **postfix_routes(SCENARIO[scenario], sink_port),
            "smtp_dns_support_level": "dnssec",
            "dnssec_probe": "ns:bench.test",
            "smtp_tls_security_level": SCENARIO[scenario].postfix_level,
            "smtp_tls_mandatory_protocols": ">=TLSv1.2",
            "smtp_tls_connection_reuse": "yes",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            # As many smtpd processes as mxg allows sessions: Postfix's
            # default of 100 would leave 900 of the conns scenario's 1,000
            # sessions in the listen queue (and out of the memory figure).
            **({"default_process_limit": "1100"} if scenario == "conns" else {}),
        },
        services=(TLSPROXY,),
    )
    pf.prepare()
    try:

        def stop(_p: subprocess.Popen[bytes]) -> None:
            subprocess.run(
                ["postfix", "-c", str(pf.conf), "stop"], check=False, capture_output=True
            )

        # Postfix resolves through resolv.conf: a private mount namespace
        # points it at the bench's Unbound.
        script = f'mount --bind "{resolv}" /etc/resolv.conf && exec "$@"'
        result = measure(
            scenario,
            "postfix",
            work,
            [port],
            wrapped=[["unshare", "--mount", "sh", "-c", script, "sh", *pf.foreground_command()]],
            queued=pf.queued_files,
            stop=stop,
            args=args,
        )
        if scenario == "dane" and "Verified TLS connection established" not in pf.log():
            raise RuntimeError("postfix/dane: no DANE-verified connection in its log")
        return result
    finally:
        subprocess.run(["postfix", "-c", str(pf.conf), "stop"], check=False, capture_output=True)
        pf.stop()


def postfix_routes(sc: Scenario, sink_port: int) -> dict[str, str]:
    if not sc.domains:
        return {"relayhost": f"{sc.domain}:{sink_port}"}
    table = ", ".join(f"{d}=smtp:{d}:{sink_port}" for d in sc.domains)
    return {"transport_maps": f"inline:{{{table}}}"}


def check_delivery(r: Result, args: argparse.Namespace) -> None:
    """Honest setup: every message reached the sink (once per recipient
    domain), over TLS when the scenario requires it."""
    sc = SCENARIO[r.scenario]
    want = r.messages * (len(sc.domains) or 1)
    if r.sink_messages < want:
        raise RuntimeError(f"{r.relay}/{r.scenario}: the sink got {r.sink_messages} of {want}")
    if sc.tls and r.sink_tls_connections < r.sink_connections:
        raise RuntimeError(
            f"{r.relay}/{r.scenario}: {r.sink_connections - r.sink_tls_connections} "
            "connections without TLS"
        )


def ceiling(sink_port: int, args: argparse.Namespace, work: Path) -> float:
    """The load generator straight into the sink: the fastest this setup
    can go (plaintext; the TLS sink's cost is reported per run)."""
    report = load([f"{SINK_ADDR}:{sink_port}"], SCENARIO["plaintext"], args, work / "ceiling.json")
    return float(report["msgs_per_s"])


METRICS = (
    "msgs_per_s",
    "cpu_ms_per_msg",
    "peak_pss_mb",
    "seconds",
    "accept_p50_ms",
    "accept_p99_ms",
    "txn_p99_ms",
    "sink_cpu_ms_per_msg",
    "sink_connections",
    "idle_kb_per_conn",
    "store_cpu_ms_per_msg",
    "lock_wait_share",
)


def medians(results: list[Result]) -> dict[tuple[str, str], dict[str, float]]:
    by: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        by.setdefault((r.scenario, r.relay), []).append(r)
    return {
        key: {k: statistics.median(getattr(r, k) for r in rs) for k in METRICS}
        for key, rs in by.items()
    }


def table(results: list[Result], ceiling_rate: float, args: argparse.Namespace) -> str:
    lines = [
        f"{args.messages} messages of {args.size} B from {args.senders} senders (scenario"
        f" variations as documented); {os.cpu_count()} cores",
        f"load generator + sink alone (plaintext): {ceiling_rate:,.0f} msgs/s",
        "",
        f"{'scenario':10} {'relay':8} {'msgs/s':>8} {'CPU ms/msg':>11} {'of it PG':>9} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'txn p99':>8} {'peak PSS MB':>12} {'seconds':>8} "
        f"{'sink ms/msg':>12} {'conns':>6}",
    ]
    med = medians(results)
    tls_sink = [
        m["sink_cpu_ms_per_msg"] for (sc, _), m in med.items() if sc in ("encrypted", "dane")
    ]
    if tls_sink and max(tls_sink) > 0:
        # The TLS sink alone: what one core of it receives, from its own CPU
        # per message in the runs with the standard message over TLS (the
        # worst of them; other sizes and recipient counts differ per message).
        lines.insert(
            2,
            f"TLS sink alone: {1000 / max(tls_sink):,.0f} msgs per CPU second"
            " (its CPU per message in the encrypted and dane runs, worst case)",
        )
    for (scenario, relay), m in med.items():
        runs = [r.msgs_per_s for r in results if (r.scenario, r.relay) == (scenario, relay)]
        spread = f"  (runs: {', '.join(f'{x:.0f}' for x in runs)})" if len(runs) > 1 else ""
        lines.append(
            f"{scenario:10} {relay:8} {m['msgs_per_s']:8.0f} {m['cpu_ms_per_msg']:11.3f} "
            f"{pg_cpu(relay, m):>9} "
            f"{m['accept_p50_ms']:7.2f} {m['accept_p99_ms']:7.2f} {m['txn_p99_ms']:8.2f} "
            f"{m['peak_pss_mb']:12.1f} {m['seconds']:8.2f} {m['sink_cpu_ms_per_msg']:12.3f}"
            f" {m['sink_connections']:6.0f}{spread}"
        )
    lines.append("")
    for scenario, relay in med:
        a, b = med[(scenario, relay)], med.get((scenario, "postfix"))
        if relay != "postfix" and b:
            lines.append(
                f"{scenario}: {relay}/postfix throughput {a['msgs_per_s'] / b['msgs_per_s']:.2f}x, "
                f"CPU per message {a['cpu_ms_per_msg'] / b['cpu_ms_per_msg']:.2f}x, "
                f"accept p99 {a['accept_p99_ms'] / max(b['accept_p99_ms'], 0.01):.2f}x, "
                f"transaction p99 {a['txn_p99_ms'] / max(b['txn_p99_ms'], 0.01):.2f}x, "
                f"peak memory {a['peak_pss_mb'] / b['peak_pss_mb']:.2f}x"
            )
    lines += nodes_and_target(med)
    for relay in RELAYS:
        base, dane = med.get(("encrypted", relay)), med.get(("dane", relay))
        if base and dane:
            lines.append(
                f"cost of DANE for {relay} (dane vs encrypted): throughput "
                f"{dane['msgs_per_s'] / base['msgs_per_s']:.2f}x, CPU per message "
                f"{dane['cpu_ms_per_msg'] - base['cpu_ms_per_msg']:+.3f} ms"
            )
        conns = med.get(("conns", relay))
        if conns and conns["idle_kb_per_conn"]:
            lines.append(
                f"memory per idle inbound connection, {relay}: "
                f"{conns['idle_kb_per_conn']:.1f} KB ({IDLE_CONNECTIONS} held open)"
            )
    return "\n".join(lines)


def pg_cpu(relay: str, m: dict[str, float]) -> str:
    """PostgreSQL's share of a relay's CPU per message; blank for the
    relays without it."""
    return f"{m['store_cpu_ms_per_msg']:.3f}" if relay in PG_NODES else "-"


def busy(m: dict[str, float]) -> float:
    """CPU seconds per second of the relay (PostgreSQL's included) and the
    sink: of the machine's cores, how many they kept busy (the load
    generator's own share is not counted)."""
    return (m["cpu_ms_per_msg"] + m["sink_cpu_ms_per_msg"]) * m["msgs_per_s"] / 1000


def nodes_and_target(med: dict[tuple[str, str], dict[str, float]]) -> list[str]:
    """One node against two on PostgreSQL, and issue 18's target: mxg on
    PostgreSQL with one node at least 3 times Postfix's messages/s at no
    more than half its CPU per message, PostgreSQL's CPU counted."""
    lines = []
    for scenario in dict.fromkeys(s for s, _ in med):
        one, two = med.get((scenario, "mxg-pg")), med.get((scenario, "mxg-pg2"))
        if one and two:
            lines.append(
                f"{scenario}: two nodes/one node throughput "
                f"{two['msgs_per_s'] / one['msgs_per_s']:.2f}x, CPU per message "
                f"{two['cpu_ms_per_msg'] / one['cpu_ms_per_msg']:.2f}x (PostgreSQL's "
                f"{two['store_cpu_ms_per_msg']:.3f} against {one['store_cpu_ms_per_msg']:.3f} ms);"
                f" cores busy (relay, PostgreSQL and sink) {busy(two):.2f} against"
                f" {busy(one):.2f}; a writer waiting for the writers' lock"
                f" {two['lock_wait_share']:.0%} of the time against {one['lock_wait_share']:.0%}"
            )
        pf = med.get((scenario, "postfix"))
        if one and pf:
            rate = one["msgs_per_s"] / pf["msgs_per_s"]
            cpu = one["cpu_ms_per_msg"] / pf["cpu_ms_per_msg"]
            met = "met" if rate >= 3 and cpu <= 0.5 else "not met"
            lines.append(
                f"{scenario}: target (mxg-pg >= 3x postfix msgs/s at <= 0.5x its CPU per"
                f" message): {rate:.2f}x at {cpu:.2f}x, {met}"
            )
    return lines


def plot(results: list[Result], path: Path) -> bool:
    """Messages/s, CPU per message and accept p99 per scenario, both relays
    side by side; False when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: PLC0415  (optional: only for the picture)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return False
    med = medians(results)
    scenarios = list(dict.fromkeys(s for s, _ in med))
    relays = list(dict.fromkeys(r for _, r in med))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    width = 0.8 / max(len(relays), 1)
    for ax, (metric, title) in zip(
        axes,
        (
            ("msgs_per_s", "messages/s (higher is better)"),
            ("cpu_ms_per_msg", "CPU ms per message (lower is better)"),
            ("accept_p99_ms", "accept latency p99, ms (lower is better)"),
        ),
        strict=True,
    ):
        for i, relay in enumerate(relays):
            values = [med.get((s, relay), {}).get(metric, 0.0) for s in scenarios]
            xs = [x + i * width for x in range(len(scenarios))]
            ax.bar(xs, values, width, label=relay)
        ax.set_xticks([x + width * (len(relays) - 1) / 2 for x in range(len(scenarios))])
        ax.set_xticklabels(scenarios, rotation=30, ha="right")
        ax.set_title(title)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def bench_world(work: Path, sink_port: int, cert: Path) -> tuple[KnotServer, UnboundServer]:
    """Two DNSSEC-signed zones validated by Unbound, both with the sink as
    MX: bench.test with TLSA 3 1 1 of its key for the delivery port (RFC
    6698 3), plain.test without TLSA."""
    zones = {
        "bench.test": [
            "@ MX 10 mx",
            f"mx A {SINK_ADDR}",
            f"_{sink_port}._tcp.mx TLSA 3 1 1 {spki_sha256(cert)}",
        ],
        "plain.test": ["@ MX 10 mx", f"mx A {SINK_ADDR}"],
        **{d: ["@ MX 10 mx", f"mx A {SINK_ADDR}"] for d in RCPT_DOMAINS},
    }
    knot = KnotServer(work / "knot", zones, signed=tuple(zones)).start()
    dns = UnboundServer(
        work / "unbound",
        knot,
        trust_anchors=[knot.ksk(z) for z in zones],
        system_address=SYSTEM_RESOLVER,
    ).start()
    return knot, dns


@dataclass(frozen=True)
class World:
    """What every relay run shares: the work directory, the DNS, the
    sink's port, the options, the PostgreSQL server (if a relay uses it)."""

    work: Path
    dns: UnboundServer
    sink_port: int
    args: argparse.Namespace
    store: PgServer | None


def run_relay(w: World, relay: str, scenario: str, run: int) -> Result:
    if relay == "postfix":
        return run_postfix(scenario, w.sink_port, w.args, w.work)
    store = w.store if relay in PG_NODES else None
    return run_mxg(scenario, w.work, w.dns, w.sink_port, w.args, run=run, relay=relay, store=store)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--size", type=int, default=5120)
    p.add_argument("--senders", type=int, default=20)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument(
        "--relays",
        default="mxg,postfix",
        help=f"from {','.join(RELAYS)} (mxg-pg: mxg on PostgreSQL, mxg-pg2: two nodes on it)",
    )
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument(
        "--scrape",
        type=float,
        default=0,
        metavar="SECONDS",
        help="turn mxg's /metrics on and scrape it at this interval during its runs",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the work directory (relay logs, queues, configurations)",
    )
    args = p.parse_args()
    if unknown := set(args.scenarios.split(",")) - set(SCENARIOS):
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if unknown := set(args.relays.split(",")) - set(RELAYS):
        p.error(f"unknown relays: {', '.join(sorted(unknown))}")
    return args


def main() -> int:
    args = parse_args()
    scenarios, relays = args.scenarios.split(","), args.relays.split(",")
    # An installed mxg (pip) comes with its bytecode compiled; from a source
    # tree under PYTHONDONTWRITEBYTECODE every start would compile it again.
    compileall.compile_dir(ROOT / "python" / "mxg", quiet=1)
    work = Path(tempfile.mkdtemp(prefix="mxg-bench-"))
    work.chmod(0o755)
    cert = self_signed(work / "sink-cert", "mx.bench.test")
    sink_port = free_port(SINK_ADDR)
    knot, dns = bench_world(work, sink_port, cert[0])
    results: list[Result] = []
    store = None
    try:
        if any(r in PG_NODES for r in relays):
            store = PgServer(work / "postgres", free_port()).start()
        world = World(work, dns, sink_port, args, store)
        stats = work / "sink-stats.json"
        sink = BenchSink(SINK, SINK_ADDR, sink_port, None, stats).start()
        try:
            rate = ceiling(sink_port, args, work)
        finally:
            sink.stop()
        for run in range(args.repeat):
            for scenario in scenarios:
                tls = cert if SCENARIO[scenario].tls else None
                for relay in relays:
                    sink = BenchSink(SINK, SINK_ADDR, sink_port, tls, stats).start()
                    try:
                        r = run_relay(world, relay, scenario, run)
                        r.sink_cpu_ms_per_msg = round(sink.cpu_seconds() * 1000 / r.messages, 3)
                    finally:
                        counts = sink.stop()
                    r.sink_messages = counts.get("messages", 0)
                    r.sink_connections = counts.get("connections", 0)
                    r.sink_tls_connections = counts.get("tls_connections", 0)
                    check_delivery(r, args)
                    results.append(r)
                    print(f"run {run + 1}: {r}", file=sys.stderr)
    finally:
        if store:
            store.stop()
        dns.stop()
        knot.stop()
        if args.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    text = table(results, rate, args)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (out / f"bench-{stamp}.json").write_text(
        json.dumps(
            {
                "args": vars(args),
                "ceiling_msgs_per_s": rate,
                "results": [asdict(r) for r in results],
                "medians": {f"{s}/{r}": m for (s, r), m in medians(results).items()},
            },
            indent=2,
        )
    )
    (out / f"bench-{stamp}.txt").write_text(text + "\n")
    if plot(results, out / f"bench-{stamp}.png"):
        print(f"plot: {out / f'bench-{stamp}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
