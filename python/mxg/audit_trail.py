"""Checking the audit trail (``mxg audit verify``) and signing its
checkpoints (the relay, at intervals and when it stops; ``mxg audit
checkpoint``). The chain itself is written by the store
(`mxg.store.audit`), in the transactions it records.

Verification walks the records in order and names the first that is
broken, and how:

- a number missing from the sequence: that record was removed;
- a record whose ``prev`` is not the hash of the one before: a record
  before it was removed, inserted or moved, or this one was moved;
- a record whose content does not give its hash: it was changed;
- a checkpoint whose signature does not verify, or whose hash is not the
  chain's at that point: the chain before it was rewritten (with every
  hash recomputed, which only the signature shows);
- a checkpoint beyond the last record: records at the end were removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from mxg.signing import SigningKey, Verifier
from mxg.store import Store
from mxg.store.audit import (
    GENESIS,
    AuditRecord,
    Checkpoint,
    checkpoint_message,
    record_hash,
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


class _Walk:
    """The chain as far as it was checked: the last record's number and
    hash, and the last checkpoint matched on the way."""

    def __init__(self, checkpoints: list[Checkpoint]) -> None:
        self.by_seq = {cp.seq: cp for cp in checkpoints}
        self.seq, self.prev, self.signed_up_to = 0, GENESIS, 0

    def start(self, first: AuditRecord) -> Broken | None:
        """Where records before the first were pruned, a checkpoint at the
        one before it is where the chain goes on from."""
        if first.seq == 1:
            return None
        base = self.by_seq.get(first.seq - 1)
        if base is None:
            return Broken(
                first.seq, f"records before {first.seq} are gone and no checkpoint covers them"
            )
        self.seq, self.prev, self.signed_up_to = base.seq, base.hash, base.seq
        return None

    def step(self, r: AuditRecord) -> Broken | None:
        if r.seq != self.seq + 1:
            return Broken(self.seq + 1, f"record {self.seq + 1} is missing (removed)")
        if r.prev != self.prev:
            return Broken(
                r.seq,
                f"record {r.seq} does not follow record {r.seq - 1}: a record was removed, "
                "inserted or moved here",
            )
        if record_hash(r.prev, r.fields) != r.hash:
            return Broken(r.seq, f"record {r.seq} was changed: its content does not match its hash")
        cp = self.by_seq.get(r.seq)
        if cp is not None:
            if cp.hash != r.hash:
                return Broken(
                    self.signed_up_to + 1,
                    f"records {self.signed_up_to + 1} to {r.seq} were rewritten: they no "
                    f"longer match the checkpoint signed at {_when(cp.at_ms)}",
                )
            self.signed_up_to = r.seq
        self.seq, self.prev = r.seq, r.hash
        return None

    def end(self) -> Broken | None:
        """A checkpoint beyond the last record: records at the end went."""
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
    """Checks every record and checkpoint; see the module docstring."""
    checkpoints = store.checkpoints()
    walk = _Walk(checkpoints)
    count, first = 0, 0
    broken = _bad_checkpoint(checkpoints, verifier)
    if broken is None:
        for record in store.audit_records():
            if count == 0:
                first = record.seq
                broken = walk.start(record)
            count += 1
            broken = broken or walk.step(record)
            if broken is not None:
                break
        else:
            # Nothing left at all (everything pruned) is not a removal.
            broken = walk.end() if count else None
    return Verdict(count, first, walk.seq, len(checkpoints), broken)
