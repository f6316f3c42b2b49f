"""The queue index and audit store (SQLite, WAL).

The spool is the source of truth for *what* was accepted; this store holds
*where each recipient stands*: pending, deferred (with its next attempt),
or final (sent, bounced, deleted), and an audit row for every attempt.
Final states are committed here before a spool file is removed
(ARCHITECTURE.md rule 11): a transaction is fsynced when it commits, or,
for the batches on the hot path whose loss a restart repairs, by one
`Store.sync` before any spool file goes. Commits are batched, one per
drained event batch.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import stat
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from mxg.boundary import Envelope
from mxg.errors import StoreDamaged, StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    queue_id     TEXT PRIMARY KEY,
    received_ms  INTEGER NOT NULL,
    sender       TEXT NOT NULL,
    size         INTEGER NOT NULL,
    message_id   TEXT,
    envid        TEXT,
    ret          TEXT,
    body         TEXT,
    smtputf8     INTEGER NOT NULL DEFAULT 0,
    origin       TEXT NOT NULL,
    client_addr  TEXT,
    state        TEXT NOT NULL DEFAULT 'active',  -- active | held | done
    delay_warned INTEGER NOT NULL DEFAULT 0,
    hold_reason  TEXT,
    class        TEXT,  -- normal | high | secret (the highest of its recipients')
    classification TEXT,  -- JSON: the rules that fired, and with what
    requiretls   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS recipients (
    queue_id     TEXT NOT NULL REFERENCES messages(queue_id),
    idx          INTEGER NOT NULL,
    address      TEXT NOT NULL,
    domain       TEXT NOT NULL,
    notify       TEXT NOT NULL DEFAULT '',
    orcpt        TEXT,
    status       TEXT NOT NULL DEFAULT 'pending', -- pending|deferred|held|sent|bounced|deleted
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_ms      INTEGER NOT NULL DEFAULT 0,
    code         INTEGER,
    enhanced     TEXT,
    text         TEXT,
    host         TEXT,
    ip           TEXT,
    tls          TEXT,
    level        TEXT,
    evidence     TEXT,  -- JSON: what the last session proved (ARCHITECTURE.md, vocabulary)
    updated_ms   INTEGER,
    dsn_sent     INTEGER NOT NULL DEFAULT 0,
    class        TEXT,
    override_level TEXT,  -- set by an operator's release: the level for this message
    route        TEXT NOT NULL DEFAULT '',  -- '' or 'reroute' (the class's fallback relay)
    reason       TEXT,  -- the typed failure reason of the last attempt (mxg.vocab.Reason)
    PRIMARY KEY (queue_id, idx)
);
CREATE INDEX IF NOT EXISTS recipients_due ON recipients(status, next_ms);
CREATE INDEX IF NOT EXISTS messages_state ON messages(state);
CREATE TABLE IF NOT EXISTS attempts (
    id           INTEGER PRIMARY KEY,
    queue_id     TEXT NOT NULL,
    address      TEXT NOT NULL,
    at_ms        INTEGER NOT NULL,
    status       TEXT NOT NULL,
    code         INTEGER,
    enhanced     TEXT,
    text         TEXT,
    host         TEXT,
    ip           TEXT,
    tls          TEXT,
    level        TEXT,
    evidence     TEXT,
    reason       TEXT
);
CREATE INDEX IF NOT EXISTS attempts_queue ON attempts(queue_id);
CREATE TABLE IF NOT EXISTS sts_policies (
    domain       TEXT PRIMARY KEY,
    id           TEXT NOT NULL,
    mode         TEXT NOT NULL,
    mx           TEXT NOT NULL,  -- JSON list of patterns
    max_age      INTEGER NOT NULL,
    expires      REAL NOT NULL   -- Unix time
);
CREATE TABLE IF NOT EXISTS events (
    id           INTEGER PRIMARY KEY,
    queue_id     TEXT NOT NULL,
    at_ms        INTEGER NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    detail       TEXT
);
"""

FINAL = ("sent", "bounced", "deleted")

# Bound parameters per statement: SQLite's limit was 999 before 3.32.
_MAX_PARAMS = 999


