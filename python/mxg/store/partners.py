"""The partner ledger: for each recipient domain, the best level proven
and by which method, when it was first and last seen, and its last
failure (``mxg partners``). With ``[delivery] ratchet`` it is what a
partner is held to: a drop below its remembered authenticated method (a
DANE partner whose TLSA records vanish, say) is warned about or treated
as unmet until an operator accepts the new state.

It is written once per domain per batch of results, in the batch's own
transaction (`Queue.record`), from a summary the pipeline makes; the
ranks of levels and methods are `mxg.vocab`'s."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mxg.store.audit import AuditEntry, AuditTrail
from mxg.store.db import _MAX_PARAMS, _chunks
from mxg.store.records import now_ms
from mxg.vocab import Level

# Authentication methods from the strongest: DANE binds the key in
# DNSSEC, an operator pin names it, MTA-STS and DNSSEC+PKIX rest on the
# web PKI (the authentication plan's own order, outbound/auth_plan.rs).
METHOD_RANK = {"dane-ee": 4, "dane-ta": 4, "pinned": 3, "mta-sts": 2, "dnssec-pkix": 1}


def method_rank(method: str | None) -> int:
    return METHOD_RANK.get(method or "", 0)


@dataclass
class Seen:
    """What one batch of results showed of one domain."""

    level: str = ""  # the best level delivered at ("" none delivered)
    method: str = ""
    failure_reason: str = ""
    failure_text: str = ""

    def delivered(self, level: str, method: str | None) -> None:
        better = not self.level or Level(level).rank > Level(self.level).rank
        if better or (level == self.level and method_rank(method) > method_rank(self.method)):
            self.level, self.method = level, method or ""

    def failed(self, reason: str | None, text: str) -> None:
        self.failure_reason, self.failure_text = reason or "", text


class Partners(AuditTrail):
    def note_partners(self, db: sqlite3.Connection, seen: Mapping[str, Seen]) -> None:
        """Merges a batch's summary into the ledger, inside the caller's
        transaction."""
        if not seen:
            return
        t = now_ms()
        known = {
            r["domain"]: r
            for chunk in _chunks(sorted(seen), _MAX_PARAMS)
            for r in db.execute(
                f"SELECT * FROM partners WHERE domain IN ({','.join('?' * len(chunk))})", chunk
            )
        }
        rows = [_merged(domain, known.get(domain), s, t) for domain, s in seen.items()]
        db.executemany(
            # An upsert both stores speak (INSERT OR REPLACE is SQLite's).
            "INSERT INTO partners (domain, first_ms, last_ms, best_level, best_method,"
            " best_ms, failure_ms, failure_reason, failure_text, accepted_ms, accepted_by,"
            " accepted_reason) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (domain) DO UPDATE"
            " SET first_ms=excluded.first_ms, last_ms=excluded.last_ms,"
            " best_level=excluded.best_level, best_method=excluded.best_method,"
            " best_ms=excluded.best_ms, failure_ms=excluded.failure_ms,"
            " failure_reason=excluded.failure_reason, failure_text=excluded.failure_text,"
            " accepted_ms=excluded.accepted_ms, accepted_by=excluded.accepted_by,"
            " accepted_reason=excluded.accepted_reason",
            rows,
        )

    def partner(self, domain: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(
            "SELECT * FROM partners WHERE domain = ? COLLATE NOCASE", (domain,)
        ).fetchone()
        return row

    def partner_list(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute("SELECT * FROM partners ORDER BY domain")]

    def accept_partner(self, domain: str, actor: str, reason: str) -> bool:
        """Forgets what the partner was held to: the next delivery sets it
        anew. Who, when and why go into the ledger and the audit trail."""
        with self.transaction() as db:
            old = db.execute(
                "SELECT best_level, best_method FROM partners WHERE domain = ? COLLATE NOCASE",
                (domain,),
            ).fetchone()
            if old is None:
                return False
            db.execute(
                "UPDATE partners SET best_level = NULL, best_method = NULL, best_ms = NULL,"
                " accepted_ms = ?, accepted_by = ?, accepted_reason = ?"
                " WHERE domain = ? COLLATE NOCASE",
                (now_ms(), actor, reason, domain),
            )
            self.append_audit(
                db,
                [
                    AuditEntry(
                        "partner-accept",
                        "",
                        actor,
                        {
                            "domain": domain.lower(),
                            "was_level": old[0],
                            "was_method": old[1],
                            "reason": reason,
                        },
                    )
                ],
            )
        return True


def _merged(domain: str, old: sqlite3.Row | None, s: Seen, t: int) -> tuple[Any, ...]:
    """The ledger row after a batch: a better level (or, at the same level,
    a method at least as strong) replaces the best; a failure the last."""
    none3: tuple[Any, Any, Any] = (None, None, None)
    level, method, best_ms = (
        (old["best_level"], old["best_method"], old["best_ms"]) if old else none3
    )
    if s.level and (
        not level
        or Level(s.level).rank > Level(level).rank
        or (s.level == level and method_rank(s.method) >= method_rank(method))
    ):
        level, method, best_ms = s.level, s.method or None, t
    if s.failure_reason:
        failure: tuple[Any, Any, Any] = (t, s.failure_reason, s.failure_text)
    elif old:
        failure = (old["failure_ms"], old["failure_reason"], old["failure_text"])
    else:
        failure = none3
    accepted = (old["accepted_ms"], old["accepted_by"], old["accepted_reason"]) if old else none3
    first = old["first_ms"] if old else t
    return (domain, first, t, level, method, best_ms, *failure, *accepted)


# (domain, status, level, method, reason, text) of one recipient's result.
Result = tuple[str, str, str, str | None, str | None, str]


def summarise(results: Iterable[Result]) -> dict[str, Seen]:
    """(domain, status, level, method, reason, text) of each recipient's
    result → one `Seen` per domain."""
    seen: dict[str, Seen] = {}
    for domain, status, level, method, reason, text in results:
        s = seen.setdefault(domain.lower(), Seen())
        if status == "sent":
            s.delivered(level or "none", method)
        else:
            s.failed(reason, text)
    return seen
