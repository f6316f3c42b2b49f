"""The choices a sender (through the decision page) or an operator
(``mxg decide``) has for parked recipients, and what each does, in one
implementation for both:

- ``keep``: keep trying at the class's level until the message's lifetime
  ends (then it bounces as any expired message);
- ``normal``: the sender confirms that the content carries only normal
  risk; the recipients go at class normal's level. Offered only where the
  class allows it (``allow_normal_risk``, on for high), never for
  ``secret`` (ARCHITECTURE.md rule 8b): there only an operator with
  ``--force`` and a recorded reason can do it;
- ``envelope``: sent as a password-protected secure envelope (offered
  when the class allows it and the envelope is available);
- ``cancel``: not sent; with a DSN to the sender, or without.

Waiting cannot encrypt content that must be end-to-end encrypted, so
``keep`` and ``normal`` are not offered for those recipients.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

from mxg.config import Config
from mxg.errors import MxgError
from mxg.store import Change, Decided, Store, now_ms
from mxg.store.decisions import AWAITING
from mxg.vocab import Reason, RiskClass

CHOICES = ("keep", "normal", "envelope", "cancel")


class DecisionRefused(MxgError):
    """A decision that cannot be taken; `status` is its HTTP status."""

    def __init__(self, text: str, status: int = 409) -> None:
        super().__init__(text)
        self.status = status


def envelope_available() -> bool:
    return importlib.util.find_spec("mxg.envelope") is not None


def _allowed(cfg: Config, risk_class: str, reason: str | None) -> list[str]:
    policy = cfg.class_policy(risk_class)
    e2e = reason == Reason.E2E_REQUIRED
    out = [] if e2e else ["keep"]
    if policy.allow_normal_risk and risk_class != RiskClass.SECRET and not e2e:
        out.append("normal")
    if policy.allow_envelope and envelope_available():
        out.append("envelope")
    out.append("cancel")
    return out


def offered(cfg: Config, rows: Sequence[Any]) -> list[str]:
    """The choices every one of `rows` (parked recipients) allows."""
    sets = [_allowed(cfg, r["class"] or cfg.classify.default_class, r["reason"]) for r in rows]
    return [c for c in CHOICES if sets and all(c in s for s in sets)]


def decide(
    store: Store,
    cfg: Config,
    queue_id: str,
    indexes: Sequence[int],
    choice: str,
    *,
    actor: str,
    client: str = "",
    token_id: str | None = None,
    dsn: bool = False,
    reason: str = "",
    force: bool = False,
    carrier: bytes | None = None,
) -> Decided:
    """Takes `choice` for those of `indexes` that are parked. The sender
    (`token_id` given) gets only what `offered` allows; an operator may
    `force` a choice the class does not offer, with a `reason` (always
    for lowering ``secret``). ``envelope`` needs the sealed `carrier`
    (`mxg.decide.carrier`). Raises DecisionRefused with the why."""
    if choice not in CHOICES:
        raise DecisionRefused(f"unknown choice {choice!r} ({', '.join(CHOICES)})", 400)
    rows = [r for r in store.awaiting(queue_id) if r["idx"] in set(indexes)]
    if not rows:
        raise DecisionRefused("no recipient of this message waits for a decision any more")
    allowed = offered(cfg, rows)
    detail: dict[str, Any] = {}
    if choice not in allowed:
        secret = any((r["class"] or "") == RiskClass.SECRET for r in rows)
        if token_id is not None or not force:
            why = (
                "class secret is never sent at class normal's level without --force and --reason"
                if secret and choice == "normal"
                else f"the class does not offer {choice!r} here (offered: {', '.join(allowed)})"
            )
            raise DecisionRefused(why, 403 if token_id is not None else 409)
        if not reason.strip():
            raise DecisionRefused(f"--force for {choice!r} needs a --reason, which is recorded")
        detail["forced"] = True
    if choice == "envelope" and carrier is None:
        raise DecisionRefused("the secure envelope needs the sealed carrier mail", 500)
    if reason:
        detail["reason"] = reason
    if choice == "normal":
        level = str(cfg.class_policy("normal").level)
        detail["level"] = level
        detail["confirmed"] = "the content carries only normal risk"
        change = Change("pending", 0, override_level=level)
    elif choice == "keep":
        change = Change("deferred", now_ms())
    elif choice == "envelope":
        change = Change("deleted", text="sent as a password-protected secure envelope")
    elif dsn:
        detail["dsn"] = True
        who = "the sender" if token_id is not None else "the mail administrator"
        change = Change("bounced", enhanced="5.7.5", text=f"not sent: cancelled by {who}")
    else:
        who = "the sender" if token_id is not None else actor
        change = Change("deleted", text=f"not sent: cancelled by {who}")
    return store.decide(
        queue_id,
        [r["idx"] for r in rows],
        choice,
        change,
        actor=actor,
        token_id=token_id,
        client=client,
        detail=detail,
        carrier=carrier if choice == "envelope" else None,
    )


__all__ = ["AWAITING", "CHOICES", "DecisionRefused", "decide", "envelope_available", "offered"]
