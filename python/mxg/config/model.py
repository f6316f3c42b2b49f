"""The whole configuration (`Config`): its sections, the checks that
span them (rule names, groups, the scanner's patterns), and what the
control plane derives from it (a class's requirement, the classes
checked at RCPT or at the end of DATA, paths in the data directory)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import field_validator, model_validator

from mxg.config import engine, sections
from mxg.config.base import Section
from mxg.config.classes import CLASSES, ClassesConfig, ClassifyConfig, ClassPolicy, Rule
from mxg.config.tlsrpt import TlsRptConfig


def _check_scan_options(options: dict[str, Any]) -> None:
    """Compiles the scanner's options the way the data plane will (its
    regex syntax is Rust's), so a bad pattern or word list stops the start."""
    if not options["patterns"] and not options["keywords"]:
        return
    from mxg import _core  # noqa: PLC0415  (the extension is only needed here)

    _core.scan(b"", json.dumps(options))


class Config(Section):
    server: sections.ServerConfig = sections.ServerConfig()
    limits: sections.LimitsConfig = sections.LimitsConfig()
    data: sections.DataConfig = sections.DataConfig()
    dns: sections.DnsConfig = sections.DnsConfig()
    delivery: sections.DeliveryConfig = sections.DeliveryConfig()
    queue: sections.QueueConfig = sections.QueueConfig()
    retention: sections.RetentionConfig = sections.RetentionConfig()
    dsn: sections.DsnConfig = sections.DsnConfig()
    envelope: sections.EnvelopeConfig = sections.EnvelopeConfig()
    log: sections.LogConfig = sections.LogConfig()
    web: sections.WebConfig = sections.WebConfig()
    decisions: sections.DecisionsConfig = sections.DecisionsConfig()
    metrics: sections.MetricsConfig = sections.MetricsConfig()
    run: sections.RunConfig = sections.RunConfig()
    cluster: sections.ClusterConfig = sections.ClusterConfig()
    tlsrpt: TlsRptConfig = TlsRptConfig()
    policy: list[sections.DomainPolicy] = []
    classify: ClassifyConfig = ClassifyConfig()
    classes: ClassesConfig = ClassesConfig()
    # Named sender groups for rules ("group:NAME"): address/domain patterns.
    groups: dict[str, list[str]] = {}
    rule: list[Rule] = []

    @model_validator(mode="after")
    def _rules(self) -> Config:
        names: set[str] = set()
        for r in self.rule:
            if r.name in names:
                raise ValueError(f"rule name {r.name!r} is used twice")
            names.add(r.name)
            for p in r.sender + r.recipient:
                if p.startswith("group:") and p[6:] not in self.groups:
                    raise ValueError(f"rule {r.name!r}: no group {p[6:]!r} in [groups]")
        _check_scan_options(self.scan_options())
        return self

    def class_policy(self, name: str) -> ClassPolicy:
        """The class's requirement; `delivery.default_level`, when set,
        still gives the level of class normal (older configurations)."""
        policy = self.classes.of(name)
        legacy = self.delivery.default_level
        if (
            name == "normal"
            and legacy is not None
            and "normal" not in self.classes.model_fields_set
        ):
            return policy.model_copy(update={"level": legacy})
        return policy

    def rcpt_check_classes(self) -> set[str]:
        """Classes that rules on the envelope alone (or the default) can
        give and that refuse (`reject`) with a requirement content cannot
        relax: for those, recipients are checked at RCPT."""
        candidates: set[str] = {self.classify.default_class} | {
            r.risk_class for r in self.rule if r.envelope_only
        }
        out: set[str] = set()
        for name in candidates:
            policy = self.class_policy(name)
            relaxes = bool(policy.e2e_level) or (
                name == "normal" and self.classify.honour_tls_required_no
            )
            if policy.on_unmet == "reject" and not relaxes:
                out.add(name)
        return out

    def scan_options(self) -> dict[str, Any]:
        """What the content scanner in the data plane looks for."""
        c = self.classify
        headers = {c.marker_header, "TLS-Required"} | {
            r.header.name for r in self.rule if r.header is not None
        }
        return {
            "max_scan_bytes": c.max_scan_bytes,
            "max_depth": c.max_depth,
            "max_parts": c.max_parts,
            "headers": sorted(headers, key=str.lower),
            "keywords": [{"name": r.name, "words": r.keywords} for r in self.rule if r.keywords],
            "patterns": [{"name": r.name, "regexes": r.patterns} for r in self.rule if r.patterns],
        }

    @field_validator("policy")
    @classmethod
    def _unique_domains(cls, v: list[sections.DomainPolicy]) -> list[sections.DomainPolicy]:
        seen: set[str] = set()
        for p in v:
            if p.domain in seen:
                raise ValueError(f"domain {p.domain!r} has more than one [[policy]]")
            seen.add(p.domain)
        return v

    def policy_for(self, domain: str) -> sections.DomainPolicy | None:
        return next((p for p in self.policy if p.domain == domain), None)

    @property
    def spool_dir(self) -> Path:
        return self.data.directory / "spool"

    @property
    def db_path(self) -> Path:
        return self.data.directory / "queue.db"

    @property
    def store_target(self) -> Path | str:
        """Where the store is: the SQLite file, or the PostgreSQL URL."""
        return self.data.store or self.db_path

    @property
    def postmaster(self) -> str:
        return self.dsn.postmaster or f"postmaster@{self.server.hostname}"

    def refusing_classes(self) -> list[str]:
        """Classes whose on_unmet refuses the message at the end of DATA."""
        return [c for c in CLASSES if self.classes.of(c).on_unmet == "reject"]

    def verdict_screen(self) -> dict[str, Any] | None:
        """Which messages the data plane must ask about at the end of DATA.
        A message's class is the highest of the default class, its marker
        header and the rules that fire; when neither the default nor any
        rule yields a refusing class, only a marker naming one can, and the
        data plane accepts every other message without asking. None: every
        message is asked about."""
        refusing = self.refusing_classes()
        if self.classify.default_class in refusing or any(
            r.risk_class in refusing for r in self.rule
        ):
            return None
        return {"header": self.classify.marker_header, "classes": refusing}

    def engine_json(self) -> dict[str, Any]:
        """The engine configuration handed to the Rust data plane
        (`mxg.config.engine`)."""
        return engine.engine_json(self)
