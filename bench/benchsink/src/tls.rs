//! STARTTLS server configuration (RFC 3207).

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// Builds a rustls server config from PEM files: `chain` holds the leaf
/// certificate followed by any intermediates, `key` a PKCS#8, PKCS#1 or SEC1
/// private key. TLS 1.3 and 1.2 with the `ring` provider's default cipher
/// suites and key-exchange groups, so a relay under test negotiates what it
/// would with a typical modern MTA.
pub fn load(chain: &Path, key: &Path) -> io::Result<Arc<ServerConfig>> {
    let chain_pem = std::fs::read(chain).map_err(|e| annotate(chain, &e))?;
    let certs = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| annotate(chain, &e))?;
    if certs.is_empty() {
        return Err(annotate(chain, &"no certificates found"));
    }
    let key_pem = std::fs::read(key).map_err(|e| annotate(key, &e))?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => annotate(key, &"no private key found"),
        e => annotate(key, &e),
    })?;
    config(certs, key_der)
}

/// Builds the server config from DER items (also used by tests).
pub fn config(
    certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> io::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(io::Error::other)?;
    Ok(Arc::new(cfg))
}

fn annotate(path: &Path, e: &dyn std::fmt::Display) -> io::Error {
    io::Error::other(format!("{}: {e}", path.display()))
}
