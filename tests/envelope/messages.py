"""Test messages for the secure envelope: what a sender's client writes."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage

SUBJECT = "Befund für Frau Müller \u2013 vertraulich"  # with an en dash
BODY = "Sehr geehrte Frau Dr. Schäfer,\nanbei der Befund (Größe 3,2 cm).\nMit freundlichen Grüßen\n"
HTML = "<p>Sehr geehrte Frau Dr. Sch&auml;fer,</p><p><b>anbei</b> der Befund.</p>"
ATTACHMENT_NAME = "Befund Müller 2026.pdf"
# Every octet value, so a decoder that treats it as text shows at once.
ATTACHMENT = bytes(range(256)) * 40 + b"%PDF-1.7 end"


def multipart() -> bytes:
    """text/plain and text/html alternatives and a binary attachment with
    a non-ASCII name, under a non-ASCII subject (RFC 2047, RFC 2231)."""
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = "Gesundheitsamt Köln <amt@gesundheit.example.org>"
    msg["To"] = "Dr. Schäfer <praxis@klinik.example>"
    msg["Cc"] = "akte@gesundheit.example.org"
    msg["Subject"] = SUBJECT
    msg["Date"] = "Fri, 04 Dec 2026 10:00:00 +0100"
    msg["Message-ID"] = "<befund-4711@gesundheit.example.org>"
    msg.set_content(BODY, cte="quoted-printable")
    msg.add_alternative(HTML, subtype="html")
    msg.add_attachment(ATTACHMENT, maintype="application", subtype="pdf", filename=ATTACHMENT_NAME)
    # Fixed boundaries: the same message octets on every call.
    for n, part in enumerate(p for p in msg.walk() if p.is_multipart()):
        part.set_boundary(f"mxg-test-{n}")
    return msg.as_bytes()
