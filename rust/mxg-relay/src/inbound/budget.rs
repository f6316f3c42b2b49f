//! The sessions' memory budget: how many message octets all inbound
//! sessions together may hold in memory (issue 14 item 4; ARCHITECTURE.md
//! rule 12b).
//!
//! Each session's message grows in memory while it is read (DATA) or
//! gathered (BDAT chunks), up to `max_message_size`; with 1,000 sessions
//! that bound alone is 50 GB. A session takes a `Share` of the budget as
//! its message grows; when the budget is spent, the session stops keeping
//! octets, reads the rest off the wire (to stay in step with the client)
//! and answers `452 4.3.1`, so the client tries again later. The share
//! goes back when the message is stored or dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug)]
pub struct MemoryBudget {
    /// Changed by a configuration reload; shares already taken stay.
    limit: AtomicUsize,
    held: AtomicUsize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit: AtomicUsize::new(limit),
            held: AtomicUsize::new(0),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// A new limit (a reload): what sessions hold now stays theirs, and
    /// new growth is measured against the new limit.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Octets held by all sessions now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

/// One session's part of the budget, returned when dropped.
#[derive(Debug)]
pub struct Share {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl Share {
    pub fn new(budget: Arc<MemoryBudget>) -> Self {
        Self { budget, bytes: 0 }
    }

    /// Grows this share to `total` octets; false, and nothing taken, when
    /// that would pass the budget.
    pub fn grow_to(&mut self, total: usize) -> bool {
        let Some(more) = total.checked_sub(self.bytes).filter(|&m| m > 0) else {
            return true;
        };
        let limit = self.budget.limit();
        let taken = self
            .budget
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(more).filter(|&h| h <= limit)
            });
        if taken.is_ok() {
            self.bytes = total;
        }
        taken.is_ok()
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_12b_shares_never_pass_the_budget_and_come_back_when_dropped() {
        let budget = MemoryBudget::new(100);
        let mut a = Share::new(budget.clone());
        let mut b = Share::new(budget.clone());
        assert!(a.grow_to(60));
        assert!(!b.grow_to(41));
        assert!(b.grow_to(40));
        assert_eq!(budget.held(), 100);
        assert!(a.grow_to(30)); // shrinking is not a thing: nothing changes
        assert_eq!(budget.held(), 100);
        drop(a);
        assert_eq!(budget.held(), 40);
        assert!(b.grow_to(100));
        drop(b);
        assert_eq!(budget.held(), 0);
    }
}
