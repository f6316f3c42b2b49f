"""The decision links' tokens: signed, expiring, single-use.

A token is ``<payload>.<mac>``, both base64url without padding. The
payload holds a random token id (16 bytes, also the nonce), the expiry in
milliseconds and the queue id; the mac is HMAC-SHA256 over a context
string and the payload, with a key of 32 random bytes kept in the data
directory (``decide.key``, mode 0600, made at the relay's first start;
rule 8a: never through a link). A token that does not verify is refused
before the store is read; one that does is looked up there, where its
use is recorded, so it works once, across restarts too
(`mxg.store.decisions`). The CSRF value of the decision form is an HMAC
of the same key over the token id and the browser's cookie: bound to
both, forged by neither.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

from mxg.keyfile import read_or_make
from mxg.urlsafe import b64, unb64

KEY_FILE = "decide.key"
KEY_BYTES = 32
TOKEN_ID_BYTES = 16
# What the macs cover, so that neither can be taken for the other or for
# anything else made with the key.
TOKEN_CONTEXT = b"mxg decision token v1\n"
CSRF_CONTEXT = b"mxg decision csrf v1\n"
# Queue ids are short (the spool's names); a token is refused unread when
# it is longer than any mxg issues.
MAX_TOKEN = 200
_SHAPE = re.compile(r"^[A-Za-z0-9_-]{30,150}\.[A-Za-z0-9_-]{43}$")


class TokenError(Exception):
    """Why a token is refused; `status` is the HTTP status that says so."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


@dataclass(frozen=True)
class Claims:
    token_id: str  # hex
    queue_id: str
    expires_ms: int


class TokenKey:
    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("a decision key is 32 bytes")
        self._key = key

    def _mac(self, context: bytes, data: bytes) -> bytes:
        return hmac.new(self._key, context + data, hashlib.sha256).digest()

    def issue(self, queue_id: str, expires_ms: int) -> tuple[str, Claims]:
        token_id = secrets.token_bytes(TOKEN_ID_BYTES)
        payload = token_id + struct.pack(">Q", expires_ms) + queue_id.encode()
        token = f"{b64(payload)}.{b64(self._mac(TOKEN_CONTEXT, payload))}"
        return token, Claims(token_id.hex(), queue_id, expires_ms)

    def verify(self, token: str, now_ms: int) -> Claims:
        """The token's claims; TokenError when it is malformed (400), not
        made with this key (403) or expired (410)."""
        if len(token) > MAX_TOKEN or not _SHAPE.fullmatch(token):
            raise TokenError(400, "this link is incomplete or malformed")
        body, mac = token.split(".")
        try:
            payload, given = unb64(body), unb64(mac)
        except binascii.Error:
            raise TokenError(400, "this link is incomplete or malformed") from None
        if not hmac.compare_digest(given, self._mac(TOKEN_CONTEXT, payload)):
            raise TokenError(403, "this link was not issued by this gateway")
        if len(payload) <= TOKEN_ID_BYTES + 8:
            raise TokenError(400, "this link is incomplete or malformed")
        (expires_ms,) = struct.unpack(">Q", payload[TOKEN_ID_BYTES : TOKEN_ID_BYTES + 8])
        try:
            queue_id = payload[TOKEN_ID_BYTES + 8 :].decode()
        except UnicodeDecodeError:
            raise TokenError(400, "this link is incomplete or malformed") from None
        if now_ms >= expires_ms:
            raise TokenError(410, "this link has expired")
        return Claims(payload[:TOKEN_ID_BYTES].hex(), queue_id, expires_ms)

    def csrf(self, token_id: str, cookie: str) -> str:
        return b64(self._mac(CSRF_CONTEXT, f"{token_id}\n{cookie}".encode()))

    def csrf_ok(self, token_id: str, cookie: str, value: str) -> bool:
        return bool(cookie) and hmac.compare_digest(
            self.csrf(token_id, cookie).encode(), value.encode()
        )

    @classmethod
    def load_or_create(cls, data_dir: Path) -> TokenKey:
        """The data directory's key, made on first use (`mxg.keyfile`)."""
        return cls(read_or_make(data_dir, KEY_FILE, KEY_BYTES, "decision key"))
