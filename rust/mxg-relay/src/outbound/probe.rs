//! `mxg check`: every address of every MX host, through the delivery
//! code path up to the end of the TLS handshake, then QUIT. The job's own
//! level is not used: each address is tried for the best level it can
//! reach.

use super::open::open;
use super::pool::Client;
use crate::events::Event;
use crate::job::{HostProbe, ProbeJob, TlsRequirement};
use crate::level::TlsLevel;
use std::sync::Arc;

pub async fn probe(client: Arc<Client>, job: ProbeJob) {
    let mut hosts = Vec::new();
    for host in &job.hosts {
        for ip in &host.addresses {
            // First as an `encrypted` delivery would (only the profile's
            // parameters on offer); if that fails, as an opportunistic one,
            // keeping the first reason.
            let strict = TlsRequirement {
                level: TlsLevel::Encrypted,
                profile: job.tls.profile,
                methods: job.tls.methods.clone(),
                requiretls: false,
            };
            let mut first_error = String::new();
            let mut first_reason = None;
            let mut attempt = open(&client, &strict, host, *ip).await;
            if let Err(e) = &attempt {
                first_error.clone_from(&e.text);
                first_reason = Some(e.reason);
                let loose = TlsRequirement {
                    level: TlsLevel::Opportunistic,
                    profile: job.tls.profile,
                    methods: job.tls.methods.clone(),
                    requiretls: false,
                };
                attempt = open(&client, &loose, host, *ip).await;
            }
            let found = match attempt {
                Ok(conn) => {
                    let (subject, issuer, not_after) = conn
                        .peer_cert
                        .as_deref()
                        .map(describe_certificate)
                        .unwrap_or_default();
                    let found = HostProbe {
                        host: host.name.clone(),
                        ip: ip.to_string(),
                        ok: true,
                        error: first_error,
                        reason: first_reason,
                        starttls: conn.tls.is_some() || conn.caps.starttls,
                        level: conn.level(),
                        tls: conn.tls.clone(),
                        cert_subject: subject,
                        cert_issuer: issuer,
                        cert_not_after: not_after,
                    };
                    conn.quit().await;
                    found
                }
                Err(e) => HostProbe {
                    host: host.name.clone(),
                    ip: ip.to_string(),
                    ok: false,
                    error: e.text,
                    reason: Some(e.reason),
                    starttls: false,
                    level: TlsLevel::None,
                    tls: None,
                    cert_subject: String::new(),
                    cert_issuer: String::new(),
                    cert_not_after: None,
                },
            };
            hosts.push(found);
        }
    }
    client.bus.push(Event::ProbeDone {
        probe_id: job.probe_id,
        domain: job.domain,
        hosts,
    });
}

/// Subject, issuer and expiry of a DER certificate, for people to read.
fn describe_certificate(der: &[u8]) -> (String, String, Option<i64>) {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => (
            cert.subject().to_string(),
            cert.issuer().to_string(),
            Some(cert.validity().not_after.timestamp()),
        ),
        Err(_) => ("(unparsable certificate)".to_owned(), String::new(), None),
    }
}
