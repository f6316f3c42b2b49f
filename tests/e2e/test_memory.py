"""ARCHITECTURE.md rule 12b: memory is bounded before a client is
authorised, and by a budget for all sessions together after. Measured on
the relay's own process (VmRSS), as an attacker or a large message would
drive it."""

from __future__ import annotations

import smtplib
import socket
import threading
import time
from collections.abc import Callable

import pytest

from tests.support.mxgproc import MxgProcess

pytestmark = pytest.mark.e2e

MB = 1 << 20


def rss(mxg: MxgProcess) -> int:
    assert mxg.proc is not None
    with open(f"/proc/{mxg.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class PeakRss:
    """Samples the relay's RSS every 10 ms while in use."""

    def __init__(self, mxg: MxgProcess) -> None:
        self.mxg, self.peak, self._stop = mxg, rss(mxg), threading.Event()
        self._t = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss(self.mxg))
            time.sleep(0.01)

    def __enter__(self) -> PeakRss:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def test_rule12b_bdat_before_mail_keeps_nothing_in_memory(
    make_mxg: Callable[..., MxgProcess],
) -> None:
    """Issue 14 item 4: a client that may not relay announced a 52 MB BDAT
    chunk with no MAIL or RCPT, and the chunk was kept (60 connections:
    169 MB to 3,049 MB RSS). Now it is read off the wire and dropped."""
    mxg = make_mxg(env={"MXG_SERVER__OUTSIDERS": '"allow"'})
    before = rss(mxg)
    conns = []
    chunk = b"x" * (64 * 1024)
    with PeakRss(mxg) as peak:
        for _ in range(40):
            # 127.0.0.2 is outside the test's client_networks.
            s = socket.create_connection(("127.0.0.1", mxg.port), source_address=("127.0.0.2", 0))
            s.recv(512)
            s.sendall(b"EHLO outside.test\r\nBDAT 52000000 LAST\r\n")
            for _ in range(64):  # 4 MB of the announced chunk each
                s.sendall(chunk)
            conns.append(s)
        time.sleep(0.5)
    growth = peak.peak - before
    for s in conns:
        s.close()
    print(f"BDAT before MAIL, 40 x 4 MB: RSS growth {growth / MB:.1f} MB")
    assert growth < 64 * MB


@pytest.mark.parametrize("verb", ["DATA", "BDAT"])
def test_rule12b_past_the_memory_budget_a_message_gets_452_and_the_session_goes_on(
    make_mxg: Callable[..., MxgProcess], verb: str
) -> None:
    mxg = make_mxg(env={"MXG_LIMITS__MAX_MESSAGE_MEMORY": str(MB)})
    big = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 2048  # 2 MB
    with smtplib.SMTP("127.0.0.1", mxg.port, timeout=30) as s:
        s.ehlo("internal.test")
        s.mail("a@internal.test")
        s.rcpt("b@good.test")
        if verb == "DATA":
            code, text = s.data(big)
        else:
            s.send(f"BDAT {len(big)} LAST\r\n".encode() + big)
            code, text = s.getreply()
        assert (code, text[:5]) == (452, b"4.3.1"), text
        # The session is in step: the next, small message is taken.
        s.rset()
        s.mail("a@internal.test")
        s.rcpt("b@good.test")
        assert s.data(b"Subject: small\r\n\r\nhi\r\n")[0] == 250


def test_rule12b_a_40_mb_message_is_held_about_once(
    make_mxg: Callable[..., MxgProcess],
) -> None:
    mxg = make_mxg()
    size = 40 * MB
    body = b"Subject: large\r\n\r\n" + (b"z" * 998 + b"\r\n") * (size // 1000)
    time.sleep(1)
    before = rss(mxg)
    with PeakRss(mxg) as peak, smtplib.SMTP("127.0.0.1", mxg.port, timeout=120) as s:
        s.ehlo("internal.test")
        s.mail("a@internal.test")
        s.rcpt("b@good.test")
        assert s.data(body)[0] == 250
        time.sleep(0.5)
    growth = peak.peak - before
    print(f"40 MB message: peak RSS growth {growth / MB:.1f} MB ({growth / len(body):.2f} x)")
    # Issue 14's target is 2x; measured 1.94-2.03x: the body once, plus
    # the text mail-parser decodes from it for the scanner. The margin
    # absorbs the allocator's growth steps under load.
    assert growth <= 2.25 * len(body)
