"""The store's failure modes, met so that the relay keeps serving: a
damaged index at start (moved aside and rebuilt from the spool, rule 10),
a full disk while running (issue 14 item 6: the write waits), and a
PostgreSQL store that is unreachable for a while (restarting, failing
over): the same waiting, and no new mail meanwhile (`StoreWatch`)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from mxg.deliverylog import event, log
from mxg.errors import EngineStopped, StoreDamaged
from mxg.pipeline.engine import Engine
from mxg.store import Store, is_full, is_unavailable, quarantine
from mxg.store.postgres import redact
from mxg.store.schema import SCHEMA_VERSION


@contextlib.contextmanager
def survives_a_full_store() -> Iterator[None]:
    """A write that finds the store's disk full, or a PostgreSQL store
    unreachable, ends this batch or scan, not the relay (no crash loop,
    issue 14 item 6): every message is in the spool, results wait in
    memory (``Outcomes``), and the next scan tries again. An unreachable
    store is logged by `StoreWatch`, once per outage."""
    try:
        yield
    except Exception as e:
        if not is_unavailable(e):
            raise
        if not is_full(e):
            return
        # Once a minute at most: the scanner meets it every second.
        if time.monotonic() - _last_logged["full"] >= 60:
            _last_logged["full"] = time.monotonic()
            event(log, "queue index full: a write waits for space", logging.ERROR, error=str(e))


_last_logged = {"full": -60.0}


def open_store(path: Path | str, node: str = "") -> Store:
    """The queue index; a damaged one is moved aside and rebuilt from the
    spool by recovery (rule 10), so that the relay keeps serving. A
    PostgreSQL store (a URL) is opened as it is: one it cannot reach, or
    on an older schema, or with a relay of the same `node` name on it,
    stops the start with one line."""
    if isinstance(path, str):
        store = Store(path)
        store.claim_node(node, redact(path))
        if (store.schema_version or 0) > SCHEMA_VERSION:
            # A rolling upgrade under way: the store was migrated by a newer
            # mxg whose steps since this one's only expanded the schema.
            event(
                log,
                "running on a newer compatible schema",
                logging.WARNING,
                store=redact(path),
                store_schema=store.schema_version,
                mxg_schema=SCHEMA_VERSION,
            )
        return store
    try:
        return Store(path)
    except StoreDamaged as e:
        moved = quarantine(path)
        event(
            log,
            "queue index damaged: moved aside, rebuilding it from the spool",
            logging.ERROR,
            error=e.detail,
            moved_to=str(moved),
        )
        return Store(path)


# What MAIL gets while a PostgreSQL store is unreachable: the 250 needs
# the store (docs/cluster.md), so the client keeps the message.
UNREACHABLE_TEXT = "Mail store unavailable, try again later"


class StoreWatch:
    """Follows a PostgreSQL store's reachability (`Database.watch_reachability`):
    while it is unreachable new transactions get 451 at MAIL (the engine's
    intake gate; a message already in its DATA gets 451 at its end, as no
    "stored" verdict can come), deliveries under way finish and their
    results wait in memory; once it is back, intake opens again."""

    def __init__(self, engine: Engine, closed: Callable[[], bool]) -> None:
        self._engine = engine
        # True once intake is closed for good (a draining node): the
        # store coming back must not open it again.
        self._closed = closed
        self.reachable = True

    def changed(self, reachable: bool) -> None:
        if reachable == self.reachable:
            return
        self.reachable = reachable
        if not self._closed():
            with contextlib.suppress(EngineStopped):
                if reachable:
                    self._engine.set_intake("open", "")
                else:
                    self._engine.set_intake("defer", UNREACHABLE_TEXT)
        if reachable:
            event(log, "store reachable again", logging.WARNING)
        else:
            event(log, "store unreachable: refusing mail with 451", logging.ERROR)
