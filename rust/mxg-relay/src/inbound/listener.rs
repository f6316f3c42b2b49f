//! Listening sockets, connection limits and the accept loop.

use super::refusal::{self, Refusal};
use super::session::Session;
use super::verdict::{VerdictScreen, Verdicts};
use crate::error::EngineError;
use crate::events::{Event, EventBus};
use crate::stats::Stats;
use ipnet::IpNet;
use mxg_smtp::{Limits, Reply};
use mxg_spool::Spool;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What every session of the server shares.
/// Message octets all sessions may hold when nothing else is configured:
/// ten messages of the default 50 MiB limit.
pub const DEFAULT_MESSAGE_MEMORY: usize = 512 << 20;

pub struct ServerShared {
    pub hostname: String,
    pub limits: Limits,
    pub client_networks: Vec<IpNet>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub spool: Arc<Spool>,
    pub bus: Arc<EventBus>,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// Becomes true when the engine shuts down: idle sessions close with
    /// 421, sessions inside a transaction finish it first.
    pub shutdown: watch::Receiver<bool>,
    /// Sessions waiting for the control plane's verdict at end of DATA;
    /// the same table across reloads (`CurrentShared`).
    pub verdicts: Arc<Verdicts>,
    /// How long a session waits for it; None: no synchronous verdicts.
    pub verdict_deadline: Option<std::time::Duration>,
    /// Which messages wait for it; None: all of them.
    pub verdict_screen: Option<VerdictScreen>,
    /// On a PostgreSQL store: every message waits this long for the
    /// control plane to store it (body included) before its 250
    /// (docs/cluster.md); None: the spool's fsync is enough (rule 9).
    pub store_ack: Option<std::time::Duration>,
    /// Whether new mail is taken (`intake.rs`); carried over by reloads.
    pub intake: Arc<super::Intake>,
    /// Ask the control plane at RCPT (only when envelope rules may refuse).
    pub rcpt_checks: bool,
    /// The content scanner for classification (issue 4).
    pub scanner: Option<Arc<mxg_classify::Scanner>>,
    /// Pauses new transactions while the control plane is behind; None: off.
    pub inflow: Option<super::Inflow>,
    /// Limits the transactions in the content phase at once; None: off.
    pub admission: Option<super::Admission>,
    /// Clients outside `client_networks` (ARCHITECTURE.md rule 7).
    pub outsiders: Outsiders,
    /// Message octets all sessions together may hold (rule 12b).
    pub memory: Arc<super::MemoryBudget>,
    /// Open sessions, counted across reloads: a session gives its slot
    /// back to the table it took it from.
    pub(super) connections: Arc<Mutex<Connections>>,
    /// Sessions and refusals, for the control plane's metrics; carried
    /// over by a reload.
    pub stats: Arc<Stats>,
}

/// What happens to a client outside `client_networks`. It may never relay
/// (rule 7); the question is whether it gets a session at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutsiderPolicy {
    /// `554 5.7.1` instead of the greeting, then the connection closes
    /// (RFC 5321 §3.1 allows a 554 greeting). The default: a gateway behind
    /// the organisation's own mail server has no business with anyone else,
    /// and outsiders holding sessions took the slots the internal server
    /// needs (issue 14: five addresses at 200 connections each filled all
    /// 1,000 and the internal server got 421).
    #[default]
    Refuse,
    /// A session that can only be refused at RCPT, within its own limit.
    Allow,
}

/// Outsiders' admission: the policy and, when allowed, their own number of
/// slots, never taken from the `max_connections` of the client networks.
#[derive(Debug, Clone, Copy)]
pub struct Outsiders {
    pub policy: OutsiderPolicy,
    pub max_connections: usize,
}

impl Default for Outsiders {
    fn default() -> Self {
        Self {
            policy: OutsiderPolicy::Refuse,
            max_connections: 50,
        }
    }
}

#[derive(Default)]
pub(super) struct Connections {
    /// Sessions of clients in `client_networks`.
    total: usize,
    /// Sessions of everyone else, counted apart.
    outsiders: usize,
    per_client: HashMap<IpAddr, usize>,
}

