"""Retry scheduling (RFC 5321 §4.5.4.1)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mxg.schedule import next_attempt_ms

SCHEDULE = [60.0, 300.0, 900.0]
DAY = 86400.0


def test_schedule_grows_then_repeats_its_last_step() -> None:
    steps = [
        next_attempt_ms(
            received_ms=0, attempts=n, now_ms=0, schedule=SCHEDULE, lifetime_s=DAY, jitter=0
        )
        for n in (1, 2, 3, 4, 9)
    ]
    assert steps == [60_000, 300_000, 900_000, 900_000, 900_000]


def test_expired_message_gets_no_further_attempt() -> None:
    assert (
        next_attempt_ms(
            received_ms=0, attempts=5, now_ms=int(DAY * 1000), schedule=SCHEDULE, lifetime_s=DAY
        )
        is None
    )


@given(st.integers(0, 10**6), st.integers(1, 50), st.integers(0, int(DAY * 1000) - 1))
def test_next_attempt_is_in_the_future_and_never_past_the_deadline(
    received: int, attempts: int, age: int
) -> None:
    now = received + age
    nxt = next_attempt_ms(
        received_ms=received, attempts=attempts, now_ms=now, schedule=SCHEDULE, lifetime_s=DAY
    )
    assert nxt is not None
    assert now < nxt <= received + int(DAY * 1000)
