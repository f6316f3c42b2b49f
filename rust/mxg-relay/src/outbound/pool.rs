//! Per-destination state: the concurrency limit and idle connections kept
//! for the next message to the same destination under the same policy.

use super::conn::Conn;
use crate::config::OutboundConfig;
use crate::events::EventBus;
use crate::job::Host;
use crate::profile::TlsProfile;
use crate::stats::Stats;
use mxg_spool::Spool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

pub struct Destination {
    pub slots: Arc<Semaphore>,
    /// How many permits `slots` stands for: the limit when it was last
    /// set (`Client::set_max_per_destination`).
    limit: Mutex<usize>,
    idle: Mutex<Vec<Idle>>,
}

impl Destination {
    fn new(limit: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limit)),
            limit: Mutex::new(limit),
            idle: Mutex::default(),
        }
    }

    /// Sizes the slots for `limit`. A larger limit adds permits at once;
    /// a smaller one forgets the free permits and returns how many more
    /// must be taken back as connections in use end (the caller waits
    /// for them: `Client::shrink`), so the limit holds from then on.
    fn resize(&self, limit: usize) -> usize {
        let mut current = self.limit.lock().expect("limit poisoned");
        let mut excess = 0;
        if limit > *current {
            self.slots.add_permits(limit - *current);
        } else {
            excess = *current - limit;
            excess -= self.slots.forget_permits(excess);
        }
        *current = limit;
        excess
    }
}

struct Idle {
    conn: Conn,
    /// The job's transport requirement, serialised: a connection is only
    /// reused under exactly the policy it was verified for.
    policy: String,
    since: Instant,
}

pub struct Client {
    pub cfg: OutboundConfig,
    pub helo: String,
    /// Client TLS configurations: without a profile (opportunistic) and
    /// one per parameter profile.
    tls_any: Arc<rustls::ClientConfig>,
    tls_bsi: Arc<rustls::ClientConfig>,
    tls_modern: Arc<rustls::ClientConfig>,
    /// PKIX roots for `dnssec-pkix`: the system's and the operator's.
    pub roots: Arc<rustls::RootCertStore>,
    pub spool: Arc<Spool>,
    pub bus: Arc<EventBus>,
    /// Connections opened and reused, for the control plane's metrics.
    pub stats: Arc<Stats>,
    /// Connections at once to one destination: `cfg.max_per_destination`,
    /// or this node's share of it in a cluster (set by the control plane).
    per_destination: AtomicUsize,
    destinations: Mutex<HashMap<String, Arc<Destination>>>,
}

impl Client {
    pub fn new(
        cfg: OutboundConfig,
        hostname: &str,
        spool: Arc<Spool>,
        bus: Arc<EventBus>,
    ) -> Result<Self, crate::EngineError> {
        let helo = if cfg.helo_name.is_empty() {
            hostname.to_owned()
        } else {
            cfg.helo_name.clone()
        };
        let roots = crate::tls::root_store(cfg.ca_file.as_deref())?;
        let per_destination = AtomicUsize::new(cfg.max_per_destination.max(1));
        Ok(Self {
            roots,
            cfg,
            helo,
            tls_any: crate::tls::unauthenticated_client_config(None),
            tls_bsi: crate::tls::unauthenticated_client_config(Some(TlsProfile::BsiTr02102_2)),
            tls_modern: crate::tls::unauthenticated_client_config(Some(TlsProfile::Modern)),
            spool,
            bus,
            stats: Arc::default(),
            per_destination,
            destinations: Mutex::default(),
        })
    }

    /// Counts into the engine's `Stats`.
    #[must_use]
    pub fn with_stats(mut self, stats: Arc<Stats>) -> Self {
        self.stats = stats;
        self
    }

    /// Connections kept open for reuse now, over all destinations. Takes
    /// each destination's lock in turn: for a scrape, not the hot path.
    pub fn idle_connections(&self) -> usize {
        self.all_destinations()
            .iter()
            .map(|d| d.idle.lock().expect("idle list poisoned").len())
            .sum()
    }

    pub fn tls_config(&self, profile: Option<TlsProfile>) -> Arc<rustls::ClientConfig> {
        match profile {
            None => self.tls_any.clone(),
            Some(TlsProfile::BsiTr02102_2) => self.tls_bsi.clone(),
            Some(TlsProfile::Modern) => self.tls_modern.clone(),
        }
    }

