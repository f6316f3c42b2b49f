//! One client connection to a receiving server: reply reading with the
//! RFC 5321 §4.5.3.2 timeouts, EHLO capabilities and STARTTLS.

use crate::job::TlsInfo;
use crate::level::TlsLevel;
use crate::profile::TlsProfile;
use crate::stream::Stream;
use crate::vocab::{Method, Reason};
use mxg_smtp::reply::ReplyError;
use mxg_smtp::{Reply, ReplyParser};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A reply line longer than this is not SMTP (RFC 5321 §4.5.3.1.5: 512).
const MAX_REPLY_LINE: usize = 4096;

/// What the server announced in its EHLO reply.
#[derive(Debug, Default, Clone)]
pub struct Caps {
    pub pipelining: bool,
    pub size: Option<u64>,
    pub eightbitmime: bool,
    pub smtputf8: bool,
    pub dsn: bool,
    pub starttls: bool,
    /// RFC 8689 §4.1; only meaningful after STARTTLS.
    pub requiretls: bool,
}

impl Caps {
    fn parse(reply: &Reply) -> Self {
        let mut caps = Self::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(kw) = words.next() else { continue };
            match kw.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "8BITMIME" => caps.eightbitmime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "DSN" => caps.dsn = true,
                "STARTTLS" => caps.starttls = true,
                "REQUIRETLS" => caps.requiretls = true,
                _ => {}
            }
        }
        caps
    }
}

/// Why a connection could not be used. Always transient for the job.
#[derive(Debug, Clone)]
pub struct ConnError {
    /// Decided where the error is made, never read back from `text`.
    pub reason: Reason,
    pub text: String,
    /// Set when the server gave an SMTP reply (e.g. a 554 greeting).
    pub reply: Option<Reply>,
    /// The server was reached but cannot give the required transport
    /// level (no STARTTLS, failed handshake or authentication, no
    /// REQUIRETLS): what the control plane's `on_unmet` is about.
    pub unmet: bool,
    /// The enhanced status code for an unmet requirement when it is more
    /// specific than 4.7.5 (4.7.30 for REQUIRETLS, RFC 8689 §7.3).
    pub enhanced: Option<&'static str>,
}

impl ConnError {
    pub fn new(reason: Reason, text: impl Into<String>) -> Self {
        Self {
            reason,
            text: text.into(),
            reply: None,
            unmet: false,
            enhanced: None,
        }
    }

    /// A failure to reach the required level.
    pub fn unmet(reason: Reason, text: impl Into<String>) -> Self {
        Self {
            unmet: true,
            ..Self::new(reason, text)
        }
    }
}

pub struct Conn {
    stream: Stream,
    rbuf: Vec<u8>,
    parser: ReplyParser,
    pub host: String,
    pub ip: IpAddr,
    pub caps: Caps,
    pub tls: Option<TlsInfo>,
    /// The session keeps to the job's parameter profile.
    pub within_profile: bool,
    /// The server was authenticated by DANE.
    pub dane: Option<mxg_dane::DaneMatch>,
    /// The method that authenticated the server, if the job counts it
    /// for `qualified`.
    pub qualified_by: Option<Method>,
    /// The end-entity certificate the server presented (DER).
    pub peer_cert: Option<Vec<u8>>,
    pub messages: usize,
    /// Set when the connection is in an unknown protocol state.
    pub broken: bool,
}

