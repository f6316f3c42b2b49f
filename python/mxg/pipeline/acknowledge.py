"""Acknowledging on a PostgreSQL store: the 250 only once the message
and its spool file's exact bytes are committed there (docs/cluster.md,
"Bodies before the 250"), so that an acknowledged message outlives the
node that took it.

The engine runs with ``store_ack_ms``: every message at the end of DATA
arrives as ``Arrived`` and its session waits. Intake then classifies it,
indexes it and stores its spool file (`Store.add_messages`) in one
transaction, and answers ``stored`` (250) once that commit is on the
server's disk (`GroupFlush`: the event loop goes on meanwhile). A class
that rejects decides first, as without PostgreSQL (`Verdicts.decide`). A
transaction or flush that fails answers ``defer`` (451 4.3.0): the
client keeps the message. A session that stopped waiting (its client got
451 when no verdict came in time) refuses the verdict; its message,
stored meanwhile, is deleted in the store at once with the reason "not
acknowledged: the client was refused", so it is never delivered. The
same happens once the store is back to a message whose commit failed
with the connection: PostgreSQL may have committed it before the answer
was lost.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime

import anyio

from mxg.boundary import Arrived, Reply, Verdict, encode
from mxg.deliverylog import event, log
from mxg.errors import EngineStopped
from mxg.pipeline.context import Context
from mxg.pipeline.dispatch import Dispatcher
from mxg.pipeline.groupflush import GroupFlush
from mxg.pipeline.intake import Intake
from mxg.pipeline.storage import survives_a_full_store
from mxg.pipeline.verdicts import Verdicts
from mxg.store import NewMessage, Store, is_unavailable

# The reason recorded for a message stored but never acknowledged.
NOT_ACKNOWLEDGED = "not acknowledged: the client was refused"
# What the client hears when the store did not take the message.
NOT_STORED = Reply(451, "4.3.0", "Mail store unavailable: message not stored, try again later")
# Ids to check once the store is back: bounded, like every list of ids a
# lost session could otherwise grow.
MAX_UNACKNOWLEDGED = 100_000


# A commit's result: the ids stored, the server start it was made on, and
# the suspended domains as of then.
_Committed = tuple[set[str], datetime, frozenset[str]]


class Acknowledge:
    def __init__(
        self,
        ctx: Context,
        intake: Intake,
        verdicts: Verdicts,
        dispatch: Dispatcher,
    ) -> None:
        self._ctx = ctx
        self._intake = intake
        self._verdicts = verdicts
        self._dispatch = dispatch
        self._flush = GroupFlush(ctx.store.flusher)
        # The intake's own connection, one commit at a time in a worker
        # thread: the event loop goes on while PostgreSQL takes a batch
        # (its round trip was a quarter of the loop's time).
        # (Opened at the first commit, in that thread: a connect blocks.)
        self._store: Store | None = None
        self._one = anyio.CapacityLimiter(1)
        # Classified messages waiting for the commit under way to end.
        self._waiting: list[NewMessage] = []
        self._committing = False

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    async def on_arrived(self, arrived: list[Arrived]) -> None:
        """Messages at the end of DATA: those no class could reject are
        stored at once, in one transaction, and answered in one crossing
        once it is durable (beside the event loop); the others decide
        first, each in its own task. Not serving (the shutdown drain):
        their sessions are gone, the clients got no 250, and the spool
        files are removed at the next start (`recovery`)."""
        if not self._ctx.serving:
            return
        plain: list[NewMessage] = []
        for e in arrived:
            m = await self._plain(e)
            if m is None:
                self._ctx.spawn(self._decide_then_store, e)
            else:
                plain.append(m)
        self._waiting += plain
        if plain and not self._committing:
            self._committing = self._ctx.spawn(self._commit_waiting)

    async def _commit_waiting(self) -> None:
        """Commits what waits, one transaction at a time; what arrives
        meanwhile goes into the next, so transactions grow with the load.
        Each batch's flush and answers run beside the next commit: the
        engine's next events do not wait for the disk either."""
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                # Committed is answered (or forgotten), even at a stop.
                with anyio.CancelScope(shield=True):
                    committed = await self._commit(batch)
                    if committed is not None and not self._ctx.spawn(
                        self._flush_then_answer, batch, *committed
                    ):
                        await self._flush_then_answer(batch, *committed)
        finally:
            self._committing = False

    async def _plain(self, e: Arrived) -> NewMessage | None:
        """The message classified (once: intake keeps this), or None when
        a class of its recipients may reject it (or classifying failed,
        which `Verdicts.decide` logs)."""
        try:
            m = await self._intake.classify_event(e.envelope, e.features)
        except Exception:
            return None
        cfg = self._ctx.cfg
        if any(cfg.class_policy(k).on_unmet == "reject" for k in m.recipient_classes or ()):
            return None
        return m

    async def _decide_then_store(self, e: Arrived) -> None:
        """A refusing class decides first, within `verdict_deadline` as
        without PostgreSQL: past it the message is accepted (stored) and
        its class's `on_unmet` applies at delivery instead."""
        verdict = Verdict(e.envelope.queue_id)
        with anyio.move_on_after(self._ctx.cfg.classify.verdict_deadline):
            verdict, _ = await self._verdicts.decide(e.envelope, e.features)
        if verdict.reject is None:
            await self.store([await self._intake.classify_event(e.envelope, e.features)])
            return
        # A refusal not taken: the session gave up, the client got 451
        # and the spool file is gone. Nothing was stored.
        with contextlib.suppress(EngineStopped):
            self._ctx.engine.verdicts(encode([verdict]))

    async def store(self, messages: list[NewMessage]) -> None:
        """Indexes and stores the classified messages with their spool
        files in one transaction, then answers their sessions once it is
        durable: stored (250) or deferred (451)."""
        with anyio.CancelScope(shield=True):
            committed = await self._commit(messages)
            if committed is not None:
                await self._flush_then_answer(messages, *committed)

    async def _commit(self, messages: list[NewMessage]) -> _Committed | None:
        """The commit, in the worker thread, without waiting for the WAL
        (`_Committed`); None (the messages answered 451) when it failed. Not dispatched from the
        moment they may be in the store until they are answered (the
        scanner's due query would find them)."""
        ids = [m.queue_id for m in messages]
        self._ctx.acknowledging.update(ids)
        try:
            return await anyio.to_thread.run_sync(self._commit_now, messages, limiter=self._one)
        except Exception as e:
            self._not_stored(messages, e)
            self._ctx.acknowledging.difference_update(ids)
            return None

    def _commit_now(self, messages: list[NewMessage]) -> _Committed:
        if self._store is None:
            self._store = self._ctx.store.companion()
        # With what their dispatch asks first, off the event loop.
        stored, suspended = self._store.add_received(messages)
        start = self._store.commit_start
        assert start is not None  # acknowledging runs on PostgreSQL alone
        return set(stored), start, suspended

    async def _flush_then_answer(
        self,
        messages: list[NewMessage],
        stored: set[str],
        start: datetime,
        suspended: frozenset[str],
    ) -> None:
        """The 250s once the commit is on the server's disk; the event
        loop goes on meanwhile."""
        with anyio.CancelScope(shield=True):
            try:
                await self._flush.durable(start)
            except Exception as e:
                self._not_stored(messages, e)
                return
            finally:
                self._ctx.acknowledging.difference_update(m.queue_id for m in messages)
            # Beside the event loop, so not under its guard: a store that
            # becomes unreachable ends this batch's dispatch, which the
            # scanner takes up again once it is back.
            with survives_a_full_store():
                await self._answer_stored(messages, stored, suspended)
                self._dispatch.flush()

    def _not_stored(self, messages: list[NewMessage], e: Exception) -> None:
        """The commit or its flush failed: never a 250 without both, so
        451 (the client sends the message again); the commit may have
        happened anyway (`_unsure`)."""
        self._answer([], [m.queue_id for m in messages])
        self._unsure([m.queue_id for m in messages])
        if not is_unavailable(e):  # an unreachable store is StoreWatch's to log
            event(
                log,
                "cannot store arrived messages: answered 451",
                logging.ERROR,
                count=len(messages),
                error=" ".join(str(e).split()),
            )

    async def _answer_stored(
        self, messages: list[NewMessage], stored: set[str], suspended: frozenset[str]
    ) -> None:
        """250 for the messages stored, then their deliveries start."""
        # Not stored: its spool file went before it was read (the session
        # stopped waiting), or the id was indexed already.
        unstored = [m.queue_id for m in messages if m.queue_id not in stored]
        kept = [m for m in messages if m.queue_id in stored]
        taken = self._answer([m.queue_id for m in kept], unstored)
        refused = [m for m, ok in zip(kept, taken, strict=True) if not ok]
        if refused:
            self.forget([m.queue_id for m in refused])
            kept = [m for m, ok in zip(kept, taken, strict=True) if ok]
        if kept:
            self._dispatch.start_new(kept, await self._intake.indexed(kept), suspended)

    def _answer(self, stored: list[str], deferred: list[str]) -> list[bool]:
        """One crossing for all verdicts; per stored message, whether its
        session still waited for the answer."""
        verdicts = [Verdict(q, stored=True) for q in stored]
        verdicts += [Verdict(q, defer=NOT_STORED) for q in deferred]
        if not verdicts:
            return []
        try:
            taken = self._ctx.engine.verdicts(encode(verdicts))
        except EngineStopped:
            taken = [False] * len(verdicts)
        return taken[: len(stored)]

    def _unsure(self, queue_ids: list[str]) -> None:
        """A failed transaction may have committed (the connection broke
        after the commit, before its answer): checked once the store is
        back (`retry_forget`)."""
        pending = self._ctx.unacknowledged
        pending.update(dict.fromkeys(queue_ids))
        while len(pending) > MAX_UNACKNOWLEDGED:
            del pending[next(iter(pending))]

    def forget(self, queue_ids: list[str]) -> None:
        """Messages stored whose clients got no 250: deleted in the store
        with the reason (recorded, audited), so they are never delivered;
        their spool files are gone already. While the store cannot take
        it, the ids wait for `retry_forget`."""
        try:
            deleted = self._ctx.store.delete_recipients(
                {q: range(self._recipients(q)) for q in queue_ids}, "mxg", NOT_ACKNOWLEDGED
            )
        except Exception as e:
            if not is_unavailable(e):
                raise
            self._unsure(queue_ids)
            return
        for qid in queue_ids:
            if qid in deleted:
                event(log, "deleted: " + NOT_ACKNOWLEDGED, logging.WARNING, queue_id=qid)
        self._ctx.wakeup.set()  # the finisher marks them done at once

    def _recipients(self, queue_id: str) -> int:
        return len(self._ctx.store.recipients(queue_id))

    def retry_forget(self) -> None:
        """The scanner's part: messages whose acknowledgement is unsure
        are deleted once the store answers again (those it never took
        are not there and nothing changes)."""
        pending = self._ctx.unacknowledged
        if not pending:
            return
        queue_ids = list(pending)
        pending.clear()
        self.forget(queue_ids)
