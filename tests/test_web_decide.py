"""The decision page (``/decide/<token>``) as a browser and an attacker
see it, through the ASGI app on both anyio backends: what the page shows
and never shows, CSRF, single use and idempotence, and bad input — each a
clear 4xx that changes nothing in the store. The real browser and a real
relay are tests/e2e/test_decide.py."""

from __future__ import annotations

import email
import hashlib
import hmac
import re
import struct
import warnings
from collections.abc import Iterator
from email.policy import default
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():
    # Starlette would have its test client on another HTTP package; this
    # one is in the lock file and does the same.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from mxg.decide import TokenKey
from mxg.decide.tokens import TOKEN_CONTEXT
from mxg.envelope import ATTACHMENT, unseal
from mxg.store import NewMessage, now_ms
from mxg.urlsafe import b64
from mxg.web import decide
from mxg.web.app import build_app
from mxg.web.decide import _origin_ok
from tests.pipeline.fakes import envelope, stages
from tests.test_web import answers, surface

KEY = TokenKey(bytes(range(32)))
ORIGIN = "http://testserver"
MESSAGE = b"From: a@internal.test\r\nSubject: Befund 7\r\n\r\nDiagnose: streng vertraulich\r\n"


class World:
    def __init__(self, tmp_path: Path, backend: str, toml: str = "", risk: str = "high") -> None:
        self.st, self.engine = stages(
            tmp_path, f'[web]\nlisten = ["127.0.0.1:1"]\npublic_url = "{ORIGIN}"\n{toml}'
        )
        ctx = self.st.ctx
        ctx.tokens = KEY
        env = envelope("Q1", ["a@plain.test", "b@plain.test", "c@plain.test"])
        ctx.store.add_messages([NewMessage(env, risk, {}, [risk] * 3)])
        self.engine.spool["Q1"] = (env, MESSAGE)
        ctx.store.db.execute(
            "UPDATE recipients SET status='awaiting-sender', asked=1, reason='validation-failure'"
            " WHERE idx IN (0, 1)"
        )
        self.token, claims = KEY.issue("Q1", now_ms() + 3_600_000)
        self.token_id = claims.token_id
        ctx.store.mark_asked("Q1", [0, 1], claims.token_id, claims.expires_ms)
        app = build_app(surface(ctx, answers), [decide.routes])
        self.client = TestClient(app, backend=backend, base_url=ORIGIN)

    @property
    def url(self) -> str:
        return f"/decide/{self.token}"

    def snapshot(self) -> Any:
        db = self.st.ctx.store.db
        return (
            [tuple(r) for r in db.execute("SELECT * FROM recipients ORDER BY idx")],
            [tuple(r) for r in db.execute("SELECT * FROM decision_tokens")],
            db.execute("SELECT MAX(last_seq) FROM audit_blocks").fetchone()[0],
            db.execute("SELECT COUNT(*) FROM events").fetchone()[0],
        )

    def csrf(self) -> str:
        page = self.client.get(self.url)
        assert page.status_code == 200, page.text
        m = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert m
        return m.group(1)

    def post(self, url: str | None = None, **form: str) -> Any:
        return self.client.post(url or self.url, data=form, headers={"Origin": ORIGIN})


@pytest.fixture
def world(tmp_path: Path, backend: str) -> Iterator[World]:
    w = World(tmp_path, backend)
    with w.client:
        yield w


def test_the_page_shows_subject_recipients_and_reason_never_content(world: World) -> None:
    page = world.client.get(world.url)
    assert page.status_code == 200
    assert "Befund 7" in page.text
    assert "a@plain.test" in page.text and "b@plain.test" in page.text
    assert "c@plain.test" not in page.text  # not parked
    assert "no way to prove" in page.text and "nachweisen" in page.text
    assert "Diagnose" not in page.text
    for choice in ("keep", "normal", "cancel"):
        assert f'value="{choice}"' in page.text
    h = page.headers
    assert h["cache-control"] == "no-store"
    assert h["referrer-policy"] == "same-origin"
    assert "default-src 'none'" in h["content-security-policy"]
    assert "script-src" not in h["content-security-policy"]
    cookie = h["set-cookie"].lower()
    assert "samesite=strict" in cookie and "httponly" in cookie and "path=/decide/" in cookie


