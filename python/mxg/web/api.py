"""The admin API, ``/api/v1/``: the queue, a message with its evidence
and signed proof, the partner ledger, the queue's summary per domain and
recent failures and the recipients awaiting the sender to read; hold,
release, flush, delete and bounce by queue id or selector, and the
decisions of ``mxg decide`` for recipients awaiting the sender, to
change, with a reason (and, for the queue actions, a dry run)
(docs/admin-api.md; the schema is ``/api/v1/openapi.json``,
`mxg.web.openapi`).

Every route authenticates through `mxg.web.auth` and declares its role;
every change goes through `mxg.ops`, as ``mxg queue`` does, under the
token's name or the certificate's subject. The API runs in the relay's
process: after a change it wakes the scanner, so a release or flush is
dispatched now and a delete or bounce finished now, not within one scan
as from the command line. Errors are JSON, ``{"error": "..."}``, with a
4xx status; a request that is refused changed nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from functools import partial
from typing import Any, TypeVar

import anyio
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from mxg import ops, proof, proof_html
from mxg.decide.choices import DecisionRefused
from mxg.deliverylog import event, log
from mxg.errors import MessageNotFound, MxgError, NotChangeable, OperatorError
from mxg.evidence import flatten, rfc3339
from mxg.ops import deciding
from mxg.ops.failures import by_reason
from mxg.ops.selectors import QUEUE_ID
from mxg.signing import SigningKey
from mxg.store import Decided, EvidenceQuery
from mxg.store.evidence import OUTCOMES
from mxg.web.auth import Identity, Refused, identify
from mxg.web.refusal import Refusal
from mxg.web.surface import Surface

PREFIX = "/api/v1"
# A request body larger than this is refused (413): a selection of ten
# thousand queue ids fits in a fifth of it.
MAX_BODY = 1 << 20
# Messages a listing returns at most (`limit` may lower it).
MAX_LIST = 10_000
DEFAULT_LIST = 1000
# A reason is recorded in the audit trail: a sentence, not a document.
MAX_REASON = 1000
# Queue ids one request may name.
MAX_IDS = 10_000
# Recipients one decision may name (RFC 5321 §4.5.3.1.8's 100, ten times).
MAX_RECIPIENTS = 1000
# A typed password is a passphrase, not a document.
MAX_PASSWORD = 200
# How far back /failures looks by default, and at most.
FAILURES_SINCE = "24h"
NO_STORE = {"Cache-Control": "no-store"}

Handler = Callable[[Request, Identity], Awaitable[Response]]


class Json(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=str)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Json:
    return Json({"error": message}, status_code=status, headers={**NO_STORE, **(headers or {})})


class ActionRequest(BaseModel):
    """The body of a queue action: the selection (criteria combine, the
    values of one are alternatives; ``all`` selects every message and is
    narrowed by the others), the reason and the dry run."""

    model_config = ConfigDict(extra="forbid", strict=True)

    ids: list[str] = Field(default=[], max_length=MAX_IDS)
    all: bool = False
    domains: list[str] = []
    classes: list[str] = []
    states: list[str] = []
    older_than: str | None = None
    younger_than: str | None = None
    reason: str = Field(default="", max_length=MAX_REASON)
    dry_run: bool = False
    # release only: the transport level these messages (named by queue
    # id) are delivered at instead of their class's.
    level: str | None = None


class DecideRequest(BaseModel):
    """An operator's decision for recipients awaiting the sender, as
    ``mxg decide`` takes it; a secure envelope needs the `password` the
    recipient will be given (used, never returned or kept)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    recipients: list[str] = Field(min_length=1, max_length=MAX_RECIPIENTS)
    choice: str
    dsn: bool = False
    force: bool = False
    reason: str = Field(min_length=1, max_length=MAX_REASON)
    password: str = Field(default="", max_length=MAX_PASSWORD)


class AcceptRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str = Field(min_length=1, max_length=MAX_REASON)


