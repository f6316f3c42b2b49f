//! TLS parameter profiles for the `encrypted` and `qualified` levels.
//!
//! `bsi-tr-02102-2` follows BSI TR-02102-2 (2024), section 3: TLS 1.2 and
//! 1.3; in TLS 1.2 only ECDHE key exchange with AES-GCM suites; groups
//! secp256r1 and secp384r1. What the TR also lists but rustls cannot offer
//! (brainpool curves, DHE groups, AES-CBC and AES-CCM suites) is missing
//! from the offer; a server that speaks only those cannot be reached at
//! these levels (see docs/configuration.md).
//!
//! `modern` adds X25519 and ChaCha20-Poly1305, which the TR does not list
//! but current guidance elsewhere (RFC 9325) recommends.
//!
//! `opportunistic` uses no profile: whatever rustls can negotiate (every
//! rustls suite is already forward-secret AEAD).

use rustls::crypto::{ring, CryptoProvider, SupportedKxGroup};
use rustls::{CipherSuite, NamedGroup, SupportedCipherSuite};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsProfile {
    #[serde(rename = "bsi-tr-02102-2")]
    BsiTr02102_2,
    Modern,
}

const BSI_SUITES: &[CipherSuite] = &[
    CipherSuite::TLS13_AES_256_GCM_SHA384,
    CipherSuite::TLS13_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
];

const MODERN_EXTRA_SUITES: &[CipherSuite] = &[
    CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

const BSI_GROUPS: &[NamedGroup] = &[NamedGroup::secp384r1, NamedGroup::secp256r1];

impl TlsProfile {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BsiTr02102_2 => "bsi-tr-02102-2",
            Self::Modern => "modern",
        }
    }

    fn allows_suite(self, suite: CipherSuite) -> bool {
        BSI_SUITES.contains(&suite)
            || (self == Self::Modern && MODERN_EXTRA_SUITES.contains(&suite))
    }

    fn allows_group(self, group: NamedGroup) -> bool {
        BSI_GROUPS.contains(&group) || (self == Self::Modern && group == NamedGroup::X25519)
    }

    /// The ring provider cut down to this profile, in preference order.
    pub fn provider(self) -> CryptoProvider {
        let base = ring::default_provider();
        let cipher_suites: Vec<SupportedCipherSuite> = base
            .cipher_suites
            .iter()
            .copied()
            .filter(|s| self.allows_suite(s.suite()))
            .collect();
        let kx_groups: Vec<&'static dyn SupportedKxGroup> = base
            .kx_groups
            .iter()
            .copied()
            .filter(|g| self.allows_group(g.name()))
            .collect();
        CryptoProvider {
            cipher_suites,
            kx_groups,
            ..base
        }
    }

    /// Whether an established session's parameters are within the profile
    /// (a server cannot pick outside our offer, but the check documents
    /// and enforces the promise).
    pub fn admits(self, suite: CipherSuite, group: Option<NamedGroup>) -> bool {
        self.allows_suite(suite) && group.is_some_and(|g| self.allows_group(g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bsi_profile_offers_only_ecdhe_aes_gcm_on_nist_curves() {
        let p = TlsProfile::BsiTr02102_2.provider();
        let suites: Vec<_> = p
            .cipher_suites
            .iter()
            .map(SupportedCipherSuite::suite)
            .collect();
        assert_eq!(suites.len(), 6);
        assert!(!suites.contains(&CipherSuite::TLS13_CHACHA20_POLY1305_SHA256));
        let groups: Vec<_> = p.kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(groups.len(), 2);
        assert!(!groups.contains(&NamedGroup::X25519));
    }

    #[test]
    fn modern_adds_x25519_and_chacha() {
        let p = TlsProfile::Modern.provider();
        assert_eq!(p.cipher_suites.len(), 9);
        assert!(p.kx_groups.iter().any(|g| g.name() == NamedGroup::X25519));
        assert!(TlsProfile::Modern.admits(
            CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
            Some(NamedGroup::X25519)
        ));
        assert!(!TlsProfile::BsiTr02102_2.admits(
            CipherSuite::TLS13_AES_128_GCM_SHA256,
            Some(NamedGroup::X25519)
        ));
    }

    #[test]
    fn names_round_trip_through_serde() {
        let p: TlsProfile = serde_json::from_str("\"bsi-tr-02102-2\"").unwrap();
        assert_eq!(p, TlsProfile::BsiTr02102_2);
        assert_eq!(
            serde_json::to_string(&TlsProfile::Modern).unwrap(),
            "\"modern\""
        );
    }
}
