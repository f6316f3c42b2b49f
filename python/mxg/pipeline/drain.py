"""Draining a cluster node (`mxg cluster drain`, docs/cluster.md): the
node takes no new mail (new connections and MAIL get `421 4.3.2`), starts
no new delivery, lets those in flight finish for up to
`[cluster] drain_timeout`, hands its unfinished messages to the cluster
(unowned: the next live node's heartbeat claims them), marks itself
stopped and ends the relay, which exits 0.

SIGTERM is not a drain: the relay stops and keeps its messages; its lease
then runs out and the other nodes take them over."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from mxg.deliverylog import event, log
from mxg.store.cluster import STOPPED

if TYPE_CHECKING:
    from mxg.pipeline.controller import Stages

# How often the drain looks whether the deliveries in flight are done.
POLL = 0.2


async def drain(stages: Stages, node: str, stop: Callable[[], None]) -> None:
    ctx = stages.ctx
    timeout = ctx.cfg.cluster.drain_timeout
    ctx.draining = True
    ctx.engine.set_intake("closed", "node draining, try another")
    ctx.fenced = True
    event(
        log,
        "draining: no new mail or deliveries, waiting for those in flight",
        node=node,
        in_flight=len(stages.dispatch.jobs),
        timeout=timeout,
    )
    with anyio.move_on_after(timeout):
        while stages.dispatch.jobs:
            await anyio.sleep(POLL)
        # Their results stored before the messages are handed over: a
        # result still on its way would let another node send them again.
        await stages.results_stored()
    unfinished = len(stages.dispatch.jobs)
    released = ctx.store.release_owned(node)
    ctx.store.set_node_state(node, STOPPED)
    event(
        log,
        "drained: unfinished messages handed to the cluster",
        logging.WARNING if unfinished else logging.INFO,
        node=node,
        released=released,
        still_in_flight=unfinished,
    )
    stop()
