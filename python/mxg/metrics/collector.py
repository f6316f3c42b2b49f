"""The Prometheus families of a running relay, made when ``/metrics`` is
scraped: from the pipeline's counts (`mxg.metrics.counts`), the engine's
counters (``Engine.stats``), the queue index (indexed queries,
`mxg.store.depth`), the DNS and MTA-STS caches and the dispatcher.

Every metric is listed with its labels in docs/operations.md
("Monitoring"); docs/grafana-mxg.json charts them. The collector runs on
the event loop, where everything it reads is changed, so it needs no lock;
it reads the store through the relay's own connection, between two
batches of events.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from mxg import __version__
from mxg.deliverylog import event, log
from mxg.metrics.counts import Counts
from mxg.store import Store
from mxg.store.postgres import STORE_ERRORS
from mxg.vocab import RiskClass

# How often a failing queue query is logged at most (seconds).
_LOG_EVERY = 300.0

# The engine's counters (Engine.stats) with one number each: family,
# metric name, key in the stats, help text.
_ENGINE_FAMILIES: tuple[
    tuple[type[CounterMetricFamily | GaugeMetricFamily], str, str, str], ...
] = (
    (
        CounterMetricFamily,
        "mxg_inbound_sessions",
        "inbound_sessions",
        "Inbound SMTP sessions greeted",
    ),
    (
        GaugeMetricFamily,
        "mxg_inbound_sessions_open",
        "inbound_sessions_open",
        "Inbound SMTP sessions open now",
    ),
    (
        CounterMetricFamily,
        "mxg_outbound_connections_opened",
        "outbound_connections_opened",
        "Outbound connections opened (connected, greeted, at the required level)",
    ),
    (
        CounterMetricFamily,
        "mxg_outbound_connections_reused",
        "outbound_connections_reused",
        "Delivery jobs that took an idle outbound connection",
    ),
    (
        GaugeMetricFamily,
        "mxg_outbound_connections_idle",
        "outbound_connections_idle",
        "Outbound connections kept open for reuse now",
    ),
)


@dataclass
class Sources:
    """What the collector reads; each part may be absent."""

    counts: Counts
    store: Store
    # Engine.stats: the data plane's counters by name.
    engine_stats: Callable[[], dict[str, int]]
    # Hits and misses of the route (DNS) cache and the MTA-STS cache.
    dns_cache: Callable[[], tuple[int, int]] | None = None
    sts_cache: Callable[[], tuple[int, int]] | None = None
    # Delivery jobs running and waiting for room under max_jobs.
    jobs: Callable[[], tuple[int, int]] | None = None
    # Results waiting in memory for space in the store (a full disk).
    unstored: Callable[[], int] | None = None


class RelayCollector(Collector):
    def __init__(self, sources: Sources, clock: Callable[[], float] = time.time) -> None:
        self._src = sources
        self._clock = clock
        self._started = clock()
        # Operator decisions are counted from the events table as they
        # appear, from the relay's start on (a counter starts at zero).
        self._last_event = sources.store.last_event_id()
        self._decisions: dict[tuple[str, str], int] = {}
        self._logged_failure = -_LOG_EVERY

    def collect(self) -> Iterator[Metric]:
        yield from self._process()
        yield from self._messages()
        yield from self._failures()
        yield from self._engine()
        yield from self._caches()
        yield from self._queue()

    def _process(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("mxg_info", "mxg's version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield GaugeMetricFamily(
            "mxg_start_time_seconds", "When the relay started (Unix time)", self._started
        )

    def _messages(self) -> Iterator[Metric]:
        counts = self._src.counts
        received = CounterMetricFamily(
            "mxg_messages_received", "Messages accepted and indexed, by class", labels=["class"]
        )
        by_class = {str(c): 0 for c in RiskClass}
        by_class.update(counts.received)
        for cls, n in by_class.items():
            received.add_metric([cls], n)
        yield received
        recipients = CounterMetricFamily(
            "mxg_recipients",
            "Recipient outcomes (sent, deferred, bounced, held), by class, the level the"
            " session reached and the method that authenticated the server",
            labels=["status", "class", "level", "method"],
        )
        for key, n in counts.recipients.items():
            recipients.add_metric(list(key), n)
        yield recipients
        latency = counts.latency
        yield HistogramMetricFamily(
            "mxg_delivery_latency_seconds",
            "Time from receipt to delivery, per delivered recipient",
            buckets=latency.cumulative(),
            sum_value=latency.sum,
        )
        decided = CounterMetricFamily(
            "mxg_decisions",
            "Operator decisions on queued messages (hold, release, delete, ...), by class",
            labels=["action", "class"],
        )
        for (action, cls), n in self._new_decisions().items():
            decided.add_metric([action, cls], n)
        yield decided
        drops = CounterMetricFamily(
            "mxg_ratchet_drops",
            "Deliveries below a partner's remembered authentication method (ratchet = warn),"
            " by the method remembered and the one achieved",
            labels=["remembered", "now"],
        )
        for (remembered, now), n in counts.ratchet_drops.items():
            drops.add_metric([remembered, now], n)
        yield drops

    def _failures(self) -> Iterator[Metric]:
        counts = self._src.counts
        for name, doc, by_reason in (
            (
                "mxg_tls_failures",
                "Connection attempts where TLS or the server's authentication failed, by reason",
                counts.tls_failures,
            ),
            (
                "mxg_connection_failures",
                "Other failed attempts (network, server refusal, DNS), by reason",
                counts.other_failures,
            ),
        ):
            family = CounterMetricFamily(name, doc, labels=["reason"])
            for reason, n in by_reason.items():
                family.add_metric([reason], n)
            yield family

    def _engine(self) -> Iterator[Metric]:
        stats = self._src.engine_stats()
        for family, name, key, doc in _ENGINE_FAMILIES:
            yield family(name, doc, stats.get(key, 0))
        refused = CounterMetricFamily(
            "mxg_inbound_refusals",
            "Inbound refusals of clients, commands and messages, by reason",
            labels=["reason"],
        )
        for key, n in sorted(stats.items()):
            if key.startswith("inbound_refused:"):
                refused.add_metric([key.partition(":")[2]], n)
        yield refused
        if self._src.jobs is not None:
            running, waiting = self._src.jobs()
            yield _gauge(
                "mxg_delivery_jobs",
                "Delivery jobs running and waiting",
                "state",
                {"running": running, "waiting": waiting},
            )

    def _caches(self) -> Iterator[Metric]:
        lookups = CounterMetricFamily(
            "mxg_cache_lookups",
            "Route (DNS) and MTA-STS policy lookups, answered from the cache or not",
            labels=["cache", "result"],
        )
        for name, read in (("dns", self._src.dns_cache), ("mta-sts", self._src.sts_cache)):
            if read is not None:
                hits, misses = read()
                lookups.add_metric([name, "hit"], hits)
                lookups.add_metric([name, "miss"], misses)
        yield lookups

    def _queue(self) -> Iterator[Metric]:
        if self._src.unstored is not None:
            yield GaugeMetricFamily(
                "mxg_results_unstored",
                "Delivery results waiting in memory for space in the queue index",
                self._src.unstored(),
            )
        try:
            depth = self._src.store.depth()
        except STORE_ERRORS as e:
            self._log_failure(e)
            return
        yield _gauge(
            "mxg_queue_messages", "Messages in the queue, by state", "state", depth.messages
        )
        yield _gauge(
            "mxg_queue_recipients",
            "Recipients waiting for delivery, by status",
            "status",
            depth.recipients,
        )
        now = self._clock()
        ages = {
            state: max(0.0, now - received_ms / 1000) if received_ms is not None else 0.0
            for state, received_ms in depth.oldest_ms.items()
        }
        yield _gauge(
            "mxg_queue_oldest_message_age_seconds",
            "Age of the oldest message in the queue, by state (0 when there is none)",
            "state",
            ages,
        )

    def _new_decisions(self) -> dict[tuple[str, str], int]:
        try:
            new = self._src.store.decisions_after(self._last_event)
        except STORE_ERRORS as e:
            self._log_failure(e)
            return self._decisions
        for d in new:
            key = (d.action, d.risk_class)
            self._decisions[key] = self._decisions.get(key, 0) + 1
            self._last_event = d.event_id
        return self._decisions

    def _log_failure(self, e: Exception) -> None:
        now = time.monotonic()
        if now - self._logged_failure >= _LOG_EVERY:
            self._logged_failure = now
            event(log, "metrics: the queue index cannot be read", logging.WARNING, error=str(e))


def _gauge(name: str, doc: str, label: str, values: dict[str, int] | dict[str, float]) -> Metric:
    """A gauge with one series per value of one label."""
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, v in values.items():
        family.add_metric([key], v)
    return family


def registry(sources: Sources) -> CollectorRegistry:
    """A registry of the relay's own, holding only its collector (the
    client library's global one would add the process of whoever imports
    it, and cannot hold two relays in one test process)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(RelayCollector(sources))
    return reg
