"""Finish: the spool files of finished messages go, after their final
states are durable in the store (ARCHITECTURE.md rule 11)."""

from __future__ import annotations

import logging

import anyio

from mxg.deliverylog import event, log
from mxg.errors import EngineStopped, MessageNotFound, SpoolError
from mxg.pipeline.context import Context
from mxg.store import is_unavailable


class Finisher:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        # Finished messages whose spool files `_unlink_finished` removes,
        # each batch with the store's `repairs` count when it was found
        # finished (a repair since makes it stale: `Database.sync`).
        self._unlinking: list[tuple[int, list[str]]] = []
        # Removals whose sync failed (the store unreachable a while):
        # tried again at each scan (`retry_failed`), unless a repair came
        # since, which found them again itself.
        self._failed: list[tuple[int, list[str], bool]] = []
        self._retrying = False

    async def finished(self, queue_ids: list[str]) -> None:
        """Messages the store just marked done. While serving, the unlinks
        run beside the event loop, which goes on with the next batch instead
        of waiting for the file system; one batch at a time (parallel
        unlinks in one directory contend)."""
        if not queue_ids:
            return
        if self._ctx.serving:
            self._unlinking.append((self._ctx.store.repairs, queue_ids))
            if len(self._unlinking) == 1:
                self._ctx.spawn(self._unlink_finished)
        else:
            await self.remove(queue_ids, marked=True)

    async def _unlink_finished(self) -> None:
        while self._unlinking:
            decided = self._unlinking[0][0]
            n = next(
                (i for i, (d, _) in enumerate(self._unlinking) if d != decided),
                len(self._unlinking),
            )
            batch = [q for _, ids in self._unlinking[:n] for q in ids]
            await self.remove(batch, marked=True, decided=decided)
            del self._unlinking[:n]

    async def remove(
        self, queue_ids: list[str], *, marked: bool = False, decided: int | None = None
    ) -> None:
        """Rule 11: the final states are in the store, so the spool copies
        go (off the event loop; unlink can wait on the file system); then
        the messages are marked done unless `marked` already. `decided`:
        the store's `repairs` count when they were found finished (by
        default now); after a repair since, they stay for the repair."""
        if not queue_ids:
            return
        engine, store = self._ctx.engine, self._ctx.store
        if decided is None:
            decided = store.repairs

        def durable_then_removed() -> None:
            # The final states reach the disk before the files go.
            store.sync(decided)
            engine.remove_many(queue_ids)

        try:
            await anyio.to_thread.run_sync(durable_then_removed)
            removed = list(queue_ids)
        except EngineStopped:
            return  # removed at the next start (recovery)
        except OSError as e:
            # fsync failed: the results may not be on disk, so the messages
            # stay in the spool, and their removal is tried again.
            if not self._failed and not self._retrying:
                event(log, "cannot sync the queue index", logging.ERROR, error=str(e))
            self._failed.append((decided, queue_ids, marked))
            return
        except SpoolError:
            removed = self._one_by_one(queue_ids)
        if removed and not marked:
            try:
                store.mark_done(removed)
            except Exception as e:
                if not is_unavailable(e):
                    raise
                # Their files are gone; the store still shows them
                # finished, and the scan marks them done once it answers
                # (`Store.finished`). Not raised: the caller's next steps
                # (the repair's other removals, the failed removals still
                # to retry) would be lost with it, and their files kept.

    async def retry_failed(self) -> None:
        """The removals whose sync failed, again; those decided before a
        repair are dropped (the repair found them again)."""
        failed, self._failed = self._failed, []
        self._retrying = True
        try:
            for decided, queue_ids, marked in failed:
                if decided == self._ctx.store.repairs:
                    await self.remove(queue_ids, marked=marked, decided=decided)
        finally:
            self._retrying = False

    def _one_by_one(self, queue_ids: list[str]) -> list[str]:
        removed = []
        for qid in queue_ids:
            try:
                self._ctx.engine.remove(qid)
            except MessageNotFound:
                pass
            except SpoolError as e:
                event(
                    log, "cannot remove finished message", logging.ERROR, queue_id=qid, error=str(e)
                )
                continue
            removed.append(qid)
        return removed
