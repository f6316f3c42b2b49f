"""MTA-STS policy parsing and MX matching (RFC 8461 §3.1, §3.2, §4.1)."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import dns.resolver
import httpx
import pytest

from mxg.dns import Policy, PolicyError, StsCache, mx_matches, parse_policy, parse_txt
from mxg.store import Store

GOOD = (
    "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n"
    "max_age: 604800\r\n"
)


def test_parses_a_policy_with_several_mx_patterns() -> None:
    p = parse_policy("example.com", "20240101", GOOD)
    assert (p.mode, p.max_age) == ("enforce", 604800)
    assert p.mx == ("mail.example.com", "*.example.net")
    assert p.matches("MAIL.example.com.")
    assert p.matches("mx1.example.net")
    assert not p.matches("a.b.example.net")  # the wildcard covers one label only
    assert not p.matches("example.net")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", "version"),
        ("version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n", "mode"),
        ("version: STSv1\nmode: enforce\nmax_age: 1\n", "no mx"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 99999999999\n", "range"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: soon\n", "number"),
        ("version: STSv1\nmode enforce\n", "key: value"),
    ],
)
def test_rejects_malformed_policies(text: str, why: str) -> None:
    with pytest.raises(PolicyError, match="sts-policy-invalid") as e:
        parse_policy("example.com", "1", text)
    assert why in str(e.value)


def test_txt_record() -> None:
    assert parse_txt(["v=STSv1; id=20190429T010101;"]) == "20190429T010101"
    with pytest.raises(PolicyError):
        parse_txt(["v=STSv1; id=1", "v=STSv1; id=2"])
    with pytest.raises(PolicyError):
        parse_txt(["v=STSv1; id=not-alnum!"])


def test_mx_patterns() -> None:
    assert mx_matches("*.example.com", "mx.example.com")
    assert not mx_matches("*.example.com", "example.com")
    assert mx_matches("mx.example.com.", "mx.example.com")


class _Txt:
    def __init__(self, text: str) -> None:
        self.strings = [text.encode()]


class _FakeResolver:
    """Answers the _mta-sts TXT query; every other lookup fails."""

    def __init__(self, txt: str) -> None:
        self.txt = txt

    async def resolve(self, name: str, rdtype: str, search: bool = False) -> list[_Txt]:
        if rdtype == "TXT" and name.startswith("_mta-sts."):
            return [_Txt(self.txt)]
        raise dns.resolver.NXDOMAIN


class _NoNetwork(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("policy host blocked")


def test_a_stored_policy_survives_a_restart_and_an_unreachable_policy_host(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "q.db")
    policy = parse_policy("example.com", "7", GOOD)
    store.save_sts(policy, time.time() + 3600)
    cache = StsCache(
        _FakeResolver("v=STSv1; id=7"),  # type: ignore[arg-type]
        httpx.AsyncClient(transport=_NoNetwork()),
    )
    cache.load([(Policy(**p), exp) for p, exp in store.load_sts()])
    got = anyio.run(cache.policy, "example.com")
    assert got == policy  # same id: no fetch needed, enforce still applies
    # A new id must be fetched; with the host unreachable the unexpired
    # policy stays in force rather than none.
    cache._resolver = _FakeResolver("v=STSv1; id=8")  # type: ignore[assignment]
    cache._checked.clear()
    assert anyio.run(cache.policy, "example.com") == policy


class _Addr:
    address = "192.0.2.1"


class _ResolverWithHost(_FakeResolver):
    """Also answers the policy host's A query (the address is never
    contacted: the HTTP transport below is the double)."""

    async def resolve(self, name: str, rdtype: str, search: bool = False) -> list[_Txt]:
        if rdtype == "A" and name.startswith("mta-sts."):
            return [_Addr()]  # type: ignore[list-item]
        return await super().resolve(name, rdtype, search)


def test_policies_are_refreshed_before_they_expire() -> None:
    """RFC 8461 §10.2: a policy with less than half its max_age left is
    fetched again even though its id did not change, renewing max_age; a
    failed refresh keeps the cached policy in force."""
    now = [1_000_000.0]
    fetches: list[str] = []

    def serve(request: httpx.Request) -> httpx.Response:
        fetches.append(request.headers["host"])
        return httpx.Response(200, text=GOOD, headers={"content-type": "text/plain"})

    cache = StsCache(
        _ResolverWithHost("v=STSv1; id=7"),  # type: ignore[arg-type]
        httpx.AsyncClient(transport=httpx.MockTransport(serve)),
        clock=lambda: now[0],
    )
    saved: list[float] = []
    cache.save = lambda _policy, expires: saved.append(expires)
    first = anyio.run(cache.policy, "example.com")
    assert first is not None and fetches == ["mta-sts.example.com"]
    assert cache.refresh_due() == []
    now[0] += first.max_age * 0.6  # 40 % of max_age left
    assert cache.refresh_due() == ["example.com"]
    assert anyio.run(cache.refresh, "example.com") == first
    assert len(fetches) == 2 and saved[-1] == now[0] + first.max_age
    assert cache.refresh_due() == []
    # The policy host fails: the cached policy stays, still due.
    cache._client = httpx.AsyncClient(transport=_NoNetwork())
    now[0] += first.max_age * 0.6
    assert anyio.run(cache.refresh, "example.com") == first
    assert cache.refresh_due() == ["example.com"]
    # Expired policies are not "due": they are fetched on use.
    now[0] += first.max_age
    assert cache.refresh_due() == []


def test_the_https_client_is_made_at_the_first_fetch_and_only_once() -> None:
    # httpx costs a third of a second of CPU to import and set up: a relay
    # that never meets an MTA-STS domain never pays it.
    made: list[httpx.AsyncClient] = []

    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=GOOD, headers={"content-type": "text/plain"})

    def factory() -> httpx.AsyncClient:
        made.append(httpx.AsyncClient(transport=httpx.MockTransport(serve)))
        return made[-1]

    cache = StsCache(_ResolverWithHost("v=STSv1; id=7"), factory)  # type: ignore[arg-type]
    assert made == []
    assert anyio.run(cache.policy, "example.com") is not None
    assert anyio.run(cache.policy, "example.org") is not None
    assert len(made) == 1