def routes(surface: Surface) -> list[BaseRoute]:
    def guarded(role: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                who = identify(surface.ctx.cfg.web, surface.throttle, request, role)
                return await handler(request, who)
            except Refused as e:
                headers = {}
                if e.challenge:
                    headers["WWW-Authenticate"] = e.challenge
                if e.retry_after:
                    headers["Retry-After"] = str(max(1, round(e.retry_after)))
                return error(e.status, e.message, headers)
            except Refusal as e:
                return error(e.status, e.message)
            except NotChangeable as e:
                return error(409, str(e))
            except OperatorError as e:
                return error(400, str(e))
            except DecisionRefused as e:
                return error(e.status, str(e))

        return endpoint

    api = Api(surface)
    table: list[tuple[str, str, str, Handler]] = [
        ("GET", "/openapi.json", "read", api.openapi),
        ("GET", "/me", "read", api.me),
        ("GET", "/queue", "read", api.queue),
        ("GET", "/queue/summary", "read", api.summary),
        ("GET", "/messages/{queue_id}", "read", api.message),
        ("GET", "/evidence", "read", api.evidence_lookup),
        ("GET", "/messages/{queue_id}/evidence", "read", api.evidence),
        ("GET", "/messages/{queue_id}/proof", "read", api.proof),
        ("GET", "/awaiting", "read", api.awaiting),
        ("POST", "/messages/{queue_id}/decide", "admin", api.decide),
        ("GET", "/partners", "read", api.partners),
        ("POST", "/partners/{domain}/accept", "admin", api.accept_partner),
        ("GET", "/failures", "read", api.failures),
        ("GET", "/cluster", "read", api.cluster),
        *(("POST", f"/queue/{a}", "admin", api.action(a)) for a in ops.ACTIONS),
    ]
    sub = Starlette(
        routes=[Route(path, guarded(role, fn), methods=[m]) for m, path, role, fn in table],
        exception_handlers={HTTPException: _http_error},
    )
    sub.router.redirect_slashes = False  # no redirect to a Host header's host (app.py)
    return [Mount(PREFIX, app=sub)]


async def _http_error(_: Request, exc: Exception) -> Response:
    # Unknown paths and methods under /api/v1: JSON, as every other error.
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, exc.detail or "error", dict(exc.headers or {}))


