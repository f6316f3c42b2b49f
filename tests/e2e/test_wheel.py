"""The package: the wheel maturin builds from this checkout installs into
a fresh virtual environment, from the lock file and the wheel alone (no
Rust toolchain, no source tree), and the relay run from there accepts a
message and delivers it."""

from __future__ import annotations

import os
import re
import smtplib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import mxg_config
from tests.e2e.test_delivery import wait_for
from tests.support.dns import UnboundServer
from tests.support.mxgproc import MxgProcess
from tests.support.sinks import Sink

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# Debian 12's C library: a wheel needing a newer one would not install there.
DEBIAN_12_GLIBC = (2, 36)


def _run(*args: str | Path, timeout: float = 600, **kw: object) -> str:
    out = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kw,  # type: ignore[arg-type]
    )
    assert out.returncode == 0, f"{args}: {out.stdout}{out.stderr}"
    return out.stdout


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once per session, with the test build's (debug) profile: the
    packaging is the same as a release build's, and the compiled crates of
    `maturin develop` are reused."""
    out = tmp_path_factory.mktemp("wheelhouse")
    maturin = Path(sys.executable).parent / "maturin"
    _run(maturin, "build", "--out", out, cwd=ROOT, timeout=1200)
    (built,) = out.glob("mxg-*.whl")
    return built


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the runtime lock and the wheel;
    returns its interpreter."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    _run(sys.executable, "-m", "venv", venv)
    pip = venv / "bin" / "pip"
    lock = ROOT / "requirements" / "runtime.lock"
    _run(pip, "install", "-q", "--require-hashes", "-r", lock)
    # No index: every requirement of the wheel must be in the lock already.
    _run(pip, "install", "-q", "--no-index", wheel)
    return venv / "bin" / "python"


def test_the_wheel_is_abi3_and_installs_on_debian_12(wheel: Path) -> None:
    m = re.fullmatch(r"mxg-[\d.]+-cp311-abi3-manylinux_(\d+)_(\d+)_x86_64\.whl", wheel.name)
    assert m, wheel.name
    assert (int(m[1]), int(m[2])) <= DEBIAN_12_GLIBC


def test_the_installed_wheel_runs_the_relay(
    installed: Path,
    dns_server: UnboundServer,
    sinks: dict[str, Sink],
    tmp_path: Path,
    backend: str,
    mxg_store: str,
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = _run(
        installed, "-c", "import mxg._core; print(mxg._core.__file__)", cwd=tmp_path, env=env
    )
    assert where.startswith(str(installed.parent.parent)), where
    script = installed.parent / "mxg"
    assert _run(script, "--version", cwd=tmp_path, env=env).startswith("mxg ")

    config = mxg_config(dns_server, tmp_path / "data", store=mxg_store)
    mxg = MxgProcess(tmp_path, config, backend, env, python=str(installed))
    mxg.start()
    try:
        with smtplib.SMTP("127.0.0.1", mxg.port, timeout=30) as c:
            c.sendmail(
                "ops@internal.test",
                ["someone@good.test"],
                "Message-ID: <from-the-wheel@internal.test>\r\n\r\nhello\r\n",
            )
        delivered: Callable[[], bool] = lambda: any(  # noqa: E731
            m.message_id == "<from-the-wheel@internal.test>"
            for s in (sinks["good1"], sinks["good2"])
            for m in list(s.messages)
        )
        wait_for(delivered, what="delivery by the installed relay")
    finally:
        assert mxg.stop() == 0
