"""The relay: starts the Rust engine, builds the pipeline's stages around
it, and feeds them the engine's events.

The event loop waits on the engine's descriptor and drains a batch at a
time: questions at the end of DATA and RCPT go to ``verdicts``, received
messages through ``intake`` to ``dispatch``, delivery results through
``outcomes``; jobs queued meanwhile cross the boundary once per batch. A
scanner brings back due retries, delay warnings, DSNs for what an
operator bounced and messages an operator finished. The web surface and
the metrics endpoint (`mxg.web`), when configured, serve from the same
task group and see the same state. Written on anyio; runs on asyncio
(uvloop) and trio alike.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.abc

from mxg import _core
from mxg.audit_trail import sign_checkpoint
from mxg.boundary import (
    Arrived,
    DeliveryDone,
    Event,
    Log,
    RcptCheck,
    Received,
    Rejected,
    decode_events,
)
from mxg.config import Config
from mxg.datadir import InstanceLock, check_tree, drop_privileges, run_user
from mxg.decide.tokens import TokenKey
from mxg.deliverylog import event, flush_logs, log
from mxg.dns import (
    DnsResolver,
    Policy,
    Resolver,
    StsCache,
    http_client,
    probe_dnssec,
)
from mxg.errors import EngineStopped
from mxg.pipeline.acknowledge import Acknowledge
from mxg.pipeline.asking import no_link_warning
from mxg.pipeline.beside import ResultsBeside, store_results
from mxg.pipeline.context import Context
from mxg.pipeline.dispatch import Dispatcher
from mxg.pipeline.drain import drain
from mxg.pipeline.engine import Engine
from mxg.pipeline.finish import Finisher
from mxg.pipeline.heartbeat import Heartbeat
from mxg.pipeline.housekeeping import checkpointer, pruner, sts_refresher
from mxg.pipeline.intake import Intake, log_rejected
from mxg.pipeline.notices import Notices
from mxg.pipeline.outcomes import Outcomes
from mxg.pipeline.plan import JobInfo, Planner, sts_policy
from mxg.pipeline.recovery import recover
from mxg.pipeline.reload import apply_reload, log_reloaded, reopen_logs
from mxg.pipeline.scanner import scanner
from mxg.pipeline.storage import StoreWatch, open_store, survives_a_full_store
from mxg.pipeline.takeover import recover_node
from mxg.pipeline.tlsrpt import reporter as tlsrpt_reporter
from mxg.pipeline.verdicts import EarlyVerdicts, Verdicts
from mxg.signing import SigningKey
from mxg.store import Store, is_outage
from mxg.verdict import Feasibility
from mxg.web import Listeners
from mxg.web.wiring import surface_of


@dataclass
class Stages:
    """The pipeline's stages, wired to one another."""

    ctx: Context
    intake: Intake
    verdicts: Verdicts
    dispatch: Dispatcher
    outcomes: Outcomes
    notices: Notices
    finisher: Finisher
    # On a PostgreSQL store: the 250 waits for the store (`acknowledge`),
    # and delivery results are stored beside the event loop (`beside`).
    acks: Acknowledge | None = None
    beside: ResultsBeside | None = None

    @classmethod
    def build(cls, ctx: Context) -> Stages:
        planner = Planner(ctx)
        notices = Notices(ctx)
        finisher = Finisher(ctx)
        outcomes = Outcomes(ctx, planner, notices, finisher)
        dispatch = Dispatcher(ctx, planner, outcomes)
        notices.on_queued = dispatch.dispatch_due
        early = EarlyVerdicts()
        intake = Intake(ctx, outcomes, early)
        verdicts = Verdicts(ctx, early)
        acks = beside = None
        if ctx.store.dialect.postgres:
            acks = Acknowledge(ctx, intake, verdicts, dispatch)
            beside = ResultsBeside(ctx, outcomes, dispatch)
        return cls(ctx, intake, verdicts, dispatch, outcomes, notices, finisher, acks, beside)

    async def handle(self, batch: list[Event]) -> None:
        """One batch of engine events, in the order that keeps replies
        fast: verdicts first (clients wait for them), then intake, then
        results; the jobs all of them queued cross the boundary once."""
        arrived = [e for e in batch if isinstance(e, Arrived)]
        if arrived and self.acks is not None:
            await self.acks.on_arrived(arrived)
        elif arrived:
            self.verdicts.on_arrived(arrived)
        received: list[Received] = []
        done: list[tuple[JobInfo, DeliveryDone]] = []
        for e in batch:
            match e:
                case Received():
                    received.append(e)
                case DeliveryDone():
                    info = self.dispatch.finished(e.job_id)
                    if info is not None:
                        done.append((info, e))
                case Log():
                    level = getattr(logging, e.level.upper(), logging.INFO)
                    event(log, e.message, level, **dict(e.fields))
                case RcptCheck():
                    self.verdicts.on_rcpt_check(e)
                case Rejected():
                    log_rejected(e)
        if received:
            messages, intake = await self.intake.take(received)
            self.dispatch.start_new(messages, intake)
        if done and not (self.beside is not None and self.beside.take(done)):
            await store_results(self.outcomes, self.dispatch, done)
        self.dispatch.flush()

    async def results_stored(self) -> None:
        """Returns once the results of every job finished so far are
        stored (beside the event loop on PostgreSQL)."""
        if self.beside is not None:
            await self.beside.stored()


