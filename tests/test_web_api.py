"""The admin API (`mxg.web.api`) in the web surface's own ASGI app, with
httpx's ASGI transport, over a real store: tokens and roles, every
change recorded with its actor and reason, bad input refused as JSON
with nothing changed, throttled failures, and an OpenAPI description
that lists exactly the routes there are. tests/e2e/test_admin_api.py
runs it inside `mxg run`."""

from __future__ import annotations

import hashlib
import json
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.routing import Mount, Route

from mxg import ops
from mxg.audit_trail import verify
from mxg.pipeline.context import Wakeup
from mxg.pipeline.controller import Stages
from mxg.signing import SigningKey
from mxg.store import Outcome, now_ms
from mxg.web.api import PREFIX
from mxg.web.app import WEB_ROUTES, build_app
from mxg.web.auth import by_token, new_token, token_sha256
from mxg.web.openapi import schema
from mxg.web.throttle import LIMIT, Throttle
from tests.pipeline.fakes import stages
from tests.support.certs import ca_signed, client_signed
from tests.support.cli import mxg
from tests.support.dns import free_port
from tests.test_ops import MIN, A, B, C, message
from tests.test_web import answers, serve_and, surface

ADMIN, READER = new_token(), new_token()


def config(tmp_path: Path) -> str:
    return f'[data]\ndirectory = "{tmp_path}"\n' + "".join(
        f'[[web.token]]\nname = "{name}"\nrole = "{role}"\nsha256 = "{token_sha256(tok)}"\n'
        for name, role, tok in (("ops-alice", "admin", ADMIN), ("monitor", "read", READER))
    )


@pytest.fixture
def relay(tmp_path: Path) -> Stages:
    st, _ = stages(tmp_path, config(tmp_path))
    store = st.ctx.store
    now = now_ms()
    store.add_messages(
        [
            message(A, ["a1@x.test", "a2@y.test"], 3 * 60 * MIN, at_ms=now),
            message(B, ["b1@x.test"], 30 * MIN, ["secret"], at_ms=now),
            message(C, ["c1@y.test"], 2 * MIN, at_ms=now),
        ]
    )
    store.record([Outcome(A, 0, "deferred", 451, "4.3.2", "later", next_ms=now + 3_600_000)])
    SigningKey.load_or_create(tmp_path)
    return st


Call = Callable[..., Awaitable[httpx.Response]]


def run(st: Stages, backend: str, body: Callable[[Call], Awaitable[None]]) -> None:
    """`body` with a caller of the web surface's app: ``call(method,
    path, token=None, **httpx_kwargs)``, from one client address."""
    app = build_app(surface(st.ctx, answers), WEB_ROUTES)

    async def main() -> None:
        transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 4711))
        async with httpx.AsyncClient(transport=transport, base_url="http://mxg.test") as c:

            async def call(method: str, path: str, token: str | None = None, **kw: Any) -> Any:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                headers.update(kw.pop("headers", {}))
                return await c.request(method, PREFIX + path, headers=headers, **kw)

            await body(call)

    anyio.run(main, backend=backend)


def states(st: Stages) -> list[tuple[str, str, str]]:
    return [
        (r["queue_id"], r["address"], r["state"])
        for r in ops.Selector(everything=True).pick(st.ctx.store)
    ]


def operator_records(st: Stages) -> list[tuple[str, str, str, dict[str, Any]]]:
    return [
        (r.kind, r.queue_id, r.actor, json.loads(r.data))
        for r in st.ctx.store.audit_records()
        if r.actor != "mxg"
    ]


