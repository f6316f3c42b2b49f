"""The operator page of recipients awaiting the sender (``/ui/awaiting``):
the list, a decision per recipient through `mxg.ops.deciding` as ``mxg
decide`` takes it, under the login's name and CSRF-protected; a secure
envelope only with a typed password that the page never shows again;
class secret not lowered without force (ARCHITECTURE.md rule 8b); a read
login sees no form. tests/e2e/test_operator_ui.py takes one in Chromium."""

from __future__ import annotations

import json

from mxg.pipeline.controller import Stages
from tests.test_ops import A, B
from tests.test_web_api import ADMIN, READER, relay
from tests.test_web_api_decide import PASSWORD, parked, rows
from tests.test_web_ui import Client, csrf, log_in, run

__all__ = ["parked", "relay"]


def test_the_page_lists_them_and_a_decision_is_recorded_under_the_login(
    parked: Stages, backend: str
) -> None:
    async def body(c: Client) -> None:
        await log_in(c, ADMIN)
        page = await c.get("/ui/awaiting")
        assert page.status_code == 200
        for text in (A, B, "a1@x.test", "b1@x.test", "validation-failure", "no link"):
            assert text in page.text
        assert 'type="password"' in page.text
        form = {"csrf": csrf(page), "queue_id": A, "recipient": "a2@y.test"}
        r = await c.post(
            "/ui/awaiting", data={**form, "choice": "cancel", "dsn": "1", "reason": "phoned"}
        )
        assert r.status_code == 303 and r.headers["location"] == "/ui/awaiting?done=cancel"
        after = await c.get(r.headers["location"])
        assert "cancel: decided" in after.text and "a2@y.test" not in after.text

    run(parked, backend, body)
    a2 = rows(parked)[1]
    assert (a2["status"], a2["decision"]) == ("bounced", "cancel")
    decided = json.loads(a2["decided"])
    assert decided["by"] == "ops-alice (token)" and decided["client"] == "192.0.2.8"


def test_an_envelope_from_the_page_never_shows_the_password(parked: Stages, backend: str) -> None:
    async def body(c: Client) -> None:
        await log_in(c, ADMIN)
        page = await c.get("/ui/awaiting")
        form = {"csrf": csrf(page), "queue_id": A, "recipient": "a1@x.test", "reason": "r"}
        refused = await c.post("/ui/awaiting", data={**form, "choice": "envelope"})
        assert refused.status_code == 400 and "type the password" in refused.text
        weak = await c.post(
            "/ui/awaiting", data={**form, "choice": "envelope", "password": "abc123"}
        )
        assert weak.status_code == 400 and "password:" in weak.text
        assert "abc123" not in weak.text
        # A refused decision with a good password does not show it either.
        other = {**form, "choice": "envelope", "password": PASSWORD, "dsn": "1"}
        r = await c.post("/ui/awaiting", data=other)
        assert r.status_code == 400 and PASSWORD not in r.text
        r = await c.post("/ui/awaiting", data={**form, "choice": "envelope", "password": PASSWORD})
        assert r.status_code == 303
        assert PASSWORD not in (await c.get(r.headers["location"])).text

    run(parked, backend, body)
    assert rows(parked)[0]["decision"] == "envelope"
    assert len(parked.ctx.store.pending_carriers()) == 1


def test_rule8b_secret_from_the_page_needs_force_and_the_csrf_value(
    parked: Stages, backend: str
) -> None:
    async def body(c: Client) -> None:
        await log_in(c, ADMIN)
        page = await c.get("/ui/awaiting")
        form = {"queue_id": B, "recipient": "b1@x.test", "choice": "normal", "reason": "asked"}
        r = await c.post("/ui/awaiting", data=form)
        assert r.status_code == 403, "no CSRF value"
        r = await c.post("/ui/awaiting", data={**form, "csrf": "forged"})
        assert r.status_code == 403
        r = await c.post("/ui/awaiting", data={**form, "csrf": csrf(page)})
        assert r.status_code == 409 and "class secret is never sent" in r.text
        assert rows(parked)[2]["status"] == "awaiting-sender"
        r = await c.post("/ui/awaiting", data={**form, "csrf": csrf(page), "force": "1"})
        assert r.status_code == 303

    run(parked, backend, body)
    b1 = rows(parked)[2]
    assert (b1["status"], b1["override_level"]) == ("pending", "encrypted")


def test_a_read_login_sees_the_list_without_forms_and_cannot_post(
    parked: Stages, backend: str
) -> None:
    before = rows(parked)

    async def body(c: Client) -> None:
        await log_in(c, READER)
        page = await c.get("/ui/awaiting")
        assert page.status_code == 200 and "a1@x.test" in page.text
        assert "<form" not in page.text.split("<main", 1)[1]
        token = csrf(page)
        r = await c.post(
            "/ui/awaiting",
            data={"csrf": token, "queue_id": A, "recipient": "a1@x.test", "choice": "keep",
                  "reason": "x"},
        )  # fmt: skip
        assert r.status_code == 403

    run(parked, backend, body)
    assert rows(parked) == before
