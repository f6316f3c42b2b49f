"""Verdicts: answers to the data plane's questions while a client is still
connected, for classes whose ``on_unmet`` is ``reject`` (the sender's own
server then bounces at once, instead of mxg bouncing later).

At the end of DATA a message is refused when every recipient's class
rejects and its level is known to be out of reach (``verdict.Feasibility``:
DNS, policies, recent attempts; never a connection of its own). At RCPT a
recipient is refused on the envelope alone when sender and recipient rules
put it in such a class. Any error accepts: mxg never refuses mail for a
fault of its own.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from mxg.boundary import Arrived, Envelope, RcptCheck, Reply, Verdict, draft_envelope, encode
from mxg.classify import Classification, classify
from mxg.deliverylog import event, log
from mxg.errors import EngineStopped
from mxg.pipeline.context import Context
from mxg.pipeline.plan import recipient_requirement
from mxg.store import domain_of

# SMTP keeps reply lines short (RFC 5321 §4.5.3.1.5: 512 octets a line).
MAX_REPLY_TEXT = 400
# Verdicts decided but whose message is not received yet: bounded, since a
# session that vanished never sends its Received event.
MAX_EARLY = 10_000


class EarlyVerdicts:
    """Recipients refused at the end of DATA while others of the message
    were accepted (SMTP has no per-recipient answer after DATA): kept for
    the message's intake, which bounces them."""

    def __init__(self) -> None:
        self._refused: dict[str, dict[int, str]] = {}

    def remember(self, queue_id: str, refused: dict[int, str]) -> None:
        """Bounded (a session that vanished never sends its Received
        event), oldest dropped first."""
        self._refused[queue_id] = refused
        while len(self._refused) > MAX_EARLY:
            del self._refused[next(iter(self._refused))]

    def pop(self, queue_id: str) -> dict[int, str]:
        return self._refused.pop(queue_id, {})


