//! Delivery jobs (control plane → data plane) and their results.

use crate::level::TlsLevel;
use crate::profile::TlsProfile;
use crate::vocab::{Method, Reason};
use mxg_spool::Recipient;
use serde::{Deserialize, Serialize};

/// One receiving host with the addresses to try, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
    pub addresses: Vec<std::net::IpAddr>,
    /// DNSSEC-secure TLSA records at `_<port>._tcp.<name>` (RFC 7672
    /// §2.2); when any is usable, TLS and DANE authentication are
    /// mandatory for this host whatever the job's level.
    #[serde(default)]
    pub tlsa: Vec<mxg_dane::Tlsa>,
    /// Reference names for DANE-TA: the TLSA base domain (the
    /// CNAME-expanded host name when the records were found there), then
    /// the MX host name (RFC 7672 §2.2.3, §3.2.2). Empty means `name`.
    #[serde(default)]
    pub tlsa_names: Vec<String>,
    /// The MX answer was DNSSEC-secure, so a PKIX-valid certificate for
    /// this host name authenticates it (method `dnssec-pkix`).
    #[serde(default)]
    pub pkix: bool,
    /// An MTA-STS `enforce` policy covers this host (RFC 8461 §4.2):
    /// STARTTLS and a PKIX-valid certificate for the host name are
    /// mandatory, whatever the job's level (usable TLSA records take
    /// precedence).
    #[serde(default)]
    pub sts: bool,
    /// Operator pins for this host's domain, as DANE-EE-shaped records
    /// (`3 1 1` for a key, `3 0 1` for a certificate); once given, one
    /// must match (method `pinned`).
    #[serde(default)]
    pub pins: Vec<mxg_dane::Tlsa>,
    /// Names a certificate under a pinned private CA (`2 0 0` pin) may
    /// be issued to; empty means the MX host name.
    #[serde(default)]
    pub pin_names: Vec<String>,
    /// Port to connect to; absent means the configured delivery port
    /// (set for a configured fallback relay, `on_unmet = "reroute"`).
    #[serde(default)]
    pub port: Option<u16>,
}

impl Host {
    /// The names a DANE-TA certificate may be issued to; the first is
    /// also sent as SNI when DANE applies (RFC 7672 §8.1).
    pub fn dane_names(&self) -> Vec<String> {
        self.names_or_host(&self.tlsa_names)
    }

    /// The names a certificate under a pinned private CA may carry.
    pub fn pin_names(&self) -> Vec<String> {
        self.names_or_host(&self.pin_names)
    }

    fn names_or_host(&self, names: &[String]) -> Vec<String> {
        if names.is_empty() {
            vec![self.name.clone()]
        } else {
            names.to_vec()
        }
    }
}

/// The transport requirement for a job. Later work adds the
/// authentication material (TLSA records, MTA-STS patterns, pins).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TlsRequirement {
    pub level: TlsLevel,
    /// Parameter profile that `encrypted` and `qualified` sessions must
    /// keep to; also the yardstick for what an opportunistic session
    /// achieved.
    #[serde(default = "default_profile")]
    pub profile: TlsProfile,
    /// Authentication methods that count for `qualified`.
    #[serde(default = "default_methods")]
    pub methods: Vec<Method>,
    /// The message carries REQUIRETLS (RFC 8689): the server must offer
    /// REQUIRETLS after STARTTLS, and MAIL FROM passes it on.
    #[serde(default)]
    pub requiretls: bool,
}

/// The control plane's default (`delivery.qualified_methods` in
/// python/mxg/config/sections.py): every method but `pinned`, which needs pins.
fn default_methods() -> Vec<Method> {
    vec![
        Method::DaneEe,
        Method::DaneTa,
        Method::MtaSts,
        Method::DnssecPkix,
    ]
}

fn default_profile() -> TlsProfile {
    TlsProfile::BsiTr02102_2
}

/// Deliver one spooled message to some of its recipients, all in one
/// destination (recipient domain or configured route).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryJob {
    pub job_id: u64,
    pub queue_id: String,
    /// Key for connection reuse and the concurrency limit.
    pub destination: String,
    pub sender: String,
    pub recipients: Vec<Recipient>,
    /// MX hosts in the order to try (the control plane already shuffled
    /// equal preferences).
    pub hosts: Vec<Host>,
    pub tls: TlsRequirement,
    #[serde(default)]
    pub ret: Option<String>,
    #[serde(default)]
    pub envid: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub smtputf8: bool,
    /// Header fields removed before the message leaves (the risk marker
    /// `X-MXG-Risk` by default), case-insensitive names.
    #[serde(default)]
    pub strip_headers: Vec<String>,
    /// A subject tag (e.g. `[vertraulich]`) removed from the Subject.
    #[serde(default)]
    pub subject_tag: Option<String>,
    /// Add `X-MXG-Protection` with the level each session achieved, after
    /// removing any the message carries (`outbound/protection.rs`).
    #[serde(default)]
    pub protection_header: bool,
}

/// Final word on one recipient from one job.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Accepted by the receiving server (2xx after DATA).
    Sent,
    /// Temporary failure; the control plane retries.
    Deferred,
    /// Permanent failure; the control plane bounces.
    Bounced,
}

impl Status {
    pub const ALL: [Self; 3] = [Self::Sent, Self::Deferred, Self::Bounced];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Deferred => "deferred",
            Self::Bounced => "bounced",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecipientResult {
    pub address: String,
    pub status: Status,
    pub code: u16,
    pub enhanced: String,
    pub text: String,
    /// Host and address that gave the answer; empty if none was reached.
    pub host: String,
    pub ip: String,
    /// TLS version and cipher of that session, when TLS was used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    /// Level the session achieved.
    pub level: TlsLevel,
    /// Deferred because every server reached could not give the required
    /// transport level (and none failed for another reason).
    #[serde(default)]
    pub unmet: bool,
    /// Why the recipient was not sent; absent when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
}

/// What a TLS session proved (ARCHITECTURE.md, "evidence").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TlsInfo {
    pub version: String,
    pub cipher: String,
    /// Key-exchange group, e.g. `secp256r1`.
    pub group: String,
    /// SHA-256 of each certificate the peer presented, end entity first.
    pub peer_certs_sha256: Vec<String>,
    /// How the peer was authenticated, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// The TLSA record that matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tlsa: Option<String>,
}

/// One connection attempt that did not end in delivery, for the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptNote {
    pub host: String,
    pub ip: String,
    pub error: String,
    /// `error` as a code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
}

/// Probe the hosts of a domain through the same connection code as a
/// delivery, without ever sending MAIL FROM (`mxg check`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeJob {
    pub probe_id: u64,
    pub domain: String,
    pub hosts: Vec<Host>,
    pub tls: TlsRequirement,
}

/// What probing one address of one host found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostProbe {
    pub host: String,
    pub ip: String,
    /// A session was established at the probed level.
    pub ok: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// `error` as a code; absent when there is no error (a probe that
    /// succeeded only at a lower level keeps the first attempt's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    pub starttls: bool,
    pub level: TlsLevel,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cert_subject: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cert_issuer: String,
    /// Unix time the end-entity certificate expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_not_after: Option<i64>,
}
