"""The SQL of sender decisions (``on_unmet = "ask-sender"``): which
parked recipients still need their notice, the links issued with it,
the decisions taken (by the sender through a link, or by an operator),
and the parked recipients whose message's lifetime ended.

A decision is one durable transaction: the link is marked used (only if
it was not: a second use changes nothing), the recipients still parked
get their new state, and the decision goes into the message's events and
the audit trail with the link's id, the time and the client's address
(ARCHITECTURE.md rule 11b). What each choice means is `mxg.decide`."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from mxg.store.audit import AuditEntry
from mxg.store.intake import insert_new, received_entry
from mxg.store.operator import OperatorActions
from mxg.store.records import NewMessage, now_ms

AWAITING = "awaiting-sender"


@dataclass(frozen=True)
class Change:
    """What one choice does to each parked recipient: its new status,
    next attempt, override level, and the reply fields a bounce carries."""

    status: str
    next_ms: int = 0
    override_level: str | None = None
    enhanced: str | None = None
    text: str | None = None


@dataclass
class Decided:
    """What a decision changed; `already` when its link had been used (the
    recorded decision is returned and nothing changed)."""

    queue_id: str
    choice: str
    recipients: list[int] = field(default_factory=list)
    at_ms: int = 0
    client: str = ""
    already: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


class Decisions(OperatorActions):
    # -- notices -------------------------------------------------------------

    def awaiting(self, queue_id: str, *, unasked: bool = False) -> list[sqlite3.Row]:
        """A message's parked recipients (only those without a notice yet)."""
        extra = " AND asked = 0" if unasked else ""
        return self.db.execute(
            f"SELECT * FROM recipients WHERE queue_id=? AND status='{AWAITING}'{extra}"
            " ORDER BY idx",
            (queue_id,),
        ).fetchall()

    def awaiting_all(self, limit: int) -> list[sqlite3.Row]:
        """Every parked recipient, oldest message first, with its sender
        and the expiry of its message's newest unused link."""
        return self.db.execute(
            "SELECT r.queue_id, r.idx, r.address, r.reason, r.class, r.updated_ms,"
            " m.sender, m.received_ms, (SELECT max(t.expires_ms) FROM decision_tokens t"
            " WHERE t.queue_id = r.queue_id AND t.used_ms IS NULL) AS expires_ms"
            " FROM recipients r JOIN messages m ON m.queue_id = r.queue_id"
            f" WHERE r.status='{AWAITING}' ORDER BY m.received_ms, r.queue_id, r.idx LIMIT ?",
            (limit,),
        ).fetchall()

    def unasked(self) -> list[str]:
        """Messages with parked recipients whose notice is not queued yet
        (a notice that a full disk or a stop held back)."""
        mine, node = self.mine_by_id("recipients")
        rows = self.db.execute(
            f"SELECT DISTINCT queue_id FROM recipients WHERE status='{AWAITING}' AND asked=0{mine}",
            node,
        ).fetchall()
        return [r[0] for r in rows]

    def mark_asked(
        self, queue_id: str, indexes: Sequence[int], token_id: str | None, expires_ms: int
    ) -> None:
        """Nobody can be asked about `indexes` (or a test issued a link)."""
        self.asked(None, queue_id, indexes, token_id, expires_ms)

    def asked(
        self,
        notice: NewMessage | None,
        queue_id: str,
        indexes: Sequence[int],
        token_id: str | None,
        expires_ms: int,
    ) -> None:
        """The spooled `notice` for `indexes` is indexed, they are marked
        asked and its link (if any) is issued: one durable transaction, so
        a crash leaves the notice unrecorded or all of it recorded, and
        recovery finishes the first from the spool (`mxg.decide.marks`)."""
        t = now_ms()
        with self.transaction() as db:
            new = insert_new(db, [notice], self.node) if notice is not None else []
            db.executemany(
                "UPDATE recipients SET asked=1 WHERE queue_id=? AND idx=?",
                [(queue_id, i) for i in indexes],
            )
            if token_id is not None:
                db.execute(
                    "INSERT OR IGNORE INTO decision_tokens (token_id, queue_id, recipients,"
                    " issued_ms, expires_ms) VALUES (?,?,?,?,?)",
                    (token_id, queue_id, orjson.dumps(list(indexes)).decode(), t, expires_ms),
                )
            data: dict[str, Any] = {
                "recipients": list(indexes),
                "token": token_id,
                "expires_ms": expires_ms,
            }
            if notice is not None:
                data["notice"] = notice.queue_id
            entries = [received_entry(m) for m in new]
            self.append_audit(db, [*entries, AuditEntry("asked", queue_id, "mxg", data)])

    def token(self, token_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(
            "SELECT * FROM decision_tokens WHERE token_id=?", (token_id,)
        ).fetchone()
        return row

    # -- deciding ------------------------------------------------------------

    def decide(
        self,
        queue_id: str,
        indexes: Sequence[int],
        choice: str,
        change: Change,
        *,
        actor: str,
        token_id: str | None,
        client: str,
        detail: dict[str, Any],
        carrier: bytes | None = None,
    ) -> Decided:
        """Applies `change` to those of `indexes` still parked, and uses
        the link `token_id` (when given) in the same transaction: if it was
        used already, nothing changes and the recorded decision returns.
        A secure envelope's `carrier` is kept in the same transaction, for
        the relay to spool (`pending_carriers`)."""
        t = now_ms()
        with self.transaction() as db:
            if token_id is not None:
                used = db.execute(
                    "UPDATE decision_tokens SET used_ms=?, choice=?, client=?"
                    " WHERE token_id=? AND used_ms IS NULL",
                    (t, choice, client, token_id),
                ).rowcount
                if not used:
                    return self._recorded(db, token_id)
            rows = self._current(db, queue_id, indexes, (AWAITING,))
            changed = [r["idx"] for r in rows]
            decided = orjson.dumps(
                {"at_ms": t, "by": actor, "token": token_id, "client": client}
            ).decode()
            db.executemany(
                "UPDATE recipients SET status=?, next_ms=?, override_level=coalesce(?,"
                " override_level), decision=?, decided=?, enhanced=coalesce(?, enhanced),"
                " text=coalesce(?, text), code=CASE WHEN CAST(? AS TEXT) IS NULL THEN code END,"
                " dsn_sent=0, updated_ms=? WHERE queue_id=? AND idx=?",
                [
                    (
                        change.status,
                        change.next_ms,
                        change.override_level,
                        choice,
                        decided,
                        change.enhanced,
                        change.text,
                        change.text,
                        t,
                        queue_id,
                        i,
                    )
                    for i in changed
                ],
            )
            if change.text is not None:
                db.executemany(
                    "INSERT INTO attempts (queue_id, address, at_ms, status, enhanced, text)"
                    " VALUES (?,?,?,?,?,?)",
                    [
                        (queue_id, r["address"], t, change.status, change.enhanced, change.text)
                        for r in rows
                    ],
                )
            record = {
                "choice": choice,
                "recipients": changed,
                "token": token_id,
                "client": client,
                **detail,
            }
            if carrier is not None and changed:
                db.execute(
                    "INSERT INTO carriers (queue_id, recipients, data, made_ms) VALUES (?,?,?,?)",
                    (queue_id, orjson.dumps(changed).decode(), carrier, t),
                )
            if token_id is not None:
                db.execute(
                    "UPDATE decision_tokens SET result=? WHERE token_id=?",
                    (orjson.dumps(record).decode(), token_id),
                )
            words = "; ".join(f"{k}={v}" for k, v in record.items() if v not in (None, "", []))
            db.execute(
                "INSERT INTO events (queue_id, at_ms, actor, action, detail) VALUES (?,?,?,?,?)",
                (queue_id, t, actor, "decision", words),
            )
            self.append_audit(db, [AuditEntry("decision", queue_id, actor, record)])
        return Decided(queue_id, choice, changed, t, client, detail=record)

    def token_result(self, token_id: str) -> Decided | None:
        """The decision taken with a link, or None while it is unused."""
        row = self.token(token_id)
        if row is None or row["used_ms"] is None:
            return None
        return self._recorded(self.db, token_id)

    def _recorded(self, db: sqlite3.Connection, token_id: str) -> Decided:
        row = db.execute(
            "SELECT queue_id, choice, used_ms, client, result FROM decision_tokens"
            " WHERE token_id=?",
            (token_id,),
        ).fetchone()
        result = orjson.loads(row["result"] or "{}")
        return Decided(
            row["queue_id"],
            row["choice"] or "",
            list(result.get("recipients", [])),
            int(row["used_ms"] or 0),
            row["client"] or "",
            already=True,
            detail=result,
        )

    # -- secure envelopes ----------------------------------------------------

    def pending_carriers(self) -> list[sqlite3.Row]:
        # A decision made on any node; the node that owns the message
        # spools its carrier.
        mine, node = self.mine_by_id("carriers")
        return self.db.execute(
            f"SELECT * FROM carriers WHERE 1=1{mine} ORDER BY id", node
        ).fetchall()

    def carrier_spooled(self, carrier_id: int, carrier: NewMessage, levels: Sequence[str]) -> bool:
        """The carrier `carrier_id` is spooled as `carrier`: indexed with
        its recipients at their class's carrier `levels` (never asked about
        again), and the stored carrier goes, in one durable transaction: a
        crash leaves either the stored carrier (recovery finds the spooled
        one by its Message-ID, `mxg.decide.marks`) or a carrier that goes
        at its level. False, changing nothing, when it was recorded already."""
        with self.transaction() as db:
            row = db.execute("SELECT queue_id FROM carriers WHERE id=?", (carrier_id,)).fetchone()
            if row is None:
                return False
            new = insert_new(db, [carrier], self.node)
            db.executemany(
                "UPDATE recipients SET override_level=?, decision='envelope'"
                " WHERE queue_id=? AND idx=?",
                [(level, carrier.queue_id, i) for i, level in enumerate(levels)],
            )
            db.execute("DELETE FROM carriers WHERE id=?", (carrier_id,))
            data = {"carrier": carrier.queue_id, "levels": list(levels)}
            entries = [received_entry(m) for m in new]
            self.append_audit(db, [*entries, AuditEntry("envelope", row[0], "mxg", data)])
        return True

    # -- the lifetime --------------------------------------------------------

    def awaiting_expired(self, received_before_ms: int) -> list[sqlite3.Row]:
        """Parked recipients of messages received before the cut-off."""
        mine, node = self.mine()
        return self.db.execute(
            "SELECT r.queue_id, r.idx, r.reason FROM recipients r"
            " JOIN messages m ON m.queue_id = r.queue_id"
            f" WHERE r.status='{AWAITING}' AND m.received_ms < ?{mine}",
            (received_before_ms, *node),
        ).fetchall()
