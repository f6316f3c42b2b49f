//! Settings replaced at runtime (SIGHUP, `Engine::reload`): limits, client
//! networks, connection pools, inflow and admission, verdicts and the
//! content scanner, and the STARTTLS certificate.
//!
//! A reload builds a whole new `ServerShared` and swaps it in. A session
//! takes the generation current when it connects and keeps it to its end,
//! so a session open at the reload finishes under the settings it started
//! with, and the next one gets the new ones; nothing is torn down. What
//! must outlive a generation is carried over: the table of open
//! connections (each session gives its slot back where it took it), the
//! sessions waiting for verdicts, the intake gate, the memory budget with the octets
//! sessions hold (its limit changes, the shares taken stay), and the
//! counters of sessions and refusals (`crate::stats`).

use super::listener::ServerShared;
use std::sync::{Arc, RwLock};

/// The generation of `ServerShared` that new sessions get.
pub struct CurrentShared(RwLock<Arc<ServerShared>>);

impl CurrentShared {
    pub fn new(shared: ServerShared) -> Self {
        Self(RwLock::new(Arc::new(shared)))
    }

    /// The current generation: one read lock and a reference count per
    /// new connection.
    pub fn get(&self) -> Arc<ServerShared> {
        self.0.read().expect("settings lock poisoned").clone()
    }

    /// Swaps in `next`, carrying over what outlives a generation from the
    /// current one.
    pub fn replace(&self, next: ServerShared) {
        let mut current = self.0.write().expect("settings lock poisoned");
        *current = Arc::new(next.carry_over(&current));
    }
}

impl ServerShared {
    /// `self` with the state of `previous` that must outlive a reload.
    #[must_use]
    fn carry_over(mut self, previous: &ServerShared) -> Self {
        self.connections = previous.connections.clone();
        self.stats = previous.stats.clone();
        self.verdicts = previous.verdicts.clone();
        self.intake = previous.intake.clone();
        let limit = self.memory.limit();
        self.memory = previous.memory.clone();
        self.memory.set_limit(limit);
        self
    }
}
