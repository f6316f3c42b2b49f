"""Failed authentications, counted per client address: past `LIMIT`
failures within `WINDOW` seconds, the address is refused (HTTP 429)
until the oldest of them is older than the window. A token is 256
random bits, so this is not what keeps it from being guessed; it keeps
a guesser from filling the log and the CPU, and makes a leaked token
list that is being tried visible (each refusal is logged)."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

# Failures an address may have within WINDOW seconds.
LIMIT = 10
WINDOW = 60.0
# Addresses tracked at once; past it the one that failed longest ago is
# forgotten, so a flood from many addresses costs bounded memory.
MAX_CLIENTS = 4096


class Throttle:
    def __init__(
        self,
        limit: int = LIMIT,
        window: float = WINDOW,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._max = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def wait(self, client: str) -> float:
        """Seconds until `client` may try again; 0 when it may now."""
        times = self._recent(client)
        if times is None or len(times) < self._limit:
            return 0.0
        return max(0.0, times[0] + self._window - self._clock())

    def failed(self, client: str) -> None:
        times = self._recent(client) or deque(maxlen=self._limit)
        times.append(self._clock())
        self._failures[client] = times
        self._failures.move_to_end(client)
        while len(self._failures) > self._max:
            self._failures.popitem(last=False)

    def _recent(self, client: str) -> deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        horizon = self._clock() - self._window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times
