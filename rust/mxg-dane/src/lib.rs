//! DANE for SMTP: TLSA records (RFC 6698) as RFC 7672 uses them, and a
//! rustls verifier that authenticates a receiving server by them.
//!
//! The control plane resolves and DNSSEC-checks; this crate is the pure
//! part: [`classify`] says whether a record is usable (a documented
//! verdict, unit-tested), [`DaneVerifier`] enforces usable records inside
//! the TLS handshake. Signatures of the handshake (`CertificateVerify`) are
//! always checked, DANE or not (ARCHITECTURE.md rule 5).

mod tlsa;
mod verifier;

pub use tlsa::{classify, hex, usable, Tlsa, Unusable};
pub use verifier::{DaneFailure, DaneMatch, DaneUsage, DaneVerifier};
