//! Which authenticator a connection to one host uses, decided before any
//! I/O from the job alone. The precedence is the one of ARCHITECTURE.md:
//! usable TLSA records (DANE, RFC 7672 §2.2, rule 2) beat operator pins,
//! pins beat an MTA-STS `enforce` policy (RFC 8461), and `dnssec-pkix`
//! applies only when none of them does, the MX answer was DNSSEC-secure
//! and the job counts the method. The data plane does not choose the
//! policy: it applies this plan to what the control plane sent.

use crate::job::{Host, TlsRequirement};
use crate::profile::TlsProfile;
use crate::vocab::{Method, Reason};

/// What verifies the server's certificate in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authenticator {
    /// The host's usable TLSA records, enforced in the handshake (method
    /// `dane-ee` or `dane-ta`, by the record that matched).
    Dane,
    /// The operator's pins, enforced in the handshake like DANE records
    /// (method `pinned`).
    Pins,
    /// PKIX with a name check, recorded without failing the handshake; a
    /// success counts as `counts_as`. Under MTA-STS `enforce` a failure
    /// ends the connection (RFC 8461 §4.2); under `dnssec-pkix` it only
    /// leaves the session unauthenticated.
    Pkix { counts_as: Method, enforce: bool },
    /// Nothing authenticates the server: `encrypted` at most.
    Unauthenticated,
}

/// Why a server without STARTTLS cannot be used when the plan makes TLS
/// mandatory for the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoStarttls {
    pub reason: Reason,
    pub why: &'static str,
}

/// How to secure a connection to one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPlan {
    pub auth: Authenticator,
    /// The name sent as SNI: the TLSA base domain under DANE (RFC 7672
    /// §8.1), else the MX host name.
    pub sni: String,
    /// The parameters offered in the handshake: only the job's profile
    /// where the level demands it (`encrypted` and up), else everything
    /// rustls has, so that an opportunistic session happens at all.
    pub offer: Option<TlsProfile>,
    /// Set exactly when the authenticator makes TLS mandatory for this
    /// host whatever the job's level: a server without STARTTLS is then
    /// not used at all.
    pub no_starttls: Option<NoStarttls>,
    /// STARTTLS is attempted when the server offers it.
    pub try_tls: bool,
}

