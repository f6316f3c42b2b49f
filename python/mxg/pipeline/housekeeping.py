"""Housekeeping beside the message path: signing the audit trail's tail
at intervals (`mxg.audit_trail`), pruning what `[retention]` no longer
keeps (`store/retention.py`), a batch at a time between the relay's own
work, and renewing MTA-STS policies before they expire.

In a cluster these are once-per-cluster duties: only the node holding
the housekeeper's lock (`Context.housekeeper`, taken by the heartbeat)
does them, as it sends the TLS reports (`mxg.pipeline.tlsrpt`)."""

from __future__ import annotations

import logging

import anyio

from mxg.audit_trail import sign_checkpoint
from mxg.deliverylog import event, log
from mxg.dns import REFRESH_INTERVAL, StsCache
from mxg.pipeline.context import Context
from mxg.pipeline.storage import survives_a_full_store
from mxg.signing import SigningKey
from mxg.store import now_ms

# Seconds between signed checkpoints of the audit trail: the records of
# the last minute at most rely on the hash chain alone.
AUDIT_CHECKPOINT_INTERVAL = 60


async def checkpointer(ctx: Context, key: SigningKey) -> None:
    """Signs the audit trail's tail at intervals: what a rewrite of the
    database cannot forge."""
    while True:
        await anyio.sleep(AUDIT_CHECKPOINT_INTERVAL)
        if not ctx.housekeeper:
            continue
        with survives_a_full_store():
            sign_checkpoint(ctx.store, key)


async def pruner(ctx: Context, key: SigningKey) -> None:
    """Prunes per `[retention]` every `prune_interval`, the first time
    right after start. Both are read anew each time: a reload (SIGHUP) may
    change them, or turn pruning on or off (``keep = 0``)."""
    while True:
        keep = ctx.cfg.retention.keep
        if keep > 0 and ctx.housekeeper:
            with survives_a_full_store():
                await prune_once(ctx, key, now_ms() - int(keep * 1000))
        await anyio.sleep(ctx.cfg.retention.prune_interval)


async def prune_once(ctx: Context, key: SigningKey, cutoff_ms: int) -> None:
    store = ctx.store
    plan = store.prune_plan(cutoff_ms)
    if not (plan.messages or plan.checkpoint_seq):
        return
    for _ in store.prune_steps(
        plan, lambda m: (key.key_id, key.sign(m)), actor="mxg", cutoff_ms=cutoff_ms
    ):
        await anyio.sleep(0)
    event(
        log,
        "retention: pruned",
        messages=plan.messages,
        audit_records=plan.audit_records,
        checkpoint=plan.checkpoint_seq or "",
    )


async def sts_refresher(ctx: Context, sts: StsCache) -> None:
    """Renews MTA-STS policies before they expire (RFC 8461 §10.2)."""
    while True:
        await anyio.sleep(REFRESH_INTERVAL)
        if not ctx.housekeeper:
            continue
        for domain in sts.refresh_due():
            # The renewed policy is saved in the store: one that cannot
            # take it keeps the one before, and this task goes on (the
            # policy in memory is current; the next refresh saves it).
            with survives_a_full_store():
                policy = await sts.refresh(domain)
                event(
                    log,
                    "MTA-STS policy refreshed",
                    logging.INFO,
                    domain=domain,
                    policy=f"{policy.mode} id={policy.id}" if policy else "none",
                )
