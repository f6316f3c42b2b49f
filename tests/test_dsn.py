"""Delivery status notifications (RFC 3464)."""

from __future__ import annotations

import email
from email.message import Message

from mxg.dsn import Original, RecipientReport, build_dsn

ORIGINAL = Original(
    "0123456789ABCDEF",
    "alice@example.org",
    "env-1",
    None,
    1_700_000_000_000,
    b"Subject: hello\r\nMessage-ID: <m@x>\r\n\r\nbody line\r\n",
)


def report(action: str = "failed") -> RecipientReport:
    return RecipientReport(
        "bob@example.net",
        "bob@example.net",
        action,
        "5.1.1",
        "mx.example.net",
        "550 5.1.1 no such user",
        1_700_000_100_000,
    )


def parts(raw: bytes) -> list[Message]:
    msg = email.message_from_bytes(raw)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    return [p for p in msg.walk() if not p.is_multipart()]


def test_failure_dsn_structure() -> None:
    raw = build_dsn(
        reporting_mta="mxg.example.org",
        postmaster="postmaster@example.org",
        original=ORIGINAL,
        reports=[report()],
        full_message_limit=10**6,
    )
    assert b"\n" not in raw.replace(b"\r\n", b"")
    msg = email.message_from_bytes(raw)
    assert msg["To"] == "<alice@example.org>"
    assert msg["Auto-Submitted"] == "auto-replied"
    text, status, returned = parts(raw)[0], raw.split(b"message/delivery-status")[1], parts(raw)
    assert "bob@example.net" in text.get_payload()
    for line in (
        b"Reporting-MTA: dns; mxg.example.org",
        b"Original-Envelope-Id: env-1",
        b"Final-Recipient: rfc822; bob@example.net",
        b"Original-Recipient: rfc822; bob@example.net",
        b"Action: failed",
        b"Status: 5.1.1",
        b"Remote-MTA: dns; mx.example.net",
        b"Diagnostic-Code: smtp; 550 5.1.1 no such user",
    ):
        assert line in status
    assert b"message/rfc822" in raw and b"body line" in raw
    assert returned


def test_ret_hdrs_and_size_limit_return_headers_only() -> None:
    hdrs = Original(*ORIGINAL.__dict__.values())
    object.__setattr__(hdrs, "ret", "HDRS")
    for original, limit in ((hdrs, 10**6), (ORIGINAL, 10)):
        raw = build_dsn(
            reporting_mta="m",
            postmaster="p@m",
            original=original,
            reports=[report()],
            full_message_limit=limit,
        )
        assert b"text/rfc822-headers" in raw
        assert b"Subject: hello" in raw
        assert b"body line" not in raw


def test_delay_dsn_says_it_is_still_retried() -> None:
    raw = build_dsn(
        reporting_mta="m",
        postmaster="p@m",
        original=ORIGINAL,
        reports=[report("delayed")],
        full_message_limit=10**6,
        retry_until_ms=1_700_400_000_000,
    )
    assert b"Delayed Mail" in raw
    assert b"Action: delayed" in raw
    assert b"Will-Retry-Until:" in raw


def test_security_failures_are_explained_in_english_and_german() -> None:
    sec = RecipientReport(
        "bob@example.net",
        None,
        "failed",
        "4.4.7",
        "",
        "message expired after 5 days in the queue; last error: "
        "mx.example.net[192.0.2.1]: DANE authentication failed: "
        "tlsa-invalid: no TLSA record matched",
        None,
        reason="tlsa-invalid",
    )
    raw = _dsn([sec])
    assert b"never sends such mail unprotected" in raw
    assert b"Warum: Der empfangende Mailserver" in raw
    plain = _dsn([report()])
    assert b"Warum" not in plain
    # The explanation follows the typed reason, never words in the text.
    mentions = RecipientReport(
        "bob@example.net", None, "failed", "5.1.1", "", "550 5.1.1 no TLS user here", None
    )
    raw = _dsn([mentions])
    assert b"Warum" not in raw


def _dsn(reports: list[RecipientReport]) -> bytes:
    return build_dsn(
        reporting_mta="m",
        postmaster="p@m",
        original=ORIGINAL,
        reports=reports,
        full_message_limit=10**6,
    )
