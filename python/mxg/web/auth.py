"""Who is asking, on the web surface: an operator with a bearer token
from ``[[web.token]]`` or a client certificate from
``[[web.certificate]]`` (the admin API), or logged in to the operator
pages with such a token (`by_session`), each with a role (`read` or
`admin`).

Authentication happens here and only here (ARCHITECTURE.md,
"Operators' front ends"): the admin API asks `identify`, the operator
pages `by_token` at login and `by_session` after it, for an `Identity`,
and `Identity.may` for a role; the name it carries is the actor their
actions are recorded under.

Tokens are kept only as their SHA-256: a token is 256 random bits
(`new_token`), so a fast hash loses nothing and a stolen configuration
file gives no token. Every configured hash is compared, in constant
time, whether or not one matched before.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from starlette.requests import Request

from mxg.config.sections import WebConfig
from mxg.deliverylog import event, log
from mxg.web.session import Sessions
from mxg.web.throttle import Throttle

# What a token looks like: a prefix that secret scanners and people can
# recognise, then 32 random bytes in URL-safe base64.
TOKEN_PREFIX = "mxg_"
# Longer presented tokens are not hashed: nobody's token is this long.
MAX_TOKEN = 256


@dataclass(frozen=True)
class Identity:
    name: str
    role: str
    # "token" or "certificate"
    via: str

    @property
    def actor(self) -> str:
        """The name actions are recorded under (as ``alice (sudo)`` is
        for the command line)."""
        return f"{self.name} ({self.via})"

    def may(self, role: str) -> bool:
        return role == "read" or self.role == "admin"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def by_token(web: WebConfig, presented: str) -> Identity | None:
    """The configured token `presented` is, or None."""
    if not presented or len(presented) > MAX_TOKEN:
        return None
    digest = hashlib.sha256(presented.encode(errors="surrogateescape")).digest()
    found = None
    for t in web.token:
        if hmac.compare_digest(digest, bytes.fromhex(t.sha256)):
            found = t
    return Identity(found.name, found.role, "token") if found is not None else None


def by_name(web: WebConfig, name: str, sha256: str) -> Identity | None:
    """A token still configured with this name and hash (a login's
    session names its token: a reload that removes or replaces the token
    ends the session), with its role of now."""
    for t in web.token:
        if t.name == name and hmac.compare_digest(t.sha256, sha256):
            return Identity(t.name, t.role, "token")
    return None


def by_certificate(web: WebConfig, der: bytes) -> Identity | None:
    """The role of a client certificate the TLS handshake verified
    against ``web.client_ca``, by its SHA-256 or its subject."""
    fingerprint = hashlib.sha256(der).hexdigest()
    try:
        subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
    except ValueError:
        return None
    for c in web.certificate:
        if c.sha256 and hmac.compare_digest(c.sha256, fingerprint):
            return Identity(subject, c.role, "certificate")
        if c.subject and c.subject == subject:
            return Identity(subject, c.role, "certificate")
    return None


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header (RFC 6750 §2.1)."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class Refused(Exception):
    """A request without the right credentials: 401 (none, or wrong),
    403 (a role too low), 429 (too many failures from its address)."""

    def __init__(
        self, status: int, message: str, retry_after: float = 0, bearer_error: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after
        # RFC 6750 §3.1's error code for WWW-Authenticate: invalid_token
        # (401, a token was sent and is wrong), insufficient_scope (403);
        # none when no credentials came at all.
        self.bearer_error = bearer_error

    @property
    def challenge(self) -> str:
        """The WWW-Authenticate value (RFC 6750 §3), '' when none is due."""
        if self.status == 401 or (self.status == 403 and self.bearer_error):
            error = f', error="{self.bearer_error}"' if self.bearer_error else ""
            return f'Bearer realm="mxg"{error}'
        return ""


def client_certificate(scope: Mapping[str, Any]) -> bytes | None:
    """The DER of the client certificate the handshake verified, from the
    ASGI TLS extension (``client_cert_chain``, PEM, leaf first), which
    `mxg.web.server` fills in."""
    ext = scope.get("extensions")
    tls = ext.get("tls") if isinstance(ext, dict) else None
    chain = tls.get("client_cert_chain") if isinstance(tls, dict) else None
    if not chain:
        return None
    return ssl.PEM_cert_to_DER_cert(chain[0])


def identify(web: WebConfig, throttle: Throttle, request: Request, role: str) -> Identity:
    """Who sends `request`, allowed `role`; `Refused` otherwise. A bearer
    token, when one is given, decides; else a client certificate. A wrong
    token counts against the client's address (`Throttle`)."""
    client = request.client.host if request.client else "unknown"
    wait = throttle.wait(client)
    if wait:
        raise Refused(
            429,
            f"too many failed authentications from {client}: try again in {math.ceil(wait)}s",
            wait,
        )
    token = bearer(request.headers.get("authorization"))
    identity: Identity | None = None
    if token is not None:
        identity = by_token(web, token)
        if identity is None:
            throttle.failed(client)
            # The token itself is never logged (rule 8).
            event(
                log,
                "web authentication failed",
                logging.WARNING,
                client=client,
                path=request.url.path,
            )
            raise Refused(401, "the bearer token is not valid", bearer_error="invalid_token")
    elif (der := client_certificate(request.scope)) is not None:
        identity = by_certificate(web, der)
        if identity is None:
            raise Refused(401, "the client certificate has no role here ([[web.certificate]])")
    if identity is None:
        raise Refused(
            401, "authentication required: Authorization: Bearer TOKEN, or a client certificate"
        )
    if not identity.may(role):
        raise Refused(
            403,
            f"{identity.name} has the role {identity.role}; this needs {role}",
            bearer_error="insufficient_scope" if identity.via == "token" else "",
        )
    return identity


def by_session(web: WebConfig, sessions: Sessions, cookie: str | None) -> Identity | None:
    """The operator a page login's cookie names, while its token is still
    configured (with the token's role of now)."""
    s = sessions.read(cookie)
    return by_name(web, s.name, s.token_sha256) if s is not None else None
