//! Drives the sink in-process over loopback: pipelined DATA, STARTTLS (TLS
//! 1.2 and 1.3) and BDAT sessions, checking replies and counters.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mxg_benchsink::{bind, serve, tls, Settings, Snapshot, Stats};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Starts a sink on an ephemeral loopback port.
fn start(tls: Option<Arc<rustls::ServerConfig>>) -> (SocketAddr, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    let listener = bind(&["127.0.0.1:0".parse().unwrap()])
        .unwrap()
        .pop()
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = Arc::new(Settings {
        hostname: "sink.test".into(),
        tls: tls.map(tokio_rustls::TlsAcceptor::from),
        reply_delay: Duration::ZERO,
        stats: Arc::clone(&stats),
    });
    tokio::spawn(serve(listener, settings));
    (addr, stats)
}

/// Minimal SMTP client: raw writes, reply reads.
struct Client<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    fn new(stream: S) -> Self {
        Self {
            io: BufReader::new(stream),
        }
    }

    async fn send(&mut self, data: &[u8]) {
        self.io.get_mut().write_all(data).await.unwrap();
        self.io.get_mut().flush().await.unwrap();
    }

    /// Reads one (possibly multi-line) reply and returns its lines.
    async fn reply(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.io.read_line(&mut line))
                .await
                .expect("reply timeout")
                .unwrap();
            assert!(n > 0, "connection closed; got {lines:?}");
            assert!(line.ends_with("\r\n"), "{line:?}");
            let line = line.trim_end().to_owned();
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line);
            if !more {
                return lines;
            }
        }
    }

    /// Reads one reply and checks that it starts with `prefix`.
    async fn expect(&mut self, prefix: &str) -> Vec<String> {
        let r = self.reply().await;
        assert!(r[0].starts_with(prefix), "want {prefix:?}, got {r:?}");
        r
    }

    /// Reads the server's close.
    async fn expect_eof(&mut self) {
        let mut rest = String::new();
        let n = self.io.read_line(&mut rest).await.unwrap_or(0);
        assert_eq!(n, 0, "unexpected data {rest:?}");
    }
}

async fn connect(addr: SocketAddr) -> Client<TcpStream> {
    let mut c = Client::new(TcpStream::connect(addr).await.unwrap());
    c.expect("220 sink.test ").await;
    c
}

