//! TLS configurations: the inbound server's, and the outbound client's for
//! the unauthenticated levels.
//!
//! rustls offers only TLS 1.2 and 1.3 with ECDHE and AEAD suites, so every
//! TLS session mxg makes already has forward secrecy; the stricter
//! parameter profiles of the transport-security work narrow this further.

use crate::error::EngineError;
use crate::profile::TlsProfile;
use crate::vocab::Reason;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads the inbound certificate chain and key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, EngineError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| EngineError::Tls(format!("cannot read {}: {e}", p.display())))
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| EngineError::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(EngineError::Tls(format!(
            "{}: no certificate found",
            cert.display()
        )));
    }
    let key: PrivateKeyDer<'static> =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
            pem::Error::NoItemsFound => {
                EngineError::Tls(format!("{}: no private key found", key.display()))
            }
            e => EngineError::Tls(format!("{}: {e}", key.display())),
        })?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| EngineError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| EngineError::Tls(format!("{}: {e}", cert.display())))?;
    Ok(Arc::new(config))
}

/// Client config for `opportunistic` (no profile) and `encrypted` (the
/// job's profile): the peer's identity
/// is not checked, but its handshake signature is (ARCHITECTURE.md rule 5),
/// so the session key is really shared with the holder of the presented
/// certificate. No session resumption: a session made here must never be
/// resumed under a stricter policy.
pub fn unauthenticated_client_config(profile: Option<TlsProfile>) -> Arc<ClientConfig> {
    client_config(
        Arc::new(SignatureOnly {
            provider: provider(),
        }),
        profile,
    )
}

/// A client config offering `profile`'s parameters (all of rustls's when
/// none) with `verifier` deciding about the server's certificate. Never
/// resumes sessions: a session made under one policy must not be resumed
/// under another (rustls does not re-verify resumed TLS 1.3 sessions;
/// ARCHITECTURE.md rule 5).
fn client_config(
    verifier: Arc<dyn ServerCertVerifier>,
    profile: Option<TlsProfile>,
) -> Arc<ClientConfig> {
    let provider =
        Arc::new(profile.map_or_else(rustls::crypto::ring::default_provider, TlsProfile::provider));
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// Client config that authenticates the server by DANE (one per
/// connection: the verifier holds that host's records and its verdict).
/// No resumption, so a session is never resumed under another policy.
pub fn dane_client_config(
    verifier: Arc<mxg_dane::DaneVerifier>,
    profile: Option<TlsProfile>,
) -> Arc<ClientConfig> {
    client_config(verifier, profile)
}

/// The crypto provider DANE verification checks signatures with.
pub fn verification_provider() -> Arc<CryptoProvider> {
    provider()
}

/// The PKIX roots: the system's (Debian's ca-certificates) and the
/// operator's extra trust anchors.
pub fn root_store(extra: Option<&Path>) -> Result<Arc<rustls::RootCertStore>, EngineError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = extra {
        let pem = std::fs::read(path)
            .map_err(|e| EngineError::Tls(format!("cannot read {}: {e}", path.display())))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| EngineError::Tls(format!("{}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| EngineError::Tls(format!("{}: {e}", path.display())))?;
            added += 1;
        }
        if added == 0 {
            return Err(EngineError::Tls(format!(
                "{}: no certificate found",
                path.display()
            )));
        }
    }
    Ok(Arc::new(roots))
}

/// Records whether the server's chain is PKIX-valid for its name, without
/// failing the handshake: whether that is needed is the level's business,
/// decided before MAIL FROM (ARCHITECTURE.md rule 1). Handshake signatures
/// are verified as always.
#[derive(Debug)]
pub struct PkixRecorder {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    result: std::sync::Mutex<Option<Result<(), PkixFailure>>>,
}

/// Why a chain was not PKIX-valid: the code and the words for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkixFailure {
    pub reason: Reason,
    pub text: String,
}

impl std::fmt::Display for PkixFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl PkixRecorder {
    pub fn new(roots: Arc<rustls::RootCertStore>) -> Result<Self, EngineError> {
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| EngineError::Tls(e.to_string()))?;
        Ok(Self {
            inner,
            result: std::sync::Mutex::new(None),
        })
    }

    /// `Some(Ok)` when the chain was valid for the name, `Some(Err(why))`
    /// when not, `None` before a handshake.
    pub fn result(&self) -> Option<Result<(), PkixFailure>> {
        self.result.lock().ok().and_then(|r| r.clone())
    }
}

