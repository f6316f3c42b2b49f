"""The queue index and audit store (SQLite, WAL).

The spool is the source of truth for *what* was accepted; this store holds
*where each recipient stands*: pending, deferred (with its next attempt),
or final (sent, bounced, deleted), and an audit row for every attempt.
Final states are committed here before a spool file is removed
(ARCHITECTURE.md rule 11): a transaction is fsynced when it commits, or,
for the batches on the hot path whose loss a restart repairs, by one
`Store.sync` before any spool file goes. Commits are batched, one per
drained event batch.

`Store` is composed of one part per concern: `db` (the connection and
durable transactions), `intake` (indexing accepted messages), `queue`
(due recipients, results, finished messages), `operator` (``mxg queue``
actions), `suspend` (domains whose delivery is suspended), `evidence`
(``mxg evidence`` lookups), `audit` (the audit trail's hash chain),
`sts_cache` (MTA-STS policies kept across restarts), `tlsrpt` (TLS
report session counts and what was sent) and `depth` (the
queue's size and age, for metrics); the tables are in `schema`, the
records it takes and gives in `records`, and its files on disk in
`files`. Import from ``mxg.store``.
"""

from __future__ import annotations

from mxg.store.cluster import ClusterQueries
from mxg.store.decisions import Change, Decided, Decisions
from mxg.store.depth import Decision, Depth, QueueDepth
from mxg.store.evidence import EvidenceQueries, EvidenceQuery
from mxg.store.files import is_full, is_outage, is_unavailable, quarantine
from mxg.store.intake import Intake, dumps, envelope_rows
from mxg.store.operator import BOUNCE_STATUS, UNFINISHED, Targets
from mxg.store.records import FINAL, Due, NewMessage, Outcome, domain_of, now_ms
from mxg.store.reports import ReportQueries, ReportQuery
from mxg.store.retention import Pruned, Retention
from mxg.store.schema import SCHEMA
from mxg.store.sts_cache import StsPolicies
from mxg.store.suspend import Suspensions


class Store(
    Intake,
    Suspensions,
    Decisions,
    StsPolicies,
    EvidenceQueries,
    ReportQueries,
    Retention,
    Depth,
    ClusterQueries,
):
    """The queue index: one SQLite database (see the package docstring)."""

    def companion(self, *, shares_sync: bool = False) -> Store:
        """On PostgreSQL: a second connection to this store, for a worker
        thread beside the relay's event loop (the intake's commits,
        `pipeline/acknowledge.py`; delivery results, `pipeline/beside.py`),
        as the same node with the same spool reader. Their transactions
        take turns, and they share the audit tail, so that each one's
        records follow the other's. `shares_sync`: its commits that did
        not wait for the WAL are this store's to `sync` (and to repair
        after a restart), as if made here."""
        # It runs the hot path's statements alone, planned by key
        # (`PgConnection`, `_KEYED_PLANS`).
        other = Store(self.url, keyed_plans=True)
        other.node = self.node
        other.read_raws = self.read_raws
        other.share_writers(self, sync=shares_sync)
        return other


__all__ = [
    "BOUNCE_STATUS",
    "FINAL",
    "SCHEMA",
    "UNFINISHED",
    "Change",
    "Decided",
    "Decision",
    "Due",
    "EvidenceQuery",
    "NewMessage",
    "Outcome",
    "Pruned",
    "QueueDepth",
    "ReportQuery",
    "Store",
    "Targets",
    "domain_of",
    "dumps",
    "envelope_rows",
    "is_full",
    "is_outage",
    "is_unavailable",
    "now_ms",
    "quarantine",
]
