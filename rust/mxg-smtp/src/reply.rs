//! SMTP replies: formatting on the server side, parsing on the client side
//! (RFC 5321 §4.2, enhanced status codes RFC 3463 / RFC 2034).

use std::fmt::Write as _;

/// One SMTP reply, possibly multi-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Enhanced status code such as `2.0.0`; empty when the peer sent none.
    pub enhanced: String,
    /// Text lines without code and enhanced code.
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, enhanced: &str, text: impl Into<String>) -> Self {
        Self {
            code,
            enhanced: enhanced.to_owned(),
            lines: vec![text.into()],
        }
    }

    pub fn multi(code: u16, lines: Vec<String>) -> Self {
        Self {
            code,
            enhanced: String::new(),
            lines,
        }
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// All text lines joined by a space, as they go into logs and events.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// Wire form, every line ending in CRLF. Enhanced codes are repeated on
    /// every line of a multi-line reply (RFC 2034 §4).
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = String::new();
        let count = self.lines.len().max(1);
        for i in 0..count {
            let sep = if i + 1 == count { ' ' } else { '-' };
            let text = self.lines.get(i).map_or("", String::as_str);
            if self.enhanced.is_empty() {
                let _ = write!(out, "{}{sep}{text}\r\n", self.code);
            } else {
                let _ = write!(out, "{}{sep}{} {text}\r\n", self.code, self.enhanced);
            }
        }
        out.into_bytes()
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.enhanced.is_empty() {
            write!(f, "{} {}", self.code, self.text())
        } else {
            write!(f, "{} {} {}", self.code, self.enhanced, self.text())
        }
    }
}

/// Why a server's reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("malformed reply line: {0:?}")]
    Malformed(String),
    #[error("reply longer than {0} lines or octets")]
    TooLong(usize),
}

/// Incremental reply parser for the client: feed lines, get a reply when
/// the last line (code followed by a space) arrives.
#[derive(Debug, Default)]
pub struct ReplyParser {
    code: Option<u16>,
    lines: Vec<String>,
}

/// A server may send at most this many continuation lines in one reply;
/// EHLO answers have a dozen, nothing legitimate comes near it.
const MAX_REPLY_LINES: usize = 256;

impl ReplyParser {
    /// Feed one line (without CRLF). Returns the complete reply once the
    /// final line has been seen.
    pub fn feed(&mut self, line: &[u8]) -> Result<Option<Reply>, ReplyError> {
        let text = String::from_utf8_lossy(line);
        let bytes = text.as_bytes();
        if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) {
            return Err(ReplyError::Malformed(text.into_owned()));
        }
        let code: u16 = text[..3]
            .parse()
            .map_err(|_| ReplyError::Malformed(text.to_string()))?;
        if !(200..600).contains(&code) {
            return Err(ReplyError::Malformed(text.into_owned()));
        }
        if let Some(prev) = self.code {
            if prev != code {
                return Err(ReplyError::Malformed(text.into_owned()));
            }
        }
        self.code = Some(code);
        let (last, rest) = match bytes.get(3) {
            None | Some(b' ') => (true, text.get(4..).unwrap_or("")),
            Some(b'-') => (false, text.get(4..).unwrap_or("")),
            Some(_) => return Err(ReplyError::Malformed(text.into_owned())),
        };
        self.lines.push(rest.to_owned());
        if self.lines.len() > MAX_REPLY_LINES {
            return Err(ReplyError::TooLong(MAX_REPLY_LINES));
        }
        if !last {
            return Ok(None);
        }
        let lines = std::mem::take(&mut self.lines);
        self.code = None;
        Ok(Some(split_enhanced(code, lines)))
    }
}

/// Moves an enhanced status code (RFC 3463 `class.subject.detail`) off the
/// text lines, when the first line carries one whose class matches the code.
fn split_enhanced(code: u16, mut lines: Vec<String>) -> Reply {
    let class = char::from(b'0' + (code / 100) as u8);
    let enhanced = lines
        .first()
        .and_then(|l| l.split_once(' ').map(|(e, _)| e).or(Some(l.as_str())))
        .filter(|e| is_enhanced_code(e) && e.starts_with(class))
        .map(str::to_owned)
        .unwrap_or_default();
    if !enhanced.is_empty() {
        // The code is followed by one SP (RFC 2034 §4: `status-code SP
        // text`), and only that is taken off: `4.3.01` is text, and the
        // wire form of the reply (`to_wire`) parses back to the same lines.
        for line in &mut lines {
            if let Some(rest) = line.strip_prefix(enhanced.as_str()) {
                if rest.is_empty() {
                    line.clear();
                } else if let Some(text) = rest.strip_prefix(' ') {
                    *line = text.to_owned();
                }
            }
        }
    }
    Reply {
        code,
        enhanced,
        lines,
    }
}

fn is_enhanced_code(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_multiline_with_enhanced_code_on_every_line() {
        let r = Reply {
            code: 250,
            enhanced: "2.0.0".into(),
            lines: vec!["a".into(), "b".into()],
        };
        assert_eq!(r.to_wire(), b"250-2.0.0 a\r\n250 2.0.0 b\r\n");
    }

    #[test]
    fn parses_multiline_reply_and_enhanced_code() {
        let mut p = ReplyParser::default();
        assert_eq!(p.feed(b"451-4.3.0 first").unwrap(), None);
        let r = p.feed(b"451 4.3.0 second").unwrap().unwrap();
        assert_eq!(r.code, 451);
        assert_eq!(r.enhanced, "4.3.0");
        assert_eq!(r.lines, vec!["first", "second"]);
        assert!(r.is_transient());
    }

    #[test]
    fn ignores_enhanced_code_of_wrong_class() {
        let mut p = ReplyParser::default();
        let r = p.feed(b"550 4.1.1 odd").unwrap().unwrap();
        assert_eq!(r.enhanced, "");
    }

    #[test]
    fn rejects_garbage_and_code_changes() {
        let mut p = ReplyParser::default();
        assert!(p.feed(b"hello").is_err());
        let mut p = ReplyParser::default();
        p.feed(b"250-a").unwrap();
        assert!(p.feed(b"251 b").is_err());
    }

    #[test]
    fn enhanced_code_and_one_space_come_off_and_the_wire_form_reads_back() {
        // Found by the reply_parser fuzz target: the code was taken off
        // lines where it only began the text, and any run of blanks after
        // it, so the wire form of a reply read back differently.
        let mut p = ReplyParser::default();
        p.feed(b"451-4.3.0 first").unwrap();
        p.feed(b"451-4.3.01 is text").unwrap();
        p.feed(b"451-4.3.0").unwrap();
        let r = p.feed(b"451  4.3.0k").unwrap().unwrap();
        assert_eq!(r.lines, vec!["first", "4.3.01 is text", "", " 4.3.0k"]);
        let wire = r.to_wire();
        let mut again = ReplyParser::default();
        let mut back = None;
        for line in wire.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            back = again.feed(line.strip_suffix(b"\r").unwrap()).unwrap();
        }
        assert_eq!(back, Some(r));
    }

    #[test]
    fn bare_code_is_a_final_line() {
        let mut p = ReplyParser::default();
        let r = p.feed(b"250").unwrap().unwrap();
        assert_eq!(r.code, 250);
    }
}
