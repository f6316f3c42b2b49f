"""Delivery status notifications (RFC 3464, RFC 3461, RFC 6522).

Sent from the null reverse path (RFC 5321 §4.5.5) to the original sender,
never to the null sender, so a DSN can never cause another DSN.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, formatdate

from mxg.vocab import TRANSPORT_SECURITY_REASONS, Reason


@dataclass(frozen=True)
class RecipientReport:
    address: str
    orcpt: str | None
    action: str  # failed | delayed
    status: str  # enhanced status code, e.g. 5.1.1
    remote_mta: str
    diagnostic: str  # "550 5.1.1 user unknown" or our own explanation
    last_attempt_ms: int | None
    # The typed reason of the last attempt (mxg.vocab.Reason), if any: it
    # chooses the plain-language explanation, never the diagnostic's words.
    reason: str | None = None


@dataclass(frozen=True)
class Original:
    queue_id: str
    sender: str
    envid: str | None
    ret: str | None
    received_ms: int
    message: bytes


def _date(ms: int) -> str:
    return format_datetime(datetime.fromtimestamp(ms / 1000, tz=UTC))


def _header_section(message: bytes) -> bytes:
    end = message.find(b"\r\n\r\n")
    return message if end < 0 else message[: end + 2]


def _ascii_line(s: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in s)


def build_dsn(
    *,
    reporting_mta: str,
    postmaster: str,
    original: Original,
    reports: Sequence[RecipientReport],
    full_message_limit: int,
    retry_until_ms: int | None = None,
) -> bytes:
    """The complete DSN message, CRLF line ends."""
    delayed = all(r.action == "delayed" for r in reports)
    boundary = f"mxg-dsn-{secrets.token_hex(12)}"
    subject = (
        "Delayed Mail (still being retried)" if delayed else "Undelivered Mail Returned to Sender"
    )
    lines = [
        f"From: Mail Delivery System <{postmaster}>",
        f"To: <{original.sender}>",
        f"Subject: {subject}",
        f"Date: {formatdate(time.time(), usegmt=True)}",
        f"Message-ID: <{original.queue_id}.{secrets.token_hex(4)}.dsn@{reporting_mta}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
    ]
    lines += _human_text(reporting_mta, original, reports, delayed, retry_until_ms)
    lines += [
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns; {reporting_mta}",
        f"X-Mxg-Queue-ID: {original.queue_id}",
    ]
    if original.envid:
        lines.append(f"Original-Envelope-Id: {_ascii_line(original.envid)}")
    lines.append(f"Arrival-Date: {_date(original.received_ms)}")
    for r in reports:
        lines.append("")
        lines.append(f"Final-Recipient: rfc822; {r.address}")
        if r.orcpt:
            lines.append(f"Original-Recipient: rfc822; {r.orcpt}")
        lines.append(f"Action: {r.action}")
        lines.append(f"Status: {r.status}")
        if r.remote_mta:
            lines.append(f"Remote-MTA: dns; {r.remote_mta}")
        kind = "smtp" if r.diagnostic[:3].isdigit() else "x-mxg"
        lines.append(f"Diagnostic-Code: {kind}; {_ascii_line(r.diagnostic)}")
        if r.last_attempt_ms:
            lines.append(f"Last-Attempt-Date: {_date(r.last_attempt_ms)}")
        if r.action == "delayed" and retry_until_ms:
            lines.append(f"Will-Retry-Until: {_date(retry_until_ms)}")
    lines.append("")
    head = ("\r\n".join(lines) + "\r\n").encode("utf-8")
    full = original.ret != "HDRS" and len(original.message) <= full_message_limit
    if full:
        part = (f"--{boundary}\r\nContent-Type: message/rfc822\r\n\r\n").encode()
        body = original.message
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
    else:
        part = (f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n").encode()
        body = _header_section(original.message)
    return head + part + body + f"\r\n--{boundary}--\r\n".encode()


def _human_text(
    mta: str,
    original: Original,
    reports: Sequence[RecipientReport],
    delayed: bool,
    retry_until_ms: int | None,
) -> list[str]:
    if delayed:
        until = _date(retry_until_ms) if retry_until_ms else "the end of its queue lifetime"
        intro = [
            f"This is the mail gateway at {mta}.",
            "",
            "Your message could not be delivered yet to the recipients below.",
            f"It stays in the queue and is retried until {until};",
            "you do not need to send it again.",
        ]
    else:
        intro = [
            f"This is the mail gateway at {mta}.",
            "",
            "Your message could not be delivered to the recipients below.",
            "This is a permanent error; the message was not sent to them.",
        ]
    out = [*intro, ""]
    for r in reports:
        where = f" (answer from {r.remote_mta})" if r.remote_mta else ""
        out.append(f"<{r.address}>{where}:")
        out.append(f"    {r.diagnostic}")
        out.append("")
    if any(r.reason == Reason.E2E_REQUIRED for r in reports):
        out += E2E_EXPLANATION
    elif any(is_security_failure(r.reason) for r in reports):
        out += SECURITY_EXPLANATION
    out.append(f"Queue ID: {original.queue_id}")
    return out


def is_security_failure(reason: str | None) -> bool:
    """The transport could not be made safe enough (a TLS-RPT result type,
    RFC 8460 §4.3, or one of mxg's transport reasons), as opposed to a
    recipient the server does not know or a network problem."""
    return reason in TRANSPORT_SECURITY_REASONS


E2E_EXPLANATION = [
    "Why: this message was classified as needing end-to-end encryption",
    "(for example because it carries professional secrets), and it was not",
    "encrypted. The gateway does not send such content as it is.",
    "What you can do: send it again encrypted with S/MIME or PGP, use",
    "another secure channel, or ask your mail administrator.",
    "",
    "Warum: Diese Nachricht wurde als Inhalt eingestuft, der Ende-zu-Ende",
    "verschluesselt sein muss (z. B. wegen eines Berufsgeheimnisses), und sie",
    "war nicht verschluesselt. Das Gateway versendet solche Inhalte so nicht.",
    "Was Sie tun koennen: die Nachricht mit S/MIME oder PGP verschluesselt",
    "erneut senden, einen anderen sicheren Weg nutzen oder Ihre",
    "Mail-Administration fragen.",
    "",
]


SECURITY_EXPLANATION = [
    "Why: the receiving mail server could not be reached with the protection",
    "this message requires - encryption, and where the content calls for it,",
    "a server whose identity could be verified (DANE, MTA-STS or an agreed",
    "certificate). The gateway never sends such mail unprotected.",
    "What you can do: send the content by another secure channel, ask the",
    "recipient's IT to enable TLS with DANE or MTA-STS for their mail servers,",
    "or ask your mail administrator.",
    "",
    "Warum: Der empfangende Mailserver war nicht mit dem Schutz erreichbar,",
    "den diese Nachricht verlangt - Verschluesselung und, wo der Inhalt es",
    "erfordert, ein Server, dessen Identitaet geprueft werden konnte (DANE,",
    "MTA-STS oder ein vereinbartes Zertifikat). Das Gateway versendet solche",
    "Nachrichten nie ungeschuetzt.",
    "Was Sie tun koennen: den Inhalt auf einem anderen sicheren Weg senden,",
    "die IT des Empfaengers bitten, TLS mit DANE oder MTA-STS einzurichten,",
    "oder Ihre Mail-Administration fragen.",
    "",
]
