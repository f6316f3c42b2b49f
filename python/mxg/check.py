"""``mxg check``: which transport level can each domain receive?

Resolves every MX host as a delivery would (DNSSEC status, TLSA records)
and probes every address through the data plane's delivery code up to
the end of the TLS handshake, then says QUIT - no MAIL FROM is ever sent.
The report gives per host: addresses, DNSSEC status, TLSA records,
STARTTLS, TLS version/cipher/group, certificate subject and expiry, the
authentication method and the level reached; per domain the best level
any of its MX hosts reaches.

Exit status (`exit_code`): 0 every domain reaches the required level
(``--require``, default qualified), 3 some domain can be reached only
below it, 4 some domain could not be resolved; with several domains, the
highest. The statuses of errors (1, 2, 70, 75, 78: `mxg.cli.exits`)
stay what they are for every mxg command, so a script never reads a
failure as a level.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import anyio

from mxg import _core
from mxg.boundary import HostProbe, ProbeDone, ProbeJob, TlsRequirement, decode_events, encode
from mxg.config import Config
from mxg.config.classes import LEVELS
from mxg.dns import (
    DnsResolver,
    Host,
    Policy,
    PolicyError,
    ResolveError,
    Route,
    StsCache,
    http_client,
)
from mxg.pipeline.plan import job_hosts
from mxg.vocab import Level, Reason

EXIT_REACHED = 0
EXIT_BELOW = 3
EXIT_UNRESOLVED = 4


@dataclass
class HostReport:
    host: str
    address: str
    dnssec: str
    tlsa: list[str]
    starttls: bool
    level: str
    method: str = ""
    tls_version: str = ""
    cipher: str = ""
    group: str = ""
    cert_subject: str = ""
    cert_issuer: str = ""
    cert_expires: str = ""
    error: str = ""
    # The typed reason for `error` (mxg.vocab.Reason), for scripts.
    reason: str = ""


@dataclass
class DomainReport:
    domain: str
    best_level: str
    mx_dnssec: str = ""
    mta_sts: str = ""
    error: str = ""
    hosts: list[HostReport] = field(default_factory=list)

    def exit_code(self, require: str) -> int:
        if self.error and not self.hosts:
            return EXIT_UNRESOLVED
        reached = LEVELS.index(Level(self.best_level)) >= LEVELS.index(Level(require))
        return EXIT_REACHED if reached else EXIT_BELOW


def _expires(ts: int | None) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d") if ts else ""


def _tlsa_text(host: Host) -> list[str]:
    return [f"{r['usage']} {r['selector']} {r['mtype']} {r['data']}" for r in host.tlsa]


def _excluded(route: Route, allowed: set[str], policy: Policy | None) -> list[HostReport]:
    """MX hosts delivery would never use, each with the reason: an MTA-STS
    enforce policy (RFC 8461 §4.1) or the operator's [[policy]] mx list."""
    out = []
    for h in route.hosts:
        if h.name in allowed:
            continue
        if policy is not None and policy.mode == "enforce" and not policy.matches(h.name):
            why = f"excluded: the MTA-STS enforce policy allows only mx {', '.join(policy.mx)}"
        else:
            why = "excluded: not in the [[policy]] mx list for this domain"
        out.append(
            HostReport(
                host=h.name,
                address=", ".join(h.addresses),
                dnssec="secure" if h.secure else "insecure",
                tlsa=_tlsa_text(h),
                starttls=False,
                level="none",
                error=why,
                reason=Reason.VALIDATION_FAILURE,
            )
        )
    return out


def _report(
    domain: str,
    route: Route,
    probes: list[HostProbe],
    sts: str = "",
    excluded: Sequence[HostReport] = (),
) -> DomainReport:
    by_name = {h.name: h for h in route.hosts}
    hosts = []
    for p in probes:
        h = by_name.get(p.host)
        tls = p.tls
        hosts.append(
            HostReport(
                host=p.host,
                address=p.ip,
                dnssec="secure" if h is not None and h.secure else "insecure",
                tlsa=_tlsa_text(h) if h is not None else [],
                starttls=p.starttls,
                level=p.level if p.ok else "none",
                method=(tls.method or "") if tls else "",
                tls_version=tls.version if tls else "",
                cipher=tls.cipher if tls else "",
                group=tls.group if tls else "",
                cert_subject=p.cert_subject,
                cert_issuer=p.cert_issuer,
                cert_expires=_expires(p.cert_not_after),
                error=p.error,
                reason=p.reason or "",
            )
        )
    best = max((h.level for h in hosts), key=LEVELS.index, default="none")
    hosts += excluded
    return DomainReport(domain, best, "secure" if route.mx_secure else "insecure", sts, "", hosts)


