"""The resolver's coalescing of concurrent lookups and its route cache
(mxg.dns.resolver), with the DNS queries replaced by a counting double."""

from __future__ import annotations

import anyio
import pytest

from mxg.config import DnsConfig
from mxg.dns import DnsResolver, Host, ResolveError, Route
from mxg.dns.resolver import MIN_CACHE_TTL, _MinTtl


class CountingResolver(DnsResolver):
    """Answers every lookup after a while and counts how many it made;
    its answers carry `answer_ttl`."""

    def __init__(
        self, fail: bool = False, *, cache_size: int = 0, answer_ttl: float = 30.0
    ) -> None:
        self.now = 0.0
        super().__init__(
            DnsConfig(nameservers=["127.0.0.1"], cache_size=cache_size), clock=lambda: self.now
        )
        self.lookups = 0
        self.fail = fail
        self.answer_ttl = answer_ttl

    async def _resolve(self, domain: str, ttl: _MinTtl) -> Route:
        self.lookups += 1
        ttl.saw(self.answer_ttl)
        await anyio.sleep(0.05)
        if self.fail:
            raise ResolveError(domain, f"{domain}: NXDOMAIN", permanent=True)
        return Route(domain, [Host(f"mx.{domain}", ["127.0.0.2"])])


@pytest.mark.parametrize("fail", [False, True])
def test_concurrent_lookups_for_one_domain_share_one_answer_without_a_cache(
    fail: bool,
) -> None:
    resolver = CountingResolver(fail)
    answers: list[Route | ResolveError] = []

    async def one() -> None:
        try:
            answers.append(await resolver.route("burst.test"))
        except ResolveError as e:
            answers.append(e)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(one)

    anyio.run(main)
    assert resolver.lookups == 1
    assert len(answers) == 50
    kinds = {type(a) for a in answers}
    assert kinds == ({ResolveError} if fail else {Route})
    # Without a cache, the next burst looks up afresh.
    anyio.run(main)
    assert resolver.lookups == 2


def test_a_route_from_answers_with_ttl_0_is_kept_for_a_second() -> None:
    """A caching resolver answers TTL 0 in the last second of what it
    holds; without a floor every delivery in that second looked the
    domain up again, one lookup after another."""
    resolver = CountingResolver(cache_size=10, answer_ttl=0.0)

    async def route() -> None:
        await resolver.route("ttl0.test")

    anyio.run(route)
    anyio.run(route)
    assert resolver.lookups == 1
    resolver.now += MIN_CACHE_TTL
    anyio.run(route)
    assert resolver.lookups == 2
