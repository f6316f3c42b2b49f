"""Every pipeline test runs on both stores: SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pipeline.fakes import STORE_AT
from tests.support.pgproxy import CuttingProxy, cutting_proxy
from tests.support.postgres import Postgres


@pytest.fixture(autouse=True)
def _on_both_stores(store_at: Path | str) -> Iterator[None]:
    STORE_AT["at"] = store_at
    yield
    STORE_AT.clear()


@pytest.fixture
def proxy(postgres: Postgres) -> Iterator[CuttingProxy]:
    """A proxy before the session's PostgreSQL that can cut, hold or
    refuse the relay's connections (the outage tests' `store_at`)."""
    with cutting_proxy(postgres.port) as p:
        yield p
