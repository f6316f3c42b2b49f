"""Admission to the content phase (`server.max_receiving`): at most that
many transactions read their content and wait for the durable commit at
once; the next one waits before its 354, but never longer than
`in_flow_delay`, so a stalled client cannot hold the others back."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.support.mxgproc import MxgProcess
from tests.support.smtp import RawSmtp

pytestmark = pytest.mark.e2e

BODY = b"Subject: admission\r\n\r\nhello\r\n.\r\n"


def to_data(port: int, n: int) -> RawSmtp:
    """A session with one recipient accepted, about to send DATA."""
    c = RawSmtp(port)
    assert c.reply().startswith("220")
    assert c.cmd("EHLO client.test").startswith("250")
    assert c.cmd("MAIL FROM:<a@client.test>").startswith("250")
    assert c.cmd(f"RCPT TO:<r{n}@nowhere.test>").startswith("250")
    return c


def no_reply_within(c: RawSmtp, seconds: float) -> bool:
    c.sock.settimeout(seconds)
    try:
        c.buf += c.sock.recv(512)
    except TimeoutError:
        return True
    finally:
        c.sock.settimeout(10)
    return False


def test_the_next_354_waits_until_a_place_is_given_back(
    make_mxg: Callable[..., MxgProcess],
) -> None:
    mxg = make_mxg(env={"MXG_SERVER__MAX_RECEIVING": "1", "MXG_SERVER__IN_FLOW_DELAY": '"20s"'})
    first, second = to_data(mxg.port, 1), to_data(mxg.port, 2)
    assert first.cmd("DATA").startswith("354")
    second.send(b"DATA\r\n")
    assert no_reply_within(second, 1.0), "354 while the only place is taken"
    first.send(BODY)
    assert first.reply().startswith("250")
    started = time.monotonic()
    assert second.reply().startswith("354")
    assert time.monotonic() - started < 5, "the place went to the waiting session"
    second.send(BODY)
    assert second.reply().startswith("250")
    for c in (first, second):
        c.close()


@pytest.mark.parametrize("verb", ["DATA", "BDAT"])
def test_a_stalled_client_holds_nobody_back_longer_than_in_flow_delay(
    make_mxg: Callable[..., MxgProcess], verb: str
) -> None:
    mxg = make_mxg(env={"MXG_SERVER__MAX_RECEIVING": "1", "MXG_SERVER__IN_FLOW_DELAY": '"1s"'})
    stalled, second = to_data(mxg.port, 1), to_data(mxg.port, 2)
    if verb == "DATA":
        # In the content phase, and then nothing more.
        assert stalled.cmd("DATA").startswith("354")
    else:
        # A first chunk, and no LAST.
        stalled.send(b"BDAT 8\r\nSubject:")
        assert stalled.reply().startswith("250")
    started = time.monotonic()
    assert second.cmd("DATA").startswith("354")
    waited = time.monotonic() - started
    assert 0.8 < waited < 5, f"went ahead after {waited:.2f} s, in_flow_delay is 1 s"
    second.send(BODY)
    assert second.reply().startswith("250")
    # The stalled client is still served when it goes on.
    if verb == "DATA":
        stalled.send(BODY)
    else:
        stalled.send(b"BDAT 10 LAST\r\n x\r\n\r\nok\r\n")
    assert stalled.reply().startswith("250")
    for c in (stalled, second):
        c.close()
