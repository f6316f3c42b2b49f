"""The carrier: the mail that takes a sealed message to one recipient (or
to all of them). It says, in German and English, what the attachment is
and how to open it, and carries nothing of the original: its Subject is
the same for every envelope, its only attachment is the page.

Headers: From is the original's From (the recipient must see who wrote;
a From that cannot be read is replaced by the envelope sender), To the
recipients the carrier goes to (never the original's To and Cc, which
could name people the recipient was not meant to see), a new Date and
Message-ID, and ``X-MXG-Envelope`` naming the page's format, so filters
and the recipient's helpdesk can tell what it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import format_datetime, make_msgid

from mxg.envelope.crypto import FORMAT
from mxg.envelope.templates import Templates

HEADER = "X-MXG-Envelope"
ATTACHMENT = "secure-message.html"


def original_from(original: bytes, sender: str) -> str:
    """The original's From as a header value, or the envelope sender when
    it has none that parses as addresses."""
    try:
        head = BytesHeaderParser(policy=policy.default).parsebytes(original)
        value = head["From"]
        addresses = getattr(value, "addresses", ())
        if addresses and all(a.addr_spec and "@" in a.addr_spec for a in addresses):
            return ", ".join(str(a) for a in addresses)
    except (ValueError, TypeError, IndexError):
        pass
    return sender


def build(
    page: bytes,
    *,
    from_header: str,
    sender: str,
    recipients: Sequence[str],
    hostname: str,
    templates: Templates,
    now: datetime | None = None,
) -> bytes:
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = from_header
    msg["To"] = ", ".join(str(Address(addr_spec=r)) for r in recipients)
    msg["Subject"] = templates.text("carrier-subject.txt").strip().splitlines()[0]
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain=hostname)
    msg[HEADER] = FORMAT
    text = templates.text("carrier.txt", sender=sender, attachment=ATTACHMENT)
    msg.set_content(text, charset="utf-8", cte="quoted-printable")
    msg.add_attachment(page, maintype="text", subtype="html", filename=ATTACHMENT, cte="base64")
    return msg.as_bytes()
