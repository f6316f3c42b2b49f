"""The store alone, as the relay's hot path drives it: messages indexed
in batches, their recipients' results recorded as delivered in batches,
one `sync` per results batch (before the spool files would go), on
SQLite and on a local PostgreSQL 15 (fsync and synchronous commits on).

    python -m bench.store [--messages 10000] [--batch 100] [--rcpts 1]

Prints messages/s, mxg's CPU per message and PostgreSQL's: the part of
the relay's cost that is the store's, without the noise of SMTP, TLS and
the sink (bench.run measures the whole relay)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench.postgres import PgServer
from mxg.boundary import Envelope, Recipient
from mxg.store import NewMessage, Outcome, Store
from mxg.store.db import WRITER_LOCK
from mxg.store.postgres import PgConnection
from mxg.store.schema import migrate_postgres
from tests.support.dns import free_port


def messages(n: int, rcpts: int) -> list[NewMessage]:
    now = int(time.time() * 1000)
    return [
        NewMessage(
            Envelope(
                queue_id=f"B{i:08d}",
                received_ms=now,
                sender="bench@internal.test",
                recipients=[Recipient(f"u{i}-{j}@plain.test") for j in range(rcpts)],
                origin="smtp",
                size=5120,
            ),
            "normal",
            {"fired": [{"rule": "default", "why": "bench"}]},
            ["normal"] * rcpts,
        )
        for i in range(n)
    ]


def drive(store: Store, batch: list[NewMessage]) -> None:
    """One batch through intake, the due query and its results."""
    store.add_messages(batch)
    due = store.due(int(time.time() * 1000) + 1, among=[m.queue_id for m in batch])
    outcomes = [
        Outcome(d.queue_id, i, "sent", 250, "2.0.0", "ok", "mx.plain.test", "127.0.0.50")
        for d in due
        for i in d.indexes
    ]
    store.record(outcomes)
    store.sync()


def run(target: Path | str, args: argparse.Namespace, pg: PgServer | None) -> str:
    store = Store(target)
    todo = messages(args.messages, args.rcpts)
    pg_cpu = pg.cpu_seconds() if pg else 0.0
    cpu, t0 = time.process_time(), time.monotonic()
    for i in range(0, len(todo), args.batch):
        drive(store, todo[i : i + args.batch])
    elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu
    store.close()
    if pg:
        pg.wait_idle()
        pg_cpu = pg.cpu_seconds() - pg_cpu
    n = args.messages
    name = "postgresql" if pg else "sqlite"
    return (
        f"{name:10} {n / elapsed:9,.0f} msgs/s  mxg {cpu * 1e6 / n:6.0f} µs/msg"
        f"  PostgreSQL {pg_cpu * 1e6 / n:6.0f} µs/msg"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=10000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--rcpts", type=int, default=1)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mxg-bench-store-"))
    work.chmod(0o755)
    print(run(work / "queue.db", args, None))
    pg = PgServer(work / "postgres", free_port()).start()
    try:
        url = pg.new_database()
        conn = PgConnection(url)
        migrate_postgres(conn, WRITER_LOCK)
        conn.close()
        print(run(url, args, pg))
    finally:
        pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
