"""Delivery results stored beside the event loop (PostgreSQL): results
that come in within `GATHER_WINDOW` share one transaction, because each
transaction holds the writers' lock that the intake's 250s wait for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from mxg.pipeline import beside
from tests.pipeline.fakes import FakeEngine, dispatched, sent, serving, stages

BODY = b"Subject: results\r\n\r\nhello\r\n"


def _on_postgres(tmp_path: Path) -> tuple[Any, FakeEngine]:
    st, engine = stages(tmp_path)
    if st.beside is None:
        pytest.skip("results are stored beside the event loop on PostgreSQL only")
    st.ctx.store.claim_node("n1", "the test's store")
    st.ctx.store.read_raws = engine.read_raw_many
    return st, engine


def _gathering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, window: float
) -> tuple[Any, FakeEngine, list[list[str]]]:
    """The stages on PostgreSQL with a gather window of `window` seconds,
    their fake engine, and the results transactions as they come
    (`_transactions`)."""
    st, engine = _on_postgres(tmp_path)
    monkeypatch.setattr(beside, "GATHER_WINDOW", window)
    return st, engine, _transactions(st, monkeypatch)


def _transactions(st: Any, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The queue ids of each results transaction beside the loop."""
    seen: list[list[str]] = []
    record = st.beside._record_now

    def counted(outcomes: list[Any], *rest: Any) -> list[str]:
        seen.append(sorted(o.queue_id for o in outcomes))
        return record(outcomes, *rest)

    monkeypatch.setattr(st.beside, "_record_now", counted)
    return seen


def test_results_that_come_within_the_window_share_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    st, engine, seen = _gathering(tmp_path, monkeypatch, 0.5)

    async def body() -> None:
        jobs = await dispatched(st, engine, ["Q0", "Q1", "Q2"], BODY)
        # Three engine batches, each one result, well inside the window.
        for job in jobs:
            await st.handle([sent(job)])
            await anyio.sleep(0.01)
        await st.results_stored()

    serving(st, body)
    assert seen == [["Q0", "Q1", "Q2"]]
    statuses = [st.ctx.store.recipients(f"Q{i}")[0]["status"] for i in range(3)]
    assert statuses == ["sent"] * 3


def test_enough_results_waiting_go_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A window no test waits out: enough results make it moot.
    monkeypatch.setattr(beside, "GATHER_ENOUGH", 2)
    st, engine, seen = _gathering(tmp_path, monkeypatch, 60.0)

    async def body() -> None:
        jobs = await dispatched(st, engine, ["Q0", "Q1"], BODY)
        with anyio.fail_after(10):
            await st.handle([sent(job) for job in jobs])
            await st.results_stored()

    serving(st, body)
    assert seen == [["Q0", "Q1"]]


def test_rule10_results_waiting_in_the_window_are_stored_at_a_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stop cancels the relay's tasks; results that came in are stored
    # all the same (else their recipients would go again), also those
    # still waiting out the window.
    st, engine, seen = _gathering(tmp_path, monkeypatch, 0.5)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            st.ctx.tg = tg
            jobs = await dispatched(st, engine, ["Q0", "Q1"], BODY)
            await st.handle([sent(job) for job in jobs])
            tg.cancel_scope.cancel()  # the stop, inside the window
        st.ctx.tg = None

    anyio.run(main)
    assert seen == [["Q0", "Q1"]]
    statuses = [st.ctx.store.recipients(f"Q{i}")[0]["status"] for i in range(2)]
    assert statuses == ["sent"] * 2
