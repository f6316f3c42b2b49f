"""The relay's per-class policy (issue 4): classification at intake,
synchronous verdicts at the end of DATA, and what happens to a recipient
whose class's requirement cannot be met (`on_unmet`).

A mixin of ``mxg.relay.Relay``, kept apart so the main loop stays readable.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

import anyio

from mxg import _core
from mxg.classify import Classification, Requirement, classify, requirement
from mxg.deliverylog import event, log
from mxg.errors import EngineStopped, MessageNotFound
from mxg.store import Outcome, domain_of, now_ms

if TYPE_CHECKING:
    from mxg.config import Config
    from mxg.store import Store
    from mxg.verdict import Feasibility

# SMTP keeps reply lines short (RFC 5321 §4.5.3.1.5: 512 octets a line).
MAX_REPLY_TEXT = 400
# Verdicts decided but whose message is not received yet: bounded, since a
# session that vanished never sends its Received event.
MAX_EARLY = 10_000


class ClassPolicyMixin:
    cfg: Config
    store: Store | None
    engine: _core.Engine | None
    feasibility: Feasibility
    _early: dict[str, dict[int, str]]
    _scan_json: str

    # -- classification -------------------------------------------------

    def _scan(self, message: bytes) -> dict[str, Any]:
        features: dict[str, Any] = json.loads(_core.scan(message, self._scan_json))
        return features

    async def _features_of_spooled(self, queue_id: str) -> dict[str, Any]:
        """Messages that come without features (recovered from the spool,
        DSNs mxg made) are scanned here, off the event loop."""
        assert self.engine is not None
        engine = self.engine
        try:
            _, message = await anyio.to_thread.run_sync(engine.read, queue_id)
        except (MessageNotFound, EngineStopped):
            return {}
        return await anyio.to_thread.run_sync(self._scan, message)

    def _classify_into(self, env: dict[str, Any], features: dict[str, Any]) -> Classification:
        """Classifies and writes the result into the envelope, as the store
        keeps it: the message's class and reasons, each recipient's class."""
        c = classify(self.cfg, env, features)
        env["class"] = c.message_class
        env["classification"] = c.to_json()
        for r, k in zip(env["recipients"], c.recipient_classes, strict=True):
            r["class"] = k
        return c

    def _requirement(
        self, risk_class: str, info: dict[str, Any], address: str, override: str | None = None
    ) -> Requirement:
        return requirement(
            self.cfg, risk_class, info, self.cfg.policy_for(domain_of(address)), override
        )

    # -- synchronous verdicts -------------------------------------------

    def _plain_verdicts(self, arrived: list[tuple[dict[str, Any], Any]]) -> list[tuple[Any, Any]]:
        """Answers at once, in one crossing, for messages none of whose
        recipients is in a class that rejects: they are accepted whatever
        DNS says. Returns the others, which need `_verdict` (and maybe a
        lookup)."""
        assert self.engine is not None
        accepted: list[dict[str, str]] = []
        others: list[tuple[Any, Any]] = []
        for env, features in arrived:
            try:
                c = classify(self.cfg, env, features or {})
                rejects = any(
                    self.cfg.class_policy(k).on_unmet == "reject" for k in c.recipient_classes
                )
            except Exception:  # _verdict logs it and accepts
                rejects = True
            if rejects:
                others.append((env, features))
            else:
                accepted.append({"queue_id": env["queue_id"]})
        if accepted:
            with contextlib.suppress(EngineStopped):
                self.engine.verdicts(json.dumps(accepted))
        return others

    async def _verdict(self, env: dict[str, Any], features: dict[str, Any] | None) -> None:
        """Decides at the end of DATA whether the whole message is refused:
        every recipient's class says `reject` and its requirement is known
        to be out of reach. Recipients refused while others are not get a
        bounce right after intake instead (SMTP has no per-recipient answer
        after DATA)."""
        assert self.engine is not None
        qid = env["queue_id"]
        verdict: dict[str, Any] = {"queue_id": qid}
        refused: dict[int, str] = {}
        try:
            c = classify(self.cfg, env, features or {})
            refused = await self._refusals(env, c)
            if refused and len(refused) == len(env["recipients"]):
                verdict["reject"] = {
                    "code": 550,
                    "enhanced": "5.7.1",
                    "text": _reject_text(c.message_class, env, refused),
                }
            elif refused:
                self._remember_early(qid, refused)
        except Exception as e:  # an error here must never lose the message
            log.error(
                "verdict failed, accepting", exc_info=e, extra={"mxg_fields": {"queue_id": qid}}
            )
        taken = [False]
        with contextlib.suppress(EngineStopped):
            taken = self.engine.verdicts(json.dumps([verdict]))
        if "reject" in verdict and not taken[0]:
            # Too late: the client got 250. Its recipients bounce instead.
            self._remember_early(qid, refused)

    def _remember_early(self, queue_id: str, refused: dict[int, str]) -> None:
        """Keeps a verdict for the message's intake; bounded (a session that
        vanished never sends its Received event), oldest dropped first."""
        self._early[queue_id] = refused
        while len(self._early) > MAX_EARLY:
            del self._early[next(iter(self._early))]

    async def _rcpt_check(self, check_id: str, sender: str, recipient: str) -> None:
        """RCPT-time answer for one recipient from the envelope alone: the
        sender and recipient rules give its class; if that class refuses and
        its level is known to be out of reach, the recipient gets 550 5.7.1
        and the others of the message still go."""
        assert self.engine is not None
        verdict: dict[str, Any] = {"queue_id": check_id}
        note: dict[str, Any] = {}
        try:
            env = {"sender": sender, "recipients": [{"address": recipient}]}
            c = classify(self.cfg, env, {}, envelope_only=True)
            cls = c.recipient_classes[0]
            if cls in self.cfg.rcpt_check_classes():
                req = self._requirement(cls, c.to_json(), recipient)
                domain = domain_of(recipient)
                why = await self.feasibility.blocker(domain, req.level)
                if why is not None:
                    text = (
                        f"<{recipient}>: mxg: class {c.explain()} needs transport level"
                        f" {req.level} and {domain} cannot get it: {why}"
                    )
                    verdict["reject"] = {"code": 550, "enhanced": "5.7.1", "text": _short(text)}
                    note = {"to": f"<{recipient}>", "from": f"<{sender}>", "class": cls}
                    note["reason"] = why
        except Exception as e:  # never refuse for an error of our own
            log.error("RCPT check failed, accepting", exc_info=e)
        taken = [False]
        with contextlib.suppress(EngineStopped):
            taken = self.engine.verdicts(json.dumps([verdict]))
        if "reject" in verdict and taken[0]:
            event(log, "recipient refused", logging.WARNING, **note)

    async def _refusals(self, env: dict[str, Any], c: Classification) -> dict[int, str]:
        """Recipient index → why it is refused, for classes with on_unmet
        reject whose requirement cannot be met."""
        out: dict[int, str] = {}
        blockers: dict[tuple[str, str], str | None] = {}
        for i, (r, cls) in enumerate(zip(env["recipients"], c.recipient_classes, strict=True)):
            if self.cfg.class_policy(cls).on_unmet != "reject":
                continue
            req = self._requirement(cls, c.to_json(), r["address"])
            if req.e2e_missing:
                out[i] = _e2e_text(cls)
                continue
            key = (domain_of(r["address"]), req.level)
            if key not in blockers:
                blockers[key] = await self.feasibility.blocker(*key)
            why = blockers[key]
            if why is not None:
                out[i] = (
                    f"class {cls} needs transport level {req.level} and {key[0]} cannot"
                    f" get it: {why}"
                )
        return out

    # -- on_unmet -------------------------------------------------------

    def _intake_outcomes(self, env: dict[str, Any]) -> list[Outcome]:
        """What happens at once to recipients that cannot be delivered as
        they are: content that must be end-to-end encrypted and is not, and
        recipients an end-of-DATA verdict found out of reach."""
        early = self._early.pop(env["queue_id"], {})
        outcomes: list[Outcome] = []
        for i, r in enumerate(env["recipients"]):
            req = self._requirement(r["class"], env["classification"], r["address"])
            if req.e2e_missing:
                o = self._unmet(env["queue_id"], i, r["class"], _e2e_text(r["class"]), e2e=True)
            elif i in early:
                o = self._unmet(env["queue_id"], i, r["class"], early[i])
            else:
                continue
            if o is not None:
                outcomes.append(o)
        return outcomes

    def _unmet(
        self,
        queue_id: str,
        idx: int,
        risk_class: str,
        text: str,
        *,
        e2e: bool = False,
        enhanced: str = "",
    ) -> Outcome | None:
        """The outcome `on_unmet` gives a recipient whose requirement was not
        met; None means "as delivery decided" (defer)."""
        action = self.cfg.class_policy(risk_class).on_unmet
        if action == "defer" and e2e:
            # Waiting cannot encrypt the content: an operator decides.
            action = "hold"
        if action in ("reject", "bounce"):
            # 5.7.30: REQUIRETLS support required (RFC 8689 §7.3); 5.7.5:
            # cryptographic failure; 5.7.1: refused by policy.
            if e2e:
                status = "5.7.1"
            elif enhanced.endswith(".7.30"):
                status = "5.7.30"
            else:
                status = "5.7.5"
            return Outcome(queue_id, idx, "bounced", None, status, text)
        if action == "hold":
            return Outcome(
                queue_id, idx, "held", None, "4.7.1", f"held (class {risk_class}): {text}"
            )
        if action == "reroute":
            assert self.store is not None
            self.store.set_route(queue_id, idx, "reroute")
            relay = self.cfg.class_policy(risk_class).reroute
            return Outcome(
                queue_id,
                idx,
                "deferred",
                None,
                "4.7.1",
                f"rerouted to {relay} (class {risk_class}): {text}",
                next_ms=now_ms(),
            )
        return None

    def _log_outcomes(self, env: dict[str, Any], outcomes: list[Outcome], message: str) -> None:
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


def _e2e_text(risk_class: str) -> str:
    return (
        f"class {risk_class} requires end-to-end encrypted content (S/MIME or PGP/MIME)"
        " and the message is not encrypted"
    )


def _reject_text(risk_class: str, env: dict[str, Any], refused: dict[int, str]) -> str:
    domains = sorted({domain_of(env["recipients"][i]["address"]) for i in refused})
    first = next(iter(refused.values()))
    return _short(
        f"mxg: message classified {risk_class}, not sent to {', '.join(domains)}: {first}"
    )


def _short(text: str) -> str:
    """Reply text kept within one SMTP reply line."""
    return text if len(text) <= MAX_REPLY_TEXT else text[: MAX_REPLY_TEXT - 3] + "..."
