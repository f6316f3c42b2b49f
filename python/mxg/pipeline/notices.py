"""Notices to the sender: delivery status notifications (RFC 3464) for
bounced recipients and, after ``queue.delay_warning_after``, for delayed
ones. A DSN is spooled like any message and goes out as class normal."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio

from mxg.boundary import Envelope, Recipient, decode_envelope, encode
from mxg.deliverylog import event, log
from mxg.dsn import Original, RecipientReport, build_dsn
from mxg.errors import EngineStopped, MessageNotFound, SpoolError
from mxg.pipeline.context import Context
from mxg.store import NewMessage, now_ms


class Notices:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        # Called once a DSN is spooled, so that it goes out without waiting
        # for the next scan (the dispatcher's due query).
        self.on_queued: Callable[[], None] = lambda: None
        # Messages whose failure DSN is being made: a second caller (the
        # scanner and outcomes, or two scans) leaves them to the first, so
        # that no sender gets one bounce twice; what the first did not
        # cover is still pending and goes at the next scan.
        self._failing: set[str] = set()

    def _candidates(self, queue_id: str, want: Callable[[Any], bool]) -> tuple[Any, list[Any]]:
        store = self._ctx.store
        msg = store.message(queue_id)
        rows = [r for r in store.recipients(queue_id) if want(r)] if msg else []
        return msg, rows

    async def send_failure_dsn(self, queue_id: str) -> None:
        if queue_id in self._failing:
            return
        self._failing.add(queue_id)
        try:
            await self._send_failure_dsn(queue_id)
        finally:
            self._failing.discard(queue_id)

    async def _send_failure_dsn(self, queue_id: str) -> None:
        msg, rows = self._candidates(
            queue_id, lambda r: r["status"] == "bounced" and not r["dsn_sent"]
        )
        if msg is None:
            return
        wanted = [r for r in rows if _wants(r["notify"], "FAILURE")]
        if msg["sender"] and wanted:
            reports = [_report(r, "failed") for r in wanted]
            if not await self._inject(msg, reports, None):
                return
        if rows:
            self._ctx.store.mark_dsn_sent(queue_id, [r["idx"] for r in rows])

    async def send_pending(self) -> None:
        """Failure DSNs not yet queued, at each scan: for recipients an
        operator bounced (``mxg queue bounce``, written to the store while
        the relay runs) and those a full disk held back."""
        for qid in self._ctx.store.dsn_pending():
            await self.send_failure_dsn(qid)

    async def send_delay_dsn(self, queue_id: str) -> None:
        msg, rows = self._candidates(
            queue_id, lambda r: r["status"] == "deferred" and _wants(r["notify"], "DELAY")
        )
        if msg is None:
            return
        if rows and msg["sender"]:
            reports = [_report(r, "delayed") for r in rows]
            until = msg["received_ms"] + int(self._ctx.cfg.queue.max_lifetime * 1000)
            if not await self._inject(msg, reports, until):
                return
        self._ctx.store.mark_delay_warned(queue_id)

    async def _inject(
        self, msg: Any, reports: list[RecipientReport], retry_until_ms: int | None
    ) -> bool:
        """Spools a DSN; False when the engine has stopped (retried at the
        next start)."""
        cfg, engine = self._ctx.cfg, self._ctx.engine
        try:
            _, original = await anyio.to_thread.run_sync(engine.read, msg["queue_id"])
        except MessageNotFound:
            original = b""
        except EngineStopped:
            return False
        dsn = build_dsn(
            reporting_mta=cfg.server.hostname,
            postmaster=cfg.postmaster,
            original=Original(
                msg["queue_id"],
                msg["sender"],
                msg["envid"],
                # The content of a REQUIRETLS message (RFC 8689 §5) or of a
                # class above normal does not go back in a DSN, which travels
                # as class normal.
                "HDRS"
                if msg["requiretls"] or (msg["class"] or "normal") != "normal"
                else msg["ret"],
                msg["received_ms"],
                original,
            ),
            reports=reports,
            full_message_limit=cfg.dsn.return_full_message_limit,
            retry_until_ms=retry_until_ms,
        )
        envelope = Envelope(
            queue_id="",
            received_ms=now_ms(),
            sender="",
            recipients=[Recipient(msg["sender"], ["NEVER"])],
            origin="local",
            size=len(dsn),
        )
        try:
            stored = decode_envelope(
                await anyio.to_thread.run_sync(engine.inject, encode(envelope), dsn)
            )
        except EngineStopped:
            return False
        except SpoolError as e:
            # A full disk: the bounce is stored, its DSN not yet sent; the
            # scanner tries again (``send_pending``).
            event(
                log, "cannot spool a DSN yet", logging.ERROR, queue_id=msg["queue_id"], error=str(e)
            )
            return False
        # A DSN goes back to the internal sender as class normal; for a
        # message of a higher class it carries the headers only (above).
        classification = {
            "class": "normal",
            "fired": [{"rule": "dsn", "class": "normal", "why": f"DSN for {msg['queue_id']}"}],
        }
        normal = ["normal"] * len(stored.recipients)
        self._ctx.store.add_messages([NewMessage(stored, "normal", classification, normal)])
        event(
            log,
            "dsn queued",
            queue_id=stored.queue_id,
            original=msg["queue_id"],
            to=f"<{msg['sender']}>",
            action=reports[0].action,
            nrcpt=len(reports),
        )
        self.on_queued()
        return True


def _wants(notify: str, kind: str) -> bool:
    """RFC 3461 §4.1: NOTIFY=NEVER suppresses all DSNs; without NOTIFY
    failures are reported and delays too (mxg's choice, like sendmail)."""
    words = set(filter(None, notify.split(",")))
    if "NEVER" in words:
        return False
    return not words or kind in words


def _report(row: Any, action: str) -> RecipientReport:
    """One recipient's part of a DSN, from its row in the store."""
    return RecipientReport(
        address=row["address"],
        orcpt=row["orcpt"],
        action=action,
        status=_status_for(row["enhanced"], row["code"], failed=action == "failed"),
        remote_mta=row["host"] or "",
        diagnostic=_diagnostic(row),
        last_attempt_ms=row["updated_ms"],
        reason=row["reason"],
    )


def _diagnostic(row: Any) -> str:
    """The remote server's reply as it was (``550 5.1.1 text``), or mxg's own
    explanation when no server answered."""
    text = row["text"] or ""
    if row["code"]:
        return " ".join(p for p in (str(row["code"]), row["enhanced"] or "", text) if p)
    return text


def _status_for(enhanced: str | None, code: int | None, *, failed: bool) -> str:
    """The DSN Status field (RFC 3464 §2.3.4): the enhanced code we have, or
    one derived from the reply code's class. An expired message keeps its
    4.x.x status (as Postfix does): the cause was never permanent."""
    if enhanced:
        return enhanced
    if code and 200 <= code < 600:
        return f"{str(code)[0]}.0.0"
    return "5.0.0" if failed else "4.0.0"
