"""The receiving side of the benchmark: ``mxg-benchsink`` (a pipelining
SMTP sink, with STARTTLS when given a certificate), and what it cost."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchSink:
    def __init__(
        self,
        binary: Path,
        address: str,
        port: int,
        cert: tuple[Path, Path] | None,
        stats: Path,
    ) -> None:
        self.binary, self.address, self.port, self.cert = binary, address, port, cert
        self.stats_file = stats
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> BenchSink:
        if not self.binary.exists():
            raise RuntimeError(f"{self.binary} is missing: cargo build --release -p mxg-benchsink")
        argv = [str(self.binary), "--listen", f"{self.address}:{self.port}"]
        argv += ["--stats-file", str(self.stats_file)]
        if self.cert is not None:
            argv += ["--cert", str(self.cert[0]), "--key", str(self.cert[1])]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((self.address, self.port), timeout=0.5).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("mxg-benchsink did not start") from None
                time.sleep(0.05)

    def cpu_seconds(self) -> float:
        """User + system CPU the sink has used so far."""
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def stop(self) -> dict[str, int]:
        """Stops the sink; returns its final counts (messages, recipients,
        connections, tls_connections)."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
        try:
            counts: dict[str, int] = json.loads(self.stats_file.read_text())
        except (OSError, ValueError):
            return {}
        # Not counted: start()'s readiness probe.
        counts["connections"] = counts.get("connections", 1) - 1
        return counts