def test_a_wrong_or_missing_token_is_401_and_changes_nothing(relay: Stages, backend: str) -> None:
    before = states(relay)

    async def body(call: Call) -> None:
        for token in (None, "mxg_wrong", ADMIN + "x", "", "Basic " + ADMIN):
            r = await call("POST", "/queue/hold", token, json={"all": True, "reason": "x"})
            assert r.status_code == 401, r.text
            # RFC 6750 §3.1: an error code only when a token came and is wrong.
            wrong = bool(token)
            challenge = 'Bearer realm="mxg"' + (', error="invalid_token"' if wrong else "")
            assert r.headers["www-authenticate"] == challenge, token
            assert r.json()["error"]
        r = await call("GET", "/queue", "mxg_wrong")
        assert r.status_code == 401
        assert r.json() == {"error": "the bearer token is not valid"}
        # Another scheme than Bearer is no token at all.
        r = await call("GET", "/queue", headers={"Authorization": f"Basic {ADMIN}"})
        assert r.status_code == 401

    run(relay, backend, body)
    assert states(relay) == before
    assert operator_records(relay) == []


def test_a_read_token_reads_and_gets_403_for_every_change(relay: Stages, backend: str) -> None:
    before = states(relay)

    async def body(call: Call) -> None:
        me = await call("GET", "/me", READER)
        assert me.json() == {
            "name": "monitor",
            "role": "read",
            "via": "token",
            "actor": "monitor (token)",
        }
        listing = await call("GET", "/queue", READER)
        assert listing.status_code == 200
        assert [m["queue_id"] for m in listing.json()["messages"]] == [A, B, C]
        for action in ops.ACTIONS:
            r = await call("POST", f"/queue/{action}", READER, json={"all": True, "reason": "x"})
            assert r.status_code == 403, r.text
            assert r.headers["www-authenticate"] == 'Bearer realm="mxg", error="insufficient_scope"'
            assert r.json() == {"error": "monitor has the role read; this needs admin"}
        r = await call("POST", "/partners/x.test/accept", READER, json={"reason": "x"})
        assert r.status_code == 403

    run(relay, backend, body)
    assert states(relay) == before
    assert operator_records(relay) == []


def test_hold_and_release_by_selector_record_the_actor_and_reason(
    relay: Stages, backend: str, tmp_path: Path
) -> None:
    async def body(call: Call) -> None:
        dry = await call(
            "POST", "/queue/hold", ADMIN, json={"domains": ["x.test"], "dry_run": True}
        )
        assert dry.status_code == 200, dry.text
        assert dry.json()["dry_run"] is True and dry.json()["messages"] == 2
        assert not relay.ctx.wakeup._wanted
        held = await call(
            "POST",
            "/queue/hold",
            ADMIN,
            json={"domains": ["x.test"], "older_than": "10m", "reason": "partner down"},
        )
        assert held.status_code == 200, held.text
        got = held.json()
        assert (got["action"], got["actor"], got["reason"]) == (
            "hold",
            "ops-alice (token)",
            "partner down",
        )
        assert (got["selection"], got["messages"], got["recipients"]) == (
            "domain x.test; older than 10m",
            2,
            3,
        )
        assert [c["queue_id"] for c in got["changes"]] == [A, B]
        held_now = await call("GET", "/queue", READER, params={"state": "held"})
        assert [m["queue_id"] for m in held_now.json()["messages"]] == [A, B]
        assert all(m["state"] == "held" for m in held_now.json()["messages"])
        released = await call(
            "POST", "/queue/release", ADMIN, json={"classes": ["secret"], "reason": "checked"}
        )
        assert released.json()["messages"] == 1
        assert [c["queue_id"] for c in released.json()["changes"]] == [B]
        # The relay's scanner is woken: the release is dispatched now.
        assert relay.ctx.wakeup._wanted
        shown = await call("GET", f"/messages/{B}", READER)
        assert [(e["actor"], e["action"], e["detail"]) for e in shown.json()["events"]] == [
            ("ops-alice (token)", "hold", "partner down"),
            ("ops-alice (token)", "release", "checked"),
        ]

    run(relay, backend, body)
    assert operator_records(relay) == [
        ("hold", A, "ops-alice (token)", {"detail": "partner down"}),
        ("hold", B, "ops-alice (token)", {"detail": "partner down"}),
        ("release", B, "ops-alice (token)", {"detail": "checked"}),
    ]
    assert verify(relay.ctx.store, SigningKey.load(tmp_path).verifier()).ok