impl Conn {
    pub async fn connect(
        host: &str,
        ip: IpAddr,
        port: u16,
        timeout: Duration,
    ) -> Result<Self, ConnError> {
        let addr = SocketAddr::new(ip, port);
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let reason = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    Reason::ConnectionRefused
                } else {
                    Reason::ConnectionFailed
                };
                return Err(ConnError::new(
                    reason,
                    format!("connect to {host}[{ip}]:{port}: {e}"),
                ));
            }
            Err(_) => {
                return Err(ConnError::new(
                    Reason::ConnectionTimeout,
                    format!("connect to {host}[{ip}]:{port}: timed out"),
                ))
            }
        };
        let _ = stream.set_nodelay(true);
        Ok(Self {
            stream: Stream::Plain(stream),
            rbuf: Vec::with_capacity(4096),
            parser: ReplyParser::default(),
            host: host.to_owned(),
            ip,
            caps: Caps::default(),
            tls: None,
            within_profile: false,
            dane: None,
            qualified_by: None,
            peer_cert: None,
            messages: 0,
            broken: false,
        })
    }

    /// Level this connection achieves: `qualified` when the server was
    /// also authenticated, `encrypted` with TLS inside the parameter
    /// profile, `opportunistic` with TLS outside it, `none` without TLS.
    pub fn level(&self) -> TlsLevel {
        match (&self.tls, self.within_profile) {
            (Some(_), true) if self.qualified_by.is_some() => TlsLevel::Qualified,
            (Some(_), true) => TlsLevel::Encrypted,
            (Some(_), false) => TlsLevel::Opportunistic,
            (None, _) => TlsLevel::None,
        }
    }

    fn fail(&mut self, reason: Reason, what: &str, detail: &str) -> ConnError {
        self.broken = true;
        ConnError::new(
            reason,
            format!("{}[{}] {what}: {detail}", self.host, self.ip),
        )
    }

    pub async fn read_reply(&mut self, timeout: Duration, stage: &str) -> Result<Reply, ConnError> {
        let fut = async {
            loop {
                if let Some(pos) = self.rbuf.iter().position(|&b| b == b'\n') {
                    let mut line: Vec<u8> = self.rbuf.drain(..=pos).collect();
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    match self.parser.feed(&line) {
                        Ok(Some(reply)) => return Ok(reply),
                        Ok(None) => continue,
                        Err(ReplyError::Malformed(l)) => {
                            return Err(format!("malformed reply {l:?}"))
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                }
                if self.rbuf.len() > MAX_REPLY_LINE {
                    return Err("reply line too long".to_owned());
                }
                let mut buf = [0u8; 4096];
                match self.stream.read(&mut buf).await {
                    Ok(0) => return Err("connection closed by server".to_owned()),
                    Ok(n) => self.rbuf.extend_from_slice(&buf[..n]),
                    Err(e) => return Err(e.to_string()),
                }
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(self.fail(
                Reason::ConnectionFailed,
                &format!("while waiting for the {stage} reply"),
                &e,
            )),
            Err(_) => Err(self.fail(
                Reason::ConnectionTimeout,
                &format!("while waiting for the {stage} reply"),
                "timed out",
            )),
        }
    }

    pub async fn send(&mut self, bytes: &[u8], timeout: Duration) -> Result<(), ConnError> {
        let fut = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.fail(Reason::ConnectionFailed, "while sending", &e.to_string())),
            Err(_) => Err(self.fail(Reason::ConnectionTimeout, "while sending", "timed out")),
        }
    }

    pub async fn command(
        &mut self,
        line: &str,
        timeout: Duration,
        stage: &str,
    ) -> Result<Reply, ConnError> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.send(&bytes, timeout).await?;
        self.read_reply(timeout, stage).await
    }

    /// EHLO, falling back to HELO when the server refuses EHLO with 5xx.
    pub async fn hello(&mut self, name: &str, timeout: Duration) -> Result<(), ConnError> {
        let reply = self
            .command(&format!("EHLO {name}"), timeout, "EHLO")
            .await?;
        if reply.is_positive() {
            self.caps = Caps::parse(&reply);
            return Ok(());
        }
        if reply.is_permanent() {
            let helo = self
                .command(&format!("HELO {name}"), timeout, "HELO")
                .await?;
            if helo.is_positive() {
                self.caps = Caps::default();
                return Ok(());
            }
            return Err(self.refused(Reason::ServerReply, "HELO", helo));
        }
        Err(self.refused(Reason::ServerReply, "EHLO", reply))
    }

    /// The server answered `stage` with a non-2xx `reply`.
    pub fn refused(&mut self, reason: Reason, stage: &str, reply: Reply) -> ConnError {
        let text = format!("{}[{}] refused {stage}: {reply}", self.host, self.ip);
        ConnError {
            reason,
            text,
            reply: Some(reply),
            unmet: false,
            enhanced: None,
        }
    }

    /// STARTTLS and the TLS handshake. Bytes the server sent before the
    /// handshake are dropped and capabilities forgotten (RFC 3207 §4.2,
    /// ARCHITECTURE.md rule 6); the caller says EHLO again.
    pub async fn starttls(
        &mut self,
        config: Arc<rustls::ClientConfig>,
        server_name: rustls::pki_types::ServerName<'static>,
        profile: TlsProfile,
        timeout: Duration,
    ) -> Result<(), ConnError> {
        let reply = self.command("STARTTLS", timeout, "STARTTLS").await?;
        if reply.code != 220 {
            return Err(self.refused(Reason::StarttlsRefused, "STARTTLS", reply));
        }
        self.rbuf.clear();
        self.parser = ReplyParser::default();
        self.caps = Caps::default();
        let Some(plain) = self.stream.take_plain() else {
            return Err(self.fail(
                Reason::TlsHandshakeFailure,
                "STARTTLS",
                "connection is not plaintext",
            ));
        };
        let connector = tokio_rustls::TlsConnector::from(config);
        match tokio::time::timeout(timeout, connector.connect(server_name, plain)).await {
            Ok(Ok(tls)) => {
                self.tls = crate::tls::describe(tls.get_ref().1);
                self.within_profile = crate::tls::within_profile(tls.get_ref().1, profile);
                self.peer_cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.as_ref().to_vec());
                self.stream = Stream::ClientTls(Box::new(tls));
                Ok(())
            }
            Ok(Err(e)) => {
                let (reason, detail) = handshake_failure(&e);
                let mut err = self.fail(reason, "TLS handshake", &detail);
                err.unmet = true;
                Err(err)
            }
            Err(_) => Err(self.fail(Reason::ConnectionTimeout, "TLS handshake", "timed out")),
        }
    }

    /// Polite end; errors do not matter any more.
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            if self.stream.write_all(b"QUIT\r\n").await.is_ok() {
                let mut buf = [0u8; 512];
                let _ = self.stream.read(&mut buf).await;
            }
            let _ = self.stream.shutdown().await;
        })
        .await;
    }
}

