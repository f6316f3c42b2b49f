"""Outcomes: retries, expiry and on_unmet, stored before anything else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mxg.boundary import DeliveryDone, RecipientResult
from mxg.pipeline.plan import JobInfo
from mxg.store import NewMessage, now_ms
from mxg.store.postgres import StoreUnreachable
from tests.pipeline.fakes import envelope, serving, stages


def _job(st: Any, qid: str, address: str, attempts: int = 1) -> JobInfo:
    st.ctx.store.add_messages([NewMessage(envelope(qid, [address]))])
    info = JobInfo(qid, "plain.test", "sender@internal.test", None, received_ms=now_ms())
    info.indexes = {address: [0]}
    info.attempts = {0: attempts}
    info.classes = {0: "normal"}
    info.level = "encrypted"
    return info


def _done(results: list[RecipientResult]) -> DeliveryDone:
    return DeliveryDone(0, "Q1", "plain.test", results, [], 0, 0)


def _sent(address: str) -> RecipientResult:
    return RecipientResult(
        address=address,
        status="sent",
        code=250,
        enhanced="2.0.0",
        text="ok",
        host="mx.plain.test",
        ip="127.0.0.2",
        level="encrypted",
    )


def _deferred(address: str, *, unmet: bool = False) -> RecipientResult:
    return RecipientResult(
        address=address,
        status="deferred",
        code=None,
        enhanced="4.7.5",
        text="mx.plain.test[127.0.0.2]: required transport level encrypted not met",
        host="mx.plain.test",
        ip="127.0.0.2",
        level="none",
        unmet=unmet,
    )


def test_a_deferral_gets_its_next_attempt_from_the_schedule(tmp_path: Path) -> None:
    st, _ = stages(tmp_path, '[queue]\nretry_schedule = ["10m"]\n')
    info = _job(st, "Q1", "a@plain.test")
    [o] = st.outcomes.of_job(info, [_deferred("a@plain.test")])
    assert o.status == "deferred"
    # 10 minutes, give or take the schedule's jitter
    assert 8 * 60_000 < o.next_ms - now_ms() <= 12 * 60_000


def test_a_deferral_past_the_queue_lifetime_bounces_as_expired(tmp_path: Path) -> None:
    st, _ = stages(tmp_path, '[queue]\nmax_lifetime = "1s"\n')
    info = _job(st, "Q1", "a@plain.test")
    info.received_ms -= 2_000
    [o] = st.outcomes.of_job(info, [_deferred("a@plain.test")])
    assert (o.status, o.enhanced) == ("bounced", "4.4.7")
    assert o.text.startswith("message expired after 1 seconds in the queue; last error:")


@pytest.mark.parametrize(
    ("action", "status", "enhanced"),
    [("bounce", "bounced", "5.7.5"), ("hold", "held", "4.7.1"), ("defer", "deferred", "4.7.5")],
)
def test_an_unmet_level_takes_the_classes_on_unmet_action(
    tmp_path: Path, action: str, status: str, enhanced: str
) -> None:
    st, engine = stages(tmp_path, f'[classes.normal]\non_unmet = "{action}"\n')
    info = _job(st, "Q1", "a@plain.test")

    async def body() -> None:
        await st.outcomes.results(
            [
                (
                    info,
                    DeliveryDone(
                        0, "Q1", "plain.test", [_deferred("a@plain.test", unmet=True)], [], 0, 0
                    ),
                )
            ]
        )

    serving(st, body)
    row = st.ctx.store.recipients("Q1")[0]
    assert (row["status"], row["enhanced"]) == (status, enhanced)
    # A bounce is stored, then reported to the sender.
    assert len(engine.injected) == (1 if status == "bounced" else 0)


def test_with_ratchet_warn_results_wait_in_memory_while_the_store_is_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `ratchet = "warn"` reads the partner ledger before the results are
    # stored; a store that cannot be read then must not drop the batch
    # (its recipients would be sent again): the results wait in memory,
    # as without the ratchet, and only the warning is lost.
    st, _ = stages(tmp_path, '[delivery]\nratchet = "warn"\n')
    info = _job(st, "Q1", "a@plain.test")

    def unreachable(*_: object, **__: object) -> None:
        raise StoreUnreachable("the store at test is unreachable")

    async def unreachable_beside(*_: object) -> None:
        unreachable()

    monkeypatch.setattr(st.ctx.store, "partner", unreachable)
    monkeypatch.setattr(st.ctx.store, "record", unreachable)
    if st.outcomes.record_beside is not None:  # PostgreSQL
        monkeypatch.setattr(st.outcomes, "record_beside", unreachable_beside)
    sent = _sent("a@plain.test")

    async def body() -> None:
        await st.outcomes.results([(info, _done([sent]))])

    serving(st, body)
    assert set(st.ctx.unstored) == {("Q1", 0)}


def test_a_delivery_line_is_logged_once_its_result_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whoever reads "status=sent" in the log (an operator, a monitor, a
    # test) finds that result and its evidence in the store; on
    # PostgreSQL the results are stored beside the event loop, which goes
    # on (and flushes the log) meanwhile.
    st, _ = stages(tmp_path)
    info = _job(st, "Q1", "a@plain.test")
    seen_in_store: list[str] = []

    def delivery(**fields: Any) -> None:
        [row] = st.ctx.store.recipients(fields["queue_id"])
        seen_in_store.append(row["status"])

    monkeypatch.setattr("mxg.pipeline.outcomes.delivery", delivery)
    sent = _sent("a@plain.test")

    async def body() -> None:
        await st.outcomes.results([(info, _done([sent]))])

    serving(st, body)
    assert seen_in_store == ["sent"]
