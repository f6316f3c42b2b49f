//! The client side of one SMTP connection: timed writes, reply parsing
//! (RFC 5321 §4.2), and opening a session up to a successful EHLO.
//!
//! Generic over the stream so that a STARTTLS phase can later wrap it
//! without touching the transaction code.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Longest reply line accepted. RFC 5321 §4.5.3.1.5 sets 512 octets; a
/// server sending far more without a line end is broken, not slow.
const MAX_REPLY_LINE: usize = 4096;

pub struct Client<S> {
    io: BufReader<S>,
    /// Applies to each reply and each write on its own (`--timeout`).
    timeout: Duration,
    /// All lines of the last reply, CRLFs included; reused between replies.
    last: Vec<u8>,
    /// The server listed PIPELINING in its EHLO reply (RFC 2920 §3).
    pipelining: bool,
}

/// Why a connection could not be brought up to a usable session.
#[derive(Debug)]
pub enum OpenError {
    /// The greeting or EHLO (and HELO) answered with this code.
    Refused(u16),
    /// Connect failed, timed out, or the connection was lost.
    Io(io::Error),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(code) => write!(f, "session refused with {code}"),
            Self::Io(e) => e.fmt(f),
        }
    }
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Connects and greets: reads the 220 greeting and sends EHLO (HELO if the
/// server does not know EHLO, RFC 5321 §3.2).
pub async fn open(
    addr: SocketAddr,
    helo: &str,
    timeout: Duration,
) -> Result<Client<TcpStream>, OpenError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| timed_out("connect", timeout))?
        .map_err(|e| io::Error::new(e.kind(), format!("connect {addr}: {e}")))?;
    // Without this, Nagle holds back the small end-of-data write while the
    // content is unacknowledged, and that delay would be measured as the
    // server's latency.
    stream.set_nodelay(true)?;
    let mut client = Client::new(stream, timeout);
    client.greet(helo).await?;
    Ok(client)
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(stream: S, timeout: Duration) -> Self {
        Self {
            io: BufReader::new(stream),
            timeout,
            last: Vec::with_capacity(512),
            pipelining: false,
        }
    }

    /// Whether the server offered PIPELINING.
    pub fn pipelining(&self) -> bool {
        self.pipelining
    }

    /// The text of the last reply, all lines, CRLFs included.
    pub fn last_reply(&self) -> &[u8] {
        &self.last
    }

    async fn greet(&mut self, helo: &str) -> Result<(), OpenError> {
        let code = self.reply().await?;
        if code != 220 {
            return Err(OpenError::Refused(code));
        }
        self.send(format!("EHLO {helo}\r\n").as_bytes()).await?;
        let code = self.reply().await?;
        if code == 250 {
            self.pipelining = self.offers("PIPELINING");
            return Ok(());
        }
        // 4xx is a refusal of the session; 5xx may just mean "no EHLO".
        if code >= 500 {
            self.send(format!("HELO {helo}\r\n").as_bytes()).await?;
            let code = self.reply().await?;
            if code == 250 {
                return Ok(());
            }
            return Err(OpenError::Refused(code));
        }
        Err(OpenError::Refused(code))
    }

    /// Whether the last (EHLO) reply lists `keyword` as an extension: the
    /// first word of any line but the first (RFC 5321 §4.1.1.1).
    fn offers(&self, keyword: &str) -> bool {
        self.last
            .split(|&b| b == b'\n')
            .skip(1)
            .filter_map(|line| line.get(4..))
            .any(|ext| {
                let word = ext
                    .split(u8::is_ascii_whitespace)
                    .next()
                    .unwrap_or_default();
                word.eq_ignore_ascii_case(keyword.as_bytes())
            })
    }

    /// Writes `data` completely.
    pub async fn send(&mut self, data: &[u8]) -> io::Result<()> {
        let timeout = self.timeout;
        let io = self.io.get_mut();
        tokio::time::timeout(timeout, async {
            io.write_all(data).await?;
            // A no-op for TCP; TLS streams hold records until flushed.
            io.flush().await
        })
        .await
        .map_err(|_| timed_out("write", timeout))?
    }

    /// Reads one reply, possibly multi-line, and returns its code.
    pub async fn reply(&mut self) -> io::Result<u16> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.read_reply())
            .await
            .map_err(|_| timed_out("reply", timeout))?
    }

    /// Sends QUIT and waits for its reply, so the server sees an orderly
    /// end rather than a reset.
    pub async fn quit(mut self) -> io::Result<u16> {
        self.send(b"QUIT\r\n").await?;
        self.reply().await
    }

    async fn read_reply(&mut self) -> io::Result<u16> {
        self.last.clear();
        let mut code = None;
        loop {
            let start = self.last.len();
            self.read_line().await?;
            let line = &self.last[start..self.last.len() - 2];
            // RFC 5321 §4.2: three digits, then "-" on all lines but the
            // last, which has a space or nothing; all lines share the code.
            let this = parse_code(line).ok_or_else(|| bad_reply(line))?;
            if *code.get_or_insert(this) != this {
                return Err(bad_reply(line));
            }
            match line.get(3) {
                Some(b'-') => {}
                None | Some(b' ') => return Ok(this),
                Some(_) => return Err(bad_reply(line)),
            }
        }
    }

    /// Appends one CRLF-terminated line to `last`.
    async fn read_line(&mut self) -> io::Result<()> {
        let start = self.last.len();
        loop {
            let buf = self.io.fill_buf().await?;
            if buf.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed by the server",
                ));
            }
            let (take, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(p) => (p + 1, true),
                None => (buf.len(), false),
            };
            self.last.extend_from_slice(&buf[..take]);
            self.io.consume(take);
            if self.last.len() - start > MAX_REPLY_LINE {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "reply line too long",
                ));
            }
            if done {
                // Bare LF is tolerated: the line is judged by its content.
                if !self.last.ends_with(b"\r\n") {
                    self.last.pop();
                    self.last.extend_from_slice(b"\r\n");
                }
                return Ok(());
            }
        }
    }
}