    pub fn destination(&self, name: &str) -> Arc<Destination> {
        let mut map = self
            .destinations
            .lock()
            .expect("destination table poisoned");
        map.entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(Destination::new(
                    self.per_destination.load(Ordering::Relaxed),
                ))
            })
            .clone()
    }

    /// Changes the connections allowed at once per destination, for the
    /// destinations known and those to come. In a cluster each node gets
    /// its share of `max_per_destination`, which changes when nodes join
    /// or leave (docs/cluster.md). Returns, per destination, the permits
    /// still held by connections in use that `shrink` must take back.
    pub fn set_max_per_destination(&self, limit: usize) -> Vec<(Arc<Destination>, usize)> {
        let limit = limit.max(1);
        self.per_destination.store(limit, Ordering::Relaxed);
        self.all_destinations()
            .into_iter()
            .filter_map(|d| match d.resize(limit) {
                0 => None,
                excess => Some((d, excess)),
            })
            .collect()
    }

    /// Takes back `excess` permits of `dest` as its connections in use
    /// end, and forgets them: the smaller limit then holds. Semaphore
    /// waiters are served in order, so no new connection starts before.
    pub async fn shrink(dest: Arc<Destination>, excess: usize) {
        let Ok(n) = u32::try_from(excess) else {
            return;
        };
        if let Ok(permits) = dest.slots.clone().acquire_many_owned(n).await {
            permits.forget();
        }
    }

    /// An idle connection made under exactly `policy` to one of `hosts`
    /// (the job's current MX set: DNS may have changed since).
    pub fn take_idle(&self, dest: &Destination, policy: &str, hosts: &[Host]) -> Option<Conn> {
        let mut idle = dest.idle.lock().expect("idle list poisoned");
        let pos = idle.iter().rposition(|i| {
            i.policy == policy
                && hosts.iter().any(|h| {
                    h.name == i.conn.host
                        && h.addresses.contains(&i.conn.ip)
                        // A host that now publishes usable TLSA records
                        // needs a DANE-authenticated session.
                        && (i.conn.dane.is_some()
                            || !mxg_dane::usable(&h.tlsa))
                })
        })?;
        Some(idle.swap_remove(pos).conn)
    }

    /// Keeps a healthy connection for reuse, or closes it.
    pub async fn put_idle(&self, dest: &Destination, policy: String, conn: Conn) {
        if conn.broken
            || conn.messages >= self.cfg.max_messages_per_connection
            || self.cfg.idle_timeout_ms == 0
        {
            conn.quit().await;
            return;
        }
        dest.idle.lock().expect("idle list poisoned").push(Idle {
            conn,
            policy,
            since: Instant::now(),
        });
    }

    /// Every destination so far, taken out of the table's lock.
    fn all_destinations(&self) -> Vec<Arc<Destination>> {
        self.destinations
            .lock()
            .expect("destination table poisoned")
            .values()
            .cloned()
            .collect()
    }

    /// Closes connections idle longer than the configured time; run
    /// periodically by the engine.
    pub async fn sweep_idle(&self, all: bool) {
        let max_idle = Duration::from_millis(self.cfg.idle_timeout_ms);
        let mut expired = Vec::new();
        for d in self.all_destinations() {
            let mut idle = d.idle.lock().expect("idle list poisoned");
            let mut i = 0;
            while i < idle.len() {
                if all || idle[i].since.elapsed() >= max_idle {
                    expired.push(idle.swap_remove(i).conn);
                } else {
                    i += 1;
                }
            }
        }
        for conn in expired {
            conn.quit().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_larger_limit_adds_slots_at_once() {
        let dest = Destination::new(2);
        assert_eq!(dest.resize(5), 0);
        assert_eq!(dest.slots.available_permits(), 5);
    }

    #[tokio::test]
    async fn a_smaller_limit_holds_once_connections_in_use_end() {
        let dest = Arc::new(Destination::new(4));
        // Three connections in use, one slot free.
        let in_use = dest.slots.clone().acquire_many_owned(3).await.unwrap();
        // Down to 1: the free slot is forgotten at once, two more must
        // come back from the connections in use.
        let excess = dest.resize(1);
        assert_eq!(excess, 2);
        assert_eq!(dest.slots.available_permits(), 0);
        let shrink = tokio::spawn(Client::shrink(dest.clone(), excess));
        drop(in_use);
        shrink.await.unwrap();
        // One connection at a time from now on.
        assert_eq!(dest.slots.available_permits(), 1);
        let _one = dest.slots.clone().try_acquire_owned().unwrap();
        assert!(dest.slots.clone().try_acquire_owned().is_err());
    }
}
