"""The control plane's main loop.

It starts the Rust engine, re-queues whatever the spool holds that the
index does not know (the spool is the source of truth, ARCHITECTURE.md rule
10), then waits on the engine's event descriptor: received messages are
indexed and dispatched at once, delivery results are recorded, deferred
recipients come back through the scanner, bounces become DSNs, and a spool
file is removed only once every recipient's final state is stored
(rule 11). Written on anyio; runs on asyncio (uvloop) and trio alike.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import pwd
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import orjson

from mxg import _core
from mxg.classes import relay_address
from mxg.config import Config, DomainPolicy
from mxg.datadir import InstanceLock, check_tree, hand_over
from mxg.deliverylog import delivery, event, flush_logs, log
from mxg.dsn import Original, RecipientReport, build_dsn
from mxg.errors import EngineStopped, MessageNotFound, MxgError, SpoolError
from mxg.mtasts import (
    REFRESH_INTERVAL,
    Policy,
    PolicyError,
    StsCache,
    http_client,
    mx_matches,
)
from mxg.relay_policy import ClassPolicyMixin
from mxg.resolve import DnsResolver, ResolveError, Resolver, Route, probe_dnssec
from mxg.schedule import next_attempt_ms
from mxg.store import Due, Outcome, Store, domain_of, envelope_rows, now_ms
from mxg.verdict import Feasibility


@dataclass
class JobInfo:
    """What the control plane remembers about a job in flight."""

    queue_id: str
    domain: str
    sender: str
    message_id: str | None
    received_ms: int
    # address → recipient indexes (an address may appear twice)
    indexes: dict[str, list[int]] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)
    route: Route | None = None
    sts: Policy | None = None
    # recipient index → risk class; the level the job required
    classes: dict[int, str] = field(default_factory=dict)
    level: str = ""
    # Sent to the class's fallback relay (on_unmet = "reroute").
    rerouted: bool = False
    # A DSN mxg made: never bounced for want of a level (that would lose
    # it), only deferred.
    dsn: bool = False
    # The message's stored classification (``Classification.to_json``).
    classification: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        """The in-flight key: one job per message and destination."""
        return inflight_key(self.queue_id, self.domain, rerouted=self.rerouted)

    def dnssec(self, host: str) -> dict[str, str]:
        """Evidence: how the MX answer and the host's addresses were secured."""
        if self.route is None or not host:
            return {}
        h = next((h for h in self.route.hosts if h.name == host), None)
        secure = {True: "secure", False: "insecure"}
        out = {"mx_dnssec": secure[self.route.mx_secure]}
        if self.sts is not None:
            out["mta_sts"] = f"{self.sts.mode} id={self.sts.id}"
        if h is not None:
            out["host_dnssec"] = secure[h.secure]
        return out


def _wants(notify: str, kind: str) -> bool:
    """RFC 3461 §4.1: NOTIFY=NEVER suppresses all DSNs; without NOTIFY
    failures are reported and delays too (mxg's choice, like sendmail)."""
    words = set(filter(None, notify.split(",")))
    if "NEVER" in words:
        return False
    return not words or kind in words


def inflight_key(queue_id: str, domain: str, *, rerouted: bool = False) -> tuple[str, str]:
    return (queue_id, f"reroute:{domain}" if rerouted else domain)


