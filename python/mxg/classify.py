"""Classification: from a message's envelope and the features the data
plane's scanner found to a risk class per recipient, with the reasons.

The rules come from the configuration (``[[rule]]``,
``mxg.config.classes``); the highest class any of them yields wins, and
every decision is explained: which rules fired, and with what. Pure
functions, no I/O.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from mxg.boundary import Envelope
from mxg.config import Config, DomainPolicy
from mxg.config.classes import CLASSES, Rule, address_matches, higher_class, stricter_level
from mxg.vocab import Level


@dataclass
class Classification:
    message_class: str
    # One class per recipient, in envelope order.
    recipient_classes: list[str]
    # {"rule", "class", "why"} and "recipients" for recipient rules.
    fired: list[dict[str, Any]] = field(default_factory=list)
    # "smime" | "pgp" when the content is end-to-end encrypted.
    e2e: str | None = None
    requiretls: bool = False
    # "TLS-Required: No" (RFC 8689 §3) was present and is honoured.
    tls_optional: bool = False
    # Header fields and subject tag to remove before delivery.
    strip_headers: list[str] = field(default_factory=list)
    subject_tag: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "class": self.message_class,
            "fired": self.fired,
            "e2e": self.e2e,
            "requiretls": self.requiretls,
            "tls_optional": self.tls_optional,
            "strip_headers": self.strip_headers,
            "subject_tag": self.subject_tag,
            "notes": self.notes,
        }

    def explain(self) -> str:
        """One line for logs: `high (rule "health": sender …; …)`."""
        parts = [f"{f['rule']}: {f['why']}" for f in self.fired if f["class"] != "normal"]
        return f"{self.message_class} ({'; '.join(parts)})" if parts else self.message_class


# Long on purpose: the marker header, the rules, REQUIRETLS and
# TLS-Required, in the order in which they raise the class.
def classify(  # noqa: C901, PLR0912
    cfg: Config,
    envelope: Envelope,
    features: dict[str, Any],
    *,
    envelope_only: bool = False,
) -> Classification:
    """The classes of a message's recipients; with `envelope_only` (at RCPT,
    before any content) only the rules about sender and recipients count."""
    c = cfg.classify
    headers: dict[str, list[str]] = {
        k.lower(): v for k, v in (features.get("headers") or {}).items()
    }
    recipients = [r.address for r in envelope.recipients]
    result = Classification(c.default_class, [c.default_class] * len(recipients))
    result.fired.append({"rule": "default", "class": c.default_class, "why": "default class"})
    result.e2e = features.get("encryption")

    def raise_to(cls: str, rule: str, why: str, only: list[int] | None = None) -> None:
        entry: dict[str, Any] = {"rule": rule, "class": cls, "why": why}
        if only is None:
            result.message_class = higher_class(result.message_class, cls)
            result.recipient_classes = [higher_class(x, cls) for x in result.recipient_classes]
        else:
            entry["recipients"] = [recipients[i] for i in only]
            for i in only:
                result.recipient_classes[i] = higher_class(result.recipient_classes[i], cls)
        result.fired.append(entry)

    for value in headers.get(c.marker_header.lower(), []):
        word = value.strip().lower()
        if word in CLASSES:
            raise_to(word, f"header {c.marker_header}", f"{c.marker_header}: {word}")
        else:
            result.notes.append(f"ignored {c.marker_header} value {value.strip()!r}")
    if c.strip_marker:
        result.strip_headers.append(c.marker_header)

    for rule in cfg.rule:
        if envelope_only and not rule.envelope_only:
            continue
        matched = _rule_matches(cfg, rule, envelope, features, headers)
        if matched is None:
            continue
        why, only = matched
        raise_to(rule.risk_class, f"rule {rule.name!r}", why, only)
        if rule.strip_tag and result.subject_tag is None:
            result.subject_tag = rule.subject_tag

    # RFC 8689 §4.2.1: REQUIRETLS raises the message to qualified (see
    # `requirement`); §3, §4.2.2: "TLS-Required: No" only for normal, and
    # only if the operator allows it.
    result.requiretls = envelope.requiretls
    tls_required = [v.strip().lower() for v in headers.get("tls-required", [])]
    if "no" in tls_required and not result.requiretls:
        if not c.honour_tls_required_no:
            result.notes.append("TLS-Required: No ignored (classify.honour_tls_required_no)")
        elif result.message_class != "normal" or any(
            x != "normal" for x in result.recipient_classes
        ):
            result.notes.append("TLS-Required: No ignored: only class normal may relax")
        else:
            result.tls_optional = True
    if result.recipient_classes:
        result.message_class = max(result.recipient_classes, key=CLASSES.index)
    return result


# Long on purpose: one early return per condition of a rule,
# all of which must hold.
def _rule_matches(  # noqa: C901, PLR0911, PLR0912
    cfg: Config,
    rule: Rule,
    envelope: Envelope,
    features: dict[str, Any],
    headers: dict[str, list[str]],
) -> tuple[str, list[int] | None] | None:
    """None when the rule does not fire; else the reason and, for a
    recipient rule, the indexes of the recipients it applies to."""
    why: list[str] = []
    if rule.sender:
        sender = envelope.sender
        hit = next((p for p in _expand(cfg, rule.sender) if address_matches(sender, p)), None)
        if hit is None:
            return None
        why.append(f"sender {sender} matches {hit}")
    if rule.header is not None:
        values = headers.get(rule.header.name.lower(), [])
        wanted = {v.strip().lower() for v in rule.header.values}
        found = next((v for v in values if not wanted or v.strip().lower() in wanted), None)
        if found is None:
            return None
        why.append(f"{rule.header.name}: {found.strip()}")
    if rule.subject_tag:
        if rule.subject_tag.lower() not in (features.get("subject") or "").lower():
            return None
        why.append(f"subject tag {rule.subject_tag}")
    detectors: dict[str, int] = features.get("detectors") or {}
    for key, label in (
        (rule.detector, rule.detector),
        (f"keyword:{rule.name}" if rule.keywords else None, "keywords"),
        (f"regex:{rule.name}" if rule.patterns else None, "patterns"),
    ):
        if key is None:
            continue
        count = int(detectors.get(key, 0))
        if count < rule.min_count:
            return None
        why.append(f"{label} found {count} (at least {rule.min_count})")
    if rule.attachment:
        hit_name = _attachment_hit(rule.attachment, features.get("attachments") or [])
        if hit_name is None:
            return None
        why.append(f"attachment {hit_name}")
    if rule.e2e is not None:
        if (features.get("encryption") is not None) != rule.e2e:
            return None
        why.append("content is end-to-end encrypted" if rule.e2e else "content is not encrypted")
    only: list[int] | None = None
    if rule.recipient:
        patterns = _expand(cfg, rule.recipient)
        only = [
            i
            for i, r in enumerate(envelope.recipients)
            if any(address_matches(r.address, p) for p in patterns)
        ]
        if not only:
            return None
        why.append(f"recipient matches {', '.join(rule.recipient)}")
    return "; ".join(why), only


def _expand(cfg: Config, patterns: list[str]) -> list[str]:
    out: list[str] = []
    for p in patterns:
        out += cfg.groups.get(p[6:], []) if p.startswith("group:") else [p]
    return out


def _attachment_hit(patterns: list[str], attachments: list[dict[str, Any]]) -> str | None:
    for a in attachments:
        name = str(a.get("name") or "").lower()
        ctype = str(a.get("content_type") or "").lower()
        for pattern in (p.lower() for p in patterns):
            if ("/" in pattern and fnmatch.fnmatchcase(ctype, pattern)) or (
                name and fnmatch.fnmatchcase(name, pattern)
            ):
                return name or ctype
    return None


@dataclass(frozen=True)
class Requirement:
    level: str
    # The content must be end-to-end encrypted and is not.
    e2e_missing: bool
    why: str


def requirement(
    cfg: Config,
    risk_class: str,
    info: dict[str, Any],
    domain: DomainPolicy | None,
    override: str | None = None,
) -> Requirement:
    """The transport level one recipient needs. `info` is the stored
    classification (``Classification.to_json``); `override` an operator's
    release level, which replaces everything else for that message."""
    if override:
        return Requirement(override, False, f"level {override} set by an operator's release")
    if info.get("tlsrpt"):
        # RFC 8460 §5.3: a report is delivered despite TLS failures (BSI
        # TR-03108 09-M: no DANE or MTA-STS enforced for it).
        return Requirement(Level.OPPORTUNISTIC, False, "TLS report (RFC 8460 5.3)")
    policy = cfg.class_policy(risk_class)
    level = policy.level
    why = [f"class {risk_class} needs {level}"]
    if info.get("e2e") and policy.e2e_level:
        level = policy.e2e_level
        why.append(f"{level} for end-to-end encrypted content")
    if info.get("tls_optional") and stricter_level(level, "opportunistic") != "opportunistic":
        level = Level.OPPORTUNISTIC
        why.append("TLS-Required: No (RFC 8689 4.2.2)")
    if info.get("requiretls"):
        level = Level.QUALIFIED
        why.append("REQUIRETLS (RFC 8689)")
    if domain is not None and stricter_level(level, domain.min_level) != level:
        level = domain.min_level
        why.append(f"[[policy]] {domain.domain} min_level {level}")
    e2e_missing = policy.require_e2e and not info.get("e2e")
    return Requirement(level, e2e_missing, "; ".join(why))
