"""Whether a recipient domain can get a transport level, decided before any
delivery: for synchronous verdicts at the end of DATA (``on_unmet =
"reject"``, issue 4) the answer must come within a deadline, so it uses
what DNS and policy say (cached where possible) and what recent delivery
attempts proved, never a connection of its own.

The answer is one-sided on purpose: a reason is returned only when the
level is known to be out of reach. Anything uncertain (a DNS timeout, a
domain never tried) is accepted and decided by the delivery itself.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import orjson

from mxg import _core
from mxg.config import Config
from mxg.dns import Policy, ResolveError, Resolver
from mxg.vocab import Level, Method

# How long a delivery's "level not met" is taken as the domain's state.
# Long enough to refuse the next messages at once, short enough that a
# domain fixing its DNS or TLS is not refused for long.
UNMET_MEMORY_S = 15 * 60
DANE_METHODS = (Method.DANE_EE, Method.DANE_TA)


class Feasibility:
    def __init__(
        self,
        cfg: Config,
        resolver: Resolver,
        sts_policy: Callable[[str], Awaitable[Policy | None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cfg = cfg
        self._resolver = resolver
        self._sts_policy = sts_policy
        self._clock = clock
        # domain → (when, level that failed, why)
        self._unmet: dict[str, tuple[float, str, str]] = {}

    def use_config(self, cfg: Config) -> None:
        """A reloaded configuration (SIGHUP)."""
        self._cfg = cfg

    def note_unmet(self, domain: str, level: str, why: str) -> None:
        self._unmet[domain] = (self._clock(), level, why)

    def note_met(self, domain: str, level: str) -> None:
        seen = self._unmet.get(domain)
        if seen is not None and Level(level) >= seen[1]:
            del self._unmet[domain]

    async def blocker(self, domain: str, level: str) -> str | None:
        """Why `domain` cannot be reached at `level`, or None when it may."""
        if Level(level) <= Level.OPPORTUNISTIC:
            return None
        seen = self._unmet.get(domain)
        if seen is not None:
            when, failed, why = seen
            if self._clock() - when > UNMET_MEMORY_S:
                del self._unmet[domain]
            elif Level(level) >= failed:
                return f"the last delivery attempt could not reach level {failed}: {why}"
        if level != "qualified":
            return None
        return await self._qualified_blocker(domain)

    async def _qualified_blocker(self, domain: str) -> str | None:
        dom = self._cfg.policy_for(domain)
        methods = set(dom.methods if dom and dom.methods else self._cfg.delivery.qualified_methods)
        if dom is not None and (dom.pins or dom.ca_file is not None):
            return None  # a pin is checked on the connection
        try:
            route = await self._resolver.route(domain)
        except ResolveError:
            return None  # unroutable is handled (and explained) by delivery
        # RFC 7672 §3.1: whether a record is usable is mxg-dane's rule, the
        # same the engine applies on the connection.
        if methods & set(DANE_METHODS) and any(
            h.tlsa and _core.tlsa_usable(orjson.dumps(list(h.tlsa)).decode()) for h in route.hosts
        ):
            return None
        if route.mx_secure and "dnssec-pkix" in methods:
            return None
        if "mta-sts" in methods:
            policy = await self._sts_policy(domain)
            if policy is not None and policy.mode == "enforce":
                return None
        return (
            f"no allowed method can authenticate the mail servers of {domain}"
            f" (methods {', '.join(sorted(methods))}: no DNSSEC-secure TLSA records,"
            " no DNSSEC-secure MX answer for dnssec-pkix, no MTA-STS enforce policy)"
        )