class Relay(ClassPolicyMixin):
    def __init__(self, config: Config, *, resolver: Resolver | None = None) -> None:
        self.cfg = config
        dns_resolver = DnsResolver(
            config.dns,
            prefer=config.delivery.address_preference,
            max_addresses=config.delivery.max_addresses,
            port=config.delivery.port,
        )
        self.resolver: Resolver = resolver or dns_resolver
        self.sts: StsCache | None = (
            StsCache(dns_resolver.raw, lambda: http_client(config.delivery.ca_file))
            if config.delivery.mta_sts
            else None
        )
        self.store: Store | None = None
        self.engine: _core.Engine | None = None
        self.jobs: dict[int, JobInfo] = {}
        self.inflight: set[tuple[str, str]] = set()
        self._next_job = 1
        self._outbox: list[dict[str, Any]] = []
        # Due recipients were left waiting for room under max_jobs: look for
        # them again as soon as jobs finish, not only at the next scan.
        self._room_wanted = False
        # New messages' deliveries that found no room under max_jobs, oldest
        # first: started as jobs finish, checked against the index in one
        # query per batch instead of a walk over every due recipient.
        self._waiting: deque[Due] = deque()
        self._stop = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None
        # Finished messages whose spool files `_unlink_finished` removes.
        self._unlinking: list[str] = []
        self.feasibility = Feasibility(config, self.resolver, self._sts_policy)
        self._early: dict[str, dict[int, str]] = {}
        # Messages received in the batch being handled, as their store rows
        # would read: their first jobs are built without a query.
        self._fresh: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        self._scan_json = json.dumps(config.scan_options())

    # -- lifecycle -----------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[list[str]] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        cfg = self.cfg
        cfg.data.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Rule 11a: the lock before anything reads or changes the spool or
        # the store; a second relay stops here with the holder's PID.
        lock = InstanceLock.acquire(cfg.data.directory)
        try:
            await self._run_locked(task_status)
        finally:
            lock.release()

    async def _run_locked(self, task_status: anyio.abc.TaskStatus[list[str]]) -> None:
        cfg = self.cfg
        user = run_user(cfg.run.user) if os.geteuid() == 0 else None
        check_tree(cfg.data.directory, {0, os.geteuid(), *([user.pw_uid] if user else [])})
        engine = _core.Engine(json.dumps(cfg.engine_json()))
        self.engine = engine
        try:
            drop_privileges(user, cfg.data.directory)
            self.store = Store(cfg.db_path)
            if self.sts is not None:
                self.sts.load([(Policy(**p), exp) for p, exp in self.store.load_sts()])
                self.sts.save = self.store.save_sts
            if cfg.delivery.default_level is not None:
                event(
                    log,
                    "delivery.default_level is deprecated: use [classes.normal] level",
                    logging.WARNING,
                    normal_level=cfg.class_policy("normal").level,
                )
            validating, verdict = await probe_dnssec(cfg.dns)
            event(log, f"DNSSEC: {verdict}", logging.INFO if validating else logging.WARNING)
            await self._recover()
            _tune_gc()
            engine.serve()
            addrs = engine.local_addrs()
            event(
                log,
                "listening",
                addresses=",".join(addrs),
                hostname=cfg.server.hostname,
                pid=os.getpid(),
            )
            task_status.started(addrs)
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._event_loop)
                tg.start_soon(self._scanner)
                if self.sts is not None:
                    tg.start_soon(self._sts_refresher, self.sts)
                await self._stop.wait()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                event(log, "shutting down: finishing open transactions")
                await anyio.to_thread.run_sync(engine.shutdown)
                if self.store is not None:
                    # Messages accepted during the grace period are indexed
                    # now; results that came in are recorded.
                    self._tg = None
                    await self._handle(orjson.loads(engine.drain()))
                    self.store.close()
                event(log, "stopped")

    async def _recover(self) -> None:
        """Index every spooled message the store does not know; remove spool
        files of messages that are already finished."""
        assert self.engine is not None and self.store is not None
        ids = await anyio.to_thread.run_sync(self.engine.spool_ids)
        known = self.store.known_ids()
        missing = [i for i in ids if i not in known]
        envelopes = []
        for qid in missing:
            try:
                envelopes.append(json.loads(self.engine.read_envelope(qid)))
            except SpoolError as e:
                event(
                    log,
                    "unreadable spool file left in place",
                    logging.ERROR,
                    queue_id=qid,
                    error=str(e),
                )
        if envelopes:
            for env in envelopes:
                self._classify_into(env, await self._features_of_spooled(env["queue_id"]))
            self.store.add_messages(envelopes)
            event(log, "re-queued from spool", count=len(envelopes))
            for env in envelopes:
                await self._commit(self._intake_outcomes(env))
        done = set(self.store.finished())
        on_disk = set(ids)
        for row in self.store.db.execute("SELECT queue_id FROM messages WHERE state='done'"):
            if row[0] in on_disk:
                done.add(row[0])
        await self._remove_finished(sorted(done))
        # Jobs of the previous run never reported back: try again now. A
        # delivery that was under way when the last run died may have
        # reached its receiver, so it can arrive twice (at least once).
        with self.store.transaction() as db:
            resumed = db.execute("UPDATE recipients SET next_ms=0 WHERE status='pending'").rowcount
        if resumed:
            event(log, "resuming pending deliveries", recipients=resumed)
        # Bounces whose DSN was not yet queued when the last run ended.
        for qid in self.store.dsn_pending():
            await self._send_failure_dsn(qid)
        await self._remove_finished(self.store.finished())

    # -- events from the engine ---------------------------------------------

    async def _event_loop(self) -> None:
        assert self.engine is not None
        fd = self.engine.fileno()
        while True:
            await anyio.wait_readable(fd)
            batch = orjson.loads(self.engine.drain())
            if batch:
                await self._handle(batch)
            flush_logs()

    async def _handle(self, batch: list[dict[str, Any]]) -> None:
        assert self.store is not None
        received = [e for e in batch if e["type"] == "received"]
        done = [e for e in batch if e["type"] == "delivery_done"]
        arrived = [(e["envelope"], e.get("features")) for e in batch if e["type"] == "arrived"]
        if arrived and self._tg is not None:
            for env, features in self._plain_verdicts(arrived):
                self._tg.start_soon(self._verdict, env, features)
        for e in batch:
            kind = e["type"]
            if kind == "log":
                event(log, e["message"], getattr(logging, e["level"].upper(), logging.INFO))
            elif kind == "rcpt_check":
                if self._tg is not None:
                    self._tg.start_soon(
                        self._rcpt_check, e["check_id"], e["sender"], e["recipient"]
                    )
            elif kind == "rejected":
                env = e["envelope"]
                event(
                    log,
                    "rejected",
                    logging.WARNING,
                    queue_id=env["queue_id"],
                    message_id=env.get("message_id") or "",
                    **{"from": f"<{env['sender']}>"},
                    nrcpt=len(env["recipients"]),
                    reply=f"{e['code']} {e['enhanced']} {e['text']}",
                )
        if received:
            envelopes = []
            for e in received:
                env = e["envelope"]
                features = e.get("features")
                if not isinstance(features, dict):
                    features = await self._features_of_spooled(env["queue_id"])
                self._classify_into(env, features)
                envelopes.append(env)
            self.store.add_messages(envelopes)
            intake: list[Outcome] = []
            for env in envelopes:
                event(
                    log,
                    "received",
                    queue_id=env["queue_id"],
                    message_id=env.get("message_id") or "",
                    size=env["size"],
                    **{"from": f"<{env['sender']}>"},
                    nrcpt=len(env["recipients"]),
                    client=env.get("client_addr") or "local",
                    **{"class": env["class"]},
                    why=_why(env["classification"]),
                )
                now = self._intake_outcomes(env)
                self._log_outcomes(env, now, "not delivered as classified")
                intake += now
            if intake:
                await self._commit(intake)
            stopped = {(o.queue_id, o.idx) for o in intake if o.status != "deferred"}
            rerouted = {(o.queue_id, o.idx) for o in intake if o.status == "deferred"}
            # New messages go out at once, without a trip through the index;
            # what does not fit under max_jobs waits in `_waiting`.
            self._fresh = {env["queue_id"]: envelope_rows(env) for env in envelopes}
            for env in envelopes:
                for due in _split_by_domain(env):
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
            self._fresh = {}
        if done:
            await self._results(done)
        self._flush_jobs()

    # -- dispatch -----------------------------------------------------------

    def _dispatch_due(self) -> None:
        assert self.store is not None
        if self._tg is None:
            return
        room = self.cfg.delivery.max_jobs - len(self.jobs)
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
        found = self.store.due(now_ms(), limit=limit)
        for due in found:
            if not self._start(due, rerouted=due.rerouted):
                self._room_wanted = True
                break
        if sum(len(d.indexes) for d in found) >= limit:
            self._room_wanted = True  # more may be due beyond the limit
        self._flush_jobs()

    def _start_waiting(self) -> None:
        """Starts new messages' deliveries that waited for room, as far as
        there is room; only recipients still due (not held, not delivered
        or deferred meanwhile by a scan) go."""
        assert self.store is not None
        room = self.cfg.delivery.max_jobs - len(self.inflight)
        if room <= 0 or not self._waiting:
            return
        # Well within one query's parameters (`store._MAX_PARAMS`); the rest
        # at the next batch.
        take = [self._waiting.popleft() for _ in range(min(room, len(self._waiting), 500))]
        wanted = {(d.queue_id, d.domain) for d in take}
        found = self.store.due(now_ms(), limit=None, among=sorted({d.queue_id for d in take}))
        for due in found:
            wanted_here = (due.queue_id, due.domain) in wanted and not due.rerouted
            if wanted_here and not self._start(due):
                self._waiting.appendleft(due)
        self._flush_jobs()

    def _start(self, due: Due, *, rerouted: bool = False) -> bool:
        """Starts a delivery unless one for the same message and domain is
        in flight; False when max_jobs is reached. With the route cached the
        job is queued for the engine at once; otherwise a task resolves it.
        Rerouted recipients go to their class's fallback relay instead."""
        if self._tg is None:
            return False
        if len(self.inflight) >= self.cfg.delivery.max_jobs:
            return False
        key = inflight_key(due.queue_id, due.domain, rerouted=rerouted)
        if key in self.inflight:
            return True
        self.inflight.add(key)
        if rerouted:
            self._tg.start_soon(self._deliver_rerouted, due)
            return True
        route = self.resolver.cached(due.domain)
        known, policy = self.sts.cached(due.domain) if self.sts else (True, None)
        dom = self.cfg.policy_for(due.domain)
        if route is None or not known or not _allowed_hosts(route, policy, dom):
            self._tg.start_soon(self._deliver, due)
            return True
        try:
            self._queue_job(due, route, policy)
        except Exception as e:
            self._failed_to_start(due, e)
        return True

    async def _sts_policy(self, domain: str) -> Policy | None:
        """The domain's MTA-STS policy; a policy that cannot be had counts
        as none (RFC 8461 §3.3: no delivery is blocked for want of one)."""
        if self.sts is None:
            return None
        try:
            return await self.sts.policy(domain)
        except PolicyError as e:
            event(log, "MTA-STS policy unavailable", logging.WARNING, domain=domain, error=str(e))
            return None

    async def _deliver(self, due: Due) -> None:
        try:
            try:
                route = await self.resolver.route(due.domain)
            except ResolveError as e:
                await self._unroutable(due, e)
                return
            policy = await self._sts_policy(due.domain)
            dom = self.cfg.policy_for(due.domain)
            if not _allowed_hosts(route, policy, dom):
                # RFC 8461 §4.1: under enforce, only matching MX hosts; the
                # operator's policy may restrict them too.
                found = ", ".join(h.name for h in route.hosts)
                if policy is not None and not _allowed_hosts(route, policy, None):
                    text = (
                        f"validation-failure: the MTA-STS {policy.mode} policy of {due.domain} "
                        f"(id {policy.id}, mx {', '.join(policy.mx)}) matches none of its MX "
                        f"hosts ({found})"
                    )
                else:
                    assert dom is not None
                    text = (
                        f"validation-failure: the configured policy for {due.domain} allows "
                        f"only MX {', '.join(dom.mx)}, which matches none of its MX hosts "
                        f"({found})"
                    )
                await self._unroutable(
                    due,
                    ResolveError(due.domain, text, permanent=False, enhanced="4.7.5"),
                    unmet=True,
                )
                return
            self._queue_job(due, route, policy)
            self._flush_jobs()
        except Exception as e:
            self._failed_to_start(due, e)

    async def _deliver_rerouted(self, due: Due) -> None:
        """Hands recipients to their class's fallback relay, at the class's
        reroute_level (one job per relay)."""
        key = inflight_key(due.queue_id, due.domain, rerouted=True)
        try:
            found = self._job_info(due, rerouted=True)
            if found is None:
                return
            _, rows, _ = found
            relay = self.cfg.class_policy(rows[0]["class"] or self.cfg.classify.default_class)
            host, port = relay_address(relay.reroute)
            try:
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as e:
                self.inflight.discard(key)
                err = ResolveError(
                    due.domain, f"fallback relay {relay.reroute}: {e}", permanent=False
                )
                await self._unroutable(due, err, rerouted=True)
                return
            addresses = list(dict.fromkeys(str(i[4][0]) for i in infos))
            hosts = [{"name": host, "addresses": addresses, "port": port}]
            self._queue_job(due, None, None, hosts=hosts, level=relay.reroute_level)
            self._flush_jobs()
        except Exception as e:
            self._failed_to_start(due, e, rerouted=True)

    def _failed_to_start(self, due: Due, e: Exception, *, rerouted: bool = False) -> None:
        # A bug or a broken engine must not take the relay down; the
        # recipients stay as they are and the scanner tries again.
        self.inflight.discard(inflight_key(due.queue_id, due.domain, rerouted=rerouted))
        log.error(
            "cannot start delivery",
            exc_info=e,
            extra={"mxg_fields": {"queue_id": due.queue_id, "domain": due.domain}},
        )

    def _job_info(
        self, due: Due, *, rerouted: bool = False
    ) -> tuple[Any, list[Any], JobInfo] | None:
        assert self.store is not None
        fresh = self._fresh.get(due.queue_id)
        msg: Any
        if fresh is not None:
            msg, every = fresh
            wanted = set(due.indexes)
            rows: list[Any] = [r for r in every if r["idx"] in wanted]
        else:
            msg = self.store.message(due.queue_id)
            rows = self.store.recipients(due.queue_id, due.indexes)
        if msg is None or not rows:
            self.inflight.discard(inflight_key(due.queue_id, due.domain, rerouted=rerouted))
            return None
        info = JobInfo(
            due.queue_id, due.domain, msg["sender"], msg["message_id"], msg["received_ms"]
        )
        info.rerouted = rerouted
        info.dsn = msg["origin"] == "local"
        classification = _classification(msg)
        info.classification = classification
        info.level = "none"
        # A job's recipients share message and domain, and mostly class: the
        # level is worked out once per class and override, not per recipient.
        levels: dict[tuple[str, str | None], str] = {}
        for r in rows:
            info.indexes.setdefault(r["address"], []).append(r["idx"])
            info.attempts[r["idx"]] = r["attempts"] + 1
            cls = r["class"] or self.cfg.classify.default_class
            info.classes[r["idx"]] = cls
            key = (cls, r["override_level"])
            if key not in levels:
                levels[key] = self._requirement(
                    cls, classification, r["address"], r["override_level"]
                ).level
                info.level = _stricter(info.level, levels[key])
        return msg, rows, info

    async def _unroutable(
        self, due: Due, e: ResolveError, *, unmet: bool = False, rerouted: bool = False
    ) -> None:
        found = self._job_info(due, rerouted=rerouted)
        self.inflight.discard(inflight_key(due.queue_id, due.domain, rerouted=rerouted))
        if found is None:
            return
        _, rows, info = found
        results = [
            {
                "address": r["address"],
                "status": "bounced" if e.permanent else "deferred",
                "code": None,
                "enhanced": e.enhanced,
                "text": e.text,
                "host": "",
                "ip": "",
                "level": "none",
                "unmet": unmet,
            }
            for r in rows
        ]
        await self._commit(self._outcomes(info, results))

    def _queue_job(
        self,
        due: Due,
        route: Route | None,
        policy: Policy | None,
        *,
        hosts: list[dict[str, Any]] | None = None,
        level: str | None = None,
    ) -> None:
        """Builds the delivery job; `_flush_jobs` hands the batch over. The
        job needs the strictest level among its recipients: they share the
        server and the content, so one protection serves them all."""
        found = self._job_info(due, rerouted=hosts is not None)
        if found is None:
            return
        msg, rows, info = found
        info.route = route
        info.sts = policy
        dom = self.cfg.policy_for(due.domain)
        classification = info.classification
        if level is None:
            level = info.level
        info.level = level
        job_id = self._next_job
        self._next_job += 1
        self.jobs[job_id] = info
        requiretls = bool(msg["requiretls"]) and not any(r["override_level"] for r in rows)
        self._outbox.append(
            {
                "job_id": job_id,
                "queue_id": due.queue_id,
                "destination": f"reroute:{hosts[0]['name']}" if hosts else due.domain,
                "sender": msg["sender"],
                "recipients": [
                    {
                        "address": r["address"],
                        "notify": [w for w in r["notify"].split(",") if w],
                        **({"orcpt": r["orcpt"]} if r["orcpt"] else {}),
                    }
                    for r in rows
                ],
                "hosts": hosts
                if hosts is not None
                else job_hosts(route, policy, dom)
                if route is not None
                else [],
                "tls": {
                    "level": level,
                    "profile": self.cfg.delivery.tls_profile,
                    "methods": (
                        dom.methods if dom and dom.methods else self.cfg.delivery.qualified_methods
                    ),
                    "requiretls": requiretls,
                },
                "ret": msg["ret"],
                "envid": msg["envid"],
                "body": msg["body"],
                "smtputf8": bool(msg["smtputf8"]),
                "strip_headers": classification.get("strip_headers", []),
                "subject_tag": classification.get("subject_tag"),
            }
        )

    def _flush_jobs(self) -> None:
        """One crossing of the boundary for all jobs queued since the last."""
        if not self._outbox:
            return
        jobs, self._outbox = self._outbox, []
        assert self.engine is not None
        try:
            self.engine.submit(orjson.dumps(jobs).decode())
        except Exception as e:
            for job in jobs:
                info = self.jobs.pop(job["job_id"])
                self._failed_to_start(
                    Due(info.queue_id, info.domain, ()), e, rerouted=info.rerouted
                )

    # -- results ------------------------------------------------------------

    async def _results(self, done: list[dict[str, Any]]) -> None:
        outcomes: list[Outcome] = []
        for ev in done:
            info = self.jobs.pop(ev["job_id"], None)
            if info is None:
                continue
            self.inflight.discard(info.key)
            for a in ev["attempts"]:
                event(
                    log,
                    "attempt failed",
                    logging.INFO,
                    queue_id=info.queue_id,
                    relay=f"{a['host']}[{a['ip']}]",
                    error=a["error"],
                )
            outcomes += self._outcomes(info, ev["results"])
        await self._commit(outcomes)
        # Retries come back through the scanner; right away only what waited
        # for room or is due at once, e.g. rerouted. New messages waiting in
        # memory take the room first: while they do, the index is not asked
        # (its due query reads the recipients in flight too, up to max_jobs
        # of them, and would run for every batch of results).
        self._start_waiting()
        t = now_ms()
        if (self._room_wanted and not self._waiting) or any(
            o.status == "deferred" and o.next_ms <= t for o in outcomes
        ):
            self._dispatch_due()

    def _outcomes(self, info: JobInfo, results: list[dict[str, Any]]) -> list[Outcome]:
        """Turns a job's results into recipient outcomes (deferrals past the
        queue lifetime become bounces) and logs one line per recipient."""
        t = now_ms()
        outcomes: list[Outcome] = []
        for res in results:
            slots = info.indexes.get(res["address"])
            if not slots:
                continue
            idx = slots.pop(0)
            status = res["status"]
            text = res["text"]
            enhanced = res.get("enhanced") or ""
            code = res.get("code")
            next_ms = 0
            if status == "sent" and not info.rerouted:
                self.feasibility.note_met(info.domain, res.get("level") or "none")
            # on_unmet applies to the recipient's own route; at the fallback
            # relay a failure is retried like any other.
            unmet = None
            if res.get("unmet") and status == "deferred" and not info.rerouted:
                self.feasibility.note_unmet(info.domain, info.level, text)
                if not info.dsn:
                    unmet = self._unmet(
                        info.queue_id, idx, info.classes[idx], text, enhanced=enhanced
                    )
            if unmet is not None:
                status, code, enhanced, text = unmet.status, None, unmet.enhanced, unmet.text
                next_ms = unmet.next_ms
            elif status == "deferred":
                nxt = next_attempt_ms(
                    received_ms=info.received_ms,
                    attempts=info.attempts[idx],
                    now_ms=t,
                    schedule=self.cfg.queue.retry_schedule,
                    lifetime_s=self.cfg.queue.max_lifetime,
                )
                if nxt is None:
                    # RFC 3463 4.4.7: delivery time expired. The last reply
                    # stays in the text; the code is mxg's own verdict.
                    last = " ".join(str(p) for p in (code, enhanced, text) if p)
                    status, code, enhanced = "bounced", None, "4.4.7"
                    text = (
                        f"message expired after {_duration(self.cfg.queue.max_lifetime)} "
                        f"in the queue; last error: {last}"
                    )
                else:
                    next_ms = nxt
            tls = res.get("tls")
            dnssec = info.dnssec(res.get("host", ""))
            tls_text = f"{tls['version']} {tls['cipher']}" if tls else ""
            outcomes.append(
                Outcome(
                    info.queue_id,
                    idx,
                    status,
                    code,
                    enhanced,
                    text,
                    res.get("host", ""),
                    res.get("ip", ""),
                    tls_text,
                    res.get("level", ""),
                    next_ms,
                    _evidence(tls, dnssec),
                )
            )
            delivery(
                queue_id=info.queue_id,
                message_id=info.message_id,
                sender=info.sender,
                recipient=res["address"],
                host=res.get("host", ""),
                ip=res.get("ip", ""),
                status=status,
                code=code,
                enhanced=enhanced,
                text=text,
                tls_version=tls["version"] if tls else "",
                cipher=tls["cipher"] if tls else "",
                group=tls.get("group", "") if tls else "",
                method=tls.get("method", "") if tls else "",
                dnssec=_dnssec_word(dnssec),
                level=res.get("level", ""),
                delay_s=(t - info.received_ms) / 1000,
                attempt=info.attempts[idx],
                risk_class=info.classes.get(idx, ""),
                required=info.level,
            )
        return outcomes

    async def _commit(self, outcomes: list[Outcome]) -> None:
        """One durable transaction for a batch of outcomes; then DSNs for
        new bounces; then the spool files of finished messages go (rule 11:
        the final states are stored first)."""
        assert self.store is not None
        if not outcomes:
            return
        finished = self.store.record(outcomes)
        bounced = sorted({o.queue_id for o in outcomes if o.status == "bounced"})
        for qid in bounced:
            await self._send_failure_dsn(qid)
        if bounced:
            # Finished once their DSNs are queued.
            finished += self.store.finish(bounced)
        if finished and self._tg is not None:
            # The unlinks run beside the event loop, which goes on with the
            # next batch instead of waiting for the file system; one batch
            # at a time (parallel unlinks in one directory contend).
            self._unlinking += finished
            if len(self._unlinking) == len(finished):
                self._tg.start_soon(self._unlink_finished)
        elif finished:
            await self._remove_finished(finished, marked=True)

    async def _unlink_finished(self) -> None:
        while self._unlinking:
            batch = self._unlinking[:]
            await self._remove_finished(batch, marked=True)
            del self._unlinking[: len(batch)]

    # -- DSNs ---------------------------------------------------------------

    def _dsn_candidates(self, queue_id: str, want: Callable[[Any], bool]) -> tuple[Any, list[Any]]:
        assert self.store is not None
        msg = self.store.message(queue_id)
        rows = [r for r in self.store.recipients(queue_id) if want(r)] if msg else []
        return msg, rows

    async def _send_failure_dsn(self, queue_id: str) -> None:
        assert self.store is not None
        msg, rows = self._dsn_candidates(
            queue_id, lambda r: r["status"] == "bounced" and not r["dsn_sent"]
        )
        if msg is None:
            return
        wanted = [r for r in rows if _wants(r["notify"], "FAILURE")]
        if msg["sender"] and wanted:
            reports = [_report(r, "failed") for r in wanted]
            if not await self._inject_dsn(msg, reports, None):
                return
        if rows:
            self.store.mark_dsn_sent(queue_id, [r["idx"] for r in rows])

    async def _send_delay_dsn(self, queue_id: str) -> None:
        assert self.store is not None
        msg, rows = self._dsn_candidates(
            queue_id, lambda r: r["status"] == "deferred" and _wants(r["notify"], "DELAY")
        )
        if msg is None:
            return
        if rows and msg["sender"]:
            reports = [_report(r, "delayed") for r in rows]
            until = msg["received_ms"] + int(self.cfg.queue.max_lifetime * 1000)
            if not await self._inject_dsn(msg, reports, until):
                return
        self.store.mark_delay_warned(queue_id)

    async def _inject_dsn(
        self, msg: Any, reports: list[RecipientReport], retry_until_ms: int | None
    ) -> bool:
        """Spools a DSN; False when the engine has stopped (retried at the
        next start)."""
        assert self.engine is not None and self.store is not None
        engine = self.engine
        try:
            _, original = await anyio.to_thread.run_sync(engine.read, msg["queue_id"])
        except MessageNotFound:
            original = b""
        except EngineStopped:
            return False
        dsn = build_dsn(
            reporting_mta=self.cfg.server.hostname,
            postmaster=self.cfg.postmaster,
            original=Original(
                msg["queue_id"],
                msg["sender"],
                msg["envid"],
                # The content of a REQUIRETLS message (RFC 8689 §5) or of a
                # class above normal does not go back in a DSN, which travels
                # as class normal.
                "HDRS"
                if msg["requiretls"] or (msg["class"] or "normal") != "normal"
                else msg["ret"],
                msg["received_ms"],
                original,
            ),
            reports=reports,
            full_message_limit=self.cfg.dsn.return_full_message_limit,
            retry_until_ms=retry_until_ms,
        )
        envelope = {
            "queue_id": "",
            "received_ms": now_ms(),
            "sender": "",
            "recipients": [{"address": msg["sender"], "notify": ["NEVER"]}],
            "origin": "local",
            "size": len(dsn),
            "client_addr": "",
            "client_helo": "",
            "message_id": None,
        }
        try:
            stored = json.loads(
                await anyio.to_thread.run_sync(engine.inject, json.dumps(envelope), dsn)
            )
        except EngineStopped:
            return False
        # A DSN goes back to the internal sender as class normal; for a
        # message of a higher class it carries the headers only (above).
        stored["class"] = "normal"
        stored["classification"] = {
            "class": "normal",
            "fired": [{"rule": "dsn", "class": "normal", "why": f"DSN for {msg['queue_id']}"}],
        }
        for r in stored["recipients"]:
            r["class"] = "normal"
        self.store.add_messages([stored])
        event(
            log,
            "dsn queued",
            queue_id=stored["queue_id"],
            original=msg["queue_id"],
            to=f"<{msg['sender']}>",
            action=reports[0].action,
            nrcpt=len(reports),
        )
        self._dispatch_due()
        return True

    # -- housekeeping -------------------------------------------------------

    async def _remove_finished(self, queue_ids: list[str], *, marked: bool = False) -> None:
        """Rule 11: the final states are in the store, so the spool copies
        go (off the event loop; unlink can wait on the file system); then
        the messages are marked done unless `marked` already."""
        assert self.engine is not None and self.store is not None
        if not queue_ids:
            return
        engine, store = self.engine, self.store

        def durable_then_removed() -> None:
            store.sync()  # the final states reach the disk before the files go
            engine.remove_many(queue_ids)

        try:
            await anyio.to_thread.run_sync(durable_then_removed)
            removed = list(queue_ids)
        except EngineStopped:
            return  # removed at the next start (_recover)
        except OSError as e:
            # fsync failed: the results may not be on disk, so the messages
            # stay in the spool (found finished again at the next start).
            event(log, "cannot sync the queue index", logging.ERROR, error=str(e))
            return
        except SpoolError:
            removed = []
            for qid in queue_ids:
                try:
                    engine.remove(qid)
                except MessageNotFound:
                    pass
                except SpoolError as e:
                    event(
                        log,
                        "cannot remove finished message",
                        logging.ERROR,
                        queue_id=qid,
                        error=str(e),
                    )
                    continue
                removed.append(qid)
        if removed and not marked:
            self.store.mark_done(removed)

    async def _scanner(self) -> None:
        assert self.store is not None
        warn_after = self.cfg.queue.delay_warning_after
        while True:
            await anyio.sleep(self.cfg.queue.scan_interval)
            flush_logs()
            self._dispatch_due()
            if warn_after > 0:
                for qid in self.store.expired_delay_warnings(now_ms() - int(warn_after * 1000)):
                    await self._send_delay_dsn(qid)
            # Messages finished by an operator (mxg queue delete).
            await self._remove_finished(self.store.finished())

    async def _sts_refresher(self, sts: StsCache) -> None:
        """Renews MTA-STS policies before they expire (RFC 8461 §10.2)."""
        while True:
            await anyio.sleep(REFRESH_INTERVAL)
            for domain in sts.refresh_due():
                policy = await sts.refresh(domain)
                event(
                    log,
                    "MTA-STS policy refreshed",
                    logging.INFO,
                    domain=domain,
                    policy=f"{policy.mode} id={policy.id}" if policy else "none",
                )


