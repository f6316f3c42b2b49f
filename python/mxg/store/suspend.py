"""Domains whose delivery an operator suspended (``mxg queue suspend``,
kcli's suspend): their recipients stay in the queue, undispatched, until
resumed. Kept in the store, so that a suspension outlives a restart and
the CLI can set it while the relay runs; each change is an event."""

from __future__ import annotations

import sqlite3

from mxg.store.operator import OperatorActions
from mxg.store.records import now_ms

# What the dispatcher asks for each batch of new messages.
SUSPENDED = "SELECT domain FROM suspended_domains"


class Suspensions(OperatorActions):
    """Suspended domains (their events go where operator actions' do)."""

    def suspend(self, domain: str, actor: str, reason: str) -> bool:
        """Suspends delivery to `domain`; False if it already was (the
        first suspension's time, actor and reason stay)."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO suspended_domains (domain, since_ms, actor, reason)"
                " VALUES (?,?,?,?)",
                (domain, now_ms(), actor, reason),
            )
            if cur.rowcount:
                self.log_event(db, "", actor, "suspend", reason, domain=domain)
            return cur.rowcount > 0

    def resume(self, domain: str, actor: str, reason: str) -> int | None:
        """Resumes delivery to `domain`: its deferred recipients become due
        now (their retry times passed while nothing was tried); returns how
        many, or None if the domain was not suspended."""
        with self.transaction() as db:
            gone = db.execute("DELETE FROM suspended_domains WHERE domain=?", (domain,)).rowcount
            if not gone:
                return None
            due = db.execute(
                "UPDATE recipients SET next_ms=0 WHERE domain=? AND status='deferred'", (domain,)
            ).rowcount
            self.log_event(db, "", actor, "resume", reason, domain=domain)
            return due

    def suspended(self) -> list[sqlite3.Row]:
        """The suspended domains with since when, by whom and why."""
        return self.db.execute(
            "SELECT domain, since_ms, actor, reason FROM suspended_domains ORDER BY domain"
        ).fetchall()

    def suspended_domains(self) -> frozenset[str]:
        """Asked by the dispatcher for each batch of new messages: the
        table is small (a handful of rows, usually none)."""
        return frozenset(r[0] for r in self.db.execute(SUSPENDED))
