"""The relay's hot path on PostgreSQL. The intake's commit as one
statement (store/intake.py, `received_statement`): the rows, the spool
files and the audit block its pipelined transaction writes, in one round
trip, with the same guarantees: one audit chain when another writer
appended (rule 11b), and a commit whose answer was lost counted as in
doubt (rule 11). And the plans of the hot path's statements, made once
by key on the companions' connections (store/postgres.py,
`_KEYED_PLANS`)."""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mxg.audit_trail import verify
from mxg.boundary import Envelope, Recipient
from mxg.signing import SigningKey
from mxg.store import NewMessage, Store
from mxg.store.audit import AuditEntry
from mxg.store.intake import LARGE_BODY, received_statement
from mxg.store.postgres import PgConnection, StoreUnreachable, to_postgres
from mxg.store.queue import _DONE_AND_AUDITED, _FINISHED, _RECORD_AGAIN_AS_ARRAYS
from tests.support.pgproxy import RECEIVED_STATEMENT, CuttingProxy, cutting_proxy
from tests.support.postgres import Postgres, migrated


def _received(prefix: str, n: int, *, rcpts: int = 2) -> list[NewMessage]:
    return [
        NewMessage(
            Envelope(
                queue_id=f"{prefix}{i}",
                received_ms=1_000 + i,
                sender=f"s{i}@example.test",
                recipients=[Recipient(f"u{j}@d{j}.test", notify=["FAILURE"]) for j in range(rcpts)],
                origin="smtp",
                size=100 + i,
                message_id=f"<{prefix}{i}@example.test>",
                client_addr="127.0.0.1",
            ),
            "high",
            {"fired": [{"rule": "marker"}]},
            ["high", "normal"][:rcpts],
        )
        for i in range(n)
    ]


def _body(queue_id: str) -> bytes:
    return f"Subject: {queue_id}\r\n\r\nbody of {queue_id}\r\n".encode()


class _Counting:
    """How many intake commits went as one statement."""

    def __init__(self, store: Store) -> None:
        self.one_statement = 0
        inner = store.statement_transaction

        def counted(build: Callable[[], Any]) -> Any:
            rows = inner(build)
            self.one_statement += rows is not None
            return rows

        store.statement_transaction = counted  # type: ignore[method-assign]


@pytest.fixture
def relay(postgres: Postgres) -> Iterator[tuple[Store, str]]:
    url = migrated(postgres.new_database())
    store = Store(url)
    store.node = "n1"
    store.read_raws = lambda ids: [_body(q) for q in ids]
    try:
        yield store, url
    finally:
        store.close()


def _chain_verifies(store: Store, tmp_path: Path) -> bool:
    return verify(store, SigningKey.load_or_create(tmp_path).verifier()).ok


def _rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as c:
        return [tuple(r) for r in c.execute(sql).fetchall()]


def test_received_messages_after_the_first_batch_commit_as_one_statement(
    relay: tuple[Store, str], postgres: Postgres, tmp_path: Path
) -> None:
    store, url = relay
    counting = _Counting(store)
    ids, suspended = store.add_received(_received("A", 2))
    assert (ids, counting.one_statement) == (["A0", "A1"], 0), "no audit tail known yet"
    store.suspend("d1.test", "operator", "test")  # its record follows the tail
    ids, suspended = store.add_received(_received("B", 3))
    assert ids == ["B0", "B1", "B2"]
    assert counting.one_statement == 1
    assert suspended == frozenset({"d1.test"})

    # What the pipelined transaction writes, the same.
    reference = Store(migrated(postgres.new_database()))
    try:
        reference.node = "n1"
        reference.read_raws = store.read_raws
        reference.add_messages(_received("B", 3), durable=False)
        for table, order in (("messages", "queue_id"), ("recipients", "queue_id, idx")):
            query = f"SELECT * FROM {table} WHERE queue_id LIKE 'B%' ORDER BY {order}"
            assert _rows(url, query) == _rows(reference.url, query), table
    finally:
        reference.close()
    assert _rows(url, "SELECT queue_id, raw FROM spool_bodies WHERE queue_id LIKE 'B%'") == [
        (q, _body(q)) for q in ("B0", "B1", "B2")
    ]
    blocks = list(store.audit_blocks())
    assert [(b.first_seq, b.last_seq) for b in blocks] == [(1, 2), (3, 3), (4, 6)]
    assert _chain_verifies(store, tmp_path)
    assert [r.kind for r in store.audit_of("B2")] == ["received"]
    assert store._writers.tail is not None and store._writers.tail[0] == 6


