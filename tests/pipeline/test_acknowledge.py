"""Acknowledging on a PostgreSQL store (docs/cluster.md, "Bodies before
the 250"): a message is answered `stored` only once it is committed with
its spool file's exact bytes; a session that stopped waiting gets its
stored message deleted; a failed transaction answers 451."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from mxg.boundary import Arrived
from mxg.pipeline.acknowledge import NOT_ACKNOWLEDGED
from mxg.pipeline.controller import Stages
from mxg.pipeline.storage import StoreWatch
from mxg.store import NewMessage
from mxg.store.postgres import StoreUnreachable
from tests.pipeline.fakes import FakeEngine, envelope, serving, stages

BODY = b"Subject: x\r\n\r\nhello\r\n"


def _on_postgres(tmp_path: Path) -> tuple[Stages, FakeEngine]:
    st, engine = stages(tmp_path)
    if st.acks is None:
        pytest.skip("acknowledging waits for the store on PostgreSQL only")
    st.ctx.store.read_raws = engine.read_raw_many
    return st, engine


def _arrive(st: Stages, engine: FakeEngine, *qids: str) -> None:
    events = []
    for q in qids:
        env = envelope(q, [f"{q.lower()}@plain.test"])
        engine.spool[q] = (env, BODY)
        events.append(Arrived(env, {}))

    async def body() -> None:
        await st.handle(events)

    serving(st, body)


def test_rule9_stored_means_index_and_exact_spool_file_in_one_commit(tmp_path: Path) -> None:
    st, engine = _on_postgres(tmp_path)
    _arrive(st, engine, "Q1", "Q2")
    assert [v["queue_id"] for v in engine.verdicts_sent if v.get("stored")] == ["Q1", "Q2"]
    store = st.ctx.store
    assert store.known_ids() == {"Q1", "Q2"}
    assert store.spool_body("Q1") == engine.read_raw("Q1")
    assert sorted(j["queue_id"] for j in engine.jobs) == ["Q1", "Q2"]
    # Done: the body goes in the same transaction.
    store.mark_done(["Q1"])
    assert store.spool_body("Q1") is None
    assert store.spool_body("Q2") is not None


def test_a_stored_message_whose_client_was_refused_is_deleted_never_sent(
    tmp_path: Path,
) -> None:
    st, engine = _on_postgres(tmp_path)
    engine.gone = {"Q1"}
    _arrive(st, engine, "Q1", "Q2")
    store = st.ctx.store
    rows = store.recipients("Q1")
    assert [r["status"] for r in rows] == ["deleted"]
    assert NOT_ACKNOWLEDGED in rows[0]["text"]
    assert [j["queue_id"] for j in engine.jobs] == ["Q2"]
    assert store.finished(["Q1"]) == ["Q1"], "finished: the scanner marks it done"


def test_a_message_whose_file_went_before_the_commit_is_not_indexed(tmp_path: Path) -> None:
    st, engine = _on_postgres(tmp_path)
    env = envelope("Q1", ["a@plain.test"])

    async def body() -> None:
        await st.handle([Arrived(env, {})])  # never spooled: the session is gone

    serving(st, body)
    assert st.ctx.store.known_ids() == set()
    assert engine.verdicts_sent[0]["defer"]["code"] == 451


def test_a_failed_commit_answers_451_and_is_checked_when_the_store_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    st, engine = _on_postgres(tmp_path)
    store = st.ctx.store

    def unreachable(*_: object) -> list[str]:
        raise StoreUnreachable("the store at postgresql://x is unreachable")

    with monkeypatch.context() as m:
        m.setattr(type(store), "add_received", unreachable)
        _arrive(st, engine, "Q1")
    (verdict,) = engine.verdicts_sent
    assert not verdict.get("stored")
    assert (verdict["defer"]["code"], verdict["defer"]["enhanced"]) == (451, "4.3.0")
    assert list(st.ctx.unacknowledged) == ["Q1"]
    assert engine.jobs == []
    # The commit went through after all (the answer was lost): deleted
    # once the store answers again.
    store.add_messages([NewMessage(envelope("Q1", ["q1@plain.test"]))])
    assert st.acks is not None
    st.acks.retry_forget()
    assert [r["status"] for r in store.recipients("Q1")] == ["deleted"]
    assert not st.ctx.unacknowledged


def test_the_intake_gate_follows_the_stores_reachability() -> None:
    engine = FakeEngine()
    draining = False
    watch = StoreWatch(engine, lambda: draining)
    watch.changed(False)
    assert engine.intake[0] == "defer"
    watch.changed(False)
    watch.changed(True)
    assert engine.intake == ("open", "")
    # A draining node closed its intake for good: an outage ending does
    # not open it again.
    engine.set_intake("closed", "node draining")
    draining = True
    watch.changed(False)
    watch.changed(True)
    assert engine.intake == ("closed", "node draining")


def test_on_sqlite_nothing_waits_for_the_store(tmp_path: Path) -> None:
    st, engine = stages(tmp_path)
    if st.acks is not None:
        pytest.skip("SQLite only")
    env = envelope("Q1", ["a@plain.test"])

    async def body() -> None:
        await st.handle([Arrived(env, {})])

    serving(st, body)
    assert engine.verdicts_sent == [{"queue_id": "Q1"}]
    assert st.ctx.store.spool_body("Q1") is None


def test_a_slow_refusal_check_accepts_at_the_verdict_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As without PostgreSQL: a class's check that outlasts
    `verdict_deadline` does not hold the 250 back; the message is stored
    and acknowledged, and the class's on_unmet applies at delivery."""
    st, engine = stages(tmp_path, '[classify]\nverdict_deadline = "0.1s"\n')
    if st.acks is None:
        pytest.skip("acknowledging waits for the store on PostgreSQL only")
    st.ctx.store.read_raws = engine.read_raw_many
    acks = st.acks

    async def may_refuse(e: Arrived) -> None:
        return None

    async def slow(*_: object) -> None:
        await anyio.sleep(5)

    monkeypatch.setattr(acks, "_plain", may_refuse)
    monkeypatch.setattr(st.verdicts, "decide", slow)
    _arrive(st, engine, "Q1")
    assert [v["queue_id"] for v in engine.verdicts_sent if v.get("stored")] == ["Q1"]
    assert st.ctx.store.known_ids() == {"Q1"}
