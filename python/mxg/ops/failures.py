"""Recent failures by reason, for the admin API and the operator pages:
the failed attempts (deferred or bounced) of messages received since a
time, counted per typed reason (the TLS-RPT result types, or the
SMTP-level reasons mxg records) and, within it, per recipient domain;
the most frequent reason first."""

from __future__ import annotations

from dataclasses import dataclass, field

from mxg.store import ReportQuery, Store, now_ms


@dataclass
class Failure:
    reason: str
    attempts: int = 0
    domains: dict[str, int] = field(default_factory=dict)


def by_reason(store: Store, since_ms: int) -> list[Failure]:
    out: dict[str, Failure] = {}
    for domain, reason, count in store.failure_reasons(ReportQuery(since_ms, now_ms() + 1)):
        f = out.setdefault(reason, Failure(reason))
        f.attempts += count
        f.domains[domain] = count
    return sorted(out.values(), key=lambda f: (-f.attempts, f.reason))
