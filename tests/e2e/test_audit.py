"""ARCHITECTURE.md rule 11b on a running relay: what it does to a message
is in the audit trail, the trail is signed when the relay stops, an
operator behind sudo is recorded as who they are, and `mxg audit verify`
checks it all with the exported public key."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import pytest

from tests.e2e.test_delivery import wait_for
from tests.e2e.test_queue_ops import send
from tests.support.audit import edit_record, set_actor
from tests.support.mxgproc import MxgProcess
from tests.support.sinks import Sink
from tests.support.store import store_sql

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

    shown = mxg.cli("audit", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    records = [json.loads(line) for line in shown.stdout.splitlines()]
    trail = [(r["queue_id"], r["kind"], r["actor"], r["data"]) for r in records]
    of = {(q, k) for q, k, _, _ in trail}
    assert {(delivered, "received"), (delivered, "result"), (delivered, "done")} <= of
    assert {(held, "received"), (held, "result"), (held, "hold")} <= of
    result = next(d for q, k, _, d in trail if (q, k) == (delivered, "result"))
    assert result["status"] == "sent" and result["code"] == 250
    assert result["reply"] and result["ip"].startswith("127.0.0.1")
    hold_actor = next(a for q, k, a, _ in trail if (q, k) == (held, "hold"))
    assert hold_actor == ("alice (sudo)" if os.geteuid() == 0 else hold_actor)
    one = mxg.cli("audit", "show", held, "--json")
    assert [json.loads(line)["kind"] for line in one.stdout.splitlines()][-1] == "hold"
    # Signed when the relay stopped: the last checkpoint covers the last record.
    with store_sql(mxg) as db:
        (signed,) = db.execute("SELECT MAX(seq) FROM audit_checkpoints").fetchone()
    assert signed == records[-1]["seq"]

    pub = mxg.workdir / "mxg.pub"
    exported = mxg.cli("keys", "export")
    assert exported.returncode == 0, exported.stderr
    pub.write_text(exported.stdout)
    ok = mxg.cli("audit", "verify", "--key", str(pub))
    assert ok.returncode == 0 and "audit trail intact" in ok.stdout, ok.stdout + ok.stderr

    hold = next(r["seq"] for r in records if (r["queue_id"], r["kind"]) == (held, "hold"))
    with store_sql(mxg) as db:
        edit_record(db, hold, set_actor("nobody"))
    broken = mxg.cli("audit", "verify", "--key", str(pub))
    assert broken.returncode == 3 and f"BROKEN at record {hold}" in broken.stdout


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
