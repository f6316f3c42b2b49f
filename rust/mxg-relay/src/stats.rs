//! Counters of the data plane for the control plane's metrics
//! (`Engine::stats`, Prometheus at `/metrics`).
//!
//! Each is a relaxed atomic bumped where the event happens, once per
//! session or connection, never per command or message octet; nothing
//! waits on a lock for them. The control plane reads them when it is
//! scraped, so no event crosses the boundary just to be counted.

use crate::inbound::Refusal;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Stats {
    /// Inbound sessions that got a greeting (refused ones not included).
    sessions: AtomicU64,
    /// Inbound sessions open now.
    sessions_open: AtomicU64,
    /// Inbound refusals, indexed by `Refusal as usize`.
    refusals: [AtomicU64; Refusal::ALL.len()],
    /// Outbound connections opened (connected, greeted and at their
    /// level), and delivery jobs that took an idle one instead.
    connections_opened: AtomicU64,
    connections_reused: AtomicU64,
}

/// What `Stats::snapshot` reads, with the gauges the caller adds.
pub type Snapshot = Vec<(String, u64)>;

impl Stats {
    pub fn session_opened(&self) {
        self.sessions.fetch_add(1, Ordering::Relaxed);
        self.sessions_open.fetch_add(1, Ordering::Relaxed);
    }

    pub fn session_closed(&self) {
        self.sessions_open.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn refused(&self, why: Refusal) {
        self.refusals[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_opened(&self) {
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_reused(&self) {
        self.connections_reused.fetch_add(1, Ordering::Relaxed);
    }

    /// Every counter under its name: `inbound_sessions`,
    /// `inbound_sessions_open`, `inbound_refused:<reason>` (each reason,
    /// zeros included, so a dashboard has every series from the start),
    /// `outbound_connections_opened`, `outbound_connections_reused`.
    pub fn snapshot(&self) -> Snapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = vec![
            ("inbound_sessions".to_owned(), get(&self.sessions)),
            ("inbound_sessions_open".to_owned(), get(&self.sessions_open)),
            (
                "outbound_connections_opened".to_owned(),
                get(&self.connections_opened),
            ),
            (
                "outbound_connections_reused".to_owned(),
                get(&self.connections_reused),
            ),
        ];
        for why in Refusal::ALL {
            out.push((
                format!("inbound_refused:{}", why.as_str()),
                get(&self.refusals[why as usize]),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_its_own_counter_and_zeros_are_reported() {
        let stats = Stats::default();
        stats.session_opened();
        stats.session_opened();
        stats.session_closed();
        stats.refused(Refusal::RelayDenied);
        stats.refused(Refusal::RelayDenied);
        stats.refused(Refusal::Size);
        let snap: std::collections::HashMap<String, u64> = stats.snapshot().into_iter().collect();
        assert_eq!(snap["inbound_sessions"], 2);
        assert_eq!(snap["inbound_sessions_open"], 1);
        assert_eq!(snap["inbound_refused:relay-denied"], 2);
        assert_eq!(snap["inbound_refused:size"], 1);
        assert_eq!(snap["inbound_refused:tls-failure"], 0);
        assert_eq!(
            snap.keys()
                .filter(|k| k.starts_with("inbound_refused:"))
                .count(),
            Refusal::ALL.len()
        );
    }
}