class Relay:
    def __init__(
        self,
        config: Config,
        *,
        resolver: Resolver | None = None,
        config_path: Path | None = None,
    ) -> None:
        self.cfg = config
        # The file a reload reads again (None: the embedded defaults).
        self.config_path = config_path
        dns_resolver = DnsResolver(
            config.dns,
            prefer=config.delivery.address_preference,
            max_addresses=config.delivery.max_addresses,
            port=config.delivery.port,
        )
        self.resolver: Resolver = resolver or dns_resolver
        self._dns = dns_resolver
        self.sts: StsCache | None = (
            StsCache(dns_resolver.raw, lambda: http_client(config.delivery.ca_file))
            if config.delivery.mta_sts
            else None
        )
        self.feasibility = Feasibility(
            config, self.resolver, functools.partial(sts_policy, self.sts)
        )
        self._stop = anyio.Event()
        # While serving: the engine and stages a reload reconfigures.
        self._live: tuple[Engine, Stages] | None = None
        # A cluster node's membership, and its share of
        # max_per_destination among the live nodes (None: all of it).
        self.heartbeat: Heartbeat | None = None
        self.destination_share: int | None = None
        self._reload_wanted = False

    def stop(self) -> None:
        self._stop.set()

    def reload(self) -> None:
        """SIGHUP: reads the configuration file again and applies it to
        the next sessions, transactions and messages; what is running
        finishes as it is. A configuration with any problem is refused
        whole and the running one kept; keys only a restart can change
        keep their started values and are named (`mxg.config.reload`).
        The log file is reopened either way."""
        if self._live is None:
            self._reload_wanted = True  # applied once the relay serves
            return
        engine, stages = self._live
        outcome = apply_reload(self.cfg, self.config_path, engine)
        if outcome is None:
            self.reopen_logs()
            return
        applied, notes = outcome
        self.cfg = applied
        stages.ctx.cfg = applied
        self.feasibility.use_config(applied)
        self.reopen_logs()
        log_reloaded(self.config_path, notes)

    def reopen_logs(self) -> None:
        """SIGUSR1 and SIGHUP: reopens the log file after logrotate
        renamed it. When it cannot be opened, logging goes on where it
        went."""
        reopen_logs(self.cfg.log)

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
        # Made before the privilege drop, which hands it to the run user.
        key = SigningKey.load_or_create(cfg.data.directory)
        stages: Stages | None = None
        http: Listeners | None = None
        try:
            # Bound, and their certificates read, before the privilege
            # drop, as the SMTP listeners are (rule 8).
            http = Listeners.bind(cfg)
            drop_privileges(user, cfg.data.directory)
            stages = Stages.build(
                self._context(engine, open_store(cfg.store_target, cfg.cluster.node))
            )
            heartbeat = self._heartbeat(stages, key)
            await self._start(stages)
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
            self._live = (engine, stages)
            if self._reload_wanted:
                self._reload_wanted = False
                self.reload()
            async with anyio.create_task_group() as tg:
                stages.ctx.tg = tg
                tg.start_soon(self._event_loop, engine, stages)
                self._beside(tg, stages, key, heartbeat)
                if http.any:
                    surface = surface_of(
                        self.cfg, engine, stages.ctx, stages.dispatch, dns=self._dns, sts=self.sts
                    )
                    tg.start_soon(http.serve, surface)
                await self._stop.wait()
                if http.any:
                    await http.stop()
                tg.cancel_scope.cancel()
        finally:
            self._live = None
            if http is not None:
                http.close()
            with anyio.CancelScope(shield=True):
                event(log, "shutting down: finishing open transactions")
                await anyio.to_thread.run_sync(engine.shutdown)
                if stages is not None:
                    await _stop_stages(engine, stages, key)
                event(log, "stopped")

    def _context(self, engine: Engine, store: Store) -> Context:
        # On PostgreSQL every message is stored with its spool file, and
        # intake closes while the store is unreachable (docs/cluster.md).
        store.read_raws = engine.read_raw_many
        # The decision links' key is made (after the privilege drop) by and
        # for the relay's user, like the store.
        tokens = TokenKey.load_or_create(self.cfg.data.directory)
        ctx = Context(
            self.cfg, engine, store, self.resolver, self.sts, self.feasibility, tokens=tokens
        )
        store.watch_reachability(StoreWatch(engine, lambda: ctx.draining).changed)
        return ctx

    def _beside(
        self,
        tg: anyio.abc.TaskGroup,
        stages: Stages,
        key: SigningKey,
        heartbeat: Heartbeat | None,
    ) -> None:
        """The tasks beside the event loop: the scanner, a cluster node's
        heartbeat, and the housekeeping (`mxg.pipeline.housekeeping`)."""
        tg.start_soon(scanner, stages)
        if heartbeat is not None:
            tg.start_soon(heartbeat.run)
        tg.start_soon(checkpointer, stages.ctx, key)
        tg.start_soon(pruner, stages.ctx, key)
        tg.start_soon(tlsrpt_reporter, stages.ctx, stages.dispatch.dispatch_due)
        if self.sts is not None:
            tg.start_soon(sts_refresher, stages.ctx, self.sts)

    def _heartbeat(self, stages: Stages, key: SigningKey) -> Heartbeat | None:
        """On a PostgreSQL store: this node joins the cluster (its row in
        `nodes`, a fresh lease) before it recovers its messages."""
        node = stages.ctx.store.node
        if node is None:
            return None

        def on_drain() -> None:
            stages.ctx.spawn(drain, stages, node, self.stop)

        def use_share(share: int) -> None:
            """This node's part of `delivery.max_per_destination` among
            the live nodes (`mxg.ops.cluster.share_of`), applied to the
            engine's connections from now on."""
            self.destination_share = share
            with contextlib.suppress(EngineStopped):
                stages.ctx.engine.set_max_per_destination(share)

        heartbeat = Heartbeat(stages, on_share=use_share, on_drain=on_drain)
        heartbeat.join(key.key_id)
        self.heartbeat = heartbeat
        return heartbeat

    async def _start(self, stages: Stages) -> None:
        """Policy cache, warnings, the resolver's DNSSEC verdict, recovery."""
        cfg, store = self.cfg, stages.ctx.store
        if self.sts is not None:
            self.sts.load([(Policy(**p), exp) for p, exp in store.load_sts()])
            self.sts.save = store.save_sts
        if cfg.delivery.default_level is not None:
            event(
                log,
                "delivery.default_level is deprecated: use [classes.normal] level",
                logging.WARNING,
                normal_level=cfg.class_policy("normal").level,
            )
        if (warning := no_link_warning(cfg)) is not None:
            event(log, warning, logging.WARNING)
        validating, verdict = await probe_dnssec(cfg.dns)
        event(log, f"DNSSEC: {verdict}", logging.INFO if validating else logging.WARNING)
        if store.node is not None:
            await recover_node(stages.ctx, store.node)
        await recover(stages.ctx, stages.intake, stages.outcomes, stages.notices, stages.finisher)
        _tune_gc()

    async def _event_loop(self, engine: Engine, stages: Stages) -> None:
        fd = engine.fileno()
        while True:
            await anyio.wait_readable(fd)
            batch = decode_events(engine.drain())
            if batch:
                with survives_a_full_store():
                    await stages.handle(batch)
            flush_logs()