/// The plan for `host` under `tls`. `dane_usable` and `pins_usable` say
/// whether the host's TLSA records and the operator's pins hold at least
/// one usable record (`mxg_dane::usable`).
pub fn plan(host: &Host, tls: &TlsRequirement, dane_usable: bool, pins_usable: bool) -> AuthPlan {
    let (auth, no_starttls) = if dane_usable {
        (
            Authenticator::Dane,
            Some(NoStarttls {
                reason: Reason::StarttlsNotSupported,
                why: "the server publishes TLSA records but does not offer STARTTLS (RFC 7672 2.2)",
            }),
        )
    } else if pins_usable {
        (
            Authenticator::Pins,
            Some(NoStarttls {
                reason: Reason::StarttlsNotSupported,
                why: "the domain has operator pins but the server does not offer STARTTLS",
            }),
        )
    } else if host.sts {
        (
            Authenticator::Pkix {
                counts_as: Method::MtaSts,
                enforce: true,
            },
            Some(NoStarttls {
                reason: Reason::StarttlsNotSupported,
                why: "the domain's MTA-STS policy is enforce but the server does not offer STARTTLS (RFC 8461 4.2)",
            }),
        )
    } else if host.pkix && tls.methods.contains(&Method::DnssecPkix) {
        (
            Authenticator::Pkix {
                counts_as: Method::DnssecPkix,
                enforce: false,
            },
            None,
        )
    } else {
        (Authenticator::Unauthenticated, None)
    };
    let sni = if auth == Authenticator::Dane {
        host.dane_names().swap_remove(0)
    } else {
        host.name.clone()
    };
    AuthPlan {
        auth,
        sni,
        offer: tls.level.requires_tls().then_some(tls.profile),
        try_tls: tls.level.tries_tls() || no_starttls.is_some(),
        no_starttls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::level::TlsLevel;

    fn host(sts: bool, pkix: bool) -> Host {
        Host {
            name: "mx.example.test".into(),
            addresses: vec![],
            tlsa: vec![],
            tlsa_names: vec!["mx.cname.example.test".into(), "mx.example.test".into()],
            pkix,
            sts,
            pins: vec![],
            pin_names: vec![],
            port: None,
        }
    }

    fn req(level: TlsLevel, methods: &[Method]) -> TlsRequirement {
        TlsRequirement {
            level,
            profile: TlsProfile::BsiTr02102_2,
            methods: methods.to_vec(),
            requiretls: false,
        }
    }

    const DEFAULT: [Method; 4] = [
        Method::DaneEe,
        Method::DaneTa,
        Method::MtaSts,
        Method::DnssecPkix,
    ];

    const STS: Authenticator = Authenticator::Pkix {
        counts_as: Method::MtaSts,
        enforce: true,
    };
    const DNSSEC_PKIX: Authenticator = Authenticator::Pkix {
        counts_as: Method::DnssecPkix,
        enforce: false,
    };

    const NOTHING: Authenticator = Authenticator::Unauthenticated;
    const ONLY_PKIX: &[Method] = &[Method::DnssecPkix];
    const NO_PKIX: &[Method] = &[Method::DaneEe, Method::MtaSts];

    /// sts, MX answer secure, TLSA usable, pins usable, methods counted.
    type Row = (bool, bool, bool, bool, &'static [Method], Authenticator);

    /// TLSA beats pins beats MTA-STS beats dnssec-pkix (rule 2: usable
    /// TLSA records take precedence over MTA-STS).
    #[test]
    fn rule2_precedence_dane_then_pins_then_mta_sts_then_dnssec_pkix() {
        let rows: &[Row] = &[
            (true, true, true, true, &DEFAULT, Authenticator::Dane),
            (false, false, true, false, &[], Authenticator::Dane),
            (true, true, false, true, &DEFAULT, Authenticator::Pins),
            (false, false, false, true, &[], Authenticator::Pins),
            (true, true, false, false, &DEFAULT, STS),
            // MTA-STS enforce applies whatever the job counts (RFC 8461 §4.2).
            (true, false, false, false, &[], STS),
            (false, true, false, false, &DEFAULT, DNSSEC_PKIX),
            (false, true, false, false, ONLY_PKIX, DNSSEC_PKIX),
            // dnssec-pkix needs a secure MX answer and the method allowed.
            (false, false, false, false, &DEFAULT, NOTHING),
            (false, true, false, false, NO_PKIX, NOTHING),
        ];
        for &(sts, pkix, dane, pins, methods, want) in rows {
            let got = plan(
                &host(sts, pkix),
                &req(TlsLevel::Qualified, methods),
                dane,
                pins,
            );
            assert_eq!(
                got.auth, want,
                "sts={sts} pkix={pkix} dane={dane} pins={pins} {methods:?}"
            );
        }
    }

    #[test]
    fn dane_pins_and_mta_sts_make_tls_mandatory_whatever_the_level() {
        for level in TlsLevel::ALL {
            for (sts, dane, pins) in [
                (false, true, false),
                (false, false, true),
                (true, false, false),
            ] {
                let p = plan(&host(sts, true), &req(level, &DEFAULT), dane, pins);
                assert!(p.no_starttls.is_some() && p.try_tls, "{level:?}");
                let missing = p.no_starttls.unwrap();
                assert_eq!(missing.reason, Reason::StarttlsNotSupported);
            }
            let p = plan(&host(false, true), &req(level, &DEFAULT), false, false);
            assert!(p.no_starttls.is_none(), "{level:?}");
            assert_eq!(p.try_tls, level != TlsLevel::None, "{level:?}");
        }
    }

    #[test]
    fn the_profile_is_offered_only_from_encrypted_up() {
        let offer = |level| plan(&host(false, false), &req(level, &DEFAULT), false, false).offer;
        assert_eq!(offer(TlsLevel::None), None);
        assert_eq!(offer(TlsLevel::Opportunistic), None);
        assert_eq!(offer(TlsLevel::Encrypted), Some(TlsProfile::BsiTr02102_2));
        assert_eq!(offer(TlsLevel::Qualified), Some(TlsProfile::BsiTr02102_2));
    }

    #[test]
    fn sni_is_the_tlsa_base_domain_only_under_dane() {
        let h = host(true, true);
        let under = |dane, pins| plan(&h, &req(TlsLevel::Encrypted, &DEFAULT), dane, pins).sni;
        assert_eq!(under(true, false), "mx.cname.example.test");
        assert_eq!(under(false, true), "mx.example.test");
        assert_eq!(under(false, false), "mx.example.test");
        let mut plain = host(false, false);
        plain.tlsa_names.clear();
        let p = plan(&plain, &req(TlsLevel::Qualified, &DEFAULT), true, false);
        assert_eq!(p.sni, "mx.example.test");
    }

    #[test]
    fn the_text_for_a_missing_starttls_names_the_authenticator() {
        let why = |sts, dane, pins| {
            plan(
                &host(sts, false),
                &req(TlsLevel::Opportunistic, &DEFAULT),
                dane,
                pins,
            )
            .no_starttls
            .unwrap()
            .why
        };
        assert!(why(false, true, false).contains("TLSA records"));
        assert!(why(false, false, true).contains("operator pins"));
        assert!(why(true, false, false).contains("MTA-STS"));
    }
}