const MESSAGE: &[u8] = b"Subject: test\r\n\r\n..leading dot, stuffed\r\n.not the end\r\n\
x\r\n.\rstill not\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_plaintext() {
    let (addr, stats) = start(None);
    let mut c = connect(addr).await;

    c.send(b"EHLO client.test\r\n").await;
    let ehlo = c.expect("250-sink.test").await;
    for ext in [
        "PIPELINING",
        "8BITMIME",
        "SIZE",
        "ENHANCEDSTATUSCODES",
        "SMTPUTF8",
        "DSN",
        "CHUNKING",
    ] {
        assert!(
            ehlo.iter().any(|l| l[4..].starts_with(ext)),
            "{ext} missing: {ehlo:?}"
        );
    }
    assert!(!ehlo.iter().any(|l| l.contains("STARTTLS")), "{ehlo:?}");

    // Three transactions and QUIT in a single write: the sink must find the
    // end of each message inside the stream and answer every command once.
    let mut batch = Vec::new();
    for i in 0..3 {
        batch.extend_from_slice(
            format!("MAIL FROM:<a{i}@x.test> SIZE=100\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test> NOTIFY=NEVER\r\nDATA\r\n")
                .as_bytes(),
        );
        batch.extend_from_slice(MESSAGE);
        batch.extend_from_slice(b".\r\n");
    }
    batch.extend_from_slice(b"QUIT\r\n");
    c.send(&batch).await;
    for _ in 0..3 {
        c.expect("250 2.1.0").await;
        c.expect("250 2.1.5").await;
        c.expect("250 2.1.5").await;
        c.expect("354 ").await;
        c.expect("250 2.0.0 Ok: queued").await;
    }
    c.expect("221 ").await;
    c.expect_eof().await;

    assert_eq!(
        stats.snapshot(),
        Snapshot {
            messages: 3,
            recipients: 6,
            connections: 1,
            tls_connections: 0
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_sequencing() {
    let (addr, stats) = start(None);
    let mut c = connect(addr).await;
    c.send(b"MAIL FROM:<a@x.test>\r\n").await;
    c.expect("503 ").await;
    c.send(b"HELO client.test\r\nBOGUS\r\nSTARTTLS\r\nRCPT TO:<b@y.test>\r\nDATA\r\n")
        .await;
    c.expect("250 sink.test").await;
    c.expect("502 ").await;
    c.expect("502 ").await; // STARTTLS not configured
    c.expect("503 ").await;
    c.expect("503 ").await;
    let long = format!("NOOP {}\r\nNOOP\r\n", "x".repeat(10_000));
    c.send(long.as_bytes()).await;
    c.expect("500 ").await;
    c.expect("250 ").await;
    c.send(b"MAIL FROM:<>\r\nDATA\r\nRSET\r\nQUIT\r\n").await;
    c.expect("250 ").await;
    c.expect("554 ").await; // no recipients: no 354
    c.expect("250 ").await;
    c.expect("221 ").await;
    assert_eq!(stats.snapshot().messages, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bdat() {
    let (addr, stats) = start(None);
    let mut c = connect(addr).await;
    // A refused BDAT still has its chunk consumed (RFC 3030 §2); the NOOP
    // after it proves the command stream stayed in sync.
    c.send(b"BDAT 8\r\nQUIT\r\n\r\nNOOP\r\n").await;
    c.expect("503 ").await;
    c.expect("250 ").await;

    c.send(b"EHLO client.test\r\n").await;
    c.expect("250-sink.test").await;
    let mut batch = b"MAIL FROM:<a@x.test> BODY=BINARYMIME\r\nRCPT TO:<b@y.test>\r\n".to_vec();
    let chunk1 = b"Subject: t\r\n\r\n.\r\nQUIT\r\n";
    batch.extend_from_slice(format!("BDAT {}\r\n", chunk1.len()).as_bytes());
    batch.extend_from_slice(chunk1);
    batch.extend_from_slice(b"DATA\r\n"); // not allowed once BDAT started
    batch.extend_from_slice(b"BDAT 5 LAST\r\nabcde");
    // A second message in a single zero-length last chunk.
    batch.extend_from_slice(b"MAIL FROM:<>\r\nRCPT TO:<c@y.test>\r\nBDAT 0 LAST\r\nQUIT\r\n");
    c.send(&batch).await;
    c.expect("250 2.1.0").await;
    c.expect("250 2.1.5").await;
    let r = c.expect("250 2.0.0").await;
    assert!(r[0].contains(&format!("{} octets", chunk1.len())), "{r:?}");
    c.expect("503 ").await;
    c.expect("250 2.0.0 Ok: queued").await;
    c.expect("250 2.1.0").await;
    c.expect("250 2.1.5").await;
    c.expect("250 2.0.0 Ok: queued").await;
    c.expect("221 ").await;
    c.expect_eof().await;
    let s = stats.snapshot();
    assert_eq!((s.messages, s.recipients, s.connections), (2, 2, 1));
}

/// Writes a fresh self-signed certificate for "localhost" as PEM files and
/// loads them the way the binary does.
fn tls_setup(tag: &str) -> (Arc<rustls::ServerConfig>, CertificateDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = std::env::temp_dir().join(format!("benchsink-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("chain.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let cfg = tls::load(&cert, &key).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    (cfg, ck.cert.der().clone())
}

async fn starttls_session(version: &'static rustls::SupportedProtocolVersion) {
    let (server_cfg, cert) = tls_setup(&format!("{:?}", version.version));
    let (addr, stats) = start(Some(server_cfg));
    let mut c = connect(addr).await;
    c.send(b"EHLO client.test\r\n").await;
    let ehlo = c.expect("250-sink.test").await;
    assert_eq!(ehlo.last().unwrap(), "250 STARTTLS");

    // The NOOP is pipelined before the handshake and must be discarded
    // (RFC 3207 §4.2); if it were executed its 250 would precede the EHLO
    // reply below.
    c.send(b"STARTTLS\r\nNOOP\r\n").await;
    c.expect("220 2.0.0").await;
    let tcp = c.io.into_inner();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client_cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[version])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_cfg));
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.protocol_version(), Some(version.version));
    let mut c = Client::new(tls);

    // Fresh SMTP state after TLS: the client must greet again.
    c.send(b"MAIL FROM:<a@x.test>\r\nEHLO client.test\r\n")
        .await;
    c.expect("503 ").await;
    let ehlo = c.expect("250-sink.test").await;
    assert!(!ehlo.iter().any(|l| l.contains("STARTTLS")), "{ehlo:?}");
    c.send(b"STARTTLS\r\n").await;
    c.expect("503 ").await;

    c.send(b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n")
        .await;
    c.expect("250 ").await;
    c.expect("250 ").await;
    c.expect("354 ").await;
    let mut body = MESSAGE.repeat(5000); // ~300 KB: many TLS records and reads
    body.extend_from_slice(b".\r\nQUIT\r\n");
    c.send(&body).await;
    c.expect("250 2.0.0 Ok: queued").await;
    c.expect("221 ").await;
    c.expect_eof().await;

    assert_eq!(
        stats.snapshot(),
        Snapshot {
            messages: 1,
            recipients: 1,
            connections: 1,
            tls_connections: 1
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_tls13() {
    starttls_session(&rustls::version::TLS13).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_tls12() {
    starttls_session(&rustls::version::TLS12).await;
}
