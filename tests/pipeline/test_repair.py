"""The repair after the PostgreSQL server restarted (`pipeline/repair.py`,
ARCHITECTURE.md rule 11): on a server of this test's own, crashed
(`immediate`: the commits that did not wait for the WAL are lost) or
shut down cleanly (`fast`: nothing is lost) and started again while the
relay serves. The repair settles the queue from what the restarted
server shows: results lost go again (counted in its log line), a spool
file goes only for a message shown finished, and `sync` works again.

The messages, one recipient each, and what happened to them before the
restart:

- Q1 sent, and synced (its spool file's removal held up in its thread),
- Q2 deferred in the same batch, synced with it,
- Q3 sent and Q4 deferred, committed without waiting for the WAL; the
  removal of Q3's file queued behind Q1's, so never synced,
- Q5 under way through the restart,
- Q6 sent while the server was down (its result waits in memory).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from mxg.boundary import Arrived, DeliveryDone, RecipientResult
from mxg.pipeline.controller import Stages
from mxg.pipeline.scanner import scan
from mxg.pipeline.storage import survives_a_full_store
from mxg.store.postgres import StoreUnreachable
from tests.pipeline.fakes import FakeEngine, envelope, serving, stages
from tests.support.postgres import Postgres, Server, migrated

BODY = b"Subject: repair\r\n\r\nhello\r\n"
QUEUE_IDS = ("Q1", "Q2", "Q3", "Q4", "Q5", "Q6")


@pytest.fixture
def store_at(private_postgres: tuple[Server, Postgres]) -> str:
    """PostgreSQL only (a SQLite store is never in doubt), on a server
    this test may crash, its WAL writer held back (`Server.hold_wal`): a
    commit that did not wait for the WAL is lost in a crash a moment
    later, unless a sync flushed it."""
    server, pg = private_postgres
    server.hold_wal()
    return migrated(pg.new_database())


class HeldRemovals(FakeEngine):
    """The first removal of spool files waits in its thread until the
    test releases it; the finisher removes one batch at a time, so the
    next batches (and their syncs) queue behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = threading.Event()
        self.release = threading.Event()

    def remove_many(self, queue_ids: list[str]) -> list[str]:
        if not self.holding.is_set():
            self.holding.set()
            self.release.wait(60)
        return super().remove_many(queue_ids)


def _result(address: str, status: str) -> RecipientResult:
    if status == "sent":
        return RecipientResult(
            address, "sent", 250, "2.0.0", "queued", "mx.plain.test", "127.0.0.2", "encrypted"
        )
    return RecipientResult(
        address, "deferred", 450, "4.2.0", "busy", "mx.plain.test", "127.0.0.2", "encrypted"
    )


def _done(engine: FakeEngine, queue_id: str, status: str) -> DeliveryDone:
    """The engine's report on the last job it got for `queue_id`."""
    job = [j for j in engine.jobs if j["queue_id"] == queue_id][-1]
    results = [_result(r["address"], status) for r in job["recipients"]]
    return DeliveryDone(job["job_id"], queue_id, job["destination"], results, [], 0, 0)


def _status(st: Stages, queue_id: str) -> str:
    return str(st.ctx.store.recipients(queue_id)[0]["status"])


