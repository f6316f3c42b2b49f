"""``mxg store migrate``: brings a PostgreSQL store to this mxg's schema
version (its numbered migrations, store/schema.py). A relay refuses to
start on an older one. The embedded SQLite store migrates itself when it
opens, as before."""

from __future__ import annotations

import argparse
from typing import Any

from mxg.cli.common import _load
from mxg.errors import MxgError


def cmd_store_migrate(args: argparse.Namespace) -> int:
    from mxg.store.db import WRITER_LOCK
    from mxg.store.postgres import PgConnection, redact
    from mxg.store.schema import migrate_postgres

    cfg = _load(args)
    if not cfg.data.store:
        raise MxgError(
            "store migrate: data.store is the embedded SQLite store, which migrates"
            " itself when mxg opens it; nothing to do"
        )
    conn = PgConnection(cfg.data.store)
    try:
        start, now = migrate_postgres(conn, WRITER_LOCK)
    finally:
        conn.close()
    where = redact(cfg.data.store)
    if start == now:
        print(f"{where}: schema version {now}, up to date")
    else:
        print(f"{where}: schema version {start} -> {now}")
    return 0


def add_store_parser(sub: Any) -> None:
    p = sub.add_parser("store", help="the PostgreSQL store's schema")
    ssub = p.add_subparsers(dest="store_cmd", required=True)
    m = ssub.add_parser(
        "migrate",
        help="bring the PostgreSQL store (data.store) to this mxg's schema version",
        description="Applies the schema migrations the PostgreSQL store named by "
        "data.store lacks, each in one transaction; safe to run twice or from two "
        "hosts at once. A relay refuses to start until it has run.",
    )
    m.set_defaults(fn=cmd_store_migrate)
