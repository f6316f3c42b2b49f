"""Reports for the data protection officer (``mxg report``): for the
mail received in a time range, per class the messages and recipients and
the share delivered at each level and by each method, with the held,
bounced, rerouted and sender-decided counts; per partner domain the best
level reached and the failures by typed reason; and the headline figure,
the share of high-risk recipients delivered qualified.

Shares are of recipients (a message to five domains can be delivered
five ways). Counts come from the store as it is now: a recipient still
queued counts as such, and retention (`[retention] keep`) bounds how far
back a report can go.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import asdict, dataclass, field
from html import escape
from typing import Any

import orjson

from mxg.decide.choices import CHOICES
from mxg.evidence import rfc3339
from mxg.store.decisions import AWAITING
from mxg.store.reports import ReportQueries, ReportQuery
from mxg.vocab import Level

# The class whose qualified share is the headline (ARCHITECTURE.md,
# vocabulary: "high" is the class that asks for qualified transport).
HEADLINE_CLASS = "high"


@dataclass
class ClassFigures:
    risk_class: str
    messages: int = 0
    recipients: int = 0
    delivered: int = 0
    by_level: dict[str, int] = field(default_factory=dict)
    by_method: dict[str, int] = field(default_factory=dict)
    held: int = 0
    bounced: int = 0
    rerouted: int = 0
    sender_decided: int = 0
    # Per choice (keep, normal, envelope, cancel): the decisions taken for
    # recipients that could not get their level (on_unmet = ask-sender).
    # They overlap with the outcomes: a recipient sent at normal's level
    # counts as delivered and as decided "normal".
    by_decision: dict[str, int] = field(default_factory=dict)
    waiting: int = 0


@dataclass
class DomainFigures:
    domain: str
    recipients: int = 0
    delivered: int = 0
    best_level: str = ""
    failures: dict[str, int] = field(default_factory=dict)


@dataclass
class Report:
    since: str
    until: str
    classes: list[ClassFigures]
    domains: list[DomainFigures]
    headline_recipients: int
    headline_qualified: int

    @property
    def headline_share(self) -> float | None:
        if not self.headline_recipients:
            return None
        return self.headline_qualified / self.headline_recipients


def build(store: ReportQueries, q: ReportQuery) -> Report:
    classes: dict[str, ClassFigures] = {}
    domains: dict[str, DomainFigures] = {}
    for row in store.report_rows(q):
        cls, domain, status, level, method = (
            row.risk_class,
            row.domain,
            row.status,
            row.level,
            row.method,
        )
        n = row.recipients
        c = classes.setdefault(cls, ClassFigures(cls))
        d = domains.setdefault(domain, DomainFigures(domain))
        c.recipients += n
        d.recipients += n
        if row.rerouted:
            c.rerouted += n
        if row.decision:
            c.sender_decided += n
            c.by_decision[row.decision] = c.by_decision.get(row.decision, 0) + n
        if status == "sent":
            c.delivered += n
            d.delivered += n
            c.by_level[level or "none"] = c.by_level.get(level or "none", 0) + n
            c.by_method[method or "none"] = c.by_method.get(method or "none", 0) + n
            reached = Level(level or "none")
            if not d.best_level or reached.rank > Level(d.best_level).rank:
                d.best_level = reached
        elif status == "held":
            c.held += n
        elif status == "bounced":
            c.bounced += n
        elif status in ("pending", "deferred", AWAITING):
            c.waiting += n
    for cls, messages in store.messages_by_class(q).items():
        classes.setdefault(cls, ClassFigures(cls)).messages = messages
    for domain, reason, n in store.failure_reasons(q):
        domains.setdefault(domain, DomainFigures(domain)).failures[reason] = n
    high = classes.get(HEADLINE_CLASS, ClassFigures(HEADLINE_CLASS))
    return Report(
        rfc3339(q.since_ms),
        rfc3339(q.until_ms),
        sorted(classes.values(), key=lambda c: c.risk_class),
        sorted(domains.values(), key=lambda d: d.domain),
        high.recipients,
        high.by_level.get(Level.QUALIFIED, 0),
    )


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def _spread(counts: dict[str, int], whole: int) -> str:
    return ", ".join(f"{k} {_pct(v, whole)}" for k, v in Counter(counts).most_common()) or "-"


def _choices(counts: dict[str, int]) -> str:
    """`` (envelope 2, normal 1)`` in the order of the choices."""
    words = [f"{k} {counts[k]}" for k in CHOICES if counts.get(k)]
    return f" ({', '.join(words)})" if words else ""


def as_text(r: Report) -> str:
    share = r.headline_share
    lines = [
        f"mxg report {r.since} to {r.until}",
        "",
        f"high-risk recipients delivered qualified: "
        f"{'-' if share is None else f'{100 * share:.1f} %'} "
        f"({r.headline_qualified} of {r.headline_recipients})",
        "",
        "per class:",
    ]
    for c in r.classes:
        lines += [
            f"  {c.risk_class or '(none)'}: {c.messages} messages, {c.recipients} recipients, "
            f"{c.delivered} delivered, {c.held} held, {c.bounced} bounced, {c.rerouted} rerouted, "
            f"{c.sender_decided} decided by the sender{_choices(c.by_decision)}, "
            f"{c.waiting} still queued",
            f"    levels:  {_spread(c.by_level, c.delivered)}",
            f"    methods: {_spread(c.by_method, c.delivered)}",
        ]
    lines += ["", "per domain:"]
    for d in r.domains:
        fails = ", ".join(f"{k} {v}" for k, v in d.failures.items()) or "none"
        lines.append(
            f"  {d.domain}: {d.delivered} of {d.recipients} delivered, best level "
            f"{d.best_level or '-'}; failed attempts: {fails}"
        )
    return "\n".join(lines) + "\n"


def as_json(r: Report) -> str:
    doc: dict[str, Any] = asdict(r)
    doc["headline_share"] = r.headline_share
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"


def as_csv(r: Report) -> str:
    """One row per class and one per domain: a `kind` column tells them
    apart; levels, methods and reasons are columns of their own."""
    levels = [str(lv) for lv in Level]
    methods = sorted({m for c in r.classes for m in c.by_method})
    reasons = sorted({k for d in r.domains for k in d.failures})
    header = [
        "kind", "name", "messages", "recipients", "delivered", "held", "bounced", "rerouted",
        "sender_decided", *(f"decided_{k}" for k in CHOICES), "waiting", "best_level",
        *(f"level_{lv}" for lv in levels), *(f"method_{m}" for m in methods),
        *(f"failed_{x}" for x in reasons),
    ]  # fmt: skip
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(header)
    for c in r.classes:
        w.writerow(
            ["class", c.risk_class, c.messages, c.recipients, c.delivered, c.held, c.bounced,
             c.rerouted, c.sender_decided, *(c.by_decision.get(k, 0) for k in CHOICES),
             c.waiting, "",
             *(c.by_level.get(lv, 0) for lv in levels), *(c.by_method.get(m, 0) for m in methods),
             *("" for _ in reasons)]
        )  # fmt: skip
    for d in r.domains:
        w.writerow(
            ["domain", d.domain, "", d.recipients, d.delivered, "", "", "", "",
             *("" for _ in CHOICES), "", d.best_level,
             *("" for _ in levels), *("" for _ in methods),
             *(d.failures.get(x, 0) for x in reasons)]
        )  # fmt: skip
    return out.getvalue()


def as_html(r: Report) -> str:
    share = r.headline_share
    rows = "".join(
        f"<tr><td>{escape(c.risk_class)}</td><td>{c.messages}</td><td>{c.recipients}</td>"
        f"<td>{c.delivered}</td><td>{escape(_spread(c.by_level, c.delivered))}</td>"
        f"<td>{escape(_spread(c.by_method, c.delivered))}</td><td>{c.held}</td>"
        f"<td>{c.bounced}</td><td>{c.rerouted}</td>"
        f"<td>{c.sender_decided}{escape(_choices(c.by_decision))}</td></tr>"
        for c in r.classes
    )
    domains = "".join(
        f"<tr><td>{escape(d.domain)}</td><td>{d.delivered} / {d.recipients}</td>"
        f"<td>{escape(d.best_level or '-')}</td><td>"
        + escape(", ".join(f"{k} {v}" for k, v in d.failures.items()) or "none")
        + "</td></tr>"
        for d in r.domains
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "style-src 'unsafe-inline'\"><title>mxg report</title><style>"
        "body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:70em}"
        "table{border-collapse:collapse;width:100%}td,th{border:1px solid #bbb;padding:.3em}"
        "</style></head><body>"
        f"<h1>Transport security report, {escape(r.since)} to {escape(r.until)}</h1>"
        f"<p><strong>High-risk recipients delivered qualified: "
        f"{'-' if share is None else f'{100 * share:.1f} %'}</strong> "
        f"({r.headline_qualified} of {r.headline_recipients})</p>"
        "<h2>Per class</h2><table><tr><th>Class</th><th>Messages</th><th>Recipients</th>"
        "<th>Delivered</th><th>Levels</th><th>Methods</th><th>Held</th><th>Bounced</th>"
        f"<th>Rerouted</th><th>Sender decided</th></tr>{rows}</table>"
        "<h2>Per domain</h2><table><tr><th>Domain</th><th>Delivered</th><th>Best level</th>"
        f"<th>Failed attempts by reason</th></tr>{domains}</table></body></html>\n"
    )