# (table, column, declaration) added after the first schema.
_ADDED_COLUMNS = (
    ("recipients", "reason", "TEXT"),
    ("attempts", "reason", "TEXT"),
    ("messages", "class", "TEXT"),
    ("messages", "classification", "TEXT"),
    ("messages", "requiretls", "INTEGER NOT NULL DEFAULT 0"),
    ("recipients", "class", "TEXT"),
    ("recipients", "override_level", "TEXT"),
    ("recipients", "route", "TEXT NOT NULL DEFAULT ''"),
)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class NewMessage:
    """A message to index: its envelope and, once intake classified it,
    its class, the classification's record and each recipient's class."""

    envelope: Envelope
    risk_class: str | None = None
    classification: dict[str, Any] | None = None
    recipient_classes: list[str] | None = None

    @property
    def queue_id(self) -> str:
        return self.envelope.queue_id

    def recipient_class(self, idx: int) -> str | None:
        return self.recipient_classes[idx] if self.recipient_classes else None


@dataclass(frozen=True)
class Due:
    """Recipients of one message in one domain that are due for an attempt."""

    queue_id: str
    domain: str
    indexes: tuple[int, ...]
    # They go to their class's fallback relay (on_unmet = "reroute").
    rerouted: bool = False


@dataclass(frozen=True)
class Outcome:
    """One recipient's result from one delivery attempt."""

    queue_id: str
    idx: int
    status: str  # sent | deferred | bounced
    code: int | None
    enhanced: str
    text: str
    host: str = ""
    ip: str = ""
    tls: str = ""
    level: str = ""
    next_ms: int = 0
    evidence: str = ""
    # The typed failure reason (mxg.vocab.Reason); None for a delivery.
    reason: str | None = None


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        _make_private(path)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self.db.row_factory = sqlite3.Row
        self._durable = True
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            # Commits reach the WAL without an fsync of SQLite's own; durable
            # ones get theirs in `transaction` (the effect of
            # synchronous=FULL), so that repairable ones need no PRAGMA round
            # trip each.
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(SCHEMA)
            self._migrate()
        except sqlite3.DatabaseError as e:
            self.db.close()
            # Not an OperationalError such as "locked": the file itself is
            # unreadable (SQLITE_NOTADB, SQLITE_CORRUPT).
            if not _damaged(e):
                raise
            raise StoreDamaged(path, str(e)) from None

    def _migrate(self) -> None:
        """Adds columns that later versions introduced to an older store
        (CREATE TABLE IF NOT EXISTS leaves existing tables as they are)."""
        for table, column, decl in _ADDED_COLUMNS:
            have = {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, durable when it returns (unless inside
        `_not_synced`)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            # A COMMIT that fails (a full disk: SQLITE_FULL) leaves the
            # transaction open; it is rolled back like any other failure.
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        if self._durable:
            self.sync()

    # -- intake -----------------------------------------------------------

    def add_messages(self, messages: Iterable[NewMessage]) -> list[str]:
        """Indexes accepted messages; returns the ids that were new. Not
        fsynced on its own: the spool already holds these messages, and a
        lost index row is rebuilt from it at the next start."""
        with self._not_synced():
            return self._add(messages)

    @contextmanager
    def _not_synced(self) -> Iterator[None]:
        """Transactions whose loss a crash can repair: committed to the WAL
        without an fsync of their own; the next durable commit carries them
        to disk (SQLite WAL, synchronous=NORMAL)."""
        self._durable = False
        try:
            yield
        finally:
            self._durable = True

    def _add(self, messages: Iterable[NewMessage]) -> list[str]:
        # Three statements per batch, not two per message: intake runs at the
        # relay's full message rate. Ids already indexed (a restart's rescan)
        # are left as they are.
        batch = {m.queue_id: m for m in messages}
        if not batch:
            return []
        with self.transaction() as db:
            known = {
                row[0]
                for chunk in _chunks(list(batch), _MAX_PARAMS)
                for row in db.execute(
                    "SELECT queue_id FROM messages"
                    f" WHERE queue_id IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
            }
            new = [m for qid, m in batch.items() if qid not in known]
            db.executemany(
                "INSERT INTO messages (queue_id, received_ms, sender, size,"
                " message_id, envid, ret, body, smtputf8, origin, client_addr, class,"
                " classification, requiretls)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        m.envelope.queue_id,
                        m.envelope.received_ms,
                        m.envelope.sender,
                        m.envelope.size,
                        m.envelope.message_id,
                        m.envelope.envid,
                        m.envelope.ret,
                        m.envelope.body,
                        int(m.envelope.smtputf8),
                        m.envelope.origin,
                        m.envelope.client_addr,
                        m.risk_class,
                        dumps(m.classification) if m.classification else None,
                        int(m.envelope.requiretls),
                    )
                    for m in new
                ],
            )
            db.executemany(
                "INSERT INTO recipients (queue_id, idx, address, domain, notify, orcpt,"
                " class) VALUES (?,?,?,?,?,?,?)",
                [
                    (
                        m.queue_id,
                        i,
                        r.address,
                        domain_of(r.address),
                        ",".join(r.notify),
                        r.orcpt,
                        m.recipient_class(i),
                    )
                    for m in new
                    for i, r in enumerate(m.envelope.recipients)
                ],
            )
        return [m.queue_id for m in new]

    def known_ids(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT queue_id FROM messages")}

    # -- scheduling -------------------------------------------------------

    def due(
        self, at_ms: int, limit: int | None = 5000, among: Sequence[str] | None = None
    ) -> list[Due]:
        """Recipients of active messages due by `at_ms`, as one `Due` per
        message, domain and route; at most `limit` recipients, or those of
        the messages `among` (at most `_MAX_PARAMS` of them)."""
        select = (
            "SELECT r.queue_id, r.domain, r.idx, r.route != '', r.next_ms FROM recipients r"
            " JOIN messages m ON m.queue_id = r.queue_id"
        )
        cap = -1 if limit is None else limit
        rows: list[Any]
        if among is not None:
            # Unary + keeps the planner on the primary keys for these few
            # messages, off the (status, next_ms) and state indexes and the
            # whole queue behind them.
            rows = self.db.execute(
                f"{select} WHERE r.queue_id IN ({','.join('?' * len(among))})"
                " AND +r.status IN ('pending','deferred') AND +r.next_ms <= ?"
                " AND +m.state='active' ORDER BY r.next_ms, r.queue_id LIMIT ?",
                [*among, at_ms, cap],
            ).fetchall()
        else:
            # One ordered walk of the (status, next_ms) index per status,
            # stopping at the limit: an IN over both statuses made SQLite
            # read and sort every due recipient first, each time a batch of
            # results made room (with a backlog, most of the event loop).
            # Ties on next_ms go in index (insertion) order, oldest first.
            one_status = (
                f"{select} WHERE r.status = ? AND r.next_ms <= ? AND +m.state='active'"
                " ORDER BY r.next_ms LIMIT ?"
            )
            rows = [
                *self.db.execute(one_status, ("pending", at_ms, cap)),
                *self.db.execute(one_status, ("deferred", at_ms, cap)),
            ]
            rows.sort(key=lambda r: r[4])
            if limit is not None:
                del rows[limit:]
        groups: dict[tuple[str, str, bool], list[int]] = {}
        for r in rows:
            groups.setdefault((r[0], r[1], bool(r[3])), []).append(r[2])
        return [Due(q, d, tuple(ix), rerouted) for (q, d, rerouted), ix in groups.items()]

    def recipients(self, queue_id: str, indexes: Sequence[int] | None = None) -> list[sqlite3.Row]:
        """A message's recipients, in order; only those at `indexes` when
        given (a job takes one domain's share of a long list)."""
        if indexes is None:
            return self.db.execute(
                "SELECT * FROM recipients WHERE queue_id=? ORDER BY idx", (queue_id,)
            ).fetchall()
        wanted = sorted(set(indexes))
        return [
            row
            for chunk in _chunks(wanted, _MAX_PARAMS - 1)
            for row in self.db.execute(
                "SELECT * FROM recipients WHERE queue_id=?"
                f" AND idx IN ({','.join('?' * len(chunk))}) ORDER BY idx",
                (queue_id, *chunk),
            )
        ]

    def message(self, queue_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(
            "SELECT * FROM messages WHERE queue_id=?", (queue_id,)
        ).fetchone()
        return row

    # -- results ----------------------------------------------------------

    def record(self, outcomes: Iterable[Outcome]) -> list[str]:
        """Stores attempt results and the recipients' new states, and marks
        the messages they finished done, in one transaction; returns those
        messages (their spool files may go). Durable after `sync` (called
        before any spool file goes, rule 11) or the next durable commit:
        losing a result to a crash means a retry, while the spool file is
        still there; a done message whose file is still there loses it at
        the next start."""
        t = now_ms()
        results = [
            (
                (o.status, o.code, o.enhanced, o.text, o.host, o.ip, o.tls, o.level),
                (o.evidence or None, o.reason),
                o,
            )
            for o in outcomes
        ]
        with self._not_synced(), self.transaction() as db:
            db.executemany(
                "INSERT INTO attempts (queue_id, address, at_ms, status, code, enhanced,"
                " text, host, ip, tls, level, evidence, reason)"
                " SELECT queue_id, address, ?,?,?,?,?,?,?,?,?,?,?"
                " FROM recipients WHERE queue_id=? AND idx=?",
                [(t, *r, *e, o.queue_id, o.idx) for r, e, o in results],
            )
            db.executemany(
                "UPDATE recipients SET status=?, code=?, enhanced=?, text=?, host=?, ip=?,"
                " tls=?, level=?, evidence=?, reason=?, attempts=attempts+1, next_ms=?,"
                " updated_ms=? WHERE queue_id=? AND idx=?"
                " AND status NOT IN ('sent','bounced','deleted')",
                [(*r, *e, o.next_ms, t, o.queue_id, o.idx) for r, e, o in results],
            )
            touched = sorted({o.queue_id for _, _, o in results if o.status != "deferred"})
            return self._mark_finished_done(db, touched)

    def finish(self, among: Sequence[str]) -> list[str]:
        """Marks those of `among` done that are finished (`finished`);
        returns them."""
        with self._not_synced(), self.transaction() as db:
            return self._mark_finished_done(db, among)

    def _mark_finished_done(self, db: sqlite3.Connection, among: Sequence[str]) -> list[str]:
        done = [q for chunk in _chunks(list(among), _MAX_PARAMS) for q in self.finished(chunk)]
        db.executemany("UPDATE messages SET state='done' WHERE queue_id=?", [(q,) for q in done])
        return done

    def sync(self) -> None:
        """Makes every commit so far durable. Commits without their own
        fsync are in the WAL (SQLite syncs it before a checkpoint, and the
        database file after); one fsync of the WAL covers them all. Uses its
        own descriptor, so it may run in another thread than the commits."""
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # no WAL (yet): nothing was committed through it
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def mark_dsn_sent(self, queue_id: str, indexes: Iterable[int]) -> None:
        with self.transaction() as db:
            db.executemany(
                "UPDATE recipients SET dsn_sent=1 WHERE queue_id=? AND idx=?",
                [(queue_id, i) for i in indexes],
            )

    def mark_delay_warned(self, queue_id: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE messages SET delay_warned=1 WHERE queue_id=?", (queue_id,))

    def finished(self, among: Sequence[str] | None = None) -> list[str]:
        """Messages not yet done whose recipients all have a final state and
        whose bounces are already answered by a queued DSN; only those in
        ``among`` when it is given."""
        where = "m.state IN ('active','held')"
        params: tuple[str, ...] = ()
        if among is not None:
            if not among:
                return []
            # Unary + keeps the planner on the primary key for these few
            # messages; on the state index it walked every active message
            # of the queue for each results batch (7.8 ms per batch of 20
            # with 20,000 queued).
            marks = ",".join("?" * len(among))
            where = f"+m.state IN ('active','held') AND m.queue_id IN ({marks})"
            params = tuple(among)
        rows = self.db.execute(
            f"SELECT m.queue_id FROM messages m WHERE {where} AND NOT EXISTS"
            " (SELECT 1 FROM recipients r WHERE r.queue_id = m.queue_id"
            "  AND (r.status NOT IN ('sent','bounced','deleted')"
            "       OR (r.status = 'bounced' AND r.dsn_sent = 0)))",
            params,
        ).fetchall()
        return [r[0] for r in rows]

    def done_ids(self) -> set[str]:
        """Messages marked done (their spool files should be gone)."""
        return {r[0] for r in self.db.execute("SELECT queue_id FROM messages WHERE state='done'")}

    def resume_pending(self) -> int:
        """Recipients whose jobs never reported back (the last run ended
        while they were under way) become due now; returns how many."""
        with self.transaction() as db:
            return db.execute("UPDATE recipients SET next_ms=0 WHERE status='pending'").rowcount

    def dsn_pending(self) -> list[str]:
        """Messages with bounced recipients whose DSN is not yet queued."""
        rows = self.db.execute(
            "SELECT DISTINCT queue_id FROM recipients WHERE status='bounced' AND dsn_sent=0"
        ).fetchall()
        return [r[0] for r in rows]

    def mark_done(self, queue_ids: Iterable[str]) -> None:
        """Not synced on its own: a message whose "done" is lost is found
        finished again at the next start and its (already removed) spool
        file is removed again."""
        with self._not_synced(), self.transaction() as db:
            db.executemany(
                "UPDATE messages SET state='done' WHERE queue_id=?", [(q,) for q in queue_ids]
            )

    def expired_delay_warnings(self, older_than_ms: int) -> list[str]:
        rows = self.db.execute(
            "SELECT m.queue_id FROM messages m WHERE m.state='active' AND m.delay_warned=0"
            " AND m.received_ms <= ? AND m.sender != '' AND EXISTS (SELECT 1 FROM recipients r"
            " WHERE r.queue_id=m.queue_id AND r.status='deferred')",
            (older_than_ms,),
        ).fetchall()
        return [r[0] for r in rows]

    # -- MTA-STS policy cache (RFC 8461 §5.1) -------------------------------

    def save_sts(self, policy: Any, expires: float) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO sts_policies (domain, id, mode, mx, max_age, expires)"
                " VALUES (?,?,?,?,?,?)",
                (
                    policy.domain,
                    policy.id,
                    policy.mode,
                    json.dumps(list(policy.mx)),
                    policy.max_age,
                    expires,
                ),
            )

    def load_sts(self) -> list[tuple[dict[str, Any], float]]:
        rows = self.db.execute("SELECT * FROM sts_policies").fetchall()
        return [
            (
                {
                    "domain": r["domain"],
                    "id": r["id"],
                    "mode": r["mode"],
                    "mx": tuple(json.loads(r["mx"])),
                    "max_age": r["max_age"],
                },
                r["expires"],
            )
            for r in rows
        ]

    # -- operator actions (mxg queue ...) ----------------------------------

    def log_event(
        self, db: sqlite3.Connection, queue_id: str, actor: str, action: str, detail: str = ""
    ) -> None:
        db.execute(
            "INSERT INTO events (queue_id, at_ms, actor, action, detail) VALUES (?,?,?,?,?)",
            (queue_id, now_ms(), actor, action, detail),
        )

    def hold(self, queue_id: str, actor: str, reason: str) -> bool:
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE messages SET state='held', hold_reason=? WHERE queue_id=?"
                " AND state='active'",
                (reason, queue_id),
            )
            if cur.rowcount:
                self.log_event(db, queue_id, actor, "hold", reason)
            return cur.rowcount > 0

    def release(self, queue_id: str, actor: str, reason: str, level: str | None = None) -> bool:
        """Resumes a message an operator held and recipients its class's
        policy held (`on_unmet = "hold"`). With `level`, that transport level
        replaces the requirement for this message's unfinished recipients;
        who, when and why are recorded."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE messages SET state='active', hold_reason=NULL"
                " WHERE queue_id=? AND state='held'",
                (queue_id,),
            )
            held = db.execute(
                "UPDATE recipients SET status='pending', next_ms=0"
                " WHERE queue_id=? AND status='held'",
                (queue_id,),
            )
            released = cur.rowcount + held.rowcount
            if released:
                db.execute(
                    "UPDATE recipients SET next_ms=0 WHERE queue_id=?"
                    " AND status IN ('pending','deferred')",
                    (queue_id,),
                )
                if level is not None:
                    db.execute(
                        "UPDATE recipients SET override_level=? WHERE queue_id=?"
                        " AND status IN ('pending','deferred')",
                        (level, queue_id),
                    )
                detail = f"level={level}; {reason}" if level else reason
                self.log_event(db, queue_id, actor, "release", detail)
            return released > 0

    def set_route(self, queue_id: str, idx: int, route: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE recipients SET route=? WHERE queue_id=? AND idx=?", (route, queue_id, idx)
            )

    def delete(self, queue_id: str, actor: str, reason: str) -> bool:
        """Gives every unfinished recipient the final state 'deleted'; the
        relay removes the spool file once it sees the message finished."""
        t = now_ms()
        with self.transaction() as db:
            rows = db.execute(
                "SELECT idx, address FROM recipients WHERE queue_id=? AND status"
                " IN ('pending','deferred','held')",
                (queue_id,),
            ).fetchall()
            if not rows and self.message(queue_id) is None:
                return False
            for r in rows:
                db.execute(
                    "INSERT INTO attempts (queue_id, address, at_ms, status, text)"
                    " VALUES (?,?,?,?,?)",
                    (queue_id, r["address"], t, "deleted", f"deleted by {actor}: {reason}"),
                )
            db.execute(
                "UPDATE recipients SET status='deleted', updated_ms=?, text=?"
                " WHERE queue_id=? AND status IN ('pending','deferred','held')",
                (t, f"deleted by {actor}: {reason}", queue_id),
            )
            self.log_event(db, queue_id, actor, "delete", reason)
            return True

    def flush(self, queue_id: str | None = None) -> int:
        with self.transaction() as db:
            if queue_id is None:
                cur = db.execute("UPDATE recipients SET next_ms=0 WHERE status='deferred'")
            else:
                cur = db.execute(
                    "UPDATE recipients SET next_ms=0 WHERE status='deferred' AND queue_id=?",
                    (queue_id,),
                )
            return cur.rowcount

    def listing(self, include_done: bool = False) -> list[dict[str, Any]]:
        where = "" if include_done else "WHERE m.state != 'done'"
        rows = self.db.execute(
            "SELECT m.queue_id, m.received_ms, m.sender, m.size, m.state, m.message_id,"
            " COUNT(r.idx) AS rcpts,"
            " SUM(r.status IN ('pending','deferred','held')) AS waiting,"
            " SUM(r.status = 'held') AS held, MAX(m.class) AS class,"
            " MAX(CASE WHEN r.status IN ('deferred','held') THEN trim(coalesce(r.code, '') || ' '"
            " || coalesce(r.enhanced, '') || ' ' || coalesce(r.text, '')) END) AS reason"
            f" FROM messages m JOIN recipients r ON r.queue_id=m.queue_id {where}"
            " GROUP BY m.queue_id ORDER BY m.received_ms"
        ).fetchall()
        return [dict(r) for r in rows]

    def details(self, queue_id: str) -> dict[str, Any] | None:
        msg = self.message(queue_id)
        if msg is None:
            return None
        out = dict(msg)
        out["recipients"] = [dict(r) for r in self.recipients(queue_id)]
        out["attempts"] = [
            dict(r)
            for r in self.db.execute(
                "SELECT * FROM attempts WHERE queue_id=? ORDER BY id", (queue_id,)
            )
        ]
        out["events"] = [
            dict(r)
            for r in self.db.execute(
                "SELECT * FROM events WHERE queue_id=? ORDER BY id", (queue_id,)
            )
        ]
        return out


T = TypeVar("T")


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def domain_of(address: str) -> str:
    """The domain part, lower-cased (domains are case-insensitive; local
    parts are not, so the address itself is kept as given)."""
    return address.rpartition("@")[2].lower().rstrip(".")


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
            "notify": ",".join(r.notify),
            "orcpt": r.orcpt,
        }
        for i, r in enumerate(env.recipients)
    ]
    return msg, rows


def _make_private(path: Path) -> None:
    """Creates the database file mode 0600 before SQLite opens it, so that
    its WAL and shared-memory files, which SQLite creates with the
    database's mode, are 0600 from the first start (rule 8); tightens
    files an older version left readable. Never through a symlink
    (rule 8a): a planted link is refused, not followed."""
    for name, create in ((path, True), (Path(f"{path}-wal"), False), (Path(f"{path}-shm"), False)):
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        try:
            fd = os.open(name, flags, 0o600)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise StoreError(f"cannot open the store file {name}: {e.strerror}") from e
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StoreError(f"store file {name} is not a regular file")
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)


def is_full(e: BaseException) -> bool:
    """The store cannot grow: the disk (or the quota) is full. Nothing is
    lost by it (the spool holds every message); writes wait for space."""
    if isinstance(e, sqlite3.OperationalError):
        return getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


def _damaged(e: sqlite3.Error) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def quarantine(path: Path) -> Path:
    """Moves a damaged database (with its WAL and shared-memory files)
    aside, named after the time, and returns the new name of the main
    file: the spool is the source of truth (rule 10), so a new index is
    rebuilt from it, and the old one stays for inspection."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    moved = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        old = Path(f"{path}{suffix}")
        if old.exists():
            old.rename(f"{moved}{suffix}")
    return moved