impl ServerCertVerifier for PkixRecorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            .map(|_| ())
            .map_err(|e| pkix_reason(&e));
        if let Ok(mut r) = self.result.lock() {
            *r = Some(verdict);
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A certificate error from rustls/webpki as a TLS-RPT result type
/// (RFC 8460 §4.3.1): expired, not for this host, or else not trusted.
pub fn certificate_reason(e: &rustls::Error) -> Reason {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            Reason::CertificateExpired
        }
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => Reason::CertificateHostMismatch,
        _ => Reason::CertificateNotTrusted,
    }
}

/// A PKIX failure in TLS-RPT words (RFC 8460 §4.3), with the detail where
/// the result type alone does not say what was wrong.
fn pkix_reason(e: &rustls::Error) -> PkixFailure {
    let reason = certificate_reason(e);
    let text = match reason {
        Reason::CertificateNotTrusted => format!("{reason}: {e}"),
        _ => reason.as_str().to_owned(),
    };
    PkixFailure { reason, text }
}

/// Client config with a PKIX recorder (one per connection).
pub fn pkix_client_config(
    recorder: Arc<PkixRecorder>,
    profile: Option<TlsProfile>,
) -> Arc<ClientConfig> {
    client_config(recorder, profile)
}

/// Accepts any certificate, verifies the handshake signature with it.
#[derive(Debug)]
struct SignatureOnly {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for SignatureOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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

/// Version, suite, group and certificate hashes of an established session.
pub fn describe(conn: &rustls::CommonState) -> Option<crate::job::TlsInfo> {
    let version = match conn.protocol_version()? {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
        other => format!("{other:?}"),
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|s| s.suite().as_str().unwrap_or("unknown").to_owned())?;
    let group = conn
        .negotiated_key_exchange_group()
        .map(|g| group_name(g.name()))
        .unwrap_or_default();
    let peer_certs_sha256 = conn
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|c| hex(ring::digest::digest(&ring::digest::SHA256, c.as_ref()).as_ref()))
        .collect();
    Some(crate::job::TlsInfo {
        version,
        cipher,
        group,
        peer_certs_sha256,
        method: None,
        tlsa: None,
    })
}

/// Whether an established session keeps to a profile.
pub fn within_profile(conn: &rustls::CommonState, profile: TlsProfile) -> bool {
    let suite = conn.negotiated_cipher_suite().map(|s| s.suite());
    let group = conn
        .negotiated_key_exchange_group()
        .map(rustls::crypto::SupportedKxGroup::name);
    suite.is_some_and(|s| profile.admits(s, group))
}

/// IANA TLS Supported Groups names.
fn group_name(g: rustls::NamedGroup) -> String {
    match g {
        rustls::NamedGroup::secp256r1 => "secp256r1".into(),
        rustls::NamedGroup::secp384r1 => "secp384r1".into(),
        rustls::NamedGroup::secp521r1 => "secp521r1".into(),
        rustls::NamedGroup::X25519 => "x25519".into(),
        rustls::NamedGroup::X448 => "x448".into(),
        other => format!("{:#06x}", u16::from(other)),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ARCHITECTURE.md rule 5: rustls does not re-verify a resumed TLS 1.3
    /// session, so no client config may resume at all.
    #[test]
    fn certificate_errors_map_to_their_result_types() {
        use rustls::CertificateError as C;
        let reason = |c: C| certificate_reason(&rustls::Error::InvalidCertificate(c));
        assert_eq!(reason(C::Expired), Reason::CertificateExpired);
        assert_eq!(reason(C::NotValidForName), Reason::CertificateHostMismatch);
        assert_eq!(reason(C::UnknownIssuer), Reason::CertificateNotTrusted);
        assert_eq!(
            pkix_reason(&rustls::Error::InvalidCertificate(C::UnknownIssuer)).text,
            "certificate-not-trusted: invalid peer certificate: UnknownIssuer"
        );
        assert_eq!(
            pkix_reason(&rustls::Error::InvalidCertificate(C::Expired)).text,
            "certificate-expired"
        );
    }

    #[test]
    fn rule5_no_client_config_resumes_sessions() {
        let disabled = format!("{:?}", rustls::client::Resumption::disabled());
        let roots = root_store(None).unwrap();
        let configs = [
            unauthenticated_client_config(None),
            unauthenticated_client_config(Some(TlsProfile::BsiTr02102_2)),
            dane_client_config(
                Arc::new(mxg_dane::DaneVerifier::new(&[], vec![], provider())),
                Some(TlsProfile::Modern),
            ),
            pkix_client_config(Arc::new(PkixRecorder::new(roots).unwrap()), None),
        ];
        for config in configs {
            assert_eq!(format!("{:?}", config.resumption), disabled);
        }
    }
}