def test_a_decision_is_taken_once_recorded_and_a_repeat_changes_nothing(world: World) -> None:
    csrf = world.csrf()
    done = world.post(choice="normal", csrf=csrf)
    assert done.status_code == 200, done.text
    assert 'data-choice="normal"' in done.text
    rows = world.st.ctx.store.recipients("Q1")
    assert [(r["status"], r["override_level"]) for r in rows[:2]] == [("pending", "encrypted")] * 2
    assert rows[2]["status"] == "pending" and rows[2]["decision"] is None
    token = world.st.ctx.store.token(world.token_id)
    assert token["used_ms"] and token["choice"] == "normal" and token["client"] == "testclient"
    before = world.snapshot()
    again = world.post(choice="normal", csrf=csrf)
    assert again.status_code == 200
    assert "Bereits entschieden" in again.text
    other = world.post(choice="cancel", csrf=csrf)
    assert other.status_code == 409
    reused = world.client.get(world.url)
    assert reused.status_code == 410
    assert "already used: normal" in reused.text
    assert world.snapshot() == before


def test_csrf_the_form_value_must_match_token_and_cookie(world: World) -> None:
    csrf = world.csrf()
    before = world.snapshot()
    assert world.post(choice="keep").status_code == 403
    assert world.post(choice="keep", csrf=csrf[:-2] + "AA").status_code == 403
    assert world.post(choice="keep", csrf=KEY.csrf("00" * 16, "x" * 43)).status_code == 403
    world.client.cookies.clear()
    assert world.post(choice="keep", csrf=csrf).status_code == 403
    assert world.snapshot() == before


def test_csrf_a_foreign_origin_is_refused(world: World) -> None:
    csrf = world.csrf()
    before = world.snapshot()
    for origin in ("https://evil.example", "null", "http://testserver.evil.example"):
        r = world.client.post(
            world.url, data={"choice": "keep", "csrf": csrf}, headers={"Origin": origin}
        )
        assert r.status_code == 403, origin
        assert "Origin" in r.text
    assert world.snapshot() == before


def test_cancel_with_a_dsn_bounces_the_parked_recipients(world: World) -> None:
    done = world.post(choice="cancel", dsn="1", csrf=world.csrf())
    assert done.status_code == 200
    assert [r["status"] for r in world.st.ctx.store.recipients("Q1")] == [
        "bounced",
        "bounced",
        "pending",
    ]
    assert world.st.ctx.store.dsn_pending() == ["Q1"]


def _signed(queue_id: str, token_id: bytes, expires_ms: int) -> str:
    payload = token_id + struct.pack(">Q", expires_ms) + queue_id.encode()
    mac = hmac.new(bytes(range(32)), TOKEN_CONTEXT + payload, hashlib.sha256).digest()
    return f"{b64(payload)}.{b64(mac)}"


def test_bad_input_gets_a_clear_4xx_and_changes_nothing(world: World) -> None:
    csrf = world.csrf()
    tid = bytes.fromhex(world.token_id)
    expired = _signed("Q1", tid, now_ms() - 1)
    wrong_queue = _signed("Q2", tid, now_ms() + 60_000)
    forged = world.token[:-4] + ("AAAA" if not world.token.endswith("AAAA") else "BBBB")
    before = world.snapshot()
    c = world.client
    cases = [
        ("malformed token", c.get("/decide/x"), 400),
        ("malformed token, POST", world.post("/decide/%00%ff", choice="keep", csrf=csrf), 400),
        ("overlong token", c.get("/decide/" + "A" * 5000), 400),
        ("forged token", c.get(f"/decide/{forged}"), 403),
        ("expired token", c.get(f"/decide/{expired}"), 410),
        ("token of another queue", c.get(f"/decide/{wrong_queue}"), 403),
        ("PUT", c.put(world.url, content=b"choice=keep"), 405),
        ("DELETE", c.delete(world.url), 405),
        ("PATCH", c.patch(world.url, content=b""), 405),
        ("no path token", c.get("/decide/"), 404),
        ("JSON body", c.post(world.url, json={"choice": "keep"}), 415),
        (
            "oversized body",
            c.post(
                world.url,
                content=b"choice=keep&csrf=" + b"A" * 20_000,
                headers={"Content-Type": decide.FORM, "Origin": ORIGIN},
            ),
            413,
        ),
        (
            "oversized, chunked",
            c.post(
                world.url,
                content=iter([b"choice=keep&x=" + b"A" * 10_000, b"B" * 10_000]),
                headers={"Content-Type": decide.FORM, "Origin": ORIGIN},
            ),
            413,
        ),
        (
            "a lying Content-Length",
            c.post(
                world.url,
                content=b"choice=keep",
                headers={"Content-Type": decide.FORM, "Content-Length": "-1"},
            ),
            413,
        ),
        ("unknown choice", world.post(choice="everything", csrf=csrf), 400),
        (
            "repeated field",
            c.post(
                world.url,
                content=f"choice=keep&choice=cancel&csrf={csrf}".encode(),
                headers={"Content-Type": decide.FORM, "Origin": ORIGIN},
            ),
            400,
        ),
        (
            "not ASCII",
            c.post(
                world.url,
                content="choice=kéep".encode(),
                headers={"Content-Type": decide.FORM, "Origin": ORIGIN},
            ),
            400,
        ),
        ("a weak typed password", world.post(choice="envelope", csrf=csrf, password="1234"), 400),
    ]
    wrong = [(what, r.status_code, want) for what, r, want in cases if r.status_code != want]
    assert not wrong, wrong
    for _, r, _ in cases:
        assert r.headers.get("location") is None  # never a redirect
    assert world.snapshot() == before


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(token=st.text(min_size=1, max_size=300), body=st.binary(max_size=300))
def test_fuzzed_tokens_and_bodies_get_a_4xx_and_change_nothing(
    world: World, token: str, body: bytes
) -> None:
    before = world.snapshot()
    url = "/decide/" + quote(token, safe="")
    got = world.client.get(url)
    posted = world.client.post(
        url, content=body, headers={"Content-Type": decide.FORM, "Origin": ORIGIN}
    )
    assert 400 <= got.status_code < 500
    assert 400 <= posted.status_code < 500
    assert world.snapshot() == before


