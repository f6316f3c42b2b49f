//! The engine's configuration, handed over by the control plane as JSON
//! after it validated the operator's TOML. Defaults here only matter for
//! tests; the operator-facing defaults live in `python/mxg/config/`.

use ipnet::IpNet;
use mxg_smtp::Limits;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Our host name, in the greeting, EHLO and Received headers.
    pub hostname: String,
    /// Addresses to listen on, `ip:port`; none for an engine that only
    /// sends (`mxg check`).
    pub listen: Vec<String>,
    pub spool_dir: PathBuf,
    /// Networks allowed to relay through us (ARCHITECTURE.md rule 7).
    pub client_networks: Vec<IpNet>,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_max_connections_per_client")]
    pub max_connections_per_client: usize,
    /// Clients outside `client_networks`: `refuse` (554 at the greeting)
    /// or `allow` (a session, refused at RCPT).
    #[serde(default)]
    pub outsiders: crate::inbound::OutsiderPolicy,
    /// Sessions of outsiders at once when allowed; their own pool, apart
    /// from `max_connections`.
    #[serde(default = "default_max_outsider_connections")]
    pub max_outsider_connections: usize,
    /// Message octets all inbound sessions together may hold in memory
    /// (ARCHITECTURE.md rule 12b); past it a message gets `452 4.3.1`.
    #[serde(default = "default_max_message_memory")]
    pub max_message_memory: usize,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// PEM certificate chain and key for inbound STARTTLS; without them
    /// STARTTLS is not offered.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    #[serde(default)]
    pub outbound: OutboundConfig,
    /// Milliseconds open transactions get to finish at shutdown. Every
    /// duration crosses the boundary in milliseconds, so that a configured
    /// "0.5s" is 500 and never truncated to 0.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_ms: u64,
    /// How long a session waits at end of DATA for the control plane's
    /// verdict before it accepts anyway; 0 turns synchronous verdicts off.
    #[serde(default)]
    pub verdict_deadline_ms: u64,
    /// Which messages wait for that verdict; absent: every message.
    #[serde(default)]
    pub verdict_screen: Option<crate::inbound::VerdictScreen>,
    /// Set on a PostgreSQL store: every accepted message waits up to this
    /// long for the control plane to store it with its body, and gets its
    /// 250 only then (`"stored"` verdict); no answer in time is a
    /// `451 4.3.0`. Absent: the spool's fsync alone makes the 250.
    #[serde(default)]
    pub store_ack_ms: Option<u64>,
    /// What the content scanner looks for in every received message; None
    /// turns scanning off (features are then null).
    #[serde(default)]
    pub scan: Option<mxg_classify::ScanOptions>,
    /// Ask the control plane about each recipient at RCPT (within the
    /// verdict deadline): set when rules on the envelope alone may refuse.
    #[serde(default)]
    pub rcpt_checks: bool,
    /// Inflow control (`inbound::Inflow`): the longest pause before a new
    /// transaction while the control plane is behind; 0 turns it off.
    #[serde(default)]
    pub in_flow_delay_ms: u64,
    /// Received messages the control plane may leave undrained before new
    /// transactions pause.
    #[serde(default = "default_in_flow_limit")]
    pub in_flow_limit: usize,
    /// Transactions in the content phase at once (`inbound::Admission`),
    /// the next waits before its 354 at most `in_flow_delay_ms`; 0: no
    /// limit.
    #[serde(default)]
    pub max_receiving: usize,
}

fn default_in_flow_limit() -> usize {
    100
}

fn default_max_connections() -> usize {
    1000
}
fn default_max_outsider_connections() -> usize {
    50
}
fn default_max_message_memory() -> usize {
    crate::inbound::DEFAULT_MESSAGE_MEMORY
}
fn default_max_connections_per_client() -> usize {
    200
}
fn default_shutdown_grace() -> u64 {
    30_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_command_line: usize,
    pub max_data_line: usize,
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_errors: usize,
    pub command_timeout_ms: u64,
    pub data_timeout_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let l = Limits::default();
        Self {
            max_command_line: l.max_command_line,
            max_data_line: l.max_data_line,
            max_message_size: l.max_message_size,
            max_recipients: l.max_recipients,
            max_errors: l.max_errors,
            command_timeout_ms: l.command_timeout.as_millis() as u64,
            data_timeout_ms: l.data_timeout.as_millis() as u64,
        }
    }
}

impl LimitsConfig {
    pub fn to_limits(&self) -> Limits {
        Limits {
            max_command_line: self.max_command_line,
            max_data_line: self.max_data_line,
            max_message_size: self.max_message_size,
            max_recipients: self.max_recipients,
            max_errors: self.max_errors,
            command_timeout: Duration::from_millis(self.command_timeout_ms),
            data_timeout: Duration::from_millis(self.data_timeout_ms),
        }
    }
}

/// Outbound client settings. Timeouts are RFC 5321 §4.5.3.2's minimums.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// Name sent in EHLO/HELO; empty means `hostname`.
    pub helo_name: String,
    /// Port of receiving servers; 25 except in test worlds.
    pub port: u16,
    pub connect_timeout_ms: u64,
    /// §4.5.3.2.1 initial 220: 5 minutes.
    pub greeting_timeout_ms: u64,
    /// §4.5.3.2.2/3 MAIL and RCPT: 5 minutes (also EHLO, STARTTLS, RSET).
    pub command_timeout_ms: u64,
    /// §4.5.3.2.4 DATA initiation: 2 minutes.
    pub data_init_timeout_ms: u64,
    /// §4.5.3.2.5 data block: 3 minutes.
    pub data_block_timeout_ms: u64,
    /// §4.5.3.2.6 DATA termination: 10 minutes.
    pub data_done_timeout_ms: u64,
    /// Connections at once to one destination (recipient domain).
    pub max_per_destination: usize,
    /// Messages sent over one connection before it is closed.
    pub max_messages_per_connection: usize,
    /// Milliseconds an idle connection waits for the next message to the same
    /// destination before it is closed with QUIT.
    pub idle_timeout_ms: u64,
    /// Extra PKIX trust anchors (PEM), next to the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            helo_name: String::new(),
            port: 25,
            connect_timeout_ms: 30_000,
            greeting_timeout_ms: 300_000,
            command_timeout_ms: 300_000,
            data_init_timeout_ms: 120_000,
            data_block_timeout_ms: 180_000,
            data_done_timeout_ms: 600_000,
            max_per_destination: 20,
            max_messages_per_connection: 100,
            idle_timeout_ms: 5_000,
            ca_file: None,
        }
    }
}

impl EngineConfig {
    pub fn from_json(json: &str) -> Result<Self, crate::EngineError> {
        let cfg: Self =
            serde_json::from_str(json).map_err(|e| crate::EngineError::Config(e.to_string()))?;
        if cfg.tls_cert.is_some() != cfg.tls_key.is_some() {
            return Err(crate::EngineError::Config(
                "tls_cert and tls_key go together".into(),
            ));
        }
        Ok(cfg)
    }
}
