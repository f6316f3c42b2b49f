"""ARCHITECTURE.md rule 11b on a running relay: what it does to a message
is in the audit trail, the trail is signed when the relay stops, an
operator behind sudo is recorded as who they are, and `mxg audit verify`
checks it all with the exported public key."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable

import pytest

from tests.e2e.test_delivery import wait_for
from tests.e2e.test_queue_ops import send
from tests.support.mxgproc import MxgProcess
from tests.support.sinks import Sink

pytestmark = pytest.mark.e2e


def test_rule11b_every_change_has_its_signed_audit_record(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    sinks["slow"].rcpt_policy = lambda r: "451 4.3.2 later"
    mxg = make_mxg(env={"SUDO_USER": "alice"})
    delivered = send(mxg, "a@sender.test", ["g1@good.test"], "delivered")
    held = send(mxg, "a@sender.test", ["h@slow.test"], "held")
    wait_for(
        lambda: "g1@good.test" in sinks["good1"].recipients() + sinks["good2"].recipients(),
        what="delivery",
    )
    wait_for(lambda: len(sinks["slow"].rcpt_attempts) >= 1, what="a deferral")
    assert mxg.cli("queue", "hold", held, "--reason", "check it").returncode == 0
    assert mxg.stop() == 0

    db = sqlite3.connect(mxg.workdir / "data" / "queue.db")
    trail = db.execute("SELECT queue_id, kind, actor, data FROM audit ORDER BY seq").fetchall()
    of = {(q, k) for q, k, _, _ in trail}
    assert {(delivered, "received"), (delivered, "result"), (delivered, "done")} <= of
    assert {(held, "received"), (held, "result"), (held, "hold")} <= of
    result = next(json.loads(d) for q, k, _, d in trail if (q, k) == (delivered, "result"))
    assert result["status"] == "sent" and result["code"] == 250
    assert result["reply"] and result["ip"].startswith("127.0.0.1")
    hold_actor = next(a for q, k, a, _ in trail if (q, k) == (held, "hold"))
    assert hold_actor == ("alice (sudo)" if os.geteuid() == 0 else hold_actor)
    # Signed when the relay stopped: the last checkpoint covers the last record.
    (last,) = db.execute("SELECT MAX(seq) FROM audit").fetchone()
    (signed,) = db.execute("SELECT MAX(seq) FROM audit_checkpoints").fetchone()
    assert signed == last
    db.close()

    pub = mxg.workdir / "mxg.pub"
    exported = mxg.cli("keys", "export")
    assert exported.returncode == 0, exported.stderr
    pub.write_text(exported.stdout)
    ok = mxg.cli("audit", "verify", "--key", str(pub))
    assert ok.returncode == 0 and "audit trail intact" in ok.stdout, ok.stdout + ok.stderr

    db = sqlite3.connect(mxg.workdir / "data" / "queue.db")
    db.execute("UPDATE audit SET actor = 'nobody' WHERE kind = 'hold'")
    db.commit()
    db.close()
    broken = mxg.cli("audit", "verify", "--key", str(pub))
    assert broken.returncode == 3 and "changed" in broken.stdout


def test_retention_prunes_on_a_running_relay_and_the_trail_stays_verifiable(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink]
) -> None:
    mxg = make_mxg(env={"MXG_RETENTION__KEEP": '"2s"', "MXG_RETENTION__PRUNE_INTERVAL": '"1s"'})
    qid = send(mxg, "a@sender.test", ["g2@good.test"], "short-lived")
    wait_for(
        lambda: "g2@good.test" in sinks["good1"].recipients() + sinks["good2"].recipients(),
        what="delivery",
    )

    def known() -> bool:
        listing = mxg.cli("queue", "list", "--all", "--json")
        return qid in listing.stdout

    wait_for(lambda: not known(), timeout=20, what="the finished message pruned")
    assert "retention: pruned" in mxg.log_text()
    assert mxg.stop() == 0
    ok = mxg.cli("audit", "verify")
    assert ok.returncode == 0 and "audit trail intact" in ok.stdout, ok.stdout + ok.stderr
