"""Evidence lookups (``mxg evidence``): recipients, or every attempt,
chosen by message, address, domain, time, class and outcome. The rows
carry what the store kept; `mxg.evidence` flattens them for people and
spreadsheets."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from mxg.store.db import Database

# The outcomes a lookup selects by: a recipient's state (or an attempt's
# result, with attempts), `awaiting-sender` while a sender decides.
OUTCOMES = ("sent", "deferred", "bounced", "held", "deleted", "pending", "awaiting-sender")


@dataclass(frozen=True)
class EvidenceQuery:
    """What to look up; every field that is set narrows the answer."""

    queue_id: str | None = None
    message_id: str | None = None
    recipient: str | None = None
    sender: str | None = None
    domain: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    risk_class: str | None = None
    outcome: str | None = None
    # Every attempt instead of each recipient's last state.
    attempts: bool = False
    limit: int | None = None


# The columns both kinds of rows share, the attempt's or the recipient's
# own where they differ (`a` is attempts or recipients).
_COLUMNS = (
    "m.queue_id, m.message_id, m.received_ms, m.sender, m.class AS message_class,"
    " r.class AS class, r.override_level, a.address, a.status, a.code, a.enhanced,"
    " a.text, a.host, a.ip, a.level, a.evidence, a.reason, r.decision, r.decided"
)


class EvidenceQueries(Database):
    def queue_ids_with_message_id(self, message_id: str) -> list[str]:
        """The messages with this Message-ID (with or without ``<>``), oldest
        first: a client may have sent one message twice."""
        return [
            r[0]
            for r in self.db.execute(
                "SELECT queue_id FROM messages WHERE trim(message_id, '<>') = trim(?, '<>')"
                " ORDER BY received_ms",
                (message_id,),
            )
        ]

    def evidence(self, q: EvidenceQuery) -> list[sqlite3.Row]:
        where, params = _where(q)
        if q.attempts:
            sql = (
                f"SELECT {_COLUMNS}, a.at_ms AS at_ms FROM attempts a"
                " JOIN messages m ON m.queue_id = a.queue_id"
                " JOIN recipients r ON r.queue_id = a.queue_id AND r.address = a.address"
            )
            order = " ORDER BY a.at_ms, a.id"
        else:
            sql = (
                f"SELECT {_COLUMNS}, a.updated_ms AS at_ms FROM recipients a"
                " JOIN messages m ON m.queue_id = a.queue_id"
                " JOIN recipients r ON r.queue_id = a.queue_id AND r.idx = a.idx"
            )
            order = " ORDER BY m.received_ms, a.queue_id, a.idx"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += order
        if q.limit:
            sql += " LIMIT ?"
            params.append(q.limit)
        return self.db.execute(sql, params).fetchall()


def _where(q: EvidenceQuery) -> tuple[list[str], list[object]]:
    where: list[str] = []
    params: list[object] = []
    for clause, value in (
        ("m.queue_id = ?", q.queue_id),
        ("trim(m.message_id, '<>') = trim(?, '<>')", q.message_id),
        ("a.address = ? COLLATE NOCASE", q.recipient),
        ("m.sender = ? COLLATE NOCASE", q.sender),
        ("r.domain = ? COLLATE NOCASE", q.domain),
        ("m.received_ms >= ?", q.since_ms),
        ("m.received_ms < ?", q.until_ms),
        ("coalesce(r.class, m.class) = ?", q.risk_class),
        ("a.status = ?", q.outcome),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    return where, params
