"""The envelope as the inbound server reads it: relayed exactly or refused
(ARCHITECTURE.md rule 12a), and numbers refused rather than wrapped (rule
12). The inputs are the ones of issue 14, items 3 and 5."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.engine_fixtures import Running
from tests.support.smtp import RawSmtp

Start = Callable[..., Running]


def transaction(r: Running, mail: bytes = b"MAIL FROM:<a@internal.test>") -> RawSmtp:
    c = RawSmtp(r.port)
    assert c.reply().startswith("220")
    c.cmd("EHLO internal.test")
    c.send(mail + b"\r\n")
    assert c.reply().startswith("250 2.1.0")
    return c


def raw(c: RawSmtp, line: bytes) -> str:
    c.send(line + b"\r\n")
    return c.reply()


def test_rule12a_a_quoted_local_part_is_one_address_not_a_parameter(start_engine: Start) -> None:
    r = start_engine()
    c = transaction(r, b'MAIL FROM:<"quoted user"@internal.test>')
    assert raw(c, b'RCPT TO:<"victim@other.example> NOTIFY=SUCCESS"@evil.test>').startswith(
        "250 2.1.5"
    )
    c.cmd("DATA")
    assert c.cmd("Subject: q\r\n\r\nx\r\n.").startswith("250 2.0.0")
    env = r.wait_events("received")[0]["envelope"]
    # mxg's form, quoting undone; the outbound writer quotes it again.
    assert env["sender"] == "quoted user@internal.test"
    assert env["recipients"] == [{"address": "victim@other.example> NOTIFY=SUCCESS@evil.test"}]


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b'MAIL FROM:<"a\x00b> RET=FULL ENVID=zz"@internal.test>', "501 5.1.7"),
        (b"MAIL FROM:<a\x00b@internal.test>", "501 5.1.7"),
        (b"MAIL FROM:<a@internal.test> ENVID=a+0D+0AMAIL", "501 5.5.4"),
        (b"MAIL FROM:<a@internal.test> ENVID=a+0d", "501 5.5.4"),
        (b"MAIL FROM:<a@internal.test> RET=FULL,HDRS", "501 5.5.4"),
        (b"MAIL FROM:<a@internal.test> BODY=BINARYMIME", "501 5.5.4"),
        (b"MAIL FROM:<a@internal.test> AUTH=<>", "555 5.5.4"),
        (b"MAIL FROM:<\xff@internal.test> SMTPUTF8", "553 5.6.7"),
        (b"MAIL FROM:<j\xc3\xb6rg@internal.test>", "553 5.6.7"),
    ],
    ids=[
        "nul-in-quotes",
        "nul-unquoted",
        "envid-crlf",
        "envid-lower-hex",
        "ret",
        "body",
        "unsupported",
        "invalid-utf8",
        "8bit-without-smtputf8",
    ],
)
def test_rule12a_unsafe_senders_and_parameters_are_refused(
    start_engine: Start, line: bytes, reply: str
) -> None:
    r = start_engine()
    c = RawSmtp(r.port)
    c.reply()
    c.cmd("EHLO internal.test")
    got = raw(c, line)
    assert got.startswith(reply), got
    assert "\x00" not in got
    assert c.cmd("NOOP").startswith("250")  # still in step


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b'RCPT TO:<"a\rb"@example.net>', "501 5.1.3"),
        (b'RCPT TO:<"a\\\rb"@example.net>', "501 5.1.3"),
        (b'RCPT TO:<"a\tb"@example.net>', "501 5.1.3"),
        (b"RCPT TO:<a@example.net\x00>", "501 5.1.3"),
        (b"RCPT TO:<a<b@example.net>", "501 5.1.3"),
        (b"RCPT TO:<a@example.net> NOTIFY=SUCCESS,NEVER", "501 5.5.4"),
        (b"RCPT TO:<a@example.net> NOTIFY=ALWAYS", "501 5.5.4"),
        (b"RCPT TO:<a@example.net> ORCPT=rfc822;a+0Ab", "501 5.5.4"),
        (b"RCPT TO:<a@example.net> ORCPT=x400;a", "501 5.5.4"),
        (b"RCPT TO:<j\xf6rg@example.net>", "553 5.6.7"),
    ],
    ids=[
        "cr-in-quotes",
        "quoted-cr",
        "tab-in-quotes",
        "nul-in-domain",
        "angle-unquoted",
        "notify-never-and",
        "notify-word",
        "orcpt-lf",
        "orcpt-type",
        "latin1",
    ],
)
def test_rule12a_unsafe_recipients_and_parameters_are_refused(
    start_engine: Start, line: bytes, reply: str
) -> None:
    r = start_engine()
    c = transaction(r, b"MAIL FROM:<a@internal.test> SMTPUTF8")
    got = raw(c, line)
    assert got.startswith(reply), got
    # Invalid UTF-8 is refused even under SMTPUTF8: never U+FFFD, which
    # would be mail for a different address.
    assert "\ufffd" not in got
    assert raw(c, b"RCPT TO:<ok@example.net>").startswith("250")
    c.cmd("DATA")
    assert c.cmd("Subject: x\r\n\r\nx\r\n.").startswith("250")
    env = r.wait_events("received")[0]["envelope"]
    assert [x["address"] for x in env["recipients"]] == ["ok@example.net"]


def test_rule12_a_bdat_size_that_does_not_fit_is_refused_and_the_session_ends(
    start_engine: Start,
) -> None:
    r = start_engine()
    c = transaction(r)
    assert c.cmd("RCPT TO:<b@example.net>").startswith("250")
    # smtp-proto 0.2.5 read this as BDAT 999 LAST: the next 999 bytes,
    # meant as commands, became a message.
    commands = b"RSET\r\nMAIL FROM:<evil@internal.test>\r\nRCPT TO:<victim@example.net>\r\n"
    c.send(b"BDAT 99999999999999999999999 LAST\r\n" + (commands + b"NOOP\r\n" * 200)[:999])
    assert c.reply().startswith("552 5.3.4")
    assert c.reply().startswith("421 4.7.0")
    assert c.closed()
    assert r.received() == []


@pytest.mark.parametrize("size", [b"12x", b"-1", b"", b"0x10"])
def test_rule12_a_bdat_size_that_is_no_number_ends_the_session(
    start_engine: Start, size: bytes
) -> None:
    r = start_engine()
    c = transaction(r)
    c.cmd("RCPT TO:<b@example.net>")
    c.send(b"BDAT " + size + b" LAST\r\nNOOP\r\n")
    assert c.reply().startswith("501 5.5.4")
    assert c.reply().startswith("421 4.7.0")
    assert c.closed()


def test_rule12_size_that_does_not_fit_is_refused_not_wrapped(start_engine: Start) -> None:
    r = start_engine(limits={"max_message_size": 2000})
    c = RawSmtp(r.port)
    c.reply()
    c.cmd("EHLO internal.test")
    assert c.cmd("MAIL FROM:<a@internal.test> SIZE=99999999999999999999999").startswith("552 5.3.4")
    assert c.cmd("MAIL FROM:<a@internal.test> SIZE=18446744073709551615").startswith("552 5.3.4")
    assert c.cmd("MAIL FROM:<a@internal.test> SIZE=2001").startswith("552 5.3.4")
    assert c.cmd("MAIL FROM:<a@internal.test> SIZE=20k").startswith("501 5.5.4")
    assert c.cmd("MAIL FROM:<a@internal.test> SIZE=2000").startswith("250")


def test_rule12_a_bdat_chunk_over_the_limit_is_read_past_and_refused(
    start_engine: Start,
) -> None:
    r = start_engine(limits={"max_message_size": 2000})
    c = transaction(r)
    c.cmd("RCPT TO:<b@example.net>")
    chunk = (b"MAIL FROM:<evil@internal.test>\r\n" * 200)[:5000]
    c.send(b"BDAT 5000 LAST\r\n" + chunk)
    assert c.reply().startswith("552 5.3.4")
    # In step: the chunk's bytes were not taken for commands.
    assert c.cmd("NOOP").startswith("250 2.0.0")
    assert c.cmd("RCPT TO:<b@example.net>").startswith("503")
    assert r.received() == []
