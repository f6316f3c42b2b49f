//! The words the two planes share, defined once (ARCHITECTURE.md,
//! vocabulary): authentication methods and failure reasons here, transport
//! levels in `level.rs`, result statuses in `job.rs`. On the wire each is
//! its kebab-case (or lower-case) string; [`vocabulary`] lists them all for
//! the control plane, whose `mxg/vocab.py` mirrors them and is tested
//! against this list.

use crate::job::Status;
use crate::level::TlsLevel;
use serde::{Deserialize, Serialize};

/// How a receiving server was authenticated, for `qualified`
/// (ARCHITECTURE.md, vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// A DANE-EE(3) record matched the server's certificate or key
    /// (RFC 7672 §3.1.1): names and dates are not checked.
    DaneEe,
    /// A DANE-TA(2) record matched a trust anchor of a valid chain for the
    /// server's name (RFC 7672 §3.1.2).
    DaneTa,
    /// An MTA-STS `enforce` policy covers the host and its certificate is
    /// PKIX-valid for the host name (RFC 8461 §4.2).
    MtaSts,
    /// The MX answer was DNSSEC-secure and the certificate is PKIX-valid
    /// for the MX host name.
    DnssecPkix,
    /// An operator pin (fingerprint or private CA) matched.
    Pinned,
}

impl Method {
    pub const ALL: [Self; 5] = [
        Self::DaneEe,
        Self::DaneTa,
        Self::MtaSts,
        Self::DnssecPkix,
        Self::Pinned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DaneEe => "dane-ee",
            Self::DaneTa => "dane-ta",
            Self::MtaSts => "mta-sts",
            Self::DnssecPkix => "dnssec-pkix",
            Self::Pinned => "pinned",
        }
    }
}

impl From<mxg_dane::DaneUsage> for Method {
    fn from(usage: mxg_dane::DaneUsage) -> Self {
        match usage {
            mxg_dane::DaneUsage::DaneEe => Self::DaneEe,
            mxg_dane::DaneUsage::DaneTa => Self::DaneTa,
        }
    }
}

/// Why a delivery attempt failed, as a code for logs, reports and the
/// control plane's decisions; the text beside it stays for people.
///
/// The first group are the TLS-RPT result types (RFC 8460 §4.3), the rest
/// mxg's own words for what TLS-RPT does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// RFC 8460 §4.3.1: the server does not offer STARTTLS.
    StarttlsNotSupported,
    /// RFC 8460 §4.3.1: the certificate is not valid for the host name.
    CertificateHostMismatch,
    /// RFC 8460 §4.3.1: the certificate has expired (or is not yet valid).
    CertificateExpired,
    /// RFC 8460 §4.3.1: the chain does not lead to a trusted anchor.
    CertificateNotTrusted,
    /// RFC 8460 §4.3.1: a validation failure none of the others names.
    ValidationFailure,
    /// RFC 8460 §4.3.2.1: no TLSA record matched what the server presented.
    TlsaInvalid,
    /// RFC 8460 §4.3.2.1: DNSSEC validation of the MX or TLSA answer failed.
    DnssecInvalid,
    /// RFC 8460 §4.3.2.1: DANE is required but the host has no
    /// DNSSEC-secure TLSA records.
    DaneRequired,
    /// RFC 8460 §4.3.2.2: the MTA-STS policy could not be fetched.
    StsPolicyFetchError,
    /// RFC 8460 §4.3.2.2: the MTA-STS policy could not be parsed.
    StsPolicyInvalid,
    /// RFC 8460 §4.3.2.2: the MTA-STS policy host failed PKIX validation.
    StsWebpkiInvalid,
    /// A DNS lookup of the control plane failed (SERVFAIL, timeout);
    /// the data plane only names it.
    DnsFailure,
    /// STARTTLS was offered but answered with a non-2xx reply.
    StarttlsRefused,
    /// The TLS version or cipher suite is outside the required parameter
    /// profile, or the server shares none with mxg (BSI TR-02102-2).
    TlsProfile,
    /// The TLS handshake failed for another reason.
    TlsHandshakeFailure,
    /// The server refused the TCP connection.
    ConnectionRefused,
    /// Connecting, or waiting for the server, timed out (RFC 5321
    /// §4.5.3.2).
    ConnectionTimeout,
    /// Another connection or I/O error, or no address to connect to.
    ConnectionFailed,
    /// The server answered with a 4xx/5xx reply, or announced a limit the
    /// message cannot keep to (SIZE, SMTPUTF8).
    ServerReply,
    /// The message carries REQUIRETLS but the server does not offer it
    /// over TLS (RFC 8689 §4.2.1).
    RequiretlsNotSupported,
    /// The session does not meet the required level, for no more specific
    /// reason.
    LevelNotMet,
    /// mxg's own failure before any server was involved (reading the
    /// spool file).
    LocalError,
    /// The message's class requires end-to-end encrypted content (S/MIME
    /// or PGP/MIME) and the message is not encrypted: no transport can
    /// carry it (decided by the control plane at intake).
    E2eRequired,
}