async def _until(what: str, check: Any, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        await anyio.sleep(0.05)


def _reachable(st: Stages) -> bool:
    try:
        st.ctx.store.known_ids()
    except StoreUnreachable:
        return False
    return True


def _refused_sync(st: Stages) -> str:
    """The error of a `sync` once its connection reached the restarted
    server (a first try may find the connection the crash broke)."""
    try:
        st.ctx.store.sync()
    except OSError as e:
        return str(e)
    return ""


def _fields(caplog: pytest.LogCaptureFixture, message: str) -> list[dict[str, Any]]:
    return [r.__dict__["mxg_fields"] for r in caplog.records if r.getMessage() == message]


def _lost(crashed: bool) -> set[str]:
    """The results the restarted server no longer shows: Q3's and Q4's
    after a crash, none after a clean shutdown."""
    return {"Q3", "Q4"} if crashed else set()


async def _restart(st: Stages, engine: HeldRemovals, server: Server, stop: str) -> None:
    """The six messages to their states of the module docstring, with
    the server stopped (`stop`) and started again between."""
    arrived = []
    for q in QUEUE_IDS:
        env = envelope(q, [f"{q.lower()}@plain.test"])
        engine.spool[q] = (env, BODY)
        arrived.append(Arrived(env, {}))
    await st.handle(arrived)
    # Stored once a group flush made them durable, then dispatched.
    await _until("every message dispatched", lambda: len(engine.jobs) == len(QUEUE_IDS))
    assert sorted(j["queue_id"] for j in engine.jobs) == list(QUEUE_IDS)
    # Synced: Q1's removal syncs first, then holds in its thread.
    await st.handle([_done(engine, "Q1", "sent"), _done(engine, "Q2", "deferred")])
    await _until("Q1's removal synced", engine.holding.is_set)
    # Committed without waiting for the WAL; Q3's removal waits.
    await st.handle([_done(engine, "Q3", "sent"), _done(engine, "Q4", "deferred")])
    await st.results_stored()
    server.stop(stop)
    with survives_a_full_store():
        await st.handle([_done(engine, "Q6", "sent")])
        await st.results_stored()
    assert set(st.ctx.unstored) == {("Q6", 0)}, "Q6's result waits in memory"
    server.start()
    await _until("the store reachable again", lambda: _reachable(st))


async def _before_the_repair(st: Stages, engine: HeldRemovals, crashed: bool) -> None:
    """What the restarted server shows; no dispatch and no sync until the
    repair has run."""
    assert st.ctx.store.doubtful(), "commits no sync made durable, on the last start"
    shown = {q: _status(st, q) for q in ("Q1", "Q2", "Q3", "Q4")}
    assert shown == {
        "Q1": "sent",
        "Q2": "deferred",
        "Q3": "pending" if crashed else "sent",
        "Q4": "pending" if crashed else "deferred",
    }, "a crash loses what did not wait for the WAL; a clean shutdown flushes it"
    jobs = len(engine.jobs)
    st.dispatch.dispatch_due()
    assert len(engine.jobs) == jobs, "nothing is dispatched before the repair"
    await _until("sync's connection back", lambda: "cannot flush" not in _refused_sync(st))
    assert "started again since commits that did not wait" in _refused_sync(st)


async def _repair(
    st: Stages, engine: HeldRemovals, crashed: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The scan: Q6's result stored, then the repair."""
    jobs = len(engine.jobs)
    await scan(st)
    assert not st.ctx.store.doubtful()
    shown_done = {"Q1", "Q6"} | ({"Q3"} if not crashed else set())
    assert st.ctx.store.done_ids() == shown_done
    assert set(engine.spool) == set(QUEUE_IDS) - shown_done, "finished as the server shows"
    again = [j["queue_id"] for j in engine.jobs[jobs:]]
    assert sorted(again) == sorted(_lost(crashed)), "the results lost go again, nothing else"
    [repaired] = _fields(caplog, "queue repaired after the store restarted")
    lost = len(_lost(crashed))
    assert repaired == {"finished": len(shown_done), "requeued": lost, "dsns": 0}
    requeued = _fields(caplog, "re-queued after the store restarted")
    assert requeued == ([{"recipients": lost}] if lost else [])
    # Q3's removal, decided before the repair, is refused when its
    # thread goes on: in a crash Q3's result was lost.
    engine.release.set()
    await _until("the held removals done", lambda: not st.finisher._unlinking)
    assert ("Q3" in engine.spool) is crashed


async def _afterwards(st: Stages, engine: HeldRemovals, crashed: bool) -> None:
    """Results are recorded and synced as any other, and the spool files
    of finished messages go."""
    lost = _lost(crashed)
    await st.handle([_done(engine, q, "sent") for q in ["Q5", *sorted(lost)]])
    remaining = {"Q2"} | ({"Q4"} if not crashed else set())
    await _until("the finished messages' files gone", lambda: set(engine.spool) == remaining)
    st.ctx.store.sync()
    assert st.ctx.store.done_ids() == set(QUEUE_IDS) - remaining
    assert {q: _status(st, q) for q in remaining} == dict.fromkeys(remaining, "deferred")
    deliveries = [j["queue_id"] for j in engine.jobs]
    assert {q for q in deliveries if deliveries.count(q) > 1} == lost


@pytest.mark.parametrize("stop", ["immediate", "fast"])
def test_rule11_the_repair_after_a_postgresql_restart_settles_the_queue_from_what_survived(
    tmp_path: Path,
    private_postgres: tuple[Server, Postgres],
    store_at: str,
    caplog: pytest.LogCaptureFixture,
    stop: str,
) -> None:
    server, _ = private_postgres
    engine = HeldRemovals()
    st, _ = stages(tmp_path, engine=engine)
    st.ctx.store.claim_node("n1", store_at)
    st.ctx.store.read_raws = engine.read_raw_many
    crashed = stop == "immediate"
    caplog.set_level(logging.INFO, logger="mxg")

    async def body() -> None:
        try:
            await _restart(st, engine, server, stop)
            await _before_the_repair(st, engine, crashed)
            await _repair(st, engine, crashed, caplog)
            await _afterwards(st, engine, crashed)
        finally:
            engine.release.set()  # a failure does not wait for the held thread

    try:
        serving(st, body)
    finally:
        st.ctx.store.close()
