"""Operator configuration: one TOML file loaded into pydantic models.

Every problem is reported at once, each as ``FILE: key.path: reason``, and
mxg does not start half-configured (ARCHITECTURE.md rule 12). Values may be
overridden from the environment as ``MXG_<SECTION>__<KEY>=<TOML value>``,
e.g. ``MXG_SERVER__LISTEN='["0.0.0.0:25"]'`` or ``MXG_RUN__BACKEND=trio``.
Durations are seconds or a number with a unit: ``90s``, ``5m``, ``4h``, ``5d``.

The package, one concern a module: `base` (the section base, durations,
levels), `sections` (one model per file section), `classes` (risk
classes and the rules that assign them), `model` (the whole `Config`),
`engine` (what the Rust data plane gets of it), `load` (file,
environment, error report) and `example` (``mxg config example``).
Import `Config`, `load_config` and the sections from ``mxg.config``.
"""

from __future__ import annotations

from mxg.config.load import ENV_PREFIX, load_config
from mxg.config.model import Config
from mxg.config.sections import (
    DataConfig,
    DeliveryConfig,
    DnsConfig,
    DomainPolicy,
    DsnConfig,
    LimitsConfig,
    LogConfig,
    MetricsConfig,
    QueueConfig,
    RetentionConfig,
    RunConfig,
    ServerConfig,
    WebConfig,
)

__all__ = [
    "ENV_PREFIX",
    "Config",
    "DataConfig",
    "DeliveryConfig",
    "DnsConfig",
    "DomainPolicy",
    "DsnConfig",
    "LimitsConfig",
    "LogConfig",
    "MetricsConfig",
    "QueueConfig",
    "RetentionConfig",
    "RunConfig",
    "ServerConfig",
    "WebConfig",
    "load_config",
]
