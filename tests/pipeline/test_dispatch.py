"""Dispatch: new messages go out at once, within max_jobs, one job per
message and domain, all jobs of a batch in one crossing."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from mxg.boundary import DeliveryDone, RecipientResult
from tests.pipeline.fakes import FakeResolver, envelope, received, serving, stages


def test_a_new_message_gets_one_job_per_domain_in_one_crossing(tmp_path: Path) -> None:
    st, engine = stages(tmp_path)
    env = envelope("Q1", ["a@plain.test", "b@other.test", "c@plain.test"])

    async def body() -> None:
        await st.handle([received(env)])

    serving(st, body)
    assert engine.crossings == 1
    by_domain = {j["destination"]: j for j in engine.jobs}
    assert sorted(by_domain) == ["other.test", "plain.test"]
    plain = by_domain["plain.test"]
    assert [r["address"] for r in plain["recipients"]] == ["a@plain.test", "c@plain.test"]
    assert plain["hosts"][0]["addresses"] == ["127.0.0.2"]
    # class normal's default requirement
    assert plain["tls"]["level"] == "encrypted"


def test_beyond_max_jobs_new_messages_wait_in_order_and_start_as_jobs_finish(
    tmp_path: Path,
) -> None:
    st, engine = stages(tmp_path, "[delivery]\nmax_jobs = 2\n")
    envs = [envelope(f"Q{i}", [f"r{i}@plain.test"]) for i in range(5)]

    async def body() -> None:
        await st.handle([received(e) for e in envs])
        assert [j["queue_id"] for j in engine.jobs] == ["Q0", "Q1"]
        done = [
            DeliveryDone(
                j["job_id"],
                j["queue_id"],
                j["destination"],
                [_sent(r["address"]) for r in j["recipients"]],
                [],
                0,
                0,
            )
            for j in engine.jobs
        ]
        await st.handle(done)
        await st.results_stored()
        assert [j["queue_id"] for j in engine.jobs] == ["Q0", "Q1", "Q2", "Q3"]

    serving(st, body)


def test_an_unknown_domain_bounces_with_the_resolvers_reason_and_a_dsn(tmp_path: Path) -> None:
    st, engine = stages(tmp_path)
    engine.spool["Q1"] = (envelope("Q1", ["x@nowhere.test"]), b"Subject: hi\r\n\r\nhi\r\n")

    async def body() -> None:
        await st.handle([received(envelope("Q1", ["x@nowhere.test"]))])

    serving(st, body)
    assert engine.jobs == []
    row = st.ctx.store.recipients("Q1")[0]
    assert (row["status"], "NXDOMAIN" in row["text"]) == ("bounced", True)
    assert len(engine.injected) == 1
    dsn_env, dsn = engine.injected[0]
    assert dsn_env.recipients[0].address == "sender@internal.test"
    assert b"x@nowhere.test" in dsn


def test_a_suspended_domain_gets_no_job_until_it_is_resumed(tmp_path: Path) -> None:
    st, engine = stages(tmp_path)
    st.ctx.store.suspend("other.test", "ops", "partner maintenance")
    env = envelope("Q1", ["a@plain.test", "b@other.test"])

    async def body() -> None:
        await st.handle([received(env)])
        st.dispatch.dispatch_due()  # a scan finds nothing due for other.test
        assert [j["destination"] for j in engine.jobs] == ["plain.test"]
        st.ctx.store.resume("other.test", "ops", "")
        st.dispatch.dispatch_due()

    serving(st, body)
    assert [j["destination"] for j in engine.jobs] == ["plain.test", "other.test"]
    assert st.ctx.store.recipients("Q1")[1]["status"] == "pending"


def test_an_operator_bounce_gets_one_dsn_from_concurrent_scans(tmp_path: Path) -> None:
    st, engine = stages(tmp_path)
    store = st.ctx.store
    engine.spool["Q1"] = (envelope("Q1", ["x@plain.test"]), b"Subject: hi\r\n\r\nhi\r\n")
    store.suspend("plain.test", "ops", "")  # keeps the message queued

    async def body() -> None:
        await st.handle([received(engine.spool["Q1"][0])])
        store.bounce_recipients({"Q1": [0]}, "ops", "partner closed")
        async with anyio.create_task_group() as tg:
            tg.start_soon(st.notices.send_pending)
            tg.start_soon(st.notices.send_pending)

    serving(st, body)
    assert len(engine.injected) == 1
    dsn_env, dsn = engine.injected[0]
    assert dsn_env.recipients[0].address == "sender@internal.test"
    assert b"Status: 5.0.0" in dsn and b"returned by the mail administrator: partner closed" in dsn
    assert store.dsn_pending() == [] and "Q1" in store.finished()


def _sent(address: str) -> RecipientResult:
    return RecipientResult(
        address, "sent", 250, "2.0.0", "queued", "mx.plain.test", "127.0.0.2", "encrypted"
    )


def test_a_new_message_whose_route_is_looked_up_is_planned_without_reading_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No cached route: the job is planned after the lookup, beside the
    # event loop, from the rows the message arrived with (on PostgreSQL
    # a read of the store is a round trip on the loop).
    resolver = FakeResolver()
    monkeypatch.setattr(resolver, "cached", lambda domain: None)
    st, engine = stages(tmp_path, resolver=resolver)
    env = envelope("Q1", ["a@plain.test", "b@plain.test"])

    def no_read(*_: object) -> None:
        raise AssertionError("a just-received message was read from the store")

    async def body() -> None:
        await st.intake.take([received(env)])  # indexed first, as the relay does
        monkeypatch.setattr(st.ctx.store, "message", no_read)
        monkeypatch.setattr(st.ctx.store, "recipients", no_read)
        messages = [st.intake.classified(env, {})]
        st.dispatch.start_new(messages, [])
        await anyio.sleep(0.05)
        st.dispatch.flush()

    serving(st, body)
    assert resolver.asked == ["plain.test"]
    [job] = engine.jobs
    assert [r["address"] for r in job["recipients"]] == ["a@plain.test", "b@plain.test"]
