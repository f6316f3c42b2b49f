//! Results of a run: counters merged from all sessions, exact latency
//! percentiles, the JSON document and the one-line summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use serde_json::{json, Value};

/// What one session (or, merged, the whole run) counted. Each session owns
/// one, so the hot path takes no lock; they are merged once at the end.
#[derive(Debug, Default)]
pub struct Tally {
    /// Transactions started (MAIL written).
    pub sent: u64,
    /// Messages whose end of data got a 2xx.
    pub accepted: u64,
    /// Messages refused, by the reply code that refused them.
    pub refused: BTreeMap<u16, u64>,
    /// Recipients refused in transactions that still delivered the message.
    pub rcpts_refused: u64,
    /// Messages lost to connection failures and timeouts, including those a
    /// session never sent because it gave up.
    pub errors: u64,
    /// Connections that could not be opened (connect, greeting, EHLO) or
    /// were lost mid-transaction.
    pub connection_failures: u64,
    /// The first failure's text, to say why without a debugger.
    pub first_error: Option<String>,
    /// At least one transaction was pipelined (RFC 2920).
    pub pipelined: bool,
    /// Accept latency of each accepted message, in nanoseconds.
    pub latencies: Vec<u64>,
    /// Transaction latency (MAIL written to the final 2xx) of each accepted
    /// message, in nanoseconds.
    pub transactions: Vec<u64>,
    /// When the last reply to a message arrived.
    pub last_reply: Option<Instant>,
}

impl Tally {
    pub fn merge(&mut self, other: Tally) {
        self.sent += other.sent;
        self.accepted += other.accepted;
        for (code, n) in other.refused {
            *self.refused.entry(code).or_default() += n;
        }
        self.rcpts_refused += other.rcpts_refused;
        self.errors += other.errors;
        self.connection_failures += other.connection_failures;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.pipelined |= other.pipelined;
        self.latencies.extend(other.latencies);
        self.transactions.extend(other.transactions);
        self.last_reply = self.last_reply.max(other.last_reply);
    }

    pub fn fail(&mut self, error: &dyn std::fmt::Display) {
        self.connection_failures += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error.to_string());
        }
    }
}

/// Outcome of idle mode, one count per connection.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IdleTally {
    /// Reached the greeting and a 250 to EHLO (or HELO).
    pub ok: u64,
    /// Greeting or EHLO answered with this code (e.g. 421 "too many
    /// connections").
    pub refused: BTreeMap<u16, u64>,
    /// Connect failed, timed out, or the connection was closed early.
    pub failed: u64,
    /// Were `ok`, but did not answer QUIT after the hold (closed by the
    /// server in the meantime, e.g. an idle timeout).
    pub dropped: u64,
}

/// The whole run, ready to print.
#[derive(Debug)]
pub struct Report {
    pub server: String,
    /// Sessions (send mode) or connections (idle mode) used.
    pub connections: usize,
    /// Messages requested (0 in idle mode).
    pub messages: u64,
    pub tally: Tally,
    pub idle: Option<IdleTally>,
    /// Send mode: first connect to last reply to a message. Idle mode: the
    /// whole run, hold included.
    pub seconds: f64,
}

/// Accept latency summary, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    /// Exact figures over all samples (nanoseconds, sorted ascending).
    pub fn from_sorted(sorted: &[u64]) -> Option<Self> {
        let max = *sorted.last()?;
        let sum: u128 = sorted.iter().map(|&ns| u128::from(ns)).sum();
        Some(Self {
            p50: ms(percentile(sorted, 50)),
            p90: ms(percentile(sorted, 90)),
            p99: ms(percentile(sorted, 99)),
            max: ms(max),
            mean: ms((sum / sorted.len() as u128) as u64),
        })
    }
}

/// Nearest-rank percentile (the smallest sample with at least `p` % of all
/// samples at or below it): always a value that was measured, never an
/// interpolation. `sorted` must be non-empty and ascending.
pub fn percentile(sorted: &[u64], p: u64) -> u64 {
    let n = sorted.len() as u64;
    let rank = (p * n).div_ceil(100).clamp(1, n);
    // rank is at most the slice length, so it fits a usize.
    sorted[(rank - 1) as usize]
}

