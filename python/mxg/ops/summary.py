"""The queue's shape, as Postfix's qshape shows it: per recipient domain,
how many messages wait, in age buckets that double (up to 5, 10, 20, ...
1280 minutes, then older), with a total column ``T`` and a total row.
A message counts once for each domain it still has unfinished recipients
at, so a message to two domains is in two rows (as in qshape)."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from mxg.errors import OperatorError
from mxg.ops.selectors import STATES, store_states
from mxg.store import Store, now_ms

# The upper bounds of the age buckets in minutes (qshape's defaults: the
# first is 5 minutes, each next twice as long, ten buckets).
BUCKET_MINUTES = (5, 10, 20, 40, 80, 160, 320, 640, 1280)
COLUMNS = ("T", *(str(m) for m in BUCKET_MINUTES), f"{BUCKET_MINUTES[-1]}+")


@dataclass(frozen=True)
class SummaryRow:
    domain: str
    # Messages per column of `COLUMNS`: the total first.
    counts: tuple[int, ...]
    suspended: bool = False

    @property
    def total(self) -> int:
        return self.counts[0]


@dataclass(frozen=True)
class Summary:
    rows: tuple[SummaryRow, ...]
    total: SummaryRow
    states: tuple[str, ...]
    columns: tuple[str, ...] = COLUMNS


def summarize(
    store: Store,
    states: Sequence[str] = (),
    *,
    top: int | None = None,
    at_ms: int | None = None,
) -> Summary:
    """The table for the recipients in `states` (default: every unfinished
    one), domains with the most messages first; with `top`, only so many
    domains (the total row still counts all)."""
    for s in states:
        if s not in STATES:
            raise OperatorError(f"unknown state {s!r} ({', '.join(STATES)})")
    t = now_ms() if at_ms is None else at_ms
    seen: set[tuple[str, str]] = set()
    buckets: dict[str, list[int]] = {}
    for r in store.unfinished(states=store_states(states)):
        key = (r["domain"], r["queue_id"])
        if key in seen:
            continue
        seen.add(key)
        minutes = max(0, t - r["received_ms"]) / 60_000
        # qshape's buckets hold ages up to and including their bound.
        column = 1 + bisect.bisect_left(BUCKET_MINUTES, minutes)
        counts = buckets.setdefault(r["domain"], [0] * len(COLUMNS))
        counts[0] += 1
        counts[column] += 1
    suspended = {r["domain"] for r in store.suspended()}
    rows = sorted(
        (SummaryRow(d, tuple(c), d in suspended) for d, c in buckets.items()),
        key=lambda row: (-row.total, row.domain),
    )
    sums = [sum(r.counts[i] for r in rows) for i in range(len(COLUMNS))]
    total = SummaryRow("TOTAL", tuple(sums))
    if top is not None:
        rows = rows[:top]
    return Summary(tuple(rows), total, tuple(states))
