"""The operator's actions on the queue, one implementation for every
front end (``mxg queue``, the admin API): hold, release, delete, bounce
and flush of a `Selector`'s messages, and suspend and resume of a
domain. Each takes the store, what to change, who acts and why; returns
what changed (or, with ``dry_run``, what would change and changes
nothing); never prints. The store records every change as an event with
its actor and reason.

Hold and release work on whole messages, as Postfix's hold queue does (a
message is one spool file): a selector picks every message with a
recipient it matches. Delete, bounce and flush work on the matching
recipients only: ``bounce --domain x`` returns the recipients at x and
lets the others of the same message go on.

No action lowers a transport level behind the operator's back: only
``release --level`` does, and only for messages named by queue id
(ARCHITECTURE.md: the class's level is the rule; an exception is
decided per message, with who, when and why on record)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from mxg.errors import NotChangeable, OperatorError
from mxg.ops.selectors import Selector, domain
from mxg.store import Store
from mxg.vocab import Level

ACTIONS = ("hold", "release", "delete", "bounce", "flush")


@dataclass(frozen=True, slots=True)
class Change:
    """One message an action changed (or would change): the recipients it
    changed, their states before, and the state after."""

    queue_id: str
    recipients: tuple[str, ...]
    before: tuple[str, ...]
    after: str
    sender: str
    received_ms: int


@dataclass(frozen=True)
class ActionResult:
    action: str
    selection: str
    actor: str
    reason: str
    dry_run: bool
    changes: tuple[Change, ...] = ()
    level: str | None = None

    @property
    def recipients(self) -> int:
        return sum(len(c.recipients) for c in self.changes)

    def records(self) -> list[dict[str, Any]]:
        """One plain record per changed message (JSON lines, the API)."""
        common = {
            "action": self.action,
            "dry_run": self.dry_run,
            "actor": self.actor,
            "reason": self.reason,
            "selection": self.selection,
        }
        if self.level:
            common["level"] = self.level
        return [{**common, **asdict(c)} for c in self.changes]


@dataclass(frozen=True)
class DomainResult:
    """A suspend or resume: whether it changed anything, and how many
    unfinished recipients of the domain wait in the queue."""

    action: str
    domain: str
    actor: str
    reason: str
    changed: bool
    waiting: int
    # resume: deferred recipients made due now.
    due_now: int = 0


# -- message actions ---------------------------------------------------------


def hold(
    store: Store, selector: Selector, actor: str, reason: str, *, dry_run: bool = False
) -> ActionResult:
    """Holds the selected messages that are not held (their recipients
    stay as they are; nothing is dispatched until a release)."""
    picked = _by_message(selector.pick(store))
    active = [q for q, rows in picked.items() if rows[0]["message_state"] == "active"]
    whole = _by_message(store.unfinished(queue_ids=active)) if active else {}
    done = active if dry_run else store.hold_messages(active, actor, reason)
    return _result(
        "hold", selector, whole, done, actor=actor, reason=reason, dry_run=dry_run, after="held"
    )


def release(
    store: Store,
    selector: Selector,
    actor: str,
    reason: str,
    *,
    level: str | None = None,
    dry_run: bool = False,
) -> ActionResult:
    """Releases held messages (all their recipients) and the selected
    recipients their class's policy held (`on_unmet = "hold"`); the
    selected unfinished recipients of such a message are due at once
    (for a message named by queue id: all of them). With `level`, that
    level replaces the class's requirement of those recipients; only for
    messages named by queue id, and only with a reason."""
    if level is not None:
        if str(level) not in {str(x) for x in Level}:
            raise OperatorError(f"unknown level {level!r} ({', '.join(str(x) for x in Level)})")
        if not selector.ids_only:
            raise OperatorError(
                "release --level changes a message's transport requirement: name each message"
                " by its queue id (not by domain, class, state, age or ALL)"
            )
        if not reason:
            raise OperatorError("release --level changes the requirement: give --reason")
    picked = _by_message(selector.pick(store))
    held_msgs = [q for q, rows in picked.items() if rows[0]["message_state"] == "held"]
    whole = _by_message(store.unfinished(queue_ids=held_msgs)) if held_msgs else {}
    targets: dict[str, list[sqlite3.Row]] = {}
    for qid, rows in picked.items():
        if qid in whole:
            targets[qid] = whole[qid]
        elif any(r["status"] == "held" for r in rows):
            targets[qid] = rows
    if dry_run:
        done = list(targets)
    else:
        released = store.release_recipients(_indexes(targets), actor, reason, level)
        targets = {
            q: [r for r in rows if r["idx"] in released.get(q, ())] for q, rows in targets.items()
        }
        done = list(released)
    return _result(
        "release",
        selector,
        targets,
        done,
        actor=actor,
        reason=reason,
        dry_run=dry_run,
        after="due",
        level=level,
    )


def delete(
    store: Store, selector: Selector, actor: str, reason: str, *, dry_run: bool = False
) -> ActionResult:
    """The selected recipients get the final state `deleted`: no DSN, and
    the spool file goes once all of a message's recipients are final."""
    return _finalize(
        "delete",
        store.delete_recipients,
        store,
        selector,
        actor=actor,
        reason=reason,
        dry_run=dry_run,
    )


