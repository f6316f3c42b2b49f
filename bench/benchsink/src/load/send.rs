//! Send mode: concurrent sessions, each sending its share of the messages
//! one after another on one connection, reconnecting only after a failure.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::client::{self, Client};
use super::report::Tally;
use super::txn::{self, Outcome, Plan, Scratch, CLOSING};

/// A session gives up after this many failures in a row (connections that
/// could not be opened or were lost) and counts its remaining messages as
/// errors: a server that is down should end the run, not stall it.
const MAX_FAILURES: u32 = 3;

/// Pause before reopening after a failed open, times the failures so far,
/// so a refusing server is not hammered.
const BACKOFF: Duration = Duration::from_millis(100);

/// How sessions reach the servers.
pub struct Target {
    /// Session `i` connects to `addrs[i % addrs.len()]`: the load of a
    /// cluster's nodes, spread evenly.
    pub addrs: Vec<SocketAddr>,
    pub helo: String,
    pub timeout: Duration,
}

impl Target {
    /// The server of session `i` (0-based).
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.addrs[i % self.addrs.len()]
    }
}

/// Sends messages `1..=messages` over `sessions` concurrent sessions and
/// returns the merged tally.
pub async fn run(target: Arc<Target>, plan: Arc<Plan>, messages: u64, sessions: usize) -> Tally {
    let tasks: Vec<_> = shares(messages, sessions)
        .into_iter()
        .enumerate()
        .map(|(i, share)| {
            let (target, plan) = (Arc::clone(&target), Arc::clone(&plan));
            tokio::spawn(async move { session(&target, i, &plan, share).await })
        })
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        match task.await {
            Ok(tally) => total.merge(tally),
            // A session cannot panic short of a bug; say so rather than
            // report a run with messages missing.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    total
}

/// Splits messages `1..=messages` into contiguous ranges, one per session,
/// sizes differing by at most one; no empty ranges.
pub fn shares(messages: u64, sessions: usize) -> Vec<Range<u64>> {
    let sessions = (sessions as u64).clamp(1, messages.max(1));
    let (base, extra) = (messages / sessions, messages % sessions);
    let mut next = 1;
    (0..sessions)
        .map(|i| {
            let len = base + u64::from(i < extra);
            let range = next..next + len;
            next += len;
            range
        })
        .filter(|r| !r.is_empty())
        .collect()
}

async fn session(target: &Target, i: usize, plan: &Plan, share: Range<u64>) -> Tally {
    let mut tally = Tally::default();
    let mut conn: Option<Client<TcpStream>> = None;
    let mut scratch = Scratch::default();
    let mut failures = 0;
    let mut n = share.start;
    while n < share.end {
        if failures >= MAX_FAILURES {
            tally.errors += share.end - n;
            break;
        }
        let client = if let Some(c) = conn.as_mut() {
            c
        } else {
            match client::open(target.addr(i), &target.helo, target.timeout).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    tally.fail(&e);
                    failures += 1;
                    if failures < MAX_FAILURES {
                        tokio::time::sleep(BACKOFF * failures).await;
                    }
                    continue;
                }
            }
        };
        tally.sent += 1;
        tally.pipelined |= plan.pipelining && client.pipelining();
        match txn::run(client, plan, n, &mut scratch).await {
            Ok(outcome) => {
                failures = 0;
                tally.last_reply = Some(Instant::now());
                match outcome {
                    Outcome::Accepted {
                        latency,
                        transaction,
                        rcpts_refused,
                    } => {
                        tally.accepted += 1;
                        tally.rcpts_refused += rcpts_refused;
                        tally.latencies.push(latency.as_nanos() as u64);
                        tally.transactions.push(transaction.as_nanos() as u64);
                    }
                    Outcome::Refused(code) => {
                        *tally.refused.entry(code).or_default() += 1;
                        if code == CLOSING {
                            conn = None;
                        }
                    }
                }
            }
            Err(e) => {
                // The message in flight is lost; the next one goes out on
                // a new connection.
                tally.errors += 1;
                tally.fail(&e);
                failures += 1;
                conn = None;
            }
        }
        n += 1;
    }
    if let Some(c) = conn {
        // Not part of any message's figures; a failure here changes nothing.
        let _ = c.quit().await;
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::shares;

    #[test]
    fn even_shares() {
        assert_eq!(shares(10, 3), vec![1..5, 5..8, 8..11]);
        assert_eq!(shares(2, 5), vec![1..2, 2..3]);
        assert_eq!(
            shares(200, 10).iter().map(|r| r.end - r.start).sum::<u64>(),
            200
        );
        assert!(shares(0, 4).is_empty());
    }
}
