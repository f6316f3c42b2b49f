"""The decision page, ``/decide/<token>`` on the ``[web]`` listener: the
sender of a message whose recipients wait for a decision (``on_unmet =
"ask-sender"``) sees its subject, those recipients and why, never its
content, and takes one of the choices the class allows (`mxg.decide`).

What keeps it safe, each checked before anything changes:

- the token is verified (HMAC, expiry) before the store is read, and
  works once: its use is recorded in the same transaction as the
  decision (`mxg.store.decisions`), so a reused link is refused, after a
  restart too; a second POST of the same decision shows the recorded
  result and changes nothing (idempotent);
- POSTs are CSRF-safe: a form value bound by HMAC to the token and to a
  ``SameSite=Strict`` cookie set with the page, and an ``Origin`` that,
  when sent, must be ``web.public_url``'s;
- every client address has a request budget (`RateLimit`, 429), bodies
  are bounded (413) and must be a form (415), other methods get 405, and
  no response redirects anywhere (no open redirect);
- responses are never cached, send no Referer to other sites (the token
  is in the URL), cannot be framed, and allow no script at all
  (Content-Security-Policy).
"""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from mxg.decide import CHOICES, Claims, DecisionRefused, TokenError, decide, offered
from mxg.decide.carrier import carrier_for, password_for
from mxg.decide.notice import recipients_view, subject_of, when
from mxg.decide.templates import environment
from mxg.errors import EngineStopped, MessageNotFound, WeakPassword
from mxg.store import Decided, now_ms
from mxg.web.ratelimit import RateLimit
from mxg.web.surface import Surface

COOKIE = "mxg_decide"
_COOKIE_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")
FORM = "application/x-www-form-urlencoded"
# A form has a handful of fields; more is not a browser's form.
MAX_FIELDS = 10

_GERMAN = {
    400: "Dieser Link ist unvollständig oder fehlerhaft.",
    403: "Diese Anfrage wurde abgelehnt.",
    404: "Diese Seite gibt es nicht.",
    409: "Das ist so nicht (mehr) möglich.",
    410: "Dieser Link gilt nicht mehr.",
    413: "Die Anfrage ist zu groß.",
    415: "Die Anfrage hat ein falsches Format.",
    429: "Zu viele Anfragen; bitte warten Sie eine Minute.",
}


def _headers(nonce: str) -> dict[str, str]:
    return {
        "Cache-Control": "no-store",
        # The token is in the URL: no other site ever sees it. (With
        # no-referrer, browsers send "Origin: null" on the form's POST.)
        "Referrer-Policy": "same-origin",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'nonce-{nonce}'; form-action 'self';"
            " frame-ancestors 'none'; base-uri 'none'"
        ),
    }


