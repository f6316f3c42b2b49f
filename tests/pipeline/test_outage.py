"""The relay across a PostgreSQL outage, through a proxy that plays the
server down and back (`tests/support/pgproxy.py`): while it is down,
arriving messages get 451 (nothing acknowledged is lost, rule 9); once
it is back, the next batch is stored and answered 250, without waiting
out a reconnect backoff set while it was down, and without failing on a
connection that died idle with the server."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from mxg.boundary import Arrived
from mxg.dns import Route
from mxg.pipeline.scanner import scan
from mxg.store import NewMessage
from mxg.store.postgres import StoreUnreachable
from tests.pipeline.fakes import FakeEngine, FakeResolver, envelope, serving, stages
from tests.support.pgproxy import RECEIVED_STATEMENT, CuttingProxy
from tests.support.postgres import Postgres

BODY = b"Subject: outage\r\n\r\nhello\r\n"


@pytest.fixture
def store_at(postgres: Postgres, proxy: CuttingProxy) -> str:
    """PostgreSQL only (an outage of the server): the relay's
    connections go through the proxy."""
    return proxy.url(postgres.migrated_database())


async def _until(what: str, check: Any, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        await anyio.sleep(0.05)


class _Relay:
    """The stages on the proxied store, as the relay (node n1)."""

    def __init__(self, tmp_path: Path, resolver: FakeResolver | None = None) -> None:
        self.engine = FakeEngine()
        self.st, _ = stages(tmp_path, engine=self.engine, resolver=resolver)
        self.store = self.st.ctx.store
        self.store.claim_node("n1", "the test's store")
        self.store.read_raws = self.engine.read_raw_many

    async def answer(self, queue_id: str) -> str:
        """`queue_id` arrives at the end of DATA; what its session hears:
        "250" (stored) or the deferral's code."""
        env = envelope(queue_id, [f"{queue_id.lower()}@plain.test"])
        self.engine.spool[queue_id] = (env, BODY)
        await self.st.handle([Arrived(env, {})])

        def verdict() -> dict[str, Any] | None:
            got = [v for v in self.engine.verdicts_sent if v["queue_id"] == queue_id]
            return got[0] if got else None

        await _until(f"{queue_id} answered", lambda: verdict() is not None)
        v = verdict()
        assert v is not None
        return "250" if v.get("stored") else str(v["defer"]["code"])

    def reachable(self) -> bool:
        """What the relay's own connection says (its scanner asks the
        same; `StoreWatch` opens intake when it answers again)."""
        try:
            self.store.known_ids()
        except StoreUnreachable:
            return False
        return True


def _outage(proxy: CuttingProxy, relay: _Relay, seconds: float) -> Any:
    """The server down for `seconds`, messages arriving meanwhile (those
    already in their DATA when it went): each answered 451. The relay's
    own connection is not asked meanwhile (its scanner's pace is not the
    intake's); returns once it answers again, on its own backoff."""

    async def down() -> None:
        proxy.refuse()
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            n += 1
            assert await relay.answer(f"D{n}") == "451", "nothing stored while down"
            await anyio.sleep(0.1)
        proxy.accept()
        await _until("the store reachable again", relay.reachable)

    return down()


def test_rule9_the_first_batch_after_an_outage_waits_out_no_backoff(
    tmp_path: Path, proxy: CuttingProxy
) -> None:
    """Down long enough for the intake connection's reconnect backoff to
    grow to its longest (4 s): once the relay's own connection is back,
    the intake's does not wait out what is left of that backoff."""
    relay = _Relay(tmp_path)

    async def body() -> None:
        assert await relay.answer("Q1") == "250"
        await _outage(proxy, relay, 5)
        assert await relay.answer("Q2") == "250", "stored once the store is back"
        assert relay.store.known_ids() >= {"Q1", "Q2"}

    try:
        serving(relay.st, body)
    finally:
        relay.store.close()


