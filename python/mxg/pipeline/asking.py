"""When ``on_unmet = "ask-sender"`` asks: a recipient settles as unable
to get its level at once when its domain offers no way to authenticate
its servers (the typed reasons below: nothing mxg can wait for), and
otherwise after the class's ``ask_after_attempts`` attempts or
``ask_after`` since the message arrived (an expired certificate or a
broken TLSA record may be fixed in time). A recipient the sender already
decided about is never asked again: it is retried, or bounces at the
message's lifetime."""

from __future__ import annotations

from dataclasses import dataclass

from mxg.config import Config
from mxg.config.classes import CLASSES, ClassPolicy
from mxg.store import now_ms
from mxg.vocab import Reason

# The receiving side has no method mxg could authenticate it by, or no
# encryption at all (RFC 8460 §4.3: validation-failure is what mxg reports
# when no allowed method applies), or the content itself is what is wrong.
SETTLED_AT_ONCE = frozenset(
    {
        Reason.VALIDATION_FAILURE,
        Reason.DANE_REQUIRED,
        Reason.STARTTLS_NOT_SUPPORTED,
        Reason.E2E_REQUIRED,
    }
)


@dataclass(frozen=True)
class Asking:
    """What decides whether an unmet recipient is asked about now."""

    attempts: int
    received_ms: int
    decision: str | None = None

    def settled(self, policy: ClassPolicy, reason: str | None, at_ms: int | None = None) -> bool:
        if self.decision:
            return False
        if reason in SETTLED_AT_ONCE:
            return True
        waited_ms = (now_ms() if at_ms is None else at_ms) - self.received_ms
        return self.attempts >= policy.ask_after_attempts or waited_ms >= policy.ask_after * 1000


def no_link_warning(cfg: Config) -> str | None:
    """Said at start when a class asks senders but the notices can carry
    no link to the decision page (an operator decides with ``mxg decide``)."""
    asking = [c for c in CLASSES if cfg.class_policy(c).on_unmet == "ask-sender"]
    if not asking or (cfg.web.listen and cfg.web.public_url):
        return None
    return (
        f"on_unmet = ask-sender (class {', '.join(asking)}): the notices carry no link to the"
        " decision page until web.listen and web.public_url are set; decide with mxg decide"
    )
