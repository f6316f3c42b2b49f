//! Message body readers for DATA (dot-stuffed, RFC 5321 §4.5.2) and BDAT
//! (length-prefixed chunks, RFC 3030).
//!
//! SMTP smuggling works by sending an end-of-data shape that one server
//! reads as the end and the next one does not (`<LF>.<LF>`, `<CR>.<CR>`,
//! `<LF>.<CR><LF>`, ...). mxg accepts only `<CRLF>.<CRLF>` as the end and
//! refuses any bare CR or bare LF inside a message: such a stream is not
//! normalised, the transaction fails and the connection is closed, because
//! after a bare line end nobody can say where the client meant DATA to stop.

/// What went wrong in a message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    #[error("bare LF in message data")]
    BareLf,
    #[error("bare CR in message data")]
    BareCr,
}

/// Outcome of feeding bytes to a body reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataProgress {
    /// More bytes are needed.
    NeedMore,
    /// The body is complete; `consumed` bytes of the last input belonged to
    /// it, the rest are the next pipelined commands.
    Done { consumed: usize },
    /// The stream is malformed; the session must reply and close.
    Failed(DataError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    LineStart,
    InLine,
    /// CR seen inside a line; LF must follow.
    Cr,
    /// A line began with '.'.
    Dot,
    /// ".\r" at line start; LF ends the body.
    DotCr,
}

/// DATA reader: removes dot-stuffing, finds `<CRLF>.<CRLF>`, enforces the
/// line-length and size limits without losing step with the client.
#[derive(Debug)]
pub struct DataReader {
    state: State,
    body: Vec<u8>,
    line_len: usize,
    max_line: usize,
    max_size: usize,
    /// Longest line seen, in octets including CRLF.
    pub longest_line: usize,
    /// Set once the body grew past `max_size`; bytes are then counted only.
    pub oversize: bool,
    /// Octets of the body, counted even when oversize.
    pub size: usize,
    /// Counting only, nothing kept (`discard`).
    pub discarding: bool,
}

impl DataReader {
    pub fn new(max_line: usize, max_size: usize) -> Self {
        Self {
            state: State::LineStart,
            body: Vec::with_capacity(8192),
            line_len: 0,
            max_line,
            max_size,
            longest_line: 0,
            oversize: false,
            size: 0,
            discarding: false,
        }
    }

    /// True when a line longer than the limit was seen.
    pub fn line_too_long(&self) -> bool {
        self.longest_line > self.max_line
    }

    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// Octets held so far (the body as it grows).
    pub fn held(&self) -> usize {
        self.body.len()
    }

    /// Stops keeping octets (the sessions' memory budget is spent); the
    /// data is still read to its end, so the session stays in step.
    pub fn discard(&mut self) {
        self.discarding = true;
        self.body = Vec::new();
    }

    fn emit(&mut self, bytes: &[u8]) {
        self.size += bytes.len();
        if self.body.len() + bytes.len() > self.max_size {
            self.oversize = true;
            self.body = Vec::new();
        }
        if !self.oversize && !self.discarding {
            self.body.extend_from_slice(bytes);
        }
    }

    fn end_line(&mut self) {
        self.longest_line = self.longest_line.max(self.line_len);
        self.line_len = 0;
    }

    pub fn feed(&mut self, input: &[u8]) -> DataProgress {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::LineStart => {
                    if input[i] == b'.' {
                        self.state = State::Dot;
                        self.line_len += 1;
                        i += 1;
                    } else {
                        self.state = State::InLine;
                    }
                }
                State::InLine => {
                    // Copy the run up to the next CR or LF in one go.
                    let run = input[i..]
                        .iter()
                        .position(|&b| b == b'\r' || b == b'\n')
                        .unwrap_or(input.len() - i);
                    if run > 0 {
                        self.line_len += run;
                        self.emit(&input[i..i + run]);
                        i += run;
                        continue;
                    }
                    if input[i] == b'\n' {
                        return DataProgress::Failed(DataError::BareLf);
                    }
                    self.state = State::Cr;
                    i += 1;
                }
                State::Cr => {
                    if input[i] != b'\n' {
                        return DataProgress::Failed(DataError::BareCr);
                    }
                    self.line_len += 2;
                    self.end_line();
                    self.emit(b"\r\n");
                    self.state = State::LineStart;
                    i += 1;
                }
                State::Dot => match input[i] {
                    b'\r' => {
                        self.state = State::DotCr;
                        i += 1;
                    }
                    b'\n' => return DataProgress::Failed(DataError::BareLf),
                    // A stuffed dot: drop it, the line goes on (§4.5.2).
                    _ => self.state = State::InLine,
                },
                State::DotCr => {
                    if input[i] != b'\n' {
                        return DataProgress::Failed(DataError::BareCr);
                    }
                    return DataProgress::Done { consumed: i + 1 };
                }
            }
        }
        DataProgress::NeedMore
    }
}