# Allocations between two young-generation collections (CPython's default
# is 700). Each batch of engine events becomes thousands of small dicts and
# strings; at the default the collector ran several times per batch and took
# about 5 % of the relay's CPU in the benchmark. Garbage here is acyclic and
# freed by reference counting, so collecting less often costs little memory.
GC_YOUNG_THRESHOLD = 20_000


def _tune_gc() -> None:
    """After start-up: what exists now (modules, configuration, caches)
    lives for the whole run, so it is frozen out of every future
    collection, and young collections run less often."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def _duration(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = round(seconds / size, 1)
            return f"{n:g} {unit}{'' if n == 1 else 's'}"
    return f"{seconds:g} seconds"


def _classification(msg: Any) -> dict[str, Any]:
    """A message row's classification: stored as JSON, or already parsed
    for a message just received."""
    c = msg["classification"]
    return c if isinstance(c, dict) else dict(json.loads(c or "{}"))


def _why(classification: dict[str, Any]) -> str:
    """The rules that raised the class, for the "received" log line."""
    fired = [f"{f['rule']}: {f['why']}" for f in classification.get("fired", [])]
    return "; ".join(fired[1:]) or "default"


def _split_by_domain(env: dict[str, Any]) -> list[Due]:
    """A new message's recipients as one delivery per recipient domain."""
    by: dict[str, list[int]] = {}
    for i, r in enumerate(env["recipients"]):
        by.setdefault(domain_of(r["address"]), []).append(i)
    return [Due(env["queue_id"], d, tuple(ix)) for d, ix in by.items()]


