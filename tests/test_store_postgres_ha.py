"""What docs/cluster.md says about PostgreSQL HA, against real servers.
The connection URL it recommends
(`postgresql://h1,h2/mxg?target_session_attrs=read-write`): psycopg
(libpq) accepts it, skips a host that is down, and skips a
streaming-replication standby for the primary. And synchronous
replication as it configures it (`synchronous_standby_names = 'ANY 1
(pg2)'`): a commit through mxg's connection does not return while no
synchronous standby has it. Standbys are made with pg_basebackup, as an
operator would."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from mxg.store import Store
from mxg.store.postgres import RECONNECT_FIRST, PgConnection, StoreUnreachable
from tests.support.cli import mxg
from tests.support.postgres import _AS, BIN, Postgres, Server, _free_port, migrated, store_config


def _private_root(prefix: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    if _AS:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
    return root


def _pg_ctl(data: Path, *args: str) -> None:
    subprocess.run(
        [*_AS, str(BIN / "pg_ctl"), "-D", str(data), *args], check=True, capture_output=True
    )


def _start(data: Path, port: int, settings: str = "") -> None:
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories=''"
    _pg_ctl(data, "-o", f"{opts} -c fsync=off {settings}", "-l", f"{data}.log", "-w", "start")


def _stop(data: Path) -> None:
    if (data / "postmaster.pid").exists():
        _pg_ctl(data, "-m", "immediate", "stop")


def _clone(primary_port: int, data: Path) -> None:
    """A standby's data directory: a base backup of the primary; -R
    writes primary_conninfo and standby.signal, so it starts as a standby."""
    backup = [str(BIN / "pg_basebackup"), "-D", str(data), "-R", "-X", "stream", "-c", "fast"]
    backup += ["-h", "127.0.0.1", "-p", str(primary_port), "-U", "postgres"]
    subprocess.run([*_AS, *backup], check=True, capture_output=True)


@pytest.fixture
def standby(postgres: Postgres) -> Iterator[int]:
    """A hot standby streaming from the session's server; its port."""
    root = _private_root("mxg-standby-")
    port = _free_port()
    _clone(postgres.port, root / "data")
    _start(root / "data", port)
    try:
        yield port
    finally:
        _stop(root / "data")
        shutil.rmtree(root, ignore_errors=True)


class SyncPair:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.primary = _free_port()
        self.standby = _free_port()
        self.standby_data = root / "standby"

    def url(self, port: int, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/{database}"

    def start_standby(self) -> None:
        # Its application_name (cluster_name) is what the primary's
        # synchronous_standby_names lists.
        _start(self.standby_data, self.standby, "-c cluster_name=pg2")

    def stop_standby(self) -> None:
        _stop(self.standby_data)


@pytest.fixture
def sync_pair() -> Iterator[SyncPair]:
    """A primary of its own (its settings are not the session server's)
    with one synchronous standby, configured as docs/cluster.md says."""
    if not (BIN / "pg_basebackup").exists():
        pytest.skip("PostgreSQL 15 is not installed")
    pair = SyncPair(_private_root("mxg-sync-"))
    primary = pair.root / "primary"
    initdb = [str(BIN / "initdb"), "-D", str(primary), "-U", "postgres", "-A", "trust", "-N"]
    subprocess.run([*_AS, *initdb], check=True, capture_output=True)
    sync = "-c synchronous_standby_names='ANY 1 (pg2)' -c synchronous_commit=on"
    _start(primary, pair.primary, sync)
    try:
        _clone(pair.primary, pair.standby_data)
        pair.start_standby()
        yield pair
    finally:
        pair.stop_standby()
        _stop(primary)
        shutil.rmtree(pair.root, ignore_errors=True)


# What docs/cluster.md adds to the URL so that a dead primary's
# connection fails in seconds.
_TCP = "keepalives_idle=5&keepalives_interval=2&keepalives_count=3&tcp_user_timeout=10000"


def _multi(url: str, *ports: int, attrs: str = "", tcp: bool = False) -> str:
    database = url.rsplit("/", 1)[1]
    hosts = ",".join(f"127.0.0.1:{p}" for p in ports)
    params = ([f"target_session_attrs={attrs}"] if attrs else []) + ([_TCP] if tcp else [])
    query = "?" + "&".join(params) if params else ""
    return f"postgresql://postgres@{hosts}/{database}{query}"


def test_a_multi_host_url_skips_a_host_that_is_down(postgres: Postgres, tmp_path: Path) -> None:
    url = migrated(postgres.new_database())
    down = _free_port()  # nothing listens there
    both = _multi(url, down, postgres.port, attrs="read-write", tcp=True)
    store = Store(both)
    store.close()
    checked = mxg(store_config(tmp_path, both), "config", "check")
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
    rw = _multi(url, standby, postgres.port, attrs="read-write", tcp=True)
    with psycopg.connect(rw) as c:
        assert c.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
    store = Store(rw)
    assert store.schema_version is not None
    store.close()


def test_after_a_lost_connection_the_host_that_answered_is_tried_first(
    postgres: Postgres, private_postgres: tuple[Server, Postgres]
) -> None:
    """libpq tries a multi-host URL's hosts in the URL's order; after a
    failover that is the old primary first, whose vanished host cost each
    connection its whole connect timeout, at every reconnect. The host a
    connection was lost on goes last, the one that answered first."""
    first, _ = private_postgres
    url = _multi("x/postgres", first.port, postgres.port, attrs="read-write", tcp=True)

    def port(conn: PgConnection) -> int:
        return int(conn.execute("SELECT inet_server_port()").fetchone()[0])

    relay = PgConnection(url)
    assert port(relay) == first.port, "the URL's order while nothing is known"
    # In a transaction, so that the loss is found by a statement (an idle
    # connection the server ended is opened again before one).
    relay.execute("BEGIN")
    first.stop("immediate")
    with pytest.raises(StoreUnreachable, match="lost the connection"):
        port(relay)
    time.sleep(RECONNECT_FIRST)
    assert port(relay) == postgres.port
    # The first host is back, read-write too: a new connection still goes
    # to the one that answered.
    first.start()
    other = PgConnection(url)
    assert port(other) == postgres.port
    other.close()
    relay.close()


def test_a_connection_lost_on_a_server_reopens_the_others_there(postgres: Postgres) -> None:
    """A vanished host resets nothing: a connection that was idle on it
    would wait out its own timeout at its next statement, each in turn.
    Once one connection is lost on a server, the others idle there open
    again before their next statement; one in a transaction stays."""
    url = postgres.url()

    def pid(conn: PgConnection) -> int:
        return int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])

    lost, idle, busy = PgConnection(url), PgConnection(url), PgConnection(url)
    before = pid(idle)
    lost.execute("BEGIN")  # the loss found by a statement, as in `relay` above
    busy.execute("BEGIN")
    busy_pid = pid(busy)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("SELECT pg_terminate_backend(%s)", (pid(lost),))
    with pytest.raises(StoreUnreachable, match="lost the connection"):
        pid(lost)
    assert pid(idle) != before, "opened again"
    again = pid(idle)
    assert pid(idle) == again, "once"
    assert pid(busy) == busy_pid, "a transaction is not cut"
    busy.execute("COMMIT")
    for conn in (lost, idle, busy):
        conn.close()


