"""What the routes of the web surface see of the running relay.

One `Surface` per relay, made when it starts serving: the pipeline's
shared context (configuration, engine, store, counts; what the admin API
reads and acts on), the readiness checks, the metrics registry and the
count of failed authentications. Every route module takes it and returns
its routes (`mxg.web.app`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client.registry import CollectorRegistry

from mxg.web.ready import Readiness
from mxg.web.throttle import Throttle

if TYPE_CHECKING:
    from mxg.pipeline.context import Context


@dataclass
class Surface:
    ctx: Context
    readiness: Readiness
    registry: CollectorRegistry
    # Failed authentications per client address (`mxg.web.auth`), one
    # count for the admin API and the operator pages together.
    throttle: Throttle = field(default_factory=Throttle)
