"""The admin API's decisions for recipients awaiting the sender
(`mxg.web.api` ``/awaiting`` and ``/messages/{id}/decide``): the same
implementation as ``mxg decide`` (`mxg.ops.deciding`), recorded with the
token's name; class secret never lowered without force and a reason
(ARCHITECTURE.md rule 8b); a secure envelope only with a typed password,
which is never returned or logged; bad input refused with nothing
changed."""

from __future__ import annotations

import email
import json
import logging
from email.policy import default
from typing import Any

import pytest

from mxg.envelope import unseal
from mxg.pipeline.controller import Stages
from tests.pipeline.fakes import envelope
from tests.test_ops import A, B
from tests.test_web_api import ADMIN, READER, Call, relay, run

__all__ = ["relay"]

ORIGINAL = b"From: alice@internal.test\r\nSubject: Befund\r\n\r\nthe findings\r\n"
JSON = {"content-type": "application/json"}
PASSWORD = "correct horse battery staple orbit"


@pytest.fixture
def parked(relay: Stages) -> Stages:
    """A's two recipients (high) and B's one (secret) await the sender."""
    store = relay.ctx.store
    store.db.execute(
        "UPDATE recipients SET status='awaiting-sender', reason='validation-failure', asked=1"
        " WHERE queue_id IN (?, ?)",
        (A, B),
    )
    store.db.execute("UPDATE recipients SET class='high' WHERE queue_id=?", (A,))
    relay.ctx.engine.spool[A] = (envelope(A, ["a1@x.test", "a2@y.test"]), ORIGINAL)
    return relay


def rows(st: Stages) -> list[dict[str, Any]]:
    return [dict(r) for q in (A, B) for r in st.ctx.store.recipients(q)]


def test_awaiting_lists_the_parked_recipients(parked: Stages, backend: str) -> None:
    async def body(call: Call) -> None:
        r = await call("GET", "/awaiting", READER)
        assert r.status_code == 200, r.text
        got = r.json()["recipients"]
        assert [(p["queue_id"], p["recipient"], p["risk_class"]) for p in got] == [
            (A, "a1@x.test", "high"),
            (A, "a2@y.test", "high"),
            (B, "b1@x.test", "secret"),
        ]
        assert got[0]["sender"] == "alice@internal.test"
        assert got[0]["reason"] == "validation-failure"
        assert got[0]["since"] and got[0]["expires"] == ""
        r = await call("GET", "/awaiting?limit=1", READER)
        assert len(r.json()["recipients"]) == 1 and r.json()["truncated"] is True

    run(parked, backend, body)


def test_an_operator_confirms_normal_risk_recorded_with_the_token_name(
    parked: Stages, backend: str
) -> None:
    async def body(call: Call) -> None:
        r = await call(
            "POST",
            f"/messages/{A}/decide",
            ADMIN,
            json={"recipients": ["A1@X.TEST"], "choice": "normal", "reason": "sender called"},
        )
        assert r.status_code == 400, "the local part is case-sensitive: no such recipient"
        r = await call(
            "POST",
            f"/messages/{A}/decide",
            ADMIN,
            json={"recipients": ["a1@X.test"], "choice": "normal", "reason": "sender called"},
        )
        assert r.status_code == 200, r.text
        assert r.json() == {
            "queue_id": A,
            "choice": "normal",
            "recipients": ["a1@x.test"],
            "actor": "ops-alice (token)",
            "level": "encrypted",
            "forced": False,
        }

    run(parked, backend, body)
    a1, a2, _ = rows(parked)
    assert (a1["status"], a1["override_level"], a1["decision"]) == (
        "pending",
        "encrypted",
        "normal",
    )
    assert json.loads(a1["decided"])["by"] == "ops-alice (token)"
    assert json.loads(a1["decided"])["client"] == "192.0.2.7"
    assert a2["status"] == "awaiting-sender"
    audit = [r for r in parked.ctx.store.audit_records() if r.kind == "decision"]
    assert len(audit) == 1 and audit[0].actor == "ops-alice (token)"
    assert json.loads(audit[0].data)["reason"] == "sender called"
    assert parked.ctx.wakeup._wanted


