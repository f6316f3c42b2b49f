"""The operator pages, ``/ui/``: small, server-rendered (jinja2 with
autoescaping, `mxg.web.pages`), no script at all, a strict
Content-Security-Policy. Login with a token of ``[[web.token]]``
(`mxg.web.session`); then the queue's summary per domain, the held
messages with the decisions an operator may take (release, delete,
bounce; one or many, with a reason), one message with its recipients,
evidence and operator actions, the recipients awaiting the sender (with
the decisions ``mxg decide`` takes), the partner ledger (with accept)
and recent failures by reason.

Every form is a POST with a CSRF value bound to the session; every
change goes through `mxg.ops` or the store's own operator functions
under the logged-in token's name, as the admin API's do, and wakes the
scanner so that it is carried out at once. A `read` login sees the
pages without their forms and is refused (403) if it posts one anyway.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from mxg import ops
from mxg.decide.choices import CHOICES, DecisionRefused
from mxg.deliverylog import event, log
from mxg.errors import MxgError, OperatorError
from mxg.evidence import flatten, rfc3339
from mxg.ops import deciding
from mxg.ops.failures import by_reason
from mxg.ops.selectors import QUEUE_ID
from mxg.store import EvidenceQuery
from mxg.web import pages
from mxg.web.api import log_action, take_decision
from mxg.web.auth import Identity, by_session, by_token
from mxg.web.refusal import Refusal
from mxg.web.session import COOKIE, LOGIN_COOKIE, Sessions
from mxg.web.surface import Surface

# The decisions the held-messages page offers.
HELD_ACTIONS = ("release", "delete", "bounce")
# Held messages one page lists, and one form may name.
MAX_HELD = 500
# A reason is recorded in the audit trail: a sentence, not a document.
MAX_REASON = 1000
# The largest form the pages read (a full held page's ids fit many times).
MAX_FORM = 256 * 1024
# How far back the failures page looks.
FAILURE_SPANS = ("24h", "7d", "30d")

Page = Callable[[Request, Identity], Awaitable[Response]]


def routes(surface: Surface) -> list[BaseRoute]:
    ui = Ui(surface, Sessions.load_or_create(surface.ctx.cfg.data.directory))
    return [
        Route("/", ui.root, methods=["GET"]),
        Route("/ui", ui.root, methods=["GET"]),
        Route("/ui/style.css", ui.style, methods=["GET"]),
        Route("/ui/login", ui.login_form, methods=["GET"]),
        Route("/ui/login", ui.login, methods=["POST"]),
        Route("/ui/logout", ui.guarded("read", ui.logout, post=True), methods=["POST"]),
        Route("/ui/", ui.guarded("read", ui.summary), methods=["GET"]),
        Route("/ui/held", ui.guarded("read", ui.held), methods=["GET"]),
        Route("/ui/held", ui.guarded("admin", ui.decide, post=True), methods=["POST"]),
        Route("/ui/awaiting", ui.guarded("read", ui.awaiting), methods=["GET"]),
        Route(
            "/ui/awaiting", ui.guarded("admin", ui.decide_for_sender, post=True), methods=["POST"]
        ),
        Route("/ui/messages/{queue_id}", ui.guarded("read", ui.message), methods=["GET"]),
        Route("/ui/partners", ui.guarded("read", ui.partners), methods=["GET"]),
        Route("/ui/partners/accept", ui.guarded("admin", ui.accept, post=True), methods=["POST"]),
        Route("/ui/failures", ui.guarded("read", ui.failures), methods=["GET"]),
    ]


def _base(request: Request) -> str:
    """Where the surface is published (``web.root_path`` behind a proxy)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _redirect(request: Request, path: str) -> RedirectResponse:
    return RedirectResponse(_base(request) + path, status_code=303, headers=pages.HEADERS)


