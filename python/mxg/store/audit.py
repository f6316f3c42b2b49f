"""The tamper-evident audit trail: every classification, state change,
delivery result and operator action, appended to a hash chain in the same
transaction as the change it records.

Records are numbered one by one, and written as one *block* per
transaction (table ``audit_blocks``): the records' JSON, compressed, with
the hash of the block before (``prev``) and its own,
``SHA-256(prev || first, last, time || the records' JSON)``. The numbers
are part of what is hashed, so a record that is changed, removed, inserted
or moved breaks the chain at its block. Each block also keeps a CRC-32 of
each of its records (``locators``), so that verification can name the
record that changed, not only its block; the hash, not the CRC, is what
makes a change evident.

Why blocks: the relay writes three or more records per message at
thousands of messages a second. One row per record doubled the bytes the
store writes per message; a block per transaction, compressed, costs
about a tenth of that and one hash instead of one per record
(docs/audit.md gives the figures).

A chain can be recomputed by whoever can write the database, so the relay
signs checkpoints (a block's last number, its hash) at intervals with the
gateway's Ed25519 key (`mxg.signing`): a rewrite before the last
checkpoint no longer matches its signature. What follows the last
checkpoint is covered by the chain alone until the next one.

Writers are serialised by SQLite (``BEGIN IMMEDIATE``): each transaction
reads the chain's tail inside itself, so the relay and an operator's
command never fork it. Checkpoints outlive the blocks they cover, which is
what lets retention prune old blocks and keep the rest verifiable.
"""

from __future__ import annotations

import hashlib
import sqlite3
import zlib
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
# What a block's hash covers besides the records, so that it is never
# taken for a hash of anything else.
BLOCK_CONTEXT = b"mxg audit block v1\n"
# zlib's fastest level: the records of a transaction are alike, level 1
# already shrinks them about sixfold, and this runs for every message.
_COMPRESSION = 1


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
    """One record as read back, with the block that holds it."""

    seq: int
    at_ms: int
    kind: str
    queue_id: str
    actor: str
    data: str  # JSON, as hashed
    block: int  # the block's last record number
    block_hash: bytes


@dataclass(frozen=True, slots=True)
class AuditBlock:
    first_seq: int
    last_seq: int
    at_ms: int
    records: bytes  # zlib-compressed, as stored
    locators: bytes
    prev: bytes
    hash: bytes

    def content(self) -> bytes:
        """The records' JSON (raises zlib.error when it was mangled)."""
        return zlib.decompress(self.records)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    hash: bytes
    at_ms: int
    key_id: str
    signature: bytes


def record_json(entry: AuditEntry) -> bytes:
    """One record as stored and hashed: compact JSON. The stored text is
    what is hashed, so no canonical key order is needed to verify."""
    return orjson.dumps((entry.kind, entry.queue_id, entry.actor, entry.data))


def _one_line(record: bytes) -> bytes:
    """Compact JSON has no raw newline, but embedded evidence (an
    orjson.Fragment from the engine) is taken as it comes: re-encode the
    rare record that has one, so the block splits back into records."""
    return orjson.dumps(orjson.loads(record)) if b"\n" in record else record


def block_hash(prev: bytes, first: int, last: int, at_ms: int, content: bytes) -> bytes:
    header = BLOCK_CONTEXT + f"{first}\n{last}\n{at_ms}\n".encode()
    return hashlib.sha256(prev + header + content).digest()


def locators_of(records: Sequence[bytes]) -> bytes:
    return b"".join(zlib.crc32(r).to_bytes(4, "big") for r in records)


def split_records(content: bytes) -> list[bytes]:
    """A block's content → each record's JSON, as it was joined."""
    return content.split(b"\n") if content else []


def checkpoint_message(seq: int, chain_hash: bytes, at_ms: int) -> bytes:
    """What a checkpoint's signature covers."""
    return CHECKPOINT_CONTEXT + f"{seq}\n{chain_hash.hex()}\n{at_ms}\n".encode()


@dataclass(frozen=True, slots=True)
class NewBlock:
    """A block to append: its `audit_blocks` row, in that table's column
    order (last_seq, first_seq, at_ms, records, locators, prev, hash),
    and the messages its records are about (`audit_messages`)."""

    row: tuple[int, int, int, bytes, bytes, bytes, bytes]
    queue_ids: list[str]

    @property
    def last_seq(self) -> int:
        return self.row[0]

    @property
    def hash(self) -> bytes:
        return self.row[6]


def new_block(entries: Sequence[AuditEntry], last: int, prev: bytes) -> NewBlock:
    """`entries` as the block after record `last` of hash `prev`. Records
    are joined by newlines: compact JSON holds none, so the content
    splits back into exactly these records."""
    first, last = last + 1, last + len(entries)
    t = now_ms()
    records = [_one_line(record_json(e)) for e in entries]
    content = b"\n".join(records)
    row = (
        last,
        first,
        t,
        zlib.compress(content, _COMPRESSION),
        locators_of(records),
        prev,
        block_hash(prev, first, last, t, content),
    )
    return NewBlock(row, sorted({e.queue_id for e in entries if e.queue_id}))


