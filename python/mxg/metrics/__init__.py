"""Metrics of the relay for Prometheus (``/metrics``).

`counts` holds what the pipeline counts as it goes (plain integers,
bumped where the event is logged); `collector` turns those, the engine's
counters, the queue index and the caches into Prometheus families when
scraped, in a registry of its own (`registry`), never the client
library's global one. docs/operations.md ("Monitoring") lists every
metric.
"""

from __future__ import annotations

from mxg.metrics.counts import LATENCY_BUCKETS, Counts, Histogram

__all__ = ["LATENCY_BUCKETS", "Counts", "Histogram"]
