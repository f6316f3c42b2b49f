"""The command line: the parser of every subcommand, each pointing at its
function in this package, ``mxg version``, and `main`, which turns
configuration and operator errors into a message and an exit status."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mxg import __version__
from mxg.cli.audit import add_audit_parsers
from mxg.cli.check import cmd_check
from mxg.cli.classify import add_classify_parser
from mxg.cli.config import cmd_config_check, cmd_config_example
from mxg.cli.evidence import add_evidence_parser
from mxg.cli.partners import add_partners_parser
from mxg.cli.proof import add_proof_parser
from mxg.cli.queue import cmd_queue_action, cmd_queue_list, cmd_queue_show
from mxg.cli.report import add_report_parser
from mxg.cli.retention import add_prune_parser
from mxg.cli.run import cmd_run
from mxg.errors import ConfigError, MxgError
from mxg.vocab import Level


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

    add_classify_parser(sub)

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

    add_audit_parsers(sub)
    add_evidence_parser(sub)
    add_proof_parser(sub)
    add_partners_parser(sub)
    add_prune_parser(sub)
    add_report_parser(sub)

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