async def check_domains(
    cfg: Config,
    domains: Sequence[str],
    *,
    concurrency: int = 20,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[DomainReport]:
    """Checks the domains, at most ``concurrency`` at once."""
    resolver = DnsResolver(
        cfg.dns,
        prefer=cfg.delivery.address_preference,
        max_addresses=cfg.delivery.max_addresses,
        port=cfg.delivery.port,
    )
    sts_cache = (
        StsCache(resolver.raw, lambda: http_client(cfg.delivery.ca_file))
        if cfg.delivery.mta_sts
        else None
    )
    results: dict[str, DomainReport] = {}
    waiting: dict[int, tuple[anyio.Event, list[HostProbe]]] = {}
    limit = anyio.Semaphore(concurrency)
    with tempfile.TemporaryDirectory(prefix="mxg-check-") as spool:
        engine_cfg = {**cfg.engine_json(), "listen": [], "spool_dir": spool}
        engine = _core.Engine(json.dumps(engine_cfg))
        try:
            async with anyio.create_task_group() as tg:

                async def pump() -> None:
                    while True:
                        await anyio.wait_readable(engine.fileno())
                        for ev in decode_events(engine.drain()):
                            if isinstance(ev, ProbeDone) and ev.probe_id in waiting:
                                done, out = waiting[ev.probe_id]
                                out.extend(ev.hosts)
                                done.set()

                async def one(probe_id: int, domain: str) -> None:
                    async with limit:
                        try:
                            route = await resolver.route(domain)
                        except ResolveError as e:
                            results[domain] = DomainReport(domain, "none", error=e.text)
                        else:
                            policy, sts_note = await _sts(sts_cache, domain)
                            dom = cfg.policy_for(domain)
                            hosts = job_hosts(route, policy, dom)
                            excluded = _excluded(route, {h.name for h in hosts}, policy)
                            done, out = waiting[probe_id] = (anyio.Event(), [])
                            # The same code path as a delivery, at the lowest
                            # level that still tries TLS: what each host can
                            # reach is read off the session.
                            probe = ProbeJob(
                                probe_id,
                                domain,
                                hosts,
                                TlsRequirement(
                                    "opportunistic",
                                    cfg.delivery.tls_profile,
                                    list(cfg.delivery.qualified_methods),
                                ),
                            )
                            engine.probe(encode(probe))
                            await done.wait()
                            results[domain] = _report(domain, route, out, sts_note, excluded)
                        if progress is not None:
                            progress(len(results), len(domains), domain)

                tg.start_soon(pump)
                async with anyio.create_task_group() as workers:
                    for i, d in enumerate(domains, start=1):
                        workers.start_soon(one, i, d.strip().rstrip(".").lower())
                tg.cancel_scope.cancel()
        finally:
            engine.shutdown()
    return [results[d.strip().rstrip(".").lower()] for d in domains]


async def _sts(cache: StsCache | None, domain: str) -> tuple[Policy | None, str]:
    """The domain's MTA-STS policy and a note for the report."""
    if cache is None:
        return None, ""
    try:
        policy = await cache.policy(domain)
    except PolicyError as e:
        return None, f"unusable: {e}"
    if policy is None:
        return None, ""
    return policy, f"{policy.mode} id={policy.id} mx={','.join(policy.mx)}"


def exit_code(reports: Sequence[DomainReport], require: str = "qualified") -> int:
    return max((r.exit_code(require) for r in reports), default=EXIT_REACHED)


def to_json(reports: Sequence[DomainReport]) -> str:
    return json.dumps([asdict(r) for r in reports], indent=2)


CSV_FIELDS = [
    "domain",
    "best_level",
    "mx_dnssec",
    "mta_sts",
    "host",
    "address",
    "dnssec",
    "tlsa",
    "starttls",
    "tls_version",
    "cipher",
    "group",
    "method",
    "level",
    "cert_subject",
    "cert_expires",
    "error",
    "reason",
]


def to_csv(reports: Sequence[DomainReport]) -> str:
    """One row per probed address (one per domain when nothing resolved)."""
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in reports:
        base = {
            "domain": r.domain,
            "best_level": r.best_level,
            "mx_dnssec": r.mx_dnssec,
            "mta_sts": r.mta_sts,
            "error": r.error,
        }
        if not r.hosts:
            w.writerow(base)
        for h in r.hosts:
            row = {**base, **{k: v for k, v in asdict(h).items() if k in CSV_FIELDS}}
            row["host"], row["address"] = h.host, h.address
            row["tlsa"] = "; ".join(h.tlsa)
            row["starttls"] = "yes" if h.starttls else "no"
            row["error"] = h.error or r.error
            row["reason"] = h.reason
            w.writerow(row)
    return out.getvalue()


def to_text(reports: Sequence[DomainReport]) -> str:
    lines: list[str] = []
    for r in reports:
        head = f"{r.domain}: best level {r.best_level}"
        if r.mx_dnssec:
            head += f" (MX answer DNSSEC {r.mx_dnssec})"
        if r.mta_sts:
            head += f"; MTA-STS {r.mta_sts}"
        lines.append(head)
        if r.error:
            lines.append(f"  {r.error}")
        for h in r.hosts:
            tls = " ".join(x for x in (h.tls_version, h.cipher, h.group) if x) or "-"
            lines.append(
                f"  {h.host} [{h.address}]  dnssec {h.dnssec}  "
                f"starttls {'yes' if h.starttls else 'no'}  level {h.level}"
                + (f"  method {h.method}" if h.method else "")
            )
            lines.append(f"    tls: {tls}")
            for t in h.tlsa:
                lines.append(f"    tlsa: {t}")
            if h.cert_subject:
                lines.append(
                    f"    certificate: {h.cert_subject} (issuer {h.cert_issuer}; "
                    f"expires {h.cert_expires})"
                )
            if h.error:
                lines.append(f"    error: {h.error}")
            if h.reason:
                lines.append(f"    reason: {h.reason}")
        lines.append("")
    return "\n".join(lines)


def stderr_progress(done: int, total: int, domain: str) -> None:
    width = 30
    filled = width * done // max(total, 1)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {domain[:40]:40}")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()