async def _stop_stages(engine: Engine, stages: Stages, key: SigningKey) -> None:
    """The stages' last writes, then their connections closed."""
    try:
        await _last_writes(engine, stages, key)
    finally:
        if stages.acks is not None:
            stages.acks.close()
        if stages.beside is not None:
            stages.beside.close()
        stages.ctx.store.close()


async def _last_writes(engine: Engine, stages: Stages, key: SigningKey) -> None:
    """What a stopping relay still writes to the store: the events of the
    grace period, and the final checkpoint. A store that cannot take them
    (a PostgreSQL outage) is one line, and the stop goes on: every
    acknowledged message is in the spool, and the next start settles it
    with the store (recovery, rule 10); its checkpointer signs the tail."""
    try:
        # Messages accepted during the grace period are indexed now;
        # results that came in are recorded.
        stages.ctx.tg = None
        await stages.handle(decode_events(engine.drain()))
        # Rule 11b: signed when the relay stops. Every node does (not only
        # the housekeeper, whose lock a short run may never have taken): a
        # stopping node signs the tail its own last records joined; with
        # the cluster's one key a second signature is harmless.
        sign_checkpoint(stages.ctx.store, key)
    except Exception as e:
        if not is_outage(e):
            raise
        event(
            log,
            "store unreachable at shutdown: acknowledged messages stay in the spool"
            " and are settled at the next start; no final audit checkpoint",
            logging.WARNING,
            error=" ".join(str(e).split()) or type(e).__name__,
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
