"""``mxg queue ...``: works on the queue of a running or stopped relay
through its database (the relay picks changes up within one queue scan).
This module parses arguments and formats results; what each command does
is `mxg.ops`, shared with the admin API. ``--json`` prints JSON lines:
one object per line."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any

from mxg import ops
from mxg.cli.common import _load, operator
from mxg.errors import MxgError, StoreDamaged
from mxg.vocab import Level, RiskClass


def _store(args: argparse.Namespace) -> Any:
    from mxg.store import Store

    cfg = _load(args)
    if cfg.data.store:
        return Store(cfg.data.store)
    if not cfg.db_path.exists():
        raise MxgError(
            f"no queue database at {cfg.db_path} (has mxg run ever started "
            "with this configuration?)"
        )
    try:
        return Store(cfg.db_path)
    except StoreDamaged as e:
        raise MxgError(
            f"{e}; restart the relay (mxg run): it moves the file aside and rebuilds the "
            "index from the spool, so no queued message is lost"
        ) from None


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def _table(rows: list[list[str]], header: list[str], right: int = 0) -> str:
    """Columns padded to their widest cell; the last `right` ones aligned
    right (numbers)."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    first = len(header) - right

    def line(cells: list[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if i < first else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)])


def _json_lines(records: Iterable[dict[str, Any]]) -> None:
    for r in records:
        print(json.dumps(r, default=str))


def _actor() -> str:
    return operator()


# -- reading -----------------------------------------------------------------


def cmd_queue_list(args: argparse.Namespace) -> int:
    store = _store(args)
    items = store.listing(include_done=args.all)
    if args.json:
        _json_lines(items)
        return 0
    for s in store.suspended():
        print(
            f"delivery to {s['domain']} suspended since {_when(s['since_ms'])} by {s['actor']}"
            + (f": {s['reason']}" if s["reason"] else "")
        )
    if not items:
        print("queue is empty")
        return 0
    # On a cluster (PostgreSQL): the whole cluster's queue, by owner.
    nodes = store.dialect.postgres
    rows = [
        [
            i["queue_id"],
            *([i["node"] or "(unowned)"] if nodes else []),
            _when(i["received_ms"]),
            "held" if i["state"] == "active" and i["held"] else i["state"],
            i["class"] or "-",
            str(i["size"]),
            f"<{i['sender']}>",
            f"{i['waiting']}/{i['rcpts']}",
            ("suspended: " + ",".join(i["suspended"]) if i["suspended"] else i["reason"] or "")[
                :60
            ],
        ]
        for i in items
    ]
    print(
        _table(
            rows,
            [
                "QUEUE ID",
                *(["NODE"] if nodes else []),
                "RECEIVED",
                "STATE",
                "CLASS",
                "SIZE",
                "SENDER",
                "WAITING",
                "LAST REASON",
            ],
        )
    )
    return 0


def cmd_queue_show(args: argparse.Namespace) -> int:
    store = _store(args)
    d = store.details(args.queue_id.upper())
    if d is None:
        raise MxgError(f"no message {args.queue_id} in the queue")
    if args.json:
        _json_lines([d])
        return 0
    print(
        f"queue id:   {d['queue_id']}\nreceived:   {_when(d['received_ms'])}\n"
        f"sender:     <{d['sender']}>\nmessage-id: {d['message_id'] or '-'}\n"
        f"size:       {d['size']}\nstate:      {d['state']}"
        + (f" ({d['hold_reason']})" if d["hold_reason"] else "")
        + f"\nclass:      {d['class'] or '-'}"
    )
    if d["classification"]:
        for f in json.loads(d["classification"]).get("fired", []):
            print(f"            {f['rule']}: {f['class']} - {f['why']}")
    print()
    suspended = {s["domain"] for s in store.suspended()}
    rows = [
        [
            f"<{r['address']}>",
            r["class"] or "-",
            r["status"]
            + (" (suspended)" if r["domain"] in suspended and r["status"] in ops.STATES else ""),
            str(r["attempts"]),
            _when(r["next_ms"]) if r["status"] == "deferred" else "-",
            f"{r['host'] or '-'}",
            r["tls"] or "-",
            (r["text"] or "")[:70],
        ]
        for r in d["recipients"]
    ]
    print(
        _table(
            rows, ["RECIPIENT", "CLASS", "STATUS", "TRIES", "NEXT", "RELAY", "TLS", "LAST REPLY"]
        )
    )
    if d["events"]:
        print()
        for e in d["events"]:
            print(f"{_when(e['at_ms'])} {e['actor']}: {e['action']} {e['detail'] or ''}")
    return 0