def test_flush_delete_and_bounce_by_id(relay: Stages, backend: str) -> None:
    async def body(call: Call) -> None:
        flushed = await call("POST", "/queue/flush", ADMIN, json={"ids": [A], "reason": "now"})
        assert flushed.json()["recipients"] == 1
        due = relay.ctx.store.db.execute(
            "SELECT next_ms FROM recipients WHERE queue_id=? AND idx=0", (A,)
        ).fetchone()[0]
        assert due == 0
        # Nothing of C is deferred: naming it alone is a conflict.
        r = await call("POST", "/queue/flush", ADMIN, json={"ids": [C], "reason": "now"})
        assert r.status_code == 409
        assert (
            r.json()["error"] == f"flush: no deferred recipient of message {C} that can be changed"
        )
        deleted = await call(
            "POST", "/queue/delete", ADMIN, json={"ids": [C.lower()], "reason": "test mail"}
        )
        assert deleted.json()["changes"][0]["after"] == "deleted"
        bounced = await call(
            "POST", "/queue/bounce", ADMIN, json={"domains": ["x.test"], "reason": "closed"}
        )
        assert bounced.json()["recipients"] == 2

    run(relay, backend, body)
    assert states(relay) == [(A, "a2@y.test", "pending")]


def test_bad_input_is_a_json_4xx_and_changes_nothing(relay: Stages, backend: str) -> None:
    before = states(relay)
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("POST", "/queue/hold", {"json": {"all": True}}, 400, "reason: say why"),
        ("POST", "/queue/hold", {"json": {"reason": "x"}}, 400, "select messages"),
        ("POST", "/queue/hold", {"json": {"al": True, "reason": "x"}}, 400, "al: Extra inputs"),
        ("POST", "/queue/hold", {"json": {"all": "yes", "reason": "x"}}, 400, "all: Input"),
        ("POST", "/queue/hold", {"json": {"domains": ["a@b"], "reason": "x"}}, 400, "not a domain"),
        ("POST", "/queue/hold", {"json": {"ids": ["XYZ"], "reason": "x"}}, 400, "not a queue id"),
        (
            "POST",
            "/queue/hold",
            {"json": {"states": ["gone"], "reason": "x"}},
            400,
            "unknown state",
        ),
        ("POST", "/queue/hold", {"json": [1]}, 400, "must be a JSON object"),
        (
            "POST",
            "/queue/hold",
            {"content": b"{", "headers": {"content-type": "application/json"}},
            400,
            "not JSON",
        ),
        ("POST", "/queue/hold", {"data": {"all": "true"}}, 415, "application/json"),
        ("POST", "/queue/hold", {"json": {"all": True, "reason": "x" * 1001}}, 400, "reason"),
        (
            "POST",
            "/queue/release",
            {"json": {"all": True, "level": "none", "reason": "x"}},
            400,
            "name each message by its queue id",
        ),
        (
            "POST",
            "/queue/hold",
            {"json": {"all": True, "level": "none", "reason": "x"}},
            400,
            "only with release",
        ),
        ("POST", "/queue/hold?all=1", {"json": {"all": True, "reason": "x"}}, 400, "unknown query"),
        (
            "POST",
            "/queue/hold",
            {"content": b" " * (1 << 20 | 1), "headers": {"content-type": "application/json"}},
            413,
            "larger",
        ),
        ("GET", "/queue?domian=x.test", {}, 400, "unknown query parameter 'domian'"),
        ("GET", "/queue?older_than=soon", {}, 400, "not a duration"),
        ("GET", "/queue?limit=0", {}, 400, "limit"),
        ("GET", "/messages/nothex", {}, 400, "not a queue id"),
        ("GET", f"/messages/{'E' * 16}", {}, 404, "no message"),
        ("GET", f"/messages/{'E' * 16}/proof", {}, 404, "no message"),
        ("GET", "/failures?since=yesterday", {}, 400, "since"),
        ("GET", "/nowhere", {}, 404, "Not Found"),
        ("DELETE", "/queue", {}, 405, "Method Not Allowed"),
        ("POST", "/partners/nowhere.test/accept", {"json": {"reason": "x"}}, 404, "not in the"),
        ("POST", "/partners/x.test/accept", {"json": {}}, 400, "reason: Field required"),
    ]

    async def body(call: Call) -> None:
        for method, path, kw, status, text in cases:
            r = await call(method, path, ADMIN, **kw)
            assert r.status_code == status, (path, kw, r.text)
            assert r.headers["content-type"] == "application/json"
            assert text in r.json()["error"], (path, r.json())

    run(relay, backend, body)
    assert states(relay) == before
    assert operator_records(relay) == []


