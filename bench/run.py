"""mxg against Postfix on the same machine, side by side in one run.

    python -m bench.run [--messages 20000] [--size 5120] [--senders 20]
                        [--repeat 1] [--relays mxg,postfix]

Both relays accept durably (Postfix's queue with its fsyncs, mxg's spool
with group-committed fsyncs before 250) and deliver in plaintext to the
same Postfix ``smtp-sink``; Postfix's ``smtp-source`` is the load
generator for both. Postfix routes by relayhost, mxg by an MX lookup
through a local Unbound (cached after the first message).

Figures per relay: messages/s from the first connection to the moment the
relay's queue is empty again (every message handed to the sink), CPU
milliseconds per message summed over all the relay's processes (getrusage
of the reaped process tree, start-up included), and peak proportional memory (PSS)
summed over the relay's processes. The load generator and sink alone are
measured first: their rate is the ceiling of this setup.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.support.dns import KnotServer, UnboundServer, free_port
from tests.support.postfix import Postfix

ROOT = Path(__file__).resolve().parent.parent
SINK_ADDR = "127.0.0.50"


@dataclass
class Result:
    relay: str
    messages: int
    seconds: float
    msgs_per_s: float
    cpu_ms_per_msg: float
    peak_pss_mb: float


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
    def __init__(self, root_pid: int) -> None:
        super().__init__(daemon=True)
        self.root_pid, self.peak_kb, self.stop = root_pid, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.25):
            self.peak_kb = max(self.peak_kb, pss_kb(descendants(self.root_pid)))


def smtp_source(target: str, args: argparse.Namespace) -> None:
    """Postfix's load generator: ``senders`` sessions, each sending many
    messages over one connection (-d)."""
    subprocess.run(
        [
            "smtp-source",
            "-d",
            "-s",
            str(args.senders),
            "-m",
            str(args.messages),
            "-l",
            str(args.size),
            "-f",
            "bench@internal.test",
            "-t",
            "user@bench.test",
            "-M",
            "internal.test",
            target,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def wait_until(cond: Callable[[], bool], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError("relay did not drain its queue in time")
        time.sleep(0.02)


def measure(
    name: str,
    work: Path,
    port: int,
    *,
    wrapped: list[str],
    queued: Callable[[], int],
    stop: Callable[[subprocess.Popen[bytes]], None],
    args: argparse.Namespace,
) -> Result:
    usage = work / f"{name}-rusage.json"
    with open(work / f"{name}.stderr", "wb") as errors:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.rusage_wrap", str(usage), "--", *wrapped],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
    wait_port(port)
    sampler = MemorySampler(proc.pid)
    sampler.start()
    t0 = time.monotonic()
    smtp_source(f"127.0.0.1:{port}", args)
    wait_until(lambda: queued() == 0)
    elapsed = time.monotonic() - t0
    sampler.stop.set()
    stop(proc)
    proc.wait(120)
    ru = json.loads(usage.read_text())
    cpu = ru["utime"] + ru["stime"]
    return Result(
        name,
        args.messages,
        round(elapsed, 3),
        round(args.messages / elapsed, 1),
        round(cpu * 1000 / args.messages, 3),
        round(sampler.peak_kb / 1024, 1),
    )


def run_mxg(
    work: Path, dns: UnboundServer, sink_port: int, args: argparse.Namespace, run: int
) -> Result:
    port = free_port()
    data = work / f"mxg-data-{run}"
    conf = work / f"mxg-{run}.toml"
    conf.write_text(f"""
