"""``mxg check``: which transport level can a domain receive? Probes
every MX host through the delivery code path (`mxg.check`) and writes
the report as text, JSON or CSV. It never sends mail."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mxg.cli.common import _load
from mxg.errors import UsageError


def cmd_check(args: argparse.Namespace) -> int:
    import anyio

    from mxg import check

    domains = [d.strip() for d in args.domains]
    if args.file == "":
        raise UsageError("check: --file needs a file name ('-' for standard input)")
    if args.file is not None:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        listed = [d.split("#", 1)[0].strip() for d in text.splitlines()]
        if not any(listed):
            where = "standard input" if args.file == "-" else args.file
            raise UsageError(f"check: --file {where} lists no domain")
        domains += listed
    domains = list(dict.fromkeys(d for d in domains if d))
    if not domains:
        raise UsageError("check: name at least one domain, or --file FILE")
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
    return check.exit_code(reports, args.require)
