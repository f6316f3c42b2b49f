"""The operator pages (`mxg.web.ui`) in the web surface's ASGI app, with
httpx's ASGI transport, over a real store: login and its cookie, CSRF on
every POST, a bulk decision recorded under the login's token, roles,
and the pages' headers. tests/e2e/test_operator_ui.py drives them in
headless Chromium against `mxg run`."""

from __future__ import annotations

import re
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from mxg.pipeline.controller import Stages
from mxg.store.partners import Seen
from mxg.web.app import WEB_ROUTES, build_app
from mxg.web.pages import CSP
from mxg.web.session import COOKIE, KEY_FILE, Sessions
from tests.pipeline.fakes import stages
from tests.support.certs import ca_signed
from tests.support.dns import free_port
from tests.test_ops import A, B, C
from tests.test_web import answers, serve_and, surface
from tests.test_web_api import ADMIN, READER, config, operator_records, relay, states

__all__ = ["relay"]

Client = httpx.AsyncClient


def run(st: Stages, backend: str, body: Callable[[Client], Awaitable[None]]) -> None:
    app = build_app(surface(st.ctx, answers), WEB_ROUTES)

    async def main() -> None:
        transport = httpx.ASGITransport(app=app, client=("192.0.2.8", 4712))
        async with httpx.AsyncClient(transport=transport, base_url="http://mxg.test") as c:
            await body(c)

    anyio.run(main, backend=backend)


def csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


async def log_in(c: Client, token: str) -> httpx.Response:
    form = await c.get("/ui/login")
    return await c.post("/ui/login", data={"csrf": csrf(form), "token": token})


def test_login_then_a_bulk_release_recorded_under_the_token(relay: Stages, backend: str) -> None:
    relay.ctx.store.hold_messages([A, B, C], "root", "suspicious")

    async def body(c: Client) -> None:
        assert (await c.get("/")).headers["location"] == "/ui/"
        first = await c.get("/ui/held")
        assert first.status_code == 303 and first.headers["location"] == "/ui/login"
        login = await c.get("/ui/login")
        assert login.headers["content-security-policy"] == CSP
        assert "<script" not in login.text
        done = await log_in(c, ADMIN)
        assert done.status_code == 303 and done.headers["location"] == "/ui/"
        cookie = done.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie
        assert "SameSite=strict" in cookie and "Path=/ui" in cookie
        assert "Secure" not in cookie  # plain HTTP here; HTTPS sets it
        summary = await c.get("/ui/")
        assert summary.status_code == 200 and "ops-alice (admin)" in summary.text
        held = await c.get("/ui/held")
        for qid in (A, B, C):
            assert f'value="{qid}"' in held.text
        token = csrf(held)
        r = await c.post(
            "/ui/held",
            data={"csrf": token, "ids": [A, C], "action": "release", "reason": "looked at them"},
        )
        assert r.status_code == 303 and r.headers["location"] == "/ui/held?done=release&n=2"
        after = await c.get(r.headers["location"])
        assert "release: 2 message(s) changed" in after.text
        assert f'value="{B}"' in after.text and f'value="{A}"' not in after.text
        # Without a reason, or nothing selected: refused, nothing changed.
        for data, why in (
            ({"ids": [B], "action": "bounce", "reason": " "}, "give a reason"),
            ({"action": "bounce", "reason": "x"}, "select at least one"),
            ({"ids": [B], "action": "hold", "reason": "x"}, "choose one of"),
            ({"ids": ["nonsense"], "action": "delete", "reason": "x"}, "is not a queue id"),
        ):
            refused = await c.post("/ui/held", data={"csrf": token, **data})
            assert refused.status_code == 400 and why in refused.text, refused.text
        out = await c.post("/ui/logout", data={"csrf": token})
        assert out.headers["location"] == "/ui/login"
        assert (await c.get("/ui/held")).status_code == 303

    run(relay, backend, body)
    mine = [(k, q, a, d) for k, q, a, d in operator_records(relay) if a != "root"]
    assert mine == [
        ("release", A, "ops-alice (token)", {"detail": "looked at them"}),
        ("release", C, "ops-alice (token)", {"detail": "looked at them"}),
    ]


def test_a_post_without_the_csrf_value_is_refused(relay: Stages, backend: str) -> None:
    relay.ctx.store.hold_messages([A], "root", "x")
    before = states(relay)

    async def body(c: Client) -> None:
        await log_in(c, ADMIN)
        held = await c.get("/ui/held")
        other = Sessions.load_or_create(relay.ctx.cfg.data.directory).csrf("another session")
        for data in (
            {"ids": [A], "action": "delete", "reason": "x"},
            {"ids": [A], "action": "delete", "reason": "x", "csrf": other},
            {"ids": [A], "action": "delete", "reason": "x", "csrf": csrf(held) + "x"},
        ):
            r = await c.post("/ui/held", data=data)
            assert r.status_code == 403 and "CSRF" in r.text
        # The login form has one too.
        r = await c.post("/ui/login", data={"token": ADMIN})
        assert r.status_code == 403 and "login form expired" in r.text
        # JSON instead of the form is refused as well.
        r = await c.post("/ui/held", json={"csrf": csrf(held), "ids": [A]})
        assert r.status_code == 415

    run(relay, backend, body)
    assert states(relay) == before