class Verdicts:
    def __init__(self, ctx: Context, early: EarlyVerdicts) -> None:
        self._ctx = ctx
        self._early = early

    def on_arrived(self, arrived: list[Arrived]) -> None:
        """Messages at the end of DATA: those that no class could reject
        are answered at once, in one crossing; the others are decided in
        their own tasks (they may need a lookup)."""
        if not self._ctx.serving:
            return
        plain, others = self.split(arrived)
        if plain:
            with contextlib.suppress(EngineStopped):
                self._ctx.engine.verdicts(encode([Verdict(e.envelope.queue_id) for e in plain]))
        for e in others:
            self._ctx.spawn(self._verdict, e.envelope, e.features)

    def on_rcpt_check(self, e: RcptCheck) -> None:
        self._ctx.spawn(self._rcpt_check, e.check_id, e.sender, e.recipient)

    def split(self, arrived: list[Arrived]) -> tuple[list[Arrived], list[Arrived]]:
        """The messages no class could reject, and the others (which may
        need a lookup to decide)."""
        cfg = self._ctx.cfg
        plain: list[Arrived] = []
        others: list[Arrived] = []
        for e in arrived:
            try:
                c = classify(cfg, e.envelope, e.features or {})
                rejects = any(cfg.class_policy(k).on_unmet == "reject" for k in c.recipient_classes)
            except Exception:  # decide logs it and accepts
                rejects = True
            (others if rejects else plain).append(e)
        return plain, others

    async def _verdict(self, env: Envelope, features: dict[str, Any] | None) -> None:
        """Decides and answers; a refusal that comes too late becomes
        bounces after intake."""
        verdict, refused = await self.decide(env, features)
        taken = [False]
        with contextlib.suppress(EngineStopped):
            taken = self._ctx.engine.verdicts(encode([verdict]))
        if verdict.reject is not None and not taken[0]:
            # Too late: the client got 250. Its recipients bounce instead.
            self._early.remember(env.queue_id, refused)

    async def decide(
        self, env: Envelope, features: dict[str, Any] | None
    ) -> tuple[Verdict, dict[int, str]]:
        """Decides at the end of DATA whether the whole message is refused:
        every recipient's class says `reject` and its requirement is known
        to be out of reach. Recipients refused while others are not get a
        bounce right after intake instead (remembered here). Returns the
        verdict and the refused recipients."""
        qid = env.queue_id
        verdict = Verdict(qid)
        refused: dict[int, str] = {}
        try:
            c = classify(self._ctx.cfg, env, features or {})
            refused = await self._refusals(env, c)
            if refused and len(refused) == len(env.recipients):
                text = _reject_text(c.message_class, env, refused)
                verdict.reject = Reply(550, "5.7.1", text)
            elif refused:
                self._early.remember(qid, refused)
        except Exception as e:  # an error here must never lose the message
            log.error(
                "verdict failed, accepting", exc_info=e, extra={"mxg_fields": {"queue_id": qid}}
            )
        return verdict, refused

    async def _rcpt_check(self, check_id: str, sender: str, recipient: str) -> None:
        """RCPT-time answer for one recipient from the envelope alone: the
        sender and recipient rules give its class; if that class refuses and
        its level is known to be out of reach, the recipient gets 550 5.7.1
        and the others of the message still go."""
        cfg = self._ctx.cfg
        verdict = Verdict(check_id)
        note: dict[str, Any] = {}
        try:
            env = draft_envelope(sender, [recipient])
            c = classify(cfg, env, {}, envelope_only=True)
            cls = c.recipient_classes[0]
            if cls in cfg.rcpt_check_classes():
                req = recipient_requirement(cfg, cls, c.to_json(), recipient)
                domain = domain_of(recipient)
                why = await self._ctx.feasibility.blocker(domain, req.level)
                if why is not None:
                    text = (
                        f"<{recipient}>: mxg: class {c.explain()} needs transport level"
                        f" {req.level} and {domain} cannot get it: {why}"
                    )
                    verdict.reject = Reply(550, "5.7.1", _short(text))
                    note = {"to": f"<{recipient}>", "from": f"<{sender}>", "class": cls}
                    note["reason"] = why
        except Exception as e:  # never refuse for an error of our own
            log.error("RCPT check failed, accepting", exc_info=e)
        taken = [False]
        with contextlib.suppress(EngineStopped):
            taken = self._ctx.engine.verdicts(encode([verdict]))
        if verdict.reject is not None and taken[0]:
            event(log, "recipient refused", logging.WARNING, **note)

    async def _refusals(self, env: Envelope, c: Classification) -> dict[int, str]:
        """Recipient index → why it is refused, for classes with on_unmet
        reject whose requirement cannot be met."""
        cfg = self._ctx.cfg
        out: dict[int, str] = {}
        blockers: dict[tuple[str, str], str | None] = {}
        for i, (r, cls) in enumerate(zip(env.recipients, c.recipient_classes, strict=True)):
            if cfg.class_policy(cls).on_unmet != "reject":
                continue
            req = recipient_requirement(cfg, cls, c.to_json(), r.address)
            if req.e2e_missing:
                out[i] = e2e_text(cls)
                continue
            key = (domain_of(r.address), req.level)
            if key not in blockers:
                blockers[key] = await self._ctx.feasibility.blocker(*key)
            why = blockers[key]
            if why is not None:
                out[i] = (
                    f"class {cls} needs transport level {req.level} and {key[0]} cannot"
                    f" get it: {why}"
                )
        return out


def e2e_text(risk_class: str) -> str:
    return (
        f"class {risk_class} requires end-to-end encrypted content (S/MIME or PGP/MIME)"
        " and the message is not encrypted"
    )


def _reject_text(risk_class: str, env: Envelope, refused: dict[int, str]) -> str:
    domains = sorted({domain_of(env.recipients[i].address) for i in refused})
    first = next(iter(refused.values()))
    return _short(
        f"mxg: message classified {risk_class}, not sent to {', '.join(domains)}: {first}"
    )


def _short(text: str) -> str:
    """Reply text kept within one SMTP reply line."""
    return text if len(text) <= MAX_REPLY_TEXT else text[: MAX_REPLY_TEXT - 3] + "..."