def _allowed_hosts(route: Route, sts: Policy | None, dom: DomainPolicy | None) -> list[str]:
    """MX hosts usable under an MTA-STS policy (all unless it enforces,
    RFC 8461 §4.1) and the operator's policy for the domain."""
    out = []
    for h in route.hosts:
        if sts is not None and sts.mode == "enforce" and not sts.matches(h.name):
            continue
        if dom is not None and dom.mx and not any(mx_matches(p, h.name) for p in dom.mx):
            continue
        out.append(h.name)
    return out


def _pin_record(pin: str) -> dict[str, int | str]:
    """An operator pin as a DANE-EE-shaped record: ``spki-sha256`` is
    ``3 1 1``, ``cert-sha256`` is ``3 0 1``."""
    kind, _, digest = pin.partition(":")
    return {"usage": 3, "selector": 1 if kind == "spki-sha256" else 0, "mtype": 1, "data": digest}


def _stricter(a: str, b: str) -> str:
    order = ("none", "opportunistic", "encrypted", "qualified")
    return max(a, b, key=order.index)


def job_hosts(
    route: Route, policy: Policy | None = None, dom: DomainPolicy | None = None
) -> list[dict[str, Any]]:
    """The hosts of a route as the data plane takes them: addresses, TLSA
    records, whether the MX answer was secure (for dnssec-pkix), whether an
    MTA-STS enforce policy requires PKIX, and the operator's pins."""
    enforce = policy is not None and policy.mode == "enforce"
    allowed = set(_allowed_hosts(route, policy, dom))
    pins = [_pin_record(p) for p in dom.pins] if dom is not None else []
    # A pinned private CA is a DANE-TA record with the full certificate
    # (2 0 0), checked by the same verifier (RFC 7671 §5.2.2).
    if dom is not None:
        pins += [{"usage": 2, "selector": 0, "mtype": 0, "data": d} for d in dom.ca_certificates]
    return [
        {
            "name": h.name,
            "addresses": h.addresses,
            "tlsa": list(h.tlsa),
            "tlsa_names": list(h.tlsa_names),
            "pkix": route.mx_secure,
            "sts": enforce,
            "pins": pins,
            "pin_names": dom.cert_names if dom is not None else [],
        }
        for h in route.hosts
        if h.name in allowed
    ]


