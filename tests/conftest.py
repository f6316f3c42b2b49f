"""Shared fixtures. The extension module must be at least as new as every
Rust source, or the tests would silently run old code."""

from __future__ import annotations

from pathlib import Path

import pytest

import mxg._core

pytest_plugins = ["tests.engine_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
# The crates mxg._core is built from (the bench sink is not one of them).
CORE_CRATES = ("mxg-smtp", "mxg-spool", "mxg-dane", "mxg-relay", "mxg-py")


def _check_fresh_extension() -> None:
    built = Path(mxg._core.__file__ or "").stat().st_mtime
    crates = [ROOT / "rust" / c for c in CORE_CRATES]
    sources = [
        *(p for c in crates for p in c.rglob("*.rs")),
        *(c / "Cargo.toml" for c in crates),
    ]
    stale = [p for p in sources if p.stat().st_mtime > built]
    if stale:
        raise pytest.UsageError(
            f"mxg._core ({mxg._core.__file__}) is older than {stale[0].relative_to(ROOT)}: "
            "rebuild it with `maturin develop` (./scripts/test does this)"
        )


_check_fresh_extension()


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
