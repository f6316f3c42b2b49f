//! The engine: one tokio runtime running the inbound server and the
//! outbound client, driven by the control plane through jobs and events.

use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::events::{Event, EventBus};
use crate::inbound::{self, CurrentShared, Listeners, ServerShared};
use crate::job::{DeliveryJob, ProbeJob};
use crate::outbound::{self, Client};
use crate::stats::Stats;
use mxg_spool::{new_queue_id, Envelope, Spool};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often idle outbound connections are checked for expiry.
const IDLE_SWEEP: Duration = Duration::from_secs(1);
/// Empty spool files kept ready, so that a burst of this many messages
/// does not allocate inodes inside the group commit (`mxg_spool::recycle`).
const SPARE_SPOOL_FILES: usize = 256;

pub struct Engine {
    rt: Mutex<Option<Runtime>>,
    handle: tokio::runtime::Handle,
    bus: Arc<EventBus>,
    spool: Arc<Spool>,
    client: Arc<Client>,
    shared: Arc<CurrentShared>,
    /// The STARTTLS certificate and key files loaded last.
    tls_files: Mutex<TlsFiles>,
    stats: Arc<Stats>,
    listeners: Mutex<Option<Listeners>>,
    local_addrs: Vec<SocketAddr>,
    shutdown_tx: watch::Sender<bool>,
    server: Mutex<Option<JoinHandle<()>>>,
    grace: Duration,
    stopped: AtomicBool,
}

impl Engine {
    /// Builds the runtime, opens the spool and binds the listeners. Nothing
    /// is accepted until `serve`, so the caller can drop privileges first.
    pub fn start(cfg: &EngineConfig) -> Result<Self, EngineError> {
        raise_open_files_limit();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .thread_name("mxg-engine")
            .enable_all()
            .build()?;
        let spool = Spool::open(&cfg.spool_dir)?;
        let bus = Arc::new(EventBus::new()?);
        let tls = server_tls(cfg)?;
        let listeners = rt.block_on(inbound::bind(&cfg.listen))?;
        let local_addrs = listeners.local_addrs();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(CurrentShared::new(
            server_shared(cfg, tls, spool.clone(), bus.clone(), shutdown_rx)?
                .with_stats(stats.clone()),
        ));
        let client = Arc::new(
            Client::new(
                cfg.outbound.clone(),
                &cfg.hostname,
                spool.clone(),
                bus.clone(),
            )?
            .with_stats(stats.clone()),
        );
        let sweeper = client.clone();
        rt.spawn(async move {
            loop {
                tokio::time::sleep(IDLE_SWEEP).await;
                sweeper.sweep_idle(false).await;
            }
        });
        Ok(Self {
            handle: rt.handle().clone(),
            rt: Mutex::new(Some(rt)),
            bus,
            spool,
            client,
            shared,
            tls_files: Mutex::new(tls_files(cfg)),
            stats,
            listeners: Mutex::new(Some(listeners)),
            local_addrs,
            shutdown_tx,
            server: Mutex::new(None),
            grace: Duration::from_millis(cfg.shutdown_grace_ms),
            stopped: AtomicBool::new(false),
        })
    }