[server]
hostname = "mxg.bench"
listen = ["127.0.0.1:{port}"]
client_networks = ["127.0.0.0/8"]
[data]
directory = "{data}"
[dns]
nameservers = ["{dns.address}"]
port = {dns.port}
[delivery]
port = {sink_port}
default_level = "opportunistic"
[log]
level = "info"
file = "{work}/mxg-{run}.log"
""")
    spool = data / "spool" / "queue"
    return measure(
        "mxg",
        work,
        port,
        wrapped=[sys.executable, "-m", "mxg", "-c", str(conf), "run"],
        queued=lambda: len(os.listdir(spool)) if spool.exists() else 1,
        stop=lambda p: p.send_signal(signal.SIGTERM),
        args=args,
    )


def run_postfix(sink_port: int, args: argparse.Namespace, work: Path) -> Result:
    port = free_port()
    pf = Postfix(
        "bench",
        port,
        {
            "myhostname": "postfix.bench",
            "relayhost": f"[{SINK_ADDR}]:{sink_port}",
            "smtp_tls_security_level": "none",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
        },
    )
    pf.prepare()
    try:

        def stop(_p: subprocess.Popen[bytes]) -> None:
            subprocess.run(
                ["postfix", "-c", str(pf.conf), "stop"], check=False, capture_output=True
            )

        return measure(
            "postfix",
            work,
            port,
            wrapped=pf.foreground_command(),
            queued=pf.queued_files,
            stop=stop,
            args=args,
        )
    finally:
        subprocess.run(["postfix", "-c", str(pf.conf), "stop"], check=False, capture_output=True)
        pf.stop()


def ceiling(sink_port: int, args: argparse.Namespace) -> float:
    """smtp-source straight into smtp-sink: the fastest this setup can go."""
    t0 = time.monotonic()
    smtp_source(f"{SINK_ADDR}:{sink_port}", args)
    return float(args.messages) / (time.monotonic() - t0)


def table(results: list[Result], ceiling_rate: float, args: argparse.Namespace) -> str:
    lines = [
        f"{args.messages} messages of {args.size} B from {args.senders} senders, "
        f"plaintext to smtp-sink; {os.cpu_count()} cores",
        f"load generator + sink alone: {ceiling_rate:,.0f} msgs/s",
        "",
        f"{'relay':8} {'msgs/s':>9} {'CPU ms/msg':>11} {'peak PSS MB':>12} {'seconds':>8}",
    ]
    by: dict[str, list[Result]] = {}
    for r in results:
        by.setdefault(r.relay, []).append(r)
    med: dict[str, dict[str, float]] = {}
    for name, rs in by.items():
        m = {
            k: statistics.median(getattr(r, k) for r in rs)
            for k in ("msgs_per_s", "cpu_ms_per_msg", "peak_pss_mb", "seconds")
        }
        med[name] = m
        spread = f"  (runs: {', '.join(f'{r.msgs_per_s:.0f}' for r in rs)})" if len(rs) > 1 else ""
        lines.append(
            f"{name:8} {m['msgs_per_s']:9.0f} {m['cpu_ms_per_msg']:11.3f} "
            f"{m['peak_pss_mb']:12.1f} {m['seconds']:8.2f}{spread}"
        )
    if "mxg" in med and "postfix" in med:
        a, b = med["mxg"], med["postfix"]
        lines += [
            "",
            f"mxg/postfix: throughput {a['msgs_per_s'] / b['msgs_per_s']:.2f}x, "
            f"CPU per message {a['cpu_ms_per_msg'] / b['cpu_ms_per_msg']:.2f}x, "
            f"peak memory {a['peak_pss_mb'] / b['peak_pss_mb']:.2f}x",
        ]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--size", type=int, default=5120)
    p.add_argument("--senders", type=int, default=20)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--relays", default="mxg,postfix")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mxg-bench-"))
    work.chmod(0o755)
    knot = KnotServer(work / "knot", {"bench.test": ["@ MX 10 mx", f"mx A {SINK_ADDR}"]}).start()
    dns = UnboundServer(work / "unbound", knot).start()
    sink_port = free_port(SINK_ADDR)
    sink = subprocess.Popen(
        ["smtp-sink", "-u", "postfix", f"{SINK_ADDR}:{sink_port}", "1024"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results: list[Result] = []
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((SINK_ADDR, sink_port), timeout=0.5).close()
                break
            except OSError:
                if sink.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("smtp-sink did not start") from None
                time.sleep(0.05)
        rate = ceiling(sink_port, args)
        for run in range(args.repeat):
            for relay in args.relays.split(","):
                if relay == "mxg":
                    results.append(run_mxg(work, dns, sink_port, args, run))
                elif relay == "postfix":
                    results.append(run_postfix(sink_port, args, work))
                print(f"run {run + 1}: {results[-1]}", file=sys.stderr)
    finally:
        sink.terminate()
        dns.stop()
        knot.stop()
    text = table(results, rate, args)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (out / f"plaintext-{stamp}.json").write_text(
        json.dumps(
            {
                "args": vars(args),
                "ceiling_msgs_per_s": rate,
                "results": [asdict(r) for r in results],
            },
            indent=2,
        )
    )
    (out / f"plaintext-{stamp}.txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
