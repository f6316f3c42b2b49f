//! Opening a connection for delivery: connect, greet, EHLO, secure it as
//! the host's [`AuthPlan`] says, and check the required level, all before
//! any MAIL FROM (ARCHITECTURE.md rule 1). Also used by `mxg check`, which
//! never sends MAIL FROM at all.

use super::auth_plan::{plan, AuthPlan, Authenticator};
use super::conn::{Conn, ConnError};
use super::pool::Client;
use crate::job::{Host, TlsRequirement};
use crate::level::TlsLevel;
use crate::tls::{PkixFailure, PkixRecorder};
use crate::vocab::{Method, Reason};
use mxg_dane::DaneVerifier;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Whether a connection that achieved `achieved` may carry mail that
/// requires `required`. `opportunistic` asks for TLS when offered and
/// accepts whatever the server could do; every higher level is a floor.
fn meets(achieved: TlsLevel, required: TlsLevel) -> bool {
    required <= TlsLevel::Opportunistic || achieved.meets(required)
}

/// Connects, greets and brings the session to the required level (with
/// DANE where the host publishes usable TLSA records).
pub(super) async fn open(
    client: &Client,
    tls: &TlsRequirement,
    host: &Host,
    ip: IpAddr,
) -> Result<Conn, ConnError> {
    let cfg = &client.cfg;
    let name = host.name.as_str();
    let plan = plan(
        host,
        tls,
        mxg_dane::usable(&host.tlsa),
        mxg_dane::usable(&host.pins),
    );
    let port = host.port.unwrap_or(cfg.port);
    let mut conn = Conn::connect(name, ip, port, ms(cfg.connect_timeout_ms)).await?;
    let greeting = conn
        .read_reply(ms(cfg.greeting_timeout_ms), "greeting")
        .await?;
    if greeting.code != 220 {
        let err = conn.refused(Reason::ServerReply, "the connection", greeting);
        conn.quit().await;
        return Err(err);
    }
    let cmd_timeout = ms(cfg.command_timeout_ms);
    conn.hello(&client.helo, cmd_timeout).await?;
    if let (Some(missing), false) = (plan.no_starttls, conn.caps.starttls) {
        let text = format!("{name}[{ip}]: {}: {}", missing.reason, missing.why);
        conn.quit().await;
        return Err(ConnError::unmet(missing.reason, text));
    }
    let mut pkix_failure = None;
    if plan.try_tls && conn.caps.starttls {
        pkix_failure = secure(&mut conn, client, tls, host, ip, &plan).await?;
        if let (Authenticator::Pkix { enforce: true, .. }, Some(failure)) =
            (plan.auth, &pkix_failure)
        {
            // RFC 8461 §4.2: under enforce, no delivery without PKIX.
            let text = format!("{name}[{ip}]: MTA-STS policy is enforce: {failure}");
            conn.quit().await;
            return Err(ConnError::unmet(failure.reason, text));
        }
        conn.hello(&client.helo, cmd_timeout).await?;
    }
    if tls.requiretls && !(conn.tls.is_some() && conn.caps.requiretls) {
        // RFC 8689 §4.2.1: the next hop must offer REQUIRETLS after
        // STARTTLS, or the message does not go there.
        let text = format!(
            "{name}[{ip}]: REQUIRETLS: the message requires it but the server does not offer REQUIRETLS over TLS (RFC 8689 4.2.1)"
        );
        conn.quit().await;
        return Err(ConnError {
            enhanced: Some("4.7.30"),
            ..ConnError::unmet(Reason::RequiretlsNotSupported, text)
        });
    }
    if !meets(conn.level(), tls.level) {
        let (reason, why) = shortfall(&conn, tls.level, pkix_failure.as_ref());
        let text = format!(
            "{name}[{ip}]: required transport level {} not met: {why}",
            tls.level.as_str()
        );
        conn.quit().await;
        return Err(ConnError::unmet(reason, text));
    }
    Ok(conn)
}

