//! The DANE certificate verifier (RFC 7672 §3.1, RFC 7671 §5).

use crate::tlsa::{classify, Tlsa};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::sync::{Arc, Mutex};

/// The certificate usage of the record that matched (RFC 7218 §2.1
/// acronyms); the engine names the method after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaneUsage {
    /// DANE-TA(2): a trust anchor of the presented chain.
    DaneTa,
    /// DANE-EE(3): the end-entity certificate or its key.
    DaneEe,
}

/// The record that authenticated the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaneMatch {
    pub usage: DaneUsage,
    /// The matching record, `usage selector mtype data`.
    pub record: String,
}

/// Why DANE authentication failed, with its TLS-RPT result type
/// (RFC 8460 §4.3) for evidence and reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DaneFailure {
    #[error("no TLSA record matched the presented certificates")]
    NoMatch,
    #[error("the server presented no parsable certificate: {0}")]
    BadCertificate(String),
    #[error("the chain to the DANE-TA trust anchor is not valid: {0}")]
    ChainInvalid(String),
    #[error("the certificate has expired or is not yet valid (DANE-TA checks dates)")]
    Expired,
    #[error("the certificate is not valid for {0} (DANE-TA checks the name)")]
    NameMismatch(String),
}

impl DaneFailure {
    pub fn result_type(&self) -> &'static str {
        match self {
            Self::NoMatch => "tlsa-invalid",
            Self::BadCertificate(_) | Self::ChainInvalid(_) => "certificate-not-trusted",
            Self::Expired => "certificate-expired",
            Self::NameMismatch(_) => "certificate-host-mismatch",
        }
    }
}

/// Authenticates a server by its usable TLSA records:
///
/// - DANE-EE (3): the end-entity certificate or its key matches; names and
///   validity dates are ignored (RFC 7672 §3.1.1).
/// - DANE-TA (2): a certificate of the presented chain matches and is the
///   trust anchor of a valid chain to the end entity, which must be valid
///   for one of the reference names: the MX host name or the TLSA base
///   domain (RFC 7672 §3.1.2, §3.2.2).
///
/// One verifier serves one connection; its outcome is read afterwards as
/// evidence.
#[derive(Debug)]
pub struct DaneVerifier {
    records: Vec<Tlsa>,
    names: Vec<String>,
    provider: Arc<CryptoProvider>,
    outcome: Mutex<Option<Result<DaneMatch, DaneFailure>>>,
}

impl DaneVerifier {
    /// Keeps only the usable records; `names` are the reference names for
    /// DANE-TA.
    pub fn new(records: &[Tlsa], names: Vec<String>, provider: Arc<CryptoProvider>) -> Self {
        Self {
            records: records
                .iter()
                .filter(|r| classify(r).is_ok())
                .cloned()
                .collect(),
            names,
            provider,
            outcome: Mutex::new(None),
        }
    }

    /// Whether any record is usable; without one, DANE does not apply.
    pub fn has_usable_records(&self) -> bool {
        !self.records.is_empty()
    }

    /// The verdict of the last handshake, if there was one.
    pub fn outcome(&self) -> Option<Result<DaneMatch, DaneFailure>> {
        self.outcome.lock().ok().and_then(|o| o.clone())
    }

