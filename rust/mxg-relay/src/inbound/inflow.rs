//! Inflow control: a session pauses before a new transaction while the
//! control plane is behind, like Postfix's `in_flow_delay`.
//!
//! The data plane accepts mail faster than the control plane can index,
//! classify and hand it out. Unchecked, the difference piles up as spool
//! files (each new one an inode to allocate, each in a larger queue
//! directory) and as ever larger event batches. So when more received
//! messages wait undrained on the event bus than `limit`, a new MAIL waits
//! until the control plane takes the next batch, but never longer than
//! `delay`: after that it goes ahead, as Postfix does. The pause comes
//! before the transaction, so a client's end-of-DATA latency is untouched.

use crate::events::EventBus;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Inflow {
    /// Received messages the control plane has not drained yet, above which
    /// new transactions pause.
    pub limit: usize,
    /// The longest pause per transaction.
    pub delay: Duration,
}

impl Inflow {
    pub fn is_behind(&self, bus: &EventBus) -> bool {
        bus.undrained_messages() >= self.limit
    }

    /// Waits until the control plane drains the bus below the limit, or
    /// `delay` passed; true when it caught up in time.
    pub async fn pause(&self, bus: &EventBus) -> bool {
        let deadline = Instant::now() + self.delay;
        loop {
            // Registered before the check, so a drain in between is seen.
            let drained = bus.drained();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if !self.is_behind(bus) {
                return true;
            }
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;
    use std::sync::Arc;

    fn received(bus: &EventBus) {
        let envelope: mxg_spool::Envelope = serde_json::from_value(serde_json::json!({
            "queue_id": "Q", "received_ms": 0, "sender": "a@b.test",
            "recipients": [{"address": "c@d.test"}], "origin": "smtp", "size": 1
        }))
        .expect("envelope");
        bus.push(Event::Received {
            envelope,
            features: serde_json::Value::Null,
        });
    }

    #[tokio::test(start_paused = true)]
    async fn a_transaction_waits_for_the_next_drain_but_no_longer_than_the_delay() {
        let bus = Arc::new(EventBus::new().expect("bus"));
        let inflow = Inflow {
            limit: 2,
            delay: Duration::from_secs(1),
        };
        received(&bus);
        assert!(!inflow.is_behind(&bus));
        assert!(inflow.pause(&bus).await, "below the limit: no pause");
        received(&bus);
        assert!(inflow.is_behind(&bus));
        // Log events do not count, only messages.
        bus.push(Event::log("info", "x"));
        assert_eq!(bus.undrained_messages(), 2);

        let drainer = bus.clone();
        let started = Instant::now();
        let drain = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drainer.drain()
        });
        assert!(inflow.pause(&bus).await, "released by the drain");
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        assert_eq!(drain.await.expect("drain").len(), 3);

        received(&bus);
        received(&bus);
        let started = Instant::now();
        assert!(!inflow.pause(&bus).await, "nobody drains: goes ahead");
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }
}
