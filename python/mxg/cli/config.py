"""``mxg config check|example``: validates a configuration file, or
prints a complete commented one with every default."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mxg.config import load_config


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