def test_rule8b_secret_is_lowered_only_with_force_and_recorded(
    parked: Stages, backend: str
) -> None:
    async def body(call: Call) -> None:
        ask = {"recipients": ["b1@x.test"], "choice": "normal", "reason": "asked"}
        r = await call("POST", f"/messages/{B}/decide", ADMIN, json=ask)
        assert r.status_code == 409, r.text
        assert "class secret is never sent at class normal's level" in r.json()["error"]
        assert rows(parked)[2]["status"] == "awaiting-sender"
        r = await call("POST", f"/messages/{B}/decide", ADMIN, json={**ask, "force": True})
        assert r.status_code == 200, r.text
        assert r.json()["forced"] is True

    run(parked, backend, body)
    data = json.loads(
        next(r for r in parked.ctx.store.audit_records() if r.kind == "decision").data
    )
    assert data["forced"] is True and data["reason"] == "asked"


def test_an_envelope_needs_a_typed_password_never_returned_or_logged(
    parked: Stages, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    ask = {"recipients": ["a1@x.test", "a2@y.test"], "choice": "envelope", "reason": "by phone"}

    async def body(call: Call) -> None:
        r = await call("POST", f"/messages/{A}/decide", ADMIN, json=ask)
        assert r.status_code == 400 and "password" in r.json()["error"]
        r = await call("POST", f"/messages/{A}/decide", ADMIN, json={**ask, "password": "abc"})
        assert r.status_code == 400 and r.json()["error"].startswith("password:")
        assert parked.ctx.store.pending_carriers() == []
        with caplog.at_level(logging.DEBUG):
            r = await call(
                "POST", f"/messages/{A}/decide", ADMIN, json={**ask, "password": PASSWORD}
            )
        assert r.status_code == 200, r.text
        assert PASSWORD not in r.text

    run(parked, backend, body)
    assert PASSWORD not in caplog.text
    assert "operator decision" in caplog.text
    (carrier,) = parked.ctx.store.pending_carriers()
    assert PASSWORD.encode() not in bytes(carrier["data"])
    assert b"the findings" not in bytes(carrier["data"])
    mail = email.message_from_bytes(bytes(carrier["data"]), policy=default)
    page = next(p for p in mail.walk() if p.get_filename()).get_payload(decode=True)
    assert b"the findings" in unseal(page, PASSWORD)
    assert {r["decision"] for r in rows(parked)[:2]} == {"envelope"}


def test_bad_decisions_get_a_4xx_and_change_nothing(parked: Stages, backend: str) -> None:
    before = rows(parked)
    path = f"/messages/{A}/decide"
    good = {"recipients": ["a1@x.test"], "choice": "keep", "reason": "r"}

    async def body(call: Call) -> None:
        for token, kw, status in (
            (READER, {"json": good}, 403),
            (ADMIN, {"json": {**good, "choice": "later"}}, 400),
            (ADMIN, {"json": {**good, "dsn": True}}, 400),
            (ADMIN, {"json": {**good, "password": PASSWORD}}, 400),
            (ADMIN, {"json": {**good, "reason": ""}}, 400),
            (ADMIN, {"json": {**good, "recipients": []}}, 400),
            (ADMIN, {"json": {**good, "recipients": ["nobody@x.test"]}}, 400),
            (ADMIN, {"json": {**good, "extra": 1}}, 400),
            (ADMIN, {"json": {**good, "force": True, "reason": " "}}, 400),
            (ADMIN, {"content": b"{", "headers": {"content-type": "application/json"}}, 400),
            (ADMIN, {"content": b"x=1", "headers": {"content-type": "text/plain"}}, 415),
            (
                ADMIN,
                {"content": b" " * (2 << 20), "headers": {"content-type": "application/json"}},
                413,
            ),
        ):
            r = await call("POST", path, token, **kw)
            assert r.status_code == status, (kw, r.text)
            assert r.json()["error"]
        r = await call("POST", "/messages/not-a-queue-id/decide", ADMIN, json=good)
        assert r.status_code == 400
        r = await call("GET", path, ADMIN)
        assert r.status_code == 405

    run(parked, backend, body)
    assert rows(parked) == before
    assert [r for r in parked.ctx.store.audit_records() if r.kind == "decision"] == []
