"""What the relay hands its web surface: the sources of the metrics (the
pipeline's counts, the store, the engine's counters, the caches, the jobs
in flight) and the checks behind ``/ready``, all read when asked."""

from __future__ import annotations

import functools

from mxg import _core
from mxg.config import Config
from mxg.dns import DnsResolver, Resolver, StsCache
from mxg.metrics.collector import Sources, registry
from mxg.pipeline.context import Context
from mxg.pipeline.dispatch import Dispatcher
from mxg.web.ready import DnsCheck, Readiness
from mxg.web.surface import Surface


def surface_of(
    cfg: Config,
    engine: _core.Engine,
    ctx: Context,
    dispatch: Dispatcher,
    *,
    dns: DnsResolver,
    sts: StsCache | None,
) -> Surface:
    """What the web surface and the metrics endpoint see."""
    resolver: Resolver = ctx.resolver
    sources = Sources(
        counts=ctx.counts,
        store=ctx.store,
        engine_stats=engine.stats,
        dns_cache=(
            (lambda: (resolver.cache_hits, resolver.cache_misses))
            if isinstance(resolver, DnsResolver)
            else None
        ),
        sts_cache=(lambda: (sts.hits, sts.misses)) if sts is not None else None,
        jobs=lambda: (len(dispatch.jobs), dispatch.waiting),
        unstored=lambda: len(ctx.unstored),
    )
    readiness = Readiness(
        cfg.spool_dir,
        ctx.store,
        functools.partial(store_backlog, ctx),
        DnsCheck(dns.raw, cfg.dns.dnssec_probe),
    )
    return Surface(ctx, readiness, registry(sources))


def store_backlog(ctx: Context) -> str | None:
    """What waits for space in the store (a full disk), for /ready."""
    if ctx.unstored:
        return f"full: {len(ctx.unstored)} delivery results wait in memory for space"
    if ctx.rescan_wanted:
        return "full: received messages wait in the spool to be indexed"
    return None
