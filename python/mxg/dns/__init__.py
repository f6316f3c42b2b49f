"""DNS for delivery: a domain's receiving hosts with their DNSSEC status
and TLSA records, and its MTA-STS policy (RFC 8461).

MTA-STS (RFC 8461): discovery, fetching, strict parsing and caching of
a domain's policy, and matching MX hosts against it.

- Discovery (§3.1): TXT ``_mta-sts.<domain>`` with ``v=STSv1; id=...``.
- Fetch (§3.3): ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` over
  HTTPS with PKIX validation, no redirects, status 200, ``text/plain``,
  at most 64 KiB, bounded time.
- Cache (§5.1): policies are kept for ``max_age`` and refetched when the
  TXT id changes; a fetch failure keeps using an unexpired cached policy.
- ``enforce``: only MX hosts matching a pattern, with a PKIX-valid
  certificate for the MX name (the data plane checks that); ``testing``
  never blocks (§5); ``none``: as if there were no policy.

One concern a module: `route` (what a domain resolves to, and the
`Resolver` interface), `resolver` (the real resolver: MX, addresses,
TLSA, the route cache and the coalescing of concurrent lookups, the
DNSSEC probe), `sts_policy` (an MTA-STS policy and its strict parsing),
`sts_fetch` (its fetch over HTTPS) and `sts_cache` (policies by domain,
honouring max_age and id changes). Import them from ``mxg.dns``.
"""

from __future__ import annotations

from mxg.dns.resolver import DnsResolver, probe_dnssec
from mxg.dns.route import Host, ResolveError, Resolver, Route
from mxg.dns.sts_cache import REFRESH_INTERVAL, StsCache
from mxg.dns.sts_fetch import fetch_policy, http_client
from mxg.dns.sts_policy import (
    MAX_MAX_AGE,
    Policy,
    PolicyError,
    mx_matches,
    parse_policy,
    parse_txt,
)

__all__ = [
    "MAX_MAX_AGE",
    "REFRESH_INTERVAL",
    "DnsResolver",
    "Host",
    "Policy",
    "PolicyError",
    "ResolveError",
    "Resolver",
    "Route",
    "StsCache",
    "fetch_policy",
    "http_client",
    "mx_matches",
    "parse_policy",
    "parse_txt",
    "probe_dnssec",
]
