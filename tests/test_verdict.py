"""Whether a domain can get a level before any delivery (mxg.verdict), with
an injected resolver and MTA-STS lookup."""

from __future__ import annotations

import tomllib

import anyio
import pytest

from mxg.config import Config
from mxg.dns import Host, Policy, ResolveError, Route
from mxg.verdict import UNMET_MEMORY_S, Feasibility

DANE = {"usage": 3, "selector": 1, "mtype": 1, "data": "ab" * 32}
PKIX_TA = {"usage": 1, "selector": 1, "mtype": 1, "data": "ab" * 32}

ROUTES = {
    "dane.test": Route("dane.test", [Host("mx.dane.test", ["127.0.0.1"], True, (DANE,))]),
    "pkixta.test": Route("pkixta.test", [Host("mx.pkixta.test", ["127.0.0.1"], True, (PKIX_TA,))]),
    "signed.test": Route(
        "signed.test", [Host("mx.signed.test", ["127.0.0.1"], True)], mx_secure=True
    ),
    "plain.test": Route("plain.test", [Host("mx.plain.test", ["127.0.0.1"])]),
    "sts.test": Route("sts.test", [Host("mx.sts.test", ["127.0.0.1"])]),
}


class FakeResolver:
    async def route(self, domain: str) -> Route:
        if domain not in ROUTES:
            raise ResolveError(domain, "NXDOMAIN", permanent=True)
        return ROUTES[domain]

    def cached(self, domain: str) -> Route | None:
        return ROUTES.get(domain)


async def sts_policy(domain: str) -> Policy | None:
    if domain == "sts.test":
        return Policy("sts.test", "1", "enforce", ("mx.sts.test",), 86400)
    return None


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def feasibility(toml: str = "", clock: Clock | None = None) -> Feasibility:
    cfg = Config.model_validate(tomllib.loads(toml))
    return Feasibility(cfg, FakeResolver(), sts_policy, clock or Clock())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("domain", "blocked"),
    [
        ("dane.test", False),
        ("signed.test", False),  # dnssec-pkix decides on the connection
        ("sts.test", False),
        ("plain.test", True),
        ("pkixta.test", True),  # usages 0/1 are unusable for DANE (RFC 7672 §3.1.3)
        ("nxdomain.test", False),  # delivery bounces it with its own reason
    ],
)
def test_qualified_needs_a_usable_method(domain: str, blocked: bool) -> None:
    why = anyio.run(feasibility().blocker, domain, "qualified")
    assert (why is not None) == blocked
    if blocked:
        assert f"no allowed method can authenticate the mail servers of {domain}" in str(why)


def test_only_allowed_methods_count_and_pins_are_left_to_the_connection() -> None:
    f = feasibility('[delivery]\nqualified_methods = ["dane-ee", "dane-ta"]\n')
    assert anyio.run(f.blocker, "signed.test", "qualified") is not None
    assert anyio.run(f.blocker, "sts.test", "qualified") is not None
    pinned = feasibility(
        '[[policy]]\ndomain = "plain.test"\nmethods = ["pinned"]\npins = ["spki-sha256:'
        + "00" * 32
        + '"]\n'
    )
    assert anyio.run(pinned.blocker, "plain.test", "qualified") is None


def test_a_recent_unmet_delivery_blocks_that_level_and_above_for_a_while() -> None:
    clock = Clock()
    f = feasibility(clock=clock)
    assert anyio.run(f.blocker, "plain.test", "encrypted") is None
    f.note_unmet("plain.test", "encrypted", "starttls-not-supported")
    why = anyio.run(f.blocker, "plain.test", "encrypted")
    assert why is not None
    assert "starttls-not-supported" in why
    assert anyio.run(f.blocker, "plain.test", "opportunistic") is None
    clock.now += UNMET_MEMORY_S + 1
    assert anyio.run(f.blocker, "plain.test", "encrypted") is None


def test_a_delivery_at_the_level_clears_the_memory() -> None:
    f = feasibility()
    f.note_unmet("dane.test", "encrypted", "TLS handshake")
    f.note_met("dane.test", "qualified")
    assert anyio.run(f.blocker, "dane.test", "encrypted") is None
