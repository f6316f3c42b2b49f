"""What an operator does to the queue (``mxg queue ...``): hold, release
(optionally at another level), delete, flush, and the listing and details
it reads; each change is logged as an event with who did it and why."""

from __future__ import annotations

import sqlite3
from typing import Any

from mxg.store.audit import AuditEntry
from mxg.store.queue import Queue
from mxg.store.records import now_ms


class OperatorActions(Queue):
    """Operator actions on queued messages (they read messages and
    recipients, so they build on `Queue`)."""

    def log_event(
        self, db: sqlite3.Connection, queue_id: str, actor: str, action: str, detail: str = ""
    ) -> None:
        db.execute(
            "INSERT INTO events (queue_id, at_ms, actor, action, detail) VALUES (?,?,?,?,?)",
            (queue_id, now_ms(), actor, action, detail),
        )
        self.append_audit(db, [AuditEntry(action, queue_id, actor, {"detail": detail})])

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
