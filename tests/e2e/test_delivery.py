"""End to end: swaks sends into mxg, mxg finds receiving servers by real
MX lookups and delivers; 4xx is retried, 5xx is bounced with a DSN."""

from __future__ import annotations

import email
import shutil
import smtplib
import subprocess
import time
from collections.abc import Callable

import pytest

from tests.support.mxgproc import MxgProcess
from tests.support.sinks import Sink

pytestmark = pytest.mark.e2e


def wait_for(cond: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def swaks(
    port: int, sender: str, rcpts: list[str], body: str = "hello", extra: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("swaks")
    if exe is None:
        pytest.skip("swaks is not installed")
    return subprocess.run(
        [
            exe,
            "--server",
            f"127.0.0.1:{port}",
            "--from",
            sender,
            "--to",
            ",".join(rcpts),
            "--body",
            body,
            "--helo",
            "internal.test",
            *(extra or []),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_ten_recipients_three_domains_retry_and_dsn(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    slow_ok = {"value": False}
    sinks["slow"].rcpt_policy = lambda r: None if slow_ok["value"] else "451 4.3.2 try later"
    sinks["bad"].rcpt_policy = lambda r: (
        "550 5.1.1 no such user" if r.startswith("nobody@") else None
    )
    mxg = make_mxg()
    good = [f"g{i}@good.test" for i in range(4)]
    slow = [f"s{i}@slow.test" for i in range(3)]
    bad = ["b0@bad.test", "b1@bad.test", "nobody@bad.test"]
    result = swaks(
        mxg.port,
        "alice@sender.test",
        good + slow + bad,
        extra=["--header", "Message-Id: <ten@internal.test>"],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 Ok: queued as" in result.stdout

    delivered = lambda: sinks["good1"].recipients() + sinks["good2"].recipients()  # noqa: E731
    wait_for(lambda: sorted(delivered()) == sorted(good), what="good.test delivery")
    wait_for(
        lambda: sorted(sinks["bad"].recipients()) == ["b0@bad.test", "b1@bad.test"],
        what="bad.test delivery",
    )
    # The DSN for the 5xx recipient reaches the sender's domain.
    wait_for(lambda: len(sinks["sender"].messages) == 1, what="DSN")
    dsn = sinks["sender"].messages[0]
    assert dsn.mail_from in ("", "<>")  # the null reverse path
    assert dsn.rcpt_tos == ["alice@sender.test"]
    msg = email.message_from_bytes(dsn.data)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    status = next(p for p in msg.walk() if p.get_content_type() == "message/delivery-status")
    text = status.as_string()
    assert "Final-Recipient: rfc822; nobody@bad.test" in text
    assert "Action: failed" in text
    assert "Status: 5.1.1" in text
    assert "Diagnostic-Code: smtp; 550 5.1.1 no such user" in text
    assert "Reporting-MTA: dns; mxg.test" in text
    assert "b0@bad.test" not in text and "s0@slow.test" not in text
    # The slow domain was refused, is retried, and gets it once it recovers.
    wait_for(lambda: len(sinks["slow"].rcpt_attempts) >= 6, what="slow.test retries")
    assert sinks["slow"].messages == []
    slow_ok["value"] = True
    wait_for(lambda: sorted(sinks["slow"].recipients()) == sorted(slow), what="slow.test delivery")
    # Exactly once everywhere.
    all_rcpts = [r for s in sinks.values() for r in s.recipients()]
    assert sorted(all_rcpts) == sorted(
        [*good, *slow, "b0@bad.test", "b1@bad.test", "alice@sender.test"]
    )
    # Every recipient has a final state, so the spool is empty again.
    wait_for(
        lambda: not list((mxg.workdir / "data" / "spool" / "queue").iterdir()), what="empty spool"
    )
    log = mxg.log_text()
    assert "status=sent" in log and "message_id=<ten@internal.test>" in log
    assert "status=bounced" in log and "status=deferred" in log


def test_messages_beyond_max_jobs_go_as_jobs_finish_not_at_the_next_scan(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    # One delivery at a time and no scan for a minute: every message after
    # the first waits for room and must start when the one before finishes.
    def slowly(_rcpt: str) -> None:
        time.sleep(0.3)  # each delivery outlasts the next message's intake

    sinks["good1"].rcpt_policy = sinks["good2"].rcpt_policy = slowly
    mxg = make_mxg(env={"MXG_DELIVERY__MAX_JOBS": "1", "MXG_QUEUE__SCAN_INTERVAL": '"60s"'})
    rcpts = [f"w{i}@good.test" for i in range(6)]
    with smtplib.SMTP("127.0.0.1", mxg.port, local_hostname="internal.test") as client:
        for r in rcpts:
            client.sendmail("alice@sender.test", [r], f"Subject: {r}\r\n\r\nhello\r\n")
    delivered = lambda: sinks["good1"].recipients() + sinks["good2"].recipients()  # noqa: E731
    wait_for(lambda: sorted(delivered()) == rcpts, timeout=20, what="all six delivered")
    wait_for(
        lambda: not list((mxg.workdir / "data" / "spool" / "queue").iterdir()), what="empty spool"
    )


def test_null_mx_bounces_and_implicit_mx_and_cname_deliver(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    mxg = make_mxg()
    r = swaks(mxg.port, "alice@sender.test", ["x@nullmx.test", "y@implicit.test", "z@alias.test"])
    assert r.returncode == 0, r.stdout
    wait_for(lambda: sinks["implicit"].recipients() == ["y@implicit.test"], what="implicit MX")
    wait_for(lambda: sinks["good1"].recipients() == ["z@alias.test"], what="CNAME MX")
    wait_for(lambda: len(sinks["sender"].messages) == 1, what="null MX DSN")
    text = sinks["sender"].messages[0].data.decode()
    assert "x@nullmx.test" in text and "Status: 5.1.10" in text
    assert "null MX" in text


def test_ipv6_address_after_a_refused_ipv4_one(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    mxg = make_mxg()
    r = swaks(mxg.port, "alice@sender.test", ["six@v6.test"])
    assert r.returncode == 0, r.stdout
    wait_for(lambda: sinks["v6"].recipients() == ["six@v6.test"], what="delivery over IPv6")
    assert sinks["v6"].messages[0].peer == "::1"
    # The server has the message before the relay logs its reply (on
    # PostgreSQL, before the result is stored, which the line follows).
    wait_for(lambda: "relay=mx.v6.test[::1]" in mxg.log_text(), what="the delivery line")
    log = mxg.log_text()
    assert "127.0.0.29" in log  # the refused IPv4 attempt is logged
