"""Recovery at start-up (ARCHITECTURE.md rule 10): the spool is the source
of truth. Every spooled message the index does not know is classified and
indexed again; spool files of finished messages go; deliveries that were
under way when the last run ended are due again (so a message can arrive
twice: at least once); bounces whose DSN was not yet queued get it. A
decision notice or a secure envelope's carrier spooled but not yet
recorded is recorded from its spool file, so it goes out once
(`mxg.decide.marks`).

The same re-indexing runs later when the store's disk was full at intake
(``reindex``): the messages waited in the spool meanwhile.

On a PostgreSQL store a client's message gets its 250 only once it is
committed there (docs/cluster.md), so a spool file from a client whose
message the store does not know was never acknowledged: its session
ended before the commit (a crash, a shutdown, a 451). It is removed at
start, not delivered: the client still has it and sends it again, and
delivering it too would send it twice. What mxg spooled itself (DSNs,
decision notices, carriers, TLS reports; origin ``local``) is indexed
as on SQLite (a notice or carrier from its mark, exactly once), since
it was spooled before it was stored.
"""

from __future__ import annotations

import logging

import anyio
import msgspec

from mxg.boundary import decode_envelope
from mxg.deliverylog import event, log
from mxg.errors import SpoolError
from mxg.pipeline.context import Context
from mxg.pipeline.finish import Finisher
from mxg.pipeline.intake import Intake
from mxg.pipeline.notices import Notices
from mxg.pipeline.outcomes import Outcomes
from mxg.store import Store, is_full


async def recover(
    ctx: Context, intake: Intake, outcomes: Outcomes, notices: Notices, finisher: Finisher
) -> None:
    store = ctx.store
    try:
        ids = await reindex(ctx, intake, outcomes, notices, at_start=True)
        finished, done = finished_in(store, ids)
        await finisher.remove(finished)
        await finisher.remove(done, marked=True)
        resumed = store.resume_pending()
    except Exception as e:
        if not is_full(e):
            raise
        # No crash loop on a full disk: the relay starts, and the scanner
        # finishes this once there is space again.
        ctx.rescan_wanted = True
        event(log, "queue index full at start: recovery waits for space", logging.ERROR)
        return
    if resumed:
        event(log, "resuming pending deliveries", recipients=resumed)
    await send_pending_dsns(store, notices, finisher)


def finished_in(store: Store, spooled: list[str]) -> tuple[list[str], list[str]]:
    """What the store shows finished, whose spool files go: the messages
    finished but not yet marked done, and those marked done whose files
    are still among `spooled` (their removal failed or was cut short)."""
    return store.finished(), sorted(store.done_ids() & set(spooled))


async def send_pending_dsns(store: Store, notices: Notices, finisher: Finisher) -> int:
    """DSNs of bounces not yet queued (the run that bounced them ended,
    or the store lost the mark); the messages they finish go. Returns
    how many messages got one."""
    pending = store.dsn_pending()
    for qid in pending:
        await notices.send_failure_dsn(qid)
    await finisher.remove(store.finished())
    return len(pending)


async def reindex(
    ctx: Context, intake: Intake, outcomes: Outcomes, notices: Notices, *, at_start: bool = False
) -> list[str]:
    """Indexes the spooled messages the store does not know (a decision
    notice or carrier as recorded, not classified afresh:
    `Notices.recover_spooled`); returns the ids of all spooled messages.
    On PostgreSQL a client's message the store does not know was never
    acknowledged: removed `at_start`, left alone later (its session may
    still wait for the store)."""
    engine, store = ctx.engine, ctx.store
    ids = await anyio.to_thread.run_sync(engine.spool_ids)
    known = store.known_ids()
    envelopes = []
    for qid in (i for i in ids if i not in known):
        try:
            envelopes.append(decode_envelope(engine.read_envelope(qid)))
        except (SpoolError, msgspec.ValidationError, msgspec.DecodeError) as e:
            event(
                log,
                "unreadable spool file left in place",
                logging.ERROR,
                queue_id=qid,
                error=str(e),
            )
    if store.dialect.postgres:
        unacknowledged = [e.queue_id for e in envelopes if e.origin != "local"]
        envelopes = [e for e in envelopes if e.origin == "local"]
        if unacknowledged and at_start:
            missing = set(await anyio.to_thread.run_sync(engine.remove_many, unacknowledged))
            for qid in unacknowledged:
                if qid not in missing:
                    event(
                        log,
                        "removed unacknowledged spool file: the store never took it",
                        logging.WARNING,
                        queue_id=qid,
                    )
    envelopes = await notices.recover_spooled(envelopes)
    if envelopes:
        messages = [
            intake.classified(env, await intake.features_of_spooled(env.queue_id))
            for env in envelopes
        ]
        store.add_messages(messages)
        event(log, "re-queued from spool", count=len(messages))
        for m in messages:
            await outcomes.commit(intake.at_intake(m))
    ctx.rescan_wanted = False
    return ids
