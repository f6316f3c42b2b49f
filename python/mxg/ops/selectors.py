"""Which queued recipients an operator means: a `Selector` by queue ids,
recipient domain, class, state and age, or ``ALL``; the criteria
combine (all must hold), the values of one criterion are alternatives.
An empty selector selects nothing: a bulk action needs ``ALL`` said
out loud, as ``postsuper -d ALL`` does."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mxg.config.base import parse_duration
from mxg.errors import OperatorError
from mxg.store import Store, now_ms
from mxg.vocab import RiskClass

# A recipient's state as the operator sees it: `pending` (not tried yet,
# or under way), `deferred` (waiting for a retry), `held` (its message or
# itself held), `awaiting-sender` (parked for the sender's decision);
# `active` is pending or deferred, i.e. not held.
STATES = ("active", "pending", "deferred", "held", "awaiting-sender")
_STORE_STATES = {"active": ("pending", "deferred")}

# Queue ids are 16 upper-case hexadecimal digits (docs/spool-format.md).
QUEUE_ID = re.compile(r"^[0-9A-F]{16}$")

# A domain as the recipients table holds it (`mxg.store.domain_of`):
# lower case, no trailing dot; an address literal ([192.0.2.1]) too.
# Any label characters (SMTPUTF8 domains are kept as U-labels), but no
# address, space or empty label.
_DOMAIN = re.compile(r"^(\[[0-9A-Za-z:.]+\]|[^\s@\[\].]+(\.[^\s@\[\].]+)*)$")


@dataclass(frozen=True)
class Selector:
    queue_ids: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    # Seconds since the message was received (e.g. --older-than 2h).
    older_than: float | None = None
    younger_than: float | None = None
    # ALL: every unfinished recipient (narrowed by the other criteria).
    everything: bool = False

    @classmethod
    def build(
        cls,
        *,
        queue_ids: Iterable[str] = (),
        domains: Iterable[str] = (),
        classes: Iterable[str] = (),
        states: Iterable[str] = (),
        older_than: str | float | None = None,
        younger_than: str | float | None = None,
        everything: bool = False,
    ) -> Selector:
        """A selector from an operator's words, checked and normalised;
        `OperatorError` names what is wrong."""
        ids = tuple(dict.fromkeys(q.strip().upper() for q in queue_ids))
        for q in ids:
            if not QUEUE_ID.match(q):
                raise OperatorError(f"{q!r} is not a queue id (16 hexadecimal digits)")
        doms = tuple(dict.fromkeys(domain(d) for d in domains))
        names = tuple(dict.fromkeys(c.strip().lower() for c in classes))
        for c in names:
            if c not in {str(k) for k in RiskClass}:
                raise OperatorError(f"unknown class {c!r} (normal, high, secret)")
        wanted = tuple(dict.fromkeys(s.strip().lower() for s in states))
        for s in wanted:
            if s not in STATES:
                raise OperatorError(f"unknown state {s!r} ({', '.join(STATES)})")
        older, younger = _age(older_than, "older-than"), _age(younger_than, "younger-than")
        if older is not None and younger is not None and older >= younger:
            raise OperatorError("--older-than must be less than --younger-than: no message is both")
        return cls(ids, doms, names, wanted, older, younger, everything)

    @property
    def is_empty(self) -> bool:
        return not self.everything and not (
            self.queue_ids
            or self.domains
            or self.classes
            or self.states
            or self.older_than is not None
            or self.younger_than is not None
        )

    @property
    def ids_only(self) -> bool:
        """Only queue ids, nothing else: the operator named each message."""
        return bool(self.queue_ids) and self == Selector(queue_ids=self.queue_ids)

    def describe(self) -> str:
        """The selection in words, for the audit trail and the output."""
        parts = []
        if self.everything:
            parts.append("ALL")
        if self.queue_ids:
            parts.append("id " + ",".join(self.queue_ids))
        for name, values in (
            ("domain", self.domains),
            ("class", self.classes),
            ("state", self.states),
        ):
            if values:
                parts.append(f"{name} {','.join(values)}")
        if self.older_than is not None:
            parts.append(f"older than {_seconds(self.older_than)}")
        if self.younger_than is not None:
            parts.append(f"younger than {_seconds(self.younger_than)}")
        return "; ".join(parts)

    def pick(self, store: Store, at_ms: int | None = None) -> list[sqlite3.Row]:
        """The unfinished recipients selected, oldest message first (see
        `Store.unfinished` for the columns)."""
        if self.is_empty:
            raise OperatorError(
                "select messages: queue ids, --domain, --class, --state, --older-than,"
                " --younger-than, or ALL for every message"
            )
        t = now_ms() if at_ms is None else at_ms
        return store.unfinished(
            queue_ids=self.queue_ids or None,
            domains=self.domains,
            classes=self.classes,
            states=store_states(self.states),
            received_before_ms=None if self.older_than is None else t - int(self.older_than * 1000),
            received_after_ms=None
            if self.younger_than is None
            else t - int(self.younger_than * 1000),
        )


def store_states(states: Sequence[str]) -> tuple[str, ...]:
    """The states `Store.unfinished` knows for the operator's words."""
    return tuple(dict.fromkeys(s for w in states for s in _STORE_STATES.get(w, (w,))))


def domain(text: str) -> str:
    """A recipient domain as the store keeps it; `OperatorError` if it is
    not one (an address, a pattern, an empty string)."""
    d = text.strip().lower().rstrip(".")
    if not _DOMAIN.match(d):
        raise OperatorError(f"{text!r} is not a domain (e.g. example.org)")
    return d


def _age(value: str | float | None, option: str) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as e:
        raise OperatorError(f"--{option}: {e}") from None
    if not isinstance(seconds, int | float) or seconds < 0:
        raise OperatorError(f"--{option}: {value!r} is not a duration (e.g. 90s, 30m, 2h, 5d)")
    return float(seconds)


def _seconds(s: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{int(s // size)}{unit}"
    return f"{s:g}s"
