//! Drives the load generator in-process over loopback: against the crate's
//! own sink (send and idle mode, counters on both sides must agree) and
//! against small misbehaving servers (connections lost mid-run, silence,
//! refusal).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mxg_benchsink::load::{self, Idle, Options, Recipients};
use mxg_benchsink::{bind, serve, Settings, Snapshot, Stats};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Starts the sink on an ephemeral loopback port.
fn start_sink() -> (SocketAddr, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    let listener = bind(&["127.0.0.1:0".parse().unwrap()])
        .unwrap()
        .pop()
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = Arc::new(Settings {
        hostname: "sink.test".into(),
        tls: None,
        reply_delay: Duration::ZERO,
        stats: Arc::clone(&stats),
    });
    tokio::spawn(serve(listener, settings));
    (addr, stats)
}

fn options(addr: SocketAddr) -> Options {
    Options {
        servers: vec![addr.to_string()],
        recipients: Recipients::Fixed(vec!["rcpt@dest.test".into()]),
        timeout: Duration::from_secs(10),
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_to_sink() {
    let (addr, stats) = start_sink();
    let opts = Options {
        messages: 200,
        connections: 10,
        size: 5120,
        recipients: Recipients::Generated {
            per_message: 3,
            domains: vec!["a.test".into(), "b.test".into()],
        },
        pipelining: true,
        ..options(addr)
    };
    let r = load::run(&opts).await.unwrap();
    let t = &r.tally;
    assert_eq!(
        (t.sent, t.accepted, t.errors),
        (200, 200, 0),
        "{}",
        r.summary()
    );
    assert!(t.refused.is_empty() && t.rcpts_refused == 0);
    assert_eq!(t.connection_failures, 0);
    assert!(t.pipelined);
    assert_eq!(t.latencies.len(), 200);
    assert_eq!(r.connections, 10);
    assert!(r.seconds > 0.0 && r.msgs_per_s() > 0.0);
    let l = r.latency().unwrap();
    assert!(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max);

    // The sessions' QUITs are answered before their tasks end, so the
    // sink has counted everything by now.
    assert_eq!(
        stats.snapshot(),
        Snapshot {
            messages: 200,
            recipients: 600,
            connections: 10,
            tls_connections: 0
        }
    );
    let v = r.to_json();
    assert_eq!(v["accepted"], 200);
    assert_eq!(v["refused"], serde_json::json!({}));
    assert!(v["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
}

/// Two servers (a cluster's nodes): the sessions alternate between them,
/// so each gets half the sessions and their messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_spread_over_servers() {
    let (a, stats_a) = start_sink();
    let (b, stats_b) = start_sink();
    let opts = Options {
        messages: 100,
        connections: 4,
        pipelining: true,
        servers: vec![a.to_string(), b.to_string()],
        ..options(a)
    };
    let r = load::run(&opts).await.unwrap();
    assert_eq!(
        (r.tally.accepted, r.tally.errors),
        (100, 0),
        "{}",
        r.summary()
    );
    assert_eq!(r.server, format!("{a},{b}"));
    for stats in [stats_a, stats_b] {
        let s = stats.snapshot();
        assert_eq!((s.messages, s.connections), (50, 2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockstep_to_sink() {
    let (addr, stats) = start_sink();
    let opts = Options {
        messages: 20,
        connections: 3,
        recipients: Recipients::Fixed(vec!["a@x.test".into(), "b@y.test".into()]),
        ..options(addr)
    };
    let r = load::run(&opts).await.unwrap();
    assert_eq!(
        (r.tally.accepted, r.tally.errors),
        (20, 0),
        "{}",
        r.summary()
    );
    assert!(!r.tally.pipelined);
    let s = stats.snapshot();
    assert_eq!((s.messages, s.recipients, s.connections), (20, 40, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_against_sink() {
    let (addr, stats) = start_sink();
    let opts = Options {
        idle: Some(Idle {
            connections: 50,
            hold: Duration::from_millis(300),
        }),
        ..options(addr)
    };
    let r = load::run(&opts).await.unwrap();
    let idle = r.idle.as_ref().unwrap();
    assert_eq!(
        (idle.ok, idle.failed, idle.dropped),
        (50, 0, 0),
        "{}",
        r.summary()
    );
    assert!(idle.refused.is_empty());
    assert!(r.seconds >= 0.3);
    assert_eq!(stats.snapshot().connections, 50);
    assert_eq!(stats.snapshot().messages, 0);
    let v = r.to_json();
    assert_eq!(v["mode"], "idle");
    assert_eq!(v["idle_ok"], 50);
}

/// How a [`Flaky`] server misbehaves.
#[derive(Clone, Copy)]
enum Fault {
    /// Closes the connection instead of answering every `k`-th message's
    /// end of data (counted over the whole server).
    DropEvery(u64),
    /// Greets and answers EHLO, then never answers again.
    Mute,
    /// Greets with this code and closes.
    Greeting(u16),
    /// Offers PIPELINING; refuses recipient `u<n>-1` always and `u<n>-0`
    /// when 4 divides n, and the end of data when 3 divides n.
    Refusals,
}

/// A deliberately small line-by-line SMTP server that misbehaves as told. Returns its address and a counter
/// of connections accepted.
async fn flaky(fault: Fault) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicU64::new(0));
    let messages = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&connections);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::Relaxed);
            let messages = Arc::clone(&messages);
            tokio::spawn(async move {
                let _ = flaky_session(stream, fault, &messages).await;
            });
        }
    });
    (addr, connections)
}

async fn flaky_session(
    stream: TcpStream,
    fault: Fault,
    messages: &AtomicU64,
) -> std::io::Result<()> {
    let mut io = BufReader::new(stream);
    if let Fault::Greeting(code) = fault {
        io.get_mut()
            .write_all(format!("{code} go away\r\n").as_bytes())
            .await?;
        return Ok(());
    }
    io.get_mut().write_all(b"220 flaky\r\n").await?;
    let mut line = String::new();
    let mut in_data = false;
    // Refusals: the message number from the recipients, and whether any
    // recipient of the open transaction was accepted.
    let (mut n, mut any_rcpt) = (0, false);
    loop {
        line.clear();
        if io.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let reply: &[u8] = if in_data {
            if line != ".\r\n" {
                continue;
            }
            in_data = false;
            let seq = messages.fetch_add(1, Ordering::Relaxed) + 1;
            match fault {
                Fault::DropEvery(k) if seq.is_multiple_of(k) => return Ok(()),
                Fault::Refusals if n % 3 == 0 => b"451 try later\r\n",
                _ => b"250 queued\r\n",
            }
        } else {
            match &line.get(..4).unwrap_or_default().to_ascii_uppercase()[..] {
                "EHLO" if matches!(fault, Fault::Refusals) => b"250-flaky\r\n250 PIPELINING\r\n",
                "EHLO" => b"250-flaky\r\n250 8BITMIME\r\n",
                _ if matches!(fault, Fault::Mute) => continue,
                "RCPT" if matches!(fault, Fault::Refusals) => {
                    // RCPT TO:<u<n>-<i>@domain>
                    let (num, i) = line[10..line.find('@').unwrap()].split_once('-').unwrap();
                    n = num.parse::<u64>().unwrap();
                    if i == "0" && n % 4 != 0 {
                        any_rcpt = true;
                        b"250 ok\r\n"
                    } else {
                        b"550 no such user\r\n"
                    }
                }
                "MAIL" | "RCPT" | "RSET" => {
                    any_rcpt = false;
                    b"250 ok\r\n"
                }
                "DATA" if matches!(fault, Fault::Refusals) && !any_rcpt => {
                    b"554 no valid recipients\r\n"
                }
                "DATA" => {
                    in_data = true;
                    b"354 go\r\n"
                }
                "QUIT" => {
                    io.get_mut().write_all(b"221 bye\r\n").await?;
                    return Ok(());
                }
                _ => b"502 what\r\n",
            }
        };
        io.get_mut().write_all(reply).await?;
    }
}

/// RCPT and end-of-data refusals are counted by code, pipelined or not,
/// and the session stays usable after each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_by_code() {
    for pipelining in [true, false] {
        let (addr, connections) = flaky(Fault::Refusals).await;
        let opts = Options {
            messages: 12,
            connections: 1,
            recipients: Recipients::Generated {
                per_message: 2,
                domains: vec!["d.test".into()],
            },
            pipelining,
            ..options(addr)
        };
        let r = load::run(&opts).await.unwrap();
        let t = &r.tally;
        // Every second recipient is refused; messages 4, 8, 12 lose both
        // (550), messages 3, 6, 9 get 451 at the end of data.
        assert_eq!(
            (t.sent, t.accepted, t.errors),
            (12, 6, 0),
            "{}",
            r.summary()
        );
        assert_eq!(t.rcpts_refused, 6);
        assert_eq!(
            r.to_json()["refused"],
            serde_json::json!({"451": 3, "550": 3})
        );
        assert_eq!(t.pipelined, pipelining);
        assert_eq!(t.latencies.len(), 6);
        assert_eq!(connections.load(Ordering::Relaxed), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_lost_connection() {
    let (addr, connections) = flaky(Fault::DropEvery(3)).await;
    let opts = Options {
        messages: 9,
        connections: 1,
        pipelining: true, // not offered: lock-step it is
        ..options(addr)
    };
    let r = load::run(&opts).await.unwrap();
    let t = &r.tally;
    // Messages 3, 6 and 9 are lost; each loss costs one connection, and the
    // session goes on with the next message.
    assert_eq!((t.sent, t.accepted, t.errors), (9, 6, 3), "{}", r.summary());
    assert_eq!(t.connection_failures, 3);
    assert!(!t.pipelined);
    assert!(
        t.first_error.as_deref().unwrap().contains("closed"),
        "{:?}",
        t.first_error
    );
    assert_eq!(connections.load(Ordering::Relaxed), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gives_up_after_three_timeouts() {
    let (addr, connections) = flaky(Fault::Mute).await;
    let opts = Options {
        messages: 10,
        connections: 1,
        timeout: Duration::from_millis(200),
        ..options(addr)
    };
    let r = load::run(&opts).await.unwrap();
    let t = &r.tally;
    assert_eq!(
        (t.sent, t.accepted, t.errors),
        (3, 0, 10),
        "{}",
        r.summary()
    );
    assert!(t.first_error.as_deref().unwrap().contains("timed out"));
    assert_eq!(connections.load(Ordering::Relaxed), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_greetings() {
    let (addr, _) = flaky(Fault::Greeting(554)).await;
    let opts = Options {
        messages: 5,
        connections: 2,
        ..options(addr)
    };
    let r = load::run(&opts).await.unwrap();
    assert_eq!((r.tally.sent, r.tally.errors), (0, 5), "{}", r.summary());
    assert_eq!(r.tally.connection_failures, 6);

    let (addr, _) = flaky(Fault::Greeting(421)).await;
    let opts = Options {
        idle: Some(Idle {
            connections: 4,
            hold: Duration::ZERO,
        }),
        ..options(addr)
    };
    let r = load::run(&opts).await.unwrap();
    let idle = r.idle.unwrap();
    assert_eq!(idle.ok, 0);
    assert_eq!(idle.refused.get(&421), Some(&4));
}
