"""``mxg partners [--json]`` lists the partner ledger; ``mxg partners
accept DOMAIN --reason …`` accepts a partner's new, lower state, so that
the ratchet (``[delivery] ratchet``) no longer holds it to the old one."""

from __future__ import annotations

import argparse
from typing import Any

from mxg.cli.common import emit, operator
from mxg.cli.queue import _store
from mxg.errors import MxgError

COLUMNS = ("domain", "best_level", "best_method", "first", "last", "failure_reason")


def cmd_partners(args: argparse.Namespace) -> int:
    from mxg.evidence import rfc3339

    store = _store(args)
    if args.action == "accept":
        if not args.domain or not args.reason:
            raise MxgError("partners accept: name the domain and give --reason (it is recorded)")
        if not store.accept_partner(args.domain, operator(), args.reason):
            raise MxgError(f"partners accept: {args.domain} is not in the ledger")
        print(f"{args.domain}: accepted; the next delivery sets what it is held to")
        return 0
    rows = [
        {
            **r,
            "first": rfc3339(r["first_ms"]),
            "last": rfc3339(r["last_ms"]),
            "best": rfc3339(r["best_ms"]),
            "failure": rfc3339(r["failure_ms"]),
            "accepted": rfc3339(r["accepted_ms"]),
        }
        for r in store.partner_list()
    ]
    if args.json:
        import orjson

        emit("".join(orjson.dumps(r).decode() + "\n" for r in rows), None)
        return 0
    from mxg.evidence import as_table_of

    emit(as_table_of(rows, COLUMNS) if rows else "the ledger is empty\n", None)
    return 0


def add_partners_parser(sub: Any) -> None:
    p = sub.add_parser(
        "partners",
        help="the partner ledger: best level and method per domain; accept a drop",
        description="Lists, per recipient domain, the best level proven and by which method, "
        "first and last seen, and the last failure. 'mxg partners accept DOMAIN --reason R' "
        "accepts a partner's lower state for the ratchet ([delivery] ratchet); it is recorded "
        "in the ledger and the audit trail.",
    )
    p.add_argument("action", nargs="?", choices=["list", "accept"], default="list")
    p.add_argument("domain", nargs="?")
    p.add_argument("--reason", default="", help="with accept: why (recorded)")
    p.add_argument("--json", action="store_true", help="JSON lines")
    p.set_defaults(fn=cmd_partners)
