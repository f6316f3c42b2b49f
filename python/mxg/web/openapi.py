"""The OpenAPI 3.1 description of the admin API (`mxg.web.api`), served
as ``/api/v1/openapi.json``. Written by hand, next to the routes it
describes; tests/test_web_api.py checks that both list the same paths
and methods, and the request bodies are the API's own pydantic models,
so what is described is what is checked."""

from __future__ import annotations

from typing import Any

from mxg import __version__, ops
from mxg.decide.choices import CHOICES
from mxg.ops.selectors import STATES
from mxg.store.evidence import OUTCOMES
from mxg.vocab import Level, RiskClass
from mxg.web.api import PREFIX, AcceptRequest, ActionRequest, DecideRequest

_OBJECT = {"type": "object"}
_ERRORS = {
    "400": {"$ref": "#/components/responses/BadRequest"},
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "429": {"$ref": "#/components/responses/TooManyFailures"},
}
_WRITE_ERRORS = {
    **_ERRORS,
    "403": {"$ref": "#/components/responses/Forbidden"},
    "413": {"$ref": "#/components/responses/BadRequest"},
    "415": {"$ref": "#/components/responses/BadRequest"},
}


def _q(name: str, text: str, schema: dict[str, Any], *, repeat: bool = False) -> dict[str, Any]:
    if repeat:
        schema = {"type": "array", "items": schema}
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": text,
        "schema": schema,
        **({"style": "form", "explode": True} if repeat else {}),
    }


_QUEUE_ID = {
    "name": "queue_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9A-Fa-f]{16}$"},
}
_SELECTORS = [
    _q("id", "queue id", {"type": "string"}, repeat=True),
    _q("domain", "recipient domain", {"type": "string"}, repeat=True),
    _q("class", "risk class", {"enum": [str(c) for c in RiskClass]}, repeat=True),
    _q("state", "recipient state", {"enum": list(STATES)}, repeat=True),
    _q("older_than", "received before, e.g. 2h", {"type": "string"}),
    _q("younger_than", "received within, e.g. 10m", {"type": "string"}),
]


def _op(summary: str, role: str, ok: str, **extra: Any) -> dict[str, Any]:
    errors = _WRITE_ERRORS if role == "admin" else _ERRORS
    return {
        "summary": summary,
        "description": f"Role: {role}.",
        "responses": {
            "200": {"description": ok, "content": {"application/json": {"schema": _OBJECT}}},
            **errors,
        },
        **extra,
    }


def _body(model: type[Any]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": model.model_json_schema()}},
    }


def _action(name: str) -> dict[str, Any]:
    what = {
        "hold": "Holds whole messages: nothing is dispatched until a release.",
        "release": "Releases held messages and policy-held recipients; due at once."
        f" With level ({', '.join(str(x) for x in Level)}) only for messages named by id.",
        "flush": "Makes the selected deferred recipients due now.",
        "delete": "Gives the selected recipients the final state deleted, without a DSN.",
        "bounce": "Returns the selected recipients to the sender with a DSN.",
    }[name]
    op = _op(
        f"{name} by queue id or selector",
        "admin",
        "what changed (with dry_run: what would change; nothing is changed)",
        requestBody=_body(ActionRequest),
    )
    op["description"] = f"{what} A reason is required unless dry_run. Role: admin."
    op["responses"]["409"] = {"$ref": "#/components/responses/Conflict"}
    return op


def _decide() -> dict[str, Any]:
    op = _op(
        "decide for recipients awaiting the sender, as mxg decide does",
        "admin",
        "the decision taken: choice, recipients, actor, level",
        parameters=[_QUEUE_ID],
        requestBody=_body(DecideRequest),
    )
    op["description"] = (
        f"choice: {', '.join(CHOICES)}. keep: try until the message's lifetime ends;"
        " normal: send at class normal's level; envelope: send as a secure envelope"
        " sealed with password (required; used once, never returned or kept);"
        " cancel: not sent, with dsn a DSN to the sender. A choice the class does not"
        " offer, and class secret at normal's level always, needs force (recorded with"
        " the reason). Recorded with the actor in the audit trail. Role: admin."
    )
    op["responses"]["403"] = {"$ref": "#/components/responses/Forbidden"}
    op["responses"]["409"] = {"$ref": "#/components/responses/Conflict"}
    return op


