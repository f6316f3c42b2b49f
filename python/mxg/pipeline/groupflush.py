"""Group commit for the PostgreSQL store's intake: the 250 waits until the
message's commit is on the server's disk (rule 9), but the event loop does
not. Intake commits without waiting for the WAL (its transaction holds the
writers' lock for no fsync), then waits here: one flush at a time, each
covering every commit made before it began, so the batches that arrive
during one flush share the next.

The flush is one statement on a connection of its own, whose socket the
event loop waits on (asyncio and trio alike). In a worker thread it took
14 ms at the median on the bench: after each round trip the thread waited
for the event loop's hold on the GIL, up to the 5 ms switch interval.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import anyio

from mxg.store.postgres import PgConnection


class _Round:
    """The commits one flush covers: the server starts they were made on,
    and how it went."""

    def __init__(self) -> None:
        self.starts: set[datetime] = set()
        self.done = anyio.Event()
        self.error: Exception | None = None


class GroupFlush:
    def __init__(self, connect: Callable[[], PgConnection]) -> None:
        # `Database.flusher`: the connection, opened when first needed
        # (blocking, so in a worker thread).
        self._connect = connect
        self._conn: PgConnection | None = None
        self._pending = _Round()
        self._busy = False
        self._idle = anyio.Event()

    async def durable(self, start: datetime) -> None:
        """Returns once every commit made before this call (on the server
        start `start`) is durable; raises OSError otherwise. The first
        caller while no flush runs becomes the one that flushes; the
        others wait for it, and the first of those still uncovered
        flushes next."""
        mine = self._pending
        mine.starts.add(start)
        while not mine.done.is_set():
            if self._busy:
                await self._idle.wait()
                continue
            await self._flush_pending()
        if mine.error is not None:
            raise OSError(*mine.error.args)

    async def _flush_pending(self) -> None:
        this, self._pending = self._pending, _Round()
        self._busy, self._idle = True, anyio.Event()
        try:
            await self._flush(this.starts)
        except Exception as e:
            this.error = e
        finally:
            self._busy = False
            this.done.set()
            self._idle.set()

    async def _flush(self, starts: set[datetime]) -> None:
        if self._conn is None:
            self._conn = await anyio.to_thread.run_sync(self._connect)
        conn = self._conn
        # A connection the server ended while it waited for work (an
        # outage between flushes) is opened again before the flush, not
        # found dead by it (a 451 for a batch that was committed).
        conn.drop_if_ended()
        if conn.reachable:
            fd = conn.send_flush()
        else:
            # Opened again by `send_flush`: a connect, not on the event loop.
            fd = await anyio.to_thread.run_sync(conn.send_flush)
        while not conn.flush_arrived():
            await anyio.wait_readable(fd)
        conn.end_flush(starts)
