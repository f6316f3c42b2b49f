"""The relay's daily TLS report run (`mxg.pipeline.tlsrpt`): which days
are due, each closed day sent once, the day still running never."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio

from mxg.config import Config
from mxg.pipeline.tlsrpt import _scheduled, due_days
from mxg.store import Store
from mxg.tlsrpt.record import Discovery
from mxg.tlsrpt.sessions import SessionKey, Tally
from tests.test_tlsrpt_send import NOPOL, FakeOutbox


def test_a_day_is_due_from_send_hour_on_and_two_days_back() -> None:
    assert due_days(datetime(2026, 3, 5, 0, 59, tzinfo=UTC), 1) == [
        "2026-03-01",
        "2026-03-02",
        "2026-03-03",
    ]
    assert due_days(datetime(2026, 3, 5, 1, 0, tzinfo=UTC), 1)[-1] == "2026-03-04"
    assert due_days(datetime(2026, 3, 5, 0, 0, tzinfo=UTC), 0)[-1] == "2026-03-04"


def test_the_scheduled_run_sends_closed_days_once_and_never_today(tmp_path: Path) -> None:
    store = Store(tmp_path / "q.db")
    today = datetime.now(UTC).date()
    yesterday = (today - timedelta(days=1)).isoformat()
    store.add_tls_sessions(
        Tally(
            {
                SessionKey(yesterday, "x.test", NOPOL): 4,
                SessionKey(today.isoformat(), "x.test", NOPOL): 2,
            }
        )
    )
    cfg = Config.model_validate({"tlsrpt": {"enabled": True, "send_hour": 0}})
    ctx: Any = SimpleNamespace(store=store, cfg=cfg)

    async def lookup(name: str) -> list[str] | None:
        return ["v=TLSRPTv1; rua=https://r.x.test/"] if name == "_smtp._tls.x.test" else None

    outbox = FakeOutbox()
    finished: set[str] = set()
    lookups = Discovery(lookup)
    anyio.run(_scheduled, ctx, lookups, outbox, finished)
    assert outbox.posts == ["https://r.x.test/"]
    assert yesterday in finished and today.isoformat() not in finished
    assert store.tlsrpt_marks(yesterday, "x.test")["https://r.x.test/"].status == "sent"
    # The next tick, and a restart (a new `finished`), send nothing again.
    anyio.run(_scheduled, ctx, lookups, outbox, finished)
    anyio.run(_scheduled, ctx, lookups, outbox, set())
    assert outbox.posts == ["https://r.x.test/"]