def test_failed_authentications_are_throttled_per_address(relay: Stages, backend: str) -> None:
    async def body(call: Call) -> None:
        for _ in range(LIMIT):
            assert (await call("GET", "/queue", "mxg_guess")).status_code == 401
        # Now even the right token waits: the address is refused a while.
        r = await call("GET", "/queue", ADMIN)
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1
        assert "too many failed authentications from 192.0.2.7" in r.json()["error"]

    run(relay, backend, body)


def test_the_throttle_forgets_failures_after_its_window() -> None:
    now = [0.0]
    t = Throttle(3, 60, clock=lambda: now[0], max_clients=2)
    for _ in range(3):
        t.failed("a")
    assert t.wait("a") == 60
    now[0] = 30
    assert t.wait("a") == 30
    assert t.wait("b") == 0
    now[0] = 61
    assert t.wait("a") == 0
    # Bounded: a third address pushes out the one that failed longest ago.
    for who in ("a", "b", "c"):
        for _ in range(3):
            t.failed(who)
    assert (t.wait("a"), t.wait("b") > 0, t.wait("c") > 0) == (0, True, True)


def test_reads_evidence_proof_partners_summary_and_failures(relay: Stages, backend: str) -> None:
    async def body(call: Call) -> None:
        summary = (await call("GET", "/queue/summary", READER)).json()
        assert [(d["domain"], d["total"]) for d in summary["domains"]] == [
            ("x.test", 2),
            ("y.test", 2),
        ]
        assert summary["total"]["total"] == 4
        assert summary["columns"][0] == "5"
        ev = (await call("GET", f"/messages/{A}/evidence", READER)).json()["evidence"]
        assert [(e["recipient"], e["status"]) for e in ev] == [
            ("a1@x.test", "deferred"),
            ("a2@y.test", "pending"),
        ]
        proof = await call("GET", f"/messages/{A}/proof", READER)
        assert proof.status_code == 200
        assert proof.json()["message"]["queue_id"] == A and proof.json()["signature"]
        page = await call("GET", f"/messages/{A}/proof", READER, params={"format": "html"})
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
        assert A in page.text
        failures = (await call("GET", "/failures", READER)).json()
        assert [(f["reason"], f["attempts"], f["domains"]) for f in failures["reasons"]] == [
            ("unknown", 1, {"x.test": 1})
        ]
        assert (await call("GET", "/partners", READER)).json() == {"partners": []}

    run(relay, backend, body)


