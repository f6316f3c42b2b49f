"""``mxg config check|example``: validates a configuration file and what
it names on this host, or prints a complete commented one with every
default."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mxg.cli.common import _config_path
from mxg.config import load_config
from mxg.config.host import host_problems
from mxg.errors import ConfigError


def cmd_config_check(args: argparse.Namespace) -> int:
    # The file named here, else the one -c, $MXG_CONFIG or the installed
    # default name, as `mxg run` would read it.
    path = Path(args.file) if args.file else _config_path(args)
    where = str(path) if path else "(embedded defaults)"
    cfg = load_config(path)
    problems = host_problems(cfg, where)
    if problems:
        raise ConfigError(problems)
    print(
        f"{where}: OK (listen {', '.join(cfg.server.listen)}, "
        f"data {cfg.data.directory}, backend {cfg.run.backend})"
    )
    return 0


def cmd_config_example(args: argparse.Namespace) -> int:
    from mxg.config.example import EXAMPLE

    sys.stdout.write(EXAMPLE)
    return 0
