"""When to try a deferred recipient again (RFC 5321 §4.5.4.1)."""

from __future__ import annotations

import random
from collections.abc import Sequence


def next_attempt_ms(
    *,
    received_ms: int,
    attempts: int,
    now_ms: int,
    schedule: Sequence[float],
    lifetime_s: float,
    jitter: float = 0.1,
) -> int | None:
    """The time of the next attempt after ``attempts`` failed ones, or None
    when the message has outlived its queue lifetime and must bounce.

    The last interval of the schedule repeats. A little jitter keeps
    recipients deferred together from retrying in lock-step. The last
    attempt is placed at the end of the lifetime, so no recipient bounces
    without a try at the deadline.
    """
    deadline = received_ms + int(lifetime_s * 1000)
    if now_ms >= deadline:
        return None
    step = schedule[min(max(attempts, 1), len(schedule)) - 1]
    delay = step * (1 + random.uniform(-jitter, jitter))
    return min(now_ms + int(delay * 1000), deadline)
