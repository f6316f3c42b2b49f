"""Finish: the spool files of finished messages go, after their final
states are durable in the store (ARCHITECTURE.md rule 11)."""

from __future__ import annotations

import logging

import anyio

from mxg.deliverylog import event, log
from mxg.errors import EngineStopped, MessageNotFound, SpoolError
from mxg.pipeline.context import Context


class Finisher:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        # Finished messages whose spool files `_unlink_finished` removes.
        self._unlinking: list[str] = []

    async def finished(self, queue_ids: list[str]) -> None:
        """Messages the store just marked done. While serving, the unlinks
        run beside the event loop, which goes on with the next batch instead
        of waiting for the file system; one batch at a time (parallel
        unlinks in one directory contend)."""
        if not queue_ids:
            return
        if self._ctx.serving:
            self._unlinking += queue_ids
            if len(self._unlinking) == len(queue_ids):
                self._ctx.spawn(self._unlink_finished)
        else:
            await self.remove(queue_ids, marked=True)

    async def _unlink_finished(self) -> None:
        while self._unlinking:
            batch = self._unlinking[:]
            await self.remove(batch, marked=True)
            del self._unlinking[: len(batch)]

    async def remove(self, queue_ids: list[str], *, marked: bool = False) -> None:
        """Rule 11: the final states are in the store, so the spool copies
        go (off the event loop; unlink can wait on the file system); then
        the messages are marked done unless `marked` already."""
        if not queue_ids:
            return
        engine, store = self._ctx.engine, self._ctx.store

        def durable_then_removed() -> None:
            store.sync()  # the final states reach the disk before the files go
            engine.remove_many(queue_ids)

        try:
            await anyio.to_thread.run_sync(durable_then_removed)
            removed = list(queue_ids)
        except EngineStopped:
            return  # removed at the next start (recovery)
        except OSError as e:
            # fsync failed: the results may not be on disk, so the messages
            # stay in the spool (found finished again at the next start).
            event(log, "cannot sync the queue index", logging.ERROR, error=str(e))
            return
        except SpoolError:
            removed = self._one_by_one(queue_ids)
        if removed and not marked:
            store.mark_done(removed)

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
