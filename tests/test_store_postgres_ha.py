"""The connection URL docs/cluster.md recommends for PostgreSQL HA
(`postgresql://h1,h2/mxg?target_session_attrs=read-write`), against real
servers: psycopg (libpq) accepts it, skips a host that is down, and
skips a streaming-replication standby for the primary. A standby of the
session's server is made with pg_basebackup, as an operator would."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from mxg.store import Store
from mxg.store.postgres import StoreUnreachable
from tests.support.cli import mxg
from tests.support.postgres import _AS, BIN, Postgres, _free_port, migrated


def _config(tmp_path: Path, url: str) -> Path:
    cfg = tmp_path / "mxg.toml"
    cfg.write_text(
        f'[server]\nhostname = "mx.example.test"\nlisten = ["127.0.0.1:0"]\n'
        f'[data]\ndirectory = "{tmp_path / "data"}"\nstore = "{url}"\n'
    )
    return cfg


@pytest.fixture
def standby(postgres: Postgres) -> Iterator[int]:
    """A hot standby streaming from the session's server; its port."""
    root = Path(tempfile.mkdtemp(prefix="mxg-standby-"))
    if _AS:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
    data = root / "data"
    # -R writes primary_conninfo and standby.signal: it starts as a standby.
    backup = [str(BIN / "pg_basebackup"), "-D", str(data), "-R", "-X", "stream", "-c", "fast"]
    backup += ["-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres"]
    subprocess.run([*_AS, *backup], check=True, capture_output=True)
    port = _free_port()
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' -c fsync=off"
    pg_ctl = [*_AS, str(BIN / "pg_ctl"), "-D", str(data)]
    log = str(root / "log")
    subprocess.run([*pg_ctl, "-o", opts, "-l", log, "-w", "start"], check=True, capture_output=True)
    try:
        yield port
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _multi(url: str, *ports: int, attrs: str = "") -> str:
    database = url.rsplit("/", 1)[1]
    hosts = ",".join(f"127.0.0.1:{p}" for p in ports)
    query = f"?target_session_attrs={attrs}" if attrs else ""
    return f"postgresql://postgres@{hosts}/{database}{query}"


def test_a_multi_host_url_skips_a_host_that_is_down(postgres: Postgres, tmp_path: Path) -> None:
    url = migrated(postgres.new_database())
    down = _free_port()  # nothing listens there
    both = _multi(url, down, postgres.port, attrs="read-write")
    store = Store(both)
    store.close()
    checked = mxg(_config(tmp_path, both), "config", "check")
    assert checked.returncode == 0, checked.stderr
    # Every host down: one line, naming the URL, as for one host.
    with pytest.raises(StoreUnreachable, match="cannot connect to the store at"):
        Store(_multi(url, down, _free_port()))


def test_read_write_skips_a_standby_for_the_primary(postgres: Postgres, standby: int) -> None:
    url = migrated(postgres.new_database())
    # The standby replays the new database; wait until it is there.
    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(_multi(url, standby)) as c:
                if c.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()[0]:
                    break
        except psycopg.OperationalError:
            pass
        assert time.monotonic() < deadline, "the standby did not replay the database"
        time.sleep(0.1)
    # Standby first: `any` (libpq's default) stays there, where no write goes.
    with psycopg.connect(_multi(url, standby, postgres.port)) as c:
        assert c.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            c.execute("CREATE TABLE t (x int)")
    # read-write passes over it to the primary; the store opens there.
    rw = _multi(url, standby, postgres.port, attrs="read-write")
    with psycopg.connect(rw) as c:
        assert c.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
    store = Store(rw)
    assert store.schema_version is not None
    store.close()
