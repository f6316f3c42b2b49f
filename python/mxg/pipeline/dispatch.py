"""Dispatch: which due recipients get a delivery job now.

At most ``delivery.max_jobs`` jobs run at once, and one per message and
destination. A new message's recipients go out at once, without a trip
through the queue index; those that find no room wait in memory, oldest
first, and start as jobs finish. Retries come back through the index's
due query. Jobs queued while one batch of events is handled cross the
boundary together (``flush``).
"""

from __future__ import annotations

import logging
import socket
from collections import deque
from collections.abc import Iterable
from typing import Protocol

import anyio

from mxg.boundary import DeliveryJob, JobHost, encode
from mxg.config.classes import relay_address
from mxg.deliverylog import event, log
from mxg.dns import Policy, ResolveError, Route
from mxg.pipeline.context import Context
from mxg.pipeline.plan import (
    FreshRows,
    JobInfo,
    Planned,
    Planner,
    allowed_hosts,
    inflight_key,
    job_hosts,
    no_allowed_mx,
    stored_classification,
    sts_policy,
)
from mxg.store import Due, NewMessage, Outcome, domain_of, is_outage, now_ms
from mxg.vocab import Reason


class Unroutable(Protocol):
    """Where recipients go that no job can be started for (``outcomes``)."""

    async def unroutable(
        self,
        due: Due,
        e: ResolveError,
        *,
        unmet: bool = False,
        rerouted: bool = False,
        sts: Policy | None = None,
    ) -> None: ...


