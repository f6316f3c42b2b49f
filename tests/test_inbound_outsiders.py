"""Outsiders cannot starve insiders (ARCHITECTURE.md rule 7, issue 14
item 7): clients outside client_networks never hold the connection slots
the internal mail server needs. Before, five addresses at 200 connections
each filled all 1,000 and the internal server got 421."""

from __future__ import annotations

import resource
import socket
import statistics
import time
from collections.abc import Callable, Iterator

import pytest

from tests.engine_fixtures import Running
from tests.support.smtp import RawSmtp

Start = Callable[..., Running]

# The test config's client_networks is 127.0.0.1/32: these are outsiders.
OUTSIDERS = [f"127.0.0.{i}" for i in range(2, 7)]
PER_OUTSIDER = 200  # the default max_connections_per_client
INSIDER_MESSAGES = 30


@pytest.fixture
def open_files() -> Iterator[None]:
    # 1,000 client sockets and up to 1,000 server sockets in this process.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2600:
        pytest.skip(f"needs 2600 open files, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def insider_sends(r: Running, n: int) -> list[str]:
    """Sends one message from 127.0.0.1; returns every reply that was not
    the one a working session gives."""
    refusals = []
    c = RawSmtp(r.port, timeout=20)
    try:
        expected = [
            (None, "220"),
            ("EHLO internal.test", "250"),
            ("MAIL FROM:<a@internal.test>", "250"),
            (f"RCPT TO:<r{n}@example.net>", "250"),
            ("DATA", "354"),
            (f"Subject: {n}\r\n\r\nx\r\n.", "250"),
            ("QUIT", "221"),
        ]
        for line, code in expected:
            reply = c.reply() if line is None else c.cmd(line)
            if not reply.startswith(code):
                refusals.append(reply)
                break
    except (ConnectionError, OSError) as e:
        refusals.append(repr(e))
    finally:
        c.close()
    return refusals


def first_reply(s: socket.socket) -> str:
    """The reply code the server greeted a connection with."""
    try:
        return s.recv(512)[:3].decode() or "closed"
    except OSError:
        return "reset"


@pytest.mark.parametrize("policy", ["refuse", "allow"])
@pytest.mark.usefixtures("open_files")
def test_rule7_a_thousand_outsider_connections_do_not_starve_the_internal_server(
    start_engine: Start, policy: str
) -> None:
    r = start_engine(outsiders=policy)
    outsiders: list[socket.socket] = []
    greetings: dict[str, int] = {}
    refusals: list[str] = []
    # Seconds per insider message (connect to QUIT) while the flood holds.
    took: list[float] = []
    sent = 0
    try:
        # Outsiders connect in rounds of 200 per address and hold their
        # connections open. Each round is greeted (so admitted or refused)
        # before the internal server sends again: before the fix the fifth
        # round took the last of the 1,000 slots.
        for addr in OUTSIDERS:
            round_ = []
            for _ in range(PER_OUTSIDER):
                s = socket.socket()
                s.bind((addr, 0))
                s.settimeout(10)
                s.connect(("127.0.0.1", r.port))
                round_.append(s)
            outsiders += round_
            for s in round_:
                code = first_reply(s)
                greetings[code] = greetings.get(code, 0) + 1
            for _ in range(3):
                started = time.monotonic()
                refusals += insider_sends(r, sent)
                took.append(time.monotonic() - started)
                sent += 1
        while sent < INSIDER_MESSAGES:
            started = time.monotonic()
            refusals += insider_sends(r, sent)
            took.append(time.monotonic() - started)
            sent += 1
    finally:
        for s in outsiders:
            s.close()
    print(f"outsiders={policy}: {len(outsiders)} outsider connections, greeted {greetings}")
    print(f"insider: {sent} messages, {len(refusals)} refusals {refusals[:3]}")
    print(
        f"insider latency during the flood: median {statistics.median(took) * 1000:.1f} ms,"
        f" max {max(took) * 1000:.1f} ms"
    )
    assert len(outsiders) == 1000
    assert refusals == []
    assert len(r.wait_events("received", INSIDER_MESSAGES, timeout=30)) >= INSIDER_MESSAGES
    if policy == "refuse":
        assert greetings == {"554": 1000}
    else:
        # Their own 50 slots (max_outsider_connections), none of the 1,000.
        assert greetings == {"220": 50, "421": 950}