    /// The DANE decision for a presented chain.
    pub fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<DaneMatch, DaneFailure> {
        let ee = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| DaneFailure::BadCertificate(format!("{e:?}")))?;
        let ee_spki = ee.subject_public_key_info();
        for r in self.records.iter().filter(|r| r.usage == 3) {
            if r.matches(end_entity.as_ref(), ee_spki.as_ref()) {
                return Ok(DaneMatch {
                    usage: DaneUsage::DaneEe,
                    record: r.to_string(),
                });
            }
        }
        let mut failure = DaneFailure::NoMatch;
        for candidate in intermediates {
            let Ok(parsed) = webpki::EndEntityCert::try_from(candidate) else {
                continue;
            };
            let spki = parsed.subject_public_key_info();
            for r in self.records.iter().filter(|r| r.usage == 2) {
                if !r.matches(candidate.as_ref(), spki.as_ref()) {
                    continue;
                }
                match self.ta_chain(&ee, candidate, intermediates, now) {
                    Ok(()) => {
                        return Ok(DaneMatch {
                            usage: DaneUsage::DaneTa,
                            record: r.to_string(),
                        })
                    }
                    Err(f) => failure = f,
                }
            }
        }
        // RFC 7671 §5.2.2: a DANE-TA record with the full certificate
        // (2 0 0) is itself the trust anchor, so it works even when the
        // server leaves the anchor out of its chain (private CAs usually
        // do). This is also how operator CA pins are checked.
        for r in self
            .records
            .iter()
            .filter(|r| r.usage == 2 && r.selector == 0 && r.mtype == 0)
        {
            let Some(der) = r.bytes() else { continue };
            let anchor = CertificateDer::from(der);
            if intermediates.iter().any(|c| c.as_ref() == anchor.as_ref()) {
                continue; // already tried above
            }
            match self.ta_chain(&ee, &anchor, intermediates, now) {
                Ok(()) => {
                    return Ok(DaneMatch {
                        usage: DaneUsage::DaneTa,
                        record: r.to_string(),
                    })
                }
                Err(f) => failure = f,
            }
        }
        Err(failure)
    }

    fn ta_chain(
        &self,
        ee: &webpki::EndEntityCert<'_>,
        anchor: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), DaneFailure> {
        let anchor = webpki::anchor_from_trusted_cert(anchor)
            .map_err(|e| DaneFailure::ChainInvalid(format!("{e:?}")))?;
        let others: Vec<CertificateDer<'_>> = intermediates.to_vec();
        ee.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            &[anchor],
            &others,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|e| match e {
            webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. } => {
                DaneFailure::Expired
            }
            other => DaneFailure::ChainInvalid(format!("{other:?}")),
        })?;
        let valid_for = |name: &String| {
            ServerName::try_from(name.as_str())
                .is_ok_and(|n| ee.verify_is_valid_for_subject_name(&n).is_ok())
        };
        if self.names.iter().any(valid_for) {
            Ok(())
        } else {
            Err(DaneFailure::NameMismatch(self.names.join(" or ")))
        }
    }
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.check(end_entity, intermediates, now);
        let ok = verdict.is_ok();
        if let Ok(mut outcome) = self.outcome.lock() {
            *outcome = Some(verdict);
        }
        if ok {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    fn sha256(b: &[u8]) -> String {
        hex(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn now() -> UnixTime {
        UnixTime::now()
    }

    struct Issued {
        der: CertificateDer<'static>,
        spki: Vec<u8>,
    }

    fn params(name: &str, expired: bool) -> CertificateParams {
        let mut p = CertificateParams::new(vec![name.to_owned()]).unwrap();
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        p
    }

    fn self_signed(name: &str, expired: bool) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = params(name, expired).self_signed(&key).unwrap();
        Issued {
            der: cert.der().clone(),
            spki: key.public_key_der(),
        }
    }

    /// A CA and an end entity it signed.
    fn ca_chain(ee_name: &str, expired: bool) -> (Issued, Issued) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let ee_key = KeyPair::generate().unwrap();
        let ee = params(ee_name, expired)
            .signed_by(&ee_key, &ca, &ca_key)
            .unwrap();
        (
            Issued {
                der: ca.der().clone(),
                spki: ca_key.public_key_der(),
            },
            Issued {
                der: ee.der().clone(),
                spki: ee_key.public_key_der(),
            },
        )
    }

    fn tlsa(usage: u8, selector: u8, mtype: u8, data: String) -> Tlsa {
        Tlsa {
            usage,
            selector,
            mtype,
            data,
        }
    }

    fn verifier(records: &[Tlsa]) -> DaneVerifier {
        DaneVerifier::new(
            records,
            vec!["mx.example.test".into(), "example.test".into()],
            provider(),
        )
    }

    #[test]
    fn dane_ee_matches_key_and_ignores_name_and_dates() {
        let cert = self_signed("other.example", true);
        let v = verifier(&[tlsa(3, 1, 1, sha256(&cert.spki))]);
        let m = v.check(&cert.der, &[], now()).unwrap();
        assert_eq!(m.usage, DaneUsage::DaneEe);
        assert!(m.record.starts_with("3 1 1 "));
    }

    #[test]
    fn dane_ee_full_certificate_exact() {
        let cert = self_signed("mx.example.test", false);
        let v = verifier(&[tlsa(3, 0, 0, hex(&cert.der))]);
        assert!(v.check(&cert.der, &[], now()).is_ok());
    }

    #[test]
    fn record_that_matches_nothing_fails_as_tlsa_invalid() {
        let cert = self_signed("mx.example.test", false);
        let v = verifier(&[tlsa(3, 1, 1, "00".repeat(32))]);
        let err = v.check(&cert.der, &[], now()).unwrap_err();
        assert_eq!(err.result_type(), "tlsa-invalid");
    }

    #[test]
    fn pkix_usages_are_ignored() {
        let cert = self_signed("mx.example.test", false);
        let v = verifier(&[tlsa(1, 1, 1, sha256(&cert.spki))]);
        assert!(!v.has_usable_records());
        assert!(v.check(&cert.der, &[], now()).is_err());
    }

    #[test]
    fn dane_ta_verifies_chain_and_name() {
        let (ca, ee) = ca_chain("mx.example.test", false);
        let v = verifier(&[tlsa(2, 1, 1, sha256(&ca.spki))]);
        let m = v
            .check(&ee.der, std::slice::from_ref(&ca.der), now())
            .unwrap();
        assert_eq!(m.usage, DaneUsage::DaneTa);
        // The TLSA base domain is a reference name too.
        let (ca2, ee2) = ca_chain("example.test", false);
        let v2 = verifier(&[tlsa(2, 0, 1, sha256(&ca2.der))]);
        assert!(v2
            .check(&ee2.der, std::slice::from_ref(&ca2.der), now())
            .is_ok());
    }

    #[test]
    fn dane_ta_with_a_wrong_name_fails() {
        let (ca, ee) = ca_chain("other.example", false);
        let v = verifier(&[tlsa(2, 1, 1, sha256(&ca.spki))]);
        let err = v
            .check(&ee.der, std::slice::from_ref(&ca.der), now())
            .unwrap_err();
        assert_eq!(err.result_type(), "certificate-host-mismatch");
    }

    #[test]
    fn dane_ta_checks_dates() {
        let (ca, ee) = ca_chain("mx.example.test", true);
        let v = verifier(&[tlsa(2, 1, 1, sha256(&ca.spki))]);
        let err = v
            .check(&ee.der, std::slice::from_ref(&ca.der), now())
            .unwrap_err();
        assert_eq!(err.result_type(), "certificate-expired");
    }

    #[test]
    fn dane_ta_needs_the_anchor_in_the_chain_and_a_real_signature() {
        let (ca, ee) = ca_chain("mx.example.test", false);
        let v = verifier(&[tlsa(2, 1, 1, sha256(&ca.spki))]);
        assert_eq!(
            v.check(&ee.der, &[], now()).unwrap_err(),
            DaneFailure::NoMatch
        );
        // A matching "anchor" that did not sign the end entity.
        let (other_ca, _) = ca_chain("mx.example.test", false);
        let v = verifier(&[tlsa(2, 1, 1, sha256(&other_ca.spki))]);
        let err = v
            .check(&ee.der, std::slice::from_ref(&other_ca.der), now())
            .unwrap_err();
        assert_eq!(err.result_type(), "certificate-not-trusted");
    }

    #[test]
    fn dane_ta_record_does_not_match_the_end_entity_itself() {
        let cert = self_signed("mx.example.test", false);
        let v = verifier(&[tlsa(2, 1, 1, sha256(&cert.spki))]);
        assert!(v.check(&cert.der, &[], now()).is_err());
    }

    #[test]
    fn dane_ta_full_certificate_needs_no_anchor_in_the_chain() {
        let (ca, ee) = ca_chain("mx.example.test", false);
        let v = verifier(&[tlsa(2, 0, 0, hex(&ca.der))]);
        let m = v.check(&ee.der, &[], now()).unwrap();
        assert_eq!(m.usage, DaneUsage::DaneTa);
        // Still the chain, name and dates rules: another name fails.
        let (ca2, ee2) = ca_chain("other.example", false);
        let v2 = verifier(&[tlsa(2, 0, 0, hex(&ca2.der))]);
        assert_eq!(
            v2.check(&ee2.der, &[], now()).unwrap_err().result_type(),
            "certificate-host-mismatch"
        );
        // And a full-certificate record of a CA that signed nothing here.
        let v3 = verifier(&[tlsa(2, 0, 0, hex(&ca2.der))]);
        assert_eq!(
            v3.check(&ee.der, &[], now()).unwrap_err().result_type(),
            "certificate-not-trusted"
        );
    }
}