class Dispatcher:
    def __init__(self, ctx: Context, planner: Planner, unroutable: Unroutable) -> None:
        self._ctx = ctx
        self._planner = planner
        self._unroutable = unroutable
        self.jobs: dict[int, JobInfo] = {}
        self.inflight: set[tuple[str, str]] = set()
        self._next_job = 1
        self._outbox: list[DeliveryJob] = []
        # Due recipients were left waiting for room under max_jobs: look for
        # them again as soon as jobs finish, not only at the next scan.
        self._room_wanted = False
        # New messages' deliveries that found no room under max_jobs, oldest
        # first: started as jobs finish, checked against the index in one
        # query per batch instead of a walk over every due recipient.
        self._waiting: deque[Due] = deque()

    # -- what starts jobs ---------------------------------------------------

    def start_new(
        self,
        messages: list[NewMessage],
        intake: list[Outcome],
        suspended: frozenset[str] | None = None,
    ) -> None:
        """First deliveries of just-received messages, one per recipient
        domain not suspended; recipients intake stopped stay, those it
        rerouted go to their fallback relay."""
        stopped = {(o.queue_id, o.idx) for o in intake if o.status != "deferred"}
        rerouted = {(o.queue_id, o.idx) for o in intake if o.status == "deferred"}
        # Recipients of a suspended domain stay pending in the index, due
        # once it is resumed (`Store.due` leaves them out until then).
        # (`suspended`: as the intake read them with its commit, beside the
        # event loop; else asked now.)
        if suspended is None:
            suspended = self._ctx.store.suspended_domains()
        with self._planner.fresh(messages):
            for m in messages:
                for due in _split_by_domain(m):
                    if due.domain in suspended:
                        continue
                    keep = tuple(
                        i for i in due.indexes if (due.queue_id, i) not in stopped | rerouted
                    )
                    moved = tuple(i for i in due.indexes if (due.queue_id, i) in rerouted)
                    if keep and not self._start(Due(due.queue_id, due.domain, keep)):
                        self._waiting.append(Due(due.queue_id, due.domain, keep))
                    if moved and not self._start(
                        Due(due.queue_id, due.domain, moved), rerouted=True
                    ):
                        self._room_wanted = True

    def after_results(self, outcomes: list[Outcome]) -> None:
        """Retries come back through the scanner; right away only what
        waited for room or is due at once, e.g. rerouted. New messages
        waiting in memory take the room first: while they do, the index is
        not asked (its due query reads the recipients in flight too, up to
        max_jobs of them, and would run for every batch of results)."""
        self._start_waiting()
        t = now_ms()
        if (self._room_wanted and not self._waiting) or any(
            o.status == "deferred" and o.next_ms <= t for o in outcomes
        ):
            self.dispatch_due()

    def dispatch_due(self) -> None:
        """Starts what the index says is due, as far as there is room."""
        if not self._ctx.serving:
            return
        if self._ctx.fenced:
            self._room_wanted = True  # looked for again once unfenced
            return
        room = self._ctx.cfg.delivery.max_jobs - len(self.jobs)
        if room <= 0:
            self._room_wanted = True
            return
        self._room_wanted = False
        # The due query counts recipients and returns those in flight too
        # (still pending in the index): reach past all of them, or a full
        # relay would ask again after every batch of results and find only
        # what is already under way.
        in_flight = sum(len(info.attempts) for info in self.jobs.values())
        limit = room + in_flight + len(self.inflight) - len(self.jobs)
        found = self._ctx.store.due(now_ms(), limit=limit)
        if self._ctx.store.doubtful():
            # The store restarted since commits that may be lost: the
            # repair (at the next scan) settles what is due first, and
            # counts what goes again (`pipeline/repair.py`).
            return
        # Not before the client has its 250 (`pipeline.acknowledge`).
        unanswered = self._ctx.acknowledging.union(self._ctx.unacknowledged)
        for due in found:
            if due.queue_id in unanswered:
                continue
            if not self._start(due, rerouted=due.rerouted):
                self._room_wanted = True
                break
        if sum(len(d.indexes) for d in found) >= limit:
            self._room_wanted = True  # more may be due beyond the limit
        self.flush()

    def _start_waiting(self) -> None:
        """Starts new messages' deliveries that waited for room, as far as
        there is room; only recipients still due (not held, not delivered
        or deferred meanwhile by a scan) go."""
        room = self._ctx.cfg.delivery.max_jobs - len(self.inflight)
        if room <= 0 or not self._waiting:
            return
        # Well within one query's parameters (`mxg.store.db._MAX_PARAMS`);
        # the rest at the next batch.
        take = [self._waiting.popleft() for _ in range(min(room, len(self._waiting), 500))]
        wanted = {(d.queue_id, d.domain) for d in take}
        among = sorted({d.queue_id for d in take})
        for due in self._ctx.store.due(now_ms(), limit=None, among=among):
            wanted_here = (due.queue_id, due.domain) in wanted and not due.rerouted
            if wanted_here and not self._start(due):
                self._waiting.appendleft(due)
        self.flush()

    def _start(self, due: Due, *, rerouted: bool = False) -> bool:
        """Starts a delivery unless one for the same message and domain is
        in flight; False when max_jobs is reached. With the route cached the
        job is queued for the engine at once; otherwise a task resolves it.
        Rerouted recipients go to their class's fallback relay instead."""
        ctx = self._ctx
        if not ctx.serving or ctx.fenced or len(self.inflight) >= ctx.cfg.delivery.max_jobs:
            return False
        key = inflight_key(due.queue_id, due.domain, rerouted=rerouted)
        if key in self.inflight:
            return True
        self.inflight.add(key)
        if rerouted:
            ctx.spawn(self._deliver_rerouted, due)
            return True
        route = ctx.resolver.cached(due.domain)
        known, policy = ctx.sts.cached(due.domain) if ctx.sts else (True, None)
        dom = ctx.cfg.policy_for(due.domain)
        if route is None or not known or not allowed_hosts(route, policy, dom):
            # A new message's rows go along: not read again after the lookup.
            ctx.spawn(self._deliver, due, self._planner.fresh_rows(due.queue_id))
            return True
        try:
            self._queue(due, route, policy)
        except Exception as e:
            self._failed_to_start(due, e)
        return True

    # -- resolving, then queueing -------------------------------------------

    async def _deliver(self, due: Due, fresh: FreshRows | None = None) -> None:
        try:
            try:
                route = await self._ctx.resolver.route(due.domain)
            except ResolveError as e:
                self.inflight.discard(inflight_key(due.queue_id, due.domain))
                await self._unroutable.unroutable(due, e)
                return
            policy = await sts_policy(self._ctx.sts, due.domain)
            dom = self._ctx.cfg.policy_for(due.domain)
            if not allowed_hosts(route, policy, dom) and not self._is_report(due):
                text = no_allowed_mx(due.domain, route, policy, dom)
                self.inflight.discard(inflight_key(due.queue_id, due.domain))
                await self._unroutable.unroutable(
                    due,
                    ResolveError(
                        due.domain,
                        text,
                        permanent=False,
                        enhanced="4.7.5",
                        reason=Reason.VALIDATION_FAILURE,
                    ),
                    unmet=True,
                    sts=policy,
                )
                return
            self._queue(due, route, policy, fresh)
            self.flush()
        except Exception as e:
            self._failed_to_start(due, e)

    async def _deliver_rerouted(self, due: Due) -> None:
        """Hands recipients to their class's fallback relay, at the class's
        reroute_level (one job per relay)."""
        key = inflight_key(due.queue_id, due.domain, rerouted=True)
        try:
            planned = self._planner.recipients(due, rerouted=True)
            if planned is None:
                self.inflight.discard(key)
                return
            cls = planned.rows[0]["class"] or self._ctx.cfg.classify.default_class
            policy = self._ctx.cfg.class_policy(cls)
            host, port = relay_address(policy.reroute)
            try:
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as e:
                self.inflight.discard(key)
                err = ResolveError(
                    due.domain,
                    f"fallback relay {policy.reroute}: {e}",
                    permanent=False,
                    reason=Reason.CONNECTION_FAILED,
                )
                await self._unroutable.unroutable(due, err, rerouted=True)
                return
            addresses = list(dict.fromkeys(str(i[4][0]) for i in infos))
            planned.info.level = policy.reroute_level
            hosts = [JobHost(name=host, addresses=addresses, port=port)]
            self._add_job(planned, hosts, destination=f"reroute:{host}")
            self.flush()
        except Exception as e:
            self._failed_to_start(due, e, rerouted=True)

    def _queue(
        self, due: Due, route: Route, policy: Policy | None, fresh: FreshRows | None = None
    ) -> None:
        planned = self._planner.recipients(due, fresh=fresh)
        if planned is None:
            self.inflight.discard(inflight_key(due.queue_id, due.domain))
            return
        planned.info.route = route
        if planned.info.classification.get("tlsrpt"):
            # RFC 8460 §5.3: a TLS report goes despite TLS failures, so
            # nothing authenticates its hosts (`pipeline/tlsrpt.py`).
            hosts = job_hosts(route)
            for h in hosts:
                h.tlsa, h.pkix = [], False
            self._add_job(planned, hosts, destination=due.domain)
            return
        planned.info.sts = policy
        hosts = job_hosts(route, policy, self._ctx.cfg.policy_for(due.domain))
        self._add_job(planned, hosts, destination=due.domain)

    def _is_report(self, due: Due) -> bool:
        """A TLS report: no MTA-STS policy filters its MX hosts (asked only
        when one would)."""
        msg = self._ctx.store.message(due.queue_id)
        return msg is not None and bool(stored_classification(msg).get("tlsrpt"))

    def _add_job(self, planned: Planned, hosts: list[JobHost], *, destination: str) -> None:
        job_id = self._next_job
        self._next_job += 1
        self.jobs[job_id] = planned.info
        self._outbox.append(self._planner.job(job_id, planned, hosts, destination=destination))

    def _failed_to_start(self, due: Due, e: Exception, *, rerouted: bool = False) -> None:
        # A bug or a broken engine must not take the relay down; the
        # recipients stay as they are and the scanner tries again.
        self.inflight.discard(inflight_key(due.queue_id, due.domain, rerouted=rerouted))
        if is_outage(e):
            # The store's outage, not a bug: its traceback says nothing
            # more, and a restart of PostgreSQL would print one for every
            # delivery that was starting.
            event(
                log,
                "cannot start delivery: store unavailable, retried at a later scan",
                logging.WARNING,
                queue_id=due.queue_id,
                domain=due.domain,
                error=" ".join(str(e).split()) or type(e).__name__,
            )
            return
        log.error(
            "cannot start delivery",
            exc_info=e,
            extra={"mxg_fields": {"queue_id": due.queue_id, "domain": due.domain}},
        )

    # -- the boundary -------------------------------------------------------

    def flush(self) -> None:
        """One crossing of the boundary for all jobs queued since the last."""
        if not self._outbox:
            return
        jobs, self._outbox = self._outbox, []
        try:
            self._ctx.engine.submit(encode(jobs))
        except Exception as e:
            for job in jobs:
                info = self.jobs.pop(job.job_id)
                self._failed_to_start(
                    Due(info.queue_id, info.domain, ()), e, rerouted=info.rerouted
                )

    @property
    def waiting(self) -> int:
        """Deliveries of new messages waiting for room under max_jobs."""
        return len(self._waiting)

    def under_way(self) -> set[tuple[str, str]]:
        """The messages and recipient domains whose delivery is under way
        in this process: in flight (resolving, or a job; rerouted too),
        or waiting for room under max_jobs."""
        busy = {(q, d.removeprefix("reroute:")) for q, d in self.inflight}
        busy.update((d.queue_id, d.domain) for d in self._waiting)
        return busy

    def finished(self, job_id: int) -> JobInfo | None:
        """The job whose results arrived; its recipients stay in flight
        until `settled`."""
        return self.jobs.pop(job_id, None)

    def settled(self, infos: Iterable[JobInfo]) -> None:
        """The jobs' results are stored (or held in memory): their
        recipients no longer count as in flight, and the index's due
        query may find them again."""
        for info in infos:
            self.inflight.discard(info.key)


def _split_by_domain(m: NewMessage) -> Iterable[Due]:
    """A new message's recipients as one delivery per recipient domain."""
    by: dict[str, list[int]] = {}
    for i, r in enumerate(m.envelope.recipients):
        by.setdefault(domain_of(r.address), []).append(i)
    return [Due(m.queue_id, d, tuple(ix)) for d, ix in by.items()]
