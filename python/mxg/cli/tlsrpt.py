"""``mxg tlsrpt send --day YYYY-MM-DD [--domain D] [--dry-run]`` builds
a day's TLS reports (RFC 8460) and has the running relay send them at
once (mail reports go through its queue); ``--dry-run`` prints them and
sends nothing. ``mxg tlsrpt show [--day D]`` lists the aggregate."""

from __future__ import annotations

import argparse
import time
from datetime import date
from typing import Any

from mxg.cli.common import _load, emit, operator
from mxg.cli.queue import _store
from mxg.errors import InstanceBusy, MxgError

# How long `send` waits for the relay to serve the request.
WAIT_SECONDS = 120.0


def _day(value: str) -> str:
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a day (YYYY-MM-DD)") from None


def cmd_tlsrpt(args: argparse.Namespace) -> int:
    if args.action == "show":
        return _show(args)
    if args.day is None:
        raise MxgError("tlsrpt send: name the day (--day YYYY-MM-DD)")
    if args.day >= date.today().isoformat():
        raise MxgError(f"tlsrpt send: {args.day} has not ended yet (UTC); reports cover whole days")
    store = _store(args)
    if args.dry_run:
        return _dry_run(args, store)
    cfg = _load(args)
    if not cfg.tlsrpt.active:
        raise MxgError("tlsrpt send: TLS reports are off ([tlsrpt] enabled, or no dkim_key)")
    _relay_must_run(cfg.data.directory)
    request = store.request_tlsrpt(args.day, args.domain or "", operator())
    deadline = time.monotonic() + args.wait
    while (row := store.tlsrpt_request(request))["done_ms"] is None:
        if time.monotonic() > deadline:
            raise MxgError(
                f"tlsrpt send: the relay did not serve the request within {args.wait:g} s;"
                " it stays queued and is served when the relay gets to it"
            )
        time.sleep(0.5)
    if row["error"]:
        raise MxgError(f"tlsrpt send: {row['error']}")
    import orjson

    outcomes: list[dict[str, Any]] = orjson.loads(row["result"])
    if not outcomes:
        print(f"{args.day}: no sessions{' with ' + args.domain if args.domain else ''}: no report")
    for o in outcomes:
        rua = o["rua"] or "-"
        print(f"{o['day']} {o['domain']} {rua} {o['status']} {o['detail']}".rstrip())
    failed = [o for o in outcomes if o["status"] in ("failed", "gave-up")]
    if failed:
        raise MxgError(f"tlsrpt send: {len(failed)} report(s) not delivered (see above)")
    return 0


def _relay_must_run(data_dir: Any) -> None:
    from mxg.datadir import InstanceLock

    try:
        lock = InstanceLock.acquire(data_dir)
    except InstanceBusy:
        return
    lock.release()
    raise MxgError(
        "tlsrpt send: the relay is not running; reports go through its queue (start mxg run),"
        " or use --dry-run"
    )


def _dry_run(args: argparse.Namespace, store: Any) -> int:
    import orjson

    from mxg.tlsrpt.send import day_reports, reporter_of

    # No DKIM key needed (nor read: it may be readable by run.user only).
    reporter = reporter_of(_load(args))
    reports = day_reports(store, reporter, args.day, [args.domain] if args.domain else None)
    if not reports:
        raise MxgError(f"tlsrpt send: no sessions on {args.day}: no report")
    text = "".join(
        orjson.dumps(r.body, option=orjson.OPT_INDENT_2).decode() + "\n" for r in reports
    )
    emit(text, None)
    return 0


def _show(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.day is None:
        days = store.tlsrpt_days()
        lines = [f"{'day':<12}{'domains':>8}{'sessions':>10}"]
        lines += [f"{d:<12}{n:>8}{s:>10}" for d, n, s in days]
        emit("\n".join(lines) + "\n" if days else "no TLS sessions recorded\n", None)
        return 0
    domains = [args.domain] if args.domain else store.tlsrpt_domains(args.day)
    lines = [f"{'domain':<32}{'ok':>8}{'failed':>8}  sent"]
    for d in domains:
        rows = store.tlsrpt_rows(args.day, d)
        ok = sum(r["sessions"] for r in rows if not r["result"])
        bad = sum(r["sessions"] for r in rows if r["result"])
        marks = store.tlsrpt_marks(args.day, d)
        sent = ", ".join(f"{k or 'no record'}: {m.status}" for k, m in marks.items()) or "-"
        lines.append(f"{d:<32}{ok:>8}{bad:>8}  {sent}")
    emit("\n".join(lines) + "\n", None)
    return 0


def add_tlsrpt_parser(sub: Any) -> None:
    p = sub.add_parser(
        "tlsrpt",
        help="TLS reports (RFC 8460): send a day's reports now, or show the aggregate",
        description="'mxg tlsrpt send --day D' has the running relay send day D's TLS "
        "reports at once (each destination at most once a day; mail through the relay's "
        "queue); --dry-run prints the reports' JSON and sends nothing. 'mxg tlsrpt show' "
        "lists the days counted, or with --day each domain's sessions and what was sent.",
    )
    p.add_argument("action", choices=["send", "show"])
    p.add_argument("--day", type=_day, help="the UTC day, YYYY-MM-DD")
    p.add_argument("--domain", help="only this policy domain")
    p.add_argument("--dry-run", action="store_true", help="print the reports, send nothing")
    p.add_argument("--wait", type=float, default=WAIT_SECONDS, help="seconds to wait for the relay")
    p.set_defaults(fn=cmd_tlsrpt)
