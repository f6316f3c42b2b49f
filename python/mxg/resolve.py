"""Finding the receiving hosts of a domain (RFC 5321 §5.1, RFC 7505).

MX records in preference order, equal preferences shuffled; the domain's
own A/AAAA records when it has no MX (implicit MX); a null MX ("MX 0 .")
as a permanent failure. dnspython follows CNAMEs and its cache honours
TTLs. The resolver sits behind :class:`Resolver` so tests can inject a
double; the real one talks to the configured or the system's resolver.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from mxg.config import DnsConfig


@dataclass(frozen=True)
class Host:
    name: str
    addresses: list[str]


@dataclass(frozen=True)
class Route:
    """Where to deliver a domain's mail: hosts in the order to try."""

    domain: str
    hosts: list[Host]
    implicit: bool = False


@dataclass
class ResolveError(Exception):
    """The domain cannot be delivered to, now (transient) or ever."""

    domain: str
    text: str
    permanent: bool
    enhanced: str = field(default="")

    def __post_init__(self) -> None:
        if not self.enhanced:
            self.enhanced = "5.1.2" if self.permanent else "4.4.3"
        super().__init__(self.text)


class Resolver(Protocol):
    async def route(self, domain: str) -> Route: ...


class _Transient(Exception):
    pass


class DnsResolver:
    """The real resolver (dnspython, async, with a TTL-honouring cache)."""

    def __init__(self, cfg: DnsConfig, *, prefer: str = "ipv4", max_addresses: int = 10) -> None:
        if cfg.nameservers:
            r = dns.asyncresolver.Resolver(configure=False)
            r.nameservers = list(cfg.nameservers)
            r.port = cfg.port
        else:
            r = dns.asyncresolver.Resolver()
        r.lifetime = cfg.timeout
        r.timeout = min(cfg.timeout, 3.0)
        if cfg.cache_size:
            r.cache = dns.resolver.LRUCache(cfg.cache_size)
        self._r = r
        self._prefer = prefer
        self._max_addresses = max_addresses

    async def _query(self, name: str, rdtype: str) -> Sequence[object] | None:
        """Records, None for 'no such data' (NODATA), raises for NXDOMAIN
        (as dns.resolver.NXDOMAIN) and _Transient for everything else."""
        try:
            answer = await self._r.resolve(name, rdtype, search=False)
        except dns.resolver.NoAnswer:
            return None
        except dns.resolver.NXDOMAIN:
            raise
        except (
            dns.resolver.NoNameservers,
            dns.exception.Timeout,
            dns.resolver.YXDOMAIN,
            dns.exception.DNSException,
        ) as e:
            raise _Transient(f"{rdtype} lookup for {name} failed: {e}") from e
        return list(answer)

    async def _addresses(self, name: str) -> list[str]:
        results: dict[str, list[str]] = {"A": [], "AAAA": []}
        errors: list[str] = []

        async def one(rdtype: str) -> None:
            try:
                recs = await self._query(name, rdtype)
            except dns.resolver.NXDOMAIN:
                return
            except _Transient as e:
                errors.append(str(e))
                return
            results[rdtype] = [r.address for r in recs or []]  # type: ignore[attr-defined]

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "A")
            tg.start_soon(one, "AAAA")
        order = ("A", "AAAA") if self._prefer == "ipv4" else ("AAAA", "A")
        addrs = results[order[0]] + results[order[1]]
        if not addrs and errors:
            raise _Transient("; ".join(errors))
        return addrs

    async def route(self, domain: str) -> Route:
        domain = domain.rstrip(".").lower()
        try:
            mx = await self._query(domain, "MX")
        except dns.resolver.NXDOMAIN:
            raise ResolveError(
                domain,
                f"domain {domain} does not exist (NXDOMAIN)",
                permanent=True,
                enhanced="5.1.2",
            ) from None
        except _Transient as e:
            raise ResolveError(domain, str(e), permanent=False) from None
        if mx is None:
            return await self._implicit(domain)
        records = [
            (r.preference, r.exchange.to_text(omit_final_dot=True).lower())  # type: ignore[attr-defined]
            for r in mx
        ]
        # RFC 7505 §3: a single MX with root target means "no mail here".
        if any(name in ("", ".") for _, name in records):
            raise ResolveError(
                domain,
                f"domain {domain} does not accept mail (null MX, RFC 7505)",
                permanent=True,
                enhanced="5.1.10",
            )
        by_pref: dict[int, list[str]] = {}
        for pref, name in records:
            by_pref.setdefault(pref, []).append(name)
        ordered: list[str] = []
        for pref in sorted(by_pref):
            names = by_pref[pref]
            random.shuffle(names)  # RFC 5321 §5.1: spread load among equals
            ordered += [n for n in names if n not in ordered]
        hosts: list[Host] = []
        errors: list[str] = []
        budget = self._max_addresses
        for name in ordered:
            if budget <= 0:
                break
            try:
                addrs = await self._addresses(name)
            except _Transient as e:
                errors.append(str(e))
                continue
            if addrs:
                hosts.append(Host(name, addrs[:budget]))
                budget -= len(addrs[:budget])
        if not hosts:
            if errors:
                raise ResolveError(domain, "; ".join(errors), permanent=False)
            raise ResolveError(
                domain, f"no MX host of {domain} has an address", permanent=False, enhanced="4.4.4"
            )
        return Route(domain, hosts)

    async def _implicit(self, domain: str) -> Route:
        """RFC 5321 §5.1: no MX, so the domain itself is the host."""
        try:
            addrs = await self._addresses(domain)
        except _Transient as e:
            raise ResolveError(domain, str(e), permanent=False) from None
        if not addrs:
            raise ResolveError(
                domain,
                f"domain {domain} has no MX and no address records",
                permanent=True,
                enhanced="5.1.2",
            )
        return Route(domain, [Host(domain, addrs[: self._max_addresses])], implicit=True)