def cmd_queue_cat(args: argparse.Namespace) -> int:
    cfg = _load(args)
    _, message = ops.spooled(cfg.spool_dir, args.queue_id)
    sys.stdout.buffer.write(ops.headers(message) if args.headers else message)
    sys.stdout.buffer.flush()
    return 0


def cmd_queue_summary(args: argparse.Namespace) -> int:
    store = _store(args)
    summary = ops.summarize(store, args.state, top=args.top)
    if args.json:
        _json_lines(
            {
                "domain": row.domain,
                "total": row.total,
                "buckets": dict(zip(summary.columns[1:], row.counts[1:], strict=True)),
                "suspended": row.suspended,
            }
            for row in (*summary.rows, summary.total)
        )
        return 0
    rows = [
        [row.domain + (" (suspended)" if row.suspended else ""), *map(str, row.counts)]
        for row in (summary.total, *summary.rows)
    ]
    print(_table(rows, ["", *summary.columns], right=len(summary.columns)))
    return 0


def cmd_queue_suspended(args: argparse.Namespace) -> int:
    rows = [dict(r) for r in _store(args).suspended()]
    if args.json:
        _json_lines(rows)
    elif not rows:
        print("no domain is suspended")
    else:
        table = [[r["domain"], _when(r["since_ms"]), r["actor"], r["reason"]] for r in rows]
        print(_table(table, ["DOMAIN", "SINCE", "BY", "REASON"]))
    return 0


# -- changing ----------------------------------------------------------------


# The selection options, by their names in `ops.Selector.build`.
_CRITERIA = ("domains", "classes", "states", "older_than", "younger_than")


def _selector(args: argparse.Namespace) -> ops.Selector:
    words = list(args.ids)
    if "-" in words:
        # As postsuper: queue ids from standard input, one per line.
        words.remove("-")
        words += [w for line in sys.stdin for w in line.split()]
    criteria = {name: getattr(args, name) for name in _CRITERIA}
    ids = [w for w in words if w != "ALL"]
    selector = ops.Selector.build(queue_ids=ids, everything="ALL" in words, **criteria)
    if selector.is_empty and args.queue_cmd == "flush":
        # `mxg queue flush` alone retries every deferred recipient, as
        # `postqueue -f` does.
        return ops.Selector(everything=True)
    return selector


def cmd_queue_action(args: argparse.Namespace) -> int:
    store = _store(args)
    result = ops.act(
        args.queue_cmd,
        store,
        _selector(args),
        _actor(),
        args.reason,
        level=getattr(args, "level", None),
        dry_run=args.dry_run,
    )
    if args.json:
        _json_lines(result.records())
        return 0
    _print_result(result)
    return 0


def _print_result(result: ops.ActionResult) -> None:
    verb = f"would {result.action}" if result.dry_run else result.action
    if not result.changes:
        print(f"{verb}: nothing to change ({result.selection})")
        return
    level = f" at level {result.level}" if result.level else ""
    print(
        f"{verb}{level}: {len(result.changes)} message(s), {result.recipients} recipient(s)"
        f" ({result.selection})"
    )
    for c in result.changes:
        before = "/".join(dict.fromkeys(c.before))
        print(f"  {c.queue_id}  <{c.sender}>  {before} -> {c.after}  {', '.join(c.recipients)}")
    if result.dry_run:
        print("dry run: nothing was changed")


def cmd_queue_domain(args: argparse.Namespace) -> int:
    store = _store(args)
    fn: Callable[..., ops.DomainResult] = {"suspend": ops.suspend, "resume": ops.resume}[
        args.queue_cmd
    ]
    result = fn(store, args.domain, _actor(), args.reason)
    if result.action == "resume" and not result.changed:
        raise MxgError(f"resume: delivery to {result.domain} is not suspended")
    if args.json:
        _json_lines([asdict(result)])
        return 0
    if result.action == "suspend":
        state = "suspended" if result.changed else "was already suspended"
        print(f"{result.domain}: delivery {state}; {result.waiting} recipient(s) wait")
    else:
        print(
            f"{result.domain}: delivery resumed; {result.waiting} recipient(s) wait,"
            f" {result.due_now} deferred one(s) due now"
        )
    return 0


