"""``mxg queue list|show|flush|hold|release|delete``: works on the queue
of a running or stopped relay through its database (the relay picks
changes up within a second); hold, release and delete are recorded with
who made them and why."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

from mxg.cli.common import _load, operator
from mxg.errors import MxgError, StoreDamaged


def _store(args: argparse.Namespace) -> Any:
    from mxg.store import Store

    cfg = _load(args)
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


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def cmd_queue_list(args: argparse.Namespace) -> int:
    store = _store(args)
    items = store.listing(include_done=args.all)
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    if not items:
        print("queue is empty")
        return 0
    rows = [
        [
            i["queue_id"],
            _when(i["received_ms"]),
            "held" if i["state"] == "active" and i["held"] else i["state"],
            i["class"] or "-",
            str(i["size"]),
            f"<{i['sender']}>",
            f"{i['waiting']}/{i['rcpts']}",
            (i["reason"] or "")[:60],
        ]
        for i in items
    ]
    print(
        _table(
            rows,
            ["QUEUE ID", "RECEIVED", "STATE", "CLASS", "SIZE", "SENDER", "WAITING", "LAST REASON"],
        )
    )
    return 0


def cmd_queue_show(args: argparse.Namespace) -> int:
    store = _store(args)
    d = store.details(args.queue_id)
    if d is None:
        raise MxgError(f"no message {args.queue_id} in the queue")
    if args.json:
        print(json.dumps(d, indent=2))
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
    rows = [
        [
            f"<{r['address']}>",
            r["class"] or "-",
            r["status"],
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


def _actor() -> str:
    return operator()


def cmd_queue_action(args: argparse.Namespace) -> int:
    store = _store(args)
    action = args.queue_cmd
    if action == "flush":
        n = store.flush(args.queue_id)
        print(f"{n} deferred recipient(s) scheduled for immediate delivery")
        return 0
    if action == "release" and args.level and not args.reason:
        raise MxgError("release --level changes the requirement: give --reason (it is recorded)")
    if action == "release":
        done = store.release(args.queue_id, _actor(), args.reason, args.level)
    else:
        fn = {"hold": store.hold, "delete": store.delete}[action]
        done = fn(args.queue_id, _actor(), args.reason)
    if not done:
        raise MxgError(
            f"{action}: no {'held ' if action == 'release' else ''}message "
            f"{args.queue_id} that can be changed"
        )
    print(f"{args.queue_id}: {action} done")
    return 0