/// Nanoseconds to milliseconds, rounded to the microsecond.
fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e3).round() / 1e3
}

impl Report {
    /// Sorts the samples; percentiles need them in order.
    pub fn new(
        server: String,
        connections: usize,
        messages: u64,
        mut tally: Tally,
        idle: Option<IdleTally>,
        seconds: f64,
    ) -> Self {
        tally.latencies.sort_unstable();
        tally.transactions.sort_unstable();
        Self {
            server,
            connections,
            messages,
            tally,
            idle,
            seconds,
        }
    }

    pub fn latency(&self) -> Option<Latency> {
        Latency::from_sorted(&self.tally.latencies)
    }

    pub fn transaction(&self) -> Option<Latency> {
        Latency::from_sorted(&self.tally.transactions)
    }

    /// Accepted messages per second of wall time.
    pub fn msgs_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.tally.accepted as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub fn to_json(&self) -> Value {
        let t = &self.tally;
        let figures = |l: Option<Latency>| {
            l.map_or(
                Value::Null,
                |l| json!({"p50": l.p50, "p90": l.p90, "p99": l.p99, "max": l.max, "mean": l.mean}),
            )
        };
        let mut v = json!({
            "mode": if self.idle.is_some() { "idle" } else { "send" },
            "server": self.server,
            "connections": self.connections,
            "pipelined": t.pipelined,
            "messages": self.messages,
            "sent": t.sent,
            "accepted": t.accepted,
            "refused": by_code(&t.refused),
            "rcpts_refused": t.rcpts_refused,
            "errors": t.errors,
            "connection_failures": t.connection_failures,
            "first_error": t.first_error,
            "seconds": (self.seconds * 1e6).round() / 1e6,
            "msgs_per_s": (self.msgs_per_s() * 10.0).round() / 10.0,
            "latency_ms": figures(self.latency()),
            "transaction_ms": figures(self.transaction()),
        });
        if let Some(idle) = &self.idle {
            v["idle_ok"] = idle.ok.into();
            v["idle_refused"] = by_code(&idle.refused);
            v["idle_failed"] = idle.failed.into();
            v["idle_dropped"] = idle.dropped.into();
        }
        v
    }

    /// One human-readable line.
    pub fn summary(&self) -> String {
        if let Some(idle) = &self.idle {
            let mut s = format!(
                "idle {} connections to {}: {} ok, {} refused{}, {} failed, {} dropped; {:.2} s",
                self.connections,
                self.server,
                idle.ok,
                idle.refused.values().sum::<u64>(),
                codes(&idle.refused),
                idle.failed,
                idle.dropped,
                self.seconds
            );
            push_first_error(&mut s, self.tally.first_error.as_deref());
            return s;
        }
        let t = &self.tally;
        let mut s = format!(
            "{} messages over {} connections to {}: {} accepted, {} refused{}, {} errors \
             in {:.3} s = {:.1} msg/s",
            self.messages,
            self.connections,
            self.server,
            t.accepted,
            t.refused.values().sum::<u64>(),
            codes(&t.refused),
            t.errors,
            self.seconds,
            self.msgs_per_s()
        );
        if let Some(l) = self.latency() {
            let _ = write!(
                s,
                "; accept latency ms p50 {:.3} p90 {:.3} p99 {:.3} max {:.3} mean {:.3}",
                l.p50, l.p90, l.p99, l.max, l.mean
            );
        }
        if let Some(l) = self.transaction() {
            let _ = write!(s, "; transaction ms p50 {:.3} p99 {:.3}", l.p50, l.p99);
        }
        push_first_error(&mut s, t.first_error.as_deref());
        s
    }
}

