"""Intake: a received message is classified once, indexed with its class,
and what cannot be delivered as it is (content that must be end-to-end
encrypted and is not, recipients an end-of-DATA verdict found out of
reach) gets its class's ``on_unmet`` outcome at once."""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio

from mxg import _core
from mxg.boundary import Envelope, Received, Rejected
from mxg.classify import classify
from mxg.deliverylog import event, log
from mxg.errors import EngineStopped, MessageNotFound
from mxg.pipeline.context import Context
from mxg.pipeline.outcomes import Outcomes
from mxg.pipeline.plan import recipient_requirement
from mxg.pipeline.verdicts import EarlyVerdicts, e2e_text
from mxg.store import NewMessage, Outcome, is_full, is_unavailable


class Intake:
    def __init__(self, ctx: Context, outcomes: Outcomes, early: EarlyVerdicts) -> None:
        self._ctx = ctx
        self._outcomes = outcomes
        self._early = early
        self._scan_cfg = ctx.cfg
        self._scan_json = json.dumps(ctx.cfg.scan_options())

    async def take(self, received: list[Received]) -> tuple[list[NewMessage], list[Outcome]]:
        """Classifies and indexes a batch of received messages and stores
        what happens at once to some of their recipients; returns the
        messages (classified) and those outcomes."""
        messages = [await self.classify_event(e.envelope, e.features) for e in received]
        try:
            self._ctx.store.add_messages(messages)
        except Exception as e:
            if not is_unavailable(e):
                raise
            # Durable in the spool (rule 9): indexed by a rescan once the
            # store has space again (rule 10), not dispatched before.
            self._ctx.rescan_wanted = True
            event(
                log,
                "queue index full: received messages wait in the spool"
                if is_full(e)
                else "store unreachable: received messages wait in the spool",
                logging.ERROR,
                count=len(messages),
            )
            return [], []
        return messages, await self.indexed(messages)

    async def classify_event(self, env: Envelope, features: dict[str, Any] | None) -> NewMessage:
        """A message as it arrived, classified (scanned here when the
        engine's scanner gave no features)."""
        if features is None:
            features = await self.features_of_spooled(env.queue_id)
        return self.classified(env, features)

    async def indexed(self, messages: list[NewMessage]) -> list[Outcome]:
        """After the store took `messages`: each is logged ("received")
        and counted, and what happens at once to some recipients is
        stored; returns those outcomes."""
        intake: list[Outcome] = []
        counts = self._ctx.counts
        for m in messages:
            env = m.envelope
            counts.message_received(m.risk_class or "")
            event(
                log,
                "received",
                queue_id=env.queue_id,
                message_id=env.message_id or "",
                size=env.size,
                **{"from": f"<{env.sender}>"},
                nrcpt=len(env.recipients),
                client=env.client_addr or "local",
                **{"class": m.risk_class},
                why=_why(m.classification or {}),
            )
            now = self.at_intake(m)
            _log_outcomes(env, now, "not delivered as classified")
            for o in now:
                counts.recipient(
                    o.status, m.recipient_class(o.idx) or m.risk_class or "", "none", ""
                )
            intake += now
        if intake:
            await self._outcomes.commit(intake)
        return intake

    def at_intake(self, m: NewMessage) -> list[Outcome]:
        """What happens at once to recipients that cannot be delivered as
        they are: content that must be end-to-end encrypted and is not, and
        recipients an end-of-DATA verdict found out of reach."""
        early = self._early.pop(m.queue_id)
        outcomes: list[Outcome] = []
        for i, r in enumerate(m.envelope.recipients):
            cls = m.recipient_class(i) or self._ctx.cfg.classify.default_class
            req = recipient_requirement(self._ctx.cfg, cls, m.classification or {}, r.address)
            if req.e2e_missing:
                o = self._outcomes.unmet(m.queue_id, i, cls, e2e_text(cls), e2e=True)
            elif i in early:
                o = self._outcomes.unmet(m.queue_id, i, cls, early[i])
            else:
                continue
            if o is not None:
                outcomes.append(o)
        return outcomes

    def classified(self, env: Envelope, features: dict[str, Any]) -> NewMessage:
        """The message as the store keeps it: its class and reasons, and
        each recipient's class."""
        c = classify(self._ctx.cfg, env, features)
        return NewMessage(env, c.message_class, c.to_json(), c.recipient_classes)

    async def features_of_spooled(self, queue_id: str) -> dict[str, Any]:
        """Messages that come without features (recovered from the spool,
        DSNs mxg made) are scanned here, off the event loop."""
        engine = self._ctx.engine
        try:
            _, message = await anyio.to_thread.run_sync(engine.read, queue_id)
        except (MessageNotFound, EngineStopped):
            return {}
        return await anyio.to_thread.run_sync(self._scan, message)

    def _scan(self, message: bytes) -> dict[str, Any]:
        if self._scan_cfg is not self._ctx.cfg:  # reloaded (SIGHUP)
            self._scan_cfg = self._ctx.cfg
            self._scan_json = json.dumps(self._ctx.cfg.scan_options())
        features: dict[str, Any] = json.loads(_core.scan(message, self._scan_json))
        return features


def log_rejected(e: Rejected) -> None:
    """A message refused at the end of DATA (its class rejects); the
    engine counts it among the inbound refusals (reason ``policy``)."""
    env = e.envelope
    event(
        log,
        "rejected",
        logging.WARNING,
        queue_id=env.queue_id,
        message_id=env.message_id or "",
        **{"from": f"<{env.sender}>"},
        nrcpt=len(env.recipients),
        client=env.client_addr or "local",
        reply=f"{e.code} {e.enhanced} {e.text}",
    )


def _why(classification: dict[str, Any]) -> str:
    """The rules that raised the class, for the "received" log line."""
    fired = [f"{f['rule']}: {f['why']}" for f in classification.get("fired", [])]
    return "; ".join(fired[1:]) or "default"


def _log_outcomes(env: Envelope, outcomes: list[Outcome], message: str) -> None:
    for o in outcomes:
        event(
            log,
            message,
            logging.WARNING,
            queue_id=o.queue_id,
            to=f"<{env.recipients[o.idx].address}>",
            status=o.status,
            text=o.text,
        )