def test_the_page_is_rate_limited_per_client(tmp_path: Path, backend: str) -> None:
    w = World(tmp_path, backend, "[decisions]\nrate_limit = 3\n")
    with w.client:
        codes = [w.client.get(w.url).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]


def test_rule8b_the_page_never_offers_or_accepts_normal_risk_for_secret(
    tmp_path: Path, backend: str
) -> None:
    w = World(tmp_path, backend, risk="secret")
    with w.client:
        page = w.client.get(w.url)
        assert 'value="normal"' not in page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        before = w.snapshot()
        r = w.post(choice="normal", csrf=csrf.group(1))
        assert r.status_code == 403
        assert w.snapshot() == before


def test_the_envelope_password_is_shown_once_and_the_carrier_holds_no_plaintext(
    world: World,
) -> None:
    csrf = world.csrf()
    done = world.post(choice="envelope", csrf=csrf)
    assert done.status_code == 200, done.text
    m = re.search(r'id="password">([^<]+)<', done.text)
    assert m
    password = m.group(1)
    assert len(password.replace("-", "").replace(" ", "")) >= 16
    store = world.st.ctx.store
    assert [r["status"] for r in store.recipients("Q1")] == ["deleted", "deleted", "pending"]
    [carrier] = store.pending_carriers()
    data = bytes(carrier["data"])
    assert b"Diagnose" not in data and password.encode() not in data
    html = email.message_from_bytes(data, policy=default)
    page = next(p for p in html.walk() if p.get_filename() == ATTACHMENT)
    assert unseal(page.get_payload(decode=True), password) == MESSAGE
    # Nothing of the password in the store or the audit trail.
    dump = "\n".join(store.db.iterdump())
    assert password not in dump
    again = world.post(choice="envelope", csrf=csrf)
    assert again.status_code == 200 and "Bereits entschieden" in again.text
    assert 'id="password"' not in again.text
    assert len(store.pending_carriers()) == 1


def test_a_typed_password_is_used_and_not_shown(world: World) -> None:
    done = world.post(choice="envelope", csrf=world.csrf(), password="Ruebe-Kessel-Wolke-42!x")
    assert done.status_code == 200, done.text
    assert "Ruebe-Kessel" not in done.text
    data = bytes(world.st.ctx.store.pending_carriers()[0]["data"])
    page = next(
        p
        for p in email.message_from_bytes(data, policy=default).walk()
        if p.get_filename() == ATTACHMENT
    )
    assert unseal(page.get_payload(decode=True), "Ruebe-Kessel-Wolke-42!x") == MESSAGE


def test_the_origin_check_compares_scheme_host_and_port() -> None:
    """A browser sends no default port in Origin (RFC 6454 §6.2); a
    public_url may name it, or a path behind a proxy."""
    assert _origin_ok("https://mail-gw.example.org", "https://mail-gw.example.org:443")
    assert _origin_ok("https://Mail-GW.example.org", "https://mail-gw.example.org/mxg")
    assert _origin_ok("http://127.0.0.1:8080", "http://127.0.0.1:8080")
    assert _origin_ok(None, "https://mail-gw.example.org")
    for foreign in (
        "null",
        "",
        "http://mail-gw.example.org",
        "https://mail-gw.example.org:8443",
        "https://evil.example",
        "https://mail-gw.example.org.evil.example",
        "https://[::1",
        "https://mail-gw.example.org:99999",
    ):
        assert not _origin_ok(foreign, "https://mail-gw.example.org:443"), foreign
    assert not _origin_ok("https://mail-gw.example.org", "")