/// `{"451": 3}`: JSON object keys are strings.
fn by_code(counts: &BTreeMap<u16, u64>) -> Value {
    counts
        .iter()
        .map(|(code, n)| (code.to_string(), Value::from(*n)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// ` (451: 3, 554: 1)`, or nothing.
fn codes(counts: &BTreeMap<u16, u64>) -> String {
    if counts.is_empty() {
        return String::new();
    }
    let list: Vec<String> = counts.iter().map(|(c, n)| format!("{c}: {n}")).collect();
    format!(" ({})", list.join(", "))
}

fn push_first_error(s: &mut String, error: Option<&str>) {
    if let Some(e) = error {
        let _ = write!(s, "; first error: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), 50);
        assert_eq!(percentile(&v, 90), 90);
        assert_eq!(percentile(&v, 99), 99);
        assert_eq!(percentile(&v, 100), 100);
        assert_eq!(percentile(&v, 0), 1);
        assert_eq!(percentile(&[7], 99), 7);
        // 10 samples: p50 is the 5th, p90 the 9th, p99 the 10th.
        let v: Vec<u64> = (1..=10).map(|x| x * 10).collect();
        assert_eq!(
            (percentile(&v, 50), percentile(&v, 90), percentile(&v, 99)),
            (50, 90, 100)
        );
        // 1000 samples: p99 is the 990th.
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 99), 990);
        assert_eq!(percentile(&[1, 2, 3], 50), 2);
    }

    #[test]
    fn latency_in_ms() {
        let v = [1_000_000, 2_000_000, 3_000_000, 10_000_500];
        let l = Latency::from_sorted(&v).unwrap();
        assert_eq!((l.p50, l.p90, l.p99, l.max), (2.0, 10.001, 10.001, 10.001));
        assert!((l.mean - 4.000_125).abs() < 1e-3, "{}", l.mean);
        assert!(Latency::from_sorted(&[]).is_none());
    }

    #[test]
    fn report_sorts_merges_and_serialises() {
        let mut first = Tally {
            accepted: 2,
            sent: 3,
            latencies: vec![3_000_000, 1_000_000],
            transactions: vec![9_000_000, 4_000_000],
            ..Tally::default()
        };
        first.refused.insert(451, 1);
        let mut second = Tally {
            accepted: 1,
            sent: 2,
            errors: 1,
            latencies: vec![2_000_000],
            transactions: vec![5_000_000],
            ..Tally::default()
        };
        second.refused.insert(451, 2);
        second.fail(&"connection closed by the server");
        first.merge(second);
        let report = Report::new("127.0.0.1:25".into(), 2, 6, first, None, 0.5);
        let v = report.to_json();
        assert_eq!(v["mode"], "send");
        assert_eq!(v["accepted"], 3);
        assert_eq!(v["refused"], json!({"451": 3}));
        assert_eq!(v["errors"], 1);
        assert_eq!(v["connection_failures"], 1);
        assert_eq!(v["msgs_per_s"], 6.0);
        assert_eq!(v["latency_ms"]["p50"], 2.0);
        assert_eq!(v["latency_ms"]["max"], 3.0);
        assert_eq!(v["transaction_ms"]["p50"], 5.0);
        assert_eq!(v["transaction_ms"]["max"], 9.0);
        assert!(v.get("idle_ok").is_none());
        let line = report.summary();
        assert!(line.contains("3 refused (451: 3)"), "{line}");
        assert!(line.contains("first error: connection closed"), "{line}");
    }

    #[test]
    fn idle_json() {
        let mut idle = IdleTally {
            ok: 3,
            failed: 1,
            ..IdleTally::default()
        };
        idle.refused.insert(421, 2);
        let r = Report::new("h:25".into(), 6, 0, Tally::default(), Some(idle), 1.0);
        let v = r.to_json();
        assert_eq!(v["mode"], "idle");
        assert_eq!(v["idle_ok"], 3);
        assert_eq!(v["idle_refused"], json!({"421": 2}));
        assert_eq!(v["idle_failed"], 1);
        assert_eq!(v["latency_ms"], Value::Null);
    }
}