/// A handshake error as a reason and in words an operator can act on. A
/// server that closes the connection or answers with a `handshake_failure`,
/// `protocol_version` or `insufficient_security` alert right after our
/// `ClientHello` shares no TLS version or cipher suite with us (TLS
/// 1.0/1.1-only servers, RSA key exchange only): say so, and what mxg
/// offers. The reason comes from the error's type, never from its text.
fn handshake_failure(e: &std::io::Error) -> (Reason, String) {
    use rustls::AlertDescription as A;
    let text = e.to_string();
    // tokio-rustls hands rustls's own error over inside the io::Error.
    let tls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let no_common = e.kind() == std::io::ErrorKind::UnexpectedEof
        || matches!(
            tls_error,
            Some(rustls::Error::AlertReceived(
                A::HandshakeFailure | A::ProtocolVersion | A::InsufficientSecurity
            ))
        );
    if no_common {
        let text = format!(
            "{text}: the server shares no TLS version or cipher suite with mxg \
             (mxg offers TLS 1.2/1.3 with ECDHE key exchange only)"
        );
        return (Reason::TlsProfile, text);
    }
    let reason = match tls_error {
        Some(cert @ rustls::Error::InvalidCertificate(_)) => crate::tls::certificate_reason(cert),
        _ => Reason::TlsHandshakeFailure,
    };
    (reason, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls_io(e: rustls::Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn handshake_failures_get_their_reason_from_the_error_type() {
        use rustls::AlertDescription as A;
        for alert in [
            A::HandshakeFailure,
            A::ProtocolVersion,
            A::InsufficientSecurity,
        ] {
            let (reason, text) = handshake_failure(&tls_io(rustls::Error::AlertReceived(alert)));
            assert_eq!(reason, Reason::TlsProfile);
            assert!(text.contains(&format!("{alert:?}")), "{text}");
            assert!(
                text.contains("shares no TLS version or cipher suite"),
                "{text}"
            );
        }
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert_eq!(handshake_failure(&eof).0, Reason::TlsProfile);
        let expired = tls_io(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Expired,
        ));
        assert_eq!(handshake_failure(&expired).0, Reason::CertificateExpired);
        let (reason, text) =
            handshake_failure(&tls_io(rustls::Error::AlertReceived(A::DecryptError)));
        assert_eq!(reason, Reason::TlsHandshakeFailure);
        assert!(!text.contains("shares no"), "{text}");
    }
}
