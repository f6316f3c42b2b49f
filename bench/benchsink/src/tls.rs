//! STARTTLS server configuration (RFC 3207).

use std::io::{self, BufReader};
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;

/// Builds a rustls server config from PEM files: `chain` holds the leaf
/// certificate followed by any intermediates, `key` a PKCS#8, PKCS#1 or SEC1
/// private key. TLS 1.3 and 1.2 with the `ring` provider's default cipher
/// suites and key-exchange groups, so a relay under test negotiates what it
/// would with a typical modern MTA.
pub fn load(chain: &Path, key: &Path) -> io::Result<Arc<ServerConfig>> {
    let certs = rustls_pemfile::certs(&mut BufReader::new(open(chain)?))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| annotate(chain, &e))?;
    if certs.is_empty() {
        return Err(annotate(chain, &"no certificates found"));
    }
    let key_der = rustls_pemfile::private_key(&mut BufReader::new(open(key)?))
        .map_err(|e| annotate(key, &e))?
        .ok_or_else(|| annotate(key, &"no private key found"))?;
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

fn open(path: &Path) -> io::Result<std::fs::File> {
    std::fs::File::open(path).map_err(|e| annotate(path, &e))
}

fn annotate(path: &Path, e: &dyn std::fmt::Display) -> io::Error {
    io::Error::other(format!("{}: {e}", path.display()))
}
