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
from mxg.classify import Classification, classify
from mxg.deliverylog import event, log
from mxg.errors import EngineStopped, MessageNotFound
from mxg.pipeline.context import Context
from mxg.pipeline.outcomes import Outcomes
from mxg.pipeline.plan import recipient_requirement
from mxg.pipeline.verdicts import EarlyVerdicts, e2e_text
from mxg.store import Outcome


class Intake:
    def __init__(self, ctx: Context, outcomes: Outcomes, early: EarlyVerdicts) -> None:
        self._ctx = ctx
        self._outcomes = outcomes
        self._early = early
        self._scan_json = json.dumps(ctx.cfg.scan_options())

    async def take(
        self, received: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[Outcome]]:
        """Classifies and indexes a batch of received messages and stores
        what happens at once to some of their recipients; returns the
        envelopes (classified) and those outcomes."""
        envelopes = []
        for e in received:
            env = e["envelope"]
            features = e.get("features")
            if not isinstance(features, dict):
                features = await self.features_of_spooled(env["queue_id"])
            self.classify_into(env, features)
            envelopes.append(env)
        self._ctx.store.add_messages(envelopes)
        intake: list[Outcome] = []
        for env in envelopes:
            event(
                log,
                "received",
                queue_id=env["queue_id"],
                message_id=env.get("message_id") or "",
                size=env["size"],
                **{"from": f"<{env['sender']}>"},
                nrcpt=len(env["recipients"]),
                client=env.get("client_addr") or "local",
                **{"class": env["class"]},
                why=_why(env["classification"]),
            )
            now = self.at_intake(env)
            _log_outcomes(env, now, "not delivered as classified")
            intake += now
        if intake:
            await self._outcomes.commit(intake)
        return envelopes, intake

    def at_intake(self, env: dict[str, Any]) -> list[Outcome]:
        """What happens at once to recipients that cannot be delivered as
        they are: content that must be end-to-end encrypted and is not, and
        recipients an end-of-DATA verdict found out of reach."""
        early = self._early.pop(env["queue_id"])
        outcomes: list[Outcome] = []
        for i, r in enumerate(env["recipients"]):
            req = recipient_requirement(
                self._ctx.cfg, r["class"], env["classification"], r["address"]
            )
            if req.e2e_missing:
                o = self._outcomes.unmet(
                    env["queue_id"], i, r["class"], e2e_text(r["class"]), e2e=True
                )
            elif i in early:
                o = self._outcomes.unmet(env["queue_id"], i, r["class"], early[i])
            else:
                continue
            if o is not None:
                outcomes.append(o)
        return outcomes

    def classify_into(self, env: dict[str, Any], features: dict[str, Any]) -> Classification:
        """Classifies and writes the result into the envelope, as the store
        keeps it: the message's class and reasons, each recipient's class."""
        c = classify(self._ctx.cfg, env, features)
        env["class"] = c.message_class
        env["classification"] = c.to_json()
        for r, k in zip(env["recipients"], c.recipient_classes, strict=True):
            r["class"] = k
        return c

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
        features: dict[str, Any] = json.loads(_core.scan(message, self._scan_json))
        return features


def log_rejected(e: dict[str, Any]) -> None:
    """A message refused at the end of DATA (its class rejects)."""
    env = e["envelope"]
    event(
        log,
        "rejected",
        logging.WARNING,
        queue_id=env["queue_id"],
        message_id=env.get("message_id") or "",
        **{"from": f"<{env['sender']}>"},
        nrcpt=len(env["recipients"]),
        reply=f"{e['code']} {e['enhanced']} {e['text']}",
    )


def _why(classification: dict[str, Any]) -> str:
    """The rules that raised the class, for the "received" log line."""
    fired = [f"{f['rule']}: {f['why']}" for f in classification.get("fired", [])]
    return "; ".join(fired[1:]) or "default"


def _log_outcomes(env: dict[str, Any], outcomes: list[Outcome], message: str) -> None:
    for o in outcomes:
        event(
            log,
            message,
            logging.WARNING,
            queue_id=o.queue_id,
            to=f"<{env['recipients'][o.idx]['address']}>",
            status=o.status,
            text=o.text,
        )