def test_evidence_is_looked_up_with_the_selectors_of_mxg_evidence(
    relay: Stages, backend: str
) -> None:
    async def body(call: Call) -> None:
        async def rows(**params: str) -> list[tuple[str, str]]:
            r = await call("GET", "/evidence", READER, params=params)
            assert r.status_code == 200, r.text
            return [(e["queue_id"], e["recipient"]) for e in r.json()["evidence"]]

        everything = [(A, "a1@x.test"), (A, "a2@y.test"), (B, "b1@x.test"), (C, "c1@y.test")]
        assert await rows() == everything
        assert await rows(domain="x.test") == [(A, "a1@x.test"), (B, "b1@x.test")]
        assert await rows(outcome="deferred") == [(A, "a1@x.test")]
        assert await rows(**{"class": "secret"}) == [(B, "b1@x.test")]
        assert await rows(recipient="C1@Y.TEST") == [(C, "c1@y.test")]
        assert await rows(queue_id=A, since="1d") == [(A, "a1@x.test"), (A, "a2@y.test")]
        assert await rows(since="1h") == [(B, "b1@x.test"), (C, "c1@y.test")]
        assert await rows(outcome="awaiting-sender") == []
        one = (await call("GET", "/evidence", READER, params={"limit": "1"})).json()
        assert (len(one["evidence"]), one["truncated"]) == (1, True)
        for bad in ({"outcome": "lost"}, {"since": "yesterday"}, {"queue_id": "x"}, {"dom": "x"}):
            r = await call("GET", "/evidence", READER, params=bad)
            assert r.status_code == 400 and r.json()["error"], bad
        assert (await call("GET", "/evidence", "mxg_wrong")).status_code == 401

    run(relay, backend, body)


def test_the_openapi_description_lists_exactly_the_routes(relay: Stages, backend: str) -> None:
    app = build_app(surface(relay.ctx, answers), WEB_ROUTES)
    mount = next(r for r in app.routes if isinstance(r, Mount) and r.path == PREFIX)
    served = {
        (path_route.path, method.lower())
        for path_route in mount.routes
        if isinstance(path_route, Route)
        for method in path_route.methods or ()
        if method != "HEAD"
    }
    described = {(path, method) for path, ops_ in schema()["paths"].items() for method in ops_}
    assert served == described
    assert len(served) == 19

    async def body(call: Call) -> None:
        r = await call("GET", "/openapi.json", READER)
        assert r.json()["openapi"] == "3.1.0"
        assert r.json()["servers"] == [{"url": PREFIX}]
        body_schema = r.json()["paths"]["/queue/hold"]["post"]["requestBody"]
        fields = body_schema["content"]["application/json"]["schema"]["properties"]
        assert {"ids", "all", "domains", "reason", "dry_run"} <= set(fields)
        assert (await call("GET", "/openapi.json")).status_code == 401

    run(relay, backend, body)


def test_a_token_matches_only_its_hash_and_a_reload_revokes_it(relay: Stages) -> None:
    web = relay.ctx.cfg.web
    assert by_token(web, ADMIN).role == "admin"  # type: ignore[union-attr]
    assert by_token(web, READER).name == "monitor"  # type: ignore[union-attr]
    assert by_token(web, ADMIN[:-1]) is None
    assert by_token(web, "x" * 10_000) is None
    revoked = web.model_copy(update={"token": web.token[1:]})
    assert by_token(revoked, ADMIN) is None


def test_mxg_web_token_prints_a_token_and_the_lines_with_its_hash(tmp_path: Path) -> None:
    none = tmp_path / "unused.toml"
    r = mxg(none, "web", "token", "ops-bob", "--role", "read")
    assert r.returncode == 0, r.stderr
    token = r.stdout.split("token: ", 1)[1].split()[0]
    assert token.startswith("mxg_") and len(token) >= 40
    assert token_sha256(token) in r.stdout
    conf = tmp_path / "mxg.toml"
    conf.write_text(r.stdout.split("reload (SIGHUP):\n", 1)[1])
    assert mxg(conf, "config", "check").returncode == 0, conf.read_text()
    bad = mxg(none, "web", "token", "two words", "--role", "read")
    assert bad.returncode == 1 and "mxg_" not in bad.stdout
    assert (
        bad.stderr.strip()
        == "mxg: web token: 'two words' is not a name: letters, digits and . _ @ - only"
    )