    fn rt(&self) -> Result<&tokio::runtime::Handle, EngineError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(EngineError::Stopped);
        }
        Ok(&self.handle)
    }

    /// Addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Starts accepting connections.
    pub fn serve(&self) -> Result<(), EngineError> {
        let rt = self.rt()?;
        let Some(listeners) = self.listeners.lock().expect("poisoned").take() else {
            return Ok(());
        };
        // Leftovers of the last run are cleared and spare files made only
        // for a relay that accepts mail (not `mxg check`), and only after
        // privileges were dropped (rules 8, 8a): as the relay's own user, so
        // that a planted link cannot make root truncate or remove anything,
        // and the new files belong to that user.
        self.spool.tidy()?;
        self.spool.keep_free_files_stocked(SPARE_SPOOL_FILES)?;
        let shared = self.shared.clone();
        let handle = rt.spawn(inbound::serve(listeners, shared));
        *self.server.lock().expect("poisoned") = Some(handle);
        Ok(())
    }

    /// The data plane's counters and gauges by name (`crate::stats`), with
    /// `outbound_connections_idle`: read when the control plane is scraped.
    pub fn stats(&self) -> Vec<(String, u64)> {
        let mut out = self.stats.snapshot();
        out.push((
            "outbound_connections_idle".to_owned(),
            self.client.idle_connections() as u64,
        ));
        out
    }

    pub fn event_fd(&self) -> i32 {
        self.bus.fd()
    }

    pub fn drain(&self) -> Vec<Event> {
        self.bus.drain()
    }

    /// Starts a batch of delivery jobs: all of them, or none when one is
    /// malformed (so the control plane never loses track of a started job).
    pub fn submit(&self, jobs: Vec<DeliveryJob>) -> Result<(), EngineError> {
        let rt = self.rt()?;
        if let Some(job) = jobs.iter().find(|j| j.recipients.is_empty()) {
            return Err(EngineError::Job(format!(
                "job {} has no recipients",
                job.job_id
            )));
        }
        // A spawn from outside the runtime wakes a parked worker (a futex
        // call each); one wake per batch, and the jobs are spawned from
        // inside, onto that worker's queue, where idle workers steal them.
        let client = self.client.clone();
        rt.spawn(async move {
            for job in jobs {
                tokio::spawn(outbound::deliver(client.clone(), job));
            }
        });
        Ok(())
    }

    /// Hands verdicts to the sessions waiting for them; for each, whether
    /// its session still waited (false: it was accepted with 250 already).
    pub fn verdicts(&self, verdicts: Vec<inbound::Verdict>) -> Vec<bool> {
        verdicts
            .into_iter()
            .map(|v| self.shared.get().verdicts.give(v))
            .collect()
    }

    /// Opens, defers or closes the intake of new mail (`inbound::Intake`):
    /// `"open"`, `"defer"` (MAIL gets 451 4.3.0 with `text`) or `"closed"`
    /// (new connections and MAIL get 421 4.3.2 with `text`).
    pub fn set_intake(&self, mode: &str, text: &str) -> Result<(), EngineError> {
        self.rt()?;
        let mode = inbound::IntakeMode::parse(mode).ok_or_else(|| {
            EngineError::Job(format!(
                "intake mode {mode:?}: expected \"open\", \"defer\" or \"closed\""
            ))
        })?;
        self.shared.get().intake.set(mode, text);
        Ok(())
    }

    /// Connections at once per destination from now on: this node's share
    /// of `max_per_destination` in a cluster. A smaller limit holds for
    /// new connections at once and for all once those in use above it end.
    pub fn set_max_per_destination(&self, limit: usize) -> Result<(), EngineError> {
        let rt = self.rt()?;
        for (dest, excess) in self.client.set_max_per_destination(limit) {
            rt.spawn(outbound::Client::shrink(dest, excess));
        }
        Ok(())
    }

    /// Applies a new configuration (SIGHUP) to the sessions that start
    /// from now on (`inbound::CurrentShared`): limits, client networks,
    /// connection pools, inflow and admission, verdicts, the scanner and
    /// the STARTTLS certificate. The listen addresses, the spool, the
    /// outbound client and the shutdown grace stay as started; the control
    /// plane reports changes to those as needing a restart. An error leaves
    /// everything as it was. Returns notes for the log: a certificate that
    /// can no longer be read from unchanged paths (the relay's user may
    /// not read a key only root can) keeps the one loaded before.
    pub fn reload(&self, cfg: &EngineConfig) -> Result<Vec<String>, EngineError> {
        self.rt()?;
        let mut notes = Vec::new();
        let files = tls_files(cfg);
        let unchanged = *self.tls_files.lock().expect("poisoned") == files;
        let tls = match server_tls(cfg) {
            Ok(tls) => tls,
            Err(e) if unchanged => {
                notes.push(format!("kept the STARTTLS certificate loaded before: {e}"));
                self.shared.get().tls.clone()
            }
            Err(e) => return Err(e),
        };
        let next = server_shared(
            cfg,
            tls,
            self.spool.clone(),
            self.bus.clone(),
            self.shutdown_tx.subscribe(),
        )?;
        self.shared.replace(next);
        *self.tls_files.lock().expect("poisoned") = files;
        Ok(notes)
    }

    pub fn probe(&self, job: ProbeJob) -> Result<(), EngineError> {
        let rt = self.rt()?;
        rt.spawn(outbound::probe(self.client.clone(), job));
        Ok(())
    }

    pub fn spool(&self) -> &Arc<Spool> {
        &self.spool
    }

    /// Spools a message made by the control plane (a DSN) and returns its
    /// envelope with the new queue id; durable when this returns.
    pub fn inject(&self, mut envelope: Envelope, message: &[u8]) -> Result<Envelope, EngineError> {
        self.rt()?;
        envelope.queue_id = new_queue_id();
        envelope.size = message.len() as u64;
        // An 8-bit address travels only with SMTPUTF8 (RFC 6531 §3.4), and
        // the outbound client writes none without it (rule 12a): a DSN to
        // a UTF-8 sender would otherwise bounce instead of going out.
        envelope.smtputf8 |= !envelope.sender.is_ascii()
            || envelope.recipients.iter().any(|r| !r.address.is_ascii());
        self.spool.commit_blocking(&envelope, message)?;
        Ok(envelope)
    }

    /// Stops accepting, lets open transactions finish for the grace period,
    /// closes idle outbound connections and stops the runtime.
    pub fn shutdown(&self) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.shutdown_tx.send(true);
        self.spool.stop_stocking();
        let Some(rt) = self.rt.lock().expect("poisoned").take() else {
            return;
        };
        let server = self.server.lock().expect("poisoned").take();
        let client = self.client.clone();
        let grace = self.grace;
        rt.block_on(async move {
            if let Some(server) = server {
                let _ = tokio::time::timeout(grace, server).await;
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), client.sweep_idle(true)).await;
        });
        rt.shutdown_timeout(Duration::from_secs(1));
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