def _replication(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as c:
        rows = c.execute("SELECT application_name, sync_state FROM pg_stat_replication")
        return [(r[0], r[1]) for r in rows.fetchall()]


def _until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _write_in_thread(url: str, domain: str) -> tuple[threading.Thread, dict[str, object]]:
    """An insert through mxg's own connection class, in autocommit (the
    commit is the statement), with a statement_timeout that does not
    bound the wait for the standby; what it did lands in the dict."""
    done: dict[str, object] = {}
    conn = PgConnection(url)
    notices: list[str] = []
    conn.conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    conn.execute("SET statement_timeout = '1s'")

    def write() -> None:
        try:
            conn.execute(
                "INSERT INTO suspended_domains (domain, since_ms, actor, reason)"
                " VALUES (?, 0, 'test', '')",
                (domain,),
            )
            done["returned"] = time.monotonic()
        except (psycopg.Error, StoreUnreachable) as e:
            done["error"] = e
        done["notices"] = notices
        conn.close()

    done["conn"] = conn
    t = threading.Thread(target=write)
    t.start()
    return t, done


def test_a_commit_waits_until_the_synchronous_standby_has_it(sync_pair: SyncPair) -> None:
    pair = sync_pair
    _until(
        lambda: _replication(pair.url(pair.primary)) == [("pg2", "quorum")],
        "the standby did not become the synchronous one",
    )
    url = migrated(pair.url(pair.primary))
    # The standby goes: a commit waits (statement_timeout does not end
    # the wait), so nothing could be acknowledged that only the primary has.
    pair.stop_standby()
    t, done = _write_in_thread(url, "waits.example")
    time.sleep(2.5)
    assert t.is_alive() and not done.get("returned")
    # It comes back, catches up, and the commit returns; the row is there.
    pair.start_standby()
    t.join(30)
    assert "returned" in done and "error" not in done, done
    standby = pair.url(pair.standby)
    with psycopg.connect(standby) as c:
        rows = c.execute("SELECT domain FROM suspended_domains").fetchall()
    assert rows == [("waits.example",)]


def test_a_cancelled_wait_returns_as_if_committed(sync_pair: SyncPair) -> None:
    # Why docs/cluster.md says never to cancel mxg's statements (and why
    # mxg itself never cancels one): PostgreSQL then ends the wait with a
    # mere WARNING, and the commit returns normally although no standby
    # has it. Terminating the session instead makes it an error.
    pair = sync_pair
    _until(lambda: _replication(pair.url(pair.primary)) == [("pg2", "quorum")], "no sync standby")
    url = migrated(pair.url(pair.primary))
    pair.stop_standby()
    t, done = _write_in_thread(url, "cancelled.example")
    time.sleep(1.5)
    conn = done["conn"]
    assert isinstance(conn, PgConnection)
    conn.conn.cancel()
    t.join(30)
    assert "returned" in done and "error" not in done, done
    assert done["notices"] == ["canceling wait for synchronous replication due to user request"]
    t, done = _write_in_thread(url, "terminated.example")
    time.sleep(1.5)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE %s",
            ("INSERT INTO suspended_domains%",),
        )
    t.join(30)
    # mxg's connection reports the broken session as the store being
    # unreachable (and opens a new one for the next statement).
    assert isinstance(done.get("error"), StoreUnreachable), done