/// STARTTLS and the handshake under the plan's authenticator; records the
/// method that authenticated the server. Returns the PKIX failure, if
/// any: fatal under MTA-STS, for the level check under `dnssec-pkix`.
async fn secure(
    conn: &mut Conn,
    client: &Client,
    tls: &TlsRequirement,
    host: &Host,
    ip: IpAddr,
    plan: &AuthPlan,
) -> Result<Option<PkixFailure>, ConnError> {
    let name = host.name.as_str();
    let server_name = rustls::pki_types::ServerName::try_from(plan.sni.clone())
        .unwrap_or_else(|_| rustls::pki_types::ServerName::IpAddress(ip.into()));
    // One verifier per connection: it holds this host's records and,
    // afterwards, its verdict.
    let dane = match plan.auth {
        Authenticator::Dane => Some((&host.tlsa, host.dane_names())),
        Authenticator::Pins => Some((&host.pins, host.pin_names())),
        _ => None,
    }
    .map(|(records, names)| {
        Arc::new(DaneVerifier::new(
            records,
            names,
            crate::tls::verification_provider(),
        ))
    });
    let pkix = match plan.auth {
        Authenticator::Pkix { .. } => Some(Arc::new(
            PkixRecorder::new(client.roots.clone())
                // No PKIX roots at all: nothing can be validated.
                .map_err(|e| ConnError::new(Reason::ValidationFailure, e.to_string()))?,
        )),
        _ => None,
    };
    let config = if let Some(verifier) = &dane {
        crate::tls::dane_client_config(verifier.clone(), plan.offer)
    } else if let Some(recorder) = &pkix {
        crate::tls::pkix_client_config(recorder.clone(), plan.offer)
    } else {
        client.tls_config(plan.offer)
    };
    let cmd_timeout = ms(client.cfg.command_timeout_ms);
    let handshake = conn
        .starttls(config, server_name, tls.profile, cmd_timeout)
        .await;
    let dane_outcome = dane.as_ref().and_then(|v| v.outcome());
    if let Err(mut e) = handshake {
        match (plan.auth, dane_outcome) {
            (Authenticator::Dane, Some(Err(failure))) => {
                e.reason = Reason::from(&failure);
                e.text = format!(
                    "{name}[{ip}]: DANE authentication failed: {}: {failure}",
                    failure.result_type()
                );
            }
            (Authenticator::Pins, Some(Err(failure))) => {
                e.reason = pin_reason(&failure);
                e.text = format!("{name}[{ip}]: no operator pin matched: {failure}");
            }
            _ => {
                if let Some(p) = plan.offer {
                    e.text
                        .push_str(&format!(" (offered only TLS profile {})", p.as_str()));
                }
            }
        }
        return Err(e);
    }
    let pkix_result = pkix.as_ref().and_then(|r| r.result());
    let method = match (plan.auth, dane_outcome, &pkix_result) {
        (Authenticator::Pins, Some(Ok(_)), _) => Some(Method::Pinned),
        (Authenticator::Dane, Some(Ok(found)), _) => {
            if let Some(info) = conn.tls.as_mut() {
                info.tlsa = Some(found.record.clone());
            }
            let method = Method::from(found.usage);
            conn.dane = Some(found);
            Some(method)
        }
        (Authenticator::Pkix { counts_as, .. }, _, Some(Ok(()))) => Some(counts_as),
        _ => None,
    };
    if let Some(method) = method {
        if let Some(info) = conn.tls.as_mut() {
            info.method = Some(method);
        }
        if tls.methods.contains(&method) {
            conn.qualified_by = Some(method);
        }
    }
    Ok(pkix_result.and_then(Result::err))
}

/// A pin that did not match, in TLS-RPT words: pins are the operator's
/// trust decision, so "no pin matched" is an untrusted certificate, not
/// an invalid TLSA record.
fn pin_reason(failure: &mxg_dane::DaneFailure) -> Reason {
    match Reason::from(failure) {
        Reason::TlsaInvalid => Reason::CertificateNotTrusted,
        other => other,
    }
}

/// Why a session does not meet `required`: the reason and the words after
/// "required transport level ... not met: ".
fn shortfall(
    conn: &Conn,
    required: TlsLevel,
    pkix_failure: Option<&PkixFailure>,
) -> (Reason, String) {
    let tls = conn.tls.is_some();
    // The code names what is wrong first (a session outside the profile
    // would not do even if authenticated); the words stay as they were.
    let profile = tls && !conn.within_profile;
    match (required, pkix_failure) {
        (TlsLevel::Qualified, Some(failure)) => (
            if profile { Reason::TlsProfile } else { failure.reason },
            format!("validation-failure: dnssec-pkix: {failure}"),
        ),
        (TlsLevel::Qualified, None) if tls => (
            if profile { Reason::TlsProfile } else { Reason::ValidationFailure },
            "validation-failure: the server could not be authenticated by an allowed method (DANE: no usable DNSSEC-secure TLSA records; dnssec-pkix: no secure MX answer or no PKIX-valid certificate for the MX host name)".to_owned(),
        ),
        _ if tls => (
            Reason::TlsProfile,
            "the TLS session is outside the parameter profile".to_owned(),
        ),
        _ if conn.caps.starttls => (
            Reason::LevelNotMet,
            "the session does not meet the required level".to_owned(),
        ),
        _ => (
            Reason::StarttlsNotSupported,
            "starttls-not-supported: the server does not offer STARTTLS".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opportunistic_accepts_plaintext_but_encrypted_does_not() {
        assert!(meets(TlsLevel::None, TlsLevel::Opportunistic));
        assert!(meets(TlsLevel::None, TlsLevel::None));
        assert!(!meets(TlsLevel::None, TlsLevel::Encrypted));
        assert!(meets(TlsLevel::Encrypted, TlsLevel::Encrypted));
        assert!(!meets(TlsLevel::Encrypted, TlsLevel::Qualified));
    }

    #[test]
    fn a_pin_that_matches_nothing_is_an_untrusted_certificate() {
        use mxg_dane::DaneFailure as F;
        assert_eq!(pin_reason(&F::NoMatch), Reason::CertificateNotTrusted);
        assert_eq!(pin_reason(&F::Expired), Reason::CertificateExpired);
        assert_eq!(
            pin_reason(&F::NameMismatch(String::new())),
            Reason::CertificateHostMismatch
        );
    }
}