class Refused(Exception):
    """A request answered with a 4xx page and no change."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def routes(surface: Surface) -> list[BaseRoute]:
    page = DecisionPage(surface)
    return [
        Route("/decide/{token}", page.get, methods=["GET"]),
        Route("/decide/{token}", page.post, methods=["POST"]),
    ]


class DecisionPage:
    def __init__(self, surface: Surface) -> None:
        self._ctx = surface.ctx
        self._limit = RateLimit(surface.ctx.cfg.decisions.rate_limit)

    # -- answers ---------------------------------------------------------------

    def _render(self, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        cfg = self._ctx.cfg
        nonce = secrets.token_urlsafe(16)
        html = (
            environment(cfg.decisions.templates)
            .get_template(name)
            .render(nonce=nonce, gateway=cfg.server.hostname, **values)
        )
        return HTMLResponse(html, status_code=status, headers=_headers(nonce))

    def _refused(self, e: Refused) -> HTMLResponse:
        return self._render(
            "refused.html",
            e.status,
            status_code=e.status,
            text=e.text,
            german=_GERMAN.get(e.status, ""),
        )

    def _result(self, done: Decided, password: str = "") -> HTMLResponse:
        rows = {r["idx"]: r["address"] for r in self._ctx.store.recipients(done.queue_id)}
        return self._render(
            "result.html",
            choice=done.choice,
            dsn=bool(done.detail.get("dsn")),
            already=done.already,
            at=when(done.at_ms) if done.at_ms else "",
            recipients=[rows[i] for i in done.recipients if i in rows],
            password=password,
        )

    # -- checks ----------------------------------------------------------------

    def _admit(self, request: Request) -> str:
        client = request.client.host if request.client else ""
        if not self._limit.allow(client):
            raise Refused(429, "too many requests from your address; wait a minute")
        return client

    def _token(self, request: Request) -> tuple[Claims, Any]:
        """The link's claims and its row; Refused unless it verifies and
        the store issued it for that message."""
        tokens = self._ctx.tokens
        if tokens is None:
            raise Refused(404, "decisions are not available here")
        try:
            claims = tokens.verify(request.path_params["token"], now_ms())
        except TokenError as e:
            raise Refused(e.status, e.text) from None
        row = self._ctx.store.token(claims.token_id)
        if row is None or row["queue_id"] != claims.queue_id:
            raise Refused(403, "this link does not belong to a message of this gateway")
        return claims, row

    def _parked(self, row: Any) -> list[Any]:
        wanted = set(_indexes(row))
        return [r for r in self._ctx.store.awaiting(row["queue_id"]) if r["idx"] in wanted]

    async def _subject(self, queue_id: str) -> str:
        try:
            _, message = await anyio.to_thread.run_sync(self._ctx.engine.read, queue_id)
        except (MessageNotFound, EngineStopped):
            return ""
        return subject_of(message)

    # -- GET -------------------------------------------------------------------

    async def get(self, request: Request) -> Response:
        try:
            return await self._get(request)
        except Refused as e:
            return self._refused(e)

    async def _get(self, request: Request) -> Response:
        self._admit(request)
        claims, row = self._token(request)
        done = self._ctx.store.token_result(claims.token_id)
        if done is not None:
            raise Refused(410, f"this link was already used: {done.choice} at {when(done.at_ms)}")
        rows = self._parked(row)
        if not rows:
            raise Refused(409, "no recipient of this message waits for a decision any more")
        cookie = request.cookies.get(COOKIE, "")
        if not _COOKIE_SHAPE.fullmatch(cookie):
            cookie = secrets.token_urlsafe(32)
        assert self._ctx.tokens is not None  # _token checked it
        response = self._render(
            "page.html",
            subject=await self._subject(row["queue_id"]),
            recipients=recipients_view(rows),
            choices=offered(self._ctx.cfg, rows),
            csrf=self._ctx.tokens.csrf(claims.token_id, cookie),
            expires=when(claims.expires_ms),
        )
        response.set_cookie(
            COOKIE,
            cookie,
            path=f"{request.scope.get('root_path', '')}/decide/",
            httponly=True,
            samesite="strict",
            secure=self._ctx.cfg.web.public_url.startswith("https:"),
        )
        return response

    # -- POST ------------------------------------------------------------------

    async def post(self, request: Request) -> Response:
        try:
            return await self._post(request)
        except Refused as e:
            return self._refused(e)

    def _checked_form(self, request: Request, body: bytes, claims: Claims) -> dict[str, str]:
        """The form's fields, once body, Origin and CSRF value are right."""
        cfg = self._ctx.cfg
        if not _origin_ok(request.headers.get("origin"), cfg.web.public_url):
            raise Refused(403, "the form was not sent from this page (Origin)")
        try:
            form = _form(body)
        except ValueError as e:
            raise Refused(400, str(e)) from None
        tokens = self._ctx.tokens
        cookie = request.cookies.get(COOKIE, "")
        if tokens is None or not tokens.csrf_ok(claims.token_id, cookie, form.get("csrf", "")):
            raise Refused(403, "the form is not the one this page sent (CSRF check failed)")
        if form.get("choice", "") not in CHOICES:
            raise Refused(400, f"unknown choice {form.get('choice', '')!r}")
        return form

    async def _seal(self, row: Any, typed: str) -> tuple[str, bytes]:
        """The password (the sender's, checked, or generated) and the
        carrier mail for the parked recipients of the link."""
        rows = self._parked(row)
        if not rows:
            raise Refused(409, "no recipient of this message waits for a decision any more")
        if "envelope" not in offered(self._ctx.cfg, rows):
            raise Refused(403, "the class does not offer the secure envelope here")
        try:
            password = password_for(typed)
        except WeakPassword as e:
            raise Refused(400, f"the password is too weak: {e}") from None
        queue_id = row["queue_id"]
        try:
            _, original = await anyio.to_thread.run_sync(self._ctx.engine.read, queue_id)
        except (MessageNotFound, EngineStopped):
            raise Refused(409, "the message is no longer in the queue") from None
        msg = self._ctx.store.message(queue_id)
        addresses = [r["address"] for r in rows]
        carrier = await anyio.to_thread.run_sync(
            carrier_for, self._ctx.cfg, msg["sender"] if msg else "", addresses, original, password
        )
        return password, carrier

    async def _post(self, request: Request) -> Response:
        client = self._admit(request)
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM:
            raise Refused(415, f"a decision is sent as a form ({FORM})")
        body = await _bounded_body(request, self._ctx.cfg.decisions.max_body)
        if body is None:
            raise Refused(413, "the request is larger than a decision form")
        claims, row = self._token(request)
        form = self._checked_form(request, body, claims)
        choice = form["choice"]
        dsn = choice == "cancel" and form.get("dsn") == "1"
        done = self._ctx.store.token_result(claims.token_id)
        password = ""
        if done is None:
            carrier = None
            if choice == "envelope":
                password, carrier = await self._seal(row, form.get("password", ""))
                if form.get("password"):
                    password = ""  # the sender's own: not shown back
            try:
                done = decide(
                    self._ctx.store,
                    self._ctx.cfg,
                    row["queue_id"],
                    _indexes(row),
                    choice,
                    actor="sender",
                    client=client,
                    token_id=claims.token_id,
                    dsn=dsn,
                    carrier=carrier,
                )
            except DecisionRefused as e:
                raise Refused(e.status, str(e)) from None
        # Idempotent: the same decision again shows what was recorded (an
        # envelope's password only the first time: it is kept nowhere).
        if done.choice == choice and bool(done.detail.get("dsn")) == dsn:
            return self._result(done, "" if done.already else password)
        raise Refused(409, f"this link was already used: {done.choice} at {when(done.at_ms)}")


