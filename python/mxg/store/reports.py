"""The figures of a report for the data protection officer (``mxg
report``): recipients of the messages received in a time range, counted
by class, outcome, level and method, and per recipient domain with the
reasons of its failures. `mxg.report` turns them into text, CSV, JSON or
HTML."""

from __future__ import annotations

from dataclasses import dataclass

from mxg.store.db import Database


@dataclass(frozen=True)
class ReportQuery:
    since_ms: int
    until_ms: int
    risk_class: str | None = None
    domain: str | None = None


@dataclass(frozen=True)
class ReportRow:
    """How many recipients (of how many messages) share these values."""

    risk_class: str
    domain: str
    status: str
    level: str
    method: str
    rerouted: bool
    decision: str  # the sender's or operator's choice, "" when none
    recipients: int
    messages: int


class ReportQueries(Database):
    def _where(self, q: ReportQuery) -> tuple[str, list[object]]:
        where = ["m.received_ms >= ?", "m.received_ms < ?"]
        params: list[object] = [q.since_ms, q.until_ms]
        if q.risk_class is not None:
            where.append("coalesce(r.class, m.class) = ?")
            params.append(q.risk_class)
        if q.domain is not None:
            where.append("r.domain = ? COLLATE NOCASE")
            params.append(q.domain)
        return " AND ".join(where), params

    def report_rows(self, q: ReportQuery) -> list[ReportRow]:
        """One row for every combination that occurs."""
        where, params = self._where(q)
        # A carrier (origin local) carries its recipients' decision too:
        # the decision is counted once, at the message it was taken for.
        rows = self.db.execute(
            "SELECT coalesce(r.class, m.class, ''), r.domain, r.status, coalesce(r.level, ''),"
            " coalesce(json_extract(r.evidence, '$.method'), ''), r.route = 'reroute',"
            " CASE WHEN m.origin = 'local' THEN '' ELSE coalesce(r.decision, '') END,"
            " COUNT(*), COUNT(DISTINCT m.queue_id)"
            " FROM recipients r JOIN messages m ON m.queue_id = r.queue_id"
            f" WHERE {where} GROUP BY 1, 2, 3, 4, 5, 6, 7",
            params,
        ).fetchall()
        return [ReportRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7], r[8]) for r in rows]

    def messages_by_class(self, q: ReportQuery) -> dict[str, int]:
        where, params = self._where(q)
        return {
            r[0]: r[1]
            for r in self.db.execute(
                "SELECT coalesce(r.class, m.class, ''), COUNT(DISTINCT m.queue_id)"
                " FROM recipients r JOIN messages m ON m.queue_id = r.queue_id"
                f" WHERE {where} GROUP BY 1",
                params,
            )
        }

    def failure_reasons(self, q: ReportQuery) -> list[tuple[str, str, int]]:
        """(domain, reason, attempts) of the failed attempts."""
        where, params = self._where(q)
        return [
            (r[0], r[1], r[2])
            for r in self.db.execute(
                "SELECT r.domain, coalesce(a.reason, 'unknown'), COUNT(*)"
                " FROM attempts a JOIN recipients r"
                " ON r.queue_id = a.queue_id AND r.address = a.address"
                " JOIN messages m ON m.queue_id = a.queue_id"
                f" WHERE {where} AND a.status IN ('deferred', 'bounced')"
                " GROUP BY 1, 2 ORDER BY 1, 3 DESC",
                params,
            )
        ]
