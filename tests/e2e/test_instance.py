"""ARCHITECTURE.md rule 11a (the instance lock) and rule 8a (no symlink
followed in the data directory), run as an operator would run mxg."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import smtplib
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import mxg_config
from tests.e2e.test_delivery import wait_for
from tests.support.dns import UnboundServer
from tests.support.mxgproc import MxgProcess
from tests.support.sinks import Sink

pytestmark = pytest.mark.e2e

TOTAL = 1500
SENDERS = 6
SECOND_STARTS = 12


def _body_hash(data: bytes) -> str:
    body = data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]
    return hashlib.sha256(body).hexdigest()


def _second_instance(mxg: MxgProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mxg", "-c", str(mxg.config_path), "run", "--backend", "asyncio"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=mxg.workdir,
        check=False,
    )


def test_rule11a_a_second_instance_exits_naming_the_holder_and_loses_nothing(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    """A second ``mxg run`` on the same data directory, started again and
    again while the first takes load, exits with one line naming the
    first's PID; every acknowledged message arrives with its content."""
    mxg = make_mxg()
    assert mxg.proc is not None
    holder = mxg.proc.pid
    sent: dict[str, str] = {}
    lock = threading.Lock()
    next_index = iter(range(TOTAL))

    def sender() -> None:
        conn = smtplib.SMTP("127.0.0.1", mxg.port, timeout=30)
        for i in next_index:
            mid = f"<lock-{i}@internal.test>"
            body = f"message {i} " + os.urandom(400).hex() + "\r\n"
            msg = f"Message-ID: {mid}\r\nSubject: lock test {i}\r\n\r\n{body}"
            conn.sendmail("load@internal.test", [f"u{i % 5}@good.test"], msg)
            with lock:
                sent[mid] = _body_hash(msg.encode())
        conn.quit()

    threads = [threading.Thread(target=sender) for _ in range(SENDERS)]
    for t in threads:
        t.start()
    refusals = []
    for _ in range(SECOND_STARTS):
        started = time.monotonic()
        second = _second_instance(mxg)
        refusals.append((second, time.monotonic() - started))
    for t in threads:
        t.join(300)
    assert len(sent) == TOTAL

    for second, _took in refusals:
        assert second.returncode == 75, second.stderr  # EX_TEMPFAIL
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert f"pid {holder}" in lines[0] and "not starting" in lines[0]

    def delivered() -> dict[str, list[str]]:
        got: dict[str, list[str]] = {}
        for s in (sinks["good1"], sinks["good2"]):
            for m in list(s.messages):
                got.setdefault(m.message_id, []).append(_body_hash(m.data))
        return got

    wait_for(lambda: set(sent) <= set(delivered()), timeout=180, what="all delivered")
    got = delivered()
    altered = [mid for mid, h in sent.items() if any(x != h for x in got[mid])]
    assert altered == [], f"{len(altered)} of {TOTAL} messages arrived altered"
    assert "malformed" not in mxg.log_text()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the unprivileged run.user can reach (pytest's own tmp
    tree is root's alone), on the same file system as its targets."""
    d = Path(tempfile.mkdtemp(prefix="mxg-rule8a-", dir="/var/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _snapshot(path: Path) -> tuple[bytes, int, int, int]:
    st = path.stat()
    return path.read_bytes(), st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="a privilege drop needs root")
def test_rule8a_planted_links_in_the_data_directory_are_never_followed(
    shared_dir: Path, dns_server: UnboundServer, backend: str, mxg_store: str
) -> None:
    user = "nobody"
    pw = pwd.getpwnam(user)
    data = shared_dir / "data"
    extra = f'[run]\nuser = "{user}"\n'
    mxg = MxgProcess(shared_dir, mxg_config(dns_server, data, extra, store=mxg_store), backend)
    mxg.start()
    mxg.stop()

    # Files only root may change, on the data directory's file system.
    vault = shared_dir / "vault"
    vault.mkdir(mode=0o700)
    targets = {}
    for name in ("free", "tmp", "queue", "spool", "data", "hard"):
        t = vault / f"target-{name}"
        t.write_bytes(f"root's {name} file\n".encode())
        t.chmod(0o640)
        targets[name] = t
    before = {name: _snapshot(t) for name, t in targets.items()}
    spool = data / "spool"
    (spool / "free" / "planted").symlink_to(targets["free"])
    (spool / "tmp" / "planted").symlink_to(targets["tmp"])
    (spool / "queue" / "18A0000000000001").symlink_to(targets["queue"])
    (spool / "planted").symlink_to(targets["spool"])
    (data / "planted").symlink_to(targets["data"])
    os.link(targets["hard"], spool / "free" / "hardlink")
    (data / "planted-dir").symlink_to(vault, target_is_directory=True)

    mxg.start()
    mxg.stop()
    after = {name: _snapshot(t) for name, t in targets.items()}
    assert after == before
    assert stat.S_IMODE(vault.stat().st_mode) == 0o700 and vault.stat().st_uid == 0
    # The relay's own files are the run user's, and private.
    own = [data / "mxg.lock", spool / "queue", spool / "free"]
    if not mxg_store:  # the SQLite file; PostgreSQL keeps its own
        own.append(data / "queue.db")
    for path in own:
        st = path.stat()
        assert st.st_uid == pw.pw_uid, path
        assert stat.S_IMODE(st.st_mode) & 0o077 == 0, path


def test_rule8_store_wal_and_log_files_are_private_from_the_first_start(
    make_mxg: Callable[..., MxgProcess], tmp_path: Path, mxg_store: str
) -> None:
    log_file = tmp_path / "logs" / "mxg.log"
    log_file.parent.mkdir()
    mxg = make_mxg(extra=f'file = "{log_file}"\n')
    data = tmp_path / "data"
    private = [log_file]
    if not mxg_store:  # the SQLite file and its WAL; PostgreSQL keeps its own
        wait_for((data / "queue.db-shm").exists, what="the WAL index")
        private += [data / "queue.db", data / "queue.db-wal", data / "queue.db-shm"]
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    mxg.stop()


def test_rule8a_a_data_directory_others_can_write_is_refused(
    make_mxg: Callable[..., MxgProcess], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    data.chmod(0o777)
    mxg = make_mxg(start=False)
    out = mxg.cli("run")
    assert out.returncode == 1
    assert "writable by group or others" in out.stderr and str(data) in out.stderr
    assert not (data / "spool").exists()
