"""Engines started in-process for protocol tests of the data plane."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mxg._core import Engine
from tests.support.certs import self_signed


def engine_config(tmp_path: Path, **over: Any) -> dict[str, Any]:
    cert, key = self_signed(tmp_path / "certs", "mxg.test")
    cfg: dict[str, Any] = {
        "hostname": "mxg.test",
        "listen": ["127.0.0.1:0"],
        "spool_dir": str(tmp_path / "spool"),
        "client_networks": ["127.0.0.1/32"],
        "tls_cert": str(cert),
        "tls_key": str(key),
        "shutdown_grace_ms": 5000,
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k].update(v)
        else:
            cfg[k] = v
    return cfg


class Running:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.port = int(engine.local_addrs()[0].rsplit(":", 1)[1])
        self.events: list[dict[str, Any]] = []

    def wait_events(self, kind: str, count: int = 1, timeout: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.events += json.loads(self.engine.drain())
            found = [e for e in self.events if e["type"] == kind]
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"expected {count} {kind} events, have {self.events}")

    def received(self) -> list[dict[str, Any]]:
        self.events += json.loads(self.engine.drain())
        return [e["envelope"] for e in self.events if e["type"] == "received"]


@pytest.fixture
def start_engine(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    engines: list[Engine] = []

    def start(**over: Any) -> Running:
        engine = Engine(json.dumps(engine_config(tmp_path, **over)))
        engine.serve()
        engines.append(engine)
        return Running(engine)

    yield start
    for e in engines:
        e.shutdown()