type TlsFiles = (Option<PathBuf>, Option<PathBuf>);

fn tls_files(cfg: &EngineConfig) -> TlsFiles {
    (cfg.tls_cert.clone(), cfg.tls_key.clone())
}

/// The inbound STARTTLS configuration; None when no certificate is set.
fn server_tls(cfg: &EngineConfig) -> Result<Option<Arc<rustls::ServerConfig>>, EngineError> {
    match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(crate::tls::server_config(cert, key)?)),
        _ => Ok(None),
    }
}

/// What the sessions share, as configured: built at start and again by
/// every reload.
fn server_shared(
    cfg: &EngineConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    spool: Arc<Spool>,
    bus: Arc<EventBus>,
    shutdown_rx: watch::Receiver<bool>,
) -> Result<ServerShared, EngineError> {
    let scanner = cfg
        .scan
        .as_ref()
        .map(mxg_classify::ScanOptions::compile)
        .transpose()
        .map_err(|e| EngineError::Config(format!("scan: {e}")))?
        .map(Arc::new);
    Ok(ServerShared::new(
        cfg.hostname.clone(),
        cfg.limits.to_limits(),
        cfg.client_networks.clone(),
        tls,
        spool,
        bus,
        cfg.max_connections,
        cfg.max_connections_per_client,
        shutdown_rx,
        (cfg.verdict_deadline_ms > 0).then(|| Duration::from_millis(cfg.verdict_deadline_ms)),
        scanner,
        cfg.rcpt_checks,
    )
    .with_verdict_screen(cfg.verdict_screen.clone())
    .with_store_ack(cfg.store_ack_ms.map(Duration::from_millis))
    .with_inflow((cfg.in_flow_delay_ms > 0).then(|| inbound::Inflow {
        limit: cfg.in_flow_limit,
        delay: Duration::from_millis(cfg.in_flow_delay_ms),
    }))
    .with_admission(
        (cfg.max_receiving > 0 && cfg.in_flow_delay_ms > 0).then(|| {
            inbound::Admission::new(
                cfg.max_receiving,
                Duration::from_millis(cfg.in_flow_delay_ms),
            )
        }),
    )
    .with_outsiders(inbound::Outsiders {
        policy: cfg.outsiders,
        max_connections: cfg.max_outsider_connections,
    })
    .with_message_memory(cfg.max_message_memory))
}

/// Raises the soft limit on open files to the hard limit: every session,
/// outbound connection and spool file is a descriptor, and the usual soft
/// limit of 1,024 is below the default `max_connections` plus the rest.
/// Best effort: the limits stay as they are when the call fails.
fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass; setrlimit only reads it.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim);
        }
    }
}
