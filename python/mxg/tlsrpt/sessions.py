"""Counting TLS sessions for the reports (RFC 8460 §4.4): each delivery
job's sessions, keyed by UTC day, policy domain, the policy applied and,
for a failure, its result type and where it happened.

A session is one connection of a job to one receiving address:

- a job's results from an address that brought TLS up count one
  successful session (a connection reused for several messages counts
  once per message it carried: each was checked against its policy);
- a job's results from an address without TLS count one failed session,
  ``starttls-not-supported`` (it delivered in plaintext);
- each connection that failed (`AttemptNote`) with a reason that is a TLS
  result (`results.result_type`) counts one failed session;
- a failure before any connection (a bogus TLSA answer, an MTA-STS policy
  that cannot be used) counts one failed session without a host.

The policy applied to a host (§4.4 "policy"): its DNSSEC-secure TLSA
records (``tlsa``, DANE takes precedence, RFC 8461 §2), else the domain's
MTA-STS policy in ``enforce`` or ``testing`` (``sts``), else
``no-policy-found``. The tally is a `Counter`, merged into the store in
the batch's own transaction, one upsert per key
(`mxg.store.tlsrpt`)."""

from __future__ import annotations

import functools
import socket
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import NamedTuple

import orjson

from mxg.boundary import AttemptNote, RecipientResult
from mxg.dns import Host, Policy, Route
from mxg.tlsrpt.results import DANE_RESULTS, STS_RESULTS, result_type


class SessionKey(NamedTuple):
    """What the sessions of one row of the aggregate share (a tuple: the
    hot path makes and hashes one per job)."""

    day: str  # the UTC day, YYYY-MM-DD
    domain: str  # the policy domain: the recipient domain
    policy: str  # canonical JSON: policy-type, policy-string, mx-host
    result: str = ""  # '' for successful sessions, else the result type
    sending_ip: str = ""
    receiving_mx: str = ""
    receiving_ip: str = ""
    code: str = ""  # failure-reason-code: mxg's own reason, when mapped


Tally = Counter[SessionKey]


def utc_day(ms: int) -> str:
    return _day(ms // 86_400_000)


@functools.lru_cache(maxsize=8)
def _day(days: int) -> str:
    return datetime.fromtimestamp(days * 86400, tz=UTC).strftime("%Y-%m-%d")


def sts_strings(policy: Policy) -> list[str]:
    """The policy's lines (RFC 8461 §3.2), in the order it defines them."""
    return [
        "version: STSv1",
        f"mode: {policy.mode}",
        *(f"mx: {p}" for p in policy.mx),
        f"max_age: {policy.max_age}",
    ]


def tlsa_strings(host: Host) -> list[str]:
    """TLSA records in presentation form (RFC 6698 §2.2)."""
    return [f"{r['usage']} {r['selector']} {r['mtype']} {r['data']}" for r in host.tlsa]


# The policy JSON of recent (host, MTA-STS policy) pairs, by identity: the
# resolver's cached routes hand the same Host objects to every job until
# their TTL ends, so the hot path builds a policy's JSON once, not per
# job. The objects are kept with it, so an identity is never reused.
_POLICIES: dict[tuple[int, int], tuple[Host, Policy | None, str]] = {}
_MAX_POLICIES = 4096


def policy_of(host: Host | None, sts: Policy | None, result: str = "") -> str:
    """The policy applied to a session with `host`, as stored (JSON)."""
    if host is None or result:
        return _policy_json(host, sts, result)
    key = (id(host), id(sts))
    hit = _POLICIES.get(key)
    if hit is not None and hit[0] is host and hit[1] is sts:
        return hit[2]
    if len(_POLICIES) >= _MAX_POLICIES:
        _POLICIES.clear()
    p = _POLICIES[key] = (host, sts, _policy_json(host, sts, result))
    return p[2]


def _policy_json(host: Host | None, sts: Policy | None, result: str) -> str:
    if host is not None and host.tlsa:
        p: dict[str, object] = {
            "policy-type": "tlsa",
            "policy-string": tlsa_strings(host),
            "mx-host": [host.name],
        }
    elif result in DANE_RESULTS:
        # The TLSA records could not be had (§4.3.2.1): a DANE failure
        # without the records it failed on.
        p = {"policy-type": "tlsa"}
    elif sts is not None and sts.mode in ("enforce", "testing"):
        p = {"policy-type": "sts", "policy-string": sts_strings(sts), "mx-host": list(sts.mx)}
    elif result in STS_RESULTS:
        p = {"policy-type": "sts"}
    else:
        p = {"policy-type": "no-policy-found"}
    return orjson.dumps(p, option=orjson.OPT_SORT_KEYS).decode()


@functools.lru_cache(maxsize=4096)
def source_address(ip: str) -> str:
    """The local address a connection to `ip` leaves from (the engine binds
    none: the kernel's route chooses it). A UDP socket's connect sends
    nothing; it only asks the routing table. '' when there is no route."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((ip, 25))
            return str(s.getsockname()[0])
    except (OSError, ValueError):
        return ""


def count_job(
    tally: Tally,
    *,
    domain: str,
    route: Route | None,
    sts: Policy | None,
    results: Iterable[RecipientResult],
    attempts: Iterable[AttemptNote],
    finished_ms: int,
) -> None:
    """Adds one delivery job's sessions to `tally`."""
    day = utc_day(finished_ms)
    hosts = {h.name: h for h in route.hosts} if route is not None else {}
    sessions: dict[tuple[str, str], bool] = {}
    for r in results:
        if r.host:
            key = (r.host, r.ip)
            sessions[key] = sessions.get(key, False) or r.tls is not None
    for (host, ip), tls in sessions.items():
        policy = policy_of(hosts.get(host), sts)
        if tls:
            tally[SessionKey(day, domain, policy)] += 1
        else:
            plain = _failure(day, domain, policy, "starttls-not-supported", "", host=host, ip=ip)
            tally[plain] += 1
    for a in attempts:
        mapped = result_type(a.reason)
        if mapped is None:
            continue
        result, code = mapped
        policy = policy_of(hosts.get(a.host), sts, result)
        tally[_failure(day, domain, policy, result, code, host=a.host, ip=a.ip)] += 1


def count_unroutable(
    tally: Tally, *, domain: str, reason: str | None, at_ms: int, sts: Policy | None = None
) -> None:
    """A job that could not start: a failed session when its reason is a
    TLS result (a bogus TLSA answer; no MX host the MTA-STS policy `sts`
    allows, reported under that policy)."""
    mapped = result_type(reason)
    if mapped is None:
        return
    result, code = mapped
    day = utc_day(at_ms)
    tally[SessionKey(day, domain, policy_of(None, sts, result), result, code=code)] += 1


def _failure(
    day: str, domain: str, policy: str, result: str, code: str, *, host: str, ip: str
) -> SessionKey:
    return SessionKey(day, domain, policy, result, source_address(ip) if ip else "", host, ip, code)
