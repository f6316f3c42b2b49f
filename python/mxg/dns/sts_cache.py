"""MTA-STS policies by domain (RFC 8461 §5.1): discovery through the TXT
record, kept for ``max_age`` and refetched when the TXT id changes, a
fetch failure keeping an unexpired cached policy, and the refresh before
expiry (§10.2). ``enforce``: only MX hosts matching a pattern, with a
PKIX-valid certificate for the MX name (the data plane checks that);
``testing`` never blocks (§5); ``none``: as if there were no policy."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import dns.asyncresolver
import dns.exception
import dns.resolver

from mxg.dns.sts_fetch import fetch_policy
from mxg.dns.sts_policy import Policy, PolicyError, parse_txt

if TYPE_CHECKING:
    import httpx

# How long a TXT check (or the lack of a policy) is trusted before the
# next look: a policy update shows up within this time (§5.1 leaves it open).
TXT_RECHECK = 300.0
# RFC 8461 §10.2: refresh a cached policy before it expires, so a policy
# host that is down (or blocked) when the policy would lapse does not
# silently turn enforce into nothing. A policy is refreshed once less than
# this share of its max_age is left, and the check runs this often.
REFRESH_WHEN_LEFT = 0.5
REFRESH_INTERVAL = 3600.0


class StsCache:
    """Policies by domain, honouring max_age and id changes (§5.1)."""

    def __init__(
        self,
        resolver: dns.asyncresolver.Resolver,
        client: httpx.AsyncClient | Callable[[], httpx.AsyncClient],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`client` or a function that makes it at the first fetch."""
        self._resolver = resolver
        self._client = client
        self._clock = clock
        self._policies: dict[str, tuple[float, Policy]] = {}
        # Persistence (the store): a restart must not forget an enforce
        # policy, or an attacker who blocks the policy host wins (§5.1).
        self.save: Callable[[Policy, float], None] | None = None
        self._checked: dict[str, float] = {}
        self._lock: dict[str, anyio.Lock] = {}
        # Policies known without a lookup, and lookups, for /metrics.
        self.hits = 0
        self.misses = 0

    def _http_client(self) -> httpx.AsyncClient:
        if callable(self._client):
            self._client = self._client()
        return self._client

    def load(self, policies: list[tuple[Policy, float]]) -> None:
        """Policies kept from an earlier run, with their expiry times."""
        now = self._clock()
        for policy, expires in policies:
            if expires > now:
                self._policies[policy.domain] = (expires, policy)

    async def _addresses(self, name: str) -> list[str]:
        out: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                answer = await self._resolver.resolve(name, rdtype, search=False)
            except dns.exception.DNSException:
                continue
            out += [r.address for r in answer]
        return out

    def cached(self, domain: str) -> tuple[bool, Policy | None]:
        """(known, policy) without I/O: known when the domain was looked at
        within TXT_RECHECK and any policy is unexpired."""
        now = self._clock()
        if self._checked.get(domain, 0.0) <= now:
            return False, None
        hit = self._policies.get(domain)
        if hit is None:
            self.hits += 1
            return True, None
        if hit[0] > now:
            self.hits += 1
            return True, hit[1]
        return False, None

    def refresh_due(self) -> list[str]:
        """Domains whose cached policy has less than REFRESH_WHEN_LEFT of
        its max_age left (and has not expired: an expired policy is fetched
        on use like any unknown one)."""
        now = self._clock()
        return [
            domain
            for domain, (expires, policy) in self._policies.items()
            if now < expires < now + policy.max_age * REFRESH_WHEN_LEFT
        ]

    async def refresh(self, domain: str) -> Policy | None:
        """Fetches the domain's policy even when the id is unchanged, to
        renew its max_age (§10.2); failures keep the cached policy."""
        try:
            return await self._policy(domain, force=True)
        except PolicyError:
            hit = self._policies.get(domain)
            return hit[1] if hit else None

    async def policy(self, domain: str) -> Policy | None:
        try:
            return await self._policy(domain)
        finally:
            # Also after a failure: a broken policy host is not asked again
            # for every message.
            self._checked[domain] = self._clock() + TXT_RECHECK

    async def _policy(self, domain: str, force: bool = False) -> Policy | None:
        """The domain's current policy, None when it has none. Raises
        PolicyError only when there is neither a usable policy nor a cached
        one (the caller treats that as "no policy", §3.3: a failed fetch
        must not block delivery)."""
        lock = self._lock.setdefault(domain, anyio.Lock())
        async with lock:
            if not force:
                # Many deliveries to a new domain wait here for the first
                # lookup; they take its answer instead of asking again.
                known, hit = self.cached(domain)
                if known:
                    return hit
                self.misses += 1
            cached = self._policies.get(domain)
            now = self._clock()
            try:
                answer = await self._resolver.resolve(f"_mta-sts.{domain}", "TXT", search=False)
                txt = ["".join(s.decode() for s in r.strings) for r in answer]
                policy_id = parse_txt(txt)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                policy_id = None
            except dns.exception.DNSException:
                policy_id = cached[1].id if cached else None
            if policy_id is None:
                # No TXT: a cached unexpired policy still applies (§5.1).
                return cached[1] if cached and cached[0] > now else None
            if cached and cached[0] > now and cached[1].id == policy_id and not force:
                return cached[1]
            try:
                addresses = await self._addresses(f"mta-sts.{domain}")
                policy = await fetch_policy(domain, policy_id, self._http_client(), addresses)
            except PolicyError:
                if cached and cached[0] > now:
                    return cached[1]
                raise
            self._policies[domain] = (now + policy.max_age, policy)
            if self.save is not None:
                self.save(policy, now + policy.max_age)
            return policy
