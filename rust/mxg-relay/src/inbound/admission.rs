//! Admission to the content phase: at most `limit` transactions at once
//! read their content and wait for the durable commit; the next one waits
//! before its 354 (or before its first BDAT chunk is read), but never
//! longer than `delay`.
//!
//! Why a limit: the spool's group commit syncs every message that is ready,
//! so a few dozen in flight fill a commit as well as a thousand do. Beyond
//! that, more transactions in the content phase add only waiting: by
//! Little's law the time from the end of data to the 250 is the number in
//! flight over the rate, and each of them holds its body in memory. The
//! wait belongs before the 354: a sender whose end-of-data timeout fires
//! (RFC 5321 §4.5.3.2.6, ten minutes) does not know whether the message was
//! taken and may send it twice, while a wait before DATA costs nothing to
//! retry. Postfix behaves alike: its cleanup processes are limited, and
//! smtpd answers 354 only once it has one.
//!
//! Why a delay: a stalled client that holds a place must not hold the
//! others back. After `delay` a transaction goes ahead without a place, as
//! inflow control does (`Inflow`).

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone)]
pub struct Admission {
    places: Arc<Semaphore>,
    /// The longest wait for a place.
    delay: Duration,
}

/// A transaction's place in the content phase; given back when dropped.
/// `None` inside: it went ahead after the delay without one.
#[derive(Debug)]
pub struct Place(
    // Held only to be dropped: that gives the place back.
    #[allow(dead_code)] Option<OwnedSemaphorePermit>,
);

impl Admission {
    /// `limit` transactions in the content phase at once (at least one).
    pub fn new(limit: usize, delay: Duration) -> Self {
        Self {
            places: Arc::new(Semaphore::new(limit.max(1))),
            delay,
        }
    }

    /// Waits for a place, first come first served, at most `delay`.
    pub async fn enter(&self) -> Place {
        let wait = self.places.clone().acquire_owned();
        match tokio::time::timeout(self.delay, wait).await {
            Ok(Ok(permit)) => Place(Some(permit)),
            // Timed out, or (never here) the semaphore was closed.
            _ => Place(None),
        }
    }

    /// Places free right now.
    pub fn free(&self) -> usize {
        self.places.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn a_transaction_waits_for_a_place_but_no_longer_than_the_delay() {
        let admission = Admission::new(2, Duration::from_secs(1));
        let first = admission.enter().await;
        let second = admission.enter().await;
        assert!(first.0.is_some() && second.0.is_some());
        assert_eq!(admission.free(), 0);

        // The third waits until a place is given back.
        let started = Instant::now();
        let waiting = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.enter().await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(first);
        let third = waiting.await.expect("third");
        assert!(third.0.is_some(), "got the place given back");
        assert_eq!(started.elapsed(), Duration::from_millis(300));

        // Nobody gives one back: after the delay it goes ahead without.
        let started = Instant::now();
        let fourth = admission.enter().await;
        assert!(fourth.0.is_none());
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        drop((second, third, fourth));
        assert_eq!(
            admission.free(),
            2,
            "places without a permit give none back"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn places_go_first_come_first_served() {
        let admission = Admission::new(1, Duration::from_secs(10));
        let held = admission.enter().await;
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for n in 0..3 {
            let (admission, order) = (admission.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let place = admission.enter().await;
                order.lock().expect("order").push(n);
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(place);
            }));
            // Each is queued before the next arrives.
            tokio::task::yield_now().await;
        }
        drop(held);
        for w in waiters {
            w.await.expect("waiter");
        }
        assert_eq!(*order.lock().expect("order"), vec![0, 1, 2]);
    }
}
