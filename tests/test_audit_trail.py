"""The tamper-evident audit trail (issue 16 item 3): every change the
store makes is chained, and `verify` names the first record that was
changed, removed, inserted or moved, also when the whole chain was
recomputed after the last signed checkpoint was made.

The store writes one block per transaction; the fixture's blocks are
records 1-3 (three messages received), 4-6 (two results and the message
done), then 7, 8 and 9 (hold, release, delete)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import zlib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mxg.audit_trail import sign_checkpoint, verify
from mxg.boundary import Envelope
from mxg.cli.common import operator
from mxg.signing import KEY_FILE, SigningKey, Verifier, load_public, public_pem
from mxg.store import NewMessage, Outcome, Store
from mxg.store.audit import GENESIS, Checkpoint, block_hash, checkpoint_message, locators_of
from tests.support.audit import (
    edit_record,
    insert_record,
    remove_record,
    rewrite_chain,
    set_actor,
    swap_records,
)
from tests.support.cli import mxg


def message(n: int, rcpts: int = 2) -> NewMessage:
    env = msgspec.convert(
        {
            "queue_id": f"Q{n:04d}",
            "received_ms": 1,
            "sender": "a@sender.test",
            "recipients": [{"address": f"r{i}@dest.test"} for i in range(rcpts)],
            "origin": "smtp",
            "size": 100,
        },
        Envelope,
    )
    return NewMessage(env, "normal", {"fired": [{"rule": "default", "why": "x"}]}, None)


def sent(qid: str, idx: int) -> Outcome:
    return Outcome(qid, idx, "sent", 250, "2.0.0", "Ok queued as X1", "mx.dest.test", "127.0.0.1")


@pytest.fixture
def store(store_at: Path | str) -> Store:
    s = Store(store_at)
    s.add_messages([message(n) for n in range(3)])
    s.record([sent("Q0000", 0), sent("Q0000", 1)])
    s.hold("Q0001", "alice", "look at it")
    s.release("Q0001", "alice", "fine")
    s.delete("Q0002", "bob", "sent by mistake")
    return s


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    return SigningKey.load_or_create(tmp_path)


def kinds(store: Store) -> list[str]:
    return [r.kind for r in store.audit_records()]


def test_every_change_is_recorded_in_order_and_the_chain_verifies(
    store: Store, key: SigningKey
) -> None:
    assert kinds(store) == [
        "received",
        "received",
        "received",
        "result",
        "result",
        "done",
        "hold",
        "release",
        "delete",
    ]
    first = next(store.audit_records())
    assert first.seq == 1 and first.block == 3
    assert [(b.first_seq, b.last_seq) for b in store.audit_blocks()] == [
        (1, 3),
        (4, 6),
        (7, 7),
        (8, 8),
        (9, 9),
    ]
    assert next(store.audit_blocks()).prev == GENESIS
    assert '"rules":["default"]' in first.data and '"class":"normal"' in first.data
    assert sign_checkpoint(store, key) is not None
    assert sign_checkpoint(store, key) is None, "the tail is covered already"
    verdict = verify(store, key.verifier())
    assert verdict.ok and (verdict.records, verdict.first, verdict.last) == (9, 1, 9)
    assert verdict.checkpoints == 1


def test_a_changed_record_is_named(store: Store, key: SigningKey) -> None:
    def reword(record: list[Any]) -> None:
        record[3]["detail"] = "routine"

    edit_record(store.db, 9, reword)
    broken = verify(store, key.verifier()).broken
    assert broken is not None and broken.seq == 9 and "changed" in broken.what


def test_a_changed_record_inside_a_block_is_named(store: Store, key: SigningKey) -> None:
    edit_record(store.db, 5, set_actor("mallory"))
    broken = verify(store, key.verifier()).broken
    assert broken is not None and broken.seq == 5 and "was changed" in broken.what


def test_a_removed_block_is_named(store: Store, key: SigningKey) -> None:
    store.db.execute("DELETE FROM audit_blocks WHERE last_seq = 6")
    broken = verify(store, key.verifier()).broken
    assert broken is not None and broken.seq == 4 and "missing" in broken.what


def test_a_record_removed_from_its_block_is_named(store: Store, key: SigningKey) -> None:
    remove_record(store.db, 5)
    broken = verify(store, key.verifier()).broken
    assert broken is not None and broken.seq == 5 and "removed" in broken.what


def test_records_removed_and_renumbered_are_found(store: Store, key: SigningKey) -> None:
    store.db.execute("DELETE FROM audit_blocks WHERE last_seq = 6")
    store.db.execute(
        "UPDATE audit_blocks SET first_seq = first_seq - 3, last_seq = last_seq - 3"
        " WHERE last_seq > 6"
    )
    broken = verify(store, key.verifier()).broken
    assert broken is not None and broken.seq == 4 and "does not follow" in broken.what


def test_moved_records_are_found(store: Store, key: SigningKey) -> None:
    # Swap blocks 7 and 8 (hold and release), hashes and all.
    rows = {
        r[0]: r[1:]
        for r in store.db.execute(
            "SELECT last_seq, at_ms, records, locators, prev, hash FROM audit_blocks"
            " WHERE last_seq IN (7, 8)"
        )
    }
    for seq, other in ((7, 8), (8, 7)):
        store.db.execute(
            "UPDATE audit_blocks SET at_ms=?, records=?, locators=?, prev=?, hash=?"
            " WHERE last_seq=?",
            (*rows[other], seq),
        )
    broken = verify(store, key.verifier()).broken
    assert broken is not None and broken.seq == 7


def test_records_moved_inside_a_block_are_found(store: Store, key: SigningKey) -> None:
    swap_records(store.db, 4, 5)
    broken = verify(store, key.verifier()).broken
    assert broken is not None and broken.seq == 4


def test_an_inserted_record_is_found(store: Store, key: SigningKey) -> None:
    insert_record(store.db, 5, ["release", "Q0001", "mallory", {"detail": "nothing to see"}])
    broken = verify(store, key.verifier()).broken
    assert broken is not None and broken.seq == 6 and "inserted" in broken.what


def test_an_inserted_block_is_found(store: Store, key: SigningKey) -> None:
    # A block of the forger's making after record 6, the later ones
    # renumbered to make room.
    for shift in (100, -99):  # two steps: last_seq is unique at every step
        store.db.execute(
            "UPDATE audit_blocks SET first_seq = first_seq + ?, last_seq = last_seq + ?"
            " WHERE last_seq > 6",
            (shift, shift),
        )
    prev = store.db.execute("SELECT hash FROM audit_blocks WHERE last_seq = 6").fetchone()[0]
    content = b'["release","Q0001","mallory",{}]'
    store.db.execute(
        "INSERT INTO audit_blocks (last_seq, first_seq, at_ms, records, locators, prev, hash)"
        " VALUES (7, 7, 1, ?, ?, ?, ?)",
        (zlib.compress(content), locators_of([content]), prev, block_hash(prev, 7, 7, 1, content)),
    )
    broken = verify(store, key.verifier()).broken
    assert broken is not None and broken.seq == 8 and "does not follow" in broken.what


def test_a_recomputed_chain_is_caught_by_the_signed_checkpoint(
    store: Store, key: SigningKey
) -> None:
    sign_checkpoint(store, key)
    rewrite_chain(store.db, 7, set_actor("someone else"))
    broken = verify(store, key.verifier()).broken
    assert broken is not None and broken.seq == 1 and "rewritten" in broken.what


def test_records_removed_from_the_end_are_caught_by_the_checkpoint(
    store: Store, key: SigningKey
) -> None:
    sign_checkpoint(store, key)
    store.db.execute("DELETE FROM audit_blocks WHERE last_seq >= 8")
    broken = verify(store, key.verifier()).broken
    assert broken is not None and broken.seq == 8 and "removed" in broken.what


def test_a_forged_checkpoint_or_another_key_is_refused(
    store: Store, key: SigningKey, tmp_path: Path
) -> None:
    sign_checkpoint(store, key)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = SigningKey.load_or_create(elsewhere)
    broken = verify(store, other.verifier()).broken
    assert broken is not None and "signed by key" in broken.what
    store.db.execute("UPDATE audit_checkpoints SET at_ms = at_ms + 1")
    broken = verify(store, key.verifier()).broken
    assert broken is not None and "signature" in broken.what


def test_pruned_records_need_a_checkpoint_at_the_boundary(store: Store, key: SigningKey) -> None:
    store.add_messages([message(9)])
    # A checkpoint at record 6, then records 1 to 6 pruned: still verifiable.
    seq6 = store.db.execute("SELECT hash FROM audit_blocks WHERE last_seq = 6").fetchone()[0]
    store.add_checkpoint(
        Checkpoint(6, seq6, 7, key.key_id, key.sign(checkpoint_message(6, seq6, 7)))
    )
    store.db.execute("DELETE FROM audit_blocks WHERE last_seq <= 6")
    verdict = verify(store, key.verifier())
    assert verdict.ok and verdict.first == 7
    # Without the checkpoint, the gap cannot be told from a removal.
    store.db.execute("DELETE FROM audit_checkpoints")
    broken = verify(store, key.verifier()).broken
    assert broken is not None and broken.seq == 7 and "no checkpoint" in broken.what


def test_the_chain_continues_after_everything_was_pruned(store: Store, key: SigningKey) -> None:
    cp = sign_checkpoint(store, key)
    assert cp is not None
    store.db.execute("DELETE FROM audit_blocks")
    store.add_messages([message(7)])
    block = next(store.audit_blocks())
    assert (block.first_seq, block.prev) == (cp.seq + 1, cp.hash)
    assert verify(store, key.verifier()).ok


def test_the_signing_key_is_private_and_its_public_half_verifies_offline(
    store: Store, key: SigningKey, tmp_path: Path
) -> None:
    mode = stat.S_IMODE(os.stat(tmp_path / KEY_FILE).st_mode)
    assert mode == 0o600
    assert SigningKey.load(tmp_path).key_id == key.key_id, "made once, then loaded"
    pub = tmp_path / "mxg.pub"
    pub.write_bytes(public_pem(key.public))
    sign_checkpoint(store, key)
    offline = Verifier(load_public(pub))
    assert offline.key_id == key.key_id
    assert offline.key_id == hashlib.sha256(key.public.public_bytes_raw()).hexdigest()[:16]
    assert verify(store, offline).ok


def test_the_real_operator_behind_sudo_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUDO_USER", "alice")
    if os.geteuid() == 0:
        assert operator() == "alice (sudo)"
    else:
        assert operator() != "alice (sudo)", "SUDO_USER counts only when running as root"


def test_mxg_audit_verify_exits_3_and_names_the_record(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    conf = tmp_path / "mxg.toml"
    conf.write_text(f'[data]\ndirectory = "{data}"\n')
    s = Store(data / "queue.db")
    s.add_messages([message(n) for n in range(2)])
    key = SigningKey.load_or_create(data)
    sign_checkpoint(s, key)

    ok = mxg(conf, "audit", "verify")
    assert ok.returncode == 0 and "intact: 2 audit records" in ok.stdout, ok.stderr
    exported = mxg(conf, "keys", "export")
    assert exported.returncode == 0 and "BEGIN PUBLIC KEY" in exported.stdout
    (tmp_path / "mxg.pub").write_text(exported.stdout)
    edit_record(s.db, 2, set_actor("x"))
    broken = mxg(conf, "audit", "verify", "--key", str(tmp_path / "mxg.pub"))
    assert broken.returncode == 3
    assert "BROKEN at record 2" in broken.stdout and "changed" in broken.stdout


def test_a_store_with_the_unreleased_record_chain_starts_a_new_one(
    tmp_path: Path, key: SigningKey
) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE audit (seq INTEGER PRIMARY KEY, at_ms INTEGER, kind TEXT, queue_id TEXT,"
        " actor TEXT, data TEXT, prev BLOB, hash BLOB)"
    )
    db.execute("INSERT INTO audit VALUES (1, 1, 'received', 'Q1', 'mxg', '{}', x'00', x'01')")
    db.execute(
        "CREATE TABLE audit_checkpoints (seq INTEGER PRIMARY KEY, hash BLOB, at_ms INTEGER,"
        " key_id TEXT, signature BLOB)"
    )
    db.execute("INSERT INTO audit_checkpoints VALUES (1, x'01', 1, 'k', x'02')")
    db.commit()
    db.close()
    store = Store(path)
    tables = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master")}
    assert {"audit_records_v0", "audit_checkpoints_v0", "audit_blocks"} <= tables
    store.add_messages([message(1)])
    assert [r.seq for r in store.audit_records()] == [1]
    assert sign_checkpoint(store, key) is not None
    assert verify(store, key.verifier()).ok