impl ServerShared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        hostname: String,
        limits: Limits,
        client_networks: Vec<IpNet>,
        tls: Option<Arc<rustls::ServerConfig>>,
        spool: Arc<Spool>,
        bus: Arc<EventBus>,
        max_connections: usize,
        max_connections_per_client: usize,
        shutdown: watch::Receiver<bool>,
        verdict_deadline: Option<std::time::Duration>,
        scanner: Option<Arc<mxg_classify::Scanner>>,
        rcpt_checks: bool,
    ) -> Self {
        Self {
            hostname,
            limits,
            client_networks,
            tls,
            spool,
            bus,
            max_connections,
            max_connections_per_client,
            shutdown,
            verdicts: Arc::default(),
            verdict_deadline,
            verdict_screen: None,
            store_ack: None,
            intake: Arc::default(),
            scanner,
            rcpt_checks,
            inflow: None,
            admission: None,
            outsiders: Outsiders::default(),
            memory: super::MemoryBudget::new(DEFAULT_MESSAGE_MEMORY),
            stats: Arc::default(),
            connections: Arc::default(),
        }
    }

    /// The sessions' memory budget for message octets (rule 12b).
    #[must_use]
    pub fn with_message_memory(mut self, bytes: usize) -> Self {
        self.memory = super::MemoryBudget::new(bytes);
        self
    }

    /// Counts sessions and refusals into the engine's `Stats`.
    #[must_use]
    pub fn with_stats(mut self, stats: Arc<Stats>) -> Self {
        self.stats = stats;
        self
    }

    /// Only messages the screen picks wait for a verdict.
    #[must_use]
    pub fn with_verdict_screen(mut self, screen: Option<VerdictScreen>) -> Self {
        self.verdict_screen = screen;
        self
    }

    /// Every message waits for the store's acknowledgement (`store_ack`).
    #[must_use]
    pub fn with_store_ack(mut self, wait: Option<std::time::Duration>) -> Self {
        self.store_ack = wait;
        self
    }

    /// New transactions pause while the control plane is behind.
    #[must_use]
    pub fn with_inflow(mut self, inflow: Option<super::Inflow>) -> Self {
        self.inflow = inflow;
        self
    }

    /// Transactions wait before the content phase while `limit` are in it.
    #[must_use]
    pub fn with_admission(mut self, admission: Option<super::Admission>) -> Self {
        self.admission = admission;
        self
    }

    /// How clients outside `client_networks` are admitted.
    #[must_use]
    pub fn with_outsiders(mut self, outsiders: Outsiders) -> Self {
        self.outsiders = outsiders;
        self
    }

    pub fn may_relay(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        self.client_networks.iter().any(|n| n.contains(&ip))
    }

    /// Takes a connection slot, or says why there is none. Client networks
    /// and outsiders have separate pools, so no number of outsiders can
    /// take a slot the internal server needs.
    fn admit(&self, ip: IpAddr, inside: bool) -> Result<(), (Refusal, Reply)> {
        if !inside && self.outsiders.policy == OutsiderPolicy::Refuse {
            return Err((
                Refusal::Outsider,
                Reply::new(
                    554,
                    "5.7.1",
                    format!(
                        "{} Access denied: client {ip} is not in client_networks",
                        self.hostname
                    ),
                ),
            ));
        }
        let mut c = self.connections.lock().expect("connection table poisoned");
        let (used, max) = if inside {
            (c.total, self.max_connections)
        } else {
            (c.outsiders, self.outsiders.max_connections)
        };
        if used >= max {
            return Err((
                Refusal::ConnectionLimit,
                Reply::new(
                    421,
                    "4.7.0",
                    format!("{} Too many connections, try again later", self.hostname),
                ),
            ));
        }
        let mine = c.per_client.entry(ip).or_default();
        if *mine >= self.max_connections_per_client {
            return Err((
                Refusal::ClientLimit,
                Reply::new(
                    421,
                    "4.7.0",
                    format!(
                        "{} Too many connections from your address, try again later",
                        self.hostname
                    ),
                ),
            ));
        }
        *mine += 1;
        if inside {
            c.total += 1;
        } else {
            c.outsiders += 1;
        }
        Ok(())
    }

    fn release(&self, ip: IpAddr, inside: bool) {
        let mut c = self.connections.lock().expect("connection table poisoned");
        if inside {
            c.total -= 1;
        } else {
            c.outsiders -= 1;
        }
        if let Some(n) = c.per_client.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                c.per_client.remove(&ip);
            }
        }
    }
}

