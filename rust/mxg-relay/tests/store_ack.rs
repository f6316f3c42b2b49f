//! The 250 on a PostgreSQL store (`store_ack_ms`, docs/cluster.md "Bodies
//! before the 250") and the intake gate, through a real engine and a real
//! SMTP conversation: the control plane's part is played by the test,
//! which drains `Arrived` events and answers with verdicts.

use mxg_relay::inbound::Verdict;
use mxg_relay::{Engine, EngineConfig, Event};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn engine(store_ack_ms: u64) -> (Engine, PathBuf) {
    let dir = std::env::temp_dir().join(format!("mxg-store-ack-{}", mxg_spool::new_queue_id()));
    let cfg = serde_json::json!({
        "hostname": "mx.test",
        "listen": ["127.0.0.1:0"],
        "spool_dir": dir,
        "client_networks": ["127.0.0.0/8"],
        "store_ack_ms": store_ack_ms,
    });
    let engine = Engine::start(&EngineConfig::from_json(&cfg.to_string()).unwrap()).unwrap();
    engine.serve().unwrap();
    (engine, dir)
}

struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(engine: &Engine) -> (Self, String) {
        let stream = TcpStream::connect(engine.local_addrs()[0]).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut client = Self {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        let greeting = client.reply();
        (client, greeting)
    }

    /// One whole reply, its lines joined; empty when the server closed.
    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap_or(0) == 0 {
                return all;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    fn send(&mut self, line: &str) -> String {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        self.reply()
    }

    /// EHLO, one transaction; the reply to MAIL when it is not a 250,
    /// otherwise the reply to the end of data.
    fn message(&mut self) -> String {
        assert!(self.send("EHLO client.test").starts_with("250"));
        let mail = self.send("MAIL FROM:<a@client.test>");
        if !mail.starts_with("250") {
            return mail;
        }
        assert!(self.send("RCPT TO:<b@example.test>").starts_with("250"));
        assert!(self.send("DATA").starts_with("354"));
        self.send("Subject: t\r\n\r\nhello\r\n.")
    }
}

/// Drains until an `Arrived` event comes; no `Received` may come with it.
fn arrived(engine: &Engine) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        for event in engine.drain() {
            match event {
                Event::Arrived { envelope, .. } => return envelope.queue_id,
                Event::Received { .. } => panic!("Received on a store_ack engine"),
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no Arrived event");
}

fn in_spool(dir: &std::path::Path, id: &str) -> bool {
    dir.join("queue").join(id).exists()
}

fn verdict(json: serde_json::Value) -> Verdict {
    serde_json::from_value(json).unwrap()
}

#[test]
fn rule9_a_stored_verdict_gives_250_and_nothing_else_follows() {
    let (engine, dir) = engine(10_000);
    let client = std::thread::spawn({
        let (mut c, _) = Client::connect(&engine);
        move || c.message()
    });
    let id = arrived(&engine);
    // The 250 waits for the store: nothing answered yet.
    std::thread::sleep(Duration::from_millis(50));
    assert!(!client.is_finished());
    assert_eq!(
        engine.verdicts(vec![verdict(
            serde_json::json!({"queue_id": id, "stored": true})
        )]),
        [true]
    );
    let reply = client.join().unwrap();
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    assert!(in_spool(&dir, &id));
    std::thread::sleep(Duration::from_millis(50));
    assert!(engine
        .drain()
        .iter()
        .all(|e| !matches!(e, Event::Received { .. } | Event::Rejected { .. })));
    engine.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn rule9_a_deferred_message_gets_its_4xx_and_leaves_the_spool() {
    let (engine, dir) = engine(10_000);
    let client = std::thread::spawn({
        let (mut c, _) = Client::connect(&engine);
        move || c.message()
    });
    let id = arrived(&engine);
    // A 5xx in a defer is never trusted: it becomes 451 4.3.0.
    let defer = serde_json::json!({"queue_id": id, "defer": {
        "code": 554, "enhanced": "5.0.0", "text": "store unreachable"}});
    assert_eq!(engine.verdicts(vec![verdict(defer)]), [true]);
    let reply = client.join().unwrap();
    assert!(reply.starts_with("451 4.3.0 store unreachable"), "{reply}");
    assert!(!in_spool(&dir, &id));
    engine.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn rule9_no_verdict_in_time_is_451_and_a_late_one_is_refused() {
    let (engine, dir) = engine(200);
    let client = std::thread::spawn({
        let (mut c, _) = Client::connect(&engine);
        move || c.message()
    });
    let id = arrived(&engine);
    let reply = client.join().unwrap();
    assert!(reply.starts_with("451 4.3.0"), "{reply}");
    assert!(!in_spool(&dir, &id));
    // The control plane learns it: its verdict finds no session.
    let late = serde_json::json!({"queue_id": id, "stored": true});
    assert_eq!(engine.verdicts(vec![verdict(late)]), [false]);
    engine.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_rejected_message_gets_its_5xx_and_a_plain_accept_is_not_a_250() {
    let (engine, dir) = engine(10_000);
    let client = std::thread::spawn({
        let (mut c, _) = Client::connect(&engine);
        move || (c.message(), c.message())
    });
    let id = arrived(&engine);
    let reject = serde_json::json!({"queue_id": id, "reject": {
        "code": 550, "enhanced": "5.7.1", "text": "refused by class secret"}});
    assert_eq!(engine.verdicts(vec![verdict(reject)]), [true]);
    let second = arrived(&engine);
    // Accepted but not stored: not what a 250 needs on this store.
    let plain = serde_json::json!({"queue_id": second});
    assert_eq!(engine.verdicts(vec![verdict(plain)]), [true]);
    let (first, then) = client.join().unwrap();
    assert!(
        first.starts_with("550 5.7.1 refused by class secret"),
        "{first}"
    );
    assert!(then.starts_with("451 4.3.0"), "{then}");
    assert!(!in_spool(&dir, &id) && !in_spool(&dir, &second));
    engine.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_intake_gate_defers_mail_and_closing_it_ends_sessions() {
    let (engine, dir) = engine(10_000);
    let (mut open, _) = Client::connect(&engine);
    engine.set_intake("defer", "store unreachable").unwrap();
    let reply = open.message();
    assert!(reply.starts_with("451 4.3.0 store unreachable"), "{reply}");
    // Our outage is not the client's error: more deferrals than
    // `max_errors` (20) do not cut the session off.
    for _ in 0..25 {
        let reply = open.send("MAIL FROM:<a@client.test>");
        assert!(reply.starts_with("451 4.3.0"), "{reply}");
    }
    engine.set_intake("closed", "node draining").unwrap();
    let reply = open.send("MAIL FROM:<a@client.test>");
    assert!(
        reply.starts_with("421 4.3.2 mx.test node draining"),
        "{reply}"
    );
    assert_eq!(open.reply(), "", "closed after the 421");
    let (_, greeting) = Client::connect(&engine);
    assert!(greeting.starts_with("421 4.3.2"), "{greeting}");
    assert!(engine.set_intake("drain", "").is_err());
    engine.set_intake("open", "").unwrap();
    let (mut again, greeting) = Client::connect(&engine);
    assert!(greeting.starts_with("220"), "{greeting}");
    let client = std::thread::spawn(move || again.message());
    let id = arrived(&engine);
    engine.verdicts(vec![verdict(
        serde_json::json!({"queue_id": id, "stored": true}),
    )]);
    assert!(client.join().unwrap().starts_with("250"));
    engine.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}