fn parse_code(line: &[u8]) -> Option<u16> {
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&digits[0]) {
        return None;
    }
    Some(digits.iter().fold(0, |n, d| n * 10 + u16::from(d - b'0')))
}

fn bad_reply(line: &[u8]) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed reply {:?}", String::from_utf8_lossy(line)),
    )
}

fn timed_out(what: &str, after: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what} timed out after {after:?}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;

    /// A client over an in-memory pipe with the server's bytes preloaded;
    /// the server end is returned so that it stays open.
    async fn client_with(server_says: &[u8]) -> (Client<DuplexStream>, DuplexStream) {
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        b.write_all(server_says).await.unwrap();
        (Client::new(a, Duration::from_millis(200)), b)
    }

    #[tokio::test]
    async fn multiline_and_extensions() {
        let (mut c, _server) =
            client_with(b"220 hi\r\n250-h\r\n250-SIZE 0\r\n250 pipelining\r\n").await;
        c.greet("me.test").await.unwrap();
        assert!(c.pipelining());
        assert!(c.last_reply().starts_with(b"250-h\r\n"));
    }

    #[tokio::test]
    async fn helo_fallback_and_refusals() {
        let (mut c, _server) = client_with(b"220 hi\n502 no ehlo\r\n250 ok\r\n").await;
        c.greet("me.test").await.unwrap();
        assert!(!c.pipelining());
        let (mut c, _server) = client_with(b"421 busy\r\n").await;
        assert!(matches!(c.greet("x").await, Err(OpenError::Refused(421))));
    }

    #[tokio::test]
    async fn malformed_and_timeout() {
        for bad in [
            &b"250-a\r\n251 b\r\n"[..],
            b"25 x\r\n",
            b"250xok\r\n",
            b"199 x\r\n",
        ] {
            let (mut c, _server) = client_with(bad).await;
            let e = c.reply().await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{bad:?}");
        }
        let (mut c, _server) = client_with(b"250-partial\r\n").await;
        assert_eq!(c.reply().await.unwrap_err().kind(), io::ErrorKind::TimedOut);
    }
}
