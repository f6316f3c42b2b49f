"""Plan: a recipient domain's route and policies → the delivery job the
engine enforces.

For each job the plan states the level its recipients need (the strictest
among them: they share the server and the content, so one protection
serves them all), and for each allowed MX host the authentication material
the engine checks before MAIL FROM: DNSSEC-secure TLSA records, whether an
MTA-STS enforce policy or a secure MX answer makes PKIX count, and the
operator's pins. ``mxg check`` builds its probes with the same
``job_hosts``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from mxg.boundary import DeliveryJob, JobHost, Recipient, Tlsa, TlsRequirement
from mxg.classify import Requirement, requirement
from mxg.config import Config, DomainPolicy
from mxg.config.classes import stricter_level
from mxg.deliverylog import event, log
from mxg.dns import Policy, PolicyError, Route, StsCache, mx_matches
from mxg.pipeline.context import Context
from mxg.store import Due, NewMessage, domain_of, envelope_rows
from mxg.store.partners import method_rank
from mxg.vocab import Level


@dataclass
class JobInfo:
    """What the control plane remembers about a job in flight."""

    queue_id: str
    domain: str
    sender: str
    message_id: str | None
    received_ms: int
    # address → recipient indexes (an address may appear twice)
    indexes: dict[str, list[int]] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)
    route: Route | None = None
    sts: Policy | None = None
    # recipient index → risk class; the level the job required
    classes: dict[int, str] = field(default_factory=dict)
    level: str = ""
    # Sent to the class's fallback relay (on_unmet = "reroute").
    rerouted: bool = False
    # A DSN mxg made: never bounced for want of a level (that would lose
    # it), only deferred.
    dsn: bool = False
    # The message's stored classification (``Classification.to_json``).
    classification: dict[str, Any] = field(default_factory=dict)
    # ``ratchet = "enforce"``: the authentication method the partner is
    # held to (the ledger's best), or None.
    ratchet: str | None = None
    # recipient index → the sender's decision, where one was taken
    # (``keep``: on_unmet = "ask-sender" does not ask again).
    decisions: dict[int, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        """The in-flight key: one job per message and destination."""
        return inflight_key(self.queue_id, self.domain, rerouted=self.rerouted)

    def dnssec(self, host: str) -> dict[str, str]:
        """Evidence: how the MX answer and the host's addresses were secured."""
        if self.route is None or not host:
            return {}
        h = next((h for h in self.route.hosts if h.name == host), None)
        secure = {True: "secure", False: "insecure"}
        out = {"mx_dnssec": secure[self.route.mx_secure]}
        if self.sts is not None:
            out["mta_sts"] = f"{self.sts.mode} id={self.sts.id}"
        if h is not None:
            out["host_dnssec"] = secure[h.secure]
        return out


@dataclass
class Planned:
    """A due set of recipients with the message and rows they came from."""

    msg: Any
    rows: list[Any]
    info: JobInfo


# A just-received message's rows as the store would give them: the
# message's, and each recipient's (`envelope_rows`).
FreshRows = tuple[dict[str, Any], list[dict[str, Any]]]


def inflight_key(queue_id: str, domain: str, *, rerouted: bool = False) -> tuple[str, str]:
    return (queue_id, f"reroute:{domain}" if rerouted else domain)


async def sts_policy(sts: StsCache | None, domain: str) -> Policy | None:
    """The domain's MTA-STS policy; a policy that cannot be had counts as
    none (RFC 8461 §3.3: no delivery is blocked for want of one)."""
    if sts is None:
        return None
    try:
        return await sts.policy(domain)
    except PolicyError as e:
        event(log, "MTA-STS policy unavailable", logging.WARNING, domain=domain, error=str(e))
        return None


