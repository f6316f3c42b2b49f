"""What a reload (SIGHUP) changes in a running relay, and what only a
restart can.

Most of the configuration is read where it is used (classes, rules,
domain policies, queue and DSN settings, ``max_jobs``), or handed to the
engine again (limits, client networks, connection pools, inflow,
verdicts, the STARTTLS certificate), so a reload applies it to the next
message, session or transaction. The keys in `STARTED` were used once, at
start: the sockets bound, the data directory locked and handed over, the
user switched to, the event loop, the resolver and MTA-STS client, the
outbound client with its connection pools. A reload keeps their started
values and names them as needing a restart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mxg.config.sections import DeliveryConfig

if TYPE_CHECKING:
    from mxg.config.model import Config

DELIVERY_PER_JOB = ("default_level", "tls_profile", "qualified_methods", "max_jobs")

# Section → keys used only at start; None: the whole section.
STARTED: dict[str, tuple[str, ...] | None] = {
    # hostname: also the outbound client's EHLO name, built at start.
    "server": ("listen", "hostname", "shutdown_grace"),
    "data": None,
    "run": None,
    # The node's name and lease timing are the store's view of this
    # process (its lock and its row in `nodes`); the drain timeout is read
    # when a drain starts.
    "cluster": ("node", "heartbeat", "lease"),
    "dns": None,
    # The web surface and the metrics endpoint: sockets bound and
    # certificates read before the privilege drop, served as they were.
    # Tokens, certificate roles and the session lifetime are read for
    # every request, so a reload revokes a token at once.
    "web": ("listen", "tls_cert", "tls_key", "client_ca", "proxy_hops", "root_path"),
    "metrics": None,
    # The outbound client, with its timeouts and connection pools, is
    # built at start; only the keys of `DELIVERY_PER_JOB` are read anew
    # for every job.
    "delivery": tuple(k for k in DeliveryConfig.model_fields if k not in DELIVERY_PER_JOB),
}


def _keys(cfg: Config, section: str) -> tuple[str, ...]:
    return STARTED[section] or tuple(type(getattr(cfg, section)).model_fields)


def restart_keys(running: Config, new: Config) -> list[str]:
    """The keys `new` changes that only a restart applies, as
    ``section.key``."""
    out = []
    for section in STARTED:
        old_s, new_s = getattr(running, section), getattr(new, section)
        out += [
            f"{section}.{k}"
            for k in _keys(running, section)
            if getattr(old_s, k) != getattr(new_s, k)
        ]
    return out


def keep_started(new: Config, running: Config) -> Config:
    """`new` with the keys of `STARTED` as the running relay has them: the
    configuration a reload applies."""
    update = {}
    for section, keys in STARTED.items():
        if keys is None:
            update[section] = getattr(running, section)
        else:
            started = {k: getattr(getattr(running, section), k) for k in keys}
            update[section] = getattr(new, section).model_copy(update=started)
    return new.model_copy(update=update)
