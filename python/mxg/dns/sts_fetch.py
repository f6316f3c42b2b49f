"""Fetching an MTA-STS policy (RFC 8461 §3.3): HTTPS to
``mta-sts.<domain>`` with PKIX validation, no redirects, status 200,
``text/plain``, at most 64 KiB, bounded time; a failure named by its
TLS-RPT result type (RFC 8460 §4.3)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from mxg.dns.sts_policy import Policy, PolicyError, parse_policy
from mxg.vocab import Reason

if TYPE_CHECKING:
    import httpx

# RFC 8461 §3.3: "policy bodies are limited to 64 KiB".
MAX_POLICY_BYTES = 64 * 1024
# Time for the whole fetch; §3.3 suggests a timeout without fixing one.
FETCH_TIMEOUT = 30.0


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


def _certificate_failure(e: BaseException) -> bool:
    """Whether a connection failed on the server's certificate (the SSL
    error httpx wraps), as opposed to the network."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