class Api:
    def __init__(self, surface: Surface) -> None:
        self._surface = surface

    @property
    def _store(self) -> Any:
        return self._surface.ctx.store

    # -- reading ---------------------------------------------------------

    async def openapi(self, request: Request, _: Identity) -> Response:
        from mxg.web.openapi import schema  # noqa: PLC0415

        # Under the mount, the root path ends with PREFIX (and begins with
        # web.root_path behind a proxy).
        return Json(schema(request.scope.get("root_path") or PREFIX), headers=NO_STORE)

    async def me(self, _: Request, who: Identity) -> Response:
        return Json({"name": who.name, "role": who.role, "via": who.via, "actor": who.actor})

    async def queue(self, request: Request, _: Identity) -> Response:
        q = _Query(request, {"id", "domain", "class", "state", "older_than", "younger_than"})
        include_done = q.flag("include_done")
        limit = q.number("limit", DEFAULT_LIST, 1, MAX_LIST)
        q.done()
        items = self._store.listing(include_done=include_done)
        selector = _selector(q.criteria)
        if not selector.is_empty:
            picked = {r["queue_id"] for r in selector.pick(self._store)}
            items = [i for i in items if i["queue_id"] in picked]
        out = [
            {
                **i,
                "received": rfc3339(i["received_ms"]),
                "state": "held" if i["state"] == "active" and i["held"] else i["state"],
            }
            for i in items[:limit]
        ]
        return Json(
            {"messages": out, "count": len(items), "truncated": len(items) > limit},
            headers=NO_STORE,
        )

    async def summary(self, request: Request, _: Identity) -> Response:
        q = _Query(request, {"state"})
        top = q.number("top", None, 1, MAX_LIST)
        q.done()
        s = ops.summarize(self._store, q.criteria.get("state", []), top=top)
        rows = [
            {
                "domain": row.domain,
                "total": row.total,
                "buckets": dict(zip(s.columns[1:], row.counts[1:], strict=True)),
                "suspended": row.suspended,
            }
            for row in (*s.rows, s.total)
        ]
        return Json(
            {"columns": list(s.columns[1:]), "domains": rows[:-1], "total": rows[-1]},
            headers=NO_STORE,
        )

    async def cluster(self, request: Request, _: Identity) -> Response:
        """The cluster's nodes and queue per node (`mxg cluster status`);
        400 on the embedded SQLite store, which is one node."""
        from mxg.ops.cluster import cluster_status  # noqa: PLC0415

        _Query(request, set()).done()
        cfg = self._surface.ctx.cfg
        status = cluster_status(self._store, cfg.delivery.max_per_destination)
        return Json(status.as_json(), headers=NO_STORE)

    async def message(self, request: Request, _: Identity) -> Response:
        qid = _queue_id(request)
        details = self._store.details(qid)
        if details is None:
            raise Refusal(404, f"no message {qid} in the queue")
        details["received"] = rfc3339(details["received_ms"])
        return Json(details, headers=NO_STORE)

    async def evidence(self, request: Request, _: Identity) -> Response:
        qid = _queue_id(request)
        q = _Query(request, set())
        attempts = q.flag("attempts")
        q.done()
        if self._store.message(qid) is None:
            raise Refusal(404, f"no message {qid} in the queue")
        cfg = self._surface.ctx.cfg
        rows = self._store.evidence(EvidenceQuery(queue_id=qid, attempts=attempts))
        return Json({"evidence": [flatten(r, cfg) for r in rows]}, headers=NO_STORE)

    async def evidence_lookup(self, request: Request, _: Identity) -> Response:
        """`mxg evidence` with its selectors as query parameters."""
        from mxg.cli.evidence import when_ms  # noqa: PLC0415

        q = _Query(request, set())
        texts = {
            name: q._single(name)
            for name in ("queue_id", "message_id", "recipient", "sender", "domain", "class")
        }
        times = {name: q._single(name) for name in ("since", "until")}
        outcome = q._single("outcome")
        attempts = q.flag("attempts")
        limit = q.number("limit", DEFAULT_LIST, 1, MAX_LIST)
        q.done()
        if outcome is not None and outcome not in OUTCOMES:
            raise Refusal(400, f"outcome: one of {', '.join(OUTCOMES)}")
        qid = texts["queue_id"]
        if qid is not None and not QUEUE_ID.fullmatch(qid):
            raise Refusal(400, f"{qid!r} is not a queue id")
        ms: dict[str, int | None] = {}
        for name, value in times.items():
            try:
                ms[name] = when_ms(value) if value else None
            except MxgError as e:
                raise Refusal(400, f"{name}: {e}") from None
        query = EvidenceQuery(
            queue_id=qid,
            message_id=texts["message_id"],
            recipient=texts["recipient"],
            sender=texts["sender"],
            domain=texts["domain"],
            since_ms=ms["since"],
            until_ms=ms["until"],
            risk_class=texts["class"],
            outcome=outcome,
            attempts=attempts,
            limit=limit + 1,
        )
        cfg = self._surface.ctx.cfg
        rows = [flatten(r, cfg) for r in self._store.evidence(query)]
        return Json({"evidence": rows[:limit], "truncated": len(rows) > limit}, headers=NO_STORE)

    async def proof(self, request: Request, _: Identity) -> Response:
        qid = _queue_id(request)
        q = _Query(request, set())
        fmt = q.choice("format", ("json", "html"), "json")
        q.done()
        cfg = self._surface.ctx.cfg
        document = proof.build(self._store, cfg, qid)
        if document is None:
            raise Refusal(404, f"no message {qid} in the queue")
        try:
            signed = proof.sign(document, SigningKey.load(cfg.data.directory))
        except MxgError as e:
            raise Refusal(503, f"cannot sign the proof: {e}") from None
        if fmt == "html":
            return HTMLResponse(
                proof_html.render(signed),
                headers={
                    **NO_STORE,
                    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
                },
            )
        return Json(signed, headers=NO_STORE)

    async def awaiting(self, request: Request, _: Identity) -> Response:
        q = _Query(request, set())
        limit = q.number("limit", deciding.MAX_PARKED, 1, deciding.MAX_PARKED)
        q.done()
        rows = deciding.parked(self._store, self._surface.ctx.cfg, limit + 1)
        return Json(
            {"recipients": [asdict(p) for p in rows[:limit]], "truncated": len(rows) > limit},
            headers=NO_STORE,
        )

    async def decide(self, request: Request, who: Identity) -> Response:
        qid = _queue_id(request)
        _Query(request, set()).done()
        body = _model(DecideRequest, await read_json(request))
        if body.choice == "envelope" and not body.password:
            raise Refusal(400, "password: the envelope needs the password the recipient gets")
        done = await take_decision(
            self._surface,
            who,
            qid,
            body.recipients,
            body.choice,
            dsn=body.dsn,
            force=body.force,
            reason=body.reason,
            password=body.password,
            via="api",
            client=request.client.host if request.client else "",
        )
        rows = {r["idx"]: r["address"] for r in self._store.recipients(qid)}
        return Json(
            {
                "queue_id": qid,
                "choice": done.choice,
                "recipients": [rows.get(i, "") for i in done.recipients],
                "actor": who.actor,
                "level": done.detail.get("level"),
                "forced": bool(done.detail.get("forced")),
            }
        )

    async def partners(self, request: Request, _: Identity) -> Response:
        _Query(request, set()).done()
        rows = [
            {
                **r,
                **{
                    name: rfc3339(r[f"{name}_ms"])
                    for name in ("first", "last", "best", "failure", "accepted")
                },
            }
            for r in self._store.partner_list()
        ]
        return Json({"partners": rows}, headers=NO_STORE)

    async def accept_partner(self, request: Request, who: Identity) -> Response:
        domain = request.path_params["domain"]
        body = _model(AcceptRequest, await read_json(request))
        if not self._store.accept_partner(domain, who.actor, body.reason):
            raise Refusal(404, f"{domain} is not in the partner ledger")
        return Json({"domain": domain.lower(), "accepted": True, "actor": who.actor})

    async def failures(self, request: Request, _: Identity) -> Response:
        from mxg.cli.evidence import when_ms  # noqa: PLC0415

        q = _Query(request, set())
        since = q.text("since", FAILURES_SINCE)
        q.done()
        try:
            since_ms = when_ms(since)
        except MxgError as e:
            raise Refusal(400, f"since: {e}") from None
        ordered = [asdict(f) for f in by_reason(self._store, since_ms)]
        return Json({"since": rfc3339(since_ms), "reasons": ordered}, headers=NO_STORE)

    # -- changing --------------------------------------------------------

    def action(self, name: str) -> Handler:
        async def run(request: Request, who: Identity) -> Response:
            _Query(request, set()).done()
            body = _model(ActionRequest, await read_json(request))
            if not body.dry_run and not body.reason.strip():
                raise Refusal(400, "reason: say why; it is recorded with the change")
            selector = ops.Selector.build(
                queue_ids=body.ids,
                domains=body.domains,
                classes=body.classes,
                states=body.states,
                older_than=body.older_than,
                younger_than=body.younger_than,
                everything=body.all,
            )
            if selector.is_empty:
                raise Refusal(
                    400,
                    "select messages: ids, domains, classes, states, older_than,"
                    " younger_than, or all: true for every message",
                )
            result = ops.act(
                name,
                self._store,
                selector,
                who.actor,
                body.reason.strip(),
                level=body.level,
                dry_run=body.dry_run,
            )
            log_action(result, "api")
            if result.changes and not result.dry_run:
                # Dispatch what was released or flushed, finish what was
                # deleted or bounced: now, not at the next scan.
                self._surface.ctx.wakeup.set()
            return Json(
                {
                    "action": result.action,
                    "dry_run": result.dry_run,
                    "selection": result.selection,
                    "actor": result.actor,
                    "reason": result.reason,
                    "level": result.level,
                    "messages": len(result.changes),
                    "recipients": result.recipients,
                    "changes": [
                        {k: v for k, v in r.items() if k not in _COMMON} for r in result.records()
                    ],
                }
            )

        return run


