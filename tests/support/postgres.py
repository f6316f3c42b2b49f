"""A real PostgreSQL server for the store tests (Debian's postgresql-15):
one per session, on loopback at a free port, in a temporary directory,
torn down at the end. Each test gets its own database, migrated to the
current schema (`store_at`), so that the store tests run on both
backends."""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from mxg.store.db import WRITER_LOCK
from mxg.store.postgres import PgConnection
from mxg.store.schema import migrate_postgres

BIN = Path("/usr/lib/postgresql/15/bin")
# initdb and postgres refuse to run as root: as root, the server runs as
# the package's own `postgres` user.
_AS = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class Postgres:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self._names = itertools.count(1)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return self.url(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    if not (BIN / "postgres").exists():
        pytest.skip("PostgreSQL 15 is not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="mxg-pg-"))
    data = root / "data"
    if _AS:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
    initdb = [str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
    subprocess.run([*_AS, *initdb], check=True, capture_output=True)
    port = _free_port()
    # fsync off: the tests kill processes, never the machine; a commit's
    # durability against power loss is PostgreSQL's own (synchronous_commit
    # stays on, so a commit is in the WAL when it returns).
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' -c fsync=off"
    pg_ctl = [*_AS, str(BIN / "pg_ctl"), "-D", str(data)]
    log = str(root / "log")
    subprocess.run([*pg_ctl, "-o", opts, "-l", log, "-w", "start"], check=True, capture_output=True)
    try:
        yield Postgres(root, port)
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def migrated(url: str) -> str:
    """The database at ``url``, brought to the current schema."""
    conn = PgConnection(url)
    try:
        migrate_postgres(conn, WRITER_LOCK)
    finally:
        conn.close()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_at(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a test's store lives: an SQLite file, or a fresh PostgreSQL
    database at the current schema."""
    if request.param == "sqlite":
        return tmp_path / "queue.db"
    pg: Postgres = request.getfixturevalue("postgres")
    return migrated(pg.new_database())