def _evidence(tls: dict[str, Any] | None, dnssec: dict[str, str]) -> str:
    """What an attempt proved, as stored JSON (ARCHITECTURE.md, vocabulary)."""
    evidence = {**(tls or {}), **dnssec}
    return orjson.dumps(evidence).decode() if evidence else ""


def _dnssec_word(dnssec: dict[str, str]) -> str:
    """``secure`` when both the MX answer and the host's addresses were."""
    if not dnssec:
        return ""
    return "secure" if set(dnssec.values()) == {"secure"} else "insecure"


def _report(row: Any, action: str) -> RecipientReport:
    """One recipient's part of a DSN, from its row in the store."""
    return RecipientReport(
        address=row["address"],
        orcpt=row["orcpt"],
        action=action,
        status=_status_for(row["enhanced"], row["code"], failed=action == "failed"),
        remote_mta=row["host"] or "",
        diagnostic=_diagnostic(row),
        last_attempt_ms=row["updated_ms"],
    )


def _diagnostic(row: Any) -> str:
    """The remote server's reply as it was (``550 5.1.1 text``), or mxg's own
    explanation when no server answered."""
    text = row["text"] or ""
    if row["code"]:
        return " ".join(p for p in (str(row["code"]), row["enhanced"] or "", text) if p)
    return text