def log_action(result: ops.ActionResult, via: str) -> None:
    """One log line per change made on the web surface (the audit trail
    has each message; the log says who did how much, for the journal)."""
    if result.dry_run or not result.changes:
        return
    event(
        log,
        "operator action",
        action=result.action,
        actor=result.actor,
        via=via,
        selection=result.selection,
        messages=len(result.changes),
        recipients=result.recipients,
    )


async def take_decision(
    surface: Surface,
    who: Identity,
    queue_id: str,
    addresses: list[str],
    choice: str,
    *,
    dsn: bool,
    force: bool,
    reason: str,
    password: str,
    via: str,
    client: str,
) -> Decided:
    """An operator's decision on the web surface (the API and the pages):
    checked and taken as ``mxg decide`` does (`mxg.ops.deciding`), the
    envelope sealed off the event loop from the spooled message; logged
    without the password, and the scanner woken to carry it out now."""
    store, cfg = surface.ctx.store, surface.ctx.cfg
    deciding.checked(choice, dsn=dsn, password=bool(password), force=force, reason=reason)
    rows = deciding.named(store, queue_id, addresses)
    carrier = None
    if choice == "envelope":
        try:
            _, original = await anyio.to_thread.run_sync(surface.ctx.engine.read, queue_id)
        except MessageNotFound:
            raise OperatorError(f"{queue_id}: the spool no longer holds the message") from None
        msg = store.message(queue_id)
        sender = msg["sender"] if msg is not None else ""
        _, carrier = await anyio.to_thread.run_sync(
            partial(deciding.seal, cfg, sender, rows, typed=password, original=original)
        )
    done = deciding.take(
        store, cfg, queue_id, rows, choice, actor=who.actor, client=client, dsn=dsn,
        reason=reason, force=force, carrier=carrier,
    )  # fmt: skip
    event(
        log,
        "operator decision",
        queue_id=queue_id,
        choice=done.choice,
        actor=who.actor,
        via=via,
        recipients=len(done.recipients),
    )
    surface.ctx.wakeup.set()
    return done


