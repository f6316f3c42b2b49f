"""What an operator does with the queue, in one place for every front
end (``mxg queue``, the admin API and the operator pages): `selectors`
say which messages, `actions` change them (hold, release, delete,
bounce, flush, by name through `act`; suspend and resume a domain) and
return what changed, `summary` gives the queue's shape per domain and
age, `failures` the recent failures by reason, `spool` reads a queued
message, and `deciding` takes the decisions for recipients awaiting the
sender (as ``mxg decide`` does). Nothing here prints; every change is recorded with its
actor and reason."""

from __future__ import annotations

from mxg.ops.actions import (
    ACTIONS,
    ActionResult,
    Change,
    DomainResult,
    act,
    bounce,
    delete,
    flush,
    hold,
    release,
    resume,
    suspend,
)
from mxg.ops.selectors import STATES, Selector
from mxg.ops.spool import headers, spooled
from mxg.ops.summary import COLUMNS, Summary, SummaryRow, summarize

__all__ = [
    "ACTIONS",
    "COLUMNS",
    "STATES",
    "ActionResult",
    "Change",
    "DomainResult",
    "Selector",
    "Summary",
    "SummaryRow",
    "act",
    "bounce",
    "delete",
    "flush",
    "headers",
    "hold",
    "release",
    "resume",
    "spooled",
    "summarize",
    "suspend",
]
