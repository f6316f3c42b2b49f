"""Risk classes and the rules that assign them: the configuration models.

Classes are ordered ``normal < high < secret`` (DSK guidance, ARCHITECTURE.md).
Each class says which transport level its messages need and what happens
when a recipient cannot get it (``on_unmet``). Rules are evaluated in order;
the highest class any rule yields wins (``mxg.classify``).
"""

from __future__ import annotations

import fnmatch
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mxg.config.base import Seconds, Section, TransportLevel
from mxg.vocab import Level, RiskClass

CLASSES: tuple[RiskClass, ...] = tuple(RiskClass)
OnUnmet = Literal["reject", "defer", "bounce", "hold", "reroute", "ask-sender"]
Detector = Literal["iban", "tax-id", "card", "kvnr"]
LEVELS: tuple[Level, ...] = tuple(Level)


def higher_class(a: str, b: str) -> str:
    return max(a, b, key=CLASSES.index)


def stricter_level(a: str, b: str) -> str:
    return max(a, b, key=LEVELS.index)


class ClassPolicy(Section):
    """What one class requires (``[classes.<name>]``)."""

    level: TransportLevel
    # reject: refuse at end of DATA when the failure is known then (else as
    # bounce); defer: retry until queue.max_lifetime; bounce: DSN at once;
    # hold: keep until an operator releases or deletes; reroute: hand to
    # the fallback relay below; ask-sender: park the recipient and ask the
    # sender to decide (docs/sender-decisions.md).
    on_unmet: OnUnmet = "defer"
    # ask-sender: a recipient whose domain offers no way to authenticate
    # its servers is asked about at once; one failing for a reason that
    # may yet be fixed (an expired certificate, a broken TLSA record, a
    # policy fetch) after this many attempts or this long after receipt.
    ask_after_attempts: int = Field(3, ge=1, le=100)
    ask_after: Seconds = 3600
    # ask-sender: the choices the decision page offers. allow_normal_risk
    # lets the sender confirm that the content carries only normal risk
    # (the message then goes at class normal's level; the DSK guidance
    # leaves that assessment to the sender); never for secret.
    allow_normal_risk: bool = False
    allow_envelope: bool = True
    # The content must be end-to-end encrypted (S/MIME or PGP/MIME).
    require_e2e: bool = False
    # The transport level for content that is already end-to-end encrypted;
    # empty keeps `level`.
    e2e_level: TransportLevel | Literal[""] = ""
    # Fallback relay for on_unmet = "reroute": "host" or "host:port",
    # IPv6 as "[addr]:port"; reached at `reroute_level`.
    reroute: str = ""
    reroute_level: TransportLevel = Level.ENCRYPTED
    # The level a secure envelope's carrier mail needs (docs/secure-envelope.md):
    # its content is sealed, so the transport need not be authenticated.
    carrier_level: TransportLevel = Level.ENCRYPTED

    @field_validator("reroute")
    @classmethod
    def _relay(cls, v: str) -> str:
        if v:
            relay_address(v)
        return v

    @model_validator(mode="after")
    def _reroute_needs_relay(self) -> ClassPolicy:
        if self.on_unmet == "reroute" and not self.reroute:
            raise ValueError('on_unmet = "reroute" needs reroute = "host[:port]"')
        if self.reroute_level == "qualified":
            # The fallback relay has no DNS-based or pinned identity here.
            raise ValueError(
                'reroute_level = "qualified" cannot be met: the fallback relay is not'
                " authenticated; use encrypted (and a trusted network path)"
            )
        return self


