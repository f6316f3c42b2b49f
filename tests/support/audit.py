"""What someone with write access to the store can do to the audit trail,
record by record, although it is stored in compressed blocks: the tamper
tests change, remove, insert and move records this way and expect
`mxg audit verify` to name them. Nothing here fixes a block's hash or
locators unless the test asks for a recomputed chain."""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Callable
from typing import Any

import orjson

from mxg.store.audit import GENESIS, block_hash, locators_of, split_records

Record = list[Any]  # [kind, queue_id, actor, data]


def _block_of(db: sqlite3.Connection, seq: int) -> tuple[int, int, list[Record]]:
    first, last, blob = db.execute(
        "SELECT first_seq, last_seq, records FROM audit_blocks"
        " WHERE first_seq <= ? AND last_seq >= ?",
        (seq, seq),
    ).fetchone()
    return first, last, [orjson.loads(r) for r in split_records(zlib.decompress(blob))]


def _store_records(db: sqlite3.Connection, last: int, records: list[Record]) -> None:
    content = b"\n".join(orjson.dumps(r) for r in records)
    db.execute(
        "UPDATE audit_blocks SET records = ? WHERE last_seq = ?",
        (zlib.compress(content), last),
    )


def edit_record(db: sqlite3.Connection, seq: int, change: Callable[[Record], None]) -> None:
    """Changes record `seq` in place (kind, queue id, actor or data)."""
    first, last, records = _block_of(db, seq)
    change(records[seq - first])
    _store_records(db, last, records)


def remove_record(db: sqlite3.Connection, seq: int) -> None:
    """Takes record `seq` out of its block; the block keeps its numbers."""
    first, last, records = _block_of(db, seq)
    del records[seq - first]
    _store_records(db, last, records)


def insert_record(db: sqlite3.Connection, after: int, record: Record) -> None:
    """Squeezes a record in after record `after`, inside its block."""
    first, last, records = _block_of(db, after)
    records.insert(after - first + 1, record)
    _store_records(db, last, records)


def swap_records(db: sqlite3.Connection, a: int, b: int) -> None:
    """Swaps two records of one block."""
    first, last, records = _block_of(db, a)
    records[a - first], records[b - first] = records[b - first], records[a - first]
    _store_records(db, last, records)


def rewrite_chain(db: sqlite3.Connection, seq: int, change: Callable[[Record], None]) -> None:
    """The whole attack: change record `seq`, then recompute every block's
    locators and hash from there on, so that the chain alone looks intact
    (only a signed checkpoint tells)."""
    edit_record(db, seq, change)
    prev = GENESIS
    rows = db.execute(
        "SELECT first_seq, last_seq, at_ms, records FROM audit_blocks ORDER BY last_seq"
    ).fetchall()
    for first, last, at_ms, blob in rows:
        content = zlib.decompress(blob)
        digest = block_hash(prev, first, last, at_ms, content)
        db.execute(
            "UPDATE audit_blocks SET locators = ?, prev = ?, hash = ? WHERE last_seq = ?",
            (locators_of(split_records(content)), prev, digest, last),
        )
        prev = digest


def set_actor(actor: str) -> Callable[[Record], None]:
    def change(record: Record) -> None:
        record[2] = actor

    return change
