"""Where each recipient stands: which are due for an attempt, the
results of attempts and the states they lead to (sent, deferred,
bounced), which messages are finished and done, and the DSN and delay
warning marks."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

import orjson

from mxg.store.audit import AuditEntry
from mxg.store.db import _MAX_PARAMS, _chunks
from mxg.store.partners import Partners, Seen
from mxg.store.postgres import PgConnection
from mxg.store.records import Due, Outcome, now_ms
from mxg.store.tlsrpt import TlsRptAggregate

# Recipients of domains an operator suspended (`mxg.store.suspend`) are not
# due. The subquery is not correlated: SQLite reads the (small) table once
# per query.
_NOT_SUSPENDED = "AND r.domain NOT IN (SELECT domain FROM suspended_domains)"
# What the due queries read of each recipient (`Due`, and next_ms to order by).
_DUE_COLUMNS = "SELECT r.queue_id, r.domain, r.idx, r.route != '', r.next_ms FROM recipients r"


class Queue(Partners, TlsRptAggregate):
    """Scheduling and results: the recipients' states over their attempts."""

    # -- scheduling -------------------------------------------------------

    def due(
        self, at_ms: int, limit: int | None = 5000, among: Sequence[str] | None = None
    ) -> list[Due]:
        """Recipients of active messages due by `at_ms`, none of a
        suspended domain, as one `Due` per message, domain and route; at
        most `limit` recipients, or those of the messages `among` (at most
        `_MAX_PARAMS` of them)."""
        cap = self.dialect.no_limit if limit is None else limit
        messages, active, node = self._of_active_messages()
        rows: list[Any]
        if among is not None:
            # Status and next_ms as expressions, which no index holds: the
            # planners stay on the primary keys for these few messages, off
            # the (status, next_ms) index and the whole queue behind it.
            (rows,) = self._read_due(
                f"{_DUE_COLUMNS}{messages} WHERE r.queue_id IN ({','.join('?' * len(among))})"
                " AND r.status || '' IN ('pending','deferred') AND r.next_ms + 0 <= ?"
                f" AND {active} {_NOT_SUSPENDED} ORDER BY r.next_ms, r.queue_id LIMIT ?",
                [[*among, at_ms, *node, cap]],
            )
        else:
            # One ordered walk of the (status, next_ms) index per status,
            # stopping at the limit: an IN over both statuses made SQLite
            # read and sort every due recipient first, each time a batch of
            # results made room (with a backlog, most of the event loop).
            # Ties on next_ms go in index (insertion) order, oldest first.
            # The IN term repeats the partial index's condition (schema):
            # without it SQLite does not use that index.
            found = self._read_due(
                f"{_DUE_COLUMNS}{messages} WHERE r.status IN ('pending','deferred')"
                f" AND r.status = ? AND r.next_ms <= ? AND {active} {_NOT_SUSPENDED}"
                " ORDER BY r.next_ms LIMIT ?",
                [[status, at_ms, *node, cap] for status in ("pending", "deferred")],
            )
            rows = [row for status_rows in found for row in status_rows]
            rows.sort(key=lambda r: r[4])
            if limit is not None:
                del rows[limit:]
        groups: dict[tuple[str, str, bool], list[int]] = {}
        for r in rows:
            groups.setdefault((r[0], r[1], bool(r[3])), []).append(r[2])
        return [Due(q, d, tuple(ix), rerouted) for (q, d, rerouted), ix in groups.items()]

    def _of_active_messages(self) -> tuple[str, str, tuple[str, ...]]:
        """How the due queries keep to recipients of active messages (this
        node's, on PostgreSQL): a join to add after the recipients, a
        term, and its parameters.

        On PostgreSQL each recipient's message is read by its key, in a
        scalar subquery (which PostgreSQL does not turn into a join), and
        the query goes by index alone (`_read_due`). Costing tables
        autovacuum has not analyzed yet (a young queue, the first minute
        of a burst), its planner took the active messages for a single
        row, and joined it read them all for each recipient (166 ms a
        call on an rcpts bench run with smaller results batches), or
        bitmap-scanned the whole waiting range once per message (41 ms;
        147 ms for seven messages `among`): costs that grow with the
        product as a backlog builds."""
        mine, node = self.mine()
        if self.dialect.postgres:
            by_key = "SELECT m.state = 'active'{} FROM messages m WHERE m.queue_id = r.queue_id"
            return "", f"({by_key.format(mine)})", node
        return " JOIN messages m ON m.queue_id = r.queue_id", f"+m.state='active'{mine}", node

    def _read_due(self, sql: str, runs: list[list[Any]]) -> list[list[Any]]:
        """The rows of a due query, once per parameters in `runs`: on
        PostgreSQL in one round trip, by index alone, so that an ordered
        walk of an index stops at its limit instead of reading the whole
        range (or table) and sorting it."""
        if self.dialect.postgres:
            conn = cast(PgConnection, self.db)
            return conn.read_by_index([(sql, params) for params in runs])
        return [self.db.execute(sql, params).fetchall() for params in runs]

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

    def record(
        self,
        outcomes: Iterable[Outcome],
        partners: Mapping[str, Seen] | None = None,
        tls_sessions: Mapping[Any, int] | None = None,
        *,
        again: bool = False,
    ) -> list[str]:
        """Stores attempt results and the recipients' new states, and marks
        the messages they finished done, in one transaction; returns those
        messages (their spool files may go). Durable after `sync` (called
        before any spool file goes, rule 11) or the next durable commit:
        losing a result to a crash means a retry, while the spool file is
        still there; a done message whose file is still there loses it at
        the next start. `partners` and `tls_sessions` are what the batch
        shows of the partner ledger and the TLS report aggregate. `again`:
        the outcomes may be stored already (kept in memory after their
        commit's answer was lost, which may have committed): an attempt
        stored already, the same queue id, address, status and `at_ms`,
        is not added twice. Only then: the check is a lookup per attempt,
        which the batches at the message rate do not need."""
        t = now_ms()
        results = [
            (
                (o.status, o.code, o.enhanced, o.text, o.host, o.ip, o.tls, o.level),
                (o.evidence or None, o.reason),
                o,
            )
            for o in outcomes
        ]
        return self.retrying(lambda: self._record(t, results, partners, tls_sessions, again))

    def _record(
        self,
        t: int,
        results: list[tuple[tuple[Any, ...], tuple[Any, ...], Outcome]],
        partners: Mapping[str, Seen] | None,
        tls_sessions: Mapping[Any, int] | None,
        again: bool,
    ) -> list[str]:
        with self._not_synced(), self.transaction(pipelined=True) as db:
            once = len({(o.queue_id, o.idx) for _, _, o in results}) == len(results)
            if self.dialect.postgres and once:
                _record_as_arrays(
                    db,
                    t,
                    [(o.queue_id, o.idx, *r, *e, o.next_ms, o.at_ms or t) for r, e, o in results],
                    again=again,
                )
            else:
                # The attempt's time and status, for the checks of `again`.
                stored = [(o.at_ms or t, r[0]) for r, _, o in results]
                # Before the attempts go in: its check must not see them.
                db.executemany(
                    "UPDATE recipients SET status=?, code=?, enhanced=?, text=?, host=?, ip=?,"
                    " tls=?, level=?, evidence=?, reason=?, attempts=attempts+"
                    + (_COUNTED.format(r="recipients", at="?", status="?") if again else "1")
                    + ", next_ms=?, updated_ms=? WHERE queue_id=? AND idx=?"
                    " AND status NOT IN ('sent','bounced','deleted')",
                    [
                        (*r, *e, *(at if again else ()), o.next_ms, t, o.queue_id, o.idx)
                        for (r, e, o), at in zip(results, stored, strict=True)
                    ],
                )
                db.executemany(
                    "INSERT INTO attempts (queue_id, address, at_ms, status, code, enhanced,"
                    " text, host, ip, tls, level, evidence, reason)"
                    " SELECT queue_id, address, ?,?,?,?,?,?,?,?,?,?,?"
                    " FROM recipients r WHERE queue_id=? AND idx=?"
                    + (_NOT_STORED.format(at="?", status="?") if again else ""),
                    [
                        (at[0], *r, *e, o.queue_id, o.idx, *(at if again else ()))
                        for (r, e, o), at in zip(results, stored, strict=True)
                    ],
                )
            self.note_partners(db, partners or {})
            self.note_tls_sessions(db, tls_sessions or {})
            touched = sorted({o.queue_id for _, _, o in results if o.status != "deferred"})
            return self._mark_finished_done(db, touched, [result_entry(o) for _, _, o in results])

    def finish(self, among: Sequence[str]) -> list[str]:
        """Marks those of `among` done that are finished (`finished`);
        returns them."""
        with self._not_synced(), self.transaction(pipelined=True) as db:
            return self._mark_finished_done(db, among)

    def _mark_finished_done(
        self, db: sqlite3.Connection, among: Sequence[str], entries: Sequence[AuditEntry] = ()
    ) -> list[str]:
        """Marks those of `among` done that are finished; their records go
        into the trail after `entries`, as one block."""
        done = [q for chunk in _chunks(list(among), _MAX_PARAMS) for q in self.finished(chunk)]
        entries = [*entries, *(AuditEntry("done", q, "mxg", {}) for q in done)]
        if self.dialect.postgres and entries:
            block = self.next_block(db, entries)
            db.execute(_DONE_AND_AUDITED, (done, done, *block.row, block.last_seq, block.queue_ids))
            return done
        db.executemany("UPDATE messages SET state='done' WHERE queue_id=?", [(q,) for q in done])
        self._drop_bodies(db, done)
        self.append_audit(db, entries)
        return done

    def mark_dsn_sent(self, queue_id: str, indexes: Iterable[int]) -> None:
        sent = list(indexes)
        with self.transaction() as db:
            db.executemany(
                "UPDATE recipients SET dsn_sent=1 WHERE queue_id=? AND idx=?",
                [(queue_id, i) for i in sent],
            )
            self.append_audit(db, [AuditEntry("dsn", queue_id, "mxg", {"recipients": sent})])

    def mark_delay_warned(self, queue_id: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE messages SET delay_warned=1 WHERE queue_id=?", (queue_id,))

    def finished(self, among: Sequence[str] | None = None) -> list[str]:
        """Messages not yet done whose recipients all have a final state and
        whose bounces are already answered by a queued DSN; only those in
        ``among`` when it is given."""
        mine, node = self.mine()
        where = f"m.state IN ('active','held'){mine}"
        params: tuple[str, ...] = node
        if among is not None:
            if not among:
                return []
            # Unary + keeps the planner on the primary key for these few
            # messages; on the state index it walked every active message
            # of the queue for each results batch (7.8 ms per batch of 20
            # with 20,000 queued). On PostgreSQL one array: one statement
            # text whatever the batch's size, parsed and prepared once
            # (a list of markers made a statement per size).
            if self.dialect.postgres:
                where = "m.state IN ('active','held') AND m.queue_id = ANY(?)"
                return [r[0] for r in self.db.execute(_FINISHED.format(where=where), (among,))]
            marks = ",".join("?" * len(among))
            where = f"+m.state IN ('active','held') AND m.queue_id IN ({marks})"
            params = tuple(among)
        rows = self.db.execute(_FINISHED.format(where=where), params).fetchall()
        return [r[0] for r in rows]

    def done_ids(self) -> set[str]:
        """Messages marked done (their spool files should be gone)."""
        mine, node = self.mine()
        return {
            r[0]
            for r in self.db.execute(
                f"SELECT m.queue_id FROM messages m WHERE m.state='done'{mine}", node
            )
        }

    def resume_pending(self, under_way: Callable[[str, str, int], bool] | None = None) -> int:
        """Recipients whose jobs never reported back (the last run ended
        while they were under way, or the store lost their results) become
        due now, except those `under_way(queue_id, domain, idx)` in this
        process; returns how many."""
        with self.transaction() as db:
            mine, node = self.mine_by_id("recipients")
            if under_way is None:
                return db.execute(
                    f"UPDATE recipients SET next_ms=0 WHERE status='pending'{mine}", node
                ).rowcount
            rows = db.execute(
                f"SELECT queue_id, domain, idx FROM recipients WHERE status='pending'{mine}", node
            ).fetchall()
            due = [(r[0], r[2]) for r in rows if not under_way(r[0], r[1], r[2])]
            db.executemany("UPDATE recipients SET next_ms=0 WHERE queue_id=? AND idx=?", due)
            return len(due)

    def dsn_pending(self) -> list[str]:
        """Messages with bounced recipients whose DSN is not yet queued (a
        partial index holds just those: the scanner asks every scan)."""
        mine, node = self.mine_by_id("recipients")
        rows = self.db.execute(
            f"SELECT DISTINCT queue_id FROM recipients WHERE status='bounced' AND dsn_sent=0{mine}",
            node,
        ).fetchall()
        return [r[0] for r in rows]

    def mark_done(self, queue_ids: Iterable[str]) -> None:
        """Not synced on its own: a message whose "done" is lost is found
        finished again at the next start and its (already removed) spool
        file is removed again."""
        done = list(queue_ids)
        with self._not_synced(), self.transaction(pipelined=True) as db:
            db.executemany(
                "UPDATE messages SET state='done' WHERE queue_id=?", [(q,) for q in done]
            )
            self._drop_bodies(db, done)
            self.append_audit(db, [AuditEntry("done", q, "mxg", {}) for q in done])

    def _drop_bodies(self, db: sqlite3.Connection, done: list[str]) -> None:
        """A done message's stored spool file goes in the transaction that
        marks it done (PostgreSQL; docs/cluster.md). One statement for the
        batch: ``= ANY`` takes the list as an array."""
        if done and self.dialect.postgres:
            db.execute("DELETE FROM spool_bodies WHERE queue_id = ANY(?)", (done,))

    def expired_delay_warnings(self, older_than_ms: int) -> list[str]:
        mine, node = self.mine()
        rows = self.db.execute(
            "SELECT m.queue_id FROM messages m WHERE m.state IN ('active','held')"
            " AND m.state='active' AND m.delay_warned=0"
            " AND m.received_ms <= ? AND m.sender != '' AND EXISTS (SELECT 1 FROM recipients r"
            f" WHERE r.queue_id=m.queue_id AND r.status='deferred'){mine}",
            (older_than_ms, *node),
        ).fetchall()
        return [r[0] for r in rows]

    def set_route(self, queue_id: str, idx: int, route: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE recipients SET route=? WHERE queue_id=? AND idx=?", (route, queue_id, idx)
            )


# Messages (those `where` picks) whose recipients all have a final state
# and whose bounces are answered by a queued DSN (`Queue.finished`).
_FINISHED = (
    "SELECT m.queue_id FROM messages m WHERE {where} AND NOT EXISTS"
    " (SELECT 1 FROM recipients r WHERE r.queue_id = m.queue_id"
    "  AND (r.status NOT IN ('sent','bounced','deleted')"
    "       OR (r.status = 'bounced' AND r.dsn_sent = 0)))"
)
# Finished messages marked done on PostgreSQL, their stored spool files
# dropped and the audit block appended, as one statement of a transaction
# at the message rate (`Queue._mark_finished_done`): the ids twice, the
# block's row, its last record's number and its messages' ids.
_DONE_AND_AUDITED = (
    "WITH d AS (UPDATE messages SET state='done' WHERE queue_id = ANY(?b::text[])),"
    " b AS (DELETE FROM spool_bodies WHERE queue_id = ANY(?b::text[])),"
    " a AS (INSERT INTO audit_blocks (last_seq, first_seq, at_ms, records, locators, prev, hash)"
    " VALUES (?b::bigint, ?b::bigint, ?b::bigint, ?b::bytea, ?b::bytea, ?b::bytea, ?b::bytea))"
    " INSERT INTO audit_messages (queue_id, last_seq)"
    " SELECT q, ?b::bigint FROM unnest(?b::text[]) AS q ON CONFLICT DO NOTHING"
)


# A batch of results as one array per column (PostgreSQL, `?b`: sent in
# binary): one statement per batch instead of two per recipient, each a
# Bind and an Execute on both sides, at the relay's full message rate.
# The attempts are inserted from the recipients as they were before the
# update (a data-modifying CTE sees the statement's snapshot).
_RECORD_AS_ARRAYS_SHAPE = (
    "WITH u AS (SELECT * FROM unnest(?b::text[], ?b::bigint[], ?b::text[], ?b::bigint[],"
    " ?b::text[], ?b::text[], ?b::text[], ?b::text[], ?b::text[], ?b::text[], ?b::text[],"
    " ?b::text[], ?b::bigint[], ?b::bigint[]) WITH ORDINALITY AS u(queue_id, idx, status, code,"
    " enhanced, text, host, ip, tls, level, evidence, reason, next_ms, at_ms, n)),"
    " attempt AS (INSERT INTO attempts (queue_id, address, at_ms, status, code, enhanced, text,"
    " host, ip, tls, level, evidence, reason)"
    " SELECT r.queue_id, r.address, u.at_ms, u.status, u.code, u.enhanced, u.text, u.host, u.ip,"
    " u.tls, u.level, u.evidence, u.reason"
    " FROM u JOIN recipients r ON r.queue_id = u.queue_id AND r.idx = u.idx{again}"
    " ORDER BY u.n)"
    " UPDATE recipients r SET status=u.status, code=u.code, enhanced=u.enhanced,"
    " text=u.text, host=u.host, ip=u.ip, tls=u.tls, level=u.level, evidence=u.evidence,"
    " reason=u.reason, attempts=r.attempts+{counted}, next_ms=u.next_ms, updated_ms=?"
    " FROM u WHERE r.queue_id = u.queue_id AND r.idx = u.idx"
    " AND r.status NOT IN ('sent','bounced','deleted')"
)


# An attempt of the recipient `r` not stored already (`record(again=True)`):
# one lookup on `attempts_queue` each.
_NOT_STORED = (
    " AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.queue_id = r.queue_id"
    " AND a.address = r.address AND a.at_ms = {at} AND a.status = {status})"
)
# What a result adds to its recipient's count of attempts when it may be
# stored already (`record(again=True)`): nothing if it is, one if not.
# The check must see the attempts as they were before this result's own
# insert: on PostgreSQL the statement's snapshot has them so; on SQLite
# the update runs before the insert.
_COUNTED = (
    "(CASE WHEN EXISTS (SELECT 1 FROM attempts a WHERE a.queue_id = {r}.queue_id"
    " AND a.address = {r}.address AND a.at_ms = {at} AND a.status = {status}) THEN 0 ELSE 1 END)"
)
_RECORD_AS_ARRAYS = _RECORD_AS_ARRAYS_SHAPE.format(again="", counted="1")
_RECORD_AGAIN_AS_ARRAYS = _RECORD_AS_ARRAYS_SHAPE.format(
    again=" WHERE" + _NOT_STORED.format(at="u.at_ms", status="u.status").removeprefix(" AND"),
    counted=_COUNTED.format(r="r", at="u.at_ms", status="u.status"),
)


def _record_as_arrays(
    db: sqlite3.Connection, at_ms: int, rows: list[tuple[Any, ...]], *, again: bool
) -> None:
    """`record`'s attempts and recipients' new states on PostgreSQL, each
    recipient once in `rows` (an UPDATE ... FROM applies one row of a
    join per target row)."""
    columns = [list(c) for c in zip(*rows, strict=True)]
    db.execute(_RECORD_AGAIN_AS_ARRAYS if again else _RECORD_AS_ARRAYS, (*columns, at_ms))


def result_entry(o: Outcome) -> AuditEntry:
    """The audit record of one recipient's delivery result: the state it
    leads to and what the attempt proved."""
    data: dict[str, Any] = {
        "idx": o.idx,
        "status": o.status,
        "code": o.code,
        "enhanced": o.enhanced,
        "reply": o.text,
        "host": o.host,
        "ip": o.ip,
        "level": o.level,
    }
    # The TLS parameters, method and DNSSEC status are in the evidence
    # (already JSON: embedded as it is, not quoted again).
    if o.evidence:
        data["evidence"] = orjson.Fragment(o.evidence)
    if o.reason:
        data["reason"] = o.reason
    if o.next_ms:
        data["next_ms"] = o.next_ms
    return AuditEntry("result", o.queue_id, "mxg", data)
