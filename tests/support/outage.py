"""A load through an outage of the PostgreSQL store, and what it left:
the restart and failover tests (tests/e2e/test_store_ack.py,
tests/e2e/test_store_failover.py) send the same load and count the same
way."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tests.e2e.test_delivery import wait_for
from tests.support.load import Load
from tests.support.mxgproc import MxgProcess
from tests.support.sinks import Sink


def start_load(port: int, total: int, name: str) -> tuple[Load, threading.Thread]:
    """`total` messages of about 1 KB, each to one recipient of seven at
    good.test, sent by `Load` in a thread of its own (started)."""

    def message(i: int) -> tuple[str, str]:
        mid = f"<{name}-{i}@internal.test>"
        return mid, f"Message-ID: {mid}\r\nSubject: {name} {i}\r\n\r\n" + "x" * 900 + "\r\n"

    load = Load([port], total, message, lambda i: f"u{i % 7}@good.test")
    sending = threading.Thread(target=load.run, daemon=True)
    sending.start()
    return load, sending


def assert_sent_all(load: Load, sending: threading.Thread, mxg: MxgProcess, timeout: float) -> None:
    """The load ended within `timeout`: the relay took mail again by
    itself. Otherwise what it saw, and the end of the relay's log."""
    sending.join(timeout)
    assert not sending.is_alive(), (
        f"the relay did not recover: {len(load.acked)} of {load.total} acknowledged,"
        f" replies {dict(load.replies)}, connections cut {load.cut_off}\n" + mxg.log_text()[-6000:]
    )


T = TypeVar("T")


def through_outage(
    mxg: MxgProcess,
    sinks: dict[str, Sink],
    total: int,
    outage: Callable[[Load], T],
    *,
    recovery: float,
    delivery: float,
) -> tuple[Load, T]:
    """Sends `total` messages to `mxg` (`start_load`) and, once a third
    is acknowledged, runs `outage`; then waits up to `recovery` s for the
    load to end (the relay took mail again by itself) and up to
    `delivery` s for every acknowledged message to be delivered. Returns
    the load and what `outage` returned."""
    load, sending = start_load(mxg.port, total, "outage")
    try:
        wait_for(lambda: len(load.acked) >= total // 3, timeout=120, what="a third acknowledged")
        seen = outage(load)
        assert_sent_all(load, sending, mxg, timeout=recovery)
    finally:
        load.stop()
    wait_for(
        lambda: load.acked <= set(delivered(sinks)),
        timeout=delivery,
        what="every acknowledged message delivered",
    )
    return load, seen


def delivered(sinks: dict[str, Sink]) -> Counter[str]:
    """Message-IDs the good.test servers received, with how often."""
    return Counter(m.message_id for s in (sinks["good1"], sinks["good2"]) for m in list(s.messages))


@dataclass
class Tally:
    got: Counter[str]
    # Copies beyond the first.
    duplicates: int
    # Recipients the repair after the outage sent again (the log's
    # `re-queued after the store restarted recipients=N`).
    requeued: int


def tally(sinks: dict[str, Sink], log: str) -> Tally:
    got = delivered(sinks)
    requeued = re.findall(r"re-queued after the store restarted.*?recipients=(\d+)", log)
    return Tally(got, sum(n - 1 for n in got.values() if n > 1), sum(int(n) for n in requeued))