class Planner:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        # Messages received in the batch being handled, as their store rows
        # would read: their first jobs are planned without a query.
        self._fresh: dict[str, FreshRows] = {}

    @contextmanager
    def fresh(self, messages: Iterable[NewMessage]) -> Iterator[None]:
        """While planning the first jobs of just-received messages."""
        self._fresh = {m.queue_id: envelope_rows(m) for m in messages}
        try:
            yield
        finally:
            self._fresh = {}

    def fresh_rows(self, queue_id: str) -> FreshRows | None:
        """A just-received message's rows, while `fresh`: for a job
        planned later (after its route is looked up), which would
        otherwise read them from the store."""
        return self._fresh.get(queue_id)

    def recipients(
        self, due: Due, *, rerouted: bool = False, fresh: FreshRows | None = None
    ) -> Planned | None:
        """The due recipients with their message, and the job's level; None
        when the message or its recipients are gone. `fresh`: the
        message's rows as received (`fresh_rows`)."""
        cfg = self._ctx.cfg
        fresh = fresh or self._fresh.get(due.queue_id)
        msg: Any
        if fresh is not None:
            msg, every = fresh
            wanted = set(due.indexes)
            rows: list[Any] = [r for r in every if r["idx"] in wanted]
        else:
            msg = self._ctx.store.message(due.queue_id)
            rows = self._ctx.store.recipients(due.queue_id, due.indexes)
        if self._ctx.unstored:
            # Their last result waits for space in the store: not again.
            rows = [r for r in rows if (due.queue_id, r["idx"]) not in self._ctx.unstored]
        if msg is None or not rows:
            return None
        info = JobInfo(
            due.queue_id, due.domain, msg["sender"], msg["message_id"], msg["received_ms"]
        )
        info.rerouted = rerouted
        info.dsn = msg["origin"] == "local"
        classification = stored_classification(msg)
        info.classification = classification
        info.level = "none"
        # A job's recipients share message and domain, and mostly class: the
        # level is worked out once per class and override, not per recipient.
        levels: dict[tuple[str, str | None], str] = {}
        for r in rows:
            info.indexes.setdefault(r["address"], []).append(r["idx"])
            info.attempts[r["idx"]] = r["attempts"] + 1
            if r["decision"]:
                info.decisions[r["idx"]] = r["decision"]
            cls = r["class"] or cfg.classify.default_class
            info.classes[r["idx"]] = cls
            key = (cls, r["override_level"])
            if key not in levels:
                levels[key] = recipient_requirement(
                    cfg, cls, classification, r["address"], r["override_level"]
                ).level
                info.level = stricter_level(info.level, levels[key])
        if cfg.delivery.ratchet == "enforce" and not rerouted:
            self._hold_to_ledger(info)
        return Planned(msg, rows, info)

    def _hold_to_ledger(self, info: JobInfo) -> None:
        """A partner once delivered to with an authenticated method is held
        to it (or a stronger one) at the qualified level, until an operator
        accepts less (``mxg partners accept``): so that stripping its
        DNSSEC or TLSA cannot quietly lower it."""
        row = self._ctx.store.partner(info.domain)
        method = row["best_method"] if row is not None else None
        if method_rank(method) == 0:
            return
        info.ratchet = method
        info.level = stricter_level(info.level, Level.QUALIFIED)

    def job(
        self,
        job_id: int,
        planned: Planned,
        hosts: list[JobHost],
        *,
        destination: str,
    ) -> DeliveryJob:
        """The delivery job as the engine takes it (``job.rs``)."""
        cfg = self._ctx.cfg
        msg, rows, info = planned.msg, planned.rows, planned.info
        dom = cfg.policy_for(info.domain)
        requiretls = bool(msg["requiretls"]) and not any(r["override_level"] for r in rows)
        return DeliveryJob(
            job_id=job_id,
            queue_id=info.queue_id,
            destination=destination,
            sender=msg["sender"],
            recipients=[
                Recipient(r["address"], [w for w in r["notify"].split(",") if w], r["orcpt"])
                for r in rows
            ],
            hosts=hosts,
            tls=TlsRequirement(
                level=info.level,
                profile=cfg.delivery.tls_profile,
                methods=held_to(
                    dom.methods if dom and dom.methods else cfg.delivery.qualified_methods,
                    info.ratchet,
                ),
                requiretls=requiretls,
            ),
            ret=msg["ret"],
            envid=msg["envid"],
            body=msg["body"],
            smtputf8=bool(msg["smtputf8"]),
            strip_headers=info.classification.get("strip_headers", []),
            subject_tag=info.classification.get("subject_tag"),
            protection_header=cfg.delivery.protection_header,
        )


