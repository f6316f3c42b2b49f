"""The ``mxg`` command.

``mxg run`` starts the relay; ``mxg config check|example`` validates or
prints configuration; ``mxg queue list|show|flush|hold|release|delete``
works on the queue of a running or stopped relay (through its database;
the relay picks changes up within a second); ``mxg version``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mxg import __version__
from mxg.config import Config, load_config
from mxg.errors import ConfigError, MxgError, StoreDamaged
from mxg.vocab import Level


def _config_path(args: argparse.Namespace) -> Path | None:
    p = getattr(args, "config", None) or os.environ.get("MXG_CONFIG")
    return Path(p) if p else None


def _load(args: argparse.Namespace) -> Config:
    return load_config(_config_path(args))


# -- run --------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    import anyio

    from mxg.deliverylog import setup_logging
    from mxg.pipeline import Relay

    # Rule 8: every file the relay creates (spool, store, WAL, log) is
    # readable by its user alone, whatever umask it was started with.
    os.umask(0o077)
    cfg = _load(args)
    backend = args.backend or cfg.run.backend
    setup_logging(cfg.log.level, cfg.log.format, cfg.log.file)
    relay = Relay(cfg)

    async def main() -> None:
        async with anyio.create_task_group() as tg:

            async def signals() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as sigs:
                    async for _ in sigs:
                        relay.stop()
                        return

            tg.start_soon(signals)
            await relay.run()
            tg.cancel_scope.cancel()

    options: dict[str, Any] = {"use_uvloop": True} if backend == "asyncio" else {}
    try:
        anyio.run(main, backend=backend, backend_options=options)
    except BaseExceptionGroup as group:
        # A start-up refusal (lock held, unsafe directory, port taken) is
        # one line for the operator, not the task group's traceback.
        mxg_errors, _rest = group.split(MxgError)
        if mxg_errors is None:
            raise
        raise _leaves(mxg_errors)[0] from None
    return 0


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        out += _leaves(e) if isinstance(e, BaseExceptionGroup) else [e]
    return out


# -- config -----------------------------------------------------------------


def cmd_config_check(args: argparse.Namespace) -> int:
    cfg = load_config(Path(args.file))
    print(
        f"{args.file}: OK (listen {', '.join(cfg.server.listen)}, "
        f"data {cfg.data.directory}, backend {cfg.run.backend})"
    )
    return 0


def cmd_config_example(args: argparse.Namespace) -> int:
    from mxg.config.example import EXAMPLE

    sys.stdout.write(EXAMPLE)
    return 0


# -- queue ------------------------------------------------------------------


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
    try:
        return getpass.getuser()
    except Exception:
        return f"uid {os.getuid()}"


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


def cmd_classify(args: argparse.Namespace) -> int:
    from mxg import _core
    from mxg.boundary import draft_envelope
    from mxg.classify import classify, requirement

    cfg = _load(args)
    message = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    features = json.loads(_core.scan(message, json.dumps(cfg.scan_options())))
    env = draft_envelope(args.sender, args.to)
    c = classify(cfg, env, features)
    reqs = [
        requirement(cfg, k, c.to_json(), cfg.policy_for(a.rpartition("@")[2].lower()))
        for a, k in zip(args.to, c.recipient_classes, strict=True)
    ]
    if args.json:
        out = c.to_json() | {
            "features": features,
            "recipients": [
                {"address": a, "class": k, "level": r.level, "e2e_missing": r.e2e_missing}
                for a, k, r in zip(args.to, c.recipient_classes, reqs, strict=True)
            ],
        }
        print(json.dumps(out, indent=2))
        return 0
    print(f"class: {c.message_class}")
    for f in c.fired:
        only = f" (recipients {', '.join(f['recipients'])})" if "recipients" in f else ""
        print(f"  {f['rule']}: {f['class']} - {f['why']}{only}")
    for note in c.notes:
        print(f"  note: {note}")
    print(f"end-to-end encrypted: {c.e2e or 'no'}")
    found = ", ".join(f"{k} {v}" for k, v in sorted(features.get("detectors", {}).items()))
    print(f"detectors: {found or 'none'}")
    for a, k, r in zip(args.to, c.recipient_classes, reqs, strict=True):
        extra = "; end-to-end encryption missing" if r.e2e_missing else ""
        print(f"<{a}>: class {k}, needs {r.level} ({r.why}){extra}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import anyio

    from mxg import check

    domains = list(args.domains)
    if args.file:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        domains += [d.split("#", 1)[0].strip() for d in text.splitlines()]
    domains = list(dict.fromkeys(d for d in domains if d))
    if not domains:
        raise MxgError("check: name at least one domain, or --file")
    cfg = _load(args)
    show_progress = args.file is not None and sys.stderr.isatty()

    async def run() -> list[check.DomainReport]:
        return await check.check_domains(
            cfg,
            domains,
            concurrency=args.concurrency,
            progress=check.stderr_progress if show_progress else None,
        )

    reports = anyio.run(run, backend=cfg.run.backend)
    if args.json:
        output = check.to_json(reports) + "\n"
    elif args.csv:
        output = check.to_csv(reports)
    else:
        output = check.to_text(reports)
    if args.out:
        Path(args.out).write_text(output)
    else:
        sys.stdout.write(output)
    return check.exit_code(reports)


def cmd_version(args: argparse.Namespace) -> int:
    from mxg import _core

    print(f"mxg {__version__} (engine {_core.__version__})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mxg", description="mxg outbound mail security gateway")
    p.add_argument(
        "-c", "--config", help="configuration file (default: $MXG_CONFIG or the embedded defaults)"
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    run = sub.add_parser("run", help="start the relay")
    run.add_argument("--backend", choices=["asyncio", "trio"], help="event loop (default: config)")
    run.set_defaults(fn=cmd_run)

    conf = sub.add_parser("config", help="check or print configuration")
    csub = conf.add_subparsers(dest="config_cmd", required=True)
    chk = csub.add_parser("check", help="validate a configuration file")
    chk.add_argument("file")
    chk.set_defaults(fn=cmd_config_check)
    ex = csub.add_parser("example", help="print a complete commented configuration")
    ex.set_defaults(fn=cmd_config_example)

    q = sub.add_parser("queue", help="inspect and change the queue")
    qsub = q.add_subparsers(dest="queue_cmd", required=True)
    ql = qsub.add_parser("list", help="messages in the queue")
    ql.add_argument("--json", action="store_true")
    ql.add_argument("--all", action="store_true", help="include finished messages")
    ql.set_defaults(fn=cmd_queue_list)
    qs = qsub.add_parser("show", help="one message with its recipients and attempts")
    qs.add_argument("queue_id")
    qs.add_argument("--json", action="store_true")
    qs.set_defaults(fn=cmd_queue_show)
    qf = qsub.add_parser("flush", help="retry deferred recipients now")
    qf.add_argument("queue_id", nargs="?")
    qf.set_defaults(fn=cmd_queue_action)
    for name, text in (
        ("hold", "stop delivering a message"),
        ("release", "resume a held message"),
        ("delete", "drop a message's unfinished recipients"),
    ):
        a = qsub.add_parser(name, help=text)
        a.add_argument("queue_id")
        a.add_argument("--reason", default="", help="recorded with the action")
        if name == "release":
            a.add_argument(
                "--level",
                choices=[str(level) for level in Level],
                help="deliver this one message at this transport level instead of what its"
                " class requires (recorded with who, when and --reason)",
            )
        a.set_defaults(fn=cmd_queue_action)

    cl = sub.add_parser(
        "classify",
        help="classify a message file as the relay would (never sends mail)",
        description="Scans an RFC 5322 message with the configured rules and prints its "
        "risk class, the rules that fired and each recipient's transport requirement.",
    )
    cl.add_argument("file", help="message file ('-' for standard input)")
    cl.add_argument("--from", dest="sender", default="", help="envelope sender")
    cl.add_argument("--to", action="append", default=[], help="envelope recipient (repeat)")
    cl.add_argument("--json", action="store_true")
    cl.set_defaults(fn=cmd_classify)

    chk = sub.add_parser(
        "check",
        help="which transport level can a domain receive? (never sends mail)",
        description="Probes every MX host through the delivery code path up to the TLS "
        "handshake and reports DNSSEC, TLSA, STARTTLS, TLS parameters, certificate and the "
        "level reached. Exit status: 0 qualified, 1 encrypted, 2 opportunistic, 3 none, "
        "4 unresolvable; with several domains that of the weakest.",
    )
    chk.add_argument("domains", nargs="*")
    chk.add_argument("--file", help="domains, one per line ('-' for standard input)")
    fmt = chk.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    chk.add_argument("--out", help="write the report to this file")
    chk.add_argument("--concurrency", type=int, default=20, help="domains at once")
    chk.set_defaults(fn=cmd_check)

    v = sub.add_parser("version", help="print the version")
    v.set_defaults(fn=cmd_version)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.fn(args)
        return code
    except ConfigError as e:
        print("configuration errors:", file=sys.stderr)
        for line in e.problems:
            print(f"  {line}", file=sys.stderr)
        return 2
    except MxgError as e:
        print(f"mxg: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