/// BDAT reader: collects chunks of announced sizes. Chunk content is not
/// dot-stuffed; it is checked for bare CR/LF and line length when the last
/// chunk has arrived, because mxg relays it on with DATA where such bytes
/// would become a smuggling vector downstream.
/// Most octets a BDAT chunk has room made for before they arrive.
const RESERVE_AHEAD: usize = 1 << 20;

#[derive(Debug, Default)]
pub struct BdatReader {
    body: Vec<u8>,
    remaining: u64,
    /// Counting only, nothing kept (`discarding`, `discard`).
    discarding: bool,
    /// Set once the body passed the size limit; bytes are then discarded.
    pub oversize: bool,
    /// All octets announced so far, counted even when oversize.
    pub size: u64,
}

impl BdatReader {
    /// Starts a chunk of `len` octets. Any size that was read as a number
    /// is read past in full, even far over the limit, so that client and
    /// server stay in step (RFC 3030 §2; as DATA reads to its end).
    pub fn begin_chunk(&mut self, len: u64, max_size: usize) {
        self.remaining = len;
        self.size = self.size.saturating_add(len);
        if self.size > max_size as u64 {
            self.oversize = true;
            self.body = Vec::new();
        } else if !self.discarding {
            // Room for what is announced, up to RESERVE_AHEAD: a client that
            // announces a large chunk and sends nothing must not make the
            // server allocate it (issue 14: 60 connections sending
            // `BDAT 52000000 LAST` took RSS to 3 GB). The body grows as the
            // octets arrive.
            let ahead = usize::try_from(len).map_or(RESERVE_AHEAD, |l| l.min(RESERVE_AHEAD));
            self.body.reserve(ahead);
        }
    }

    /// A reader that only counts: for a chunk that is refused (no
    /// transaction, or over the sessions' memory budget) but must still be
    /// read off the wire (RFC 3030 §3). Nothing of it is kept.
    pub fn discarding() -> Self {
        Self {
            discarding: true,
            ..Self::default()
        }
    }

    /// Stops keeping octets (the sessions' memory budget is spent); the
    /// chunks are still counted and read past.
    pub fn discard(&mut self) {
        self.discarding = true;
        self.body = Vec::new();
    }

    pub fn is_discarding(&self) -> bool {
        self.discarding
    }

    /// Feeds bytes of the current chunk; returns how many were taken. The
    /// chunk is complete when `chunk_done` is true.
    pub fn feed(&mut self, input: &[u8]) -> usize {
        let take = usize::try_from(self.remaining).map_or(input.len(), |r| input.len().min(r));
        if !self.oversize && !self.discarding {
            self.body.extend_from_slice(&input[..take]);
        }
        self.remaining -= take as u64;
        take
    }

    pub fn chunk_done(&self) -> bool {
        self.remaining == 0
    }

    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// Checks a complete body for bare CR, bare LF and over-long lines;
/// returns the longest line length on success.
pub fn check_line_ends(body: &[u8]) -> Result<usize, DataError> {
    let mut longest = 0;
    let mut start = 0;
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'\r' => {
                if body.get(i + 1) != Some(&b'\n') {
                    return Err(DataError::BareCr);
                }
                longest = longest.max(i + 2 - start);
                i += 2;
                start = i;
            }
            b'\n' => return Err(DataError::BareLf),
            _ => i += 1,
        }
    }
    Ok(longest.max(body.len() - start))
}

