"""The partner ledger and its ratchet (issue 16 item 7): results keep the
best level and method per domain; with ratchet = "enforce" a partner is
held to its remembered method until an operator accepts less; with
"warn" a drop is logged."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from mxg.boundary import DeliveryDone, RecipientResult, TlsInfo
from mxg.pipeline.controller import Stages
from mxg.store.partners import Seen
from tests.pipeline.fakes import FakeEngine, envelope, received, serving, stages


def result(address: str, level: str, method: str | None) -> RecipientResult:
    tls = TlsInfo("TLSv1.3", "TLS13_AES_256_GCM_SHA384", "X25519", ["aa" * 32], method)
    return RecipientResult(
        address, "sent", 250, "2.0.0", "queued", "mx.plain.test", "127.0.0.2", level, tls
    )


def done(job: dict[str, Any], res: RecipientResult) -> DeliveryDone:
    return DeliveryDone(job["job_id"], job["queue_id"], job["destination"], [res], [], 0, 0)


def send(st: Stages, engine: FakeEngine, qid: str, res: RecipientResult | None) -> dict[str, Any]:
    """Hands a message for plain.test to the stages; reports `res` for its
    job when given. Returns the job."""
    job: dict[str, Any] = {}

    async def body() -> None:
        address = res.address if res else f"{qid.lower()}@plain.test"
        await st.handle([received(envelope(qid, [address]))])
        job.update(engine.jobs[-1])
        if res is not None:
            await st.handle([done(job, res)])

    serving(st, body)
    return job


def test_results_keep_the_best_level_and_method_per_domain(tmp_path: Path) -> None:
    st, engine = stages(tmp_path)
    send(st, engine, "Q1", result("a@plain.test", "qualified", "dane-ee"))
    store = st.ctx.store
    row = store.partner("plain.test")
    assert row is not None
    assert (row["best_level"], row["best_method"]) == ("qualified", "dane-ee")
    # A weaker later delivery does not lower what was proven.
    with store.transaction() as db:
        store.note_partners(db, {"plain.test": Seen("encrypted", "")})
        store.note_partners(db, {"plain.test": Seen("", "", "validation-failure", "no TLSA")})
    row = store.partner("plain.test")
    assert row is not None
    assert (row["best_level"], row["best_method"]) == ("qualified", "dane-ee")
    assert (row["failure_reason"], row["failure_text"]) == ("validation-failure", "no TLSA")


def test_the_ledger_merges_each_batch_in_the_store_as_the_ratchet_needs(tmp_path: Path) -> None:
    # The merge is the upsert's own (store/partners.py, `_MERGE`), on
    # both stores: each step is one batch's summary of the domain, then
    # the row's (best level, best method, failure reason).
    st, _ = stages(tmp_path)
    store = st.ctx.store
    steps: list[tuple[Seen, tuple[Any, Any, Any]]] = [
        (Seen("", "", "tls-required", "no STARTTLS"), (None, None, "tls-required")),
        (Seen("encrypted", ""), ("encrypted", None, "tls-required")),
        (Seen("encrypted", "mta-sts"), ("encrypted", "mta-sts", "tls-required")),
        (Seen("encrypted", ""), ("encrypted", "mta-sts", "tls-required")),  # a weaker method
        (Seen("opportunistic", "dane-ee"), ("encrypted", "mta-sts", "tls-required")),
        (Seen("qualified", "dnssec-pkix"), ("qualified", "dnssec-pkix", "tls-required")),
        (Seen("qualified", "dane-ee"), ("qualified", "dane-ee", "tls-required")),
        (Seen("qualified", "dane-ta"), ("qualified", "dane-ta", "tls-required")),  # as strong
        (Seen("", "", "", "a failure without a reason"), ("qualified", "dane-ta", "tls-required")),
        (
            Seen("", "", "validation-failure", "no TLSA"),
            ("qualified", "dane-ta", "validation-failure"),
        ),
    ]
    firsts: set[int] = set()
    last = 0
    for seen, expected in steps:
        with store.transaction() as db:
            store.note_partners(db, {"plain.test": seen})
        row = store.partner("plain.test")
        assert row is not None
        assert (row["best_level"], row["best_method"], row["failure_reason"]) == expected, seen
        firsts.add(row["first_ms"])
        assert row["last_ms"] >= last
        last = row["last_ms"]
    assert len(firsts) == 1, "when it was first seen stays"
    assert row["failure_text"] == "no TLSA"
    # An operator's acceptance forgets the best and is kept by what follows.
    assert store.accept_partner("plain.test", "ops", "moved to a new provider")
    with store.transaction() as db:
        store.note_partners(db, {"plain.test": Seen("encrypted", "")})
    row = store.partner("plain.test")
    assert row is not None
    assert (row["best_level"], row["best_method"]) == ("encrypted", None)
    assert (row["accepted_by"], row["accepted_reason"]) == ("ops", "moved to a new provider")


def test_enforce_holds_a_partner_to_its_method_until_accepted(tmp_path: Path) -> None:
    st, engine = stages(tmp_path, "[delivery]\nratchet = 'enforce'\n")
    first = send(st, engine, "Q1", result("a@plain.test", "qualified", "dane-ee"))
    assert first["tls"]["level"] == "encrypted", "nothing remembered yet"
    held = send(st, engine, "Q2", None)
    # Class normal asks for encrypted; the partner proved DANE: held to it.
    assert held["tls"]["level"] == "qualified"
    assert held["tls"]["methods"] == ["dane-ee", "dane-ta"]

    store = st.ctx.store
    assert store.accept_partner("plain.test", "alice", "TLSA retired")
    freed = send(st, engine, "Q3", None)
    assert freed["tls"]["level"] == "encrypted" and "mta-sts" in freed["tls"]["methods"]
    (accept,) = [r for r in store.audit_records() if r.kind == "partner-accept"]
    assert accept.actor == "alice" and '"was_method":"dane-ee"' in accept.data
    row = store.partner("plain.test")
    assert row is not None and row["accepted_by"] == "alice"
    assert not store.accept_partner("nowhere.test", "alice", "x")


@pytest.mark.parametrize("mode", ["off", "warn"])
def test_off_and_warn_leave_the_job_as_its_class_asks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    st, engine = stages(tmp_path, f"[delivery]\nratchet = '{mode}'\n")
    send(st, engine, "Q1", result("a@plain.test", "qualified", "dane-ee"))
    with caplog.at_level(logging.WARNING, logger="mxg"):
        job = send(st, engine, "Q2", result("b@plain.test", "encrypted", None))
    assert job["tls"]["level"] == "encrypted"
    warned = [r for r in caplog.records if "below its remembered method" in r.getMessage()]
    assert bool(warned) == (mode == "warn")
    # Issue 16: warn logs the drop and counts it in the metrics.
    counted = {("dane-ee", "none"): 1} if mode == "warn" else {}
    assert st.ctx.counts.ratchet_drops == counted
