"""Logins to the operator pages: a signed session cookie, and the CSRF
value of its forms.

The cookie is ``<payload>.<mac>``, both base64url: the payload names the
token that logged in (its name and SHA-256, never the token), a random
session id and the expiry; the mac is HMAC-SHA256 with a key of 32
random bytes in the data directory (``web-session.key``, mode 0600,
made on first use, never through a link: rule 8a), so a session
outlives a restart of the relay and nobody without the key can make
one. A session is only as good as its token: each request looks the
token up in the configuration of now (`mxg.web.auth.by_name`), so a
reload that removes or replaces it ends its sessions. A logout forgets
the session id until it would have expired anyway.

A form's CSRF value is an HMAC of the session id (before login, of a
random value in a cookie of its own): a page of another site can neither
read it nor make it, and SameSite=Strict keeps the browser from sending
the cookie with such a page's requests in the first place.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mxg.keyfile import read_or_make
from mxg.urlsafe import b64, unb64

KEY_FILE = "web-session.key"
KEY_BYTES = 32
COOKIE = "mxg_session"
# The pre-login cookie the login form's CSRF value is bound to.
LOGIN_COOKIE = "mxg_login"
# What the macs cover, so that none can be taken for another.
_SESSION = b"mxg operator session v1\n"
_CSRF = b"mxg operator csrf v1\n"
# A cookie longer than any mxg makes is refused unread.
MAX_COOKIE = 512
# Logged-out session ids kept (until their expiry); past it the oldest go.
MAX_LOGGED_OUT = 10_000


@dataclass(frozen=True)
class Session:
    name: str  # the token's name
    token_sha256: str
    sid: str
    expires: float


class Sessions:
    def __init__(self, key: bytes, clock: Callable[[], float] = time.time) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("a session key is 32 bytes")
        self._key = key
        self._clock = clock
        self._logged_out: dict[str, float] = {}

    def _mac(self, context: bytes, data: bytes) -> bytes:
        return hmac.new(self._key, context + data, hashlib.sha256).digest()

    def issue(self, name: str, token_sha256: str, lifetime: float) -> tuple[str, Session]:
        """A new session's cookie value."""
        s = Session(name, token_sha256, secrets.token_hex(16), self._clock() + lifetime)
        payload = json.dumps(
            {"n": s.name, "h": s.token_sha256, "s": s.sid, "e": s.expires},
            separators=(",", ":"),
        ).encode()
        return f"{b64(payload)}.{b64(self._mac(_SESSION, payload))}", s

    def read(self, cookie: str | None) -> Session | None:
        """The session of a cookie made here, not expired nor logged out."""
        if not cookie or len(cookie) > MAX_COOKIE or cookie.count(".") != 1:
            return None
        body, mac = cookie.split(".")
        try:
            payload, given = unb64(body), unb64(mac)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(given, self._mac(_SESSION, payload)):
            return None
        try:
            d = json.loads(payload)
            s = Session(str(d["n"]), str(d["h"]), str(d["s"]), float(d["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        if s.expires <= self._clock() or s.sid in self._logged_out:
            return None
        return s

    def log_out(self, s: Session) -> None:
        now = self._clock()
        self._logged_out = {sid: exp for sid, exp in self._logged_out.items() if exp > now}
        self._logged_out[s.sid] = s.expires
        while len(self._logged_out) > MAX_LOGGED_OUT:
            del self._logged_out[next(iter(self._logged_out))]

    def csrf(self, binding: str) -> str:
        """The CSRF value of the forms bound to `binding` (a session id,
        or the pre-login cookie's value)."""
        return b64(self._mac(_CSRF, binding.encode()))

    def csrf_ok(self, binding: str | None, value: str | None) -> bool:
        if not binding or not value or len(value) > MAX_COOKIE:
            return False
        return hmac.compare_digest(self.csrf(binding).encode(), value.encode())

    @classmethod
    def load_or_create(cls, data_dir: Path) -> Sessions:
        """The data directory's key, made on first use (`mxg.keyfile`)."""
        return cls(read_or_make(data_dir, KEY_FILE, KEY_BYTES, "session key"))
