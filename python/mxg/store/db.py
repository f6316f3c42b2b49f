"""The open database and its transactions: WAL, durable commits (fsynced
when they commit, or by one `sync` for the batches a restart repairs,
rule 11), and the bound on parameters per statement. Every other part of
`Store` builds on `Database`."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from mxg.errors import StoreDamaged
from mxg.store.files import _damaged, _make_private
from mxg.store.schema import SCHEMA, migrate

# Bound parameters per statement: SQLite's limit was 999 before 3.32.
_MAX_PARAMS = 999


class Database:
    """One SQLite connection to the queue index, and its transactions."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        _make_private(path)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self.db.row_factory = sqlite3.Row
        self._durable = True
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            # Commits reach the WAL without an fsync of SQLite's own; durable
            # ones get theirs in `transaction` (the effect of
            # synchronous=FULL), so that repairable ones need no PRAGMA round
            # trip each.
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(SCHEMA)
            migrate(self.db)
        except sqlite3.DatabaseError as e:
            self.db.close()
            # Not an OperationalError such as "locked": the file itself is
            # unreadable (SQLITE_NOTADB, SQLITE_CORRUPT).
            if not _damaged(e):
                raise
            raise StoreDamaged(path, str(e)) from None

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, durable when it returns (unless inside
        `_not_synced`)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            # A COMMIT that fails (a full disk: SQLITE_FULL) leaves the
            # transaction open; it is rolled back like any other failure.
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        if self._durable:
            self.sync()

    @contextmanager
    def _not_synced(self) -> Iterator[None]:
        """Transactions whose loss a crash can repair: committed to the WAL
        without an fsync of their own; the next durable commit carries them
        to disk (SQLite WAL, synchronous=NORMAL)."""
        self._durable = False
        try:
            yield
        finally:
            self._durable = True

    def sync(self) -> None:
        """Makes every commit so far durable. Commits without their own
        fsync are in the WAL (SQLite syncs it before a checkpoint, and the
        database file after); one fsync of the WAL covers them all. Uses its
        own descriptor, so it may run in another thread than the commits."""
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # no WAL (yet): nothing was committed through it
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


T = TypeVar("T")


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
