"""The repair after the PostgreSQL server restarted, or after a commit's
answer was lost with the connection (docs/cluster.md): what a restart
of mxg would do for this node's queue (rule 10), while it keeps serving.

The hot path's repairable batches (results, done marks) commit without
waiting for the server's WAL flush, and `Database.sync` flushes them
before a spool file goes (rule 11). When the server restarted since such
commits, they may be lost and `sync` refuses until this repair has run.
What the restarted server shows is durable (its WAL replay restores only
flushed commits), so the queue is settled from it: the commits in doubt
are forgotten, finished messages leave the spool, recipients the store
shows pending whose delivery is not under way in this process are due
again (at least once: a delivery whose result was lost goes again), and
bounces without their DSN get it.

A COMMIT whose answer was lost (the server ended the session just after
it, in a `fast` shutdown or by `pg_terminate_backend`) may have
committed: a delivery result kept in memory and stored again then finds
its message done already, and nothing else would remove its spool file
until the relay restarts. The same repair settles that from the store.

It runs in the scan, on the event loop: between reading the store and
forgetting the doubtful commits nothing else runs, and a result that
arrives later is recorded as any other (`Finisher` refuses removals
decided before the repair, `Database.repairs`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from mxg.deliverylog import event, log
from mxg.pipeline.recovery import finished_in, send_pending_dsns

if TYPE_CHECKING:
    from mxg.pipeline.controller import Stages


async def repair_if_restarted(stages: Stages) -> None:
    """Repairs this node's queue when the store's server restarted since
    commits no sync made durable; nothing otherwise."""
    ctx, store, finisher = stages.ctx, stages.ctx.store, stages.finisher
    if not store.doubtful():
        return
    if store.answers_lost:
        event(
            log,
            "a commit's answer was lost with the store's connection: repairing the queue",
            logging.WARNING,
        )
    else:
        event(log, "store restarted since unflushed commits: repairing the queue", logging.WARNING)
    spooled = await anyio.to_thread.run_sync(ctx.engine.spool_ids)
    doubtful = store.doubtful()
    finished, done = finished_in(store, spooled)
    store.forget_doubtful(doubtful)
    await finisher.remove(finished)
    await finisher.remove(done, marked=True)

    busy = stages.dispatch.under_way()

    def under_way(queue_id: str, domain: str, idx: int) -> bool:
        return (queue_id, domain) in busy or (queue_id, idx) in ctx.unstored

    requeued = store.resume_pending(under_way)
    if requeued:
        event(
            log,
            "re-queued after the store restarted",
            logging.WARNING,
            recipients=requeued,
        )
    dsns = await send_pending_dsns(store, stages.notices, finisher)
    event(
        log,
        "queue repaired after the store restarted",
        logging.WARNING,
        finished=len(finished) + len(done),
        requeued=requeued,
        dsns=dsns,
    )
    stages.dispatch.dispatch_due()
