"""Finding the receiving hosts of a domain (RFC 5321 §5.1, RFC 7505).

MX records in preference order, equal preferences shuffled; the domain's
own A/AAAA records when it has no MX (implicit MX); a null MX ("MX 0 .")
as a permanent failure. dnspython follows CNAMEs. The resolver sits behind
:class:`Resolver` so tests can inject a double; the real one talks to the
configured or the system's resolver.

DNSSEC (ARCHITECTURE.md rule 3): every answer is classified *secure* (the
resolver set the AD bit and the operator declared it trusted,
``dns.trust_ad``), *insecure* (anything else that resolved) or failed
(SERVFAIL - which is how a validating resolver reports bogus data -,
timeouts: a transient error, never read as insecure).
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import dns.asyncresolver
import dns.exception
import dns.flags
import dns.name
import dns.rdatatype
import dns.resolver

from mxg.config import DnsConfig
from mxg.dns.route import Host, ResolveError, Route


@dataclass
class _Lookup:
    """A lookup under way, and its answer once it has one."""

    done: anyio.Event = field(default_factory=anyio.Event)
    result: Route | ResolveError | None = None


class _Transient(Exception):
    pass


# Routes are kept at most this long whatever the TTLs say, and negative
# answers without an SOA this long (RFC 2308 §5 suggests 1-3 hours max).
MAX_CACHE_TTL = 3600.0
DEFAULT_NEGATIVE_TTL = 60.0
# Routes are kept at least this long, even from answers with TTL 0. A
# caching resolver hands out TTL 0 in the last second of what it holds
# (Unbound does for a NODATA answer, e.g. the AAAA of an IPv4-only MX), and
# a route not cached at all is looked up again for every delivery to the
# domain: at a thousand messages a second, one lookup after another for
# as long as that second lasts (29 in a row on the bench). One second is
# far below any TTL a domain relies on to move its mail.
MIN_CACHE_TTL = 1.0


class _MinTtl:
    """The smallest TTL of the answers a route was built from."""

    def __init__(self) -> None:
        self.value = MAX_CACHE_TTL

    def saw(self, ttl: float) -> None:
        self.value = min(self.value, max(ttl, 0.0))


def _negative_ttl(exc: dns.exception.DNSException) -> float:
    """RFC 2308 §5: a negative answer lives for min(SOA TTL, SOA MINIMUM)."""
    try:
        response = exc.response()  # type: ignore[attr-defined]
    except Exception:
        responses = getattr(exc, "kwargs", {}).get("responses") or {}
        response = next(iter(responses.values()), None)
    for rrset in getattr(response, "authority", []) or []:
        if rrset.rdtype == dns.rdatatype.SOA:
            return float(min(rrset.ttl, rrset[0].minimum))
    return DEFAULT_NEGATIVE_TTL


class DnsResolver:
    """The real resolver (dnspython, async). Whole routes are cached for the
    smallest TTL of the answers they were built from, permanent failures
    for their negative TTL; transient failures are not cached."""

    def __init__(
        self,
        cfg: DnsConfig,
        *,
        prefer: str = "ipv4",
        max_addresses: int = 10,
        port: int = 25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``port``: the port mxg delivers to; TLSA records are looked up
        for it (RFC 6698 §3: ``_<port>._tcp``, ``_25._tcp`` in production,
        RFC 7672 §2.2)."""
        if cfg.nameservers:
            r = dns.asyncresolver.Resolver(configure=False)
            r.nameservers = list(cfg.nameservers)
            r.port = cfg.port
        else:
            r = dns.asyncresolver.Resolver()
        r.lifetime = cfg.timeout
        r.timeout = min(cfg.timeout, 3.0)
        self._trust_ad = cfg.trust_ad
        if cfg.trust_ad:
            # RFC 6840 §5.7: AD in the query asks for AD in the answer; DO
            # (RFC 3225) as well, so validators that want it answer alike.
            r.use_edns(0, dns.flags.DO, 1232)
            r.flags = dns.flags.RD | dns.flags.AD
        self._r = r
        self._prefer = prefer
        self._max_addresses = max_addresses
        self._tlsa_prefix = f"_{port}._tcp"
        self._clock = clock
        self._cache_size = cfg.cache_size
        self._cache: OrderedDict[str, tuple[float, Route | ResolveError]] = OrderedDict()
        # Lookups under way: a burst of mail to one domain waits for one
        # lookup instead of sending the same queries hundreds of times.
        self._pending: dict[str, _Lookup] = {}
        # Routes answered from the cache (or from a lookup under way) and
        # looked up, for /metrics.
        self.cache_hits = 0
        self.cache_misses = 0

    @property
    def raw(self) -> dns.asyncresolver.Resolver:
        """The configured dnspython resolver, for other lookups (MTA-STS TXT)."""
        return self._r

    def cached(self, domain: str) -> Route | None:
        """The cached route of a domain, if it is still fresh."""
        hit = self._cache.get(domain)
        if hit is None or hit[0] <= self._clock() or isinstance(hit[1], ResolveError):
            return None
        self.cache_hits += 1
        return hit[1].reshuffled()

    def _remember(self, domain: str, ttl: float, result: Route | ResolveError) -> None:
        if self._cache_size <= 0:
            return
        self._cache[domain] = (self._clock() + max(ttl, MIN_CACHE_TTL), result)
        self._cache.move_to_end(domain)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _secure(self, response: object) -> bool:
        flags = getattr(response, "flags", 0)
        return self._trust_ad and bool(flags & dns.flags.AD)

    async def _query(
        self, name: str, rdtype: str, ttl: _MinTtl, canonical: list[str] | None = None
    ) -> tuple[Sequence[object] | None, bool]:
        """Records (None for 'no such data') and whether the answer was
        DNSSEC-secure; raises for NXDOMAIN (as dns.resolver.NXDOMAIN) and
        _Transient for everything else, SERVFAIL from validation included.
        ``canonical`` receives the name at the end of any CNAME chain."""
        try:
            answer = await self._r.resolve(name, rdtype, search=False)
        except dns.resolver.NoAnswer as e:
            ttl.saw(_negative_ttl(e))
            try:
                response = e.response()  # type: ignore[no-untyped-call]
            except Exception:
                response = None
            return None, self._secure(response)
        except dns.resolver.NXDOMAIN as e:
            ttl.saw(_negative_ttl(e))
            raise
        except (
            dns.resolver.NoNameservers,
            dns.exception.Timeout,
            dns.resolver.YXDOMAIN,
            dns.exception.DNSException,
        ) as e:
            if isinstance(e, dns.resolver.NoNameservers) and "SERVFAIL" in str(e):
                # How a validating resolver reports DNSSEC-bogus data.
                raise _Transient(
                    f"{rdtype} lookup for {name} failed: the resolver answered SERVFAIL "
                    "(DNSSEC validation failure or server failure)"
                ) from e
            raise _Transient(f"{rdtype} lookup for {name} failed: {e}") from e
        if answer.rrset is not None:
            ttl.saw(answer.rrset.ttl)
        if canonical is not None:
            canonical.append(answer.canonical_name.to_text(omit_final_dot=True).lower())
        return list(answer), self._secure(answer.response)

    async def _addresses(
        self, name: str, ttl: _MinTtl, canonical: list[str] | None = None
    ) -> tuple[list[str], bool]:
        """Addresses in preference order, and whether all answers were
        secure; ``canonical`` receives the CNAME-expanded name."""
        results: dict[str, list[str]] = {"A": [], "AAAA": []}
        errors: list[str] = []
        secure: dict[str, bool] = {}

        async def one(rdtype: str) -> None:
            try:
                recs, secure[rdtype] = await self._query(name, rdtype, ttl, canonical)
            except dns.resolver.NXDOMAIN:
                secure[rdtype] = False
                return
            except _Transient as e:
                secure[rdtype] = False
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
        return addrs, all(secure.values())

    async def route(self, domain: str) -> Route:
        domain = domain.rstrip(".").lower()
        while (pending := self._pending.get(domain)) is not None:
            # A lookup for this domain is under way: its answer is ours too,
            # cache or no cache (dns.cache_size = 0 made a burst of mail to
            # one domain wait for one lookup after another).
            await pending.done.wait()
            if isinstance(pending.result, ResolveError):
                self.cache_hits += 1
                raise pending.result
            if pending.result is not None:
                self.cache_hits += 1
                return pending.result.reshuffled()
            # That lookup was cancelled: look again.
        hit = self._cache.get(domain)
        if hit is not None and hit[0] > self._clock():
            self.cache_hits += 1
            if isinstance(hit[1], ResolveError):
                raise hit[1]
            return hit[1].reshuffled()
        self.cache_misses += 1
        lookup = self._pending[domain] = _Lookup()
        ttl = _MinTtl()
        try:
            route = await self._resolve(domain, ttl)
            lookup.result = route
        except ResolveError as e:
            lookup.result = e
            # Transient failures are shared by later callers for a moment too.
            self._remember(domain, ttl.value if e.permanent else 1.0, e)
            raise
        finally:
            del self._pending[domain]
            lookup.done.set()
        self._remember(domain, ttl.value, route)
        return route

    # Long on purpose: the MX, address and TLSA lookups (RFC 5321
    # §5.1, RFC 7672 §2.2) in the order in which they depend on each other.
    async def _resolve(self, domain: str, ttl: _MinTtl) -> Route:  # noqa: C901
        try:
            mx, mx_secure = await self._query(domain, "MX", ttl)
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
            return await self._implicit(domain, ttl)
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
        ordered: list[tuple[int, str]] = []
        for pref in sorted(by_pref):
            names = by_pref[pref]
            random.shuffle(names)  # RFC 5321 §5.1: spread load among equals
            ordered += [(pref, n) for n in names if n not in {o[1] for o in ordered}]
        hosts: list[Host] = []
        prefs: list[int] = []
        errors: list[str] = []
        budget = self._max_addresses
        for pref, name in ordered:
            if budget <= 0:
                break
            canonical: list[str] = []
            try:
                addrs, secure = await self._addresses(name, ttl, canonical)
            except _Transient as e:
                errors.append(str(e))
                continue
            if addrs:
                expanded = canonical[0] if canonical and canonical[0] != name else ""
                hosts.append(Host(name, addrs[:budget], secure, canonical=expanded))
                prefs.append(pref)
                budget -= len(addrs[:budget])
        if not hosts:
            if errors:
                raise ResolveError(domain, "; ".join(errors), permanent=False)
            raise ResolveError(
                domain, f"no MX host of {domain} has an address", permanent=False, enhanced="4.4.4"
            )
        return await self._with_tlsa(
            Route(domain, hosts, prefs=tuple(prefs), mx_secure=mx_secure), ttl
        )

    async def _implicit(self, domain: str, ttl: _MinTtl) -> Route:
        """RFC 5321 §5.1: no MX, so the domain itself is the host."""
        canonical: list[str] = []
        try:
            addrs, secure = await self._addresses(domain, ttl, canonical)
        except _Transient as e:
            raise ResolveError(domain, str(e), permanent=False) from None
        if not addrs:
            raise ResolveError(
                domain,
                f"domain {domain} has no MX and no address records",
                permanent=True,
                enhanced="5.1.2",
            )
        expanded = canonical[0] if canonical and canonical[0] != domain else ""
        hosts = [Host(domain, addrs[: self._max_addresses], secure, canonical=expanded)]
        return await self._with_tlsa(Route(domain, hosts, implicit=True, mx_secure=secure), ttl)

    async def _with_tlsa(self, route: Route, ttl: _MinTtl) -> Route:
        """TLSA records for hosts reached through a secure MX answer with
        secure addresses (RFC 7672 §2.2). A failed TLSA lookup makes that
        host unusable for now - never "no DANE" (ARCHITECTURE.md rule 2)."""
        if not route.mx_secure:
            return route
        hosts: list[Host] = []
        prefs: list[int] = []
        failures: list[str] = []
        for i, host in enumerate(route.hosts):
            if not host.secure:
                hosts.append(host)
                prefs += route.prefs[i : i + 1]
                continue
            try:
                tlsa, base = await self._tlsa(host, ttl)
            except _Transient as e:
                failures.append(f"{e} (the MX host {host.name} is unusable for now, RFC 7672 2.2)")
                continue
            names = tuple(dict.fromkeys([base, host.name])) if tlsa else ()
            hosts.append(replace(host, tlsa=tlsa, tlsa_names=names))
            prefs += route.prefs[i : i + 1]
        if not hosts:
            raise ResolveError(route.domain, "; ".join(failures), permanent=False, enhanced="4.7.5")
        return replace(route, hosts=hosts, prefs=tuple(prefs))

    async def _tlsa(self, host: Host, ttl: _MinTtl) -> tuple[tuple[dict[str, int | str], ...], str]:
        """The host's secure TLSA records and their base domain. RFC 7672
        §2.2.3: for a CNAME'd host, the fully expanded name first, then the
        original name. Only secure answers count; a failed lookup raises."""
        for base in filter(None, (host.canonical, host.name)):
            try:
                records, secure = await self._query(f"{self._tlsa_prefix}.{base}", "TLSA", ttl)
            except dns.resolver.NXDOMAIN:
                records, secure = None, False
            if records and secure:
                return tuple(_tlsa_record(r) for r in records), base
        return (), host.name