def test_a_wrong_token_cannot_log_in_and_failures_are_throttled(
    relay: Stages, backend: str
) -> None:
    async def body(c: Client) -> None:
        for _ in range(10):
            r = await log_in(c, "mxg_wrong")
            assert r.status_code == 401 and "not valid" in r.text
            assert COOKIE not in r.headers.get("set-cookie", "")
        r = await log_in(c, ADMIN)
        assert r.status_code == 429 and "too many failed logins" in r.text

    run(relay, backend, body)


def test_a_read_login_sees_no_forms_and_cannot_post(relay: Stages, backend: str) -> None:
    relay.ctx.store.hold_messages([A], "root", "x")
    before = states(relay)

    async def body(c: Client) -> None:
        await log_in(c, READER)
        held = await c.get("/ui/held")
        assert A in held.text and 'name="ids"' not in held.text
        r = await c.post(
            "/ui/held", data={"csrf": csrf(held), "ids": [A], "action": "delete", "reason": "x"}
        )
        assert r.status_code == 403 and "monitor has the role read" in r.text
        for page in ("/ui/", "/ui/partners", "/ui/failures?since=7d"):
            assert (await c.get(page)).status_code == 200
        assert (await c.get("/ui/failures?since=1y")).status_code == 400

    run(relay, backend, body)
    assert states(relay) == before


def test_a_session_ends_when_its_token_is_removed(relay: Stages, backend: str) -> None:
    async def body(c: Client) -> None:
        await log_in(c, ADMIN)
        assert (await c.get("/ui/")).status_code == 200
        web = relay.ctx.cfg.web
        relay.ctx.cfg = relay.ctx.cfg.model_copy(
            update={"web": web.model_copy(update={"token": web.token[1:]})}
        )
        assert (await c.get("/ui/")).status_code == 303

    run(relay, backend, body)


def test_sessions_are_signed_and_expire(tmp_path: Path) -> None:
    now = [1000.0]
    s = Sessions.load_or_create(tmp_path)
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600
    s = Sessions(s._key, clock=lambda: now[0])
    cookie, session = s.issue("alice", "ab" * 32, 60)
    assert s.read(cookie) == session
    body, mac = cookie.split(".")
    for forged in (body + "." + mac[:-2] + "AA", body[:-2] + "." + mac, "", "x" * 600, "a.b.c"):
        assert s.read(forged) is None
    other = Sessions(b"\x01" * 32, clock=lambda: now[0])
    assert other.read(cookie) is None
    now[0] += 61
    assert s.read(cookie) is None
    now[0] = 1000.0
    s.log_out(session)
    assert s.read(cookie) is None


@pytest.mark.parametrize(
    "page", ["/ui/", "/ui/held", "/ui/awaiting", "/ui/partners", "/ui/failures"]
)
def test_every_page_carries_the_strict_headers(relay: Stages, page: str) -> None:
    async def body(c: Client) -> None:
        await log_in(c, ADMIN)
        r = await c.get(page)
        assert r.status_code == 200
        h: Any = r.headers
        assert h["content-security-policy"] == CSP
        assert (h["x-frame-options"], h["cache-control"]) == ("DENY", "no-store")
        assert "<script" not in r.text and "style=" not in r.text

    run(relay, "asyncio", body)


def test_no_redirect_goes_to_the_host_a_request_names(relay: Stages, backend: str) -> None:
    """A trailing slash too many or too few gets no redirect built from
    the Host header (Starlette's default): 404, or the page's own path."""

    async def body(c: Client) -> None:
        evil = {"Host": "evil.example"}
        for path in ("/decide/abc/", "/api/v1/queue/", "/ui/held/", "/health/"):
            r = await c.get(path, headers=evil)
            assert r.status_code == 404, (path, r.status_code, r.headers.get("location"))
        for path in ("/", "/ui"):
            r = await c.get(path, headers=evil)
            assert (r.status_code, r.headers["location"]) == (303, "/ui/"), path

    run(relay, backend, body)


