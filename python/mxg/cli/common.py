"""What every command shares: finding the configuration file it names
(``-c``, else ``$MXG_CONFIG``, else ``/etc/mxg/mxg.toml`` when it exists,
else the embedded defaults) and loading it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mxg.config import Config, load_config

# The configuration of an installed relay (docs/install.md).
INSTALLED_CONFIG = Path("/etc/mxg/mxg.toml")


def _config_path(args: argparse.Namespace) -> Path | None:
    p = getattr(args, "config", None) or os.environ.get("MXG_CONFIG")
    if p:
        return Path(p)
    return INSTALLED_CONFIG if INSTALLED_CONFIG.exists() else None


def _load(args: argparse.Namespace) -> Config:
    return load_config(_config_path(args))


def operator() -> str:
    """Who runs this command, for the records of what it changes: the real
    operator behind sudo (``SUDO_USER``), not ``root``."""
    import getpass

    try:
        user = getpass.getuser()
    except Exception:
        user = f"uid {os.getuid()}"
    sudo_user = os.environ.get("SUDO_USER")
    if os.geteuid() == 0 and sudo_user and sudo_user != "root":
        return f"{sudo_user} (sudo)"
    return user


def emit(text: str, out: str | None) -> None:
    """A command's output: to the file `--out` names, else to stdout."""
    if out:
        Path(out).write_text(text)
    else:
        import sys

        sys.stdout.write(text)
