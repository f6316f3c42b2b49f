"""Checking the audit trail (``mxg audit verify``) and signing its
checkpoints (the relay, at intervals and when it stops; ``mxg audit
checkpoint``). The chain itself is written by the store
(`mxg.store.audit`), in the transactions it records, one block each.

Verification walks the blocks in order and names the first record that is
broken, and how:

- numbers missing from the sequence: those records were removed;
- a block whose ``prev`` is not the hash of the one before: a block
  before it was removed, inserted or moved, or this one was moved;
- a block whose content does not give its hash: a record in it was
  changed, removed or moved (its CRC-32 locators name which);
- a checkpoint whose signature does not verify, or whose hash is not the
  chain's at that point: the chain before it was rewritten (with every
  hash recomputed, which only the signature shows);
- a checkpoint beyond the last record: records at the end were removed.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, datetime

from mxg.signing import SigningKey, Verifier
from mxg.store import Store
from mxg.store.audit import (
    GENESIS,
    AuditBlock,
    Checkpoint,
    block_hash,
    checkpoint_message,
    locators_of,
    split_records,
)


@dataclass(frozen=True)
class Broken:
    """The first record that breaks the chain, and what is wrong."""

    seq: int
    what: str


@dataclass(frozen=True)
class Verdict:
    records: int
    first: int
    last: int
    checkpoints: int
    broken: Broken | None

    @property
    def ok(self) -> bool:
        return self.broken is None


def sign_checkpoint(store: Store, key: SigningKey) -> Checkpoint | None:
    """Signs the chain's tail, unless a checkpoint already covers it."""
    seq, _ = store.audit_tail()
    if seq == 0 or store.last_checkpoint_seq() >= seq:
        return None
    return store.sign_at(seq, lambda m: (key.key_id, key.sign(m)))


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bad_checkpoint(checkpoints: list[Checkpoint], verifier: Verifier) -> Broken | None:
    for cp in checkpoints:
        if cp.key_id != verifier.key_id:
            return Broken(
                cp.seq,
                f"checkpoint at record {cp.seq} was signed by key {cp.key_id}, "
                f"not by {verifier.key_id}",
            )
        if not verifier.verify(cp.signature, checkpoint_message(cp.seq, cp.hash, cp.at_ms)):
            return Broken(cp.seq, f"the signature of the checkpoint at record {cp.seq} is wrong")
    return None


def _changed_record(b: AuditBlock) -> Broken:
    """Which record of a block whose hash fails was changed: the first
    whose CRC-32 differs from the locator kept for it."""
    try:
        records = split_records(b.content())
    except zlib.error:
        return Broken(
            b.first_seq,
            f"records {b.first_seq} to {b.last_seq} were changed: "
            "their block no longer decompresses",
        )
    now = locators_of(records)
    for i in range(max(len(now), len(b.locators)) // 4):
        if now[4 * i : 4 * i + 4] != b.locators[4 * i : 4 * i + 4]:
            seq = b.first_seq + i
            if len(records) != b.last_seq - b.first_seq + 1:
                return Broken(seq, f"record {seq} was removed, inserted or moved")
            return Broken(seq, f"record {seq} was changed: its content does not match its hash")
    return Broken(
        b.first_seq,
        f"records {b.first_seq} to {b.last_seq} were changed: their block does not match its hash",
    )


def _intact(b: AuditBlock) -> bool:
    """The block's content gives its hash and holds as many records as
    its numbers say."""
    try:
        content = b.content()
    except zlib.error:
        return False
    return (
        block_hash(b.prev, b.first_seq, b.last_seq, b.at_ms, content) == b.hash
        and len(split_records(content)) == b.last_seq - b.first_seq + 1
    )


class _Walk:
    """The chain as far as it was checked: the last record's number and
    its block's hash, and the last checkpoint matched on the way."""

    def __init__(self, checkpoints: list[Checkpoint]) -> None:
        self.by_seq = {cp.seq: cp for cp in checkpoints}
        self.seq, self.prev, self.signed_up_to = 0, GENESIS, 0

    def start(self, first: AuditBlock) -> Broken | None:
        """Where blocks before the first were pruned, a checkpoint at the
        record before it is where the chain goes on from."""
        if first.first_seq == 1:
            return None
        base = self.by_seq.get(first.first_seq - 1)
        if base is None:
            return Broken(
                first.first_seq,
                f"records before {first.first_seq} are gone and no checkpoint covers them",
            )
        self.seq, self.prev, self.signed_up_to = base.seq, base.hash, base.seq
        return None

    def step(self, b: AuditBlock) -> Broken | None:
        if b.first_seq > self.seq + 1:
            return Broken(
                self.seq + 1,
                f"records {self.seq + 1} to {b.first_seq - 1} are missing (removed)",
            )
        if b.first_seq != self.seq + 1 or b.prev != self.prev:
            return Broken(
                b.first_seq,
                f"record {b.first_seq} does not follow record {self.seq}: records were "
                "removed, inserted or moved here",
            )
        if not _intact(b):
            return _changed_record(b)
        cp = self.by_seq.get(b.last_seq)
        if cp is not None:
            if cp.hash != b.hash:
                return Broken(
                    self.signed_up_to + 1,
                    f"records {self.signed_up_to + 1} to {b.last_seq} were rewritten: they no "
                    f"longer match the checkpoint signed at {_when(cp.at_ms)}",
                )
            self.signed_up_to = b.last_seq
        self.seq, self.prev = b.last_seq, b.hash
        return None

    def end(self) -> Broken | None:
        """A checkpoint beyond the last record: records at the end went;
        one between a block's first and last: the block was rewritten."""
        beyond = [cp for seq, cp in self.by_seq.items() if seq > self.seq]
        if not beyond:
            return None
        cp = max(beyond, key=lambda c: c.seq)
        return Broken(
            self.seq + 1,
            f"records {self.seq + 1} to {cp.seq} were removed: the checkpoint signed at "
            f"{_when(cp.at_ms)} covers them",
        )


def verify(store: Store, verifier: Verifier) -> Verdict:
    """Checks every block and checkpoint; see the module docstring."""
    checkpoints = store.checkpoints()
    walk = _Walk(checkpoints)
    count, first = 0, 0
    broken = _bad_checkpoint(checkpoints, verifier)
    if broken is None:
        for block in store.audit_blocks():
            if count == 0:
                first = block.first_seq
                broken = walk.start(block)
            count += block.last_seq - block.first_seq + 1
            broken = broken or walk.step(block)
            if broken is not None:
                break
        else:
            # Nothing left at all (everything pruned) is not a removal.
            broken = walk.end() if count else None
    return Verdict(count, first, walk.seq, len(checkpoints), broken)
