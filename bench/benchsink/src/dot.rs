//! End-of-DATA detection over a byte stream.
//!
//! RFC 5321 §4.1.1.4: the mail data ends with the sequence
//! `<CRLF>.<CRLF>`. The first line of the data counts as following a CRLF
//! (the one ending the `DATA` command), so an empty message is just `.\r\n`.
//! Because the sink discards content, dot-stuffing (§4.5.2) needs no undoing:
//! a line `..foo` simply fails to match the terminator. Only a CR LF pair
//! starts a new line here (bare LF does not), so the sink agrees with a strict
//! receiver on where a message ends.

/// Incremental scanner; feed it successive chunks of the data stream.
#[derive(Debug, Clone, Copy)]
pub struct DotScanner {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line, having matched this many bytes of `.\r\n`.
    LineStart(u8),
    /// Inside a line; `prev_cr` remembers a CR ending the previous chunk so
    /// that a CR LF split across reads is still recognised.
    MidLine { prev_cr: bool },
}

const TERMINATOR: &[u8; 3] = b".\r\n";

impl Default for DotScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl DotScanner {
    /// A scanner positioned just after the CRLF that ended `DATA`.
    pub fn new() -> Self {
        Self {
            state: State::LineStart(0),
        }
    }

    /// Consumes `buf`. Returns `Some(n)` when the terminator ends at
    /// `buf[n - 1]` (bytes from `n` on belong to the next command), or `None`
    /// when all of `buf` is message content and more is needed.
    pub fn feed(&mut self, buf: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < buf.len() {
            match self.state {
                State::LineStart(m) => {
                    if buf[i] == TERMINATOR[usize::from(m)] {
                        i += 1;
                        if m == 2 {
                            self.state = State::LineStart(0);
                            return Some(i);
                        }
                        self.state = State::LineStart(m + 1);
                    } else {
                        // Re-examine this byte as ordinary content. If we had
                        // matched ".\r", that CR may pair with an LF here.
                        self.state = State::MidLine { prev_cr: m == 2 };
                    }
                }
                State::MidLine { prev_cr } => {
                    let rest = &buf[i..];
                    if let Some(p) = rest.iter().position(|&b| b == b'\n') {
                        let cr = if p == 0 {
                            prev_cr
                        } else {
                            rest[p - 1] == b'\r'
                        };
                        i += p + 1;
                        self.state = if cr {
                            State::LineStart(0)
                        } else {
                            State::MidLine { prev_cr: false }
                        };
                    } else {
                        self.state = State::MidLine {
                            prev_cr: rest.last() == Some(&b'\r'),
                        };
                        i = buf.len();
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::DotScanner;

    /// Feeds `data` split into chunks of every size and checks the result
    /// is independent of where reads happen to split it.
    fn end_at(data: &[u8]) -> Option<usize> {
        let mut whole = DotScanner::new();
        let expect = whole.feed(data);
        for chunk in 1..=data.len().max(1) {
            let mut s = DotScanner::new();
            let mut off = 0;
            let mut got = None;
            for c in data.chunks(chunk) {
                if let Some(n) = s.feed(c) {
                    got = Some(off + n);
                    break;
                }
                off += c.len();
            }
            assert_eq!(got, expect, "chunk size {chunk}");
        }
        expect
    }

    #[test]
    fn empty_message() {
        assert_eq!(end_at(b".\r\nQUIT\r\n"), Some(3));
    }

    #[test]
    fn ordinary_message() {
        let m = b"Subject: x\r\n\r\nbody\r\n.\r\nMAIL";
        assert_eq!(end_at(m), Some(m.len() - 4));
    }

    #[test]
    fn dot_stuffed_and_lookalikes() {
        assert_eq!(end_at(b"..\r\n.x\r\n.\r\r\n\n.\r\nfoo.\r\n"), None);
        let m = b"a\r\n..\r\n.\r\r\n.\r\n";
        assert_eq!(end_at(m), Some(m.len()));
    }

    #[test]
    fn bare_lf_does_not_start_a_line() {
        assert_eq!(end_at(b"a\n.\r\nb"), None);
        assert_eq!(end_at(b"a\n.\n"), None);
    }
}
