"""The store's files on disk, apart from SQL: created private and never
through a link (rules 8, 8a), a full disk told apart from damage, and a
damaged database moved aside for a rebuild from the spool (rule 10)."""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
import time
from pathlib import Path

import psycopg

from mxg.errors import StoreError
from mxg.store.postgres import StoreUnreachable


def _make_private(path: Path) -> None:
    """Creates the database file mode 0600 before SQLite opens it, so that
    its WAL and shared-memory files, which SQLite creates with the
    database's mode, are 0600 from the first start (rule 8); tightens
    files an older version left readable. Never through a symlink
    (rule 8a): a planted link is refused, not followed."""
    for name, create in ((path, True), (Path(f"{path}-wal"), False), (Path(f"{path}-shm"), False)):
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        try:
            fd = os.open(name, flags, 0o600)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise StoreError(f"cannot open the store file {name}: {e.strerror}") from e
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StoreError(f"store file {name} is not a regular file")
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)


def is_full(e: BaseException) -> bool:
    """The store cannot grow: the disk (or the quota) is full. Nothing is
    lost by it (the spool holds every message); writes wait for space."""
    if isinstance(e, sqlite3.OperationalError):
        return getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


def is_unavailable(e: BaseException) -> bool:
    """The store cannot take a write for now: its disk is full
    (`is_full`) or a PostgreSQL store is unreachable (restarting,
    failing over). Either clears by itself; meanwhile every message is
    in the spool and results wait in memory (`pipeline.storage`)."""
    return is_full(e) or isinstance(e, StoreUnreachable)


def is_outage(e: BaseException) -> bool:
    """The store failed to answer, not mxg: unavailable (`is_unavailable`),
    one of the store's own errors, or PostgreSQL's OperationalError (the
    server shutting down or ending the session, a statement cancelled).
    One line in the log, and what failed is tried again; not SQLite's
    OperationalError, which also names SQL errors (a bug's traceback)."""
    return is_unavailable(e) or isinstance(e, (StoreError, psycopg.OperationalError))


def _damaged(e: sqlite3.Error) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def quarantine(path: Path) -> Path:
    """Moves a damaged database (with its WAL and shared-memory files)
    aside, named after the time, and returns the new name of the main
    file: the spool is the source of truth (rule 10), so a new index is
    rebuilt from it, and the old one stays for inspection."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    moved = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        old = Path(f"{path}{suffix}")
        if old.exists():
            old.rename(f"{moved}{suffix}")
    return moved