def recipient_requirement(
    cfg: Config, risk_class: str, info: dict[str, Any], address: str, override: str | None = None
) -> Requirement:
    """The transport level one recipient needs: its class, the message's
    classification, its domain's policy and an operator's override."""
    return requirement(cfg, risk_class, info, cfg.policy_for(domain_of(address)), override)


def no_allowed_mx(
    domain: str, route: Route, policy: Policy | None, dom: DomainPolicy | None
) -> str:
    """Why none of a route's MX hosts may be used (RFC 8461 §4.1 under an
    enforce policy, or the operator's policy for the domain)."""
    found = ", ".join(h.name for h in route.hosts)
    if policy is not None and not allowed_hosts(route, policy, None):
        return (
            f"validation-failure: the MTA-STS {policy.mode} policy of {domain} "
            f"(id {policy.id}, mx {', '.join(policy.mx)}) matches none of its MX "
            f"hosts ({found})"
        )
    assert dom is not None
    return (
        f"validation-failure: the configured policy for {domain} allows "
        f"only MX {', '.join(dom.mx)}, which matches none of its MX hosts "
        f"({found})"
    )


def allowed_hosts(route: Route, sts: Policy | None, dom: DomainPolicy | None) -> list[str]:
    """MX hosts usable under an MTA-STS policy (all unless it enforces,
    RFC 8461 §4.1) and the operator's policy for the domain."""
    out = []
    for h in route.hosts:
        if sts is not None and sts.mode == "enforce" and not sts.matches(h.name):
            continue
        if dom is not None and dom.mx and not any(mx_matches(p, h.name) for p in dom.mx):
            continue
        out.append(h.name)
    return out


def job_hosts(
    route: Route, policy: Policy | None = None, dom: DomainPolicy | None = None
) -> list[JobHost]:
    """The hosts of a route as the data plane takes them: addresses, TLSA
    records, whether the MX answer was secure (for dnssec-pkix), whether an
    MTA-STS enforce policy requires PKIX, and the operator's pins."""
    enforce = policy is not None and policy.mode == "enforce"
    allowed = set(allowed_hosts(route, policy, dom))
    pins = [_pin_record(p) for p in dom.pins] if dom is not None else []
    # A pinned private CA is a DANE-TA record with the full certificate
    # (2 0 0), checked by the same verifier (RFC 7671 §5.2.2).
    if dom is not None:
        pins += [Tlsa(2, 0, 0, d) for d in dom.ca_certificates]
    return [
        JobHost(
            name=h.name,
            addresses=h.addresses,
            tlsa=[_tlsa(r) for r in h.tlsa],
            tlsa_names=list(h.tlsa_names),
            pkix=route.mx_secure,
            sts=enforce,
            pins=pins,
            pin_names=dom.cert_names if dom is not None else [],
        )
        for h in route.hosts
        if h.name in allowed
    ]


def _tlsa(record: dict[str, int | str]) -> Tlsa:
    return Tlsa(
        int(record["usage"]), int(record["selector"]), int(record["mtype"]), str(record["data"])
    )


def _pin_record(pin: str) -> Tlsa:
    """An operator pin as a DANE-EE-shaped record: ``spki-sha256`` is
    ``3 1 1``, ``cert-sha256`` is ``3 0 1``."""
    kind, _, digest = pin.partition(":")
    return Tlsa(3, 1 if kind == "spki-sha256" else 0, 1, digest)


def stored_classification(msg: Any) -> dict[str, Any]:
    """A message row's classification: stored as JSON, or already parsed
    for a message just received."""
    c = msg["classification"]
    return c if isinstance(c, dict) else dict(json.loads(c or "{}"))


def held_to(methods: Iterable[str], ratchet: str | None) -> list[str]:
    """The methods a job may use: those configured, and under the ratchet
    only those at least as strong as the partner's remembered one."""
    return [str(m) for m in methods if method_rank(str(m)) >= method_rank(ratchet)]