class AuditTrail(Database):
    """Appends to the chain and reads it back (`mxg.audit` verifies)."""

    def append_audit(self, db: sqlite3.Connection, entries: Sequence[AuditEntry]) -> None:
        """Appends `entries`, as one block, inside the caller's open
        transaction."""
        if not entries:
            return
        block = self.next_block(db, entries)
        db.execute(
            "INSERT INTO audit_blocks (last_seq, first_seq, at_ms, records, locators, prev, hash)"
            " VALUES (?,?,?,?,?,?,?)",
            block.row,
        )
        db.executemany(
            "INSERT OR IGNORE INTO audit_messages (queue_id, last_seq) VALUES (?,?)",
            [(q, block.last_seq) for q in block.queue_ids],
        )

    def next_block(self, db: sqlite3.Connection, entries: Sequence[AuditEntry]) -> NewBlock:
        """`entries` as the block to append next inside the caller's open
        transaction, which then holds the writers' lock; the caller
        inserts it (`append_audit`, or a statement of its own)."""
        self.writers_lock(db)
        # A transaction that may retry appends after the tail this store
        # wrote last, unread (`Database.transaction`, `remembered_tail`).
        block = new_block(entries, *(self.remembered_tail() or self.audit_tail(db)))
        self.appended_tail(block.last_seq, block.hash)
        return block

    def audit(self, entries: Sequence[AuditEntry]) -> None:
        """Appends `entries` in a transaction of their own."""
        with self.transaction() as db:
            self.append_audit(db, entries)

    def audit_tail(self, db: sqlite3.Connection | None = None) -> tuple[int, bytes]:
        """The last record's number and its block's hash; where every block
        was pruned, the last checkpoint's; in a new store, (0, GENESIS)."""
        db = db or self.db
        row = db.execute(
            "SELECT last_seq, hash FROM audit_blocks ORDER BY last_seq DESC LIMIT 1"
        ).fetchone()
        if row is None:
            row = db.execute(
                "SELECT seq, hash FROM audit_checkpoints ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        return (int(row[0]), bytes(row[1])) if row else (0, GENESIS)

    def audit_blocks(self, after: int = 0) -> Iterator[AuditBlock]:
        """Blocks in chain order, from the one holding record `after` + 1."""
        for r in self.db.execute(
            "SELECT first_seq, last_seq, at_ms, records, locators, prev, hash FROM audit_blocks"
            " WHERE last_seq > ? ORDER BY last_seq",
            (after,),
        ):
            yield AuditBlock(
                int(r[0]), int(r[1]), int(r[2]), bytes(r[3]), bytes(r[4]), bytes(r[5]), bytes(r[6])
            )

    def audit_records(self, after: int = 0) -> Iterator[AuditRecord]:
        """Records in order (of blocks that verify or not: `mxg audit
        verify` is what checks them)."""
        for b in self.audit_blocks(after):
            yield from _records_of(b, after)

    def audit_of(self, queue_id: str) -> list[AuditRecord]:
        """A message's records (for its proof), found through
        ``audit_messages`` rather than by reading the whole trail."""
        out: list[AuditRecord] = []
        for (last,) in self.db.execute(
            "SELECT last_seq FROM audit_messages WHERE queue_id = ? ORDER BY last_seq",
            (queue_id,),
        ).fetchall():
            # The block may have been pruned while the message stayed.
            block = next(self.audit_blocks(int(last) - 1), None)
            if block is not None and block.last_seq == last:
                out += [r for r in _records_of(block) if r.queue_id == queue_id]
        return out

    def sign_at(self, seq: int, sign: Callable[[bytes], tuple[str, bytes]]) -> Checkpoint | None:
        """Signs a checkpoint at record `seq` (its hash must still be in
        the chain); None when one is there already. `sign` signs a
        checkpoint message and says with which key (`SigningKey`)."""
        if self.db.execute("SELECT 1 FROM audit_checkpoints WHERE seq = ?", (seq,)).fetchone():
            return None
        row = self.db.execute("SELECT hash FROM audit_blocks WHERE last_seq = ?", (seq,)).fetchone()
        if row is None:
            raise ValueError(f"no audit block ends at record {seq}")
        chain_hash = row[0]
        at = now_ms()
        key_id, signature = sign(checkpoint_message(seq, bytes(chain_hash), at))
        checkpoint = Checkpoint(seq, bytes(chain_hash), at, key_id, signature)
        self.add_checkpoint(checkpoint)
        return checkpoint

    def last_checkpoint_seq(self) -> int:
        row = self.db.execute("SELECT MAX(seq) FROM audit_checkpoints").fetchone()
        return int(row[0] or 0)

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


def _records_of(b: AuditBlock, after: int = 0) -> Iterator[AuditRecord]:
    for i, raw in enumerate(split_records(b.content())):
        seq = b.first_seq + i
        if seq <= after:
            continue
        kind, queue_id, actor, data = orjson.loads(raw)
        yield AuditRecord(
            seq, b.at_ms, kind, queue_id, actor, orjson.dumps(data).decode(), b.last_seq, b.hash
        )
