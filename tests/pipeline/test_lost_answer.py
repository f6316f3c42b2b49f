"""A commit whose answer was lost with the connection (PostgreSQL ended
the session just after committing: a ``fast`` shutdown, an operator's
`pg_terminate_backend`, the network): the relay cannot tell whether it
committed. Here it did, and the delivery result it held marked the
message done; the result, kept in memory as when the store is
unreachable, is stored again once the store answers, which finds the
message done already. The repair (`pipeline/repair.py`) then settles
the queue from what the store shows: the message's spool file goes
(rule 11). Before, the file stayed until the relay restarted, and a
load test's spool never emptied."""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

from mxg.boundary import Arrived, DeliveryDone, RecipientResult
from mxg.pipeline.controller import read_raw
from mxg.pipeline.scanner import scan
from mxg.pipeline.storage import survives_a_full_store
from mxg.store.postgres import StoreUnreachable
from tests.pipeline.fakes import FakeEngine, envelope, serving, stages
from tests.support.pgproxy import CuttingProxy, cutting_proxy
from tests.support.postgres import Postgres

BODY = b"Subject: lost answer\r\n\r\nhello\r\n"
LOST = "a commit's answer was lost with the store's connection"


@pytest.fixture
def direct(postgres: Postgres) -> str:
    """The store on the session's server, as the test reads it."""
    return postgres.migrated_database()


@pytest.fixture
def proxy(postgres: Postgres) -> Any:
    with cutting_proxy(postgres.port) as p:
        yield p


@pytest.fixture
def store_at(direct: str, proxy: CuttingProxy) -> str:
    """PostgreSQL only (a SQLite commit has no answer to lose): the
    relay's connections go through the proxy."""
    return proxy.url(direct)


def _sent(job: dict[str, Any]) -> DeliveryDone:
    results = [
        RecipientResult(
            r["address"], "sent", 250, "2.0.0", "queued", "mx.plain.test", "127.0.0.2", "encrypted"
        )
        for r in job["recipients"]
    ]
    return DeliveryDone(job["job_id"], job["queue_id"], job["destination"], results, [], 0, 0)


async def _until(what: str, check: Any, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        await anyio.sleep(0.05)


def test_rule11_a_commit_whose_answer_was_lost_is_repaired_and_its_message_leaves_the_spool(
    tmp_path: Path, direct: str, proxy: CuttingProxy, caplog: pytest.LogCaptureFixture
) -> None:
    engine = FakeEngine()
    st, _ = stages(tmp_path, engine=engine)
    store = st.ctx.store
    store.claim_node("n1", "the test's store")
    store.read_raw = functools.partial(read_raw, engine)
    caplog.set_level(logging.INFO, logger="mxg")

    def state() -> str:
        with psycopg.connect(direct) as db:
            row = db.execute("SELECT state FROM messages WHERE queue_id = 'Q1'").fetchone()
        return str(row[0]) if row else ""

    def reachable() -> bool:
        try:
            store.known_ids()
        except StoreUnreachable:
            return False
        return True

    async def body() -> None:
        env = envelope("Q1", ["q1@plain.test"])
        engine.spool["Q1"] = (env, BODY)
        await st.handle([Arrived(env, {})])
        await _until("Q1 stored and dispatched", lambda: len(engine.jobs) == 1)
        proxy.lose_next_commit_answer()
        with survives_a_full_store():
            await st.handle([_sent(engine.jobs[0])])
        assert proxy.cut.is_set(), "the answer to the result's COMMIT was lost"
        assert state() == "done", "the server committed it"
        assert "Q1" in engine.spool
        assert st.ctx.unstored, "the result waits in memory, as when the store is unreachable"
        await _until("the store reachable again", reachable)
        await scan(st)
        await _until("Q1's spool file gone", lambda: "Q1" not in engine.spool, seconds=5)
        assert not st.ctx.unstored
        assert not store.doubtful()
        assert len(engine.jobs) == 1, "delivered once"

    try:
        serving(st, body)
    finally:
        store.close()
    repairing = [r.getMessage() for r in caplog.records if "repairing the queue" in r.getMessage()]
    assert repairing == [LOST + ": repairing the queue"]
