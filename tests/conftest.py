"""Shared fixtures. The extension module must be at least as new as every
Rust source, or the tests would silently run old code."""

from __future__ import annotations

from pathlib import Path

import pytest

import mxg._core

pytest_plugins = ["tests.engine_fixtures", "tests.support.browser", "tests.support.postgres"]

ROOT = Path(__file__).resolve().parent.parent
# Every crate under rust/ is built into mxg._core (the bench sink lives
# under bench/ and is not); found by listing, so a new crate is covered.
# rust/fuzz is not one: its own workspace of fuzz targets (docs/fuzzing.md).
CORE_CRATES = sorted(
    p.parent for p in (ROOT / "rust").glob("*/Cargo.toml") if p.parent.name != "fuzz"
)


def _check_fresh_extension() -> None:
    built = Path(mxg._core.__file__ or "").stat().st_mtime
    sources = [
        *(p for c in CORE_CRATES for p in c.rglob("*.rs")),
        *(c / "Cargo.toml" for c in CORE_CRATES),
        ROOT / "Cargo.toml",
        ROOT / "Cargo.lock",
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
