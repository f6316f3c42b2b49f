"""An MTA-STS policy (RFC 8461) as mxg holds it, and its strict parsing:
the ``_mta-sts`` TXT record's id (§3.1), the policy body (§3.2), and
matching MX hosts against its patterns (§4.1). No I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from mxg.vocab import Reason

# §3.2: max_age is at most 31557600 seconds (one year).
MAX_MAX_AGE = 31_557_600

Mode = Literal["enforce", "testing", "none"]


class PolicyError(Exception):
    """A policy could not be fetched or parsed: `reason` is the TLS-RPT
    result type (RFC 8460 §4.3), and the text starts with it."""

    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True)
class Policy:
    domain: str
    id: str
    mode: Mode
    mx: tuple[str, ...]
    max_age: int

    def matches(self, host: str) -> bool:
        return any(mx_matches(p, host) for p in self.mx)


def mx_matches(pattern: str, host: str) -> bool:
    """§4.1: exact, or ``*.`` matching exactly one leftmost label."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return host == pattern


_TXT = re.compile(r"^v=STSv1;(?:\s*[A-Za-z0-9]+=[^;]*;?)*\s*$")


def parse_txt(records: list[str]) -> str:
    """The policy id of a ``_mta-sts`` TXT record set (§3.1)."""
    sts = [r for r in records if r.startswith("v=STSv1")]
    if len(sts) != 1:
        raise PolicyError(
            Reason.STS_POLICY_INVALID, f"expected one v=STSv1 TXT record, found {len(sts)}"
        )
    fields = dict(part.strip().split("=", 1) for part in sts[0].split(";") if "=" in part)
    policy_id = fields.get("id", "")
    if not re.fullmatch(r"[A-Za-z0-9]{1,32}", policy_id):
        raise PolicyError(
            Reason.STS_POLICY_INVALID, f"TXT id {policy_id!r} is not 1-32 alphanumerics"
        )
    return policy_id


def parse_policy(domain: str, policy_id: str, text: str) -> Policy:
    """Strict parsing of the policy body (§3.2)."""
    values: dict[str, list[str]] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise PolicyError(Reason.STS_POLICY_INVALID, f"line {line[:60]!r} is not 'key: value'")
        values.setdefault(key.strip(), []).append(value.strip())
    if values.get("version") != ["STSv1"]:
        raise PolicyError(Reason.STS_POLICY_INVALID, "version must be STSv1")
    mode = (values.get("mode") or [""])[0]
    if mode not in ("enforce", "testing", "none") or len(values.get("mode", [])) != 1:
        raise PolicyError(Reason.STS_POLICY_INVALID, f"mode {mode!r}")
    try:
        max_age = int((values.get("max_age") or [""])[0])
    except ValueError:
        raise PolicyError(Reason.STS_POLICY_INVALID, "max_age is not a number") from None
    if not 0 <= max_age <= MAX_MAX_AGE:
        raise PolicyError(Reason.STS_POLICY_INVALID, f"max_age {max_age} out of range")
    mx = tuple(values.get("mx", []))
    if mode != "none" and not mx:
        raise PolicyError(Reason.STS_POLICY_INVALID, "no mx patterns")
    return Policy(domain, policy_id, mode, mx, max_age)  # type: ignore[arg-type]
