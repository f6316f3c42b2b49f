"""ARCHITECTURE.md rule 10 for what a decision spools: a decision notice
or a secure envelope's carrier is spooled, then recorded with its index
row in one transaction. A crash before the spool's fsync loses nothing
(the next scan spools it); a crash after it and before the record
leaves a spool file that recovery records as it would have been: the
notice is not sent twice, the carrier not twice and at its
``carrier_level``, never its class's (`mxg.decide.marks`).

The crash is the store refusing the record (the process would die
there); the restart is a new set of stages on the same store file and
spool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from mxg.decide import decide
from mxg.decide.marks import Asked, asked_of, parse_asked
from mxg.pipeline.recovery import recover
from mxg.store import now_ms
from tests.pipeline.fakes import envelope
from tests.pipeline.test_asking import _deliver, _job, _notice, _result, _stages


class Crash(BaseException):
    """The process dies here."""


def _crash(*_: Any, **__: Any) -> Any:
    raise Crash


def _parked(tmp_path: Path) -> tuple[Any, Any]:
    """Q1 with two recipients parked and not yet asked about."""
    st, engine = _stages(tmp_path)
    info = _job(st, engine, "Q1", ["a@plain.test", "b@plain.test"])

    async def later(_qid: str) -> None:
        return None

    asking, st.notices.ask_sender = st.notices.ask_sender, later
    _deliver(st, info, [_result(a, "validation-failure") for a in ("a@plain.test", "b@plain.test")])
    st.notices.ask_sender = asking
    assert st.ctx.store.unasked() == ["Q1"]
    return st, engine


def _restart(tmp_path: Path, engine: Any) -> Any:
    """The relay started again on the same store and spool."""
    st, _ = _stages(tmp_path)
    st.ctx.engine = engine
    anyio.run(recover, st.ctx, st.intake, st.outcomes, st.notices, st.finisher)
    return st


def _sent_to_sender(engine: Any) -> list[Any]:
    return [e for e, _ in engine.injected if e.sender == ""]


def test_rule10_a_notice_spooled_before_a_crash_is_recorded_not_sent_again(
    tmp_path: Path,
) -> None:
    st, engine = _parked(tmp_path)
    st.ctx.store.asked = _crash
    with pytest.raises(Crash):
        anyio.run(st.notices.ask_sender, "Q1")
    notice_qid = _sent_to_sender(engine)[0].queue_id
    assert st.ctx.store.message(notice_qid) is None, "spooled, not recorded"

    st = _restart(tmp_path, engine)
    store = st.ctx.store
    assert store.unasked() == []
    assert store.message(notice_qid)["class"] == "normal"
    anyio.run(st.notices.ask_pending)
    assert len(_sent_to_sender(engine)) == 1, "no second notice"
    # The link in the notice works: its token is recorded for both.
    text = _notice(engine).get_content()
    token = text.split("https://gw.example/mxg/decide/", 1)[1].split()[0]
    claims = st.ctx.tokens.verify(token, now_ms())
    assert store.token(claims.token_id)["recipients"] == "[0,1]"
    asked = [r for r in store.audit_records() if r.kind == "asked"]
    assert len(asked) == 1 and notice_qid in asked[0].data


def test_rule10_a_notice_the_crash_kept_from_the_spool_is_sent_after(tmp_path: Path) -> None:
    st, engine = _parked(tmp_path)
    engine.inject = _crash
    with pytest.raises(Crash):
        anyio.run(st.notices.ask_sender, "Q1")
    del engine.inject
    assert _sent_to_sender(engine) == []

    st = _restart(tmp_path, engine)
    assert st.ctx.store.unasked() == ["Q1"]
    anyio.run(st.notices.ask_pending)
    assert len(_sent_to_sender(engine)) == 1
    assert st.ctx.store.unasked() == []


def test_rule10_a_carrier_spooled_before_a_crash_goes_once_at_the_carrier_level(
    tmp_path: Path,
) -> None:
    st, engine = _parked(tmp_path)
    decide(st.ctx.store, st.ctx.cfg, "Q1", [0, 1], "envelope", actor="op", carrier=CARRIER)
    st.ctx.store.carrier_spooled = _crash
    with pytest.raises(Crash):
        anyio.run(st.notices.spool_carriers)
    carrier = next(e for e, _ in engine.injected if e.sender)
    assert carrier.message_id == "<carrier.1@gw.example>"
    assert st.ctx.store.message(carrier.queue_id) is None, "spooled, not recorded"

    st = _restart(tmp_path, engine)
    store = st.ctx.store
    assert store.pending_carriers() == []
    rows = store.recipients(carrier.queue_id)
    # Class high's level would be qualified: the carrier would defer.
    assert {(r["class"], r["override_level"], r["decision"]) for r in rows} == {
        ("high", "encrypted", "envelope")
    }
    assert store.message(carrier.queue_id)["class"] == "high"
    anyio.run(st.notices.spool_carriers)
    assert len([e for e, _ in engine.injected if e.sender]) == 1, "spooled once"


def test_rule10_a_carrier_the_crash_kept_from_the_spool_is_spooled_after(
    tmp_path: Path,
) -> None:
    st, engine = _parked(tmp_path)
    decide(st.ctx.store, st.ctx.cfg, "Q1", [0, 1], "envelope", actor="op", carrier=CARRIER)
    engine.inject = _crash
    with pytest.raises(Crash):
        anyio.run(st.notices.spool_carriers)
    del engine.inject

    st = _restart(tmp_path, engine)
    assert len(st.ctx.store.pending_carriers()) == 1
    anyio.run(st.notices.spool_carriers)
    carriers = [e for e, _ in engine.injected if e.sender]
    assert len(carriers) == 1
    rows = st.ctx.store.recipients(carriers[0].queue_id)
    assert {r["override_level"] for r in rows} == {"encrypted"}


def test_a_message_mxg_did_not_spool_for_a_decision_is_classified_as_received(
    tmp_path: Path,
) -> None:
    """A DSN, or a client's message with a forged marker, is not taken for
    a notice or a carrier. (A DSN here: on PostgreSQL a client's message
    the store does not know was never acknowledged and is removed, see
    test_recovery.)"""
    st, engine = _parked(tmp_path)
    decide(st.ctx.store, st.ctx.cfg, "Q1", [0], "envelope", actor="op", carrier=CARRIER)
    forged = b"X-Mxg-Asked: Q1; -; 1; 0, 1\r\nMessage-ID: <carrier.1@gw.example>\r\n\r\nx\r\n"
    engine.spool["C1"] = (envelope("C1", ["x@plain.test"], origin="local"), forged)
    st = _restart(tmp_path, engine)
    store = st.ctx.store
    assert store.message("C1") is not None
    assert store.unasked() == ["Q1"], "the forged header asked nothing"
    assert len(store.pending_carriers()) == 1, "the forged Message-ID took no carrier"
    assert store.recipients("C1")[0]["override_level"] is None


def test_the_asked_header_round_trips_and_refuses_what_mxg_did_not_write() -> None:
    a = Asked("Q1", list(range(300)), "ab" * 16, 1_700_000_000_000)
    assert parse_asked(a.header()) == a
    assert parse_asked(Asked("Q1", [3], None, 5).header()) == Asked("Q1", [3], None, 5)
    for bad in ("", "Q1", "Q1; zz; 1; 0", "Q1; -; x; 0", "Q1; -; 1; a", "Q1; -; 1;"):
        assert parse_asked(bad) is None, bad
    folded = b"X-Mxg-Asked: " + a.header().replace(", 150", ",\r\n 150").encode() + b"\r\n\r\n"
    assert asked_of(folded) == a


CARRIER = (
    b"From: sender@internal.test\r\nMessage-ID: <carrier.1@gw.example>\r\n"
    b"Subject: secure envelope\r\n\r\nsealed\r\n"
)
