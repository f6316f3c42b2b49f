"""Notices to the sender: delivery status notifications (RFC 3464) for
bounced recipients and, after ``queue.delay_warning_after``, for delayed
ones; and the decision notice for recipients parked by ``on_unmet =
"ask-sender"`` (`mxg.decide.notice`), one per message and batch of
recipients that settled together. Each is spooled like any message and
goes out as class normal."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import orjson

from mxg.boundary import Envelope, Recipient, decode_envelope, encode
from mxg.decide.choices import offered
from mxg.decide.marks import Asked, asked_of, carrier_of, message_id_of
from mxg.decide.notice import build_notice, subject_of
from mxg.deliverylog import event, log
from mxg.dsn import Original, RecipientReport, build_dsn
from mxg.errors import EngineStopped, MessageNotFound, SpoolError
from mxg.pipeline.context import Context
from mxg.store import NewMessage, now_ms
from mxg.vocab import RecipientState


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
        # Messages whose decision notice is being made (as `_failing`).
        self._asking: set[str] = set()

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

    async def ask_sender(self, queue_id: str) -> None:
        """One decision notice for the recipients of `queue_id` parked and
        not yet asked about; they are never asked about again."""
        if queue_id in self._asking:
            return
        self._asking.add(queue_id)
        try:
            await self._ask_sender(queue_id)
        finally:
            self._asking.discard(queue_id)

    async def ask_pending(self) -> None:
        """Decision notices a stop or a full disk held back, at each scan."""
        for qid in self._ctx.store.unasked():
            await self.ask_sender(qid)

    async def _ask_sender(self, queue_id: str) -> None:
        cfg, store = self._ctx.cfg, self._ctx.store
        msg = store.message(queue_id)
        rows = store.awaiting(queue_id, unasked=True)
        if msg is None or not rows:
            return
        indexes = [r["idx"] for r in rows]
        lifetime_end = msg["received_ms"] + int(cfg.queue.max_lifetime * 1000)
        # A link never outlives the message it decides about.
        expires = min(now_ms() + int(cfg.decisions.token_lifetime * 1000), lifetime_end)
        if not msg["sender"]:
            # Nobody to ask (a null reverse path): it waits for an operator
            # or its lifetime.
            store.mark_asked(queue_id, indexes, None, expires)
            return
        try:
            _, original = await anyio.to_thread.run_sync(self._ctx.engine.read, queue_id)
        except MessageNotFound:
            original = b""
        except EngineStopped:
            return
        link = token_id = None
        if self._ctx.tokens is not None and cfg.web.public_url and cfg.web.listen:
            token, claims = self._ctx.tokens.issue(queue_id, expires)
            link, token_id = f"{cfg.web.public_url}/decide/{token}", claims.token_id
        asked = Asked(queue_id, indexes, token_id, expires)
        notice = build_notice(
            cfg,
            msg,
            rows,
            subject=subject_of(original),
            link=link,
            expires_ms=expires,
            choices=offered(cfg, rows),
            # Parked earlier ones were named in an earlier notice.
            others=[
                r["status"]
                for r in store.recipients(queue_id)
                if r["status"] != RecipientState.AWAITING_SENDER
            ],
            asked=asked,
        )
        queued = await self.spool_to_sender(
            queue_id,
            msg["sender"],
            notice,
            "ask-sender",
            "decision notice",
            record=lambda m: store.asked(m, queue_id, indexes, token_id, expires),
        )
        if queued is None:
            return
        # The link is a secret of the sender's: never logged (rule 8).
        event(
            log,
            "sender asked",
            queue_id=queued,
            original=queue_id,
            to=f"<{msg['sender']}>",
            nrcpt=len(rows),
            link="yes" if link else "no",
        )

    async def spool_carriers(self) -> None:
        """Secure-envelope carriers that decisions made (the decision page,
        ``mxg decide``), spooled as new messages from the original sender
        to the recipients it was sealed for, at each class's
        ``carrier_level``; at each scan, so none is lost to a stop."""
        store, engine = self._ctx.store, self._ctx.engine
        for c in store.pending_carriers():
            msg = store.message(c["queue_id"])
            wanted = set(orjson.loads(c["recipients"]))
            rows = [r for r in store.recipients(c["queue_id"]) if r["idx"] in wanted]
            if msg is None or not rows:
                continue
            data = bytes(c["data"])
            envelope = Envelope(
                queue_id="",
                received_ms=now_ms(),
                sender=msg["sender"],
                recipients=[
                    Recipient(r["address"], [w for w in r["notify"].split(",") if w], r["orcpt"])
                    for r in rows
                ],
                origin="local",
                size=len(data),
                # What recovery finds it by, should the relay stop before
                # it is recorded (mxg.decide.marks).
                message_id=message_id_of(data),
            )
            try:
                stored = decode_envelope(
                    await anyio.to_thread.run_sync(engine.inject, encode(envelope), data)
                )
            except (EngineStopped, SpoolError):
                return  # at the next scan or start
            if not self._record_carrier(c["id"], stored):
                continue
            event(
                log,
                "secure envelope spooled",
                queue_id=stored.queue_id,
                original=c["queue_id"],
                nrcpt=len(rows),
            )
            self.on_queued()

    def _record_carrier(self, carrier_id: int, stored: Envelope) -> bool:
        """Indexes the spooled carrier `stored` of the stored carrier
        `carrier_id` at its recipients' carrier levels (False when it is
        recorded already)."""
        store = self._ctx.store
        c = next((c for c in store.pending_carriers() if c["id"] == carrier_id), None)
        msg = store.message(c["queue_id"]) if c is not None else None
        if c is None or msg is None:
            return False
        wanted = set(orjson.loads(c["recipients"]))
        rows = [r for r in store.recipients(c["queue_id"]) if r["idx"] in wanted]
        classes = [r["class"] or "normal" for r in rows]
        classification = {
            "class": msg["class"] or "normal",
            "fired": [{"rule": "envelope", "class": msg["class"], "why": c["queue_id"]}],
        }
        levels = [str(self._ctx.cfg.class_policy(k).carrier_level) for k in classes]
        carrier = NewMessage(stored, msg["class"], classification, classes)
        return store.carrier_spooled(carrier_id, carrier, levels)

    async def recover_spooled(self, envelopes: list[Envelope]) -> list[Envelope]:
        """At start (and after a full disk): of the spooled messages the
        index does not know, the decision notices and carriers whose
        record a stop cut off are recorded now, exactly as they would have
        been (`mxg.decide.marks`); the others are returned, to be
        classified as received."""
        store, engine = self._ctx.store, self._ctx.engine
        carriers = [(c["id"], bytes(c["data"])) for c in store.pending_carriers()]
        rest = []
        for env in envelopes:
            if env.origin != "local":
                rest.append(env)
                continue
            if store.message(env.queue_id) is not None:
                continue  # recorded meanwhile (a rescan beside a scan)
            try:
                _, data = await anyio.to_thread.run_sync(engine.read, env.queue_id)
            except MessageNotFound:
                continue
            asked = asked_of(data) if not env.sender else None
            carrier_id = carrier_of(env.message_id, carriers) if env.sender else None
            if asked is not None:
                store.asked(
                    self._as_notice(env, "ask-sender", "decision notice", asked.queue_id),
                    asked.queue_id,
                    asked.indexes,
                    asked.token_id,
                    asked.expires_ms,
                )
            elif carrier_id is None or not self._record_carrier(carrier_id, env):
                rest.append(env)
                continue
            event(log, "spooled before a stop, recorded now", queue_id=env.queue_id)
        return rest

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
        queued = await self.spool_to_sender(msg["queue_id"], msg["sender"], dsn, "dsn", "DSN")
        if queued is None:
            return False
        event(
            log,
            "dsn queued",
            queue_id=queued,
            original=msg["queue_id"],
            to=f"<{msg['sender']}>",
            action=reports[0].action,
            nrcpt=len(reports),
        )
        return True

    async def spool_to_sender(
        self,
        original: str,
        sender: str,
        data: bytes,
        what: str,
        name: str,
        *,
        record: Callable[[NewMessage], Any] | None = None,
    ) -> str | None:
        """Spools a message mxg wrote (a DSN, a decision notice: `what`,
        `name` in words) from the null reverse path to the original
        sender, as class normal, and indexes it (with `record` when what
        it stands for is recorded in the same transaction); its queue id,
        or None when the engine has stopped or the spool is full (the
        scanner tries again)."""
        engine = self._ctx.engine
        envelope = Envelope(
            queue_id="",
            received_ms=now_ms(),
            sender="",
            recipients=[Recipient(sender, ["NEVER"])],
            origin="local",
            size=len(data),
        )
        try:
            stored = decode_envelope(
                await anyio.to_thread.run_sync(engine.inject, encode(envelope), data)
            )
        except EngineStopped:
            return None
        except SpoolError as e:
            # A full disk: the bounce is stored, its DSN not yet sent; the
            # scanner tries again (``send_pending``).
            event(log, f"cannot spool a {name} yet", logging.ERROR, queue_id=original, error=str(e))
            return None
        notice = self._as_notice(stored, what, name, original)
        if record is None:
            self._ctx.store.add_messages([notice])
        else:
            record(notice)
        self.on_queued()
        return stored.queue_id

    @staticmethod
    def _as_notice(stored: Envelope, what: str, name: str, original: str) -> NewMessage:
        """A message mxg wrote to a sender: it goes back to the internal
        sender as class normal; for a message of a higher class it carries
        no content."""
        classification = {
            "class": "normal",
            "fired": [{"rule": what, "class": "normal", "why": f"{name} for {original}"}],
        }
        return NewMessage(stored, "normal", classification, ["normal"] * len(stored.recipients))


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