def _indexes(row: Any) -> list[int]:
    import orjson  # noqa: PLC0415

    return [int(i) for i in orjson.loads(row["recipients"])]


async def _bounded_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is (or says it is) larger than `limit`:
    read no further than that."""
    declared = request.headers.get("content-length", "")
    if declared and (not declared.isdigit() or int(declared) > limit):
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return body


def _form(body: bytes) -> dict[str, str]:
    """The fields of a urlencoded form, each at most once."""
    try:
        text = body.decode("ascii")
        fields = parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise ValueError("the form cannot be read") from None
    if any(len(v) != 1 for v in fields.values()):
        raise ValueError("a field of the form is repeated")
    return {k: v[0] for k, v in fields.items()}


def _origin_ok(origin: str | None, public_url: str) -> bool:
    """A browser's Origin, when it sends one, must be the page's own (the
    public URL's scheme, host and port); "null" never is."""
    if origin is None:
        return True
    if not public_url:
        return False
    return _site(origin) == _site(public_url)


def _site(url: str) -> tuple[str, str, int] | None:
    """Scheme, host and port, the port filled in: a browser leaves the
    default port out of Origin (RFC 6454 §6.2) where public_url may say
    ``:443``."""
    try:
        u = urlsplit(url)
        port = u.port or {"https": 443, "http": 80}.get(u.scheme.lower())
    except ValueError:
        return None
    if not u.hostname or port is None:
        return None
    return (u.scheme.lower(), u.hostname, port)
