//! Buffered connection I/O with batched replies.
//!
//! Speed comes from two rules. Input is read in large chunks and every
//! complete command already buffered is answered before touching the socket
//! again. Replies are appended to an output buffer that is written out only
//! when the sink is about to block on a read (RFC 2920 §3.2: the server may
//! batch responses as long as it sends them before waiting for more input),
//! so a pipelined MAIL/RCPT/DATA group costs one write, not three.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::dot::DotScanner;

/// Input buffer size; one read usually carries many small pipelined commands
/// or a large slice of message content.
const READ_BUF: usize = 64 * 1024;

/// Longest command line accepted, CRLF included. RFC 5321 §4.5.3.1.4 sets
/// 512 octets, raised by the lengths of extension parameters (§4.5.3.1.5);
/// 4096 leaves ample room for DSN ORCPT/ENVID and SMTPUTF8 addresses.
pub const MAX_LINE: usize = 4096;

/// Pending replies beyond this are written even if input is still buffered,
/// so a client that pipelines without end cannot grow our memory without
/// bound.
const WRITE_HIGH_WATER: usize = 16 * 1024;

/// Outcome of reading one command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line was copied into the caller's buffer, without its CRLF.
    Ok,
    /// The line exceeded [`MAX_LINE`] and was discarded up to its LF.
    TooLong,
    /// The peer closed the connection.
    Eof,
}

pub struct Conn<S> {
    stream: S,
    rbuf: Box<[u8]>,
    start: usize,
    end: usize,
    wbuf: Vec<u8>,
    /// Dropping the rest of an over-long line until its LF.
    discarding: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            rbuf: vec![0; READ_BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            wbuf: Vec::with_capacity(4096),
            discarding: false,
        }
    }

    /// Gives back the stream, dropping any buffered input. Used by STARTTLS:
    /// RFC 3207 §4.2 requires discarding whatever the client pipelined before
    /// the handshake (the CVE-2011-0411 command injection).
    pub fn into_stream(self) -> S {
        self.stream
    }

    /// Queues a reply; it goes out at the next flush.
    pub async fn reply(&mut self, text: &[u8]) -> io::Result<()> {
        self.wbuf.extend_from_slice(text);
        if self.wbuf.len() >= WRITE_HIGH_WATER {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes all queued replies to the peer.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        // Also needed for TLS: tokio-rustls may hold encrypted records.
        self.stream.flush().await
    }

    /// Flushes replies and closes the write side (TLS: sends `close_notify`).
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.flush().await?;
        self.stream.shutdown().await
    }

    /// Flushes pending replies, then reads more input. Returns the number of
    /// bytes read; 0 means end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.rbuf.len() {
            self.rbuf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        // The single place the session blocks: answer everything first.
        self.flush().await?;
        let n = self.stream.read(&mut self.rbuf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Reads one command line into `line` (CR LF or bare LF stripped).
    pub async fn read_line(&mut self, line: &mut Vec<u8>) -> io::Result<Line> {
        let mut searched = 0;
        loop {
            let avail = &self.rbuf[self.start..self.end];
            if let Some(p) = avail[searched..].iter().position(|&b| b == b'\n') {
                let p = searched + p;
                self.start += p + 1;
                // Over-long even if it arrived whole in one read.
                if std::mem::take(&mut self.discarding) || p >= MAX_LINE {
                    return Ok(Line::TooLong);
                }
                let text = &avail[..p];
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                line.clear();
                line.extend_from_slice(text);
                return Ok(Line::Ok);
            }
            if avail.len() >= MAX_LINE {
                self.discarding = true;
                self.start = self.end;
            }
            // Counted from `start`, so this stays valid when fill() moves
            // the unread bytes to the front of the buffer.
            searched = self.end - self.start;
            if self.fill().await? == 0 {
                return Ok(Line::Eof);
            }
        }
    }

    /// Skips DATA content up to and including `<CRLF>.<CRLF>`.
    /// Returns false if the peer closed the connection first.
    pub async fn skip_data(&mut self) -> io::Result<bool> {
        let mut scanner = DotScanner::new();
        loop {
            if let Some(n) = scanner.feed(&self.rbuf[self.start..self.end]) {
                self.start += n;
                return Ok(true);
            }
            self.start = self.end;
            if self.fill().await? == 0 {
                return Ok(false);
            }
        }
    }

    /// Skips exactly `n` octets of BDAT chunk data (RFC 3030 §2).
    /// Returns false if the peer closed the connection first.
    pub async fn skip_exact(&mut self, mut n: u64) -> io::Result<bool> {
        loop {
            let avail = self.end - self.start;
            let take = usize::try_from(n).map_or(avail, |n| n.min(avail));
            self.start += take;
            n -= take as u64;
            if n == 0 {
                return Ok(true);
            }
            if self.fill().await? == 0 {
                return Ok(false);
            }
        }
    }
}
