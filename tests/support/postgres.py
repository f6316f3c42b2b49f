"""A real PostgreSQL server for the store tests (Debian's postgresql-15):
one per session, on loopback at a free port, in a temporary directory,
torn down at the end. Each test gets its own database at the current
schema (`store_at`), so that the store tests run on both backends: a
copy of one template migrated once per session, which costs a file copy
instead of every migration per test."""

from __future__ import annotations

import contextlib
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


# The role the end-to-end tests run the relay as, the way
# docs/cluster.md has an operator prepare PostgreSQL: it owns its
# database and nothing else, and is no superuser.
RELAY_ROLE = "mxg"


class Postgres:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self._names = itertools.count(1)
        # Per owning role: its migrated template's name.
        self._templates: dict[str, str] = {}

    def url(self, database: str = "postgres", role: str = "postgres") -> str:
        return f"postgresql://{role}@127.0.0.1:{self.port}/{database}"

    def new_database(self, template: str = "template1", owner: str = "postgres") -> str:
        """A fresh database, a copy of ``template`` (PostgreSQL's empty one by
        default) that `owner` owns; its URL as `owner`."""
        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name} TEMPLATE {template} OWNER {owner}")
        return self.url(name, owner)

    def migrated_database(self, owner: str = "postgres") -> str:
        """A fresh database at the current schema that `owner` owns, its
        tables too; its URL as `owner` (a role made at the first call if
        there is none). Copied from a template migrated as `owner` at the
        first call (nobody connects to it after, which CREATE DATABASE ...
        TEMPLATE requires)."""
        if owner not in self._templates:
            with psycopg.connect(self.url(), autocommit=True) as c:
                exists = c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,))
                if exists.fetchone() is None:
                    c.execute(f"CREATE ROLE {owner} LOGIN")
            url = migrated(self.new_database(owner=owner))
            self._templates[owner] = url.rsplit("/", 1)[1]
        return self.new_database(self._templates[owner], owner=owner)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A PostgreSQL server of its own in a temporary directory, on
    loopback at a free port; a test may stop, start and restart it
    (`private_postgres`) without touching the session's shared one."""

    def __init__(self, *, fsync: bool = False) -> None:
        self.fsync = fsync
        self.root = Path(tempfile.mkdtemp(prefix="mxg-pg-"))
        self.data = self.root / "data"
        if _AS:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        initdb = [
            *(str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres"),
            *("-A", "trust", "-E", "UTF8"),
        ]
        subprocess.run([*_AS, *initdb], check=True, capture_output=True)
        self.port = _free_port()

    def _ctl(self, *args: str) -> None:
        # fsync off for tests: they kill processes, never the machine; a
        # commit's durability against power loss is PostgreSQL's own
        # (synchronous_commit stays on, so a commit is in the WAL when it
        # returns). On for measurements (bench/store_path.py).
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories=''"
            f" -c fsync={'on' if self.fsync else 'off'}"
        )
        pg_ctl = [*_AS, str(BIN / "pg_ctl"), "-D", str(self.data)]
        subprocess.run(
            [*pg_ctl, "-o", opts, "-l", str(self.root / "log"), "-w", *args],
            check=True,
            capture_output=True,
        )

    def start(self) -> Server:
        self._ctl("start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """``fast`` ends every session (the relay's connection breaks);
        ``immediate`` is a crash of the server."""
        self._ctl("-m", mode, "stop")

    def hold_wal(self) -> None:
        """The WAL writer waits 10 s between rounds (its longest), not
        0.2 s: a commit that did not wait for the WAL flush stays that long
        in the server's memory alone, so that a crash (``immediate``) just
        after loses it unless something flushed it."""
        url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("ALTER SYSTEM SET wal_writer_delay = '10s'")
            c.execute("SELECT pg_reload_conf()")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def _server() -> Server:
    if not (BIN / "postgres").exists():
        pytest.skip("PostgreSQL 15 is not installed (apt-get install postgresql)")
    return Server().start()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    server = _server()
    try:
        yield Postgres(server.root, server.port)
    finally:
        server.destroy()


@pytest.fixture
def private_postgres() -> Iterator[tuple[Server, Postgres]]:
    """A PostgreSQL server for one test alone, which it may stop and
    start (a restart under load): the session's shared server stays up
    for every other test."""
    server = _server()
    try:
        yield server, Postgres(server.root, server.port)
    finally:
        server.destroy()


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
    return pg.migrated_database()


def store_config(tmp_path: Path, url: str) -> Path:
    """A minimal relay configuration on the store at ``url``."""
    cfg = tmp_path / "mxg.toml"
    cfg.write_text(
        f'[server]\nhostname = "mx.example.test"\nlisten = ["127.0.0.1:0"]\n'
        f'[data]\ndirectory = "{tmp_path / "data"}"\nstore = "{url}"\n'
    )
    return cfg