def test_rule9_connections_that_died_idle_with_the_server_are_not_a_451(
    tmp_path: Path, proxy: CuttingProxy
) -> None:
    """A short outage while no message arrived: the intake's connection
    and its flush connection died unused; the first batch after it does
    not find that out by failing (451), it opens them again first."""
    relay = _Relay(tmp_path)

    async def body() -> None:
        assert await relay.answer("Q1") == "250"
        proxy.refuse()
        await anyio.sleep(0.3)
        proxy.accept()
        await _until("the store reachable again", relay.reachable)
        assert await relay.answer("Q2") == "250", "stored once the store is back"

    try:
        serving(relay.st, body)
    finally:
        relay.store.close()


def test_rule9_an_intake_commit_whose_answer_was_lost_is_451_and_never_delivered(
    tmp_path: Path, proxy: CuttingProxy
) -> None:
    """The server committed the batch, and its answer was lost with the
    connection: the relay cannot know, so the client hears 451 and sends
    the message again. The copy the store took is deleted as not
    acknowledged once the store answers, never dispatched meanwhile: the
    resent message is the only one delivered."""
    relay = _Relay(tmp_path)
    st, engine = relay.st, relay.engine

    async def body() -> None:
        assert await relay.answer("Q1") == "250"
        # Its commit is one statement (store/intake.py, `received_statement`).
        proxy.lose_answer_when_sent(RECEIVED_STATEMENT)
        assert await relay.answer("Q2") == "451"
        assert proxy.cut.is_set(), "the answer to the batch's statement was lost"
        await _until("the store reachable again", relay.reachable)
        assert "Q2" in relay.store.known_ids(), "the server committed it"
        await scan(st)
        assert [r["status"] for r in relay.store.recipients("Q2")] == ["deleted"]
        assert await relay.answer("Q3") == "250", "the client's second try"
        await scan(st)
        assert sorted(j["queue_id"] for j in engine.jobs) == ["Q1", "Q3"]

    try:
        serving(st, body)
    finally:
        relay.store.close()


class _SlowResolver(FakeResolver):
    """A route lookup that waits for `answer`: the store goes down while
    a delivery resolves its route, before it plans its job."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = anyio.Event()

    async def route(self, domain: str) -> Route:
        self.asked.append(domain)
        await self.answer.wait()
        return self.routes[domain]

    def cached(self, domain: str) -> Route | None:
        return None


def _start_delivery_then(
    tmp_path: Path, meanwhile: Callable[[_Relay], None], caplog: pytest.LogCaptureFixture
) -> list[logging.LogRecord]:
    """Q1 due and its delivery started; `meanwhile` runs while its route
    is looked up. Returns the records of its failure to start."""
    resolver = _SlowResolver()
    relay = _Relay(tmp_path, resolver)
    st = relay.st
    env = envelope("Q1", ["q1@plain.test"])
    relay.engine.spool["Q1"] = (env, BODY)
    relay.store.add_messages([NewMessage(env)])
    caplog.set_level(logging.INFO, logger="mxg")

    async def body() -> None:
        st.dispatch.dispatch_due()
        await _until("the route asked", lambda: resolver.asked == ["plain.test"])
        meanwhile(relay)
        resolver.answer.set()
        await _until("the start failed", lambda: not st.dispatch.inflight)

    try:
        serving(st, body)
    finally:
        relay.store.close()
    assert relay.engine.jobs == []
    return [r for r in caplog.records if "cannot start delivery" in r.getMessage()]


def test_a_store_outage_while_a_delivery_starts_is_one_line_without_a_traceback(
    tmp_path: Path, proxy: CuttingProxy, caplog: pytest.LogCaptureFixture
) -> None:
    [record] = _start_delivery_then(tmp_path, lambda _: proxy.refuse(), caplog)
    assert record.exc_info is None, "no traceback for a store outage"
    assert record.levelno == logging.WARNING
    line = record.getMessage()
    assert line == "cannot start delivery: store unavailable, retried at a later scan"
    fields = record.__dict__["mxg_fields"]
    assert fields["queue_id"] == "Q1" and "unreachable" in fields["error"]


def test_a_bug_while_a_delivery_starts_still_logs_its_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("a bug")

    def break_planner(relay: _Relay) -> None:
        relay.st.dispatch._planner.recipients = broken  # type: ignore[method-assign]

    [record] = _start_delivery_then(tmp_path, break_planner, caplog)
    assert record.exc_info is not None and record.levelno == logging.ERROR
