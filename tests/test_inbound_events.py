"""Issue 17 item 1: the inbound server logs what happens to its clients,
with the client's address (connect, relay denied, protocol error, TLS
failure, size refusal), one line per session and refusal, never one per
command; and counts sessions and refusals by reason for /metrics
(``Engine.stats``)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

from tests.engine_fixtures import Running
from tests.support.smtp import RawSmtp

Start = Callable[..., Running]


def logs(r: Running, message: str, count: int = 1) -> list[dict[str, str]]:
    """The fields of the log events with this message, once there are at
    least `count` of them."""
    deadline = time.monotonic() + 10
    while True:
        r.events += json.loads(r.engine.drain())
        found = [
            dict(e.get("fields", []))
            for e in r.events
            if e["type"] == "log" and e["message"] == message
        ]
        if len(found) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert len(found) >= count, f"expected {count} {message!r} lines, have {r.events}"
    return found


def stat(r: Running, name: str) -> int:
    return r.engine.stats()[name]


def wait_stat(r: Running, name: str, value: int) -> None:
    deadline = time.monotonic() + 10
    while stat(r, name) != value and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stat(r, name) == value, (name, r.engine.stats())


def test_a_session_logs_one_connect_line_and_nothing_per_command(start_engine: Start) -> None:
    r = start_engine()
    c = RawSmtp(r.port)
    assert c.reply().startswith("220")
    local_port = c.sock.getsockname()[1]
    c.cmd("EHLO internal.test")
    for _ in range(3):
        assert c.cmd("MAIL FROM:<a@internal.test>").startswith("250")
        assert c.cmd("RCPT TO:<b@example.net>").startswith("250")
        assert c.cmd("DATA").startswith("354")
        assert c.cmd("Subject: x\r\n\r\nhi\r\n.").startswith("250")
    assert c.cmd("QUIT").startswith("221")
    r.wait_events("received", 3)
    wait_stat(r, "inbound_sessions_open", 0)
    r.events += json.loads(r.engine.drain())
    lines = [e for e in r.events if e["type"] == "log"]
    assert [e["message"] for e in lines] == ["inbound connect"]
    assert dict(lines[0]["fields"]) == {
        "client": "127.0.0.1",
        "port": str(local_port),
        "relay": "allowed",
    }
    assert stat(r, "inbound_sessions") == 1
    assert all(v == 0 for k, v in r.engine.stats().items() if k.startswith("inbound_refused:"))


def test_an_outsider_refused_at_the_greeting_is_logged_and_counted(start_engine: Start) -> None:
    r = start_engine()
    outsider = RawSmtp(r.port, source="127.0.0.2")
    assert outsider.reply().startswith("554 5.7.1")
    [line] = logs(r, "inbound refused")
    assert line["client"] == "127.0.0.2"
    assert line["reason"] == "outsider"
    assert line["reply"].startswith("554 5.7.1 mxg.test Access denied: client 127.0.0.2")
    assert stat(r, "inbound_refused:outsider") == 1
    # Refused before a session: no connect line, no session counted.
    assert stat(r, "inbound_sessions") == 0


def test_relay_denied_is_logged_with_the_client_address(start_engine: Start) -> None:
    r = start_engine(client_networks=["192.0.2.0/24"], outsiders="allow")
    c = RawSmtp(r.port)
    c.reply()
    c.cmd("EHLO outside.test")
    c.cmd("MAIL FROM:<a@outside.test>")
    assert c.cmd("RCPT TO:<victim@example.net>").startswith("554 5.7.1")
    [connect] = logs(r, "inbound connect")
    assert (connect["client"], connect["relay"]) == ("127.0.0.1", "denied")
    [line] = logs(r, "inbound refused")
    assert (line["client"], line["reason"]) == ("127.0.0.1", "relay-denied")
    assert "<victim@example.net>: Relay access denied" in line["reply"]
    assert stat(r, "inbound_refused:relay-denied") == 1


def test_protocol_errors_are_logged_each_with_the_reply(start_engine: Start) -> None:
    r = start_engine()
    c = RawSmtp(r.port)
    c.reply()
    unknown = c.cmd("FOO bar")
    assert unknown.startswith("50"), unknown
    assert c.cmd("RCPT TO:<b@example.net>").startswith("503")
    first, second = logs(r, "inbound refused", 2)
    assert (first["client"], first["reason"]) == ("127.0.0.1", "protocol-error")
    assert first["reply"] == unknown
    assert second["reply"] == "503 5.5.1 Need MAIL before RCPT"
    assert stat(r, "inbound_refused:protocol-error") == 2


def test_size_refusals_at_mail_and_after_data_are_logged(start_engine: Start) -> None:
    r = start_engine(limits={"max_message_size": 2048})
    c = RawSmtp(r.port)
    big = "Subject: big\r\n\r\n" + ("x" * 70 + "\r\n") * 100
    replies = [
        c.reply(),
        c.cmd("EHLO internal.test"),
        c.cmd("MAIL FROM:<a@internal.test> SIZE=100000"),  # announced too big
        c.cmd("MAIL FROM:<a@internal.test>"),
        c.cmd("RCPT TO:<b@example.net>"),
        c.cmd("DATA"),
        c.cmd(big + "."),  # found too big
    ]
    assert [x[:3] for x in replies] == ["220", "250", "552", "250", "250", "354", "552"]
    at_mail, after_data = logs(r, "inbound refused", 2)
    for line in (at_mail, after_data):
        assert (line["client"], line["reason"]) == ("127.0.0.1", "size")
        assert line["reply"] == "552 5.3.4 Message size exceeds the limit of 2048 octets"
    assert stat(r, "inbound_refused:size") == 2
    assert r.received() == []


def test_a_failed_starttls_handshake_is_logged_with_the_error(start_engine: Start) -> None:
    r = start_engine()
    c = RawSmtp(r.port)
    c.reply()
    c.cmd("EHLO internal.test")
    assert c.cmd("STARTTLS").startswith("220")
    # Not a TLS ClientHello: the handshake fails.
    c.send(b"GET / HTTP/1.0\r\n\r\n" + b"\x00" * 64)
    [line] = logs(r, "inbound refused")
    assert (line["client"], line["reason"]) == ("127.0.0.1", "tls-failure")
    assert line["error"]
    assert "reply" not in line
    assert stat(r, "inbound_refused:tls-failure") == 1
    # The server closes, after a TLS alert.
    c.sock.settimeout(5)
    while c.sock.recv(4096):
        pass


def test_sessions_open_counts_down_when_clients_leave(start_engine: Start) -> None:
    r = start_engine()
    clients: list[Any] = []
    for _ in range(3):
        c = RawSmtp(r.port)
        c.reply()
        clients.append(c)
    wait_stat(r, "inbound_sessions_open", 3)
    for c in clients:
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
    wait_stat(r, "inbound_sessions_open", 0)
    assert stat(r, "inbound_sessions") == 3
    assert len(logs(r, "inbound connect", 3)) == 3