def schema(base: str = PREFIX) -> dict[str, Any]:
    """The description; `base` is where the API is served (behind a
    reverse proxy with ``web.root_path``: under that prefix)."""
    paths: dict[str, dict[str, Any]] = {
        "/openapi.json": {"get": _op("this description", "read", "OpenAPI 3.1")},
        "/me": {"get": _op("who the credentials name, and their role", "read", "identity")},
        "/queue": {
            "get": _op(
                "messages in the queue, narrowed by the selectors",
                "read",
                "messages, oldest first",
                parameters=[
                    *_SELECTORS,
                    _q("include_done", "finished messages too", {"type": "boolean"}),
                    _q("limit", "at most this many", {"type": "integer", "minimum": 1}),
                ],
            )
        },
        "/queue/summary": {
            "get": _op(
                "messages per recipient domain and age (qshape)",
                "read",
                "one row per domain, and the total",
                parameters=[
                    _q("state", "only these states", {"enum": list(STATES)}, repeat=True),
                    _q("top", "only the N largest domains", {"type": "integer", "minimum": 1}),
                ],
            )
        },
        "/cluster": {
            "get": _op(
                "the cluster's nodes (PostgreSQL store), as mxg cluster status shows them",
                "read",
                "nodes with state, lease, version, jobs in flight and queue; unowned"
                " messages; dead nodes; warnings (400 on the SQLite store)",
            )
        },
        "/messages/{queue_id}": {
            "get": _op(
                "one message: recipients, attempts, operator events",
                "read",
                "the message",
                parameters=[_QUEUE_ID],
            )
        },
        "/messages/{queue_id}/evidence": {
            "get": _op(
                "how each recipient (or attempt) was protected",
                "read",
                "flat evidence records (docs/evidence.md)",
                parameters=[
                    _QUEUE_ID,
                    _q("attempts", "every attempt", {"type": "boolean"}),
                ],
            )
        },
        "/evidence": {
            "get": _op(
                "how each recipient (or attempt) was protected, as mxg evidence selects it",
                "read",
                "flat evidence records (docs/evidence.md), received order",
                parameters=[
                    _q("queue_id", "queue id", {"type": "string"}),
                    _q("message_id", "Message-ID, with or without <>", {"type": "string"}),
                    _q("recipient", "recipient address", {"type": "string"}),
                    _q("sender", "envelope sender", {"type": "string"}),
                    _q("domain", "recipient domain", {"type": "string"}),
                    _q("since", "received at or after: 2026-12-01, 36h", {"type": "string"}),
                    _q("until", "received before (same forms)", {"type": "string"}),
                    _q("class", "risk class", {"enum": [str(c) for c in RiskClass]}),
                    _q("outcome", "recipient state or attempt result", {"enum": list(OUTCOMES)}),
                    _q("attempts", "every attempt", {"type": "boolean"}),
                    _q("limit", "at most this many", {"type": "integer", "minimum": 1}),
                ],
            )
        },
        "/messages/{queue_id}/proof": {
            "get": _op(
                "the message's proof, signed with the gateway's key",
                "read",
                "the signed proof (JSON), or its HTML page",
                parameters=[_QUEUE_ID, _q("format", "json or html", {"enum": ["json", "html"]})],
            )
        },
        "/messages/{queue_id}/decide": {"post": _decide()},
        "/awaiting": {
            "get": _op(
                "recipients awaiting the sender's decision (on_unmet = ask-sender)",
                "read",
                "queue id, sender, recipient, class, reason, since and link expiry, oldest first",
                parameters=[_q("limit", "at most this many", {"type": "integer", "minimum": 1})],
            )
        },
        "/partners": {"get": _op("the partner ledger", "read", "one record per domain")},
        "/partners/{domain}/accept": {
            "post": _op(
                "accept a partner's new, lower state (the ratchet)",
                "admin",
                "accepted",
                parameters=[
                    {"name": "domain", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                requestBody=_body(AcceptRequest),
            )
        },
        "/failures": {
            "get": _op(
                "failed attempts by reason and domain",
                "read",
                "reasons, most frequent first",
                parameters=[_q("since", "e.g. 24h, 7d, 2026-12-01", {"type": "string"})],
            )
        },
    }
    for name in ops.ACTIONS:
        paths[f"/queue/{name}"] = {"post": _action(name)}
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "mxg admin API", "version": __version__},
        "servers": [{"url": base}],
        "security": [{"bearer": []}, {"clientCertificate": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "clientCertificate": {"type": "mutualTLS"},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}},
                    "required": ["error"],
                }
            },
            "responses": {
                "BadRequest": {"description": "wrong request; nothing changed", "content": error},
                "Unauthorized": {"description": "no or wrong credentials", "content": error},
                "Forbidden": {"description": "the role read may not change", "content": error},
                "Conflict": {"description": "the messages named cannot change", "content": error},
                "TooManyFailures": {
                    "description": "too many failed authentications from this address",
                    "content": error,
                },
            },
        },
    }
