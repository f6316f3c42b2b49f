"""``[tlsrpt]``: the daily TLS reports (RFC 8460) mxg sends to the
domains it delivered to.

On by default once a DKIM key is configured: report mail must carry a
DKIM signature (RFC 8460 §3), and BSI TR-03108 makes sending reports
mandatory, so a gateway that can sign sends. ``enabled = true`` without
a key sends the https reports only; ``false`` sends none."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, field_validator, model_validator

from mxg.config.base import PositiveSeconds, Section

if TYPE_CHECKING:
    from mxg.config.model import Config

_SELECTOR_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-.")


def _check_address(v: str) -> str:
    if v and ("@" not in v or v.startswith("@") or v.endswith("@") or " " in v):
        raise ValueError(f"{v!r} is not a mail address")
    return v


class TlsRptConfig(Section):
    # None: on when dkim_key is set (see the module docstring).
    enabled: bool | None = None
    # organization-name of the report; empty: server.hostname.
    organization: str = ""
    # contact-info (an address); its domain is the report's "sender"
    # (RFC 8460 §5.1). Empty: the postmaster address ([dsn] postmaster).
    contact: str = ""
    # From of report mail; empty: the contact address.
    from_address: str = ""
    # DKIM (RFC 6376) for report mail: d= (empty: the From domain), s=,
    # and the PEM private key (RSA), readable by run.user only.
    dkim_domain: str = ""
    dkim_selector: str = ""
    dkim_key: Path | None = None
    # The UTC hour after which the previous day's reports go out.
    send_hour: int = Field(1, ge=0, le=23)
    # Reports to one destination (a rua's mail domain or web host) per
    # hour; the rest wait for the next hour. Many domains hand their
    # reports to one collector: this keeps mxg from flooding it.
    max_per_destination: int = Field(100, ge=1)
    # An https POST: whole request time, and tries before giving up.
    http_timeout: PositiveSeconds = 30
    max_tries: int = Field(5, ge=1, le=20)

    @field_validator("contact", "from_address")
    @classmethod
    def _address(cls, v: str) -> str:
        return _check_address(v)

    @field_validator("dkim_selector")
    @classmethod
    def _selector(cls, v: str) -> str:
        if v and (not set(v.lower()) <= _SELECTOR_CHARS or v.startswith((".", "-"))):
            raise ValueError(f"{v!r} is not a DKIM selector")
        return v

    @model_validator(mode="after")
    def _dkim_pair(self) -> TlsRptConfig:
        if (self.dkim_key is None) != (not self.dkim_selector):
            raise ValueError("dkim_key and dkim_selector go together")
        return self

    @property
    def active(self) -> bool:
        return self.dkim_key is not None if self.enabled is None else self.enabled


def mail_identity_problem(cfg: Config) -> str | None:
    """``KEY: reason`` when report mail would name a domain that is no
    fully qualified name, else None. The contact's domain is the report's
    sender (RFC 8460 §5.1) and the DKIM d= must be a domain the receiver
    can look the key up under (RFC 6376 §3.5); both default from
    server.hostname, which is ``localhost`` on a host without a real
    name. Only mail reports carry them: https reports go without."""
    t = cfg.tlsrpt
    if not t.active or t.dkim_key is None:
        return None
    if t.contact:
        contact_key = "tlsrpt.contact"
    else:
        contact_key = "dsn.postmaster" if cfg.dsn.postmaster else "server.hostname"
    contact = t.contact or cfg.postmaster
    from_address = t.from_address or contact
    if t.dkim_domain:
        dkim_key = "tlsrpt.dkim_domain"
    else:
        dkim_key = "tlsrpt.from_address" if t.from_address else contact_key
    dkim_domain = t.dkim_domain or from_address.rpartition("@")[2]
    for key, domain, role in (
        (contact_key, contact.rpartition("@")[2], "the report's sender"),
        (dkim_key, dkim_domain, "the DKIM domain (d=)"),
    ):
        if "." not in domain.strip("."):
            fix = key
            if key == "server.hostname":
                fix += " (or tlsrpt.contact and tlsrpt.dkim_domain)"
            return (
                f"{key}: {domain!r} is not a fully qualified domain name, but TLS reports "
                f"sent by mail would use it as {role}; set {fix}"
            )
    return None
