"""What the routes of the web surface see of the running relay.

One `Surface` per relay, made when it starts serving: the pipeline's
shared context (configuration, engine, store, counts; what an admin API
reads and acts on), the readiness checks and the metrics registry. Every
route module takes it and returns its routes (`mxg.web.app`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.registry import CollectorRegistry

from mxg.web.ready import Readiness

if TYPE_CHECKING:
    from mxg.pipeline.context import Context


@dataclass
class Surface:
    ctx: Context
    readiness: Readiness
    registry: CollectorRegistry