# Fields of `ActionResult.records` said once per response, not per change.
_COMMON = frozenset({"action", "dry_run", "actor", "reason", "selection", "level"})


async def read_json(request: Request) -> dict[str, Any]:
    """The request's JSON object, read up to `MAX_BODY` octets."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise Refusal(415, "send the body as application/json")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise Refusal(413, f"the body is larger than {MAX_BODY} octets")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise Refusal(400, f"the body is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise Refusal(400, "the body must be a JSON object")
    return value


M = TypeVar("M", bound=BaseModel)


def _model(model: type[M], value: dict[str, Any]) -> M:
    try:
        return model.model_validate(value)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "body"
        raise Refusal(400, f"{where}: {first['msg']}") from None


def _queue_id(request: Request) -> str:
    qid = str(request.path_params["queue_id"]).upper()
    if not QUEUE_ID.match(qid):
        raise Refusal(400, f"{request.path_params['queue_id']!r} is not a queue id")
    return qid


def _selector(criteria: dict[str, list[str]]) -> ops.Selector:
    def one(name: str) -> str | None:
        values = criteria.get(name, [])
        if len(values) > 1:
            raise Refusal(400, f"{name} is given more than once")
        return values[0] if values else None

    return ops.Selector.build(
        queue_ids=criteria.get("id", []),
        domains=criteria.get("domain", []),
        classes=criteria.get("class", []),
        states=criteria.get("state", []),
        older_than=one("older_than"),
        younger_than=one("younger_than"),
    )


class _Query:
    """A request's query parameters, each taken once; `done` refuses the
    ones nobody took (a misspelt selector must not widen a selection)."""

    def __init__(self, request: Request, repeatable: set[str]) -> None:
        self._params = request.query_params
        self._left = set(self._params.keys())
        self.criteria = {
            name: self._params.getlist(name) for name in repeatable if name in self._params
        }
        self._left -= repeatable

    def _single(self, name: str) -> str | None:
        values = self._params.getlist(name)
        self._left.discard(name)
        if len(values) > 1:
            raise Refusal(400, f"{name} is given more than once")
        return values[0] if values else None

    def text(self, name: str, default: str) -> str:
        return self._single(name) or default

    def flag(self, name: str) -> bool:
        value = self._single(name)
        if value is None:
            return False
        if value not in ("true", "false", "1", "0"):
            raise Refusal(400, f"{name}: true or false, not {value!r}")
        return value in ("true", "1")

    def number(self, name: str, default: int | None, low: int, high: int) -> Any:
        value = self._single(name)
        if value is None:
            return default
        if not value.isdigit() or not low <= int(value) <= high:
            raise Refusal(400, f"{name}: a whole number from {low} to {high}")
        return int(value)

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self._single(name) or default
        if value not in choices:
            raise Refusal(400, f"{name}: one of {', '.join(choices)}")
        return value

    def done(self) -> None:
        if self._left:
            raise Refusal(400, f"unknown query parameter {sorted(self._left)[0]!r}")
