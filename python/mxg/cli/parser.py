"""The command line: the parser of every subcommand, each pointing at its
function in this package, ``mxg version``, and `main`, which turns every
error into one line and a documented exit status (`mxg.cli.exits`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mxg import __version__
from mxg.cli.audit import add_audit_parsers
from mxg.cli.check import cmd_check
from mxg.cli.classify import add_classify_parser
from mxg.cli.cluster import add_cluster_parser
from mxg.cli.config import cmd_config_check, cmd_config_example
from mxg.cli.decide import add_decide_parser
from mxg.cli.envelope import add_envelope_parser
from mxg.cli.evidence import add_evidence_parser
from mxg.cli.exits import exit_status
from mxg.cli.partners import add_partners_parser
from mxg.cli.proof import add_proof_parser
from mxg.cli.queue import add_queue_parser
from mxg.cli.report import add_report_parser
from mxg.cli.retention import add_prune_parser
from mxg.cli.run import cmd_run
from mxg.cli.store import add_store_parser
from mxg.cli.tlsrpt import add_tlsrpt_parser
from mxg.cli.web import add_web_parser
from mxg.vocab import Level


def cmd_version(args: argparse.Namespace) -> int:
    from mxg import _core

    print(f"mxg {__version__} (engine {_core.__version__})")
    return 0


CONFIG_HELP = (
    "configuration file (default: $MXG_CONFIG, else /etc/mxg/mxg.toml if it exists,"
    " else the embedded defaults)"
)


class _Version(argparse.Action):
    """``mxg --version``: as ``mxg version``."""

    def __init__(self, option_strings: list[str], dest: str, **_: object) -> None:
        super().__init__(
            option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="print the version"
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[object] | None,
        option_string: str | None = None,
    ) -> None:
        cmd_version(namespace)
        parser.exit()


def _config_anywhere(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``-c`` after the subcommand too (``mxg config check -c FILE``), at
    every level; given in both places, the later one counts."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.add_argument("-c", "--config", default=argparse.SUPPRESS, help=CONFIG_HELP)
                _config_anywhere(sub)
    return parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mxg", description="mxg outbound mail security gateway")
    p.add_argument("-c", "--config", help=CONFIG_HELP)
    p.add_argument("-V", "--version", action=_Version)
    sub = p.add_subparsers(dest="cmd", required=True)

    run = sub.add_parser("run", help="start the relay")
    run.add_argument("--backend", choices=["asyncio", "trio"], help="event loop (default: config)")
    run.set_defaults(fn=cmd_run)

    conf = sub.add_parser("config", help="check or print configuration")
    csub = conf.add_subparsers(dest="config_cmd", required=True)
    chk = csub.add_parser(
        "check",
        help="validate a configuration file and what it names on this host",
        description="Checks the file (or the one -c names) and, on this host: the TLS "
        "certificate and key load and match, CA files hold certificates, the data and log "
        "directories can be written, run.user exists. Exit status 0, or 78 with one line "
        "per problem.",
    )
    chk.add_argument("file", nargs="?", help="configuration file (default: as -c)")
    chk.set_defaults(fn=cmd_config_check)
    ex = csub.add_parser("example", help="print a complete commented configuration")
    ex.set_defaults(fn=cmd_config_example)

    add_queue_parser(sub)
    add_decide_parser(sub)

    add_classify_parser(sub)

    chk = sub.add_parser(
        "check",
        help="which transport level can a domain receive? (never sends mail)",
        description="Probes every MX host through the delivery code path up to the TLS "
        "handshake and reports DNSSEC, TLSA, STARTTLS, TLS parameters, certificate and the "
        "level reached. Exit status: 0 every domain reaches --require, 3 some domain only "
        "below it, 4 some domain unresolvable; errors as for every command (1, 2, 78, ...).",
    )
    chk.add_argument("domains", nargs="*")
    chk.add_argument("--file", help="domains, one per line ('-' for standard input)")
    fmt = chk.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    chk.add_argument("--out", help="write the report to this file")
    chk.add_argument("--concurrency", type=int, default=20, help="domains at once")
    chk.add_argument(
        "--require",
        default="qualified",
        choices=[str(level) for level in Level],
        help="the level the exit status asks for (default: qualified)",
    )
    chk.set_defaults(fn=cmd_check)

    add_audit_parsers(sub)
    add_evidence_parser(sub)
    add_proof_parser(sub)
    add_partners_parser(sub)
    add_prune_parser(sub)
    add_web_parser(sub)
    add_report_parser(sub)
    add_envelope_parser(sub)
    add_tlsrpt_parser(sub)
    add_store_parser(sub)
    add_cluster_parser(sub)

    sub.add_parser("version", help="print the version").set_defaults(fn=cmd_version)
    return _config_anywhere(p)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.fn(args)
        return code
    except BaseException as e:
        # Each kind of error gets one line and its status (exits.py).
        return exit_status(e)