def _tlsa_record(r: Any) -> dict[str, int | str]:
    return {"usage": r.usage, "selector": r.selector, "mtype": r.mtype, "data": r.cert.hex()}


async def probe_dnssec(cfg: DnsConfig) -> tuple[bool, str]:
    """Whether the configured resolver validates: the SOA of
    ``dns.dnssec_probe`` (a name known to be signed) must come back with
    the AD bit. Returns the verdict and a sentence for the start-up log."""
    if not cfg.trust_ad:
        return False, (
            "DNSSEC answers are not trusted (dns.trust_ad = false): "
            "DANE and dnssec-pkix are unavailable"
        )
    resolver = DnsResolver(cfg)
    try:
        answer = await resolver._r.resolve(cfg.dnssec_probe, "SOA", search=False)
    except dns.exception.DNSException as e:
        return False, (
            f"DNSSEC probe of {cfg.dnssec_probe} failed ({e}): DANE and dnssec-pkix are unavailable"
        )
    if resolver._secure(answer.response):
        return True, (
            f"the resolver validates DNSSEC (AD on {cfg.dnssec_probe}): DANE and "
            "dnssec-pkix are available"
        )
    return False, (
        f"the resolver does not validate DNSSEC (no AD on {cfg.dnssec_probe}): "
        "DANE and dnssec-pkix are unavailable"
    )