def bounce(
    store: Store, selector: Selector, actor: str, reason: str, *, dry_run: bool = False
) -> ActionResult:
    """The selected recipients get the final state `bounced` (status
    5.0.0, the reason as the diagnostic); the relay sends the sender a
    failure DSN for them (RFC 3464) within one queue scan."""
    return _finalize(
        "bounce",
        store.bounce_recipients,
        store,
        selector,
        actor=actor,
        reason=reason,
        dry_run=dry_run,
    )


def flush(
    store: Store, selector: Selector, actor: str, reason: str = "", *, dry_run: bool = False
) -> ActionResult:
    """The selected deferred recipients are due now (not held ones)."""
    picked = _by_message(r for r in selector.pick(store) if r["state"] == "deferred")
    done = (
        list(picked) if dry_run else list(store.flush_recipients(_indexes(picked), actor, reason))
    )
    return _result(
        "flush", selector, picked, done, actor=actor, reason=reason, dry_run=dry_run, after="due"
    )


def act(
    action: str,
    store: Store,
    selector: Selector,
    actor: str,
    reason: str,
    *,
    level: str | None = None,
    dry_run: bool = False,
) -> ActionResult:
    """`action` (one of `ACTIONS`) by its name, as every front end calls
    it; `OperatorError` when messages named by queue id could not be
    changed (`NotChangeable`: none of them is in a state the action
    applies to)."""
    if action not in ACTIONS:
        raise OperatorError(f"unknown action {action!r} ({', '.join(ACTIONS)})")
    if level is not None and action != "release":
        raise OperatorError("a level is given only with release")
    result: ActionResult
    if action == "release":
        result = release(store, selector, actor, reason, level=level, dry_run=dry_run)
    else:
        fn = {"hold": hold, "delete": delete, "bounce": bounce, "flush": flush}[action]
        result = fn(store, selector, actor, reason, dry_run=dry_run)
    if not result.changes and selector.ids_only:
        which = {"release": "held message", "flush": "deferred recipient of message"}
        raise NotChangeable(
            f"{action}: no {which.get(action, 'message')} {', '.join(selector.queue_ids)}"
            " that can be changed"
        )
    return result


def _finalize(
    action: str,
    change: Callable[[dict[str, list[int]], str, str], dict[str, list[int]]],
    store: Store,
    selector: Selector,
    *,
    actor: str,
    reason: str,
    dry_run: bool,
) -> ActionResult:
    picked = _by_message(selector.pick(store))
    after = {"delete": "deleted", "bounce": "bounced"}[action]
    if dry_run:
        return _result(
            action,
            selector,
            picked,
            list(picked),
            actor=actor,
            reason=reason,
            dry_run=True,
            after=after,
        )
    changed = change(_indexes(picked), actor, reason)
    picked = {q: [r for r in rows if r["idx"] in changed.get(q, ())] for q, rows in picked.items()}
    return _result(
        action,
        selector,
        picked,
        list(changed),
        actor=actor,
        reason=reason,
        dry_run=False,
        after=after,
    )


def _by_message(rows: Iterable[sqlite3.Row]) -> dict[str, list[sqlite3.Row]]:
    out: dict[str, list[sqlite3.Row]] = {}
    for r in rows:
        out.setdefault(r["queue_id"], []).append(r)
    return out


def _indexes(targets: dict[str, list[sqlite3.Row]]) -> dict[str, list[int]]:
    return {q: [r["idx"] for r in rows] for q, rows in targets.items()}


def _result(
    action: str,
    selector: Selector,
    rows: dict[str, list[sqlite3.Row]],
    done: Iterable[str],
    *,
    actor: str,
    reason: str,
    dry_run: bool,
    after: str,
    level: str | None = None,
) -> ActionResult:
    changes = tuple(
        Change(
            queue_id=q,
            sender=rows[q][0]["sender"],
            received_ms=rows[q][0]["received_ms"],
            recipients=tuple(r["address"] for r in rows[q]),
            before=tuple(r["state"] for r in rows[q]),
            after=after,
        )
        for q in done
        if rows.get(q)
    )
    return ActionResult(
        action, selector.describe(), actor, reason, dry_run, changes, str(level) if level else None
    )


# -- domain actions ----------------------------------------------------------


def suspend(store: Store, name: str, actor: str, reason: str) -> DomainResult:
    """Suspends delivery to a domain: its recipients are not dispatched
    (jobs under way finish) until `resume`; they keep their lifetime
    (``queue.max_lifetime`` counts from reception, as always)."""
    d = domain(name)
    changed = store.suspend(d, actor, reason)
    return DomainResult("suspend", d, actor, reason, changed, _waiting(store, d))


def resume(store: Store, name: str, actor: str, reason: str) -> DomainResult:
    """Resumes delivery to a suspended domain; its deferred recipients are
    due at once."""
    d = domain(name)
    due = store.resume(d, actor, reason)
    return DomainResult(
        "resume", d, actor, reason, due is not None, _waiting(store, d), due_now=due or 0
    )


def _waiting(store: Store, d: str) -> int:
    return len(store.unfinished(domains=[d]))
