"""Outcomes: what a delivery result means for each recipient, stored.

A deferral gets its next attempt from the retry schedule, or bounces once
the queue lifetime is over (RFC 3463 4.4.7); a recipient whose required
level could not be met gets its class's ``on_unmet`` action. The outcomes
of a batch are stored in one durable transaction; bounces then get their
DSN (``notices``), and finished messages leave the spool (``finish``,
rule 11: the final states are stored first).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import orjson

from mxg.boundary import DeliveryDone, RecipientResult, TlsInfo
from mxg.deliverylog import delivery, event, flush_logs, log
from mxg.dns import Policy, ResolveError
from mxg.pipeline.asking import Asking
from mxg.pipeline.context import Context
from mxg.pipeline.finish import Finisher
from mxg.pipeline.notices import Notices
from mxg.pipeline.plan import JobInfo, Planner
from mxg.schedule import next_attempt_ms
from mxg.store import Due, Outcome, is_full, is_unavailable, now_ms
from mxg.store.partners import Seen, method_rank, summarise
from mxg.tlsrpt.sessions import Tally, count_job, count_unroutable
from mxg.vocab import Reason, RecipientState

AWAITING = RecipientState.AWAITING_SENDER

# Results kept in memory while the store's disk is full: enough for a
# long outage at full rate (each is a few hundred bytes); beyond it the
# oldest are dropped and those recipients delivered again.
MAX_UNSTORED = 100_000


class Outcomes:
    def __init__(
        self, ctx: Context, planner: Planner, notices: Notices, finisher: Finisher
    ) -> None:
        self._ctx = ctx
        self._planner = planner
        self._notices = notices
        self._finisher = finisher
        # While results that waited for space are written again: a second
        # "full" is the same outage, not news for the log.
        self._retrying = False
        # On PostgreSQL: how delivery results are stored beside the event
        # loop (`pipeline/beside.py`); None stores them on it.
        self.record_beside: (
            Callable[[list[Outcome], dict[str, Seen] | None, Any], Awaitable[list[str]]] | None
        ) = None

    async def results(self, done: list[tuple[JobInfo, DeliveryDone]]) -> list[Outcome]:
        """Stores the results of finished jobs, and what they show of each
        partner domain (the ledger); returns their outcomes."""
        outcomes: list[Outcome] = []
        lines: list[Callable[[], None]] = []
        seen = summarise(
            (info.domain, r.status, r.level, r.tls.method if r.tls else None, r.reason, r.text)
            for info, ev in done
            if not info.rerouted  # the fallback relay is no partner
            for r in ev.results
        )
        if self._ctx.cfg.delivery.ratchet == "warn":
            try:
                self._warn_drops(seen)
            except Exception as e:
                # The results must still reach `commit`, which holds them
                # in memory while the store is away; only the warning is
                # lost (the ledger keeps the drop).
                if not is_unavailable(e):
                    raise
        counts = self._ctx.counts
        sessions: Tally = Tally()
        for info, ev in done:
            if _reported(info):
                count_job(
                    sessions,
                    domain=info.domain,
                    route=info.route,
                    sts=info.sts,
                    results=ev.results,
                    attempts=ev.attempts,
                    finished_ms=ev.finished_ms,
                )
            for a in ev.attempts:
                counts.failure(a.reason)
                event(
                    log,
                    "attempt failed",
                    logging.INFO,
                    queue_id=info.queue_id,
                    relay=f"{a.host}[{a.ip}]",
                    error=a.error,
                )
            outcomes += self.of_job(info, ev.results, lines)
        try:
            await self.commit(outcomes, seen, sessions, beside=True)
        finally:
            # The delivery lines follow the commit: whoever reads "sent" in
            # the log finds the result (its evidence) in the store. Stored
            # beside the event loop, the commit ends after the loop flushed
            # the log for this batch.
            for line in lines:
                line()
            flush_logs()
        return outcomes

    def _warn_drops(self, seen: dict[str, Seen]) -> None:
        """``ratchet = "warn"``: a partner delivered below the method it
        was held to is logged (it went, at its class's own level)."""
        for domain, s in seen.items():
            row = self._ctx.store.partner(domain) if s.level else None
            if row is not None and method_rank(s.method) < method_rank(row["best_method"]):
                self._ctx.counts.ratchet_drop(row["best_method"], s.method or "none")
                event(
                    log,
                    "ratchet: partner delivered below its remembered method",
                    logging.WARNING,
                    domain=domain,
                    remembered=row["best_method"],
                    now=s.method or "none",
                )

    async def unroutable(
        self,
        due: Due,
        e: ResolveError,
        *,
        unmet: bool = False,
        rerouted: bool = False,
        sts: Policy | None = None,
    ) -> None:
        """Recipients no job could be started for: the domain has no usable
        route (or, with `unmet`, no MX host its policies allow; `sts` is the
        MTA-STS policy that allowed none, for the TLS report)."""
        planned = self._planner.recipients(due, rerouted=rerouted)
        if planned is None:
            return
        self._ctx.counts.failure(e.reason)
        sessions: Tally = Tally()
        if _reported(planned.info):
            count_unroutable(sessions, domain=due.domain, reason=e.reason, at_ms=now_ms(), sts=sts)
        results = [
            RecipientResult(
                address=r["address"],
                status="bounced" if e.permanent else "deferred",
                code=None,
                enhanced=e.enhanced,
                text=e.text,
                host="",
                ip="",
                level="none",
                unmet=unmet,
                reason=e.reason,
            )
            for r in planned.rows
        ]
        await self.commit(self.of_job(planned.info, results), tls_sessions=sessions)

    def of_job(
        self,
        info: JobInfo,
        results: list[RecipientResult],
        lines: list[Callable[[], None]] | None = None,
    ) -> list[Outcome]:
        """Turns a job's results into recipient outcomes (deferrals past the
        queue lifetime become bounces) and logs one line per recipient;
        with `lines`, the lines go there instead, for the caller to log
        once the outcomes are stored."""
        cfg = self._ctx.cfg
        feasibility = self._ctx.feasibility
        counts = self._ctx.counts
        t = now_ms()
        outcomes: list[Outcome] = []
        for res in results:
            slots = info.indexes.get(res.address)
            if not slots:
                continue
            idx = slots.pop(0)
            status, code, enhanced, text = res.status, res.code, res.enhanced, res.text
            reason = res.reason
            next_ms = 0
            if status == "sent" and not info.rerouted:
                feasibility.note_met(info.domain, res.level or "none")
            # on_unmet applies to the recipient's own route; at the fallback
            # relay a failure is retried like any other.
            unmet = None
            if res.unmet and status == "deferred" and not info.rerouted:
                feasibility.note_unmet(info.domain, info.level, text)
                if not info.dsn:
                    unmet = self.unmet(
                        info.queue_id,
                        idx,
                        info.classes[idx],
                        text,
                        enhanced=enhanced,
                        reason=reason or Reason.LEVEL_NOT_MET,
                        asking=Asking(
                            info.attempts[idx], info.received_ms, info.decisions.get(idx)
                        ),
                    )
            if unmet is not None:
                status, code, enhanced, text = unmet.status, None, unmet.enhanced, unmet.text
                next_ms = unmet.next_ms
            elif status == "deferred":
                nxt = next_attempt_ms(
                    received_ms=info.received_ms,
                    attempts=info.attempts[idx],
                    now_ms=t,
                    schedule=cfg.queue.retry_schedule,
                    lifetime_s=cfg.queue.max_lifetime,
                )
                if nxt is None:
                    # RFC 3463 4.4.7: delivery time expired. The last reply
                    # stays in the text; the code is mxg's own verdict.
                    last = " ".join(str(p) for p in (code, enhanced, text) if p)
                    status, code, enhanced = "bounced", None, "4.4.7"
                    text = (
                        f"message expired after {_duration(cfg.queue.max_lifetime)} "
                        f"in the queue; last error: {last}"
                    )
                else:
                    next_ms = nxt
            tls = res.tls
            dnssec = info.dnssec(res.host)
            method = (tls.method or "") if tls else ""
            risk_class = info.classes.get(idx, "")
            counts.recipient(status, risk_class, res.level or "none", method)
            if status == "sent":
                counts.delivered_after((t - info.received_ms) / 1000)
            outcomes.append(
                Outcome(
                    info.queue_id,
                    idx,
                    status,
                    code,
                    enhanced,
                    text,
                    res.host,
                    res.ip,
                    f"{tls.version} {tls.cipher}" if tls else "",
                    res.level,
                    next_ms,
                    _evidence(tls, dnssec, reason),
                    reason,
                )
            )
            line = functools.partial(
                delivery,
                queue_id=info.queue_id,
                message_id=info.message_id,
                sender=info.sender,
                recipient=res.address,
                host=res.host,
                ip=res.ip,
                status=status,
                code=code,
                enhanced=enhanced,
                text=text,
                tls_version=tls.version if tls else "",
                cipher=tls.cipher if tls else "",
                group=tls.group if tls else "",
                method=method,
                dnssec=_dnssec_word(dnssec),
                level=res.level,
                delay_s=(t - info.received_ms) / 1000,
                attempt=info.attempts[idx],
                risk_class=risk_class,
                required=info.level,
                reason=reason or "",
            )
            if lines is None:
                line()
            else:
                lines.append(line)
        return outcomes

    def unmet(
        self,
        queue_id: str,
        idx: int,
        risk_class: str,
        text: str,
        *,
        e2e: bool = False,
        enhanced: str = "",
        reason: str = Reason.LEVEL_NOT_MET,
        asking: Asking | None = None,
    ) -> Outcome | None:
        """The outcome `on_unmet` gives a recipient whose requirement was not
        met; None means "as delivery decided" (defer). Without `asking`
        (at intake) the requirement is known to be out of reach."""
        policy = self._ctx.cfg.class_policy(risk_class)
        action = policy.on_unmet
        if e2e:
            reason = Reason.E2E_REQUIRED
        if action == "ask-sender":
            if asking is not None and not asking.settled(policy, reason):
                return None
            return Outcome(
                queue_id,
                idx,
                AWAITING,
                None,
                "4.7.5",
                f"awaiting the sender's decision (class {risk_class}): {text}",
                reason=reason,
            )
        if action == "defer" and e2e:
            # Waiting cannot encrypt the content: an operator decides.
            action = "hold"
        if action in ("reject", "bounce"):
            # 5.7.30: REQUIRETLS support required (RFC 8689 §7.3); 5.7.5:
            # cryptographic failure; 5.7.1: refused by policy.
            if e2e:
                status = "5.7.1"
            elif enhanced.endswith(".7.30"):
                status = "5.7.30"
            else:
                status = "5.7.5"
            return Outcome(queue_id, idx, "bounced", None, status, text, reason=reason)
        if action == "hold":
            return Outcome(
                queue_id,
                idx,
                "held",
                None,
                "4.7.1",
                f"held (class {risk_class}): {text}",
                reason=reason,
            )
        if action == "reroute":
            self._ctx.store.set_route(queue_id, idx, "reroute")
            return Outcome(
                queue_id,
                idx,
                "deferred",
                None,
                "4.7.1",
                f"rerouted to {policy.reroute} (class {risk_class}): {text}",
                next_ms=now_ms(),
                reason=reason,
            )
        return None

    async def commit(
        self,
        outcomes: list[Outcome],
        seen: dict[str, Seen] | None = None,
        tls_sessions: Tally | None = None,
        *,
        beside: bool = False,
    ) -> None:
        """One durable transaction for a batch of outcomes, with what they
        add to the partner ledger and the TLS report aggregate; then DSNs
        for new bounces; then the spool files of finished messages go
        (rule 11: the final states are stored first). While the disk is
        full the outcomes wait in memory; their session counts are lost
        (a report may then count fewer sessions than were made).
        `beside`: delivery results, whose recipients stay in flight until
        this returns, so they may be stored beside the event loop."""
        if not outcomes:
            return
        # Each attempt's time, fixed before its first store: one that
        # has it already was held back (`_hold_back`), maybe after a
        # commit whose answer was lost, and may be stored already; stored
        # again, it is the same attempt, not a second (`record(again)`).
        again = any(o.at_ms for o in outcomes)
        t = now_ms()
        outcomes = [o if o.at_ms else dataclasses.replace(o, at_ms=t) for o in outcomes]
        store = self._ctx.store
        try:
            if beside and self.record_beside is not None and not again:
                finished = await self.record_beside(outcomes, seen, tls_sessions)
            else:
                finished = store.record(outcomes, seen, tls_sessions, again=again)
        except Exception as e:
            if not is_unavailable(e):
                raise
            self._hold_back(outcomes, full=is_full(e))
            return
        try:
            bounced = sorted({o.queue_id for o in outcomes if o.status == "bounced"})
            for qid in bounced:
                await self._notices.send_failure_dsn(qid)
            # One notice per message for the recipients that settled together.
            for qid in sorted({o.queue_id for o in outcomes if o.status == AWAITING}):
                await self._notices.ask_sender(qid)
            if bounced:
                # Finished once their DSNs are queued.
                finished += store.finish(bounced)
        finally:
            # Marked done by `record` even when a DSN or a notice could
            # not be stored (the store unreachable a moment): no scan
            # finds a done message again, so its file goes now.
            await self._finisher.finished(finished)

    async def expire_awaiting(self) -> None:
        """Recipients still waiting for the sender's decision when their
        message's lifetime ends bounce as any expired message (RFC 3463
        4.4.7), with their DSN."""
        lifetime = self._ctx.cfg.queue.max_lifetime
        rows = self._ctx.store.awaiting_expired(now_ms() - int(lifetime * 1000))
        text = (
            f"message expired after {_duration(lifetime)} in the queue"
            " without the sender's decision"
        )
        await self.commit(
            [
                Outcome(r["queue_id"], r["idx"], "bounced", None, "4.4.7", text, reason=r["reason"])
                for r in rows
            ]
        )

    def _hold_back(self, outcomes: list[Outcome], *, full: bool = True) -> None:
        """The store's disk is full, or a PostgreSQL store unreachable
        (not `full`): the outcomes wait in memory, at most MAX_UNSTORED of
        them, oldest dropped first (their recipients are tried again: at
        least once). Nothing leaves the spool meanwhile."""
        unstored = self._ctx.unstored
        first = not unstored and not self._retrying
        unstored.update({(o.queue_id, o.idx): o for o in outcomes})
        dropped = 0
        while len(unstored) > MAX_UNSTORED:
            del unstored[next(iter(unstored))]
            dropped += 1
        if first or dropped:
            event(
                log,
                "queue index full: results wait in memory until space returns"
                if full
                else "store unreachable: results wait in memory until it is back",
                logging.ERROR,
                waiting=len(unstored),
                dropped=dropped,
            )

    async def retry_unstored(self) -> None:
        """Stores the outcomes that waited for space, once there is some."""
        if not self._ctx.unstored:
            return
        waiting = list(self._ctx.unstored.values())
        self._ctx.unstored.clear()
        self._retrying = True
        try:
            await self.commit(waiting)
        finally:
            self._retrying = False
        if not self._ctx.unstored:
            event(log, "store writable again: waiting results stored", count=len(waiting))


def _reported(info: JobInfo) -> bool:
    """Whether a job's sessions go into the TLS reports: not those to a
    fallback relay (no MX of the domain), nor those of a report itself
    (RFC 8460 §5.3: a report's own session SHOULD NOT be reported)."""
    return not info.rerouted and not info.classification.get("tlsrpt")


def _duration(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = round(seconds / size, 1)
            return f"{n:g} {unit}{'' if n == 1 else 's'}"
    return f"{seconds:g} seconds"


def _evidence(tls: TlsInfo | None, dnssec: dict[str, str], reason: str | None) -> str:
    """What an attempt proved, as stored JSON (ARCHITECTURE.md, vocabulary),
    with the typed reason when it failed."""
    evidence = {**(msgspec.structs.asdict(tls) if tls else {}), **dnssec, "reason": reason}
    evidence = {k: v for k, v in evidence.items() if v is not None}
    return orjson.dumps(evidence).decode() if evidence else ""


def _dnssec_word(dnssec: dict[str, str]) -> str:
    """``secure`` when both the MX answer and the host's addresses were."""
    if not dnssec:
        return ""
    return "secure" if set(dnssec.values()) == {"secure"} else "insecure"
