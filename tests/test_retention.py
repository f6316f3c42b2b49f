"""Retention (issue 16 item 4): finished messages older than `keep` go
with their evidence and audit records, the rest stays, the audit trail
stays verifiable across the prune, and the scheduler's queries stay on
indexes that hold only what still waits."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mxg.audit_trail import sign_checkpoint, verify
from mxg.signing import SigningKey
from mxg.store import Store
from tests.support.cli import mxg
from tests.test_evidence import dane_sent, deferred, message

DAY = 86_400_000


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    return SigningKey.load_or_create(tmp_path)


def old_and_new(store_at: Path | str) -> Store:
    """OLD finished long ago; WAIT (as old) still deferred; NEW finished."""
    s = Store(store_at)
    s.add_messages([message("OLD", 1 * DAY, "a@s.test", ["x@dane.test"], "high")])
    s.add_messages([message("WAIT", 1 * DAY, "a@s.test", ["y@slow.test"], "normal")])
    s.record([dane_sent("OLD", 0), deferred("WAIT", 0, "later", 99)])
    s.hold("OLD", "alice", "was looked at")  # no effect on a done message
    # Backdate what happened so far: it is all older than the cutoff.
    s.db.execute("UPDATE audit_blocks SET at_ms = ?", (2 * DAY,))
    s.add_messages([message("NEW", 50 * DAY, "a@s.test", ["z@dane.test"], "normal")])
    s.record([dane_sent("NEW", 0)])
    return s


def sign(key: SigningKey):  # type: ignore[no-untyped-def]
    return lambda m: (key.key_id, key.sign(m))


def ids(store: Store, table: str) -> set[str]:
    return {r[0] for r in store.db.execute(f"SELECT DISTINCT queue_id FROM {table}")}


def test_old_finished_messages_go_with_their_evidence_and_the_rest_stays(
    store_at: Path | str, key: SigningKey
) -> None:
    store = old_and_new(store_at)
    cutoff = 10 * DAY
    planned = store.prune(cutoff, sign(key), dry_run=True)
    assert (planned.messages, planned.queue_ids) == (1, ["OLD"])
    assert ids(store, "messages") == {"OLD", "WAIT", "NEW"}, "a dry run changes nothing"

    pruned = store.prune(cutoff, sign(key), actor="alice")
    assert pruned.messages == 1 and pruned.audit_records == pruned.checkpoint_seq
    for table in ("messages", "recipients", "attempts"):
        assert "OLD" not in ids(store, table), table
        assert {"WAIT", "NEW"} <= ids(store, table), table
    assert "OLD" not in ids(store, "events")
    kinds = [r.kind for r in store.audit_records()]
    assert kinds[-1] == "pruned" and "received" in kinds, "NEW's records stay"
    first = next(store.audit_records())
    assert first.seq == pruned.checkpoint_seq + 1  # type: ignore[operator]


def test_the_audit_trail_stays_verifiable_across_pruning(
    store_at: Path | str, key: SigningKey
) -> None:
    store = old_and_new(store_at)
    sign_checkpoint(store, key)
    store.prune(10 * DAY, sign(key))
    verdict = verify(store, key.verifier())
    assert verdict.ok, verdict.broken
    assert verdict.first > 1
    # Pruned again later, with nothing new: still verifiable.
    store.prune(100 * DAY, sign(key))
    assert verify(store, key.verifier()).ok
    # And a removal beyond what the prune covered is still caught.
    first = next(store.audit_blocks()).last_seq
    store.db.execute("DELETE FROM audit_blocks WHERE last_seq = ?", (first,))
    assert not verify(store, key.verifier()).ok


def test_the_schedulers_queries_use_indexes_of_what_still_waits(tmp_path: Path) -> None:
    store = Store(tmp_path / "queue.db")
    names = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"recipients_waiting", "messages_open_age"} <= names
    assert not {"recipients_due", "messages_state", "messages_open"} & names
    plan = store.db.execute(
        "EXPLAIN QUERY PLAN SELECT r.queue_id FROM recipients r JOIN messages m"
        " ON m.queue_id = r.queue_id WHERE r.status IN ('pending','deferred') AND r.status = ?"
        " AND r.next_ms <= ? AND +m.state='active' ORDER BY r.next_ms LIMIT ?",
        ("pending", 0, 10),
    ).fetchall()
    assert any("recipients_waiting" in step[3] for step in plan), [tuple(s) for s in plan]
    # The due query as the store runs it finds what waits, and only that.
    store.add_messages([message("Q1", 1, "a@s.test", ["x@a.test", "y@b.test"], "normal")])
    store.record([dane_sent("Q1", 0)])
    assert [(d.queue_id, d.indexes) for d in store.due(10**13)] == [("Q1", (1,))]


def test_an_older_store_gets_the_partial_indexes(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP INDEX recipients_waiting")
    db.execute("CREATE INDEX recipients_due ON recipients(status, next_ms)")
    db.commit()
    db.close()
    names = {
        r[0] for r in Store(path).db.execute("SELECT name FROM sqlite_master WHERE type='index'")
    }
    assert "recipients_waiting" in names and "recipients_due" not in names


def test_mxg_prune_on_the_command_line(
    tmp_path: Path, store_at: Path | str, key: SigningKey
) -> None:
    # store_at's SQLite file is tmp_path/q.db; the relay's is queue.db.
    url = store_at if isinstance(store_at, str) else ""
    old_and_new(url or tmp_path / "queue.db").close()
    conf = tmp_path / "mxg.toml"
    conf.write_text(f'[data]\ndirectory = "{tmp_path}"\nstore = "{url}"\n[retention]\nkeep = "0"\n')

    off = mxg(conf, "prune")
    assert off.returncode == 1 and "keep is 0" in off.stderr
    dry = mxg(conf, "prune", "--keep", "1d", "--dry-run")
    # Both finished messages are years old now; the deferred one stays.
    assert dry.returncode == 0 and dry.stdout.startswith("would remove 2 finished message")
    done = mxg(conf, "prune", "--keep", "1d")
    assert done.returncode == 0 and done.stdout.startswith("removed 2 finished message")
    assert "covered by a checkpoint at record" in done.stdout
    assert mxg(conf, "audit", "verify").returncode == 0
    assert mxg(conf, "prune", "--keep", "soon").returncode == 1
