"""The scanner: once every `queue.scan_interval`, what is due without an
engine event to bring it: retries whose time has come, delay warnings,
DSNs for what an operator bounced (or a full disk held back), messages
an operator finished, and what waited in memory or the spool while the
store's disk was full."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mxg.deliverylog import flush_logs
from mxg.pipeline.recovery import reindex
from mxg.pipeline.repair import repair_if_restarted
from mxg.pipeline.storage import survives_a_full_store
from mxg.store import now_ms

if TYPE_CHECKING:
    from mxg.pipeline.controller import Stages


async def scanner(stages: Stages) -> None:
    while True:
        # Read each round: a reload may change it. An operator's action in
        # this process (mxg.web) wakes it early.
        await stages.ctx.wakeup.sleep(stages.ctx.cfg.queue.scan_interval)
        flush_logs()
        with survives_a_full_store():
            await scan(stages)


async def scan(stages: Stages) -> None:
    ctx, store = stages.ctx, stages.ctx.store
    # After a full disk or an unreachable store: what waited in memory
    # and in the spool first; then stored messages no client got a 250
    # for are deleted before anything could dispatch them.
    await stages.outcomes.retry_unstored()
    # After the PostgreSQL server restarted: what its commits lost.
    await repair_if_restarted(stages)
    await stages.finisher.retry_failed()
    if stages.acks is not None:
        stages.acks.retry_forget()
    if ctx.rescan_wanted:
        await reindex(ctx, stages.intake, stages.outcomes, stages.notices)
    # DSNs for operator bounces, and those a full disk held back; decision
    # notices held back; parked recipients whose message expired.
    await stages.notices.send_pending()
    await stages.notices.ask_pending()
    await stages.notices.spool_carriers()
    await stages.outcomes.expire_awaiting()
    stages.dispatch.dispatch_due()
    warn_after = ctx.cfg.queue.delay_warning_after
    if warn_after > 0:
        for qid in store.expired_delay_warnings(now_ms() - int(warn_after * 1000)):
            await stages.notices.send_delay_dsn(qid)
    # Messages finished by an operator (mxg queue delete, bounce).
    await stages.finisher.remove(store.finished())
