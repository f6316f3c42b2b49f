"""The records the store takes and gives: a message to index
(`NewMessage`), recipients due for an attempt (`Due`), one attempt's
result (`Outcome`), the final states, and the small helpers (time in
milliseconds, an address's domain) both the store and the pipeline use."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from mxg.boundary import Envelope

FINAL = ("sent", "bounced", "deleted")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class NewMessage:
    """A message to index: its envelope and, once intake classified it,
    its class, the classification's record and each recipient's class."""

    envelope: Envelope
    risk_class: str | None = None
    classification: dict[str, Any] | None = None
    recipient_classes: list[str] | None = None

    @property
    def queue_id(self) -> str:
        return self.envelope.queue_id

    def recipient_class(self, idx: int) -> str | None:
        return self.recipient_classes[idx] if self.recipient_classes else None


@dataclass(frozen=True)
class Due:
    """Recipients of one message in one domain that are due for an attempt."""

    queue_id: str
    domain: str
    indexes: tuple[int, ...]
    # They go to their class's fallback relay (on_unmet = "reroute").
    rerouted: bool = False


@dataclass(frozen=True)
class Outcome:
    """One recipient's result from one delivery attempt."""

    queue_id: str
    idx: int
    status: str  # sent | deferred | bounced
    code: int | None
    enhanced: str
    text: str
    host: str = ""
    ip: str = ""
    tls: str = ""
    level: str = ""
    next_ms: int = 0
    evidence: str = ""
    # The typed failure reason (mxg.vocab.Reason); None for a delivery.
    reason: str | None = None
    # When the attempt is recorded (its row in `attempts`), fixed when it
    # is first stored (`Outcomes.commit`); 0 until then. With it, storing
    # the same result again (its commit's answer was lost) names the same
    # attempt, which the store keeps once.
    at_ms: int = 0


def domain_of(address: str) -> str:
    """The domain part, lower-cased (domains are case-insensitive; local
    parts are not, so the address itself is kept as given)."""
    return address.rpartition("@")[2].lower().rstrip(".")
