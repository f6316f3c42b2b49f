"""The secure envelope: a message sealed with a password into one HTML
page, and the carrier mail that takes it to the recipient
(docs/secure-envelope.md).

The public API::

    seal(original, password, *, sender, recipients, hostname, templates=None)
        -> bytes     the carrier mail (RFC 5322, CRLF) to spool
    page(original, password, *, templates=None) -> bytes
                     the HTML page alone
    unseal(page_bytes, password) -> bytes
                     the original again (tests, `mxg envelope open`)
    generate_password() -> str      99 bits in four groups of five
    check_password(password) -> None, or raises WeakPassword

Errors are `mxg.errors.EnvelopeError` (a template or file that cannot be
used, a wrong password) and its `WeakPassword`. The password is used and
dropped: nothing here logs it, stores it or puts it into either output.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from mxg.envelope import carrier, crypto
from mxg.envelope import page as _page
from mxg.envelope.carrier import ATTACHMENT, HEADER
from mxg.envelope.crypto import MIN_ITERATIONS
from mxg.envelope.password import GENERATED_BITS, check_password, generate_password
from mxg.envelope.templates import Templates

__all__ = [
    "ATTACHMENT",
    "GENERATED_BITS",
    "HEADER",
    "MIN_ITERATIONS",
    "check_password",
    "generate_password",
    "page",
    "seal",
    "unseal",
]


def page(
    original: bytes,
    password: str,
    *,
    templates: Path | None = None,
    iterations: int = MIN_ITERATIONS,
) -> bytes:
    """The recipient's HTML page holding `original` sealed with `password`."""
    sealed = crypto.encrypt(original, password, iterations)
    return _page.render(sealed, Templates(templates))


def seal(
    original: bytes,
    password: str,
    *,
    sender: str,
    recipients: str | Sequence[str],
    hostname: str,
    templates: Path | None = None,
    iterations: int = MIN_ITERATIONS,
    now: datetime | None = None,
) -> bytes:
    """The carrier mail for `recipients` (one address or several): the
    explanation and the page as its attachment. `sender` is the envelope
    sender (shown in the text, and From when the original has none);
    `hostname` is the Message-ID's domain (`server.hostname`)."""
    chosen = Templates(templates)
    to = [recipients] if isinstance(recipients, str) else list(recipients)
    html = _page.render(crypto.encrypt(original, password, iterations), chosen)
    return carrier.build(
        html,
        from_header=carrier.original_from(original, sender),
        sender=sender,
        recipients=to,
        hostname=hostname,
        templates=chosen,
        now=now,
    )


def unseal(page_bytes: bytes, password: str) -> bytes:
    """The original message in a page; `EnvelopeError` when the password
    is wrong or the file is not an envelope."""
    return crypto.decrypt(_page.read(page_bytes), password)
