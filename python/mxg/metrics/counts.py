"""What the pipeline counts as it goes, for ``/metrics``.

Counting sits on the hot path (a few increments per message), so it is
kept to what a log line already costs a fraction of: plain dictionaries
and integers, bumped where the event is logged, with no lock (everything
that counts runs on the event loop, and so does the scrape that reads
them) and no query. The Prometheus families are made from these numbers
only when ``/metrics`` is scraped (`mxg.metrics.collector`).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Final

from mxg.vocab import TRANSPORT_SECURITY_REASONS

# Received to delivered, in seconds: most mail goes within a second, a
# deferral adds the retry schedule (1, 5, 15, 30 minutes, hours), and the
# queue lifetime ends at 5 days.
LATENCY_BUCKETS: Final = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    4 * 3600.0,
    86400.0,
    5 * 86400.0,
)


class Histogram:
    """Observations in fixed buckets (upper bounds, Prometheus ``le``):
    one bisection and one increment per observation."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        # One count per bucket, and one for +Inf.
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count of observations <= le)`` for each bound and +Inf."""
        out = []
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return out


class Counts:
    """The counters of the control plane, keyed by their labels."""

    def __init__(self) -> None:
        # Messages indexed at intake, by class.
        self.received: dict[str, int] = {}
        # Recipient outcomes, by (status, class, level, method).
        self.recipients: dict[tuple[str, str, str, str], int] = {}
        # Failed connection attempts and unroutable destinations, by typed
        # reason: the transport could not be made safe enough (TLS and
        # authentication), or another failure (network, refusal, DNS).
        self.tls_failures: dict[str, int] = {}
        self.other_failures: dict[str, int] = {}
        self.latency = Histogram(LATENCY_BUCKETS)
        # `ratchet = "warn"`: deliveries below a partner's remembered
        # method, by (remembered, achieved) method; a handful of pairs.
        self.ratchet_drops: dict[tuple[str, str], int] = {}

    def message_received(self, risk_class: str) -> None:
        self.received[risk_class] = self.received.get(risk_class, 0) + 1

    def recipient(self, status: str, risk_class: str, level: str, method: str) -> None:
        key = (status, risk_class, level, method)
        self.recipients[key] = self.recipients.get(key, 0) + 1

    def ratchet_drop(self, remembered: str, now: str) -> None:
        key = (remembered, now)
        self.ratchet_drops[key] = self.ratchet_drops.get(key, 0) + 1

    def delivered_after(self, seconds: float) -> None:
        self.latency.observe(seconds)

    def failure(self, reason: str | None) -> None:
        """A failed attempt at a destination, by its typed reason."""
        why = reason or "unknown"
        into = self.tls_failures if why in TRANSPORT_SECURITY_REASONS else self.other_failures
        into[why] = into.get(why, 0) + 1
