"""Delivery results stored beside the event loop, on a PostgreSQL store.

Storing a batch of results is a transaction of several round trips; on
the event loop it was half of the loop's time on the bench (its waits on
PostgreSQL among it), and every 250 waiting behind it waited that long
too. Here the results' transaction runs in a worker thread on a
connection of its own (`Store.companion`), one at a time; results that
arrive meanwhile go into the next, so transactions grow with the load.
What comes before and after it (outcomes, the log, DSNs, spool removal)
stays on the event loop.

The recipients stay in flight (`Dispatcher.settled`) until their results
are stored: the scanner's due query still finds them pending, and must
not start them again. On SQLite the results are stored on the event loop
as before: a local commit does not wait on a network.
"""

from __future__ import annotations

from typing import Any

import anyio

from mxg.boundary import DeliveryDone
from mxg.pipeline.context import Context
from mxg.pipeline.dispatch import Dispatcher
from mxg.pipeline.outcomes import Outcomes
from mxg.pipeline.plan import JobInfo
from mxg.pipeline.storage import survives_a_full_store
from mxg.store import Outcome, Store
from mxg.store.partners import Seen

Done = tuple[JobInfo, DeliveryDone]

# Results gather for up to this long (seconds) before their transaction,
# unless this many wait already. Every transaction holds the writers'
# lock (one audit chain), and the intake's commit, which the clients'
# 250s wait for, queues behind it: results committed as they came (on
# the bench a batch of about ten every 7 ms, each holding the lock for
# about 4) held it over half the time. Gathered, they hold it a few
# times less for the same rows (docs/benchmarks.md). The cost is bounded
# by the window: the recipients stay in flight that much longer, and a
# node killed meanwhile delivers them again, as any recipient in flight
# (docs/cluster.md, "Duplicates"). The wait is shielded as the store is:
# a stop during it still stores what waits.
GATHER_WINDOW = 0.03
GATHER_ENOUGH = 256


class ResultsBeside:
    def __init__(self, ctx: Context, outcomes: Outcomes, dispatch: Dispatcher) -> None:
        self._ctx = ctx
        self._outcomes = outcomes
        self._dispatch = dispatch
        # Opened at the first transaction, in the worker thread: a
        # connect blocks.
        self._store: Store | None = None
        self._one = anyio.CapacityLimiter(1)
        self._waiting: list[Done] = []
        self._writing = False
        self._idle = anyio.Event()
        self._idle.set()
        outcomes.record_beside = self.record

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def take(self, done: list[Done]) -> bool:
        """Queues finished jobs for the next transaction; False when not
        serving (the shutdown drain stores them on the event loop)."""
        self._waiting += done
        if not self._writing:
            self._writing = self._ctx.spawn(self._write_waiting)
            if not self._writing:
                self._waiting.clear()
                return False
            self._idle = anyio.Event()
        return True

    async def stored(self) -> None:
        """Returns once every result taken so far is stored (or held in
        memory)."""
        await self._idle.wait()

    async def _write_waiting(self) -> None:
        try:
            while self._waiting:
                # Results received are stored (or held in memory), even at
                # a stop: otherwise their recipients would go again.
                with anyio.CancelScope(shield=True):
                    if len(self._waiting) < GATHER_ENOUGH:
                        await anyio.sleep(GATHER_WINDOW)
                    batch, self._waiting = self._waiting, []
                    await store_results(self._outcomes, self._dispatch, batch)
        finally:
            self._writing = False
            self._idle.set()

    async def record(
        self,
        outcomes: list[Outcome],
        seen: dict[str, Seen] | None,
        sessions: Any,
    ) -> list[str]:
        """`Store.record` in the worker thread (`Outcomes.commit`)."""
        return await anyio.to_thread.run_sync(
            self._record_now, outcomes, seen, sessions, limiter=self._one
        )

    def _record_now(
        self, outcomes: list[Outcome], seen: dict[str, Seen] | None, sessions: Any
    ) -> list[str]:
        if self._store is None:
            self._store = self._ctx.store.companion(shares_sync=True)
        return self._store.record(outcomes, seen, sessions)


async def store_results(outcomes: Outcomes, dispatch: Dispatcher, done: list[Done]) -> None:
    """Stores finished jobs' results, then lets their recipients go from
    in flight and starts what waited for room."""
    found: list[Outcome] = []
    try:
        with survives_a_full_store():
            found = await outcomes.results(done)
    finally:
        dispatch.settled(info for info, _ in done)
    with survives_a_full_store():
        dispatch.after_results(found)
    dispatch.flush()
