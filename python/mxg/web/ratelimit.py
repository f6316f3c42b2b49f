"""A per-client request budget for pages anyone on the network can reach
(the decision page): at most `limit` requests per client address in a
fixed window of `WINDOW` seconds. Kept in memory: a restart forgives, and
a client that cycles addresses is bounded by `MAX_CLIENTS`."""

from __future__ import annotations

import time
from collections.abc import Callable

WINDOW = 60.0
# Addresses remembered at once; beyond it, windows that ended are
# forgotten first, then the oldest (a flood of addresses cannot grow it).
MAX_CLIENTS = 10_000


class RateLimit:
    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}

    def allow(self, client: str) -> bool:
        """Counts a request of `client`; False when it is over its budget."""
        now = self._clock()
        start, count = self._windows.get(client, (now, 0))
        if now - start >= WINDOW:
            start, count = now, 0
        self._windows[client] = (start, count + 1)
        if len(self._windows) > MAX_CLIENTS:
            self._forget(now)
        return count < self.limit

    def _forget(self, now: float) -> None:
        self._windows = {c: w for c, w in self._windows.items() if now - w[0] < WINDOW}
        while len(self._windows) > MAX_CLIENTS:
            del self._windows[next(iter(self._windows))]