def test_rule11b_a_one_statement_commit_after_a_moved_tail_runs_again_and_keeps_one_chain(
    relay: tuple[Store, str], tmp_path: Path
) -> None:
    store, url = relay
    counting = _Counting(store)
    store.add_received(_received("A", 1))
    operator = Store(url)
    try:
        operator.audit([AuditEntry("note", "", "operator", {"why": "test"})])
    finally:
        operator.close()
    ids, _ = store.add_received(_received("B", 2))
    assert ids == ["B0", "B1"]
    assert counting.one_statement == 0, "refused, then run again as a transaction"
    blocks = list(store.audit_blocks())
    assert [(b.first_seq, b.last_seq) for b in blocks] == [(1, 1), (2, 2), (3, 4)]
    assert all(b.prev == a.hash for a, b in itertools.pairwise(blocks))
    assert _chain_verifies(store, tmp_path)
    assert store.known_ids() == {"A0", "B0", "B1"}


def test_a_batch_with_a_large_body_is_stored_by_copy_exactly(relay: tuple[Store, str]) -> None:
    store, url = relay
    counting = _Counting(store)
    large = b"Subject: big\r\n\r\n" + b"x" * LARGE_BODY + b"\r\n"
    store.add_received(_received("A", 1))
    store.read_raws = lambda ids: [large if q == "B1" else _body(q) for q in ids]
    assert store.add_received(_received("B", 2))[0] == ["B0", "B1"]
    assert counting.one_statement == 0
    assert _rows(url, "SELECT raw FROM spool_bodies WHERE queue_id = 'B1'") == [(large,)]


def test_an_id_given_twice_in_a_batch_is_stored_once(relay: tuple[Store, str]) -> None:
    store, url = relay
    store.add_received(_received("A", 1))
    twice = _received("B", 1) * 2
    assert store.add_received(twice)[0] == ["B0"]
    assert _rows(url, "SELECT count(*) FROM recipients WHERE queue_id = 'B0'") == [(2,)]


@pytest.fixture
def through_proxy(postgres: Postgres) -> Iterator[tuple[Store, str, CuttingProxy]]:
    url = migrated(postgres.new_database())
    with cutting_proxy(postgres.port) as proxy:
        store = Store(proxy.url(url))
        store.read_raws = lambda ids: [_body(q) for q in ids]
        try:
            yield store, url, proxy
        finally:
            store.close()


def test_rule11_a_one_statement_commit_whose_answer_was_lost_is_in_doubt(
    through_proxy: tuple[Store, str, CuttingProxy],
) -> None:
    store, url, proxy = through_proxy
    counting = _Counting(store)
    store.add_received(_received("A", 1))
    assert not store.answers_lost
    # The server commits the statement; its answer never arrives.
    proxy.hold_answer_when_sent(RECEIVED_STATEMENT)
    failed: list[BaseException] = []

    def commit() -> None:
        try:
            store.add_received(_received("B", 1))
        except BaseException as e:
            failed.append(e)

    worker = threading.Thread(target=commit)
    worker.start()
    assert proxy.held.wait(10), "the server answered the statement"
    proxy.cut_all()
    worker.join(10)
    assert [type(e) for e in failed] == [StoreUnreachable]
    assert _rows(url, "SELECT queue_id FROM messages ORDER BY queue_id") == [("A0",), ("B0",)]
    assert store.answers_lost, "committed or not, the relay cannot tell: repaired from the store"
    assert store._writers.tail is None, "the tail is read again"
    assert counting.one_statement == 0


def test_a_one_statement_commit_that_never_went_is_not_in_doubt(
    through_proxy: tuple[Store, str, CuttingProxy],
) -> None:
    store, _, proxy = through_proxy
    store.add_received(_received("A", 1))
    proxy.refuse()
    time.sleep(0.2)  # the cut reaches the client: its socket ends
    for batch in ("B", "C"):
        with pytest.raises(StoreUnreachable):
            store.add_received(_received(batch, 1))
        assert not store.answers_lost, "nothing was sent"