class Ui:
    def __init__(self, surface: Surface, sessions: Sessions) -> None:
        self._surface = surface
        self._sessions = sessions

    @property
    def _store(self) -> Any:
        return self._surface.ctx.store

    def _render(
        self, request: Request, name: str, who: Identity | None, status: int = 200, **values: Any
    ) -> Response:
        session = self._sessions.read(request.cookies.get(COOKIE))
        return pages.render(
            name,
            status=status,
            base=_base(request),
            who=who,
            csrf=self._sessions.csrf(session.sid) if session is not None else "",
            **values,
        )

    # -- who asks -----------------------------------------------------------

    def guarded(self, role: str, page: Page, *, post: bool = False) -> Callable[..., Any]:
        async def endpoint(request: Request) -> Response:
            web = self._surface.ctx.cfg.web
            cookie = request.cookies.get(COOKIE)
            who = by_session(web, self._sessions, cookie)
            if who is None:
                if post:
                    return self._render(request, "error.html", None, 403, message="log in first")
                return _redirect(request, "/ui/login")
            try:
                if post:
                    form = await _form(request)
                    session = self._sessions.read(cookie)
                    sid = session.sid if session is not None else None
                    if not self._sessions.csrf_ok(sid, _one(form, "csrf")):
                        raise Refusal(
                            403,
                            "this form was not sent from its page here (no or a wrong CSRF"
                            " value): open the page again",
                        )
                    request.state.form = form
                if not who.may(role):
                    raise Refusal(403, f"{who.name} has the role {who.role}; this needs {role}")
                return await page(request, who)
            except Refusal as e:
                return self._render(request, "error.html", who, e.status, message=e.message)

        return endpoint

    # -- login and out --------------------------------------------------------

    async def root(self, request: Request) -> Response:
        return _redirect(request, "/ui/")

    async def style(self, _: Request) -> Response:
        return pages.stylesheet()

    async def login_form(self, request: Request, *, error: str = "", status: int = 200) -> Response:
        nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        response = self._render(
            request,
            "login.html",
            None,
            status,
            login_csrf=self._sessions.csrf(nonce),
            error=error,
        )
        response.set_cookie(
            LOGIN_COOKIE,
            nonce,
            path=f"{_base(request)}/ui/login",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def login(self, request: Request) -> Response:
        surface = self._surface
        client = request.client.host if request.client else "unknown"
        wait = surface.throttle.wait(client)
        if wait:
            return await self.login_form(
                request,
                error=f"too many failed logins from {client}: try again in {int(wait) + 1}s",
                status=429,
            )
        try:
            form = await _form(request)
        except Refusal as e:
            return await self.login_form(request, error=e.message, status=e.status)
        if not self._sessions.csrf_ok(request.cookies.get(LOGIN_COOKIE), _one(form, "csrf")):
            return await self.login_form(
                request, error="the login form expired: try again", status=403
            )
        web = surface.ctx.cfg.web
        who = by_token(web, (_one(form, "token") or "").strip())
        if who is None:
            surface.throttle.failed(client)
            # The token itself is never logged (rule 8).
            event(log, "web login failed", logging.WARNING, client=client)
            return await self.login_form(request, error="this token is not valid", status=401)
        sha = next(t.sha256 for t in web.token if t.name == who.name)
        cookie, _ = self._sessions.issue(who.name, sha, web.session_lifetime)
        response = _redirect(request, "/ui/")
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=int(web.session_lifetime),
            path=f"{_base(request)}/ui",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        response.delete_cookie(LOGIN_COOKIE, path=f"{_base(request)}/ui/login")
        return response

    async def logout(self, request: Request, _: Identity) -> Response:
        session = self._sessions.read(request.cookies.get(COOKIE))
        if session is not None:
            self._sessions.log_out(session)
        response = _redirect(request, "/ui/login")
        response.delete_cookie(COOKIE, path=f"{_base(request)}/ui")
        return response

    # -- pages --------------------------------------------------------------

    async def summary(self, request: Request, who: Identity) -> Response:
        s = ops.summarize(self._store)
        held = ops.summarize(self._store, ["held"])
        return self._render(request, "summary.html", who, summary=s, held=held)

    def _held_messages(self) -> tuple[list[dict[str, Any]], bool]:
        by_message: dict[str, dict[str, Any]] = {}
        for r in ops.Selector(states=("held",)).pick(self._store):
            m = by_message.get(r["queue_id"])
            if m is None:
                if len(by_message) == MAX_HELD:
                    return list(by_message.values()), True
                row = self._store.message(r["queue_id"])
                m = by_message[r["queue_id"]] = {
                    "queue_id": r["queue_id"],
                    "received": rfc3339(r["received_ms"]),
                    "sender": r["sender"],
                    "recipients": [],
                    "classes": set(),
                    "whole": r["message_state"] == "held",
                    "reason": (row["hold_reason"] if row is not None else "") or "",
                }
            m["recipients"].append(r["address"])
            m["classes"].add(r["class"])
        return list(by_message.values()), False

    async def held(self, request: Request, who: Identity, **extra: Any) -> Response:
        messages, more = self._held_messages()
        done = request.query_params.get("done", "")
        count = request.query_params.get("n", "")
        notice = ""
        if done in HELD_ACTIONS and count.isdigit():
            notice = f"{done}: {count} message(s) changed"
        return self._render(
            request,
            "held.html",
            who,
            extra.pop("status", 200),
            messages=messages,
            more=more,
            actions=HELD_ACTIONS,
            notice=notice,
            **extra,
        )

    async def decide(self, request: Request, who: Identity) -> Response:
        form: FormData = request.state.form
        action = _one(form, "action") or ""
        ids = [str(v) for v in form.getlist("ids")]
        reason = (_one(form, "reason") or "").strip()
        problem = ""
        if action not in HELD_ACTIONS:
            problem = f"choose one of: {', '.join(HELD_ACTIONS)}"
        elif not ids:
            problem = "select at least one message"
        elif len(ids) > MAX_HELD:
            problem = f"at most {MAX_HELD} messages at once"
        elif not reason:
            problem = "give a reason: it is recorded with the change"
        elif len(reason) > MAX_REASON:
            problem = f"the reason is longer than {MAX_REASON} characters"
        if not problem:
            try:
                selector = ops.Selector.build(queue_ids=ids)
                result = ops.act(action, self._store, selector, who.actor, reason)
            except OperatorError as e:
                problem = str(e)
            else:
                log_action(result, "ui")
                self._surface.ctx.wakeup.set()
                return _redirect(request, f"/ui/held?done={action}&n={len(result.changes)}")
        return await self.held(request, who, error=problem, status=400, reason=reason)

    async def awaiting(self, request: Request, who: Identity, **extra: Any) -> Response:
        cfg = self._surface.ctx.cfg
        parked = deciding.parked(self._store, cfg, deciding.MAX_PARKED + 1)
        done = request.query_params.get("done", "")
        notice = ""
        if done in CHOICES:
            notice = f"{done}: decided"
        return self._render(
            request,
            "awaiting.html",
            who,
            extra.pop("status", 200),
            parked=parked[: deciding.MAX_PARKED],
            more=len(parked) > deciding.MAX_PARKED,
            choices=CHOICES,
            notice=notice,
            **extra,
        )

    async def decide_for_sender(self, request: Request, who: Identity) -> Response:
        """An operator's decision for one parked recipient, as ``mxg
        decide`` takes it (`mxg.ops.deciding`); a secure envelope only
        with the password typed here, which is used and never shown."""
        form: FormData = request.state.form
        qid = (_one(form, "queue_id") or "").strip().upper()
        choice = _one(form, "choice") or ""
        reason = (_one(form, "reason") or "").strip()
        password = _one(form, "password") or ""
        status = 400
        try:
            if not QUEUE_ID.match(qid):
                raise OperatorError(f"{qid!r} is not a queue id")
            if not reason or len(reason) > MAX_REASON:
                raise OperatorError(f"give a reason (at most {MAX_REASON} characters)")
            if choice == "envelope" and not password:
                raise OperatorError("envelope: type the password the recipient will be given")
            done = await take_decision(
                self._surface,
                who,
                qid,
                [_one(form, "recipient") or ""],
                choice,
                dsn=_one(form, "dsn") == "1",
                force=_one(form, "force") == "1",
                reason=reason,
                password=password,
                via="ui",
                client=request.client.host if request.client else "",
            )
        except DecisionRefused as e:
            problem, status = str(e), e.status
        except OperatorError as e:
            problem = str(e)
        else:
            return _redirect(request, f"/ui/awaiting?done={done.choice}")
        # The password is not given back to the page.
        return await self.awaiting(request, who, error=problem, status=status)

    async def message(self, request: Request, who: Identity) -> Response:
        qid = str(request.path_params["queue_id"]).upper()
        if not QUEUE_ID.match(qid):
            raise Refusal(400, f"{request.path_params['queue_id']!r} is not a queue id")
        details = self._store.details(qid)
        if details is None:
            raise Refusal(404, f"no message {qid} in the queue")
        cfg = self._surface.ctx.cfg
        evidence = [flatten(r, cfg) for r in self._store.evidence(EvidenceQuery(queue_id=qid))]
        when = {e["id"]: rfc3339(e["at_ms"]) for e in details["events"]}
        return self._render(
            request,
            "message.html",
            who,
            m=details,
            received=rfc3339(details["received_ms"]),
            evidence=evidence,
            when=when,
        )

    async def partners(self, request: Request, who: Identity, **extra: Any) -> Response:
        rows = [
            {**r, "last": rfc3339(r["last_ms"]), "failure": rfc3339(r["failure_ms"])}
            for r in self._store.partner_list()
        ]
        status = extra.pop("status", 200)
        return self._render(request, "partners.html", who, status, partners=rows, **extra)

    async def accept(self, request: Request, who: Identity) -> Response:
        form: FormData = request.state.form
        domain = (_one(form, "domain") or "").strip()
        reason = (_one(form, "reason") or "").strip()
        if not reason or len(reason) > MAX_REASON:
            return await self.partners(
                request, who, error=f"{domain}: give a reason (at most {MAX_REASON})", status=400
            )
        if not self._store.accept_partner(domain, who.actor, reason):
            return await self.partners(
                request, who, error=f"{domain} is not in the ledger", status=400
            )
        return await self.partners(request, who, notice=f"{domain}: accepted")

    async def failures(self, request: Request, who: Identity) -> Response:
        from mxg.cli.evidence import when_ms  # noqa: PLC0415

        since = request.query_params.get("since", FAILURE_SPANS[0])
        if since not in FAILURE_SPANS:
            raise Refusal(400, f"since: one of {', '.join(FAILURE_SPANS)}")
        try:
            rows = by_reason(self._store, when_ms(since))
        except MxgError as e:
            raise Refusal(400, str(e)) from None
        return self._render(
            request, "failures.html", who, failures=rows, since=since, spans=FAILURE_SPANS
        )


async def _form(request: Request) -> FormData:
    """The posted form, urlencoded, read up to `MAX_FORM` octets."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise Refusal(415, "send the form as the page does (application/x-www-form-urlencoded)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise Refusal(413, f"the form is larger than {MAX_FORM} octets")
    # Read once, bounded; the form parser (python-multipart) reads it from
    # here instead of the connection.
    request._body = bytes(body)
    try:
        return await request.form(max_files=0, max_fields=MAX_HELD + 10)
    except Exception as e:  # starlette's MultiPartException and parser errors
        raise Refusal(400, f"the form could not be read: {e}") from None


def _one(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None
