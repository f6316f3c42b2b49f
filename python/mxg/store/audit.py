"""The tamper-evident audit trail: every classification, state change,
delivery result and operator action, appended to a hash chain in the same
transaction as the change it records.

Record ``n`` holds the hash of record ``n-1`` (``prev``) and its own,
``SHA-256(prev || canonical(n, at_ms, kind, queue_id, actor, data))``.
Its number is part of what is hashed, so a record that is changed,
removed, inserted or moved breaks the chain at that point. A chain can be
recomputed by whoever can write the database, so the relay signs
checkpoints (``seq``, hash) at intervals with the gateway's Ed25519 key
(`mxg.signing`): a rewrite before the last checkpoint no longer matches
its signature. What follows the last checkpoint is covered by the chain
alone until the next one.

Writers are serialised by SQLite (``BEGIN IMMEDIATE``): each transaction
reads the chain's tail inside itself, so the relay and an operator's
command never fork it. Checkpoints outlive the records they cover, which
is what lets retention prune old records and keep the rest verifiable.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from mxg.store.db import Database
from mxg.store.records import now_ms

# The hash "before" the first record of a store.
GENESIS = bytes(32)
# What a checkpoint signature covers, so that it cannot be taken for a
# signature over anything else made with the same key.
CHECKPOINT_CONTEXT = b"mxg audit checkpoint v1\n"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One record to append: what happened (`kind`), to which message, who
    did it (``mxg`` for the relay itself, else the operator), and the
    details as a JSON object."""

    kind: str
    queue_id: str
    actor: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    at_ms: int
    kind: str
    queue_id: str
    actor: str
    data: str  # canonical JSON, as hashed
    prev: bytes
    hash: bytes

    @property
    def fields(self) -> Fields:
        return (self.seq, self.at_ms, self.kind, self.queue_id, self.actor, self.data)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    hash: bytes
    at_ms: int
    key_id: str
    signature: bytes


def canonical(entry: AuditEntry) -> str:
    """The data as it is stored and hashed: compact JSON. The stored text
    is what is hashed, so no canonical key order is needed to verify."""
    return orjson.dumps(entry.data).decode()


# What of a record is hashed, after the previous hash: its number, time,
# kind, message, actor and data.
Fields = tuple[int, int, str, str, str, str]


def record_hash(prev: bytes, fields: Fields) -> bytes:
    return hashlib.sha256(prev + orjson.dumps(fields)).digest()


def checkpoint_message(seq: int, chain_hash: bytes, at_ms: int) -> bytes:
    """What a checkpoint's signature covers."""
    return CHECKPOINT_CONTEXT + f"{seq}\n{chain_hash.hex()}\n{at_ms}\n".encode()


class AuditTrail(Database):
    """Appends to the chain and reads it back (`mxg.audit` verifies)."""

    def append_audit(self, db: sqlite3.Connection, entries: Sequence[AuditEntry]) -> None:
        """Appends `entries` inside the caller's open transaction."""
        if not entries:
            return
        seq, prev = self.audit_tail(db)
        t = now_ms()
        rows = []
        for e in entries:
            seq += 1
            fields = (seq, t, e.kind, e.queue_id, e.actor, canonical(e))
            digest = record_hash(prev, fields)
            rows.append((*fields, prev, digest))
            prev = digest
        db.executemany(
            "INSERT INTO audit (seq, at_ms, kind, queue_id, actor, data, prev, hash)"
            " VALUES (?,?,?,?,?,?,?,?)",
            rows,
        )

    def audit(self, entries: Sequence[AuditEntry]) -> None:
        """Appends `entries` in a transaction of their own."""
        with self.transaction() as db:
            self.append_audit(db, entries)

    def audit_tail(self, db: sqlite3.Connection | None = None) -> tuple[int, bytes]:
        """The last record's number and hash; where every record was
        pruned, the last checkpoint's; in a new store, (0, GENESIS)."""
        db = db or self.db
        row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            row = db.execute(
                "SELECT seq, hash FROM audit_checkpoints ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        return (int(row[0]), bytes(row[1])) if row else (0, GENESIS)

    def audit_records(self, after: int = 0) -> Iterator[AuditRecord]:
        for r in self.db.execute(
            "SELECT seq, at_ms, kind, queue_id, actor, data, prev, hash FROM audit"
            " WHERE seq > ? ORDER BY seq",
            (after,),
        ):
            yield AuditRecord(
                int(r[0]), int(r[1]), r[2], r[3], r[4], r[5], bytes(r[6]), bytes(r[7])
            )

    def sign_at(self, seq: int, sign: Callable[[bytes], tuple[str, bytes]]) -> Checkpoint | None:
        """Signs a checkpoint at record `seq` (its hash must still be in
        the chain); None when one is there already. `sign` signs a
        checkpoint message and says with which key (`SigningKey`)."""
        if self.db.execute("SELECT 1 FROM audit_checkpoints WHERE seq = ?", (seq,)).fetchone():
            return None
        (chain_hash,) = self.db.execute("SELECT hash FROM audit WHERE seq = ?", (seq,)).fetchone()
        at = now_ms()
        key_id, signature = sign(checkpoint_message(seq, bytes(chain_hash), at))
        checkpoint = Checkpoint(seq, bytes(chain_hash), at, key_id, signature)
        self.add_checkpoint(checkpoint)
        return checkpoint

    def last_checkpoint_seq(self) -> int:
        row = self.db.execute("SELECT MAX(seq) FROM audit_checkpoints").fetchone()
        return int(row[0] or 0)

    def audit_of(self, queue_id: str) -> list[tuple[int, str, bytes]]:
        """A message's records: number, kind and hash (for its proof)."""
        return [
            (int(r[0]), r[1], bytes(r[2]))
            for r in self.db.execute(
                "SELECT seq, kind, hash FROM audit WHERE queue_id=? ORDER BY seq", (queue_id,)
            )
        ]

    def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO audit_checkpoints (seq, hash, at_ms, key_id, signature)"
                " VALUES (?,?,?,?,?)",
                (
                    checkpoint.seq,
                    checkpoint.hash,
                    checkpoint.at_ms,
                    checkpoint.key_id,
                    checkpoint.signature,
                ),
            )

    def checkpoints(self) -> list[Checkpoint]:
        return [
            Checkpoint(int(r[0]), bytes(r[1]), int(r[2]), r[3], bytes(r[4]))
            for r in self.db.execute(
                "SELECT seq, hash, at_ms, key_id, signature FROM audit_checkpoints ORDER BY seq"
            )
        ]
