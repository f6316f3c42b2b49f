"""The store of a relay under test, on either backend, for the few e2e
tests that look at its rows behind the relay's back (a signed audit
checkpoint, a tampered record, a report day moved back): through the
store's own `Database`, so that one copy of the test's SQL runs on the
SQLite file and on PostgreSQL alike."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mxg.config.load import load_config
from mxg.store.db import Database

from .mxgproc import MxgProcess
from .postgres import BIN


def store_target(mxg: MxgProcess) -> Path | str:
    """Where the relay's store is, as the relay reads its configuration
    (the file and the environment the test gave it)."""
    return load_config(mxg.config_path, {**os.environ, **mxg.env}).store_target


@contextmanager
def store_sql(mxg: MxgProcess) -> Iterator[sqlite3.Connection]:
    """One write transaction on the relay's store (``?`` parameters, rows
    read by index or name), committed when the block ends."""
    database = Database(store_target(mxg))
    try:
        with database.transaction() as db:
            yield db
    finally:
        database.close()


def store_bytes(mxg: MxgProcess) -> bytes:
    """Everything the store holds, as bytes to search: the SQLite file
    and its write-ahead log, or a dump of the PostgreSQL database."""
    target = store_target(mxg)
    if isinstance(target, Path):
        wal = Path(f"{target}-wal")
        return target.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    dump = [str(BIN / "pg_dump"), "--data-only", "--no-owner", target]
    return subprocess.run(dump, capture_output=True, check=True, timeout=60).stdout