/// Bound listening sockets, not yet accepting: the control plane drops
/// privileges between binding and serving (ARCHITECTURE.md rule 8).
pub struct Listeners(pub Vec<TcpListener>);

/// Binds every listen address; fails on the first that cannot be bound.
pub async fn bind(addrs: &[String]) -> Result<Listeners, EngineError> {
    let mut out = Vec::new();
    for addr in addrs {
        let sock: SocketAddr = addr
            .parse()
            .map_err(|e| EngineError::Config(format!("listen address {addr:?}: {e}")))?;
        let l = listen(sock).map_err(|source| EngineError::Bind {
            addr: addr.clone(),
            source,
        })?;
        out.push(l);
    }
    Ok(Listeners(out))
}

/// Connections the kernel queues for `accept` (capped by
/// net.core.somaxconn). The usual 128 is far too few for a relay: when a
/// thousand sessions connect at once (a mail server flushing its queue
/// after an outage) the rest of the SYNs are dropped, and their clients'
/// retries (1, 3, 7, 15, 31, 63 s) arrive together and overflow it again,
/// so some wait past a minute for the greeting.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As std and tokio do: a restart may bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

impl Listeners {
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.0.iter().filter_map(|l| l.local_addr().ok()).collect()
    }
}

/// Accepts until shutdown, then waits for the sessions to end. Each new
/// session gets the settings current when it connects (`CurrentShared`).
pub async fn serve(listeners: Listeners, current: Arc<super::CurrentShared>) {
    let mut shutdown = current.get().shutdown.clone();
    let mut sessions = JoinSet::new();
    let mut accepts = JoinSet::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(TcpStream, SocketAddr)>(64);
    for l in listeners.0 {
        let tx = tx.clone();
        accepts.spawn(async move {
            loop {
                match l.accept().await {
                    Ok(conn) => {
                        if tx.send(conn).await.is_err() {
                            return;
                        }
                    }
                    // EMFILE and friends: back off instead of spinning.
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                }
            }
        });
    }
    drop(tx);
    loop {
        tokio::select! {
            conn = rx.recv() => {
                let Some((stream, peer)) = conn else { break };
                sessions.spawn(handle(current.get(), stream, peer));
            }
            _ = shutdown.changed() => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    accepts.abort_all();
    while sessions.join_next().await.is_some() {}
}

async fn handle(shared: Arc<ServerShared>, mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let inside = shared.may_relay(peer.ip());
    // A draining node takes no new sessions (`intake.rs`); not a refusal
    // of the client, so neither counted nor logged per connection.
    if let Some(reply) = shared.intake.at_connect(&shared.hostname) {
        let _ = stream.write_all(&reply.to_wire()).await;
        return;
    }
    // A refusal instead of the greeting, then close. RFC 5321 §3.1 would
    // have the server wait for QUIT after a 554 greeting; waiting would
    // hand outsiders the connection slots again, so mxg closes, as it does
    // after a 421.
    if let Err((why, reply)) = shared.admit(peer.ip(), inside) {
        refusal::note(&shared.bus, &shared.stats, why, peer, Some(&reply), None);
        let _ = stream.write_all(&reply.to_wire()).await;
        return;
    }
    // One line per session, not per command: with the internal server's
    // connection reuse a few per second at the relay's full rate.
    shared.stats.session_opened();
    shared.bus.push(Event::log_with(
        "info",
        "inbound connect",
        vec![
            ("client".to_owned(), peer.ip().to_string()),
            ("port".to_owned(), peer.port().to_string()),
            (
                "relay".to_owned(),
                if inside { "allowed" } else { "denied" }.to_owned(),
            ),
        ],
    ));
    Session::new(shared.clone(), stream, peer).run().await;
    shared.stats.session_closed();
    shared.release(peer.ip(), inside);
}
