"""``mxg report --from … --to … [--class …] [--domain …] --format
text|csv|json|html``: the figures for the data protection officer
(`mxg.report`)."""

from __future__ import annotations

import argparse
from typing import Any

from mxg.cli.common import emit
from mxg.cli.evidence import when_ms
from mxg.cli.queue import _store
from mxg.errors import MxgError


def cmd_report(args: argparse.Namespace) -> int:
    from mxg import report
    from mxg.store import ReportQuery, now_ms

    since = when_ms(args.since)
    until = when_ms(args.until) if args.until else now_ms()
    if until <= since:
        raise MxgError("report: --to must come after --from")
    query = ReportQuery(since, until, risk_class=args.risk_class, domain=args.domain)
    figures = report.build(_store(args), query)
    render = {
        "text": report.as_text,
        "json": report.as_json,
        "csv": report.as_csv,
        "html": report.as_html,
    }[args.format]
    text = render(figures)
    emit(text, args.out)
    return 0


def add_report_parser(sub: Any) -> None:
    rp = sub.add_parser(
        "report",
        help="transport security figures for the data protection officer",
        description="For the mail received in a time range: per class the messages, "
        "recipients and the share delivered at each level and by each method, held, bounced, "
        "rerouted and sender-decided counts; per recipient domain the best level and the "
        "failed attempts by reason; and the share of high-risk recipients delivered qualified.",
    )
    rp.add_argument("--from", dest="since", required=True, help="2026-11-01, an RFC 3339 time, 30d")
    rp.add_argument("--to", dest="until", help="end (exclusive; default: now)")
    rp.add_argument("--class", dest="risk_class", help="only this risk class")
    rp.add_argument("--domain", help="only recipients in this domain")
    rp.add_argument("--format", choices=["text", "csv", "json", "html"], default="text")
    rp.add_argument("--out", help="write to this file")
    rp.set_defaults(fn=cmd_report)
