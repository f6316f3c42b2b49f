//! Idle mode: many concurrent sessions that greet and then say nothing,
//! to see how many a server will hold open (connection limits, memory per
//! connection) without any mail flowing.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::client::{self, OpenError};
use super::report::{IdleTally, Tally};
use super::send::Target;

/// How one connection's opening went.
enum Opened {
    Ok,
    Refused(u16),
    Failed(String),
}

/// Opens `connections` sessions at once, holds them for `hold` once all
/// have been tried, then QUITs those that opened. The returned tally's only
/// use is `first_error`.
pub async fn run(target: Arc<Target>, connections: usize, hold: Duration) -> (IdleTally, Tally) {
    let (opened_tx, mut opened_rx) = mpsc::unbounded_channel();
    let (release_tx, release_rx) = watch::channel(false);
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            let (target, opened, mut release) =
                (Arc::clone(&target), opened_tx.clone(), release_rx.clone());
            tokio::spawn(async move {
                let addr = target.addr(i);
                let client = match client::open(addr, &target.helo, target.timeout).await {
                    Ok(c) => c,
                    Err(OpenError::Refused(code)) => {
                        let _ = opened.send(Opened::Refused(code));
                        return false;
                    }
                    Err(OpenError::Io(e)) => {
                        let _ = opened.send(Opened::Failed(e.to_string()));
                        return false;
                    }
                };
                let _ = opened.send(Opened::Ok);
                // The report channel closes when every task has let go of
                // it, which is how the caller knows all have been tried.
                drop(opened);
                let _ = release.wait_for(|&go| go).await;
                // Still there if it answers QUIT with 221.
                matches!(client.quit().await, Ok(221))
            })
        })
        .collect();
    drop(opened_tx);

    let mut idle = IdleTally::default();
    let mut tally = Tally::default();
    while let Some(opened) = opened_rx.recv().await {
        match opened {
            Opened::Ok => idle.ok += 1,
            Opened::Refused(code) => *idle.refused.entry(code).or_default() += 1,
            Opened::Failed(e) => {
                idle.failed += 1;
                tally.fail(&e);
            }
        }
    }
    tokio::time::sleep(hold).await;
    let _ = release_tx.send(true);
    let mut still_there = 0;
    for task in tasks {
        match task.await {
            Ok(true) => still_there += 1,
            Ok(false) => {}
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    idle.dropped = idle.ok - still_there;
    (idle, tally)
}
