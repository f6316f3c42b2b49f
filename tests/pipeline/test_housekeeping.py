"""Housekeeping beside the message path (`pipeline/housekeeping.py`)
while the store is unreachable a moment: it waits for the store, as the
message path does, and never ends the relay."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import pytest

from mxg.dns import Policy, StsCache
from mxg.pipeline import housekeeping
from mxg.store.postgres import StoreUnreachable
from tests.pipeline.fakes import serving, stages
from tests.support.pgproxy import CuttingProxy
from tests.support.postgres import Postgres
from tests.test_mtasts import GOOD, _ResolverWithHost


@pytest.fixture
def store_at(postgres: Postgres, proxy: CuttingProxy) -> str:
    """PostgreSQL only, through the proxy: a SQLite store does not go
    away for a moment."""
    return proxy.url(postgres.migrated_database())


def test_an_mta_sts_refresh_the_store_cannot_save_does_not_end_the_relay(
    tmp_path: Path, proxy: CuttingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 8461 §10.2's refresh saves the renewed policy; the store
    unreachable then ended the refresher's task, and with it the relay.
    The renewed policy is in force in memory; the store has it at the
    next refresh once it answers again."""
    now = [1_000_000.0]

    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=GOOD, headers={"content-type": "text/plain"})

    cache = StsCache(
        _ResolverWithHost("v=STSv1; id=7"),  # type: ignore[arg-type]
        httpx.AsyncClient(transport=httpx.MockTransport(serve)),
        clock=lambda: now[0],
    )
    st, _ = stages(tmp_path)
    store = st.ctx.store
    saves: list[float] = []

    def save(policy: Policy, expires: float) -> None:
        saves.append(expires)
        store.save_sts(policy, expires)

    cache.save = save
    monkeypatch.setattr(housekeeping, "REFRESH_INTERVAL", 0.05)

    def stored() -> list[float] | None:
        try:
            return [expires for _, expires in store.load_sts()]
        except StoreUnreachable:
            return None

    async def until(what: str, check: Callable[[], bool]) -> None:
        with anyio.fail_after(10):
            while not check():
                await anyio.sleep(0.05)

    async def body() -> None:
        first = await cache.policy("example.com")
        assert first is not None and stored() == saves == [now[0] + first.max_age]
        now[0] += first.max_age * 0.6  # due for a refresh
        proxy.refuse()  # down: a connection opened again fails too
        async with anyio.create_task_group() as tg:
            tg.start_soon(housekeeping.sts_refresher, st.ctx, cache)
            await until("the refresh tried to save", lambda: len(saves) == 2)
            proxy.accept()
            await until("the store back", lambda: stored() == saves[:1])
            now[0] += first.max_age * 0.6  # due again
            await until("the next refresh saved", lambda: stored() == saves[2:3])
            tg.cancel_scope.cancel()

    try:
        serving(st, body)
    finally:
        store.close()
