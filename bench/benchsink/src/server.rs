//! Listeners, the accept loop, and the per-connection driver that switches
//! a session from plaintext to TLS on STARTTLS.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::conn::Conn;
use crate::session::{self, End};
use crate::stats::Stats;

/// Everything a session needs to know, shared read-only by all connections.
pub struct Settings {
    /// Name used in the greeting and the EHLO reply.
    pub hostname: String,
    /// When set, STARTTLS is offered and performed with this acceptor.
    pub tls: Option<TlsAcceptor>,
    /// Delay before answering the end of message data (DATA's final dot or
    /// BDAT LAST), to emulate a slow receiver.
    pub reply_delay: Duration,
    pub stats: Arc<Stats>,
}

/// Pending-connection queue length; benchmarks open many connections at
/// once, and the kernel default of std's listener (128) drops SYNs.
const BACKLOG: u32 = 4096;

/// Binds one listener per address.
///
/// An IPv6 wildcard (`[::]:port`) follows the host's `net.ipv6.bindv6only`
/// setting; on Linux defaults it also takes IPv4, so listing both
/// `0.0.0.0:P` and `[::]:P` fails with "address in use".
pub fn bind(addrs: &[SocketAddr]) -> io::Result<Vec<TcpListener>> {
    addrs
        .iter()
        .map(|addr| {
            let sock = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            // Lets a benchmark restart the sink at once on the same port.
            sock.set_reuseaddr(true)?;
            sock.bind(*addr)
                .map_err(|e| io::Error::new(e.kind(), format!("bind {addr}: {e}")))?;
            sock.listen(BACKLOG)
        })
        .collect()
}

/// Accepts connections forever, one task each.
pub async fn serve(listener: TcpListener, settings: Arc<Settings>) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                settings.stats.connection();
                let settings = Arc::clone(&settings);
                tokio::spawn(async move {
                    // Peers resetting or timing out are routine in a load test
                    // and say nothing about the sink; there is no one to tell.
                    let _ = connection(stream, &settings).await;
                });
            }
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                eprintln!("mxg-benchsink: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(stream: TcpStream, settings: &Settings) -> io::Result<()> {
    // Replies are already batched by Conn; Nagle would only add latency to
    // each batch (and interacts badly with delayed ACKs on lockstep clients).
    stream.set_nodelay(true)?;
    let mut conn = Conn::new(stream);
    let greeting = format!("220 {} ESMTP mxg-benchsink\r\n", settings.hostname);
    conn.reply(greeting.as_bytes()).await?;
    match session::run(&mut conn, settings, false).await? {
        End::Quit => conn.shutdown().await,
        End::Closed => Ok(()),
        End::StartTls => {
            let Some(acceptor) = &settings.tls else {
                return Ok(());
            };
            // The 220 was flushed by the session; buffered plaintext input
            // is dropped with the Conn (RFC 3207 §4.2).
            let tls = acceptor.accept(conn.into_stream()).await?;
            settings.stats.tls_connection();
            // No new greeting: RFC 3207 §4.2 has the client speak first
            // (EHLO) after the handshake, on a fresh SMTP state.
            let mut conn = Conn::new(tls);
            match session::run(&mut conn, settings, true).await? {
                End::Quit => conn.shutdown().await,
                End::Closed | End::StartTls => Ok(()),
            }
        }
    }
}
