"""The ``mxg`` command as an operator runs it: a separate process, with a
configuration file, its output captured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def mxg(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mxg", "-c", str(config), *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ},
    )
