"""The store's connection breaking in the middle of the results' path
(PostgreSQL ending the session: a ``fast`` shutdown, an operator's
`pg_terminate_backend`, the network), through a proxy that cuts it at
a chosen statement (`tests/support/pgproxy.py`): every finished message
still leaves the spool (rule 11), without a restart of the relay.

- A commit whose answer was lost: the relay cannot tell whether it
  committed. Here it did, and the result it held marked the message
  done; kept in memory and stored again once the store answers, it
  finds the message done already. The repair (`pipeline/repair.py`)
  settles the queue from what the store shows.
- A repair cut short after its first removal: the others go on.
- A batch's DSN that cannot be marked queued: the batch's other
  finished messages leave the spool all the same.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

from mxg.pipeline.scanner import scan
from mxg.pipeline.storage import survives_a_full_store
from mxg.store.postgres import StoreUnreachable
from tests.pipeline.fakes import FakeEngine, bounced, dispatched, sent, serving, stages
from tests.support.pgproxy import CuttingProxy
from tests.support.postgres import Postgres

BODY = b"Subject: lost answer\r\n\r\nhello\r\n"
LOST = "a commit's answer was lost with the store's connection"


@pytest.fixture
def direct(postgres: Postgres) -> str:
    """The store on the session's server, as the test reads it."""
    return postgres.migrated_database()


@pytest.fixture
def store_at(direct: str, proxy: CuttingProxy) -> str:
    """PostgreSQL only (a SQLite commit has no answer to lose): the
    relay's connections go through the proxy."""
    return proxy.url(direct)


async def _until(what: str, check: Any, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        await anyio.sleep(0.05)


class _Relay:
    """The stages on the proxied store, as the relay (node n1)."""

    def __init__(self, tmp_path: Path) -> None:
        self.engine = FakeEngine()
        self.st, _ = stages(tmp_path, engine=self.engine)
        self.store = self.st.ctx.store
        self.store.claim_node("n1", "the test's store")
        self.store.read_raws = self.engine.read_raw_many

    async def dispatched(self, *queue_ids: str) -> None:
        """The messages stored, acknowledged and dispatched."""
        await dispatched(self.st, self.engine, list(queue_ids), BODY)

    async def sent_but_answer_lost(self, proxy: CuttingProxy, queue_id: str) -> None:
        """`queue_id`'s delivery result, whose commit's answer is lost."""
        [job] = [j for j in self.engine.jobs if j["queue_id"] == queue_id]
        proxy.lose_next_commit_answer()
        with survives_a_full_store():
            await self.st.handle([sent(job)])
            await self.st.results_stored()  # beside the event loop
        assert proxy.cut.is_set(), "the answer to the result's COMMIT was lost"
        assert self.st.ctx.unstored, "the result waits in memory, as when the store is unreachable"
        await _until("the store reachable again", self.reachable)

    def reachable(self) -> bool:
        try:
            self.store.known_ids()
        except StoreUnreachable:
            return False
        return True


def _attempts(url: str, queue_id: str) -> list[str]:
    with psycopg.connect(url) as db:
        rows = db.execute(
            "SELECT status FROM attempts WHERE queue_id = %s ORDER BY id", (queue_id,)
        ).fetchall()
    return [str(r[0]) for r in rows]


def _state(url: str, queue_id: str) -> str:
    with psycopg.connect(url) as db:
        row = db.execute("SELECT state FROM messages WHERE queue_id = %s", (queue_id,)).fetchone()
    return str(row[0]) if row else ""


def test_rule11_a_commit_whose_answer_was_lost_is_repaired_and_its_message_leaves_the_spool(
    tmp_path: Path, direct: str, proxy: CuttingProxy, caplog: pytest.LogCaptureFixture
) -> None:
    relay = _Relay(tmp_path)
    st, engine = relay.st, relay.engine
    caplog.set_level(logging.INFO, logger="mxg")

    async def body() -> None:
        await relay.dispatched("Q1")
        await relay.sent_but_answer_lost(proxy, "Q1")
        assert _state(direct, "Q1") == "done", "the server committed it"
        assert "Q1" in engine.spool
        await scan(st)
        await _until("Q1's spool file gone", lambda: "Q1" not in engine.spool, seconds=5)
        assert not st.ctx.unstored
        assert not relay.store.doubtful()
        assert len(engine.jobs) == 1, "delivered once"
        assert _attempts(direct, "Q1") == ["sent"], "the result stored again is one attempt"

    try:
        serving(st, body)
    finally:
        relay.store.close()
    repairing = [r.getMessage() for r in caplog.records if "repairing the queue" in r.getMessage()]
    assert repairing == [LOST + ": repairing the queue"]


def test_rule11_a_repair_the_store_cuts_short_still_removes_what_it_found_done(
    tmp_path: Path, direct: str, proxy: CuttingProxy
) -> None:
    """The repair's first removal cannot mark its messages done (the
    connection breaks again): its files are gone, a later scan marks
    them, and the repair's other removals go on meanwhile."""
    relay = _Relay(tmp_path)
    st, engine = relay.st, relay.engine

    async def body() -> None:
        await relay.dispatched("Q1", "Q2")
        # Q1 finished, not yet done: an operator deleted its recipient.
        relay.store.delete_recipients({"Q1": range(1)}, "test", "deleted by the test")
        await relay.sent_but_answer_lost(proxy, "Q2")
        assert _state(direct, "Q2") == "done"
        # `mark_done`'s statement (a results batch's is another).
        proxy.cut_when_sent(b"UPDATE messages SET state='done' WHERE queue_id = ANY($1)")
        with survives_a_full_store():
            await scan(st)
        assert proxy.cut.is_set(), "the repair's done mark for Q1 was cut off"
        await _until("Q2's spool file gone", lambda: "Q2" not in engine.spool, seconds=5)
        assert "Q1" not in engine.spool
        assert _state(direct, "Q1") == "active", "Q1's done mark did not reach the store"
        await _until("the store reachable again", relay.reachable)
        await scan(st)
        assert (_state(direct, "Q1"), _state(direct, "Q2")) == ("done", "done")

    try:
        serving(st, body)
    finally:
        relay.store.close()


def test_rule11_a_dsn_the_store_cuts_off_does_not_keep_the_batch_finished_in_the_spool(
    tmp_path: Path, direct: str, proxy: CuttingProxy
) -> None:
    """One batch of results: Q1 sent (marked done with the batch), Q2
    bounced, whose DSN cannot be marked queued (the connection breaks).
    Q1's file goes all the same: nothing would find a done message
    again; Q2 stays for its DSN, queued again at a later scan."""
    relay = _Relay(tmp_path)
    st, engine = relay.st, relay.engine

    async def body() -> None:
        await relay.dispatched("Q1", "Q2")
        [q1] = [j for j in engine.jobs if j["queue_id"] == "Q1"]
        [q2] = [j for j in engine.jobs if j["queue_id"] == "Q2"]
        proxy.cut_when_sent(b"SET dsn_sent=1")
        with survives_a_full_store():
            await st.handle([sent(q1), bounced(q2)])
            await st.results_stored()
        assert proxy.cut.is_set(), "Q2's DSN mark was cut off"
        assert _state(direct, "Q1") == "done"
        await _until("Q1's spool file gone", lambda: "Q1" not in engine.spool, seconds=5)
        assert "Q2" in engine.spool
        await _until("the store reachable again", relay.reachable)
        await scan(st)
        await _until("Q2's spool file gone", lambda: "Q2" not in engine.spool, seconds=5)
        assert _state(direct, "Q2") == "done"

    try:
        serving(st, body)
    finally:
        relay.store.close()
