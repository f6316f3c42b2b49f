"""Running mxg as an operator would: ``python -m mxg -c FILE run``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .dns import free_port


class MxgProcess:
    def __init__(
        self,
        workdir: Path,
        config: str,
        backend: str = "asyncio",
        env: dict[str, str] | None = None,
        python: str = sys.executable,
    ) -> None:
        self.workdir = workdir
        # The interpreter whose mxg runs: this one, or that of another
        # environment (tests/e2e/test_wheel.py).
        self.python = python
        self.env = env or {}
        self.backend = backend
        self.port = free_port()
        self.config_path = workdir / "mxg.toml"
        self.config_path.write_text(config.replace("@LISTEN@", f"127.0.0.1:{self.port}"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "mxg.log"

    def start(self) -> MxgProcess:
        self.log = open(self.log_path, "ab")  # noqa: SIM115
        env = {**os.environ, **self.env}
        self.proc = subprocess.Popen(
            [
                self.python,
                "-m",
                "mxg",
                "-c",
                str(self.config_path),
                "run",
                "--backend",
                self.backend,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.workdir,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mxg exited at start:\n{self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.recv(100)
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mxg did not start listening:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        self.log.close()
        return code

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.python, "-m", "mxg", "-c", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.workdir,
            env={**os.environ, **self.env},
            check=False,
        )
