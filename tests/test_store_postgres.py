"""The PostgreSQL store's own behaviour (issue 18 item 1): its versioned
schema (`mxg store migrate`, a start refused on an older one), a
connection error as one line, and writers serialised as on SQLite.
What both stores share runs on both (the `store_at` fixture)."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import cast

import psycopg
import pytest

from mxg.boundary import Envelope, Recipient
from mxg.errors import StoreError, StoreOutdated
from mxg.pipeline.storage import open_store
from mxg.store import NewMessage, Store
from mxg.store import postgres as postgres_module
from mxg.store.audit import AuditEntry
from mxg.store.db import NodeTaken
from mxg.store.postgres import PgConnection, StoreUnreachable, batched, redact, to_postgres
from mxg.store.schema import SCHEMA_VERSION
from tests.support.cli import mxg
from tests.support.pgproxy import CuttingProxy, cutting_proxy
from tests.support.postgres import Postgres, Server, migrated, store_config

TABLES = {
    "messages",
    "recipients",
    "attempts",
    "events",
    "audit_blocks",
    "audit_messages",
    "audit_checkpoints",
    "partners",
    "tlsrpt_sessions",
    "sts_policies",
    "decision_tokens",
    "carriers",
    "suspended_domains",
    "tlsrpt_sent",
    "tlsrpt_requests",
    "schema_version",
}


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as c:
        rows = c.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


def _known_once_reconnected(store: Store, deadline: float) -> set[str]:
    """`store.known_ids()` once its connection is back, by `deadline`
    (a `time.monotonic()`)."""
    while True:
        try:
            return store.known_ids()
        except StoreUnreachable:
            assert time.monotonic() < deadline, "no reconnection within 10 s"
            time.sleep(0.05)


def test_store_migrate_brings_an_empty_database_to_the_current_schema(
    postgres: Postgres, tmp_path: Path
) -> None:
    url = postgres.new_database()
    cfg = store_config(tmp_path, url)
    with pytest.raises(
        StoreOutdated, match=r"schema version 0, this mxg needs .*mxg store migrate"
    ):
        Store(url)
    out = mxg(cfg, "store", "migrate")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{url}: schema version 0 -> {SCHEMA_VERSION}\n"
    assert _tables(url) >= TABLES
    again = mxg(cfg, "store", "migrate")
    assert again.stdout == f"{url}: schema version {SCHEMA_VERSION}, up to date\n"
    Store(url).close()


def test_a_relay_refuses_to_start_on_an_older_schema_naming_the_command(
    postgres: Postgres, tmp_path: Path
) -> None:
    url = postgres.new_database()
    cfg = store_config(tmp_path, url)
    checked = mxg(cfg, "config", "check")
    assert checked.returncode == 78
    assert checked.stderr == (
        f"mxg: {cfg}: data.store: the store at {url} has schema version 0, this mxg needs"
        f" {SCHEMA_VERSION}: run `mxg store migrate`\n"
    )
    started = subprocess.run(
        [sys.executable, "-m", "mxg", "-c", str(cfg), "run"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode != 0
    assert "Traceback" not in started.stderr
    assert "run `mxg store migrate`" in started.stderr
    # Nothing was created by the refused start.
    assert _tables(url) == set()


def test_a_newer_schema_is_refused_too(postgres: Postgres, tmp_path: Path) -> None:
    url = postgres.new_database()
    assert mxg(store_config(tmp_path, url), "store", "migrate").returncode == 0
    with psycopg.connect(url) as c:
        c.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreOutdated, match="newer than this mxg's"):
        Store(url)


def test_an_unreachable_store_is_one_line_without_the_password(
    postgres: Postgres, tmp_path: Path
) -> None:
    url = f"postgresql://mxg:secret@127.0.0.1:{postgres.port + 1}/nowhere"
    with pytest.raises(StoreUnreachable) as e:
        Store(url)
    assert "secret" not in str(e.value) and "\n" not in str(e.value)
    assert redact(url) in str(e.value)
    checked = mxg(store_config(tmp_path, url), "config", "check")
    assert checked.returncode == 78
    lines = checked.stderr.splitlines()
    assert len(lines) == 1 and "data.store: cannot connect to the store at" in lines[0]
    assert "secret" not in checked.stderr
    listed = mxg(store_config(tmp_path, url), "queue", "list")
    assert listed.returncode != 0 and len(listed.stderr.splitlines()) == 1


def test_a_data_store_that_is_not_a_postgresql_url_is_a_config_error(tmp_path: Path) -> None:
    out = mxg(store_config(tmp_path, "mysql://x/y"), "config", "check")
    assert out.returncode == 78
    assert "data.store: must be empty (the embedded SQLite store) or a postgresql:// URL" in (
        out.stderr
    )


def test_writers_are_serialised_as_on_sqlite(postgres: Postgres, tmp_path: Path) -> None:
    # The audit chain appends one block after the tail each transaction
    # read (store/audit.py): a second writer waits for the first to end.
    url = postgres.new_database()
    assert mxg(store_config(tmp_path, url), "store", "migrate").returncode == 0
    first, second = Store(url), Store(url)
    entered = threading.Event()
    order: list[str] = []

    def other() -> None:
        entered.set()
        with second.transaction():
            order.append("second")

    with first.transaction():
        t = threading.Thread(target=other)
        t.start()
        entered.wait()
        time.sleep(0.3)
        order.append("first")
    t.join(10)
    assert order == ["first", "second"]


def test_rule11a_one_relay_per_node_name_on_a_postgresql_store(
    postgres: Postgres, tmp_path: Path
) -> None:
    # A node's recovery takes its local spool as the truth about the
    # messages it owns: a second process under the same name would share
    # them. Differently named nodes share the store.
    url = postgres.new_database()
    assert mxg(store_config(tmp_path, url), "store", "migrate").returncode == 0
    first = open_store(url, "n1")
    with pytest.raises(StoreError, match="a relay named 'n1' already uses the store at"):
        open_store(url, "n1")
    second = open_store(url, "n2")
    assert (first.node, second.node) == ("n1", "n2")
    Store(url).close()  # the command line still reads it
    first.close()
    open_store(url, "n1").close()
    second.close()


def test_rule11_repairable_commits_are_flushed_by_sync(postgres: Postgres) -> None:
    # As on SQLite (synchronous=NORMAL and one fsync of the WAL): a batch a
    # restart repairs commits without waiting for the WAL flush, and
    # `sync`, before any spool file goes, waits for it.
    store = Store(migrated(postgres.new_database()))
    try:
        with store._not_synced(), store.transaction() as db:
            assert db.execute("SHOW synchronous_commit").fetchone()[0] == "off"
        with store.transaction() as db:
            assert db.execute("SHOW synchronous_commit").fetchone()[0] == "on"
        store.sync()
        store.sync()  # nothing left: still a flush, still fine
    finally:
        store.close()


def test_rule11_a_sync_makes_commits_that_did_not_wait_survive_a_crash(
    private_postgres: tuple[Server, Postgres],
) -> None:
    # The server crashes right after the sync, its WAL writer held back:
    # only the sync's own flush can have written the first commit. The
    # second, made after the sync, shows that the crash loses what no
    # flush covered.
    server, pg = private_postgres
    server.hold_wal()
    url = migrated(pg.new_database())
    store = Store(url)
    try:
        for queue_id in ("synced", "not-synced"):
            with store._not_synced(), store.transaction() as db:
                db.execute(
                    "INSERT INTO spool_bodies (queue_id, raw) VALUES (?, ?)", (queue_id, b"x")
                )
            if queue_id == "synced":
                store.sync()
        server.stop("immediate")
        server.start()
        with psycopg.connect(url) as c:
            rows = c.execute("SELECT queue_id FROM spool_bodies").fetchall()
        assert [r[0] for r in rows] == ["synced"]
    finally:
        store.close()


def test_rule11_sync_fails_when_the_server_started_again_since_a_commit(
    postgres: Postgres,
) -> None:
    # A commit that did not wait for the WAL flush is lost if the server
    # stops before flushing it; a flush on the next start of the server
    # must not pass for it, or the spool files of lost results would go.
    store = Store(migrated(postgres.new_database()))
    conn = cast(PgConnection, store.db)
    try:
        started = conn.server_started
        # This connection as one made to an earlier start of the server.
        conn.server_started = started - timedelta(minutes=5)
        with store._not_synced(), store.transaction():
            pass
        conn.server_started = started
        for _ in range(2):  # and it stays failed: the loss is not forgotten
            with pytest.raises(OSError, match="started again since commits"):
                store.sync()
    finally:
        store.close()


def test_rule11_a_commit_made_while_a_sync_flushes_stays_for_the_next_sync(
    private_postgres: tuple[Server, Postgres],
) -> None:
    """A commit that did not wait for the WAL flush, made while a sync's
    flush is under way (the sync runs in the finisher's thread), is not
    covered by it: a crash then may lose it, and the store must know
    that (`doubtful`, a sync refused) instead of letting spool files go
    on a flush of the next start."""
    server, pg = private_postgres
    server.hold_wal()
    url = migrated(pg.new_database())

    def insert(queue_id: str) -> None:
        with store._not_synced(), store.transaction() as db:
            db.execute("INSERT INTO spool_bodies (queue_id, raw) VALUES (?, ?)", (queue_id, b"x"))

    with cutting_proxy(server.port) as proxy:
        store = Store(proxy.url(url))
        try:
            insert("before")
            proxy.hold_answer_when_sent(b"pg_logical_emit_message")
            syncing = threading.Thread(target=store.sync)
            syncing.start()
            assert proxy.held.wait(10), "the sync's flush under way"
            insert("during")
            proxy.release()
            syncing.join(10)
            server.stop("immediate")
            server.start()
            with psycopg.connect(url) as c:
                rows = c.execute("SELECT queue_id FROM spool_bodies").fetchall()
            assert [r[0] for r in rows] == ["before"], "the flush did not cover the second"
            deadline = time.monotonic() + 10
            _known_once_reconnected(store, deadline)
            assert store.doubtful(), "a commit no flush covered, on the start before"
            while True:  # the sync's own connection, which the crash broke, back first
                with pytest.raises(OSError, match=r"cannot flush|started again") as refused:
                    store.sync()
                if "cannot flush the store's WAL" not in str(refused.value):
                    break
                assert time.monotonic() < deadline, "the sync's connection not back in 10 s"
                time.sleep(0.1)
            assert "started again since commits" in str(refused.value)
        finally:
            store.close()


def test_executemany_sends_rows_in_one_statement_with_the_same_effect(
    postgres: Postgres,
) -> None:
    # A row INSERT becomes one over an array per column (unnest), an
    # UPDATE or DELETE of constants keyed by one value becomes `= ANY`;
    # rowcount and conflicts as row by row.
    store = Store(migrated(postgres.new_database()))
    try:
        ids = [f"q{i}" for i in range(40_000)]
        with store.transaction() as db:
            cur = db.executemany(
                "INSERT OR IGNORE INTO audit_messages (queue_id, last_seq) VALUES (?,?)",
                [(q, 1) for q in [*ids, "q1", "q2"]],
            )
            assert cur.rowcount == 40_000
            cur = db.executemany(
                "DELETE FROM audit_messages WHERE queue_id=?", [(q,) for q in ids[:10]] * 2
            )
            assert cur.rowcount == 10
        assert store.db.execute("SELECT count(*) FROM audit_messages").fetchone()[0] == 39_990
    finally:
        store.close()
    # The hot path's statements take the one-statement way.
    for sql in (
        "INSERT INTO recipients (queue_id, idx, address, domain, notify, orcpt, class)"
        " VALUES (?,?,?,?,?,?,?)",
        "INSERT OR IGNORE INTO audit_messages (queue_id, last_seq) VALUES (?,?)",
        "UPDATE messages SET state='done' WHERE queue_id=?",
    ):
        assert batched(to_postgres(sql, returning=False)[0]) is not None, sql
    # Not what may touch a row twice or depends on the row it changes.
    for sql in (
        "UPDATE recipients SET attempts=attempts+1 WHERE queue_id=?",
        "UPDATE recipients SET next_ms=0 WHERE queue_id=? AND idx=?",
        "INSERT INTO partners (domain) VALUES (?) ON CONFLICT (domain) DO UPDATE SET domain=?",
    ):
        assert batched(to_postgres(sql, returning=False)[0]) is None, sql


def test_bodies_go_in_one_statement_byte_for_byte(postgres: Postgres) -> None:
    # Sent as a binary bytea array, not hex in an array's text: every
    # octet value, an empty body and one of several pages come back as
    # they went in.
    bodies = {"b0": bytes(range(256)) * 20, "b1": b"", "b2": b'\\x"{},\0' * 5000}
    store = Store(migrated(postgres.new_database()))
    try:
        with store.transaction() as db:
            cur = db.executemany(
                "INSERT OR IGNORE INTO spool_bodies (queue_id, raw) VALUES (?,?)",
                list(bodies.items()),
            )
            assert cur.rowcount == 3
        rows = store.db.execute("SELECT queue_id, raw FROM spool_bodies").fetchall()
        assert {r[0]: bytes(r[1]) for r in rows} == bodies
    finally:
        store.close()


def test_a_broken_connection_comes_back_by_itself(
    private_postgres: tuple[Server, Postgres],
) -> None:
    """PostgreSQL restarts: statements raise StoreUnreachable (what the
    relay waits out) until the server is back, then the connection is
    opened again without a restart of the store, and the watcher hears
    both changes once each."""
    server, pg = private_postgres
    store = Store(migrated(pg.new_database()))
    heard: list[bool] = []
    store.watch_reachability(heard.append)
    try:
        assert store.known_ids() == set()
        server.stop("fast")
        with pytest.raises(StoreUnreachable):
            store.known_ids()
        with pytest.raises(StoreUnreachable):  # within the backoff: not even tried
            store.known_ids()
        assert heard == [False]
        server.start()
        deadline = time.monotonic() + 10
        assert _known_once_reconnected(store, deadline) == set()
        assert heard == [False, True]
        with store.transaction() as db:  # and writes go on
            db.execute("INSERT INTO spool_bodies (queue_id, raw) VALUES (?, ?)", ("Q1", b"x"))
        assert store.spool_body("Q1") == b"x"
    finally:
        store.close()


def test_a_connection_lost_while_the_node_lock_is_taken_again_is_unreachable(
    postgres: Postgres,
) -> None:
    """A reconnection takes the node's session lock again (rule 11a); a
    connection that breaks right then (PostgreSQL ending sessions again,
    as an operator's `pg_terminate_backend` in a loop does) is the store
    unreachable a while longer, as any other break: never an error the
    relay does not expect, which ended it. Once back, the lock is held."""
    url = postgres.migrated_database()
    with cutting_proxy(postgres.port) as proxy:
        store = open_store(proxy.url(url), "n1")
        try:
            proxy.cut_all()
            with pytest.raises(StoreUnreachable):
                store.known_ids()
            proxy.cut_when_sent(b"pg_try_advisory_lock")
            deadline = time.monotonic() + 10
            while not proxy.cut.is_set():
                assert time.monotonic() < deadline, "no reconnection within 10 s"
                with pytest.raises(StoreUnreachable):
                    store.known_ids()
                time.sleep(0.05)
            assert _known_once_reconnected(store, deadline) == set()
            with pytest.raises(StoreError, match="a relay named 'n1' already uses the store"):
                open_store(url, "n1")
        finally:
            store.close()


def test_rule11a_a_relay_whose_node_name_was_taken_while_it_was_cut_off_stops(
    postgres: Postgres,
) -> None:
    """While a relay's connection is down its node lock is free, and a
    second relay of the same name may start and take it. The first one,
    reconnected, must not go on as that node (both would deliver its
    messages): every store call then refuses, naming the cause."""
    url = postgres.migrated_database()
    with cutting_proxy(postgres.port) as proxy:
        first = open_store(proxy.url(url), "n1")
        second = None
        try:
            proxy.cut_all()
            with pytest.raises(StoreUnreachable):
                first.known_ids()
            deadline = time.monotonic() + 10
            while second is None:  # once PostgreSQL noticed the cut session
                try:
                    second = open_store(url, "n1")
                except StoreError:
                    assert time.monotonic() < deadline, "the lock never came free"
                    time.sleep(0.05)
            while True:
                try:
                    first.known_ids()
                except NodeTaken:
                    break
                except StoreUnreachable:
                    assert time.monotonic() < deadline, "no reconnection within 10 s"
                    time.sleep(0.05)
                else:
                    pytest.fail("reconnected, it went on as n1 beside the second relay")
            with pytest.raises(NodeTaken, match="a relay named 'n1' took the store"):
                first.known_ids()
            assert second.known_ids() == set(), "the second relay is n1 now"
        finally:
            first.close()
            if second is not None:
                second.close()


def test_rule11a_a_relay_cut_off_takes_its_node_lock_back_from_its_own_old_session(
    postgres: Postgres,
) -> None:
    """A network partition ends the relay's connection on its side alone:
    PostgreSQL keeps the old session, and its node lock, until it writes
    to it (hours with the default TCP keepalive). The relay, reconnected,
    finds its own old session holding the lock, not another relay: it
    ends that session and goes on as the node."""
    url = postgres.migrated_database()
    with cutting_proxy(postgres.port) as proxy:
        first = open_store(proxy.url(url), "n1")
        try:
            proxy.cut_clients()
            with pytest.raises(StoreUnreachable):
                first.known_ids()
            deadline = time.monotonic() + 10
            assert _known_once_reconnected(first, deadline) == set()
            with pytest.raises(StoreError, match="a relay named 'n1' already uses the store"):
                open_store(url, "n1")
        finally:
            first.close()


def test_a_partition_inside_a_transaction_holds_the_writers_lock_only_briefly(
    postgres: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partition that cuts a relay off inside a transaction leaves the
    server's session of it idle in that transaction, with the writers'
    lock, until the server hears from the client again: hours with the
    default TCP keepalive, and every writer of the cluster waits meanwhile.
    The relay's sessions are ended by the server after
    `IDLE_IN_TRANSACTION_MS` idle inside a transaction."""
    monkeypatch.setattr(postgres_module, "IDLE_IN_TRANSACTION_MS", 1000)
    url = postgres.migrated_database()
    with cutting_proxy(postgres.port) as proxy:
        cut_off, other = Store(proxy.url(url)), Store(url)
        try:
            with pytest.raises(StoreUnreachable):
                _cut_off_in_a_transaction(cut_off, proxy)
            wrote = threading.Event()

            def write() -> None:
                other.audit([AuditEntry("note", "", "operator", {"why": "after the cut"})])
                wrote.set()

            writer = threading.Thread(target=write, daemon=True)
            writer.start()
            # Without the timeout the ghost session keeps the lock: no write.
            assert wrote.wait(15), "the writers' lock is still held by the cut-off session"
        finally:
            cut_off.close()
            other.close()


def _cut_off_in_a_transaction(store: Store, proxy: CuttingProxy) -> None:
    """A partition while `store` holds the writers' lock: its COMMIT
    meets a connection cut on its side alone."""
    with store.transaction() as db:
        db.execute("SELECT 1")  # the lock is taken and held now
        proxy.cut_clients()


def _received(prefix: str, n: int) -> list[NewMessage]:
    return [
        NewMessage(
            Envelope(
                queue_id=f"{prefix}{i}",
                received_ms=1,
                sender="s@internal.test",
                recipients=[Recipient(f"u{i}@good.test")],
                origin="smtp",
                size=10,
            ),
            "normal",
            {},
            ["normal"],
        )
        for i in range(n)
    ]


def test_rule11b_an_append_after_a_moved_tail_runs_again_and_keeps_one_chain(
    postgres: Postgres,
) -> None:
    # The relay's intake appends after the tail it wrote last without
    # reading it (store/db.py, `retrying`). An operator's block in between
    # is refused by the unique index on a block's first record, and the
    # transaction runs again from the tail as it is: one chain, no gap.
    url = migrated(postgres.new_database())
    relay, operator = Store(url), Store(url)
    try:
        relay.read_raws = lambda ids: [f"raw {q}".encode() for q in ids]
        relay.add_messages(_received("A", 2), durable=False)
        assert relay._writers.tail is not None and relay._writers.tail[0] == 2  # remembered
        operator.audit([AuditEntry("note", "", "operator", {"why": "test"})])
        relay.add_messages(_received("B", 2), durable=False)
        blocks = list(relay.audit_blocks())
        assert [(b.first_seq, b.last_seq) for b in blocks] == [(1, 2), (3, 3), (4, 5)]
        assert all(b.prev == a.hash for a, b in itertools.pairwise(blocks))
        assert relay.known_ids() == {"A0", "A1", "B0", "B1"}
        assert relay._writers.tail is not None and relay._writers.tail[0] == 5
        # Another writer is about: the tail is read for a while.
        assert relay._writers.contended_until > time.monotonic()
    finally:
        relay.close()
        operator.close()
