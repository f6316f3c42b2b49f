"""Why a recipient waits for the sender, in plain words (German and
English) for the notice and the decision page: one sentence per typed
reason (`mxg.vocab.Reason`), never the remote server's own words."""

from __future__ import annotations

from mxg.vocab import Reason

# (German, English)
Plain = tuple[str, str]

_NO_METHOD: Plain = (
    "Der Mailserver des Empfängers kann nicht nachweisen, dass er wirklich der richtige"
    " Server ist (kein DANE, kein MTA-STS). Für diese Nachricht ist das vorgeschrieben.",
    "The recipient's mail server has no way to prove that it is the right server"
    " (no DANE, no MTA-STS). This message requires that proof.",
)
_CERTIFICATE: Plain = (
    "Das Zertifikat des empfangenden Mailservers ist ungültig, abgelaufen oder passt"
    " nicht zu seinem Namen.",
    "The receiving mail server's certificate is invalid, expired or does not match its name.",
)
_DNS: Plain = (
    "Die gesicherten DNS-Einträge (DNSSEC, TLSA) der Empfängerdomain sind fehlerhaft.",
    "The recipient domain's secured DNS records (DNSSEC, TLSA) are broken.",
)
_STS: Plain = (
    "Die MTA-STS-Richtlinie der Empfängerdomain ist nicht abrufbar oder fehlerhaft.",
    "The recipient domain's MTA-STS policy cannot be fetched or is invalid.",
)
_NO_TLS: Plain = (
    "Der Mailserver des Empfängers bietet keine Verschlüsselung an.",
    "The recipient's mail server does not offer encryption.",
)
_WEAK_TLS: Plain = (
    "Der Mailserver des Empfängers bietet nur veraltete Verschlüsselung an.",
    "The recipient's mail server offers only outdated encryption.",
)
_E2E: Plain = (
    "Der Inhalt muss Ende-zu-Ende-verschlüsselt sein (S/MIME oder PGP) und ist es nicht.",
    "The content must be end-to-end encrypted (S/MIME or PGP) and is not.",
)
_OTHER: Plain = (
    "Der Mailserver des Empfängers war nicht mit dem vorgeschriebenen Schutz erreichbar.",
    "The recipient's mail server could not be reached with the required protection.",
)

PLAIN: dict[str, Plain] = {
    Reason.VALIDATION_FAILURE: _NO_METHOD,
    Reason.DANE_REQUIRED: _NO_METHOD,
    Reason.LEVEL_NOT_MET: _NO_METHOD,
    Reason.CERTIFICATE_HOST_MISMATCH: _CERTIFICATE,
    Reason.CERTIFICATE_EXPIRED: _CERTIFICATE,
    Reason.CERTIFICATE_NOT_TRUSTED: _CERTIFICATE,
    Reason.TLSA_INVALID: _DNS,
    Reason.DNSSEC_INVALID: _DNS,
    Reason.DNS_FAILURE: _DNS,
    Reason.STS_POLICY_FETCH_ERROR: _STS,
    Reason.STS_POLICY_INVALID: _STS,
    Reason.STS_WEBPKI_INVALID: _STS,
    Reason.STARTTLS_NOT_SUPPORTED: _NO_TLS,
    Reason.STARTTLS_REFUSED: _NO_TLS,
    Reason.REQUIRETLS_NOT_SUPPORTED: _NO_TLS,
    Reason.TLS_PROFILE: _WEAK_TLS,
    Reason.TLS_HANDSHAKE_FAILURE: _WEAK_TLS,
    Reason.E2E_REQUIRED: _E2E,
}


def plain(reason: str | None) -> Plain:
    """The sentence pair for a typed reason; a general one for the rest."""
    return PLAIN.get(reason or "", _OTHER)
