"""Indexing accepted messages: one batch of received messages in three
statements, and the rows the pipeline plans from before the index has
them (`envelope_rows`), kept beside the insert so the two shapes change
together."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import orjson

from mxg.store.audit import AuditEntry, AuditTrail, new_block
from mxg.store.db import _MAX_PARAMS, WRITER_LOCK, _chunks
from mxg.store.postgres import PgConnection
from mxg.store.records import NewMessage, domain_of
from mxg.store.suspend import SUSPENDED

# A spool file from this size on is stored by itself, in pieces
# (`store_bodies`); below it, the batch's bodies go in one statement.
LARGE_BODY = 1 << 20


class Intake(AuditTrail):
    """The store's intake: new messages and their recipients."""

    # On PostgreSQL: reads spooled messages' files as they are on disk
    # (`Engine.read_raw_many`), None for one that is gone; set by the
    # relay. Every message indexed there is stored with these bytes
    # (`spool_bodies`).
    read_raws: Callable[[list[str]], list[bytes | None]] | None = None

    def add_messages(self, messages: Iterable[NewMessage], *, durable: bool = True) -> list[str]:
        """Indexes accepted messages; returns the ids that were new. Not
        fsynced on its own on SQLite: the spool already holds these
        messages, and a lost index row is rebuilt from it at the next
        start. On PostgreSQL each message's spool file goes into
        `spool_bodies` in the same transaction (docs/cluster.md, "Bodies
        before the 250"); a message whose file is gone (its client was
        refused meanwhile) is not indexed. That commit is durable when it
        returns, unless `durable` is False: then it does not wait for the
        WAL, and the caller makes it durable with a flush (`flusher`, on
        the server start `commit_start` names) before it acknowledges."""
        messages = list(messages)
        bodies: dict[str, bytes] = {}
        if self.dialect.postgres and self.read_raws is not None:
            messages, bodies = self._with_bodies(messages)
            if durable:
                # A durable commit: the client's 250 waits for it (rule 9).
                return self._add(messages, bodies)[0]
            # Messages the engine just received: none is indexed yet.
            with self._not_synced():
                return self.retrying(lambda: self._add(messages, bodies, fresh=True))[0]
        with self._not_synced():
            return self._add(messages, bodies)[0]

    def add_received(self, messages: Iterable[NewMessage]) -> tuple[list[str], frozenset[str]]:
        """On PostgreSQL: `add_messages` for messages the engine just
        received, without waiting for the WAL; also returns the suspended
        domains as of that commit (their dispatch's first question), read
        in the same round trip."""
        messages, bodies = self._with_bodies(list(messages))
        with self._not_synced():
            ids, suspended = self.retrying(
                lambda: (
                    self._add_in_one(messages, bodies)
                    or self._add(messages, bodies, fresh=True, suspended=True)
                )
            )
        return ids, suspended

    def _add_in_one(
        self, messages: list[NewMessage], bodies: Mapping[str, bytes]
    ) -> tuple[list[str], frozenset[str]] | None:
        """`_add` of messages the engine just received as one statement
        (`received_statement`), its own transaction; None when it cannot
        be: no message, a large body (COPY), or no audit tail to append
        after unread (the first batch, or another writer appended lately):
        `_add` then does it in a transaction of its own."""
        new = list({m.queue_id: m for m in messages}.values())
        if not new or any(len(bodies[m.queue_id]) >= LARGE_BODY for m in new):
            return None
        conn = cast(PgConnection, self.db)
        entries = [received_entry(m) for m in new]

        def build() -> tuple[str, list[Any]] | None:
            tail = self.remembered_tail()
            if tail is None:
                return None
            block = new_block(entries, *tail)
            self.appended_tail(block.last_seq, block.hash)
            return received_statement(conn, durable=self._durable), [
                *columns_of([message_row(m, self.node) for m in new], MESSAGE_COLUMNS),
                *columns_of([r for m in new for r in recipient_rows(m)], RECIPIENT_COLUMNS),
                [m.queue_id for m in new],
                [bodies[m.queue_id] for m in new],
                *block.row,
                block.last_seq,
                block.queue_ids,
            ]

        rows = self.statement_transaction(build)
        if rows is None:
            return None
        return [m.queue_id for m in new], frozenset(r[0] for r in rows)

    def _with_bodies(self, messages: list[NewMessage]) -> tuple[list[NewMessage], dict[str, bytes]]:
        """The messages whose spool files are still there, and those
        files' bytes. Read before the transaction: files are not read
        under the writers' lock."""
        assert self.read_raws is not None
        raws = self.read_raws([m.queue_id for m in messages])
        bodies = {m.queue_id: raw for m, raw in zip(messages, raws, strict=True) if raw is not None}
        return [m for m in messages if m.queue_id in bodies], bodies

    def _add(
        self,
        messages: list[NewMessage],
        bodies: Mapping[str, bytes],
        *,
        fresh: bool = False,
        suspended: bool = False,
    ) -> tuple[list[str], frozenset[str]]:
        # A large body goes by COPY, which a pipeline cannot send.
        large = any(len(raw) >= LARGE_BODY for raw in bodies.values())
        # New rows only, before the audit records: the writers' lock
        # waits for those, and the spool files go in beside other writers.
        with self.transaction(inserts_first=True, pipelined=not large) as db:
            new = insert_new(db, messages, self.node, fresh=fresh)
            if bodies:
                store_bodies(db, [(m.queue_id, bodies[m.queue_id]) for m in new])
            self.append_audit(db, [received_entry(m) for m in new])
            # Pipelined: its rows are read after the commit, which they
            # travel with.
            domains = db.execute(SUSPENDED) if suspended else None
        return [m.queue_id for m in new], frozenset(
            r[0] for r in (domains.fetchall() if domains else ())
        )

    def spool_body(self, queue_id: str) -> bytes | None:
        """The spool file stored with an unfinished message (PostgreSQL
        only; None on SQLite, or once the message is done)."""
        if not self.dialect.postgres:
            return None
        row = self.db.execute(
            "SELECT raw FROM spool_bodies WHERE queue_id = ?", (queue_id,)
        ).fetchone()
        return bytes(row[0]) if row is not None else None

    def known_ids(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT queue_id FROM messages")}


def insert_new(
    db: sqlite3.Connection,
    messages: Iterable[NewMessage],
    node: str | None,
    *,
    fresh: bool = False,
) -> list[NewMessage]:
    """Inserts the messages the index does not hold yet, inside the caller's
    transaction (its audit records are the caller's), owned by `node` (the
    cluster node that accepted them; None on SQLite); returns those.
    Three statements per batch, not two per message: intake runs at the
    relay's full message rate. Ids already indexed (a restart's rescan)
    are left as they are; `fresh`: none is (the engine just received
    them), and the query that asks is saved (an id indexed after all
    fails the transaction on the primary key)."""
    batch = {m.queue_id: m for m in messages}
    if not batch:
        return []
    known: set[str] = set()
    if not fresh:
        known = {
            row[0]
            for chunk in _chunks(list(batch), _MAX_PARAMS)
            for row in db.execute(
                f"SELECT queue_id FROM messages WHERE queue_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
        }
    new = [m for qid, m in batch.items() if qid not in known]
    db.executemany(
        f"INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)})"
        f" VALUES ({','.join('?' * len(MESSAGE_COLUMNS))})",
        [message_row(m, node) for m in new],
    )
    db.executemany(
        f"INSERT INTO recipients ({', '.join(RECIPIENT_COLUMNS)})"
        f" VALUES ({','.join('?' * len(RECIPIENT_COLUMNS))})",
        [r for m in new for r in recipient_rows(m)],
    )
    return new


# The columns an accepted message's rows fill, in `message_row`'s and
# `recipient_rows`' order.
MESSAGE_COLUMNS = (
    "queue_id",
    "received_ms",
    "sender",
    "size",
    "message_id",
    "envid",
    "ret",
    "body",
    "smtputf8",
    "origin",
    "client_addr",
    "class",
    "classification",
    "requiretls",
    "node",
)
RECIPIENT_COLUMNS = ("queue_id", "idx", "address", "domain", "notify", "orcpt", "class")


def message_row(m: NewMessage, node: str | None) -> tuple[Any, ...]:
    env = m.envelope
    return (
        env.queue_id,
        env.received_ms,
        env.sender,
        env.size,
        env.message_id,
        env.envid,
        env.ret,
        env.body,
        int(env.smtputf8),
        env.origin,
        env.client_addr,
        m.risk_class,
        dumps(m.classification) if m.classification else None,
        int(env.requiretls),
        node,
    )


def recipient_rows(m: NewMessage) -> list[tuple[Any, ...]]:
    return [
        (
            m.queue_id,
            i,
            r.address,
            domain_of(r.address),
            ",".join(r.notify),
            r.orcpt,
            m.recipient_class(i),
        )
        for i, r in enumerate(m.envelope.recipients)
    ]


def columns_of(rows: list[tuple[Any, ...]], columns: tuple[str, ...]) -> list[list[Any]]:
    """Rows as one list per column (the arrays `unnest` takes)."""
    if not rows:
        return [[] for _ in columns]
    return [list(c) for c in zip(*rows, strict=True)]


def received_statement(conn: PgConnection, *, durable: bool) -> str:
    """What a transaction of `Intake._add` does for messages the engine
    just received, as one statement over arrays (its parameters, in
    order: `MESSAGE_COLUMNS`' arrays, `RECIPIENT_COLUMNS`', the bodies'
    ids and bytes, the audit block's row, its last record's number and
    its messages' ids); its rows are the suspended domains. The same
    order as the transaction: the rows of its own first, then the
    writers' lock (the WITH query `w` reads the counts of the inserts
    before it, so they run first), then the audit block after it. With
    `durable` False, the commit does not wait for the WAL flush (the
    caller's group flush does)."""
    sync_off = "" if durable else ", set_config('synchronous_commit', 'off', true)"
    return (
        f"WITH m AS (INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)})"
        f" SELECT * FROM {conn.unnest('messages', MESSAGE_COLUMNS)} RETURNING 1),"
        f" r AS (INSERT INTO recipients ({', '.join(RECIPIENT_COLUMNS)})"
        f" SELECT * FROM {conn.unnest('recipients', RECIPIENT_COLUMNS)} RETURNING 1),"
        " b AS (INSERT INTO spool_bodies (queue_id, raw)"
        f" SELECT * FROM {conn.unnest('spool_bodies', ('queue_id', 'raw'))}"
        " ON CONFLICT DO NOTHING RETURNING 1),"
        f" w AS (SELECT pg_advisory_xact_lock({WRITER_LOCK}){sync_off}"
        " WHERE (SELECT count(*) FROM m) + (SELECT count(*) FROM r)"
        " + (SELECT count(*) FROM b) >= 0),"
        " a AS (INSERT INTO audit_blocks"
        " (last_seq, first_seq, at_ms, records, locators, prev, hash)"
        " SELECT ?b::bigint, ?b::bigint, ?b::bigint, ?b::bytea, ?b::bytea, ?b::bytea, ?b::bytea"
        " FROM w),"
        " x AS (INSERT INTO audit_messages (queue_id, last_seq)"
        " SELECT q, ?b::bigint FROM w, unnest(?b::text[]) AS q ON CONFLICT DO NOTHING)"
        f" {SUSPENDED}"
    )


def store_bodies(db: sqlite3.Connection, bodies: list[tuple[str, bytes]]) -> None:
    """Spool files into `spool_bodies` (PostgreSQL), inside the caller's
    transaction: the usual ones in one statement, each large one by
    itself in pieces (`PgConnection.copy_row`), so that a 40 MB message is
    held about once while it is stored, as the rest of its way (rule 12b;
    in an array parameter it was copied twice more)."""
    small = [(q, raw) for q, raw in bodies if len(raw) < LARGE_BODY]
    if small:
        db.executemany("INSERT OR IGNORE INTO spool_bodies (queue_id, raw) VALUES (?,?)", small)
    conn = cast(PgConnection, db)
    for q, raw in bodies:
        if len(raw) >= LARGE_BODY:
            conn.copy_row(
                "COPY spool_bodies (queue_id, raw) FROM STDIN (FORMAT binary)", [q.encode(), raw]
            )


def received_entry(m: NewMessage) -> AuditEntry:
    """The audit record of an accepted message and its classification."""
    env = m.envelope
    fired = (m.classification or {}).get("fired", [])
    return AuditEntry(
        "received",
        env.queue_id,
        "mxg",
        {
            "sender": env.sender,
            "recipients": [r.address for r in env.recipients],
            "message_id": env.message_id,
            "size": env.size,
            "client": env.client_addr,
            "class": m.risk_class,
            "recipient_classes": m.recipient_classes,
            "rules": [f.get("rule") for f in fired],
        },
    )


def dumps(obj: Any) -> str:
    """Compact JSON (orjson: this runs for every message)."""
    return orjson.dumps(obj).decode()


def envelope_rows(m: NewMessage) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A just-received message as `Store.message` and `Store.recipients`
    will return it once `add_messages` stored it (the classification
    already parsed): kept next to `_add` so the two shapes change together."""
    env = m.envelope
    msg = {
        "queue_id": env.queue_id,
        "sender": env.sender,
        "message_id": env.message_id,
        "received_ms": env.received_ms,
        "origin": env.origin,
        "classification": m.classification or {},
        "requiretls": int(env.requiretls),
        "ret": env.ret,
        "envid": env.envid,
        "body": env.body,
        "smtputf8": int(env.smtputf8),
    }
    rows = [
        {
            "idx": i,
            "address": r.address,
            "attempts": 0,
            "class": m.recipient_class(i),
            "override_level": None,
            "decision": None,
            "notify": ",".join(r.notify),
            "orcpt": r.orcpt,
        }
        for i, r in enumerate(env.recipients)
    ]
    return msg, rows
