"""The daemon's lifecycle, run as an operator would run mxg: SIGHUP
reloads the configuration under load without failing a session or losing
a message, a bad configuration is refused and the running one stays, keys
only a restart can change are named, SIGUSR1 and SIGHUP reopen a rotated
log file, and start-up refusals are one line with their exit status."""

from __future__ import annotations

import signal
import smtplib
import socket
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mxg.cli.exits import ERROR
from tests.e2e.test_delivery import wait_for
from tests.support.dns import free_port
from tests.support.mxgproc import MxgProcess
from tests.support.sinks import Sink

pytestmark = pytest.mark.e2e

SIZE = 10_000_000
SENDERS = 4
RELOADS = 6


def _limits(size: int) -> str:
    return f"[limits]\nmax_message_size = {size}\n"


def _rewrite(mxg: MxgProcess, old: str, new: str) -> None:
    text = mxg.config_path.read_text()
    assert old in text
    mxg.config_path.write_text(text.replace(old, new, 1))


def _hup(mxg: MxgProcess, sig: int = signal.SIGHUP) -> None:
    assert mxg.proc is not None
    mxg.proc.send_signal(sig)


def _ehlo_size(port: int) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
        c.ehlo("internal.test")
        return int(c.esmtp_features["size"])


def _send(port: int, mid: str, rcpt: str = "u@good.test") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
        c.sendmail("ops@internal.test", [rcpt], f"Message-ID: {mid}\r\n\r\nhello\r\n")


def _delivered(sinks: dict[str, Sink]) -> set[str]:
    return {m.message_id for s in (sinks["good1"], sinks["good2"]) for m in list(s.messages)}


def _log_lines(mxg: MxgProcess, text: str) -> list[str]:
    return [line for line in mxg.log_text().splitlines() if text in line]