def _numbered(statement: str) -> str:
    """A statement as the store sends it, with numbered parameters (for
    PREPARE)."""
    text, _ = to_postgres(statement, returning=False)
    numbers = iter(range(1, 1000))
    return re.sub(r"%[sb]", lambda _: f"${next(numbers)}", text).replace("%%", "%")


@pytest.fixture
def companion(relay: tuple[Store, str]) -> Iterator[PgConnection]:
    """The connection of a companion of the relay's store (`Store.companion`)."""
    other = relay[0].companion()
    try:
        assert isinstance(other.db, PgConnection)
        yield other.db
    finally:
        other.close()


def test_the_hot_paths_statements_are_planned_by_key_however_young_the_tables(
    companion: PgConnection,
) -> None:
    # On a new, empty queue: the plan a companion keeps for each of the
    # hot path's statements reads rows by their keys, as it must once the
    # queue holds thousands (a sequential scan or a hash join over the
    # recipients, planned now and kept, would read them all per batch).
    conn = companion
    statements = {
        "received": received_statement(conn, durable=False),
        "results": _RECORD_AGAIN_AS_ARRAYS,
        "finished": _FINISHED.format(where="m.state IN ('active','held') AND m.queue_id = ANY(?)"),
        "done": _DONE_AND_AUDITED,
    }
    for name, statement in statements.items():
        text = _numbered(statement)
        conn.conn.execute(f"PREPARE {name} AS {text}")
        count = len(set(re.findall(r"\$(\d+)", text)))
        nulls = ", ".join(["NULL"] * count)
        conn.conn.execute("BEGIN")
        plan = "\n".join(r[0] for r in conn.conn.execute(f"EXPLAIN EXECUTE {name}({nulls})"))
        conn.conn.execute("ROLLBACK")
        if name in ("finished", "done"):  # the others' parameters are unnest's
            assert "$1" in plan, f"{name}: a plan kept for every run, not one for this run"
        for scan in ("Seq Scan on messages", "Seq Scan on recipients", "Seq Scan on attempts"):
            assert scan not in plan, f"{name}:\n{plan}"
        assert "Hash" not in plan and "Merge" not in plan, f"{name}:\n{plan}"


def test_a_companion_plans_by_key_again_after_its_connection_was_ended(
    relay: tuple[Store, str], companion: PgConnection
) -> None:
    # The server ended the session (a restart, `pg_terminate_backend`):
    # the connection opened again at the next statement keeps the setting.
    store, url = relay
    conn = companion
    assert conn.execute("SHOW plan_cache_mode").fetchone()[0] == "force_generic_plan"
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    deadline = time.monotonic() + 10
    while True:
        try:
            again = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            break
        except StoreUnreachable:
            assert time.monotonic() < deadline, "not connected again"
            time.sleep(0.05)
    assert again != pid
    settings = conn.execute(
        "SELECT current_setting('plan_cache_mode'), current_setting('enable_seqscan'),"
        " current_setting('jit')"
    ).fetchone()
    assert tuple(settings) == ("force_generic_plan", "off", "off")
    # The relay's own connection plans each run with its parameters, and
    # compiles none (`_NO_JIT`).
    assert store.db.execute("SHOW plan_cache_mode").fetchone()[0] == "force_custom_plan"
    assert store.db.execute("SHOW jit").fetchone()[0] == "off"


