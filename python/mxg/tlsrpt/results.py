"""What a delivery attempt's typed reason (`mxg.vocab.Reason`) is in a
TLS report: an RFC 8460 §4.3 result type, or nothing when the attempt
never came to TLS (a refused connection, a server's 5xx after a good
handshake, a local error) and so is no TLS session at all.

mxg's own reasons that are TLS failures the RFC has no word for become
``validation-failure`` (§4.3.1: "a general failure for a reason not
matching a category above"), and the report keeps mxg's word as its
``failure-reason-code``."""

from __future__ import annotations

from typing import Final

from mxg.vocab import TLS_RPT_REASONS, Reason

_OWN: Final = {
    # STARTTLS answered with an error: for the domain, STARTTLS did not work.
    Reason.STARTTLS_REFUSED: Reason.STARTTLS_NOT_SUPPORTED,
    Reason.TLS_PROFILE: Reason.VALIDATION_FAILURE,
    Reason.TLS_HANDSHAKE_FAILURE: Reason.VALIDATION_FAILURE,
    Reason.LEVEL_NOT_MET: Reason.VALIDATION_FAILURE,
}

# The result types of the DANE and MTA-STS groups (§4.3.2.1, §4.3.2.2):
# a failure of these before any host was tried still belongs to that
# kind of policy.
DANE_RESULTS: Final = frozenset({Reason.TLSA_INVALID, Reason.DNSSEC_INVALID, Reason.DANE_REQUIRED})
STS_RESULTS: Final = frozenset(
    {Reason.STS_POLICY_FETCH_ERROR, Reason.STS_POLICY_INVALID, Reason.STS_WEBPKI_INVALID}
)


def result_type(reason: str | None) -> tuple[str, str] | None:
    """The result type of a failed attempt and its failure-reason-code
    ('' when the reason is an RFC 8460 word itself); None when the attempt
    is no TLS session to report."""
    if reason is None:
        return None
    try:
        r = Reason(reason)
    except ValueError:
        return None
    if r in TLS_RPT_REASONS:
        return str(r), ""
    mapped = _OWN.get(r)
    return (str(mapped), str(r)) if mapped is not None else None