def relay_address(value: str) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` → (host, port); port 25 by
    default. Raises ValueError with the reason."""
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\](?::(\d+))?|([^:\[\]\s]+)(?::(\d+))?", value.strip())
    if not m:
        raise ValueError(f"{value!r} is not host, host:port or [IPv6]:port")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4) or 25)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} in {value!r} is out of range")
    return host, port


# DSK defaults per class; a [classes.<name>] table changes only the keys
# it gives.
class NormalPolicy(ClassPolicy):
    level: TransportLevel = Level.ENCRYPTED


class HighPolicy(ClassPolicy):
    level: TransportLevel = Level.QUALIFIED
    on_unmet: OnUnmet = "ask-sender"
    allow_normal_risk: bool = True


class SecretPolicy(ClassPolicy):
    level: TransportLevel = Level.QUALIFIED
    require_e2e: bool = True
    on_unmet: OnUnmet = "reject"

    @model_validator(mode="after")
    def _never_lowered(self) -> SecretPolicy:
        # ARCHITECTURE.md rule 8b: secret is never lowered on a sender's word.
        if self.allow_normal_risk:
            raise ValueError(
                "allow_normal_risk cannot be true for class secret: secrets are never"
                " sent at class normal's level on a sender's word"
            )
        return self


class ClassesConfig(Section):
    """normal → encrypted, high → qualified, secret → qualified and
    end-to-end encrypted content (DSK guidance, ARCHITECTURE.md)."""

    normal: NormalPolicy = NormalPolicy()
    high: HighPolicy = HighPolicy()
    secret: SecretPolicy = SecretPolicy()

    def of(self, name: str) -> ClassPolicy:
        policy: ClassPolicy = getattr(self, name)
        return policy


class ClassifyConfig(Section):
    default_class: RiskClass = RiskClass.NORMAL
    # A header the internal server or the sender's client sets to
    # normal | high | secret; removed before delivery unless strip_marker
    # is false.
    marker_header: str = "X-MXG-Risk"
    strip_marker: bool = True
    # RFC 8689 §3, §4.2.2: honour "TLS-Required: No" for class normal (the
    # level becomes opportunistic at most); never for high or secret.
    honour_tls_required_no: bool = False
    # How long the session waits at end of DATA for a reject verdict before
    # it accepts and handles the message asynchronously; 0 = never wait.
    verdict_deadline: Seconds = 10
    # Content scanning limits: decoded text scanned, MIME nesting, parts.
    max_scan_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_depth: int = Field(16, ge=1, le=100)
    max_parts: int = Field(512, ge=1)


class HeaderMatch(Section):
    name: str
    # Values compared case-insensitively after trimming; empty: any value.
    values: list[str] = []


class Rule(Section):
    """One ``[[rule]]``: every condition it gives must hold (AND)."""

    name: str
    # "class" is a Python keyword, so the model field is risk_class.
    risk_class: RiskClass = Field(alias="class")
    # Address patterns ("user@example.org", "*@dept.example.org") or
    # domains ("example.org", "*.example.org"); "group:NAME" uses [groups].
    sender: list[str] = []
    # Like sender; the class then applies to the matching recipients only.
    recipient: list[str] = []
    header: HeaderMatch | None = None
    # A tag in the Subject, e.g. "[vertraulich]" (case-insensitive).
    subject_tag: str = ""
    strip_tag: bool = False
    detector: Detector | None = None
    keywords: list[str] = []
    patterns: list[str] = []
    # How many distinct values the detector, keywords or patterns must find.
    min_count: int = Field(1, ge=1)
    # Attachment file name patterns ("*.xlsx") or MIME types ("application/pdf").
    attachment: list[str] = []
    # Fires when the content is (not) end-to-end encrypted.
    e2e: bool | None = None

    @model_validator(mode="after")
    def _has_a_condition(self) -> Rule:
        conditions = (
            self.sender,
            self.recipient,
            self.header,
            self.subject_tag,
            self.detector,
            self.keywords,
            self.patterns,
            self.attachment,
            self.e2e is not None,
        )
        if not any(conditions):
            raise ValueError(
                f"rule {self.name!r} has no condition (sender, recipient, header, subject_tag,"
                " detector, keywords, patterns, attachment or e2e)"
            )
        if sum(bool(x) for x in (self.detector, self.keywords, self.patterns)) > 1:
            raise ValueError(f"rule {self.name!r}: use one of detector, keywords, patterns")
        if self.strip_tag and not self.subject_tag:
            raise ValueError(f"rule {self.name!r}: strip_tag needs subject_tag")
        return self

    @property
    def envelope_only(self) -> bool:
        """A rule about sender and recipients alone: decidable at RCPT."""
        return bool(self.recipient or self.sender) and not (
            self.header
            or self.subject_tag
            or self.detector
            or self.keywords
            or self.patterns
            or self.attachment
            or self.e2e is not None
        )


def address_matches(address: str, pattern: str) -> bool:
    """Case-insensitive; a pattern with "@" is matched against the whole
    address, one without against the domain ("*.example.org" for its
    subdomains)."""
    address = address.lower()
    pattern = pattern.lower().strip()
    if "@" in pattern:
        if pattern.startswith("@"):
            pattern = "*" + pattern
        return fnmatch.fnmatchcase(address, pattern)
    domain = address.rpartition("@")[2].rstrip(".")
    return fnmatch.fnmatchcase(domain, pattern.rstrip("."))
