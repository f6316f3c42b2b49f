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
        transaction: the merge is the upsert's own (`_MERGE`), so the
        ledger is not read first (a round trip in every batch of results
        on PostgreSQL), and a row another node changed meanwhile is
        merged as it is."""
        if not seen:
            return
        t = now_ms()
        db.executemany(_MERGE, [_new_row(domain, s, t) for domain, s in seen.items()])

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


def _rank(column: str, ranks: Mapping[str, int]) -> str:
    """SQL for the rank of `column`'s value in `ranks` (0 when it has
    none: no level, no method)."""
    whens = " ".join(f"WHEN '{value}' THEN {rank}" for value, rank in ranks.items())
    return f"(CASE {column} {whens} ELSE 0 END)"


_LEVEL_RANKS = {level.value: level.rank + 1 for level in Level}
# A better level, or at the same level a method at least as strong,
# replaces the best (what the ratchet holds the partner to).
_BETTER = (
    "excluded.best_level IS NOT NULL AND (partners.best_level IS NULL"
    f" OR {_rank('excluded.best_level', _LEVEL_RANKS)}"
    f" > {_rank('partners.best_level', _LEVEL_RANKS)}"
    " OR (excluded.best_level = partners.best_level"
    f" AND {_rank('excluded.best_method', METHOD_RANK)}"
    f" >= {_rank('partners.best_method', METHOD_RANK)}))"
)
# A batch's summary of one domain (`_new_row`) into its ledger row: a
# new domain's row as it comes; a known one's last time, its best if
# better (`_BETTER`) and its last failure if there was one; when it
# was first seen and what an operator accepted stay. An upsert both
# stores speak.
_MERGE = (
    "INSERT INTO partners (domain, first_ms, last_ms, best_level, best_method, best_ms,"
    " failure_ms, failure_reason, failure_text) VALUES (?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT (domain) DO UPDATE SET last_ms=excluded.last_ms,"
    f" best_level=CASE WHEN {_BETTER} THEN excluded.best_level ELSE partners.best_level END,"
    f" best_method=CASE WHEN {_BETTER} THEN excluded.best_method ELSE partners.best_method END,"
    f" best_ms=CASE WHEN {_BETTER} THEN excluded.best_ms ELSE partners.best_ms END,"
    " failure_ms=COALESCE(excluded.failure_ms, partners.failure_ms),"
    " failure_reason=CASE WHEN excluded.failure_ms IS NULL THEN partners.failure_reason"
    " ELSE excluded.failure_reason END,"
    " failure_text=CASE WHEN excluded.failure_ms IS NULL THEN partners.failure_text"
    " ELSE excluded.failure_text END"
)


def _new_row(domain: str, s: Seen, t: int) -> tuple[Any, ...]:
    """The ledger row of a domain first seen in this batch (`_MERGE`'s
    parameters): its best if it was delivered to, its failure if one."""
    best = (s.level, s.method or None, t) if s.level else (None, None, None)
    failure = (t, s.failure_reason, s.failure_text) if s.failure_reason else (None, None, None)
    return (domain, t, t, *best, *failure)


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
