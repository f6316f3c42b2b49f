"""``mxg evidence``: how each recipient (or each attempt) was protected,
chosen by message, address, domain, time, class and outcome, as a table,
JSON lines or CSV with flat fields (`mxg.evidence`)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import Any

from mxg.cli.common import _load, emit
from mxg.cli.queue import _store
from mxg.errors import MxgError
from mxg.store.evidence import OUTCOMES

# Rows a lookup returns unless --limit says otherwise: a table of more is
# no longer read by anybody; --limit 0 lifts it (for --json and --csv).
DEFAULT_LIMIT = 1000


def when_ms(value: str, now: float | None = None) -> int:
    """``2026-12-01``, ``2026-12-01T08:00:00Z`` (UTC unless an offset is
    given), or a time back from now: ``36h``, ``7d``."""
    from mxg.config.base import parse_duration

    try:
        ago = parse_duration(value)
    except ValueError:
        ago = None
    if isinstance(ago, float):
        return int(((now if now is not None else time.time()) - ago) * 1000)
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise MxgError(
            f"{value!r} is no time: give a date (2026-12-01), a date and time "
            "(2026-12-01T08:00:00Z) or a time back from now (36h, 7d)"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def cmd_evidence(args: argparse.Namespace) -> int:
    from mxg.evidence import as_csv, as_json_lines, as_table, flatten
    from mxg.store import EvidenceQuery

    cfg = _load(args)
    limit = DEFAULT_LIMIT if args.limit is None else args.limit
    query = EvidenceQuery(
        queue_id=args.queue_id,
        message_id=args.message_id,
        recipient=args.recipient,
        sender=args.sender,
        domain=args.domain,
        since_ms=when_ms(args.since) if args.since else None,
        until_ms=when_ms(args.until) if args.until else None,
        risk_class=args.risk_class,
        outcome=args.outcome,
        attempts=args.attempts,
        limit=limit + 1 if limit else None,
    )
    records = [flatten(row, cfg) for row in _store(args).evidence(query)]
    if limit and len(records) > limit:
        del records[limit:]
        print(
            f"mxg: more than {limit} rows; showing the first (--limit 0 for all)", file=sys.stderr
        )
    if args.json:
        text = as_json_lines(records)
    elif args.csv:
        text = as_csv(records)
    else:
        text = as_table(records) if records else "no evidence matches\n"
    emit(text, args.out)
    return 0


def add_evidence_parser(sub: Any) -> None:
    ev = sub.add_parser(
        "evidence",
        help="how each recipient was protected, by message, address, time, class, outcome",
        description="Looks up what the store kept of each recipient (with --attempts, of "
        "each attempt): the level required and reached, the method, TLS version, cipher, "
        "group, certificates, TLSA record, MTA-STS policy, DNSSEC status and the server's "
        "reply. Every option narrows the answer; times are UTC unless an offset is given.",
    )
    ev.add_argument("--queue-id")
    ev.add_argument("--message-id", help="with or without <>")
    ev.add_argument("--recipient")
    ev.add_argument("--sender")
    ev.add_argument("--domain", help="the recipient's domain")
    ev.add_argument("--since", help="received at or after: 2026-12-01, 2026-12-01T08:00Z, 36h, 7d")
    ev.add_argument("--until", help="received before (same forms)")
    ev.add_argument("--class", dest="risk_class", help="risk class (normal, high, secret, …)")
    ev.add_argument("--outcome", choices=OUTCOMES)
    ev.add_argument("--attempts", action="store_true", help="every attempt, not the last state")
    fmt = ev.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON lines, one record each")
    fmt.add_argument("--csv", action="store_true")
    ev.add_argument("--limit", type=int, help=f"at most this many rows ({DEFAULT_LIMIT}; 0: all)")
    ev.add_argument("--out", help="write to this file")
    ev.set_defaults(fn=cmd_evidence)
