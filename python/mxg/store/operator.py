"""What an operator does to the queue (``mxg queue ...``, later the admin
API): the unfinished recipients a selection picks (`unfinished`), and
hold, release (optionally at another level), delete, bounce and flush of
such a selection, each in one durable transaction that re-checks the
states it changes and returns what it changed; each change is logged as
an event with who did it and why. The meaning of selections and the
results callers see are in `mxg.ops`; the SQL is here."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mxg.store.audit import AuditEntry
from mxg.store.db import _MAX_PARAMS, _chunks
from mxg.store.queue import Queue
from mxg.store.records import now_ms

# Recipients not yet final (`FINAL`), the only ones an action can change.
UNFINISHED = ("pending", "deferred", "held", "awaiting-sender")

# Queue id → indexes of recipients: what an action is asked to change and
# what it changed.
Targets = Mapping[str, Sequence[int]]

# A recipient's state as an operator sees it: held when its message or the
# recipient itself is held, else its status (pending or deferred).
_STATE = "CASE WHEN m.state = 'held' OR r.status = 'held' THEN 'held' ELSE r.status END"

# Messages changed per transaction: a bulk action on a long queue must not
# hold the store's write lock for long, or the relay's own writes wait
# (SQLite allows one writer); each message still changes atomically.
_BATCH = 500

# The status code of an operator's bounce (RFC 3463 §3.1: X.0.0, other or
# undefined status): nothing went wrong with the address or the network.
BOUNCE_STATUS = "5.0.0"


class OperatorActions(Queue):
    """Operator actions on queued messages (they read messages and
    recipients, so they build on `Queue`)."""

    def log_event(
        self,
        db: sqlite3.Connection,
        queue_id: str,
        actor: str,
        action: str,
        detail: str = "",
        *,
        domain: str | None = None,
    ) -> None:
        db.execute(
            "INSERT INTO events (queue_id, at_ms, actor, action, detail, domain)"
            " VALUES (?,?,?,?,?,?)",
            (queue_id, now_ms(), actor, action, detail, domain),
        )
        data = {"detail": detail, **({"domain": domain} if domain else {})}
        self.append_audit(db, [AuditEntry(action, queue_id, actor, data)])

    # -- selecting ----------------------------------------------------------

    def unfinished(
        self,
        *,
        queue_ids: Sequence[str] | None = None,
        domains: Sequence[str] = (),
        classes: Sequence[str] = (),
        states: Sequence[str] = (),
        received_before_ms: int | None = None,
        received_after_ms: int | None = None,
    ) -> list[sqlite3.Row]:
        """Unfinished recipients of messages not done, oldest message
        first, that meet every given criterion (any of the values given
        for one): queue id, domain, class (the recipient's, else its
        message's), state (`pending`, `deferred`, `held`: see `_STATE`) and
        the time the message was received."""
        where = [
            "m.state IN ('active','held')",
            "r.status IN ('pending','deferred','held','awaiting-sender')",
        ]
        params: list[Any] = []
        for column, values in (
            ("r.domain", domains),
            ("coalesce(r.class, m.class, 'normal')", classes),
            (_STATE, states),
        ):
            if values:
                where.append(f"{column} IN ({','.join('?' * len(values))})")
                params += values
        if received_before_ms is not None:
            where.append("m.received_ms <= ?")
            params.append(received_before_ms)
        if received_after_ms is not None:
            where.append("m.received_ms >= ?")
            params.append(received_after_ms)
        select = (
            "SELECT r.queue_id, r.idx, r.address, r.domain, r.status,"
            f" coalesce(r.class, m.class, 'normal') AS class, {_STATE} AS state,"
            " m.state AS message_state, m.received_ms, m.sender, m.size"
            " FROM recipients r JOIN messages m ON m.queue_id = r.queue_id"
            f" WHERE {' AND '.join(where)}"
        )
        if queue_ids is None:
            rows = self.db.execute(select, params).fetchall()
        else:
            room = _MAX_PARAMS - len(params)
            rows = [
                row
                for chunk in _chunks(sorted(set(queue_ids)), room)
                for row in self.db.execute(
                    f"{select} AND r.queue_id IN ({','.join('?' * len(chunk))})",
                    [*params, *chunk],
                )
            ]
        rows.sort(key=lambda r: (r["received_ms"], r["queue_id"], r["idx"]))
        return rows

    def _current(
        self, db: sqlite3.Connection, queue_id: str, indexes: Iterable[int], statuses: Sequence[str]
    ) -> list[sqlite3.Row]:
        """Those of `indexes` whose status is still one of `statuses`, read
        inside the action's transaction (the relay may have moved them on
        since they were selected)."""
        wanted = set(indexes)
        rows = db.execute(
            "SELECT idx, address FROM recipients WHERE queue_id=?"
            f" AND status IN ({','.join('?' * len(statuses))}) ORDER BY idx",
            (queue_id, *statuses),
        ).fetchall()
        return [r for r in rows if r["idx"] in wanted]

    # -- actions --------------------------------------------------------------

    def hold_messages(self, queue_ids: Iterable[str], actor: str, reason: str) -> list[str]:
        """Holds whole messages (a message is one spool file, as in
        Postfix's hold queue); returns those that were active."""
        changed = []
        for batch in _chunks(list(queue_ids), _BATCH):
            with self.transaction() as db:
                for qid in batch:
                    cur = db.execute(
                        "UPDATE messages SET state='held', hold_reason=? WHERE queue_id=?"
                        " AND state='active'",
                        (reason, qid),
                    )
                    if cur.rowcount:
                        self.log_event(db, qid, actor, "hold", reason)
                        changed.append(qid)
        return changed

    def release_recipients(
        self, targets: Targets, actor: str, reason: str, level: str | None = None
    ) -> dict[str, list[int]]:
        """Resumes messages an operator held and the recipients among
        `targets` their class's policy held (`on_unmet = "hold"`); all
        unfinished targets of a message with something released become
        due now. With `level`, that transport level replaces the
        requirement of those recipients for their later attempts (who,
        when and why are recorded). Returns the recipients released."""
        released: dict[str, list[int]] = {}
        for batch in _chunks(list(targets.items()), _BATCH):
            with self.transaction() as db:
                for qid, indexes in batch:
                    whole = db.execute(
                        "UPDATE messages SET state='active', hold_reason=NULL"
                        " WHERE queue_id=? AND state='held'",
                        (qid,),
                    ).rowcount
                    held = self._current(db, qid, indexes, ("held",))
                    db.executemany(
                        "UPDATE recipients SET status='pending', next_ms=0"
                        " WHERE queue_id=? AND idx=?",
                        [(qid, r["idx"]) for r in held],
                    )
                    if not whole and not held:
                        continue  # nothing of it was held: not a release
                    changed = [
                        r["idx"] for r in self._current(db, qid, indexes, ("pending", "deferred"))
                    ]
                    db.executemany(
                        "UPDATE recipients SET next_ms=0 WHERE queue_id=? AND idx=?",
                        [(qid, i) for i in changed],
                    )
                    if level is not None:
                        db.executemany(
                            "UPDATE recipients SET override_level=? WHERE queue_id=? AND idx=?",
                            [(level, qid, i) for i in changed],
                        )
                    detail = f"level={level}; {reason}" if level else reason
                    self.log_event(db, qid, actor, "release", detail)
                    released[qid] = changed
        return released

    def delete_recipients(self, targets: Targets, actor: str, reason: str) -> dict[str, list[int]]:
        """Gives the unfinished recipients among `targets` the final state
        'deleted' (no DSN); the relay removes a spool file once it sees its
        message finished."""
        return self._finalize(
            targets, actor, reason, action="delete", status="deleted", enhanced=None
        )

    def bounce_recipients(self, targets: Targets, actor: str, reason: str) -> dict[str, list[int]]:
        """Gives the unfinished recipients among `targets` the final state
        'bounced' with their DSN still to send: the relay's scanner queues
        it (`dsn_pending`) as for any other bounce, then the spool file
        goes."""
        return self._finalize(
            targets, actor, reason, action="bounce", status="bounced", enhanced=BOUNCE_STATUS
        )

    def _finalize(
        self,
        targets: Targets,
        actor: str,
        reason: str,
        *,
        action: str,
        status: str,
        enhanced: str | None,
    ) -> dict[str, list[int]]:
        t = now_ms()
        # A bounce's text is the DSN's diagnostic, read by the sender: it
        # names no operator account.
        who = actor if status == "deleted" else "the mail administrator"
        verb = {"deleted": "deleted", "bounced": "returned"}[status]
        text = f"{verb} by {who}: {reason}" if reason else f"{verb} by {who}"
        changed: dict[str, list[int]] = {}
        for batch in _chunks(list(targets.items()), _BATCH):
            with self.transaction() as db:
                for qid, indexes in batch:
                    rows = self._current(db, qid, indexes, UNFINISHED)
                    if not rows:
                        continue
                    detail = _detail(db, qid, reason, rows, UNFINISHED)
                    db.executemany(
                        "INSERT INTO attempts (queue_id, address, at_ms, status, enhanced, text)"
                        " VALUES (?,?,?,?,?,?)",
                        [(qid, r["address"], t, status, enhanced, text) for r in rows],
                    )
                    db.executemany(
                        "UPDATE recipients SET status=?, code=NULL, enhanced=?, text=?, host=NULL,"
                        " reason=NULL, dsn_sent=0, updated_ms=? WHERE queue_id=? AND idx=?",
                        [(status, enhanced, text, t, qid, r["idx"]) for r in rows],
                    )
                    self.log_event(db, qid, actor, action, detail)
                    changed[qid] = [r["idx"] for r in rows]
        return changed

    def flush_recipients(self, targets: Targets, actor: str, reason: str) -> dict[str, list[int]]:
        """Makes the deferred recipients among `targets` due now (held ones
        stay held)."""
        changed: dict[str, list[int]] = {}
        for batch in _chunks(list(targets.items()), _BATCH):
            with self.transaction() as db:
                for qid, indexes in batch:
                    rows = self._current(db, qid, indexes, ("deferred",))
                    if not rows:
                        continue
                    db.executemany(
                        "UPDATE recipients SET next_ms=0 WHERE queue_id=? AND idx=?",
                        [(qid, r["idx"]) for r in rows],
                    )
                    detail = _detail(db, qid, reason, rows, ("deferred",))
                    self.log_event(db, qid, actor, "flush", detail)
                    changed[qid] = [r["idx"] for r in rows]
        return changed

    # -- one message (the store's own tests, and callers with one id) -------

    def _all_of(self, queue_id: str) -> dict[str, list[int]]:
        return {queue_id: [r["idx"] for r in self.unfinished(queue_ids=[queue_id])]}

    def hold(self, queue_id: str, actor: str, reason: str) -> bool:
        return bool(self.hold_messages([queue_id], actor, reason))

    def release(self, queue_id: str, actor: str, reason: str, level: str | None = None) -> bool:
        return bool(self.release_recipients(self._all_of(queue_id), actor, reason, level))

    def delete(self, queue_id: str, actor: str, reason: str) -> bool:
        return bool(self.delete_recipients(self._all_of(queue_id), actor, reason))

    # -- reading --------------------------------------------------------------

    def listing(self, include_done: bool = False) -> list[dict[str, Any]]:
        """Every message of the store (of the whole cluster on PostgreSQL,
        with its owner as ``node``)."""
        where = "" if include_done else "WHERE m.state != 'done'"
        node = ", m.node" if self.dialect.postgres else ""
        rows = self.db.execute(
            f"SELECT m.queue_id, m.received_ms, m.sender, m.size, m.state, m.message_id{node},"
            " COUNT(r.idx) AS rcpts,"
            " SUM(CASE WHEN r.status IN ('pending','deferred','held','awaiting-sender')"
            " THEN 1 ELSE 0 END) AS waiting,"
            " SUM(CASE WHEN r.status = 'held' THEN 1 ELSE 0 END) AS held,"
            " MAX(m.class) AS class,"
            " MAX(CASE WHEN r.status IN ('deferred','held','awaiting-sender')"
            " THEN trim(coalesce(CAST(r.code AS TEXT), '') || ' '"
            " || coalesce(r.enhanced, '') || ' ' || coalesce(r.text, '')) END) AS reason, "
            + self.dialect.concat_distinct(
                "CASE WHEN r.status IN ('pending','deferred','held')"
                " AND r.domain IN (SELECT domain FROM suspended_domains) THEN r.domain END"
            )
            + " AS suspended"
            f" FROM messages m JOIN recipients r ON r.queue_id=m.queue_id {where}"
            " GROUP BY m.queue_id ORDER BY m.received_ms"
        ).fetchall()
        out = [dict(r) for r in rows]
        for item in out:
            item["suspended"] = (
                sorted((item["suspended"] or "").split(",")) if item["suspended"] else []
            )
        return out

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


def _detail(
    db: sqlite3.Connection,
    queue_id: str,
    reason: str,
    rows: Sequence[sqlite3.Row],
    statuses: Sequence[str],
) -> str:
    """The event's detail: the reason, and the recipients when the action
    took only some of the message's in `statuses` (a selection by domain
    or class); read before the change."""
    (total,) = db.execute(
        f"SELECT COUNT(*) FROM recipients WHERE queue_id=? AND status IN"
        f" ({','.join('?' * len(statuses))})",
        (queue_id, *statuses),
    ).fetchone()
    if len(rows) == total:
        return reason
    addresses = ", ".join(r["address"] for r in rows)
    return f"{reason} (recipients: {addresses})" if reason else f"recipients: {addresses}"