def test_over_https_the_login_cookie_is_secure(tmp_path: Path, backend: str) -> None:
    """The pages on a real HTTPS listener on the running backend: the
    session cookie gets Secure, and logging in works as over HTTP."""
    ca, chain, key = ca_signed(tmp_path / "certs", "mxg web CA", ["mxg.test"])
    port = free_port()
    st, _ = stages(
        tmp_path,
        config(tmp_path) + f'[web]\nlisten = ["127.0.0.1:{port}"]\n'
        f'tls_cert = "{chain}"\ntls_key = "{key}"\n',
    )
    tls = ssl.create_default_context(cafile=str(ca))
    tls.check_hostname = False  # the certificate names mxg.test, dialled by address

    async def requests() -> None:
        async with httpx.AsyncClient(verify=tls, base_url=f"https://127.0.0.1:{port}") as c:
            form = await c.get("/ui/login")
            assert "Secure" in form.headers["set-cookie"]
            done = await c.post("/ui/login", data={"csrf": csrf(form), "token": READER})
            assert done.status_code == 303
            cookie = done.headers["set-cookie"]
            assert cookie.startswith(f"{COOKIE}=") and "Secure" in cookie and "HttpOnly" in cookie
            page = await c.get("/ui/")
            assert page.status_code == 200 and "monitor (read)" in page.text

    serve_and(st.ctx.cfg, st.ctx, answers, backend, requests)


def test_a_partner_is_accepted_from_its_page_and_through_the_api(
    relay: Stages, backend: str
) -> None:
    store = relay.ctx.store
    with store.transaction() as db:
        store.note_partners(
            db, {d: Seen(level="qualified", method="dane-ee") for d in ("x.test", "y.test")}
        )

    async def body(c: Client) -> None:
        await log_in(c, ADMIN)
        page = await c.get("/ui/partners")
        assert "x.test" in page.text and "dane-ee" in page.text
        r = await c.post(
            "/ui/partners/accept",
            data={"csrf": csrf(page), "domain": "x.test", "reason": "they dropped DANE"},
        )
        assert r.status_code == 200 and "x.test: accepted" in r.text
        r = await c.post(
            "/ui/partners/accept",
            data={"csrf": csrf(page), "domain": "nowhere.test", "reason": "x"},
        )
        assert r.status_code == 400 and "not in the ledger" in r.text
        api = await c.post(
            "/api/v1/partners/y.test/accept",
            json={"reason": "moved to MTA-STS"},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert api.json() == {"domain": "y.test", "accepted": True, "actor": "ops-alice (token)"}

    run(relay, backend, body)
    accepted = {p["domain"]: (p["accepted_by"], p["best_method"]) for p in store.partner_list()}
    assert accepted == {
        "x.test": ("ops-alice (token)", None),
        "y.test": ("ops-alice (token)", None),
    }
    assert [(k, a, d["reason"]) for k, _, a, d in operator_records(relay)] == [
        ("partner-accept", "ops-alice (token)", "they dropped DANE"),
        ("partner-accept", "ops-alice (token)", "moved to MTA-STS"),
    ]


def test_a_message_page_shows_recipients_and_who_did_what(relay: Stages, backend: str) -> None:
    relay.ctx.store.hold_messages([A], "root", "<b>suspicious</b>")

    async def body(c: Client) -> None:
        await log_in(c, READER)
        held = await c.get("/ui/held")
        assert f'href="/ui/messages/{A}"' in held.text
        page = await c.get(f"/ui/messages/{A.lower()}")
        assert page.status_code == 200
        assert "a1@x.test" in page.text and "a2@y.test" in page.text and "deferred" in page.text
        # The reason as text, escaped: never markup.
        assert "&lt;b&gt;suspicious&lt;/b&gt;" in page.text and "<b>" not in page.text
        assert "root" in page.text
        assert (await c.get("/ui/messages/nothex")).status_code == 400
        assert (await c.get(f"/ui/messages/{'E' * 16}")).status_code == 404

    run(relay, backend, body)


def test_a_wrong_method_gets_405_naming_every_method_of_the_path(relay: Stages) -> None:
    """RFC 9110 §15.5.6: Allow lists what the resource supports, also for
    a page whose form posts to the same path."""

    async def body(c: Client) -> None:
        for path, allow in (
            ("/decide/abc", {"GET", "HEAD", "POST"}),
            ("/ui/held", {"GET", "HEAD", "POST"}),
            ("/ui/login", {"GET", "HEAD", "POST"}),
            ("/health", {"GET", "HEAD"}),
        ):
            r = await c.request("PUT", path)
            assert r.status_code == 405, path
            assert set(r.headers["allow"].split(", ")) == allow, (path, r.headers["allow"])
        # The methods still reach their own endpoints.
        assert (await c.get("/ui/login")).status_code == 200
        assert (await c.post("/ui/login", data={"csrf": "x", "token": "y"})).status_code == 403

    run(relay, "asyncio", body)