# -- the parser ----------------------------------------------------------------


def add_queue_parser(sub: Any) -> None:
    """``mxg queue`` and its subcommands."""
    q = sub.add_parser("queue", help="inspect and change the queue")
    qsub = q.add_subparsers(dest="queue_cmd", required=True)
    ql = qsub.add_parser("list", help="messages in the queue")
    ql.add_argument("--json", action="store_true", help="JSON lines, one message per line")
    ql.add_argument("--all", action="store_true", help="include finished messages")
    ql.set_defaults(fn=cmd_queue_list)
    qs = qsub.add_parser("show", help="one message with its recipients and attempts")
    qs.add_argument("queue_id")
    qs.add_argument("--json", action="store_true")
    qs.set_defaults(fn=cmd_queue_show)
    qc = qsub.add_parser("cat", help="print a queued message as spooled (postcat -q)")
    qc.add_argument("queue_id")
    qc.add_argument("--headers", action="store_true", help="only the header section")
    qc.set_defaults(fn=cmd_queue_cat)
    qy = qsub.add_parser(
        "summary", help="messages per recipient domain and age in minutes (qshape)"
    )
    qy.add_argument(
        "--state", action="append", default=[], choices=ops.STATES, help="only these (repeat)"
    )
    qy.add_argument("--top", type=int, help="only the N domains with the most messages")
    qy.add_argument("--json", action="store_true", help="JSON lines, one domain per line")
    qy.set_defaults(fn=cmd_queue_summary)
    for name, text in (
        ("hold", "stop delivering messages (whole messages)"),
        ("release", "resume held messages and recipients"),
        ("delete", "drop recipients, without a DSN"),
        ("bounce", "return recipients to the sender with a DSN"),
        ("flush", "retry deferred recipients now (all when nothing is selected)"),
    ):
        a = qsub.add_parser(
            name,
            help=text,
            description=f"{text[0].upper()}{text[1:]}. Select by queue ids ('-' reads them "
            "from standard input), ALL, and the options; the options combine.",
        )
        _selector_arguments(a)
        a.add_argument("--reason", default="", help="recorded with the action")
        if name == "release":
            a.add_argument(
                "--level",
                choices=[str(level) for level in Level],
                help="deliver these messages, named by queue id, at this transport level "
                "instead of what their class requires (recorded with who, when and --reason)",
            )
        a.set_defaults(fn=cmd_queue_action)
    for name, text in (
        ("suspend", "stop dispatching a domain's recipients until resumed"),
        ("resume", "dispatch a suspended domain's recipients again"),
    ):
        d = qsub.add_parser(name, help=text)
        d.add_argument("domain")
        d.add_argument("--reason", default="", help="recorded with the action")
        d.add_argument("--json", action="store_true")
        d.set_defaults(fn=cmd_queue_domain)
    qd = qsub.add_parser("suspended", help="domains whose delivery is suspended")
    qd.add_argument("--json", action="store_true")
    qd.set_defaults(fn=cmd_queue_suspended)


def _selector_arguments(a: argparse.ArgumentParser) -> None:
    a.add_argument("ids", nargs="*", metavar="QUEUE_ID", help="queue ids, '-' or ALL")
    a.add_argument(
        "--domain", dest="domains", action="append", default=[], help="recipient domain (repeat)"
    )
    a.add_argument(
        "--class",
        dest="classes",
        action="append",
        default=[],
        choices=[str(c) for c in RiskClass],
        help="recipient class (repeat)",
    )
    a.add_argument(
        "--state", dest="states", action="append", default=[], choices=ops.STATES, help="(repeat)"
    )
    a.add_argument("--older-than", metavar="AGE", help="received before, e.g. 30m, 2h, 5d")
    a.add_argument("--younger-than", metavar="AGE", help="received within, e.g. 10m")
    a.add_argument("--dry-run", action="store_true", help="list what would change; change nothing")
    a.add_argument("--json", action="store_true", help="JSON lines, one message per line")
