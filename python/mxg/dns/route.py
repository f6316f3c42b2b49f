"""What a domain resolves to: a `Route` (its receiving hosts in the
order to try, each with its addresses, DNSSEC status and TLSA records),
or a `ResolveError`; and `Resolver`, the small interface the pipeline
resolves through, so tests can inject a double."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Protocol


@dataclass(frozen=True)
class Host:
    name: str
    addresses: list[str]
    # Every address answer (A, AAAA, also "no such data") was DNSSEC-secure.
    secure: bool = False
    # DNSSEC-secure TLSA records at _<port>._tcp.<name> (RFC 7672 §2.2), as
    # {"usage", "selector", "mtype", "data"}; the data plane uses them.
    tlsa: tuple[dict[str, int | str], ...] = ()
    # The name after following CNAMEs, when the address answer went
    # through a CNAME chain (RFC 7672 §2.2.3).
    canonical: str = ""
    # The names a DANE-TA certificate may be issued to: the TLSA base
    # domain first, then the MX host name (RFC 7672 §3.2.2); also the SNI.
    tlsa_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    """Where to deliver a domain's mail: hosts in the order to try."""

    domain: str
    hosts: list[Host]
    implicit: bool = False
    # MX preference of each host, so a cached route can be shuffled anew
    # among equal preferences for every delivery (RFC 5321 §5.1).
    prefs: tuple[int, ...] = ()
    # The MX answer (or for an implicit MX the address answers) was secure.
    mx_secure: bool = False

    def reshuffled(self) -> Route:
        if len(set(self.prefs)) == len(self.prefs):
            return self
        hosts: list[Host] = []
        for pref in sorted(set(self.prefs)):
            group = [h for h, p in zip(self.hosts, self.prefs, strict=True) if p == pref]
            random.shuffle(group)
            hosts += group
        return replace(self, hosts=hosts, prefs=tuple(sorted(self.prefs)))


@dataclass
class ResolveError(Exception):
    """The domain cannot be delivered to, now (transient) or ever."""

    domain: str
    text: str
    permanent: bool
    enhanced: str = field(default="")
    # The typed reason (mxg.vocab.Reason) the recipients get.
    reason: str = field(default="dns-failure")

    def __post_init__(self) -> None:
        if not self.enhanced:
            self.enhanced = "5.1.2" if self.permanent else "4.4.3"
        super().__init__(self.text)


class Resolver(Protocol):
    async def route(self, domain: str) -> Route: ...

    def cached(self, domain: str) -> Route | None:
        """A fresh cached route, so a delivery can start without awaiting."""
        ...
