"""Issue 14 item 6: a full disk under the data directory. The relay stays
up, refuses new mail with 452 4.3.1 while nothing can be stored, keeps
delivering what it has, keeps the results in memory until the store can
take them, and loses nothing. Run on a small tmpfs of its own."""

from __future__ import annotations

import os
import smtplib
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import fill_disk
from tests.e2e.test_delivery import wait_for
from tests.support.mxgproc import MxgProcess
from tests.support.sinks import Sink

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root"),
]

BEFORE = 40


def _send(port: int, i: int) -> tuple[int, bytes]:
    msg = f"Message-ID: <full-{i}@internal.test>\r\nSubject: {i}\r\n\r\n" + ("x" * 70 + "\r\n") * 30
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.sendmail("load@internal.test", [f"u{i}@slow.test"], msg)
        return 250, b""
    except smtplib.SMTPResponseException as e:
        return e.smtp_code, e.smtp_error
    except smtplib.SMTPRecipientsRefused as e:
        code, text = next(iter(e.recipients.values()))
        return code, text


def test_rule11_a_full_disk_refuses_new_mail_and_loses_nothing(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink], small_disk: Path
) -> None:
    held = {"on": True}
    sinks["slow"].rcpt_policy = lambda r: "451 4.3.2 later" if held["on"] else None
    mxg = make_mxg(start=False)
    mxg.config_path.write_text(
        mxg.config_path.read_text().replace(str(mxg.workdir / "data"), str(small_disk / "data"))
    )
    mxg.start()
    sent = [_send(mxg.port, i) for i in range(BEFORE)]
    acked = [i for i, (code, _) in enumerate(sent) if code == 250]
    assert len(acked) == BEFORE, sent[:3]
    wait_for(lambda: len(sinks["slow"].rcpt_attempts) >= BEFORE, what="first attempts")

    filler = fill_disk(small_disk)
    refused = [_send(mxg.port, 1000 + i) for i in range(5)]
    assert all(code in (451, 452) for code, _ in refused), refused
    assert any(code == 452 and b"4.3.1" in text for code, text in refused), refused
    # Deliveries go on while the disk is full; their results wait in memory.
    held["on"] = False
    wait_for(
        lambda: len({m.message_id for m in sinks["slow"].messages}) >= BEFORE,
        timeout=60,
        what="delivery while the disk is full",
    )
    time.sleep(2)
    assert mxg.proc is not None and mxg.proc.poll() is None, mxg.log_text()

    filler.unlink()
    freed = time.monotonic()
    code, _ = _send(mxg.port, 2000)
    assert code == 250
    wait_for(
        lambda: "<full-2000@internal.test>" in {m.message_id for m in sinks["slow"].messages},
        timeout=60,
        what="delivery after the disk freed up",
    )
    after_s = time.monotonic() - freed
    wait_for(
        lambda: _empty(mxg.cli("queue", "list", "--json")),
        timeout=60,
        what="an empty queue",
    )
    got = Counter(m.message_id for m in sinks["slow"].messages)
    duplicates = sum(n - 1 for n in got.values() if n > 1)
    print(f"full disk: {duplicates} duplicates, delivered {after_s:.1f} s after space returned")
    assert {f"<full-{i}@internal.test>" for i in acked} <= set(got)
    assert duplicates <= BEFORE
    assert mxg.proc is not None and mxg.proc.poll() is None


def _empty(listing: subprocess.CompletedProcess[str]) -> bool:
    """`queue list --json` answered, with no message (JSON lines: none)."""
    return listing.returncode == 0 and listing.stdout == ""