#[cfg(test)]
mod tests {
    #[test]
    fn rule_12b_an_announced_chunk_is_not_allocated_before_it_arrives() {
        let mut r = BdatReader::default();
        r.begin_chunk(52_000_000, 60_000_000);
        assert!(r.body.capacity() <= RESERVE_AHEAD);
        assert_eq!(r.feed(b"abc"), 3);
        assert_eq!(r.body(), b"abc");
    }

    #[test]
    fn rule_12b_a_discarding_reader_reads_past_and_keeps_nothing() {
        let mut r = BdatReader::discarding();
        r.begin_chunk(10, 100);
        assert_eq!(r.feed(b"0123456789NEXT"), 10);
        assert!(r.chunk_done() && r.body().is_empty() && r.body.capacity() == 0);
        let mut d = DataReader::new(1000, 1 << 20);
        assert_eq!(d.feed(b"abc\r\n"), DataProgress::NeedMore);
        d.discard();
        assert_eq!(d.feed(b"def\r\n.\r\n"), DataProgress::Done { consumed: 8 });
        assert_eq!(d.held(), 0);
        assert_eq!(d.size, 10);
    }

    use super::*;

    fn read_all(input: &[u8]) -> (DataProgress, Vec<u8>) {
        let mut r = DataReader::new(1000, 1 << 20);
        let p = r.feed(input);
        (p, r.into_body())
    }

    #[test]
    fn ends_at_crlf_dot_crlf_and_unstuffs() {
        let (p, body) = read_all(b"Subject: x\r\n\r\n..hidden\r\n.\r\nQUIT\r\n");
        assert_eq!(p, DataProgress::Done { consumed: 27 });
        assert_eq!(body, b"Subject: x\r\n\r\n.hidden\r\n");
    }

    #[test]
    fn end_split_across_reads() {
        let mut r = DataReader::new(1000, 1 << 20);
        assert_eq!(r.feed(b"a\r\n.\r"), DataProgress::NeedMore);
        assert_eq!(r.feed(b"\nNOOP"), DataProgress::Done { consumed: 1 });
        assert_eq!(r.into_body(), b"a\r\n");
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        for shape in [
            &b"a\r\n\n.\n\r\n"[..],
            b"a\n.\r\n",
            b"a\r\n.\n",
            b"a\r.\r\n",
            b"a\r\n.\r\r\n",
            b"a\n.\r\nMAIL FROM:<x@y>\r\n",
        ] {
            let (p, _) = read_all(shape);
            assert!(matches!(p, DataProgress::Failed(_)), "{shape:?} gave {p:?}");
        }
    }

    #[test]
    fn size_limit_keeps_reading_to_the_end() {
        let mut r = DataReader::new(1000, 10);
        assert_eq!(
            r.feed(b"0123456789abc\r\n.\r\n"),
            DataProgress::Done { consumed: 18 }
        );
        assert!(r.oversize);
        assert_eq!(r.size, 15);
    }

    #[test]
    fn long_line_is_measured() {
        let mut r = DataReader::new(10, 1000);
        let mut msg = vec![b'x'; 20];
        msg.extend_from_slice(b"\r\n.\r\n");
        assert!(matches!(r.feed(&msg), DataProgress::Done { .. }));
        assert!(r.line_too_long());
        assert_eq!(r.longest_line, 22);
    }

    #[test]
    fn bdat_chunks_and_line_end_check() {
        let mut r = BdatReader::default();
        r.begin_chunk(5, 100);
        assert_eq!(r.feed(b"ab\r\ncdef"), 5);
        assert!(r.chunk_done());
        assert_eq!(r.body(), b"ab\r\nc");
        assert_eq!(check_line_ends(b"ab\r\ncd\r\n"), Ok(4));
        assert_eq!(check_line_ends(b"ab\ncd"), Err(DataError::BareLf));
        assert_eq!(check_line_ends(b"ab\rcd"), Err(DataError::BareCr));
    }
}
