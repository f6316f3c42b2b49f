"""The recipient's page: one HTML file with the sealed message, the code
that opens it and the bilingual text, and nothing else of the message.

Its Content-Security-Policy (in a ``<meta>`` element, since a file has no
HTTP headers) forbids everything (``default-src 'none'``) and then allows
exactly the one inline script and the one inline style by their SHA-256
(CSP Level 3 §8.4 hash-source). So the page can load nothing, send
nothing (``connect-src``, ``form-action``) and run no other script, also
none that a crafted message might smuggle into it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

from markupsafe import Markup, escape

from mxg.envelope.crypto import FORMAT, Sealed
from mxg.envelope.templates import Templates
from mxg.errors import EnvelopeError

SCRIPTS = ("mime.js", "envelope.js")
STYLE = "envelope.css"


def _hash_source(text: str) -> str:
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()
    return f"'sha256-{digest}'"


def content_security_policy(script: str, style: str) -> str:
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {_hash_source(script)}",
            f"style-src {_hash_source(style)}",
            "connect-src 'none'",
            "img-src 'none'",
            "font-src 'none'",
            "media-src 'none'",
            "object-src 'none'",
            "frame-src 'none'",
            "worker-src 'none'",
            "form-action 'none'",
            "base-uri 'none'",
        ]
    )


def render(sealed: Sealed, templates: Templates) -> bytes:
    script = "\n".join(templates.asset(name) for name in SCRIPTS)
    style = templates.asset(STYLE)
    # Inside <script> and <style> the text runs to the first end tag: one in
    # the code itself would cut it (and let what follows be markup).
    if re.search(r"</script", script, re.IGNORECASE) or re.search(r"</style", style, re.I):
        raise EnvelopeError("envelope template: the script or style contains an end tag")
    payload = json.dumps(_payload(sealed), separators=(",", ":"))
    csp = content_security_policy(script, style)
    html = templates.html(
        "page.html",
        csp=csp,
        script=Markup(script),
        style=Markup(style),
        payload=Markup(payload),
    )
    meta = f'<meta http-equiv="Content-Security-Policy" content="{escape(csp)}">'
    if meta not in html:
        # An edited template must not drop the policy: without it a page
        # could load and send.
        raise EnvelopeError(
            "envelope template page.html: keep"
            ' <meta http-equiv="Content-Security-Policy" content="{{ csp }}"> in <head>'
        )
    if f"<script>{script}</script>" not in html or f"<style>{style}</style>" not in html:
        # The hashes cover the exact text between the tags (CSP3 §8.4).
        raise EnvelopeError(
            "envelope template page.html: write <script>{{ script }}</script> and"
            " <style>{{ style }}</style> exactly so"
        )
    return html.encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _payload(sealed: Sealed) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "kdf": "PBKDF2-HMAC-SHA256",
        "cipher": "AES-256-GCM",
        "iterations": sealed.iterations,
        "salt": _b64(sealed.salt),
        "nonce": _b64(sealed.nonce),
        "ciphertext": _b64(sealed.ciphertext),
    }


PAYLOAD = re.compile(rb'<script type="application/json" id="mxg-envelope">(.*?)</script>', re.S)


def read(page: bytes) -> Sealed:
    """The sealed message in a page (`render`'s output)."""
    m = PAYLOAD.search(page)
    try:
        if m is None:
            raise ValueError("no envelope data")
        data = json.loads(m.group(1))
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}")
        return Sealed(
            salt=base64.b64decode(data["salt"], validate=True),
            nonce=base64.b64decode(data["nonce"], validate=True),
            iterations=int(data["iterations"]),
            ciphertext=base64.b64decode(data["ciphertext"], validate=True),
        )
    except (ValueError, KeyError, TypeError) as e:
        raise EnvelopeError(f"not an mxg envelope page ({e})") from None
