"""A cluster node's heartbeat (PostgreSQL store, docs/cluster.md).

Every `[cluster] heartbeat` the node renews its lease on PostgreSQL's
clock, takes over what dead nodes left, tries the housekeeper's lock,
recomputes its share of `max_per_destination` when the live nodes
changed, and looks whether an operator asked it to drain.

Fencing: a node that could not renew its lease for half a lease starts
no delivery until it renews again. Another node takes over only after a
whole lease, so a node cut off from PostgreSQL has stopped starting
deliveries for at least half a lease by then and does not race its
successor (what it had in flight may still finish: the bounded
duplicate of docs/cluster.md).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

import mxg
from mxg.deliverylog import event, log
from mxg.errors import StoreError
from mxg.ops.cluster import share_of
from mxg.pipeline.storage import survives_a_full_store
from mxg.pipeline.takeover import take_over
from mxg.store.cluster import DRAINING, RUNNING
from mxg.store.db import NodeTaken
from mxg.store.postgres import STORE_ERRORS
from mxg.store.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    from mxg.pipeline.controller import Stages


class Heartbeat:
    """One node's membership: its lease, fencing, the housekeeper's
    lock, its destination share; `beat` is one round."""

    def __init__(
        self,
        stages: Stages,
        *,
        on_share: Callable[[int], None],
        on_drain: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stages = stages
        self._ctx = stages.ctx
        node = stages.ctx.store.node
        assert node is not None, "a heartbeat needs a cluster node (PostgreSQL store)"
        self.node = node
        self._on_share = on_share
        self._on_drain = on_drain
        self._clock = clock
        self._renewed = clock()
        self.live: tuple[str, ...] = ()
        self.share: int | None = None
        self.draining = False
        self._key_id = ""

    @property
    def _lease_ms(self) -> int:
        return round(self._ctx.cfg.cluster.lease * 1000)

    def join(self, key_id: str = "") -> None:
        """Takes this node's row (running, a fresh lease) at start; the
        signing key's id is shown by `mxg cluster status`."""
        if key_id:
            self._key_id = key_id
        self._ctx.store.join(
            self.node,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=mxg.__version__,
            schema=SCHEMA_VERSION,
            lease_ms=self._lease_ms,
            key_id=self._key_id,
        )
        self._renewed = self._clock()
        self._ctx.housekeeper = False

    async def run(self) -> None:
        while True:
            await anyio.sleep(self._ctx.cfg.cluster.heartbeat)
            await self.beat()

    async def beat(self) -> None:
        ctx = self._ctx
        try:
            renewal = ctx.store.renew(self.node, self._lease_ms, len(self._stages.dispatch.jobs))
            if renewal is None:  # the row was removed: this node joins again
                self.join()
                renewal = ctx.store.renew(self.node, self._lease_ms)
        except NodeTaken:
            raise  # another relay is this node now: this one stops
        except (*STORE_ERRORS, StoreError) as e:
            self._missed(e)
            return
        self._renewed = self._clock()
        if renewal is not None and renewal.lapsed:
            event(
                log,
                "lease had run out: other nodes may have taken over this node's messages",
                logging.WARNING,
                node=self.node,
            )
        if ctx.fenced and not self.draining:
            ctx.fenced = False
            event(log, "lease renewed: deliveries start again", node=self.node)
            # The store may break again right now (PostgreSQL ending its
            # sessions): what is due then waits for the next beat or scan,
            # as in any outage, instead of ending this task (the relay).
            with survives_a_full_store():
                self._stages.dispatch.after_results([])
                self._stages.dispatch.dispatch_due()
        try:
            await self._rounds(renewal.state if renewal is not None else RUNNING)
        except (*STORE_ERRORS, StoreError) as e:
            # The lease was renewed; the rest is tried at the next beat.
            event(log, "heartbeat: store error", logging.WARNING, error=str(e))

    async def _rounds(self, state: str) -> None:
        ctx = self._ctx
        if state == DRAINING and not self.draining:
            self.draining = True
            self._on_drain()
            return
        if self.draining:
            return
        housekeeper = ctx.store.try_housekeeper()
        if housekeeper != ctx.housekeeper:
            ctx.housekeeper = housekeeper
            event(log, f"this node is {'' if housekeeper else 'no longer '}the housekeeper")
        live = tuple(ctx.store.live_nodes())
        if live != self.live:
            self.live = live
            limit = ctx.cfg.delivery.max_per_destination
            share = share_of(limit, live, self.node)
            if share != self.share:
                self.share = share
                self._on_share(share)
            event(log, "cluster nodes", nodes=",".join(live), max_per_destination=share)
            if limit < len({*live, self.node}):
                event(
                    log,
                    "delivery.max_per_destination is below the number of nodes:"
                    " each node delivers to a destination at least once at a time",
                    logging.WARNING,
                    limit=limit,
                    nodes=len({*live, self.node}),
                )
        if await take_over(ctx, self.node):
            self._stages.dispatch.dispatch_due()

    def _missed(self, e: BaseException) -> None:
        ctx = self._ctx
        silent = self._clock() - self._renewed
        if not ctx.fenced and silent >= ctx.cfg.cluster.lease / 2:
            ctx.fenced = True
            event(
                log,
                "lease not renewed for half a lease: no new deliveries until it is",
                logging.ERROR,
                node=self.node,
                seconds=round(silent, 1),
                error=" ".join(str(e).split()),
            )
