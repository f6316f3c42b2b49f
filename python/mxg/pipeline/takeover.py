"""Taking over messages in a cluster (docs/cluster.md): a live node
claims the unfinished messages of dead nodes and unowned ones
(`Store.claim`), brings each body from PostgreSQL into its own spool
(`Engine.restore`) and delivers them. The recipients that were in flight
on the dead node are due again: a delivery it finished but had not
recorded goes a second time (at least once, rule 10; the duplicate is
bounded by what the dead node had in flight).

At start a node recovers its own messages alone (`recover_node`): a
local spool file of a message another node owns now (taken over while
this one was dead, or released by a drain) goes, and an owned message
whose spool file is missing (a crash between the claim and the restore)
is restored from the store.
"""

from __future__ import annotations

import logging

import anyio

from mxg.deliverylog import event, log
from mxg.errors import SpoolError
from mxg.pipeline.context import Context

# Messages per claim, and claims per heartbeat: a takeover of a large
# queue proceeds in steps, so that the heartbeat that runs it renews the
# lease in time (each step restores its bodies with an fsync each).
CLAIM_BATCH = 100
CLAIMS_PER_BEAT = 5


async def take_over(ctx: Context, node: str) -> int:
    """Claims and restores what dead nodes left (and unowned messages),
    up to `CLAIMS_PER_BEAT` batches; returns how many messages."""
    total = 0
    for _ in range(CLAIMS_PER_BEAT):
        claimed = ctx.store.claim(node, CLAIM_BATCH)
        if not claimed.queue_ids:
            break
        restored = await restore(ctx, claimed.bodies)
        missing = [q for q in claimed.queue_ids if q not in claimed.bodies]
        event(
            log,
            "taken over",
            logging.WARNING,
            messages=len(claimed.queue_ids),
            recipients_due_again=claimed.due_again,
            restored=restored,
            without_body=len(missing),
            **{"from": ",".join(sorted(o or "(unowned)" for o in claimed.owners))},
        )
        for qid in missing:
            event(log, "taken over without a stored body", logging.ERROR, queue_id=qid)
        total += len(claimed.queue_ids)
        if len(claimed.queue_ids) < CLAIM_BATCH:
            break
    return total


async def restore(ctx: Context, bodies: dict[str, bytes]) -> int:
    """Writes the spool files of `bodies` (queue id: the file's bytes) into
    this node's spool; returns how many. A file already there with the
    same bytes is left as it is (`Engine.restore`)."""
    engine = ctx.engine

    def write_all() -> int:
        done = 0
        for qid, raw in bodies.items():
            try:
                engine.restore(raw)
                done += 1
            except SpoolError as e:
                event(log, "cannot restore a spool file", logging.ERROR, queue_id=qid, error=str(e))
        return done

    return await anyio.to_thread.run_sync(write_all) if bodies else 0


async def recover_node(ctx: Context, node: str) -> None:
    """At start, on a cluster: this node's spool holds its own messages
    alone, and each of its unfinished messages has a spool file."""
    store, engine = ctx.store, ctx.engine
    local = await anyio.to_thread.run_sync(engine.spool_ids)
    owners = store.owners(local)
    foreign = [q for q, owner in owners.items() if owner != node]
    if foreign:
        await anyio.to_thread.run_sync(engine.remove_many, foreign)
        event(log, "removed local copies of messages other nodes own", count=len(foreign))
    missing = sorted(set(store.owned_unfinished(node)) - set(local))
    if missing:
        restored = await restore(ctx, store.stored_bodies(missing))
        event(
            log,
            "restored own messages from the store",
            messages=restored,
            without_body=len(missing) - restored,
        )
