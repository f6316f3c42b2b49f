"""The operator's queue actions (`mxg.ops`) against a real store: which
recipients a selector picks, what each action changes and records, that a
dry run changes nothing, and the qshape summary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mxg import ops
from mxg.audit_trail import sign_checkpoint, verify
from mxg.boundary import Envelope, Recipient
from mxg.errors import OperatorError
from mxg.signing import SigningKey
from mxg.store import NewMessage, Outcome, Store, now_ms

# The messages are aged against the real clock: the actions read it.
NOW = now_ms()
MIN = 60_000
A, B, C, D = "A" * 16, "B" * 16, "C" * 16, "D" * 16


def message(
    qid: str,
    rcpts: list[str],
    age_ms: int,
    classes: list[str] | None = None,
    at_ms: int = NOW,
) -> NewMessage:
    """A message received `age_ms` before `at_ms`: NOW for the queries
    here, which take it explicitly; the wall clock for a test that asks
    a running surface (its `since` counts from the clock, and the suite
    may run for longer than the ages)."""
    env = Envelope(
        queue_id=qid,
        received_ms=at_ms - age_ms,
        sender="alice@internal.test",
        recipients=[Recipient(r) for r in rcpts],
        origin="smtp",
        size=10,
    )
    cls = classes or ["normal"] * len(rcpts)
    return NewMessage(env, max(cls, key=["normal", "high", "secret"].index), None, cls)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "queue.db")
    s.add_messages(
        [
            message(A, ["a1@x.test", "a2@y.test"], 3 * 60 * MIN),  # 3 h old
            message(B, ["b1@x.test"], 30 * MIN, ["secret"]),
            message(C, ["c1@y.test"], 2 * MIN),
            message(D, ["d1@x.test"], 1 * MIN),
        ]
    )
    s.record(
        [
            Outcome(A, 0, "deferred", 451, "4.3.2", "later", next_ms=NOW + 3_600_000),
            Outcome(D, 0, "sent", 250, "2.0.0", "ok"),
        ]
    )
    return s


def picked(store: Store, **kw: object) -> list[tuple[str, str]]:
    return [(r["queue_id"], r["address"]) for r in ops.Selector.build(**kw).pick(store, NOW)]  # type: ignore[arg-type]


def test_selectors_combine_and_pick_only_unfinished_recipients(store: Store) -> None:
    assert picked(store, everything=True) == [
        (A, "a1@x.test"),
        (A, "a2@y.test"),
        (B, "b1@x.test"),
        (C, "c1@y.test"),
    ]  # D is sent: nothing to act on
    assert picked(store, domains=["X.TEST."]) == [(A, "a1@x.test"), (B, "b1@x.test")]
    assert picked(store, domains=["x.test"], older_than="1h") == [(A, "a1@x.test")]
    assert picked(store, younger_than="1h") == [(B, "b1@x.test"), (C, "c1@y.test")]
    assert picked(store, older_than="10m", younger_than="1h") == [(B, "b1@x.test")]
    assert picked(store, classes=["secret"]) == [(B, "b1@x.test")]
    assert picked(store, states=["deferred"]) == [(A, "a1@x.test")]
    assert picked(store, states=["pending"], domains=["y.test"]) == [
        (A, "a2@y.test"),
        (C, "c1@y.test"),
    ]
    assert picked(store, queue_ids=[C.lower(), B]) == [(B, "b1@x.test"), (C, "c1@y.test")]
    assert picked(store, queue_ids=[D]) == []


@pytest.mark.parametrize(
    ("kw", "error"),
    [
        ({}, "select messages"),
        ({"queue_ids": ["1234"]}, "not a queue id"),
        ({"domains": ["a@x.test"]}, "not a domain"),
        ({"classes": ["top"]}, "unknown class"),
        ({"states": ["frozen"]}, "unknown state"),
        ({"older_than": "2 weeks"}, "--older-than"),
        ({"older_than": "2h", "younger_than": "1h"}, "no message is both"),
    ],
)
def test_bad_selections_are_refused_with_the_reason(
    store: Store, kw: dict[str, object], error: str
) -> None:
    with pytest.raises(OperatorError, match=error):
        ops.Selector.build(**kw).pick(store, NOW)  # type: ignore[arg-type]


def test_a_dry_run_lists_what_would_change_and_changes_nothing(store: Store) -> None:
    before = store.listing()
    sel = ops.Selector.build(domains=["x.test"])
    actions: list[Callable[..., ops.ActionResult]] = [ops.hold, ops.delete, ops.bounce, ops.flush]
    for fn in actions:
        result = fn(store, sel, "ops", "why", dry_run=True)
        assert result.dry_run and result.changes, fn
    held = ops.hold(store, sel, "ops", "why", dry_run=True)
    # Hold takes whole messages: A's recipient at y.test too.
    assert [(c.queue_id, c.recipients) for c in held.changes] == [
        (A, ("a1@x.test", "a2@y.test")),
        (B, ("b1@x.test",)),
    ]
    bounced = ops.bounce(store, sel, "ops", "why", dry_run=True)
    assert [(c.queue_id, c.recipients, c.after) for c in bounced.changes] == [
        (A, ("a1@x.test",), "bounced"),
        (B, ("b1@x.test",), "bounced"),
    ]
    assert store.listing() == before
    assert all(not store.details(q)["events"] for q in (A, B, C))  # type: ignore[index]


def test_hold_and_release_by_selector_are_recorded_with_actor_and_reason(store: Store) -> None:
    result = ops.hold(store, ops.Selector.build(domains=["x.test"]), "ops", "check content")
    assert [c.queue_id for c in result.changes] == [A, B] and not result.dry_run
    assert [r["queue_id"] for r in store.unfinished(states=["held"])] == [A, A, B]
    assert {d.queue_id for d in store.due(NOW * 2)} == {C}
    # Holding again changes nothing.
    assert not ops.hold(store, ops.Selector.build(domains=["x.test"]), "ops", "x").changes
    released = ops.release(store, ops.Selector.build(classes=["secret"]), "ops", "checked")
    assert [(c.queue_id, c.before, c.after) for c in released.changes] == [(B, ("held",), "due")]
    assert {d.queue_id for d in store.due(NOW * 2)} == {B, C}
    events = store.details(B)["events"]  # type: ignore[index]
    assert [(e["action"], e["actor"], e["detail"]) for e in events] == [
        ("hold", "ops", "check content"),
        ("release", "ops", "checked"),
    ]


def test_release_level_only_for_messages_named_by_id_with_a_reason(store: Store) -> None:
    ops.hold(store, ops.Selector.build(everything=True), "ops", "")
    with pytest.raises(OperatorError, match="name each message by its queue id"):
        ops.release(store, ops.Selector.build(everything=True), "ops", "r", level="none")
    with pytest.raises(OperatorError, match="name each message"):
        ops.release(
            store, ops.Selector.build(queue_ids=[B], domains=["x.test"]), "ops", "r", level="none"
        )
    with pytest.raises(OperatorError, match="give --reason"):
        ops.release(store, ops.Selector.build(queue_ids=[B]), "ops", "", level="encrypted")
    assert store.unfinished(states=["held"])  # nothing was released by the refusals
    result = ops.release(
        store, ops.Selector.build(queue_ids=[B]), "ops", "ticket 7", level="encrypted"
    )
    assert result.level == "encrypted"
    assert store.recipients(B)[0]["override_level"] == "encrypted"
    assert store.recipients(A)[0]["override_level"] is None


def test_delete_and_bounce_take_only_the_selected_recipients(store: Store) -> None:
    deleted = ops.delete(store, ops.Selector.build(domains=["y.test"], older_than="1h"), "ops", "")
    assert [(c.queue_id, c.recipients) for c in deleted.changes] == [(A, ("a2@y.test",))]
    bounced = ops.bounce(store, ops.Selector.build(queue_ids=[A, B]), "ops", "partner closed")
    assert [(c.queue_id, c.recipients, c.before) for c in bounced.changes] == [
        (A, ("a1@x.test",), ("deferred",)),
        (B, ("b1@x.test",), ("pending",)),
    ]
    a = {r["address"]: r for r in store.recipients(A)}
    assert a["a2@y.test"]["status"] == "deleted"
    assert a["a1@x.test"]["status"] == "bounced" and a["a1@x.test"]["enhanced"] == "5.0.0"
    assert a["a1@x.test"]["text"] == "returned by the mail administrator: partner closed"
    # The bounces wait for their DSN (the relay's scanner sends it), then
    # the messages are finished.
    assert sorted(store.dsn_pending()) == [A, B]
    assert store.finished() == []
    store.mark_dsn_sent(A, [0])
    assert store.finished() == [A]
    events = [(e["action"], e["detail"]) for e in store.details(A)["events"]]  # type: ignore[index]
    assert events == [("delete", "recipients: a2@y.test"), ("bounce", "partner closed")]
    # Final recipients are never changed again.
    assert not ops.delete(store, ops.Selector.build(queue_ids=[A]), "ops", "").changes


def test_flush_makes_only_deferred_recipients_due(store: Store) -> None:
    due = {(d.queue_id, d.domain) for d in store.due(NOW)}
    assert due == {(A, "y.test"), (B, "x.test"), (C, "y.test")}
    result = ops.flush(store, ops.Selector(everything=True), "ops")
    assert [(c.queue_id, c.recipients) for c in result.changes] == [(A, ("a1@x.test",))]
    assert {(d.queue_id, d.domain) for d in store.due(NOW)} == {*due, (A, "x.test")}


def test_a_suspended_domain_is_not_due_until_resumed(store: Store) -> None:
    ops.flush(store, ops.Selector(everything=True), "ops")
    result = ops.suspend(store, "X.test", "ops", "partner maintenance")
    assert result.changed and result.domain == "x.test" and result.waiting == 2
    assert not ops.suspend(store, "x.test", "other", "again").changed
    assert {(d.queue_id, d.domain) for d in store.due(NOW)} == {(A, "y.test"), (C, "y.test")}
    assert [s["reason"] for s in store.suspended()] == ["partner maintenance"]
    assert store.listing()[0]["suspended"] == ["x.test"]
    store.record([Outcome(B, 0, "deferred", 451, "4.0.0", "later", next_ms=NOW * 3)])
    resumed = ops.resume(store, "x.test", "ops", "back")
    assert resumed.changed and resumed.due_now == 2  # A's and B's deferred ones
    assert {d.queue_id for d in store.due(NOW)} == {A, B, C}
    assert not ops.resume(store, "x.test", "ops", "").changed
    events = store.db.execute("SELECT action, domain, actor, detail FROM events").fetchall()
    assert [tuple(e) for e in events if e["domain"]] == [
        ("suspend", "x.test", "ops", "partner maintenance"),
        ("resume", "x.test", "ops", "back"),
    ]
    with pytest.raises(OperatorError, match="not a domain"):
        ops.suspend(store, "", "ops", "")


def test_summary_counts_messages_per_domain_in_qshape_age_buckets(store: Store) -> None:
    ops.suspend(store, "y.test", "ops", "")
    summary = ops.summarize(store, at_ms=NOW)
    assert summary.columns == (
        "T", "5", "10", "20", "40", "80", "160", "320", "640", "1280", "1280+"
    )  # fmt: skip
    rows = {r.domain: r for r in summary.rows}
    # A (180 min) in the 320 bucket, B (30 min) in 40, C (2 min) in 5;
    # D is delivered and not counted.
    assert rows["x.test"].counts == (2, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0)
    assert rows["y.test"].counts == (2, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0)
    assert rows["y.test"].suspended and not rows["x.test"].suspended
    assert summary.total.counts == (4, 1, 0, 0, 1, 0, 0, 2, 0, 0, 0)
    deferred = ops.summarize(store, ["deferred"], at_ms=NOW)
    assert [(r.domain, r.total) for r in deferred.rows] == [("x.test", 1)]
    old = ops.summarize(store, at_ms=NOW + 2000 * MIN)
    assert old.total.counts[-1] == 4  # all older than 1280 minutes
    assert len(ops.summarize(store, top=1, at_ms=NOW).rows) == 1


def test_headers_end_at_the_empty_line() -> None:
    msg = b"Received: x\r\nSubject: s\r\n\r\nbody\r\n\r\nmore\r\n"
    assert ops.headers(msg) == b"Received: x\r\nSubject: s\r\n\r\n"
    assert ops.headers(b"Subject: only\r\n") == b"Subject: only\r\n"


def test_every_change_is_on_the_audit_trail_and_a_dry_run_is_not(
    store: Store, tmp_path: Path
) -> None:
    ops.hold(store, ops.Selector(everything=True), "alice", "", dry_run=True)
    ops.bounce(store, ops.Selector.build(domains=["x.test"]), "alice (sudo)", "closed")
    ops.suspend(store, "y.test", "bob", "maintenance")
    mine = [
        (r.kind, r.queue_id, r.actor, r.data) for r in store.audit_records() if r.actor != "mxg"
    ]
    assert mine == [
        # A's other recipient (at y.test) goes on: the record says whom.
        ("bounce", A, "alice (sudo)", '{"detail":"closed (recipients: a1@x.test)"}'),
        ("bounce", B, "alice (sudo)", '{"detail":"closed"}'),
        ("suspend", "", "bob", '{"detail":"maintenance","domain":"y.test"}'),
    ]
    key = SigningKey.load_or_create(tmp_path)
    assert sign_checkpoint(store, key) is not None
    assert verify(store, key.verifier()).ok
