"""Operating the queue of a running relay, DSN timing rules and the
privilege drop (ARCHITECTURE.md rule 8)."""

from __future__ import annotations

import email
import json
import os
import pwd
import smtplib
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import only_on
from tests.e2e.test_delivery import wait_for
from tests.support.mxgproc import MxgProcess
from tests.support.sinks import Sink
from tests.support.store import store_target

pytestmark = pytest.mark.e2e


def send(mxg: MxgProcess, sender: str, rcpts: list[str], subject: str = "t") -> str:
    with smtplib.SMTP("127.0.0.1", mxg.port, timeout=30) as s:
        s.ehlo("internal.test")
        code, reply = s.docmd("MAIL", f"FROM:<{sender}>")
        assert code == 250, reply
        for r in rcpts:
            assert s.docmd("RCPT", f"TO:<{r}>")[0] == 250
        code, reply = s.data(f"Subject: {subject}\r\n\r\nbody\r\n".encode())
        assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[1]


def queue_json(mxg: MxgProcess, *args: str) -> Any:
    """The JSON lines a queue command prints: the one object of ``show``,
    else the list of them."""
    r = mxg.cli("queue", *args, "--json")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    return lines[0] if args[0] == "show" else lines


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def relay_with_a_slow_partner(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> tuple[MxgProcess, dict[str, bool]]:
    """A relay whose slow.test answers 451 until ``slow_ok["value"]`` is
    set, retried after 1 s, then after an hour."""
    slow_ok = {"value": False}
    sinks["slow"].rcpt_policy = lambda r: None if slow_ok["value"] else "451 4.3.2 later"
    # The e2e config already has a [queue] table: override through the environment.
    return make_mxg(env={"MXG_QUEUE__RETRY_SCHEDULE": '["1s", "1h"]'}), slow_ok


def test_hold_and_release_by_selector_and_a_dry_run_changes_nothing(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    mxg, slow_ok = relay_with_a_slow_partner(make_mxg, sinks)
    first, second = (send(mxg, "alice@sender.test", [f"s{i}@slow.test"]) for i in (1, 2))
    wait_for(lambda: len(sinks["slow"].rcpt_attempts) >= 4, what="second attempts")
    before = queue_json(mxg, "list")
    dry = ok(mxg.cli("queue", "hold", "--domain", "slow.test", "--dry-run", "--reason", "x"))
    assert "would hold: 2 message(s)" in dry and "dry run: nothing was changed" in dry
    assert first in dry and second in dry
    assert queue_json(mxg, "list") == before
    assert queue_json(mxg, "show", first)["events"] == []
    held = queue_json(mxg, "hold", "--domain", "slow.test", "--older-than", "0s", "--reason", "x")
    assert sorted(c["queue_id"] for c in held) == sorted([first, second])
    assert all(c["after"] == "held" and c["actor"] and not c["dry_run"] for c in held)
    slow_ok["value"] = True
    # Held: the flush finds nothing to retry, and nothing goes out.
    assert queue_json(mxg, "flush", "--dry-run") == []
    time.sleep(1.5)
    assert sinks["slow"].recipients() == []
    # A dry-run release of everything changes nothing either.
    assert len(queue_json(mxg, "release", "ALL", "--dry-run")) == 2
    time.sleep(1.5)
    assert sinks["slow"].recipients() == []
    assert {m["state"] for m in queue_json(mxg, "list")} == {"held"}
    # Bulk overrides of the transport level are refused (only by queue id).
    refused = mxg.cli("queue", "release", "ALL", "--level", "none", "--reason", "x")
    assert refused.returncode == 1 and "name each message by its queue id" in refused.stderr
    released = queue_json(mxg, "release", "--state", "held", "--reason", "checked")
    assert [c["queue_id"] for c in released] == [first, second]
    wait_for(
        lambda: sorted(sinks["slow"].recipients()) == ["s1@slow.test", "s2@slow.test"],
        what="released deliveries",
    )
    actions = [e["action"] for e in queue_json(mxg, "show", first)["events"]]
    assert actions == ["hold", "release"]


def test_bounce_by_selector_sends_the_sender_a_dsn(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    sinks["slow"].rcpt_policy = lambda r: "451 4.3.2 later"
    mxg = make_mxg(env={"MXG_QUEUE__RETRY_SCHEDULE": '["1h"]'})
    qid = send(mxg, "alice@sender.test", ["gone@slow.test", "fine@good.test"], "to bounce")
    wait_for(lambda: sinks["slow"].rcpt_attempts, what="a first attempt")
    wait_for(
        lambda: "fine@good.test" in sinks["good1"].recipients() + sinks["good2"].recipients(),
        what="the other recipient's delivery",
    )
    # The spooled message, as received, with mxg's Received header on top.
    spooled = mxg.cli("queue", "cat", qid)
    assert spooled.stdout.startswith("Received: ") and spooled.stdout.endswith("body\n")
    head = ok(mxg.cli("queue", "cat", qid.lower(), "--headers"))
    assert "Subject: to bounce" in head and "body" not in head
    missing = mxg.cli("queue", "cat", "0" * 16)
    assert missing.returncode == 1 and "no message 0000000000000000 in the spool" in missing.stderr
    dry = queue_json(mxg, "bounce", "--domain", "slow.test", "--dry-run")
    assert [(c["queue_id"], c["recipients"], c["dry_run"]) for c in dry] == [
        (qid, ["gone@slow.test"], True)
    ]
    time.sleep(1.5)
    assert sinks["sender"].messages == []
    out = ok(mxg.cli("queue", "bounce", "--domain", "slow.test", "--reason", "partner closed"))
    assert "bounce: 1 message(s), 1 recipient(s) (domain slow.test)" in out
    wait_for(lambda: sinks["sender"].messages, what="the DSN")
    dsn = sinks["sender"].messages[0].data
    assert b"Action: failed" in dsn and b"Status: 5.0.0" in dsn
    assert b"gone@slow.test" in dsn and b"returned by the mail administrator: partner closed" in dsn
    assert b"fine@good.test" not in dsn.split(b"Content-Type: message/")[0]
    wait_for(
        lambda: not (mxg.workdir / "data" / "spool" / "queue" / qid).exists(),
        what="the bounced message leaves the spool",
    )
    shown = queue_json(mxg, "show", qid)
    assert [r["status"] for r in shown["recipients"]] == ["bounced", "sent"]
    assert [(e["action"], e["detail"]) for e in shown["events"]] == [("bounce", "partner closed")]
    time.sleep(1.5)
    assert len(sinks["sender"].messages) == 1  # one DSN, never a second


def test_suspend_holds_back_a_domain_until_resumed(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    mxg = make_mxg()
    good = lambda: sinks["good1"].recipients() + sinks["good2"].recipients()  # noqa: E731
    out = ok(mxg.cli("queue", "suspend", "GOOD.test", "--reason", "partner maintenance"))
    assert "good.test: delivery suspended" in out
    qid = send(mxg, "alice@sender.test", ["w@good.test", "p@slow.test"], "waits")
    wait_for(lambda: "p@slow.test" in sinks["slow"].recipients(), what="the other domain")
    time.sleep(2.5)  # two queue scans
    assert good() == []
    listing = ok(mxg.cli("queue", "list"))
    assert "delivery to good.test suspended" in listing and "partner maintenance" in listing
    assert queue_json(mxg, "list")[0]["suspended"] == ["good.test"]
    [row, total] = queue_json(mxg, "summary")
    assert (row["domain"], row["total"], row["suspended"]) == ("good.test", 1, True)
    assert row["buckets"]["5"] == 1 and total["domain"] == "TOTAL"
    table = ok(mxg.cli("queue", "summary"))
    assert "1280+" in table and "good.test (suspended)" in table
    assert queue_json(mxg, "suspended")[0]["reason"] == "partner maintenance"
    ok(mxg.cli("queue", "resume", "good.test", "--reason", "back"))
    wait_for(lambda: good() == ["w@good.test"], what="delivery after resume")
    again = mxg.cli("queue", "resume", "good.test")
    assert again.returncode == 1 and "is not suspended" in again.stderr
    wait_for(lambda: queue_json(mxg, "show", qid)["state"] == "done", what="finished")


def test_hold_release_delete_flush_and_listings(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    mxg, slow_ok = relay_with_a_slow_partner(make_mxg, sinks)
    held = send(mxg, "alice@sender.test", ["h@slow.test"], "to hold")
    doomed = send(mxg, "alice@sender.test", ["d@slow.test"], "to delete")
    flushed = send(mxg, "alice@sender.test", ["f@slow.test"], "to flush")
    wait_for(lambda: len(sinks["slow"].rcpt_attempts) >= 6, what="second attempts")
    listing = queue_json(mxg, "list")
    assert {m["queue_id"] for m in listing} == {held, doomed, flushed}
    assert all(m["reason"] and "451" in m["reason"] for m in listing)
    assert mxg.cli("queue", "hold", held, "--reason", "check content").returncode == 0
    assert mxg.cli("queue", "delete", doomed, "--reason", "sent by mistake").returncode == 0
    slow_ok["value"] = True
    # The next retry is an hour away: flush brings it forward.
    assert "flush: 1 message(s), 1 recipient(s)" in mxg.cli("queue", "flush").stdout
    wait_for(lambda: "f@slow.test" in sinks["slow"].recipients(), what="flushed delivery")
    time.sleep(1.5)
    assert "h@slow.test" not in sinks["slow"].recipients()  # held
    assert "d@slow.test" not in sinks["slow"].recipients()  # deleted
    shown = queue_json(mxg, "show", held)
    assert shown["state"] == "held"
    assert [e["action"] for e in shown["events"]] == ["hold"]
    deleted = queue_json(mxg, "show", doomed)
    assert deleted["recipients"][0]["status"] == "deleted"
    wait_for(
        lambda: not (mxg.workdir / "data" / "spool" / "queue" / doomed).exists(),
        what="deleted message leaves the spool",
    )
    assert mxg.cli("queue", "release", held).returncode == 0
    wait_for(lambda: "h@slow.test" in sinks["slow"].recipients(), what="released delivery")
    assert sinks["sender"].messages == []  # a delete sends no DSN
    table = mxg.cli("queue", "list", "--all").stdout
    assert held in table and "QUEUE ID" in table
    bad = mxg.cli("queue", "release", "0000000000000000")
    assert bad.returncode == 1 and "no held message" in bad.stderr


def test_delay_warning_and_expiry(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    sinks["slow"].rcpt_policy = lambda r: "451 4.3.2 still busy"
    mxg = make_mxg(
        env={
            "MXG_QUEUE__DELAY_WARNING_AFTER": '"1s"',
            "MXG_QUEUE__MAX_LIFETIME": '"6s"',
            "MXG_DSN__POSTMASTER": '"mailer-daemon@mxg.test"',
        }
    )
    qid = send(mxg, "alice@sender.test", ["late@slow.test"])
    wait_for(lambda: len(sinks["sender"].messages) >= 1, what="delay DSN")
    delay = email.message_from_bytes(sinks["sender"].messages[0].data)
    assert delay["From"] == "Mail Delivery System <mailer-daemon@mxg.test>"
    assert "Delayed Mail" in delay["Subject"]
    assert b"Action: delayed" in sinks["sender"].messages[0].data
    assert b"Will-Retry-Until:" in sinks["sender"].messages[0].data
    wait_for(lambda: len(sinks["sender"].messages) >= 2, timeout=30, what="expiry DSN")
    final = sinks["sender"].messages[1].data
    assert b"Action: failed" in final and b"Status: 4.4.7" in final
    assert b"451 4.3.2 still busy" in final
    assert queue_json(mxg, "show", qid)["recipients"][0]["status"] == "bounced"
    assert len(sinks["sender"].messages) == 2  # one warning, one bounce


def test_null_sender_never_gets_a_dsn(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    sinks["bad"].rcpt_policy = lambda r: "550 5.1.1 no such user"
    mxg = make_mxg()
    qid = send(mxg, "", ["nobody@bad.test"])
    wait_for(
        lambda: queue_json(mxg, "show", qid)["state"] == "done",
        what="bounce recorded",
    )
    time.sleep(1)
    assert all(not s.messages for s in sinks.values())
    assert "dsn queued" not in mxg.log_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")
def test_rule8_drops_privileges_before_serving(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink], tmp_path: Path
) -> None:
    nobody = pwd.getpwnam("nobody")
    # The data directory must be reachable by the unprivileged user.
    data = Path(tempfile.mkdtemp(prefix="mxg-priv-"))
    data.chmod(0o755)
    mxg = make_mxg(env={"MXG_RUN__USER": "nobody", "MXG_DATA__DIRECTORY": f'"{data / "d"}"'})
    assert mxg.proc is not None
    status = Path(f"/proc/{mxg.proc.pid}/status").read_text()
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert set(uids) == {str(nobody.pw_uid)}
    send(mxg, "alice@sender.test", ["p@good.test"])
    wait_for(
        lambda: "p@good.test" in sinks["good1"].recipients() + sinks["good2"].recipients(),
        what="delivery after the privilege drop",
    )
    # Stopped first: a running relay renames spare spool files from tmp/
    # into free/, so a walk could list a file that is gone when stat'ed.
    assert mxg.stop() == 0
    for p in [data / "d", *(data / "d").rglob("*")]:
        assert p.stat().st_uid == nobody.pw_uid, p
    assert (data / "d" / "spool").stat().st_mode & 0o777 == 0o700
    store = store_target(mxg)
    if isinstance(store, Path):  # the SQLite file; PostgreSQL keeps its own
        assert store == data / "d" / "queue.db"
        assert store.stat().st_mode & 0o777 == 0o600


@only_on("sqlite", "a damaged SQLite file; PostgreSQL's own recovery covers its files")
def test_rule10_a_damaged_queue_index_is_moved_aside_and_rebuilt_from_the_spool(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink], tmp_path: Path
) -> None:
    sinks["slow"].rcpt_policy = lambda r: "451 4.3.2 later"
    mxg = make_mxg(env={"MXG_QUEUE__RETRY_SCHEDULE": '["1h"]'})
    qid = send(mxg, "alice@sender.test", ["w@slow.test"], "waits")
    wait_for(lambda: sinks["slow"].rcpt_attempts, what="a first attempt")
    mxg.stop()
    db = tmp_path / "data" / "queue.db"
    db.write_bytes(os.urandom(8192))
    # The queue tools say what is wrong and what to do, in one line.
    out = mxg.cli("queue", "list")
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "is damaged" in out.stderr
    assert "rebuilds the index from the spool" in out.stderr
    mxg.start()
    assert "queue index damaged: moved aside" in mxg.log_text()
    assert list((tmp_path / "data").glob("queue.db.damaged-*"))
    assert [m["queue_id"] for m in queue_json(mxg, "list")] == [qid]
