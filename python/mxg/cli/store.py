"""``mxg store migrate|status``: brings a PostgreSQL store to this mxg's
schema version (its numbered migrations, store/schema.py), or shows what
that would do. A relay refuses to start on an older schema, and on a
newer one unless every newer step only expanded it. A contracting step
waits until no live node runs code that cannot run on it (rolling
upgrades, docs/cluster.md). The embedded SQLite store migrates itself
when it opens, as before."""

from __future__ import annotations

import argparse
from typing import Any

from mxg.cli.common import _load
from mxg.errors import MxgError


def _connect(args: argparse.Namespace, command: str) -> tuple[Any, str]:
    from mxg.store.postgres import PgConnection, redact

    cfg = _load(args)
    if not cfg.data.store:
        raise MxgError(
            f"store {command}: data.store is the embedded SQLite store, which migrates"
            " itself when mxg opens it; nothing to do"
        )
    return PgConnection(cfg.data.store), redact(cfg.data.store)


def cmd_store_migrate(args: argparse.Namespace) -> int:
    from mxg.store.db import WRITER_LOCK
    from mxg.store.schema import MigrationBlocked, migrate_postgres

    if args.dry_run:
        return cmd_store_status(args)
    conn, where = _connect(args, "migrate")
    try:
        try:
            start, now = migrate_postgres(conn, WRITER_LOCK, force=args.force)
        except MigrationBlocked as e:
            if e.at > e.start:
                # The steps before the refused one are applied: say so.
                _report(where, e.start, e.at)
            raise
    finally:
        conn.close()
    _report(where, start, now)
    return 0


def _report(where: str, start: int, now: int) -> None:
    if start > now:
        print(f"{where}: schema version {start}, newer than this mxg's {now}")
    elif start == now:
        print(f"{where}: schema version {now}, up to date")
    else:
        print(f"{where}: schema version {start} -> {now}")


def cmd_store_status(args: argparse.Namespace) -> int:
    from mxg.store.schema import pending_postgres

    conn, where = _connect(args, "status")
    try:
        plan = pending_postgres(conn)
    finally:
        conn.close()
    print(f"{where}: schema version {plan.have}, this mxg's {plan.target}")
    if plan.have > plan.target:
        print("  the store is newer than this mxg: nothing to apply")
    elif not plan.steps:
        print("  up to date")
    for step in plan.steps:
        print(f"  pending {step.describe()}")
    if plan.nodes:
        print("live nodes: " + ", ".join(map(str, plan.nodes)))
    return 0


def add_store_parser(sub: Any) -> None:
    p = sub.add_parser("store", help="the PostgreSQL store's schema")
    ssub = p.add_subparsers(dest="store_cmd", required=True)
    m = ssub.add_parser(
        "migrate",
        help="bring the PostgreSQL store (data.store) to this mxg's schema version",
        description="Applies the schema migrations the PostgreSQL store named by "
        "data.store lacks, each in one transaction; safe to run twice or from two "
        "hosts at once. A relay refuses to start until it has run. A contracting "
        "step is refused while a live node runs code that cannot run on it.",
    )
    m.add_argument(
        "--dry-run",
        action="store_true",
        help="show the pending steps and the live nodes that block them; change nothing",
    )
    m.add_argument(
        "--force",
        action="store_true",
        help="apply a contracting step although live nodes of older code would break",
    )
    m.set_defaults(fn=cmd_store_migrate)
    s = ssub.add_parser(
        "status",
        help="the store's schema version, the pending steps and who blocks them",
    )
    s.set_defaults(fn=cmd_store_status)
