"""Every pipeline test runs on both stores: SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pipeline.fakes import STORE_AT


@pytest.fixture(autouse=True)
def _on_both_stores(store_at: Path | str) -> Iterator[None]:
    STORE_AT["at"] = store_at
    yield
    STORE_AT.clear()
