"""The store's hot path on PostgreSQL with and without message bodies
(docs/cluster.md, "Bodies before the 250"): messages indexed in batches
of 100 as intake does (with each spool file's bytes in `spool_bodies`,
or not), then delivered (results recorded, messages marked done, bodies
deleted). Prints messages per second and CPU per message in mxg and in
the PostgreSQL backend.

    .venv/bin/python -m bench.store_path [--messages 5000] [--size 4096]

Starts a PostgreSQL 15 of its own (fsync on) in a temporary directory.
"""

from __future__ import annotations

import argparse
import base64
import os
import resource
import time
from collections.abc import Callable

from mxg.boundary import Envelope, Recipient
from mxg.store import NewMessage, Outcome, Store, now_ms
from tests.support.postgres import Postgres, Server, migrated

BATCH = 100


def _cpu_of(pid: int) -> float:
    """Seconds of CPU a process used (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(url: str, n: int, size: int, bodies: bool, tag: str) -> dict[str, float]:
    store = Store(url)
    # Base64 of random octets, as an attachment is: neither compressible
    # nor free of what an array's text form escapes.
    raw = b"MXG1 2\n{}\n" + base64.encodebytes(os.urandom(size * 3 // 4))
    reader: Callable[[str], bytes | None] | None = (lambda q: raw) if bodies else None
    store.read_raw = reader
    backend = int(store.db.execute("SELECT pg_backend_pid()").fetchone()[0])
    messages = [
        NewMessage(
            Envelope(
                queue_id=f"{tag}{i:012d}",
                received_ms=now_ms(),
                sender="a@internal.test",
                recipients=[Recipient("b@x.test"), Recipient("c@y.test")],
                size=size,
                origin="smtp",
            ),
            "normal",
            {},
            ["normal", "normal"],
        )
        for i in range(n)
    ]
    cpu0, pg0, t0 = _own_cpu(), _cpu_of(backend), time.perf_counter()
    for i in range(0, n, BATCH):
        batch = messages[i : i + BATCH]
        store.add_messages(batch)
        store.record(
            Outcome(m.queue_id, idx, "sent", 250, "2.0.0", "ok") for m in batch for idx in (0, 1)
        )
    wall = time.perf_counter() - t0
    cpu, pg = _own_cpu() - cpu0, _cpu_of(backend) - pg0
    left = store.db.execute("SELECT count(*) FROM spool_bodies").fetchone()[0]
    store.close()
    assert left == 0, "every body deleted when its message was done"
    return {"rate": n / wall, "mxg_us": cpu / n * 1e6, "pg_us": pg / n * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--size", type=int, default=4096, help="octets of each spool file")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    server = Server(fsync=True).start()
    try:
        pg = Postgres(server.root, server.port)
        print(
            f"{args.messages} messages of two recipients, {args.size} octets each,"
            f" batches of {BATCH}"
        )
        print(f"{'bodies':<8}{'messages/s':>12}{'µs mxg':>10}{'µs PostgreSQL':>16}")
        for r in range(args.repeat):
            for bodies in (False, True):
                url = migrated(pg.new_database())
                f = run(url, args.messages, args.size, bodies, f"B{int(bodies)}{r}")
                print(
                    f"{'yes' if bodies else 'no':<8}{f['rate']:>12,.0f}{f['mxg_us']:>10.0f}"
                    f"{f['pg_us']:>16.0f}"
                )
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
