"""Retention: finished messages leave the store once they are older
than `[retention] keep`, with their recipients, attempts, operator events
and audit records (GDPR Art. 5(1)(e), storage limitation). Messages still
queued or held stay whatever their age.

The audit trail stays verifiable: before the records up to number S go,
a checkpoint at S is signed (`mxg.audit_trail`), and `mxg audit verify`
starts from it. Pruning goes in batches of `BATCH` messages, each its own
transaction, so that the relay's own writes wait for one batch at most.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from mxg.store.audit import AuditEntry, AuditTrail
from mxg.store.db import _chunks

# Messages per pruning transaction: a few milliseconds of the store's time.
BATCH = 500


@dataclass
class Pruned:
    """What a prune removed (or, on a dry run, would remove)."""

    messages: int = 0
    audit_records: int = 0
    # The checkpoint that covers the audit records that went.
    checkpoint_seq: int | None = None
    queue_ids: list[str] = field(default_factory=list)


class Retention(AuditTrail):
    def prunable(self, cutoff_ms: int) -> list[str]:
        """Finished messages received before `cutoff_ms`."""
        return [
            r[0]
            for r in self.db.execute(
                "SELECT queue_id FROM messages WHERE state = 'done' AND received_ms < ?",
                (cutoff_ms,),
            )
        ]

    def prunable_audit(self, cutoff_ms: int) -> int:
        """The last audit record whose block was written before `cutoff_ms`
        (0: none). Blocks go whole. The chain's time only grows, bar a
        clock stepped back; a block written then stays until a later one is
        old enough."""
        row = self.db.execute(
            "SELECT MAX(last_seq) FROM audit_blocks WHERE at_ms < ?", (cutoff_ms,)
        ).fetchone()
        return int(row[0] or 0)

    def prune_plan(self, cutoff_ms: int) -> Pruned:
        """What a prune at `cutoff_ms` removes."""
        out = Pruned(queue_ids=self.prunable(cutoff_ms))
        out.messages = len(out.queue_ids)
        last = self.prunable_audit(cutoff_ms)
        if last:
            first = self.db.execute("SELECT MIN(first_seq) FROM audit_blocks").fetchone()[0]
            out.audit_records = last - int(first) + 1
            out.checkpoint_seq = last
        return out

    def prune(
        self,
        cutoff_ms: int,
        sign: Callable[[bytes], tuple[str, bytes]],
        *,
        actor: str = "mxg",
        dry_run: bool = False,
    ) -> Pruned:
        """Removes what is older than `cutoff_ms`. `sign` signs a
        checkpoint message and says with which key (`SigningKey`)."""
        out = self.prune_plan(cutoff_ms)
        if not dry_run:
            for _ in self.prune_steps(out, sign, actor=actor, cutoff_ms=cutoff_ms):
                pass
        return out

    def prune_steps(
        self,
        plan: Pruned,
        sign: Callable[[bytes], tuple[str, bytes]],
        *,
        actor: str,
        cutoff_ms: int,
    ) -> Iterator[None]:
        """Carries out `plan` one transaction at a time, yielding between
        them (the relay lets its own work in there); the prune itself is
        the trail's next record."""
        for chunk in _chunks(plan.queue_ids, BATCH):
            marks = ",".join("?" * len(chunk))
            with self.transaction() as db:
                # A message's entries in audit_messages go with it; the
                # blocks themselves go by age (_prune_audit).
                for table in (
                    "attempts",
                    "events",
                    "decision_tokens",
                    "carriers",
                    "recipients",
                    "messages",
                    "audit_messages",
                ):
                    db.execute(f"DELETE FROM {table} WHERE queue_id IN ({marks})", chunk)
            yield
        if plan.checkpoint_seq:
            yield from self._prune_audit(plan.checkpoint_seq, sign)
        if plan.messages or plan.checkpoint_seq:
            summary = {
                "cutoff_ms": cutoff_ms,
                "messages": plan.messages,
                "audit_up_to": plan.checkpoint_seq,
            }
            self.audit([AuditEntry("pruned", "", actor, summary)])

    def _prune_audit(self, last: int, sign: Callable[[bytes], tuple[str, bytes]]) -> Iterator[None]:
        self.sign_at(last, sign)
        first = int(self.db.execute("SELECT MIN(first_seq) FROM audit_blocks").fetchone()[0])
        for low in range(first, last + 1, BATCH * 10):
            with self.transaction() as db:
                db.execute(
                    "DELETE FROM audit_blocks WHERE last_seq >= ? AND last_seq < ?"
                    " AND last_seq <= ?",
                    (low, low + BATCH * 10, last),
                )
            yield