def _status_for(enhanced: str | None, code: int | None, *, failed: bool) -> str:
    """The DSN Status field (RFC 3464 §2.3.4): the enhanced code we have, or
    one derived from the reply code's class. An expired message keeps its
    4.x.x status (as Postfix does): the cause was never permanent."""
    if enhanced:
        return enhanced
    if code and 200 <= code < 600:
        return f"{str(code)[0]}.0.0"
    return "5.0.0" if failed else "4.0.0"


def run_user(name: str) -> pwd.struct_passwd | None:
    """The account named by ``run.user`` (None when unset)."""
    if not name:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise MxgError(f"run.user: no such user {name!r}") from None


def drop_privileges(user: pwd.struct_passwd | None, data_dir: Path) -> None:
    """Rule 8: root only to bind; the data directory becomes the
    unprivileged user's before any byte is read from the network. Rule 8a:
    handed over without following a link (``datadir.hand_over``)."""
    if os.geteuid() != 0:
        return
    if user is None:
        event(
            log, "running as root: set run.user to drop privileges after binding", logging.WARNING
        )
        return
    for path in hand_over(data_dir, user.pw_uid, user.pw_gid):
        event(log, "left alone: not a plain file of the relay's", logging.WARNING, path=path)
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    event(log, "dropped privileges", user=user.pw_name, uid=user.pw_uid)