def test_the_due_query_walks_the_waiting_index_to_its_limit_on_young_tables(
    relay: tuple[Store, str],
) -> None:
    # A queue autovacuum has not analyzed yet: 40 active messages of 50
    # waiting recipients each, 40 of another node, and 1,000 delivered
    # ones whose old index entries are still there (as in the rcpts
    # benchmark, 30 s in). Costed on such tables, the join read every
    # active message for each recipient, or bitmap-scanned the whole
    # waiting range once per message.
    store, url = relay
    with psycopg.connect(url, autocommit=True) as c:
        for table in ("messages", "recipients"):  # stays unanalyzed for the test
            c.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        for prefix, count, node in (("q", 40, "n1"), ("d", 1000, "n1"), ("o", 40, "n2")):
            c.execute(
                "INSERT INTO messages (queue_id, received_ms, sender, size, origin, node)"
                " SELECT %s || g, g, 's@example.test', 100, 'smtp', %s"
                " FROM generate_series(1, %s) g",
                (prefix, node, count),
            )
            c.execute(
                "INSERT INTO recipients (queue_id, idx, address, domain, next_ms)"
                " SELECT %s || g, i, 'u' || i || '@' || d, d, g"
                " FROM generate_series(1, %s) g, generate_series(0, 49) i,"
                " LATERAL (SELECT 'r' || i %% 5 || '.test') AS domains(d)",
                (prefix, count),
            )
        c.execute("UPDATE recipients SET status = 'sent' WHERE queue_id LIKE 'd%'")
        c.execute("UPDATE messages SET state = 'done' WHERE queue_id LIKE 'd%'")
    before = _index_reads(store, url)
    due = store.due(10_000, limit=1_500)
    after = _index_reads(store, url)
    (scans, entries), (node_scans, _) = (
        (a[0] - b[0], a[1] - b[1]) for a, b in zip(after, before, strict=True)
    )
    assert scans <= 2, "one walk per status"
    # The walk stops at the limit: 4,500 entries here (the due ones of
    # 30 next_ms values, with those of node n2 and the delivered ones),
    # where a bitmap scan reads all 54,000 of the waiting range.
    assert entries <= 4_600
    assert node_scans == 0, "each message read by its key"
    # What it found: node n1's active messages, in next_ms order, 1,500
    # recipients of the first 30.
    assert [d.queue_id for d in due][:3] == ["q1", "q1", "q1"]
    assert {d.queue_id for d in due} == {f"q{i}" for i in range(1, 31)}
    assert sum(len(d.indexes) for d in due) == 1_500
    # New messages started by id (`among`): their rows read by key alone.
    due = store.due(10_000, limit=None, among=["q35", "q36", "o1"])
    assert _index_reads(store, url) == after, "no walk, no node index"
    assert sorted({d.queue_id for d in due}) == ["q35", "q36"]
    assert sum(len(d.indexes) for d in due) == 100


def test_the_scanners_node_filter_reads_no_more_than_its_rows_messages(
    relay: tuple[Store, str],
) -> None:
    # 200 bounces waiting for their DSN, half of them this node's, among
    # a history of 20,000 delivered messages of two nodes, analyzed. As
    # an IN over the node's messages, the planner read them all (a
    # sequential scan) at every scan of the queue.
    store, url = relay
    with psycopg.connect(url, autocommit=True) as c:
        for prefix, count, state, status in (
            ("d", 20_000, "done", "sent"),
            ("b", 200, "active", "bounced"),
        ):
            c.execute(
                "INSERT INTO messages (queue_id, received_ms, sender, size, origin, node, state)"
                " SELECT %s || g, g, 's@example.test', 100, 'smtp',"
                " CASE WHEN g %% 2 = 0 THEN 'n1' ELSE 'n2' END, %s"
                " FROM generate_series(1, %s) g",
                (prefix, state, count),
            )
            c.execute(
                "INSERT INTO recipients (queue_id, idx, address, domain, status)"
                " SELECT %s || g, 0, 'u@r.test', 'r.test', %s FROM generate_series(1, %s) g",
                (prefix, status, count),
            )
        c.execute("ANALYZE messages, recipients")
    scans = "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'messages'"
    before = _server_stats(store, url, scans)
    pending = store.dsn_pending()
    assert _server_stats(store, url, scans) == before, "no sequential scan of the messages"
    assert sorted(pending) == sorted(f"b{g}" for g in range(2, 201, 2))


def _index_reads(store: Store, url: str) -> list[tuple[int, ...]]:
    """How often the store's connection has scanned the recipients'
    waiting index and how many of its entries it read, then the same for
    the messages' node index."""
    return _server_stats(
        store,
        url,
        "SELECT idx_scan, idx_tup_read FROM pg_stat_user_indexes"
        " WHERE indexrelname IN ('recipients_waiting', 'messages_node')"
        " ORDER BY indexrelname DESC",
    )


def _server_stats(store: Store, url: str, query: str) -> list[tuple[int, ...]]:
    """The rows of `query` on the server's statistics, once those of the
    store's connection are in them: flushed when it next goes idle."""
    store.db.execute("SELECT pg_stat_force_next_flush()")
    with psycopg.connect(url, autocommit=True) as c:
        return [tuple(int(v) for v in row) for row in c.execute(query)]
