"""What every stage shares: the configuration, the engine, the store, the
resolver and policy caches, the counters for metrics, and the task group
while the relay serves."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import anyio.abc

from mxg.config import Config
from mxg.decide.tokens import TokenKey
from mxg.dns import Resolver, StsCache
from mxg.metrics import Counts
from mxg.pipeline.engine import Engine
from mxg.store import Outcome, Store
from mxg.verdict import Feasibility


class Wakeup:
    """Wakes the scanner before its interval is over: an operator's action
    in the relay's own process (the admin API, the operator pages) is
    carried out at once, not within one scan as one from ``mxg queue``."""

    def __init__(self) -> None:
        self._wanted = False
        self._event: anyio.Event | None = None

    def set(self) -> None:
        self._wanted = True
        if self._event is not None:
            self._event.set()

    async def sleep(self, seconds: float) -> None:
        """Sleeps `seconds`, or until `set`; at once when it was set since
        the last sleep."""
        if not self._wanted:
            self._event = anyio.Event()
            with anyio.move_on_after(seconds):
                await self._event.wait()
            self._event = None
        self._wanted = False


@dataclass
class Context:
    cfg: Config
    engine: Engine
    store: Store
    resolver: Resolver
    sts: StsCache | None
    feasibility: Feasibility
    # Set while the relay serves; None at start-up and in the shutdown
    # drain, when nothing may be started in the background.
    tg: anyio.abc.TaskGroup | None = None
    # While the store's disk is full: outcomes that could not be stored yet
    # (their recipients get no new job meanwhile), and whether spooled
    # messages wait to be indexed. Both are retried by the scanner.
    unstored: dict[tuple[str, int], Outcome] = field(default_factory=dict)
    rescan_wanted: bool = False
    # On PostgreSQL: messages perhaps stored whose clients got no 250,
    # deleted in the store once it answers (`pipeline.acknowledge`).
    unacknowledged: dict[str, None] = field(default_factory=dict)
    # On PostgreSQL: messages committed whose 250 waits for the WAL flush
    # (`pipeline.groupflush`). Neither these nor the unacknowledged are
    # delivered: a client that gets 451 sends its message again.
    acknowledging: set[str] = field(default_factory=set)
    # What the stages count for /metrics (mxg.metrics).
    counts: Counts = field(default_factory=Counts)
    # The key of the decision links (on_unmet = "ask-sender"); None: the
    # notices carry no link.
    tokens: TokenKey | None = None
    # Wakes the scanner (`mxg.pipeline.scanner`).
    wakeup: Wakeup = field(default_factory=Wakeup)
    # A cluster node (PostgreSQL store, `mxg.pipeline.heartbeat`): while
    # fenced (its lease not renewed for half a lease, or draining) no
    # delivery starts; only the housekeeper does the once-per-cluster
    # duties (`mxg.pipeline.housekeeping`). A SQLite store is one node,
    # always the housekeeper.
    fenced: bool = False
    housekeeper: bool = True
    # A draining node's intake is closed for good: the store coming back
    # after an outage does not open it again (`mxg.pipeline.storage`).
    draining: bool = False

    @property
    def serving(self) -> bool:
        return self.tg is not None

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> bool:
        """Starts `fn(*args)` beside the event loop; False when not serving."""
        if self.tg is None:
            return False
        self.tg.start_soon(fn, *args)
        return True