def test_sighup_reloads_under_load_without_a_failed_session_or_a_lost_message(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    """Senders keep sending, half over one connection each, half over a
    new connection per message, while the configuration is changed and
    reloaded six times: no SMTP error, every message delivered, and new
    sessions see the new limit (the SIZE they are offered)."""
    mxg = make_mxg(extra=_limits(SIZE))
    assert _ehlo_size(mxg.port) == SIZE
    sent: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def sender(n: int, reuse: bool) -> None:
        conn: smtplib.SMTP | None = None
        i = 0
        while not stop.is_set():
            mid = f"<reload-{n}-{i}@internal.test>"
            i += 1
            try:
                if conn is None:
                    conn = smtplib.SMTP("127.0.0.1", mxg.port, timeout=30)
                conn.sendmail(
                    "load@internal.test", [f"u{i % 3}@good.test"], f"Message-ID: {mid}\r\n\r\nx\r\n"
                )
                sent.append(mid)
                if not reuse:
                    conn.quit()
                    conn = None
            except (smtplib.SMTPException, OSError) as e:
                failures.append(f"{mid}: {e!r}")
                conn = None
        if conn is not None:
            conn.quit()

    threads = [threading.Thread(target=sender, args=(n, n % 2 == 0)) for n in range(SENDERS)]
    for t in threads:
        t.start()
    try:
        for k in range(1, RELOADS + 1):
            time.sleep(0.4)
            _rewrite(mxg, _limits(SIZE + k - 1), _limits(SIZE + k))
            _hup(mxg)
            wait_for(
                lambda k=k: len(_log_lines(mxg, "configuration reloaded")) == k,
                what=f"reload {k}",
            )
        time.sleep(0.4)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert failures == []
    assert len(sent) > 50
    assert _ehlo_size(mxg.port) == SIZE + RELOADS
    wait_for(lambda: set(sent) <= _delivered(sinks), timeout=120, what="every message delivered")
    assert mxg.proc is not None and mxg.proc.poll() is None
    assert _log_lines(mxg, "reload refused") == []
    assert _log_lines(mxg, "needs a restart") == []


def test_a_bad_reload_is_refused_and_the_running_configuration_stays(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    mxg = make_mxg(extra=_limits(SIZE))
    good = mxg.config_path.read_text()

    # Invalid values: refused whole, one line naming every problem.
    _rewrite(mxg, _limits(SIZE), "[limits]\nmax_message_size = 5\nmax_recipients = 5\n")
    _hup(mxg)
    wait_for(lambda: len(_log_lines(mxg, "reload refused")) == 1, what="the refusal")
    (line,) = _log_lines(mxg, "reload refused")
    assert "limits.max_message_size" in line and "limits.max_recipients" in line
    assert str(mxg.config_path) in line
    assert _ehlo_size(mxg.port) == SIZE
    _send(mxg.port, "<after-bad@internal.test>")

    # Valid TOML the engine cannot apply (no such certificate): refused.
    mxg.config_path.write_text(
        good.replace(_limits(SIZE), _limits(SIZE + 1)).replace(
            "[server]\n", '[server]\ntls_cert = "gone.pem"\ntls_key = "gone.key"\n', 1
        )
    )
    _hup(mxg)
    wait_for(lambda: len(_log_lines(mxg, "reload refused")) == 2, what="the second refusal")
    assert "gone.pem" in _log_lines(mxg, "reload refused")[1]
    assert _ehlo_size(mxg.port) == SIZE

    # A key only a restart can change: named, kept, the rest applied.
    other = free_port()
    mxg.config_path.write_text(
        good.replace(_limits(SIZE), _limits(SIZE + 2)).replace(
            f"127.0.0.1:{mxg.port}", f"127.0.0.1:{other}"
        )
    )
    _hup(mxg)
    wait_for(lambda: len(_log_lines(mxg, "configuration reloaded")) == 1, what="the reload")
    wait_for(lambda: len(_log_lines(mxg, "needs a restart: server.listen")) == 1, what="the note")
    assert _ehlo_size(mxg.port) == SIZE + 2
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", other), timeout=1),
    ):
        pass

    wait_for(lambda: "<after-bad@internal.test>" in _delivered(sinks), what="delivery")
    assert mxg.proc is not None and mxg.proc.poll() is None


def test_a_reloaded_domain_policy_applies_to_the_next_message(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    """Policies are reloaded: good.test (no STARTTLS) then needs qualified,
    so the next message to it is deferred, not delivered in plaintext."""
    mxg = make_mxg()
    _send(mxg.port, "<before@internal.test>")
    wait_for(lambda: "<before@internal.test>" in _delivered(sinks), what="the first delivery")
    with mxg.config_path.open("a") as f:
        f.write('\n[[policy]]\ndomain = "good.test"\nmin_level = "qualified"\n')
    _hup(mxg)
    wait_for(lambda: len(_log_lines(mxg, "configuration reloaded")) == 1, what="the reload")
    _send(mxg.port, "<after@internal.test>")
    wait_for(
        lambda: any("status=deferred" in line for line in _log_lines(mxg, "<after@internal.test>")),
        what="the deferral",
    )
    assert "<after@internal.test>" not in _delivered(sinks)


def test_sigusr1_and_sighup_reopen_a_rotated_log_file(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink], tmp_path: Path
) -> None:
    log_file = tmp_path / "logs" / "mxg.log"
    log_file.parent.mkdir()
    mxg = make_mxg(extra=f'file = "{log_file}"\n')
    wait_for(lambda: log_file.exists() and "listening" in log_file.read_text(), what="the log")
    for n, sig in enumerate((signal.SIGUSR1, signal.SIGHUP), start=1):
        rotated = log_file.with_name(f"mxg.log.{n}")
        log_file.rename(rotated)
        _hup(mxg, sig)
        wait_for(log_file.exists, what="the new log file")
        mid = f"<rotated-{n}@internal.test>"
        _send(mxg.port, mid)
        wait_for(lambda mid=mid: mid in log_file.read_text(), what="the line in the new file")
        assert mid not in rotated.read_text()
        assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
    assert mxg.proc is not None and mxg.proc.poll() is None


def test_a_taken_port_is_one_line_and_status_1(
    make_mxg: Callable[..., MxgProcess], tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        mxg = make_mxg(start=False)
        _rewrite(mxg, f"127.0.0.1:{mxg.port}", f"127.0.0.1:{port}")
        out = mxg.cli("run")
    assert out.returncode == ERROR
    assert out.stderr.splitlines() == [out.stderr.strip()], out.stderr
    assert out.stderr.startswith(f"mxg: cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in out.stderr
