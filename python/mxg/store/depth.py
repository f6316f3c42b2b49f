"""How deep the queue is, for ``/metrics`` and ``/ready``: messages by
state, recipients by status, the oldest message of each state, and the
operator's decisions recorded since a given event.

Each is an indexed query that reads no message row: counts walk the
partial indexes of what is still waiting (``messages_open_age``,
``recipients_waiting``, ``recipients_held``) for the states asked about,
the oldest is one index lookup (SQLite's min() optimisation on the
index's second column), decisions are a range of the events' row ids.
A scrape every few seconds costs milliseconds even with a large queue."""

from __future__ import annotations

from dataclasses import dataclass

from mxg.store.db import Database
from mxg.store.postgres import STORE_ERRORS

# What "in the queue" means: messages not yet done, recipients not final.
MESSAGE_STATES = ("active", "held")
# The terms of the partial indexes messages_open_age and recipients_waiting.
_OPEN = "state IN ('active','held')"
_WAITING = "status IN ('pending','deferred')"
# Decisions read per scrape at most; the rest are read by the next one.
MAX_DECISIONS = 10_000


@dataclass(frozen=True)
class QueueDepth:
    messages: dict[str, int]
    recipients: dict[str, int]
    # received_ms of the oldest message per state; None when there is none.
    oldest_ms: dict[str, int | None]


@dataclass(frozen=True)
class Decision:
    event_id: int
    action: str
    risk_class: str


class Depth(Database):
    """Read-only questions about the queue's size and age."""

    def depth(self) -> QueueDepth:
        # Each WHERE repeats the partial index's own term, or SQLite would
        # not use the index (schema.py).
        messages, oldest = {}, {}
        for state in MESSAGE_STATES:
            messages[state] = self.db.execute(
                f"SELECT count(*) FROM messages WHERE {_OPEN} AND state=?", (state,)
            ).fetchone()[0]
            oldest[state] = self.db.execute(
                f"SELECT min(received_ms) FROM messages WHERE {_OPEN} AND state=?", (state,)
            ).fetchone()[0]
        recipients = {
            status: self.db.execute(
                f"SELECT count(*) FROM recipients WHERE {_WAITING} AND status=?", (status,)
            ).fetchone()[0]
            for status in ("pending", "deferred")
        }
        recipients["held"] = self.db.execute(
            "SELECT count(*) FROM recipients WHERE status = 'held'"
        ).fetchone()[0]
        # Parked for the sender's decision: the partial index recipients_awaiting_sender.
        recipients["awaiting-sender"] = self.db.execute(
            "SELECT count(*) FROM recipients WHERE status = 'awaiting-sender'"
        ).fetchone()[0]
        return QueueDepth(messages, recipients, oldest)

    def last_event_id(self) -> int:
        """The newest event's id (0 when there is none): decisions after it
        are new."""
        row = self.db.execute("SELECT max(id) FROM events").fetchone()
        return int(row[0] or 0)

    def decisions_after(self, event_id: int) -> list[Decision]:
        """Operator actions recorded after `event_id` (hold, release,
        delete, ...), with the message's class, oldest first. A sender's
        or operator's decision about parked recipients is
        ``decided-<choice>`` (its event's detail starts ``choice=``)."""
        rows = self.db.execute(
            "SELECT e.id, e.action, coalesce(m.class, ''), e.detail FROM events e"
            " LEFT JOIN messages m ON m.queue_id = e.queue_id"
            " WHERE e.id > ? ORDER BY e.id LIMIT ?",
            (event_id, MAX_DECISIONS),
        ).fetchall()
        return [Decision(r[0], _action(r[1], r[3]), r[2]) for r in rows]

    def usable(self) -> str | None:
        """None when the index answers a read; else what is wrong."""
        try:
            self.db.execute("SELECT 1 FROM messages LIMIT 1").fetchall()
        except STORE_ERRORS as e:
            return str(e)
        return None


def _action(action: str, detail: str | None) -> str:
    if action != "decision" or not (detail or "").startswith("choice="):
        return action
    return "decided-" + (detail or "")[len("choice=") :].split(";", 1)[0].strip()
