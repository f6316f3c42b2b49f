"""One day's report for one policy domain (RFC 8460 §4), from the
aggregate in the store: the JSON, gzipped, and its file name (§5.1)."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson


@dataclass(frozen=True)
class Reporter:
    """Who reports: organization-name, contact-info, and the "sender"
    of §5.1 (the domain of contact-info)."""

    organization: str
    contact: str

    @property
    def sender(self) -> str:
        return self.contact.rpartition("@")[2].lower()


@dataclass(frozen=True)
class Report:
    domain: str
    day: str
    report_id: str
    body: dict[str, Any]

    @property
    def json(self) -> bytes:
        return orjson.dumps(self.body)

    @property
    def gzipped(self) -> bytes:
        # mtime=0: the same report compresses to the same bytes on a retry.
        return gzip.compress(self.json, mtime=0)

    def filename(self, sender: str) -> str:
        """§5.1: sender!policy-domain!begin!end!unique-id.json.gz, with the
        domains as A-labels (they are: mxg stores them so)."""
        begin, end = day_bounds(self.day)
        unique = hashlib.sha256(self.report_id.encode()).hexdigest()[:16]
        return f"{sender}!{self.domain}!{begin}!{end}!{unique}.json.gz"


def day_bounds(day: str) -> tuple[int, int]:
    """The first and last second of a UTC day, as Unix time."""
    start = datetime.combine(date.fromisoformat(day), datetime.min.time(), tzinfo=UTC)
    return int(start.timestamp()), int((start + timedelta(days=1)).timestamp()) - 1


def _rfc3339(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report_id(reporter: Reporter, day: str, domain: str) -> str:
    """Unique per reporter, day and domain, and the same on every retry,
    so that a receiver can tell a repeat from a new report."""
    return f"{day}.{domain}.mxg@{reporter.sender}"


def build_report(reporter: Reporter, day: str, domain: str, rows: Iterable[Any]) -> Report:
    """The §4.4 report from the aggregate's rows for one day and domain
    (`Store.tlsrpt_rows`): one entry per policy applied, its session
    counts and its failure details."""
    policies: dict[str, dict[str, Any]] = {}
    for r in rows:
        entry = policies.get(r["policy"])
        if entry is None:
            policy = {**orjson.loads(r["policy"]), "policy-domain": domain}
            entry = policies[r["policy"]] = {
                "policy": _ordered(policy),
                "summary": {
                    "total-successful-session-count": 0,
                    "total-failure-session-count": 0,
                },
                "failure-details": [],
            }
        if not r["result"]:
            entry["summary"]["total-successful-session-count"] += r["sessions"]
            continue
        entry["summary"]["total-failure-session-count"] += r["sessions"]
        detail: dict[str, Any] = {"result-type": r["result"]}
        if r["sending_ip"]:
            detail["sending-mta-ip"] = r["sending_ip"]
        if r["receiving_mx"]:
            detail["receiving-mx-hostname"] = r["receiving_mx"]
        if r["receiving_ip"]:
            detail["receiving-ip"] = r["receiving_ip"]
        detail["failed-session-count"] = r["sessions"]
        if r["code"]:
            detail["failure-reason-code"] = r["code"]
        entry["failure-details"].append(detail)
    for entry in policies.values():
        if not entry["failure-details"]:
            del entry["failure-details"]
    begin, end = day_bounds(day)
    rid = report_id(reporter, day, domain)
    body = {
        "organization-name": reporter.organization,
        "date-range": {"start-datetime": _rfc3339(begin), "end-datetime": _rfc3339(end)},
        "contact-info": reporter.contact,
        "report-id": rid,
        "policies": list(policies.values()),
    }
    return Report(domain, day, rid, body)


def _ordered(policy: dict[str, Any]) -> dict[str, Any]:
    """The policy's fields in the RFC's order (§4.4), for a reader."""
    keys = ("policy-type", "policy-string", "policy-domain", "mx-host")
    return {k: policy[k] for k in keys if k in policy}