def test_client_certificates_get_the_role_their_entry_gives(tmp_path: Path, backend: str) -> None:
    """HTTPS with a client CA, on the running backend: a certificate named
    by subject is admin, one named by its SHA-256 is read, one no entry
    names is 401, none at all still allows a token; the actor is the
    certificate's subject."""
    certs = tmp_path / "certs"
    ca, server_chain, server_key = ca_signed(certs, "mxg operators CA", ["mxg.test"])
    _, bob, bob_key = client_signed(certs, "mxg operators CA", "/CN=ops-bob/O=Example Agency")
    _, eve, eve_key = client_signed(certs, "mxg operators CA", "/CN=monitor-eve")
    _, mallory, mallory_key = client_signed(certs, "mxg operators CA", "/CN=nobody")
    eve_sha = hashlib.sha256(ssl.PEM_cert_to_DER_cert(eve.read_text())).hexdigest()
    port = free_port()
    st, _ = stages(
        tmp_path,
        config(tmp_path) + f'[web]\nlisten = ["127.0.0.1:{port}"]\ntls_cert = "{server_chain}"\n'
        f'tls_key = "{server_key}"\nclient_ca = "{ca}"\n'
        '[[web.certificate]]\nsubject = "O=Example Agency,CN=ops-bob"\nrole = "admin"\n'
        f'[[web.certificate]]\nsha256 = "{eve_sha}"\nrole = "read"\n',
    )
    st.ctx.store.add_messages([message(C, ["c1@y.test"], 2 * MIN)])

    def client(cert: Path | None = None, key: Path | None = None) -> httpx.AsyncClient:
        tls = ssl.create_default_context(cafile=str(ca))
        tls.check_hostname = False  # the server's name is mxg.test, dialled by address
        if cert is not None and key is not None:
            tls.load_cert_chain(cert, key)
        return httpx.AsyncClient(verify=tls, base_url=f"https://127.0.0.1:{port}{PREFIX}")

    async def requests() -> None:
        async with client(bob, bob_key) as c:
            me = (await c.get("/me")).json()
            assert me == {
                "name": "O=Example Agency,CN=ops-bob",
                "role": "admin",
                "via": "certificate",
                "actor": "O=Example Agency,CN=ops-bob (certificate)",
            }
            held = await c.post("/queue/hold", json={"ids": [C], "reason": "check it"})
            assert held.json()["actor"] == "O=Example Agency,CN=ops-bob (certificate)"
        async with client(eve, eve_key) as c:
            assert (await c.get("/me")).json()["role"] == "read"
            assert (
                await c.post("/queue/release", json={"all": True, "reason": "x"})
            ).status_code == 403
        async with client(mallory, mallory_key) as c:
            r = await c.get("/me")
            assert r.status_code == 401 and "no role here" in r.json()["error"]
        async with client() as c:
            assert (await c.get("/me")).status_code == 401
            r = await c.get("/me", headers={"Authorization": f"Bearer {READER}"})
            assert r.json()["name"] == "monitor"

    serve_and(st.ctx.cfg, st.ctx, answers, backend, requests)
    assert [(r.kind, r.actor) for r in st.ctx.store.audit_records() if r.actor != "mxg"] == [
        ("hold", "O=Example Agency,CN=ops-bob (certificate)")
    ]


def test_an_action_wakes_the_scanner_before_its_interval(backend: str) -> None:
    async def main() -> None:
        wakeup = Wakeup()
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wakeup.sleep, 3600)
                await anyio.sleep(0.05)
                wakeup.set()
            # Set while the scanner was busy: its next sleep ends at once.
            wakeup.set()
            await wakeup.sleep(3600)

    anyio.run(main, backend=backend)
