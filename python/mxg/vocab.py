"""The words of ARCHITECTURE.md's vocabulary as enums, one meaning each.

The data plane's Rust enums are the source (``rust/mxg-relay/src/vocab.rs``
with ``level.rs`` and ``job.rs``); this module mirrors them for the control
plane, and ``tests/test_vocab.py`` checks that both agree, through
``mxg._core.vocabulary()``. Each member is a ``str`` equal to its word on
the wire, so it goes into JSON and compares with plain strings as it is.

``RiskClass`` and ``RecipientState`` are the control plane's own words
(classification and the queue index); the data plane never sees them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Level(StrEnum):
    """Transport levels, ordered ``none < opportunistic < encrypted <
    qualified``: each promises everything the one below does, so the
    comparisons compare guarantees, not spellings."""

    NONE = "none"
    OPPORTUNISTIC = "opportunistic"
    ENCRYPTED = "encrypted"
    QUALIFIED = "qualified"

    @property
    def rank(self) -> int:
        """Position in the order of guarantees, ``none`` first."""
        return _LEVEL_RANK[self]

    def meets(self, required: str) -> bool:
        """Whether a session at this level satisfies `required`."""
        return self >= required

    # str's own comparisons would order the words alphabetically; a plain
    # string on the other side must be a level (ValueError if not).
    def __lt__(self, other: str) -> bool:
        return self.rank < Level(other).rank

    def __le__(self, other: str) -> bool:
        return self.rank <= Level(other).rank

    def __gt__(self, other: str) -> bool:
        return self.rank > Level(other).rank

    def __ge__(self, other: str) -> bool:
        return self.rank >= Level(other).rank


_LEVEL_RANK: Final = {level: i for i, level in enumerate(Level)}


class Method(StrEnum):
    """How a receiving server was authenticated for ``qualified``."""

    DANE_EE = "dane-ee"  # RFC 7672 §3.1.1
    DANE_TA = "dane-ta"  # RFC 7672 §3.1.2
    MTA_STS = "mta-sts"  # RFC 8461 §4.2, enforce
    DNSSEC_PKIX = "dnssec-pkix"  # secure MX answer and PKIX for the MX name
    PINNED = "pinned"  # an operator pin


class RiskClass(StrEnum):
    """The classes a message is sorted into (ARCHITECTURE.md, the DSK
    guidance): what each requires is the class's configuration."""

    NORMAL = "normal"
    HIGH = "high"
    SECRET = "secret"


class Status(StrEnum):
    """The data plane's word on one recipient after one job."""

    SENT = "sent"
    DEFERRED = "deferred"
    BOUNCED = "bounced"


class RecipientState(StrEnum):
    """Where a recipient stands in the queue index (``recipients.status``
    in mxg.store.schema): the job statuses plus the control plane's own."""

    PENDING = "pending"
    DEFERRED = "deferred"
    HELD = "held"
    # on_unmet = "ask-sender": parked until the sender decides (or the
    # message's lifetime ends); no attempt meanwhile.
    AWAITING_SENDER = "awaiting-sender"
    SENT = "sent"
    BOUNCED = "bounced"
    DELETED = "deleted"

    @property
    def is_final(self) -> bool:
        """No further attempt: the spool file may go once every recipient
        of the message is final (ARCHITECTURE.md rule 11)."""
        return self in FINAL_STATES


FINAL_STATES: Final = frozenset(
    {RecipientState.SENT, RecipientState.BOUNCED, RecipientState.DELETED}
)


class Reason(StrEnum):
    """Why a delivery attempt failed: the TLS-RPT result types (RFC 8460
    §4.3) first, then mxg's own."""

    STARTTLS_NOT_SUPPORTED = "starttls-not-supported"  # RFC 8460 §4.3.1
    CERTIFICATE_HOST_MISMATCH = "certificate-host-mismatch"  # §4.3.1
    CERTIFICATE_EXPIRED = "certificate-expired"  # §4.3.1
    CERTIFICATE_NOT_TRUSTED = "certificate-not-trusted"  # §4.3.1
    VALIDATION_FAILURE = "validation-failure"  # §4.3.1
    TLSA_INVALID = "tlsa-invalid"  # §4.3.2.1
    DNSSEC_INVALID = "dnssec-invalid"  # §4.3.2.1
    DANE_REQUIRED = "dane-required"  # §4.3.2.1
    STS_POLICY_FETCH_ERROR = "sts-policy-fetch-error"  # §4.3.2.2
    STS_POLICY_INVALID = "sts-policy-invalid"  # §4.3.2.2
    STS_WEBPKI_INVALID = "sts-webpki-invalid"  # §4.3.2.2
    DNS_FAILURE = "dns-failure"  # a lookup of the control plane failed
    STARTTLS_REFUSED = "starttls-refused"  # STARTTLS answered non-2xx
    TLS_PROFILE = "tls-profile"  # version or suite outside the profile
    TLS_HANDSHAKE_FAILURE = "tls-handshake-failure"
    CONNECTION_REFUSED = "connection-refused"
    CONNECTION_TIMEOUT = "connection-timeout"
    CONNECTION_FAILED = "connection-failed"
    SERVER_REPLY = "server-reply"  # the server answered 4xx/5xx
    REQUIRETLS_NOT_SUPPORTED = "requiretls-not-supported"  # RFC 8689 §4.2.1
    LEVEL_NOT_MET = "level-not-met"
    LOCAL_ERROR = "local-error"  # mxg's own, e.g. reading the spool
    # The class requires end-to-end encrypted content and the message is
    # not encrypted: no transport can carry it (decided at intake).
    E2E_REQUIRED = "e2e-required"

    @property
    def is_tls_rpt(self) -> bool:
        """A TLS-RPT result type (RFC 8460 §4.3)."""
        return self in TLS_RPT_REASONS

    @property
    def is_transport_security(self) -> bool:
        """The transport could not be made safe enough, as opposed to a
        network problem, a server's refusal or a local error."""
        return self in TRANSPORT_SECURITY_REASONS


TLS_RPT_REASONS: Final = frozenset(
    {
        Reason.STARTTLS_NOT_SUPPORTED,
        Reason.CERTIFICATE_HOST_MISMATCH,
        Reason.CERTIFICATE_EXPIRED,
        Reason.CERTIFICATE_NOT_TRUSTED,
        Reason.VALIDATION_FAILURE,
        Reason.TLSA_INVALID,
        Reason.DNSSEC_INVALID,
        Reason.DANE_REQUIRED,
        Reason.STS_POLICY_FETCH_ERROR,
        Reason.STS_POLICY_INVALID,
        Reason.STS_WEBPKI_INVALID,
    }
)

TRANSPORT_SECURITY_REASONS: Final = TLS_RPT_REASONS | {
    Reason.STARTTLS_REFUSED,
    Reason.TLS_PROFILE,
    Reason.TLS_HANDSHAKE_FAILURE,
    Reason.REQUIRETLS_NOT_SUPPORTED,
    Reason.LEVEL_NOT_MET,
}
