"""The TLS report aggregate (RFC 8460): sessions counted per UTC day,
policy domain, policy and failure (``tlsrpt_sessions``), and the reports
sent from it (``tlsrpt_sent``), so that a day's report goes once per
destination, also across restarts.

The aggregate is written in the transaction of the results it counts
(`Queue.record`), one upsert per key and batch: a batch of a thousand
successful deliveries to one domain is one statement."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mxg.store.db import Database
from mxg.store.records import now_ms

_UPSERT = (
    "INSERT INTO tlsrpt_sessions (day, domain, policy, result, sending_ip, receiving_mx,"
    " receiving_ip, code, sessions) VALUES (?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT (day, domain, policy, result, sending_ip, receiving_mx, receiving_ip, code)"
    " DO UPDATE SET sessions = tlsrpt_sessions.sessions + excluded.sessions"
)


@dataclass(frozen=True)
class SentMark:
    """What became of one report to one rua destination."""

    status: str  # sent | failed | skipped
    tries: int
    next_ms: int
    detail: str


class TlsRptAggregate(Database):
    def note_tls_sessions(self, db: sqlite3.Connection, tally: Mapping[Any, int]) -> None:
        """Adds a batch's session counts (`mxg.tlsrpt.sessions.Tally`),
        inside the caller's transaction."""
        if not tally:
            return
        db.executemany(
            _UPSERT,
            [
                (
                    k.day,
                    k.domain,
                    k.policy,
                    k.result,
                    k.sending_ip,
                    k.receiving_mx,
                    k.receiving_ip,
                    k.code,
                    n,
                )
                for k, n in tally.items()
            ],
        )

    def add_tls_sessions(self, tally: Mapping[Any, int]) -> None:
        """The same in a transaction of its own (tests, tools)."""
        with self.transaction() as db:
            self.note_tls_sessions(db, tally)

    def tlsrpt_domains(self, day: str) -> list[str]:
        """Policy domains with sessions on `day`: only these get a report
        (no traffic, no report)."""
        rows = self.db.execute(
            "SELECT DISTINCT domain FROM tlsrpt_sessions WHERE day = ? ORDER BY domain", (day,)
        )
        return [r[0] for r in rows]

    def tlsrpt_rows(self, day: str, domain: str) -> list[sqlite3.Row]:
        return self.db.execute(
            "SELECT policy, result, sending_ip, receiving_mx, receiving_ip, code, sessions"
            " FROM tlsrpt_sessions WHERE day = ? AND domain = ?"
            " ORDER BY policy, result, receiving_mx, receiving_ip, sending_ip, code",
            (day, domain),
        ).fetchall()

    def tlsrpt_days(self) -> list[tuple[str, int, int]]:
        """Each day with its domains and sessions, newest first."""
        rows = self.db.execute(
            "SELECT day, COUNT(DISTINCT domain), SUM(sessions) FROM tlsrpt_sessions"
            " GROUP BY day ORDER BY day DESC"
        )
        return [(r[0], r[1], r[2]) for r in rows]

    # -- what was sent --------------------------------------------------

    def tlsrpt_marks(self, day: str, domain: str) -> dict[str, SentMark]:
        """rua → what became of this day's report to it."""
        rows = self.db.execute(
            "SELECT rua, status, tries, next_ms, detail FROM tlsrpt_sent"
            " WHERE day = ? AND domain = ?",
            (day, domain),
        )
        return {r[0]: SentMark(r[1], r[2], r[3], r[4]) for r in rows}

    def mark_tlsrpt(
        self,
        day: str,
        domain: str,
        rua: str,
        *,
        report_id: str,
        status: str,
        detail: str = "",
        next_ms: int = 0,
    ) -> None:
        """Records a report's fate at one destination (durable: a restart
        must not send it again)."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO tlsrpt_sent (day, domain, rua, report_id, at_ms, status, tries,"
                " next_ms, detail) VALUES (?,?,?,?,?,?,1,?,?)"
                " ON CONFLICT (day, domain, rua) DO UPDATE SET report_id = excluded.report_id,"
                " at_ms = excluded.at_ms, status = excluded.status, tries = tlsrpt_sent.tries + 1,"
                " next_ms = excluded.next_ms, detail = excluded.detail",
                (day, domain, rua, report_id, now_ms(), status, next_ms, detail),
            )

    def tlsrpt_sent_since(self, since_ms: int) -> list[sqlite3.Row]:
        """Reports sent since `since_ms` (the rate limit counts them)."""
        return self.db.execute(
            "SELECT rua, at_ms FROM tlsrpt_sent WHERE status = 'sent' AND at_ms >= ?",
            (since_ms,),
        ).fetchall()

    # -- runs an operator asked for ----------------------------------------

    def request_tlsrpt(self, day: str, domain: str, actor: str) -> int:
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO tlsrpt_requests (day, domain, at_ms, actor) VALUES (?,?,?,?)",
                (day, domain, now_ms(), actor),
            )
            return int(cur.lastrowid or 0)

    def tlsrpt_requests(self) -> list[sqlite3.Row]:
        """Requests not yet served, oldest first."""
        return self.db.execute(
            "SELECT * FROM tlsrpt_requests WHERE done_ms IS NULL ORDER BY id"
        ).fetchall()

    def tlsrpt_request(self, request_id: int) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(
            "SELECT * FROM tlsrpt_requests WHERE id = ?", (request_id,)
        ).fetchone()
        return row

    def finish_tlsrpt_request(self, request_id: int, result: str, error: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE tlsrpt_requests SET done_ms = ?, result = ?, error = ? WHERE id = ?",
                (now_ms(), result, error, request_id),
            )

    def prune_tlsrpt(self, before_day: str) -> int:
        """Drops the aggregate and marks of days before `before_day`."""
        with self.transaction() as db:
            n = db.execute("DELETE FROM tlsrpt_sessions WHERE day < ?", (before_day,)).rowcount
            db.execute("DELETE FROM tlsrpt_sent WHERE day < ?", (before_day,))
            db.execute("DELETE FROM tlsrpt_requests WHERE day < ?", (before_day,))
            return int(n)