impl Reason {
    pub const ALL: [Self; 23] = [
        Self::StarttlsNotSupported,
        Self::CertificateHostMismatch,
        Self::CertificateExpired,
        Self::CertificateNotTrusted,
        Self::ValidationFailure,
        Self::TlsaInvalid,
        Self::DnssecInvalid,
        Self::DaneRequired,
        Self::StsPolicyFetchError,
        Self::StsPolicyInvalid,
        Self::StsWebpkiInvalid,
        Self::DnsFailure,
        Self::StarttlsRefused,
        Self::TlsProfile,
        Self::TlsHandshakeFailure,
        Self::ConnectionRefused,
        Self::ConnectionTimeout,
        Self::ConnectionFailed,
        Self::ServerReply,
        Self::RequiretlsNotSupported,
        Self::LevelNotMet,
        Self::LocalError,
        Self::E2eRequired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::StarttlsNotSupported => "starttls-not-supported",
            Self::CertificateHostMismatch => "certificate-host-mismatch",
            Self::CertificateExpired => "certificate-expired",
            Self::CertificateNotTrusted => "certificate-not-trusted",
            Self::ValidationFailure => "validation-failure",
            Self::TlsaInvalid => "tlsa-invalid",
            Self::DnssecInvalid => "dnssec-invalid",
            Self::DaneRequired => "dane-required",
            Self::StsPolicyFetchError => "sts-policy-fetch-error",
            Self::StsPolicyInvalid => "sts-policy-invalid",
            Self::StsWebpkiInvalid => "sts-webpki-invalid",
            Self::DnsFailure => "dns-failure",
            Self::StarttlsRefused => "starttls-refused",
            Self::TlsProfile => "tls-profile",
            Self::TlsHandshakeFailure => "tls-handshake-failure",
            Self::ConnectionRefused => "connection-refused",
            Self::ConnectionTimeout => "connection-timeout",
            Self::ConnectionFailed => "connection-failed",
            Self::ServerReply => "server-reply",
            Self::RequiretlsNotSupported => "requiretls-not-supported",
            Self::LevelNotMet => "level-not-met",
            Self::LocalError => "local-error",
            Self::E2eRequired => "e2e-required",
        }
    }

    /// A TLS-RPT result type (RFC 8460 §4.3), to be counted in reports.
    pub fn is_tls_rpt(self) -> bool {
        matches!(
            self,
            Self::StarttlsNotSupported
                | Self::CertificateHostMismatch
                | Self::CertificateExpired
                | Self::CertificateNotTrusted
                | Self::ValidationFailure
                | Self::TlsaInvalid
                | Self::DnssecInvalid
                | Self::DaneRequired
                | Self::StsPolicyFetchError
                | Self::StsPolicyInvalid
                | Self::StsWebpkiInvalid
        )
    }

    /// The transport could not be made safe enough (what `on_unmet` and
    /// the DSN's explanation are about), as opposed to a network problem,
    /// a server's refusal or a local error, which a retry may cure.
    pub fn is_transport_security(self) -> bool {
        self.is_tls_rpt()
            || matches!(
                self,
                Self::StarttlsRefused
                    | Self::TlsProfile
                    | Self::TlsHandshakeFailure
                    | Self::RequiretlsNotSupported
                    | Self::LevelNotMet
            )
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// DANE's failures in TLS-RPT words (RFC 8460 §4.3): what `mxg-dane` says
/// in `result_type()`, as a code.
impl From<&mxg_dane::DaneFailure> for Reason {
    fn from(failure: &mxg_dane::DaneFailure) -> Self {
        use mxg_dane::DaneFailure as F;
        match failure {
            F::NoMatch => Self::TlsaInvalid,
            F::BadCertificate(_) | F::ChainInvalid(_) => Self::CertificateNotTrusted,
            F::Expired => Self::CertificateExpired,
            F::NameMismatch(_) => Self::CertificateHostMismatch,
        }
    }
}

/// Every word of the vocabulary, for the control plane to check its
/// mirror against: the levels in their order of guarantees, the methods,
/// the result statuses, the reasons and the reasons each predicate holds
/// for.
pub fn vocabulary() -> serde_json::Value {
    let reasons_where = |p: fn(Reason) -> bool| -> Vec<Reason> {
        Reason::ALL.into_iter().filter(|r| p(*r)).collect()
    };
    serde_json::json!({
        "levels": TlsLevel::ALL,
        "methods": Method::ALL,
        "statuses": Status::ALL,
        "reasons": Reason::ALL,
        "tls_rpt_reasons": reasons_where(Reason::is_tls_rpt),
        "transport_security_reasons": reasons_where(Reason::is_transport_security),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::{self, Visitor};

    /// The wire names serde's derive knows for an enum, in declaration
    /// order: what it passes to `deserialize_enum`. So a variant added to
    /// an enum but not to its `ALL` is caught without listing it here.
    fn serde_names<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
        struct Names<'a>(&'a mut &'static [&'static str]);
        impl<'de> de::Deserializer<'de> for Names<'_> {
            type Error = de::value::Error;
            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
                Err(de::Error::custom("not an enum"))
            }
            fn deserialize_enum<V: Visitor<'de>>(
                self,
                _name: &'static str,
                variants: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Self::Error> {
                *self.0 = variants;
                Err(de::Error::custom("names taken"))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
                bytes byte_buf option unit unit_struct newtype_struct seq tuple
                tuple_struct map struct identifier ignored_any
            }
        }
        let mut names: &'static [&'static str] = &[];
        let _ = T::deserialize(Names(&mut names));
        names
    }

    fn wire<T: Serialize>(v: T) -> String {
        serde_json::to_value(v)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn every_list_is_complete_and_as_str_is_the_wire_name() {
        let levels: Vec<String> = TlsLevel::ALL.into_iter().map(wire).collect();
        assert_eq!(levels, serde_names::<TlsLevel>());
        assert!(TlsLevel::ALL.iter().all(|l| wire(l) == l.as_str()));
        let methods: Vec<String> = Method::ALL.into_iter().map(wire).collect();
        assert_eq!(methods, serde_names::<Method>());
        assert!(Method::ALL.iter().all(|m| wire(m) == m.as_str()));
        let statuses: Vec<String> = Status::ALL.into_iter().map(wire).collect();
        assert_eq!(statuses, serde_names::<Status>());
        assert!(Status::ALL.iter().all(|s| wire(s) == s.as_str()));
        let reasons: Vec<String> = Reason::ALL.into_iter().map(wire).collect();
        assert_eq!(reasons, serde_names::<Reason>());
        assert!(Reason::ALL.iter().all(|r| wire(r) == r.as_str()));
    }

    #[test]
    fn levels_are_listed_in_their_order() {
        assert!(TlsLevel::ALL.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            vocabulary()["levels"],
            serde_json::json!(["none", "opportunistic", "encrypted", "qualified"])
        );
    }

    #[test]
    fn the_rfc_8460_result_types_are_tls_rpt_and_transport_security() {
        let rpt: Vec<&str> = Reason::ALL
            .into_iter()
            .filter(|r| r.is_tls_rpt())
            .map(Reason::as_str)
            .collect();
        assert_eq!(
            rpt,
            [
                "starttls-not-supported",
                "certificate-host-mismatch",
                "certificate-expired",
                "certificate-not-trusted",
                "validation-failure",
                "tlsa-invalid",
                "dnssec-invalid",
                "dane-required",
                "sts-policy-fetch-error",
                "sts-policy-invalid",
                "sts-webpki-invalid",
            ]
        );
        assert!(Reason::ALL
            .iter()
            .all(|r| !r.is_tls_rpt() || r.is_transport_security()));
        for r in [
            Reason::DnsFailure,
            Reason::ConnectionRefused,
            Reason::ConnectionTimeout,
            Reason::ConnectionFailed,
            Reason::ServerReply,
            Reason::LocalError,
        ] {
            assert!(!r.is_transport_security(), "{r}");
        }
    }

    #[test]
    fn dane_failures_map_to_the_result_types_mxg_dane_names() {
        use mxg_dane::DaneFailure as F;
        for f in [
            F::NoMatch,
            F::BadCertificate(String::new()),
            F::ChainInvalid(String::new()),
            F::Expired,
            F::NameMismatch(String::new()),
        ] {
            assert_eq!(Reason::from(&f).as_str(), f.result_type());
        }
        assert_eq!(Method::from(mxg_dane::DaneUsage::DaneEe), Method::DaneEe);
        assert_eq!(Method::from(mxg_dane::DaneUsage::DaneTa), Method::DaneTa);
    }
}
