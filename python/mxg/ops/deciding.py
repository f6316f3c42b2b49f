"""An operator's decisions for recipients awaiting the sender (``on_unmet
= "ask-sender"``), shared by ``mxg decide``, the admin API and the
operator pages: which recipients wait (`parked`), which of a message's
an operator names (`named`), the checks of the request (`checked`) and
the decision itself (`take`), which goes through `mxg.decide.decide`
like the sender's.

Class ``secret`` is never lowered to normal's level without ``force``
and a reason (ARCHITECTURE.md rule 8b: `mxg.decide.choices` refuses it).
A secure envelope needs a password: the command line generates one when
none is given; the web surface takes only one the operator typed. The
password is checked, used to seal the carrier and returned to the
caller, never stored (`mxg.decide.carrier`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mxg.config import Config
from mxg.decide.choices import CHOICES, DecisionRefused, decide
from mxg.errors import OperatorError, WeakPassword
from mxg.evidence import rfc3339
from mxg.store import Decided, Store

# Parked recipients one listing shows at most.
MAX_PARKED = 1000


@dataclass(frozen=True)
class Parked:
    """A recipient awaiting the sender's decision."""

    queue_id: str
    sender: str
    recipient: str
    risk_class: str
    reason: str
    since: str  # when it was parked (RFC 3339)
    expires: str  # when the sender's link expires; "" without a link


def parked(store: Store, cfg: Config, limit: int = MAX_PARKED) -> list[Parked]:
    return [
        Parked(
            r["queue_id"],
            r["sender"],
            r["address"],
            r["class"] or cfg.classify.default_class,
            r["reason"] or "",
            rfc3339(r["updated_ms"] or r["received_ms"]),
            rfc3339(r["expires_ms"]),
        )
        for r in store.awaiting_all(limit)
    ]


def same_address(address: str, wanted: str) -> bool:
    """The local part as given (RFC 5321 §2.4: it may be case-sensitive),
    the domain in any case."""
    local, _, domain = address.rpartition("@")
    w_local, _, w_domain = wanted.rpartition("@")
    return local == w_local and domain.lower() == w_domain.lower()


def named(store: Store, queue_id: str, addresses: Sequence[str]) -> list[Any]:
    """The parked recipients of `queue_id` among `addresses`; OperatorError
    naming the first that does not wait."""
    rows = store.awaiting(queue_id)
    picked = []
    for wanted in (a.strip() for a in addresses):
        found = [r for r in rows if same_address(r["address"], wanted)]
        if not found:
            raise OperatorError(
                f"{queue_id}: no recipient {wanted} waits for a decision"
                " (mxg queue show lists the message's recipients and states)"
            )
        picked += [r for r in found if r not in picked]
    if not picked:
        raise OperatorError(f"{queue_id}: name at least one recipient")
    return picked


def checked(choice: str, *, dsn: bool, password: bool, force: bool, reason: str) -> None:
    """Refuses a request whose parts do not go together (OperatorError)."""
    if choice not in CHOICES:
        raise OperatorError(f"choice: one of {', '.join(CHOICES)}, not {choice!r}")
    if dsn and choice != "cancel":
        raise OperatorError("a DSN goes with the choice cancel")
    if password and choice != "envelope":
        raise OperatorError("a password goes with the choice envelope")
    if force and not reason.strip():
        raise OperatorError("force needs a reason, which is recorded")


def seal(
    cfg: Config, sender: str, rows: Sequence[Any], *, typed: str, original: bytes
) -> tuple[str, bytes]:
    """The password (`typed`, checked for strength, or generated when
    empty) and the carrier mail from `sender` to `rows`. CPU-bound
    (PBKDF2): off the event loop; it reads no store."""
    from mxg.decide.carrier import carrier_for, password_for  # noqa: PLC0415

    try:
        password = password_for(typed)
    except WeakPassword as e:
        raise OperatorError(f"password: {e}") from None
    addresses = [r["address"] for r in rows]
    return password, carrier_for(cfg, sender, addresses, original, password)


def take(
    store: Store,
    cfg: Config,
    queue_id: str,
    rows: Sequence[Any],
    choice: str,
    *,
    actor: str,
    client: str,
    dsn: bool = False,
    reason: str = "",
    force: bool = False,
    carrier: bytes | None = None,
) -> Decided:
    """The decision for `rows` (from `named`), recorded with the operator
    as `actor`; DecisionRefused (with its HTTP status) when the class
    does not allow it."""
    return decide(
        store,
        cfg,
        queue_id,
        [r["idx"] for r in rows],
        choice,
        actor=actor,
        client=client,
        dsn=dsn,
        reason=reason.strip(),
        force=force,
        carrier=carrier,
    )


__all__ = [
    "MAX_PARKED",
    "DecisionRefused",
    "Parked",
    "checked",
    "named",
    "parked",
    "same_address",
    "seal",
    "take",
]
