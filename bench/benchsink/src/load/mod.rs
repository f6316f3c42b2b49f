//! `mxg-benchload`: the sending side of the benchmarks.
//!
//! The benchmark sends the same load to mxg and to Postfix and reports the
//! accept latency the senders see (p50/p99) beside messages per second.
//! Postfix's smtp-source measures no latency, hence this generator. The
//! latency of a message runs from just before the final `.` of its data is
//! written to the end of the 250 reply: the time a sender waits once it has
//! said everything, which for a relay is mostly its durable commit
//! (ARCHITECTURE.md rule 9).
//!
//! Two modes: *send* (`C` sessions share `N` messages, each session sending
//! its share one after another on one connection) and *idle* (open `N`
//! sessions at once, hold them, QUIT). The binary only adds argument
//! parsing, the open-files limit and output; [`run`] is the entry point the
//! tests drive.

pub mod cli;
pub mod client;
pub mod date;
pub mod envelope;
pub mod idle;
pub mod message;
pub mod report;
pub mod rlimit;
pub mod send;
pub mod txn;

use std::io;
use std::sync::Arc;
use std::time::Instant;

pub use cli::{Idle, Options};
pub use envelope::Recipients;
pub use report::{Latency, Report};

use message::Generator;
use report::Tally;
use send::Target;
use txn::Plan;

/// Runs the load the options describe and returns its figures. Connection
/// failures and refusals are results, not errors; only bad options or an
/// unresolvable server name are.
pub async fn run(opts: &Options) -> io::Result<Report> {
    opts.check()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // Resolved once, so reconnects and a thousand idle sessions do not each
    // cost a lookup, and all of them reach the same addresses.
    let mut addrs = Vec::with_capacity(opts.servers.len());
    for server in &opts.servers {
        let addr = tokio::net::lookup_host(server)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("{server}: {e}")))?
            .next()
            .ok_or_else(|| io::Error::other(format!("{server}: no address")))?;
        addrs.push(addr);
    }
    let target = Arc::new(Target {
        addrs,
        helo: opts.helo.clone(),
        timeout: opts.timeout,
    });
    let server = opts.servers.join(",");
    if let Some(idle) = opts.idle {
        let start = Instant::now();
        let (counts, tally) = idle::run(target, idle.connections, idle.hold).await;
        let seconds = start.elapsed().as_secs_f64();
        return Ok(Report::new(
            server,
            idle.connections,
            0,
            tally,
            Some(counts),
            seconds,
        ));
    }
    let plan = Arc::new(Plan {
        from: opts.from.clone(),
        recipients: opts.recipients.clone(),
        generator: Generator::new(&opts.from, &opts.helo, opts.size),
        pipelining: opts.pipelining,
    });
    let sessions = send::shares(opts.messages, opts.connections).len();
    let start = Instant::now();
    let tally: Tally = send::run(target, plan, opts.messages, opts.connections).await;
    // First connect to last reply: the sessions' QUITs are not the load.
    let seconds = tally
        .last_reply
        .map_or_else(|| start.elapsed(), |last| last - start)
        .as_secs_f64();
    Ok(Report::new(
        server,
        sessions,
        opts.messages,
        tally,
        None,
        seconds,
    ))
}
