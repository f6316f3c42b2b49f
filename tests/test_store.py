"""The queue index and audit store."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from mxg.boundary import Envelope, Recipient
from mxg.store import NewMessage, Outcome, Store
from mxg.store.partners import Seen
from mxg.tlsrpt.sessions import SessionKey


def envelope(qid: str, rcpts: list[str], sender: str = "a@internal.test") -> NewMessage:
    env = Envelope(
        queue_id=qid,
        received_ms=1000,
        sender=sender,
        recipients=[Recipient(r) for r in rcpts],
        origin="smtp",
        size=10,
    )
    return NewMessage(env)


def test_add_is_idempotent_and_due_groups_by_domain(store_at: Path | str) -> None:
    s = Store(store_at)
    e = envelope("Q1", ["a@x.test", "b@X.test", "c@y.test"])
    assert s.add_messages([e]) == ["Q1"]
    assert s.add_messages([e]) == []
    due = {(d.domain, d.indexes) for d in s.due(2000)}
    assert due == {("x.test", (0, 1)), ("y.test", (2,))}
    if isinstance(store_at, Path):
        assert oct(store_at.stat().st_mode & 0o777) == "0o600"


def test_a_batch_indexes_only_its_new_messages_with_all_their_recipients(
    store_at: Path | str,
) -> None:
    # A restart's rescan hands over known and new messages in one batch,
    # more than one statement's worth of parameters among them.
    s = Store(store_at)
    s.add_messages([envelope("Q0", ["old@x.test"])])
    batch = [envelope(f"Q{i}", [f"r{i}@x.test", f"s{i}@y.test"]) for i in range(1500)]
    batch[0].envelope.recipients = [Recipient("changed@z.test")]
    added = s.add_messages(batch)
    assert added == [f"Q{i}" for i in range(1, 1500)]
    assert [r["address"] for r in s.recipients("Q0")] == ["old@x.test"]
    assert [r["address"] for r in s.recipients("Q1499")] == ["r1499@x.test", "s1499@y.test"]
    assert [r["address"] for r in s.recipients("Q1499", [1])] == ["s1499@y.test"]
    assert [r["idx"] for r in s.recipients("Q1499", (1, 0, 1))] == [0, 1]
    assert len(s.due(2000, limit=10_000)) == 1 + 2 * 1499


def test_due_among_given_messages_skips_held_final_and_later_recipients(
    store_at: Path | str,
) -> None:
    s = Store(store_at)
    s.add_messages(
        [
            envelope("Q1", ["a@x.test", "b@x.test", "c@y.test"]),
            envelope("Q2", ["d@x.test"]),
            envelope("Q3", ["e@x.test"]),
        ]
    )
    s.record(
        [
            Outcome("Q1", 0, "sent", 250, "2.0.0", "ok"),
            Outcome("Q1", 2, "deferred", 451, "4.0.0", "later", next_ms=5000),
        ]
    )
    assert s.hold("Q2", "test", "operator")
    due = s.due(2000, limit=None, among=["Q1", "Q2"])
    assert [(d.queue_id, d.domain, d.indexes) for d in due] == [("Q1", "x.test", (1,))]
    later = s.due(6000, limit=None, among=["Q1"])
    assert {(d.domain, d.indexes) for d in later} == {("x.test", (1,)), ("y.test", (2,))}


def test_results_for_a_few_messages_do_not_walk_the_whole_queue(tmp_path: Path) -> None:
    # Each results batch asks which of its messages are finished, and new
    # messages which of their recipients are due; both must look up those
    # messages, not walk every active one (the state and due indexes would
    # make each batch cost as much as the queue is long).
    s = Store(tmp_path / "q.db")
    s.add_messages([envelope(f"Q{i:05}", [f"r{i}@x.test"]) for i in range(5000)])
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    sent = [f"Q{i:05}" for i in range(100, 120)]
    new = [f"Q{i:05}" for i in range(200, 220)]
    s.db.set_progress_handler(count, 1000)  # called every 1,000 VM instructions
    assert s.record([Outcome(q, 0, "sent", 250, "2.0.0", "ok") for q in sent]) == sent
    assert len(s.due(2000, limit=None, among=new)) == 20
    s.db.set_progress_handler(None, 0)
    # Walking 5,000 messages takes well over 50,000 instructions.
    assert steps < 30


def test_a_limited_due_query_reads_only_as_far_as_its_limit(tmp_path: Path) -> None:
    # Each batch of results that frees room asks for the next due
    # recipients; with a backlog that must not read (and sort) all of them.
    s = Store(tmp_path / "q.db")
    s.add_messages([envelope(f"Q{i:05}", [f"r{i}@x.test"]) for i in range(5000)])
    s.record([Outcome("Q04999", 0, "deferred", 451, "4.0.0", "later", next_ms=1500)])
    s.record([Outcome("Q04998", 0, "deferred", 451, "4.0.0", "later", next_ms=500)])
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    s.db.set_progress_handler(count, 1000)
    due = s.due(2000, limit=3)
    s.db.set_progress_handler(None, 0)
    # Oldest first: the new messages (next_ms 0) in order, then retries.
    assert [d.queue_id for d in due] == ["Q00000", "Q00001", "Q00002"]
    assert steps < 10
    everything = s.due(2000, limit=None)
    assert len(everything) == 5000
    assert [d.queue_id for d in everything[-2:]] == ["Q04998", "Q04999"]


def test_rule11_results_recorded_without_their_own_fsync_are_synced_before_removal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # record() commits to the WAL without an fsync; sync() is the durable
    # point the relay passes before it removes spool files.
    s = Store(tmp_path / "q.db")
    s.add_messages([envelope("Q1", ["a@x.test"])])
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert s.record([Outcome("Q1", 0, "sent", 250, "2.0.0", "ok")]) == ["Q1"]
    s.sync()
    assert synced == [f"{tmp_path / 'q.db'}-wal"]
    other = Store(tmp_path / "q.db")
    assert other.recipients("Q1")[0]["status"] == "sent"
    # Intake is repairable from the spool: no fsync. An operator's change
    # is durable when the call returns: the WAL is fsynced at its commit.
    synced.clear()
    s.add_messages([envelope("Q2", ["b@x.test"])])
    assert synced == []
    assert s.hold("Q2", "test", "operator")
    assert synced == [f"{tmp_path / 'q.db'}-wal"]


def test_rule11_message_is_finished_only_with_final_states_and_dsns(store_at: Path | str) -> None:
    s = Store(store_at)
    s.add_messages([envelope("Q1", ["a@x.test", "b@x.test"])])
    s.record(
        [
            Outcome("Q1", 0, "sent", 250, "2.0.0", "ok"),
            Outcome("Q1", 1, "deferred", 451, "4.0.0", "later", next_ms=5000),
        ]
    )
    assert s.finished() == []
    assert [d.indexes for d in s.due(4000)] == []
    assert [d.indexes for d in s.due(5000)] == [(1,)]
    assert s.record([Outcome("Q1", 1, "bounced", 550, "5.1.1", "unknown")]) == []
    assert s.finished() == []  # the bounce still needs its DSN
    assert s.dsn_pending() == ["Q1"]
    s.mark_dsn_sent("Q1", [1])
    assert s.finished() == ["Q1"]
    assert s.finish(["Q1"]) == ["Q1"]
    assert s.finished() == [] and s.message("Q1")["state"] == "done"  # type: ignore[index]
    attempts = s.details("Q1")["attempts"]  # type: ignore[index]
    assert [a["status"] for a in attempts] == ["sent", "deferred", "bounced"]


def test_final_states_are_never_overwritten(store_at: Path | str) -> None:
    s = Store(store_at)
    s.add_messages([envelope("Q1", ["a@x.test"])])
    s.record([Outcome("Q1", 0, "sent", 250, "2.0.0", "ok")])
    s.record([Outcome("Q1", 0, "deferred", 451, "4.0.0", "late duplicate result")])
    assert s.recipients("Q1")[0]["status"] == "sent"


def test_operator_actions_are_recorded(store_at: Path | str) -> None:
    s = Store(store_at)
    s.add_messages([envelope("Q1", ["a@x.test"]), envelope("Q2", ["b@x.test"])])
    assert s.hold("Q1", "ops", "looks odd")
    assert s.due(10**12)[0].queue_id == "Q2"
    assert not s.release("Q2", "ops", "")  # not held
    assert s.release("Q1", "ops", "checked")
    s.record([Outcome("Q2", 0, "deferred", 451, "4.0.0", "later", next_ms=10**12)])
    assert s.flush_recipients({"Q2": [0]}, "ops", "") == {"Q2": [0]}
    assert s.delete("Q2", "ops", "spam")
    assert "Q2" in s.finished()
    d = s.details("Q1")
    assert d is not None
    assert [(e["action"], e["actor"], e["detail"]) for e in d["events"]] == [
        ("hold", "ops", "looks odd"),
        ("release", "ops", "checked"),
    ]
    listing = {m["queue_id"]: m for m in s.listing()}
    assert listing["Q1"]["waiting"] == 1
    assert not s.delete("NOPE", "ops", "")


def test_a_results_batch_merges_the_partner_ledger_and_adds_tls_session_counts(
    store_at: Path | str,
) -> None:
    """The ledger and the TLS report aggregate change with the results
    they summarise, in the same transaction (on PostgreSQL the batch's
    one statement): the best level stays, a failure is the last, and
    session counts add up per key."""
    s = Store(store_at)
    s.add_messages([envelope("Q1", ["a@x.test"]), envelope("Q2", ["b@y.test"])])
    ok = SessionKey("2026-12-05", "x.test", '{"policy-type":"no-policy-found"}')
    failed = ok._replace(result="starttls-not-supported", code="tls-required")
    s.record(
        [Outcome("Q1", 0, "sent", 250, "2.0.0", "ok", level="encrypted")],
        {"x.test": Seen("encrypted", "mta-sts")},
        Counter({ok: 1}),
    )
    s.record(
        [Outcome("Q2", 0, "deferred", 451, "4.7.5", "no TLS", next_ms=10**12)],
        {"x.test": Seen("", "", "tls-required", "no STARTTLS"), "y.test": Seen("opportunistic")},
        Counter({ok: 2, failed: 1}),
    )
    x, y = s.partner("x.test"), s.partner("y.test")
    assert x is not None and y is not None
    assert (x["best_level"], x["best_method"], x["failure_reason"]) == (
        "encrypted",
        "mta-sts",
        "tls-required",
    )
    assert (y["best_level"], y["best_method"], y["failure_reason"]) == ("opportunistic", None, None)
    rows = {(r["result"], r["code"]): r["sessions"] for r in s.tlsrpt_rows("2026-12-05", "x.test")}
    assert rows == {("", ""): 3, ("starttls-not-supported", "tls-required"): 1}
    s.close()


def test_a_result_stored_twice_is_one_attempt(store_at: Path | str) -> None:
    """The same result stored again (kept in memory after its commit's
    answer was lost: it may have committed) adds no second attempt, so
    `mxg queue show` and the evidence list it once; a later attempt of
    the same recipient is a row of its own."""
    s = Store(store_at)
    s.add_messages([envelope("Q1", ["a@x.test"])])
    deferred = Outcome("Q1", 0, "deferred", 451, "4.3.0", "busy", at_ms=1_000)
    s.record([deferred])
    s.record([deferred], again=True)
    details = s.details("Q1")
    assert details is not None
    assert [(a["at_ms"], a["status"]) for a in details["attempts"]] == [(1_000, "deferred")]
    assert [r["attempts"] for r in s.recipients("Q1")] == [1], "counted once"
    s.record([Outcome("Q1", 0, "sent", 250, "2.0.0", "ok", at_ms=2_000)], again=True)
    details = s.details("Q1")
    assert details is not None
    assert [(a["at_ms"], a["status"]) for a in details["attempts"]] == [
        (1_000, "deferred"),
        (2_000, "sent"),
    ]
    assert [r["attempts"] for r in s.recipients("Q1")] == [2]
    s.close()
