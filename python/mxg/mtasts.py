"""MTA-STS (RFC 8461): discovery, fetching, strict parsing and caching of
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
"""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import anyio
import dns.asyncresolver
import dns.exception
import dns.resolver

from mxg.vocab import Reason

if TYPE_CHECKING:
    import httpx

# RFC 8461 §3.3: "policy bodies are limited to 64 KiB".
MAX_POLICY_BYTES = 64 * 1024
# §3.2: max_age is at most 31557600 seconds (one year).
MAX_MAX_AGE = 31_557_600
# Time for the whole fetch; §3.3 suggests a timeout without fixing one.
FETCH_TIMEOUT = 30.0

Mode = Literal["enforce", "testing", "none"]


class PolicyError(Exception):
    """A policy could not be fetched or parsed: `reason` is the TLS-RPT
    result type (RFC 8460 §4.3), and the text starts with it."""

    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True)
class Policy:
    domain: str
    id: str
    mode: Mode
    mx: tuple[str, ...]
    max_age: int

    def matches(self, host: str) -> bool:
        return any(mx_matches(p, host) for p in self.mx)


def mx_matches(pattern: str, host: str) -> bool:
    """§4.1: exact, or ``*.`` matching exactly one leftmost label."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return host == pattern


_TXT = re.compile(r"^v=STSv1;(?:\s*[A-Za-z0-9]+=[^;]*;?)*\s*$")


def parse_txt(records: list[str]) -> str:
    """The policy id of a ``_mta-sts`` TXT record set (§3.1)."""
    sts = [r for r in records if r.startswith("v=STSv1")]
    if len(sts) != 1:
        raise PolicyError(
            Reason.STS_POLICY_INVALID, f"expected one v=STSv1 TXT record, found {len(sts)}"
        )
    fields = dict(part.strip().split("=", 1) for part in sts[0].split(";") if "=" in part)
    policy_id = fields.get("id", "")
    if not re.fullmatch(r"[A-Za-z0-9]{1,32}", policy_id):
        raise PolicyError(
            Reason.STS_POLICY_INVALID, f"TXT id {policy_id!r} is not 1-32 alphanumerics"
        )
    return policy_id


def parse_policy(domain: str, policy_id: str, text: str) -> Policy:
    """Strict parsing of the policy body (§3.2)."""
    values: dict[str, list[str]] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise PolicyError(Reason.STS_POLICY_INVALID, f"line {line[:60]!r} is not 'key: value'")
        values.setdefault(key.strip(), []).append(value.strip())
    if values.get("version") != ["STSv1"]:
        raise PolicyError(Reason.STS_POLICY_INVALID, "version must be STSv1")
    mode = (values.get("mode") or [""])[0]
    if mode not in ("enforce", "testing", "none") or len(values.get("mode", [])) != 1:
        raise PolicyError(Reason.STS_POLICY_INVALID, f"mode {mode!r}")
    try:
        max_age = int((values.get("max_age") or [""])[0])
    except ValueError:
        raise PolicyError(Reason.STS_POLICY_INVALID, "max_age is not a number") from None
    if not 0 <= max_age <= MAX_MAX_AGE:
        raise PolicyError(Reason.STS_POLICY_INVALID, f"max_age {max_age} out of range")
    mx = tuple(values.get("mx", []))
    if mode != "none" and not mx:
        raise PolicyError(Reason.STS_POLICY_INVALID, "no mx patterns")
    return Policy(domain, policy_id, mode, mx, max_age)  # type: ignore[arg-type]


def http_client(ca_file: Path | None) -> httpx.AsyncClient:
    """HTTPS with PKIX (system roots plus the operator's CA), no redirects.
    httpx is imported here: it and what it pulls in cost a third of a
    second at every start, and most relays fetch a policy much later."""
    import httpx  # noqa: PLC0415  (see above)

    ctx = ssl.create_default_context()
    if ca_file is not None:
        ctx.load_verify_locations(cafile=str(ca_file))
    return httpx.AsyncClient(
        verify=ctx,
        follow_redirects=False,
        timeout=FETCH_TIMEOUT,
        headers={"User-Agent": "mxg MTA-STS"},
    )


async def fetch_policy(
    domain: str, policy_id: str, client: httpx.AsyncClient, addresses: list[str]
) -> Policy:
    """GETs the policy from ``mta-sts.<domain>`` at the given addresses
    (resolved through mxg's own resolver, not the system's), with SNI,
    Host and certificate name checks for the policy host name."""
    host = f"mta-sts.{domain}"
    url = f"https://{host}/.well-known/mta-sts.txt"
    if not addresses:
        raise PolicyError(Reason.STS_POLICY_FETCH_ERROR, f"{host} has no address")
    last: PolicyError | None = None
    for address in addresses:
        literal = f"[{address}]" if ":" in address else address
        try:
            body = await _get(client, f"https://{literal}/.well-known/mta-sts.txt", host, url)
        except PolicyError as e:
            last = e
            if e.reason != Reason.STS_POLICY_FETCH_ERROR:
                raise
            continue
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyError(Reason.STS_POLICY_INVALID, f"{url} is not UTF-8") from None
        return parse_policy(domain, policy_id, text)
    assert last is not None
    raise last


async def _get(client: httpx.AsyncClient, target: str, host: str, url: str) -> bytes:
    import httpx  # noqa: PLC0415  (imported by http_client already: a lookup)

    try:
        async with client.stream(
            "GET", target, headers={"Host": host}, extensions={"sni_hostname": host}
        ) as resp:
            if resp.status_code != 200:
                raise PolicyError(
                    Reason.STS_POLICY_FETCH_ERROR,
                    f"{url} answered HTTP {resp.status_code} (redirects are not followed)",
                )
            ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "text/plain":
                raise PolicyError(Reason.STS_POLICY_INVALID, f"{url} has content type {ctype!r}")
            body = b""
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) > MAX_POLICY_BYTES:
                    raise PolicyError(Reason.STS_POLICY_INVALID, f"{url} is larger than 64 KiB")
            return body
    except httpx.ConnectError as e:
        # RFC 8460 §4.3.2.2: a certificate that fails PKIX validation is
        # sts-webpki-invalid; any other failure to connect a fetch error.
        reason = (
            Reason.STS_WEBPKI_INVALID if _certificate_failure(e) else Reason.STS_POLICY_FETCH_ERROR
        )
        raise PolicyError(reason, f"{url}: {e}") from None
    except httpx.HTTPError as e:
        raise PolicyError(Reason.STS_POLICY_FETCH_ERROR, f"{url}: {e}") from None


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
            return True, None
        return (True, hit[1]) if hit[0] > now else (False, None)

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


def _certificate_failure(e: BaseException) -> bool:
    """Whether a connection failed on the server's certificate (the SSL
    error httpx wraps), as opposed to the network."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
