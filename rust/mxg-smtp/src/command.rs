//! Command lines: framing with a length limit, then MAIL, RCPT and BDAT by
//! mxg's own reader (`envelope`), the rest by `smtp-proto`'s parser.

use crate::envelope::{parse_bdat, parse_mail, parse_rcpt, Bdat, MailArgs, RcptArgs};
use crate::reply::Reply;
use smtp_proto::Request;

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Mail(MailArgs),
    Rcpt(RcptArgs),
    Bdat(Bdat),
    /// Every other command, as `smtp-proto` reads it.
    Other(Request<String>),
}

/// Splits a byte stream into command lines, each at most `max_line` octets
/// including its line end.
#[derive(Debug)]
pub struct LineFramer {
    buf: Vec<u8>,
    max_line: usize,
    /// Set while the rest of an over-long line is being skipped.
    skipping: bool,
}

/// One framed line, or the report that a line was too long and was skipped.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed {
    Line(Vec<u8>),
    TooLong,
}

impl LineFramer {
    pub fn new(max_line: usize) -> Self {
        Self {
            buf: Vec::with_capacity(512),
            max_line,
            skipping: false,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet framed; after STARTTLS these must be
    /// thrown away (RFC 3207 §4.2, ARCHITECTURE.md rule 6).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn discard_buffered(&mut self) {
        self.buf.clear();
        self.skipping = false;
    }

    /// Takes the buffered bytes, for a DATA/BDAT reader that follows a
    /// pipelined command in the same packet.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Next complete line (with its line end), if any.
    pub fn next_line(&mut self) -> Option<Framed> {
        loop {
            match self.buf.iter().position(|&b| b == b'\n') {
                Some(pos) => {
                    let rest = self.buf.split_off(pos + 1);
                    let line = std::mem::replace(&mut self.buf, rest);
                    if self.skipping {
                        self.skipping = false;
                        return Some(Framed::TooLong);
                    }
                    if line.len() > self.max_line {
                        return Some(Framed::TooLong);
                    }
                    return Some(Framed::Line(line));
                }
                None if self.buf.len() > self.max_line => {
                    // Keep nothing of the over-long line; report it when its
                    // end arrives so the reply stays in step with the client.
                    self.buf.clear();
                    self.skipping = true;
                }
                None => return None,
            }
            if self.buf.is_empty() {
                return None;
            }
        }
    }
}

/// A command line that could not be accepted, with the reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    pub reply: Reply,
}

impl CommandError {
    pub fn reply(reply: Reply) -> Self {
        Self { reply }
    }
}

/// Parses one framed command line.
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    let body = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))
        .unwrap_or(line);
    let verb_len = body.iter().position(|&b| b == b' ').unwrap_or(body.len());
    let (verb, rest) = body.split_at(verb_len);
    for (name, own) in [("MAIL", 0), ("RCPT", 1), ("BDAT", 2)] {
        if !verb.eq_ignore_ascii_case(name.as_bytes()) {
            continue;
        }
        let Ok(rest) = std::str::from_utf8(rest) else {
            // Never U+FFFD: that would be mail for a different address.
            return match own {
                2 => Ok(Command::Bdat(Bdat::Lost(Reply::new(
                    501,
                    "5.5.4",
                    "Syntax: BDAT chunk-size [LAST]",
                )))),
                _ => Err(CommandError::reply(Reply::new(
                    553,
                    "5.6.7",
                    "Address is not valid UTF-8 (RFC 6531 3.3)",
                ))),
            };
        };
        return match own {
            0 => parse_mail(rest).map(Command::Mail),
            1 => parse_rcpt(rest).map(Command::Rcpt),
            _ => Ok(Command::Bdat(parse_bdat(rest))),
        };
    }
    parse_other(line)
}

/// Everything but MAIL, RCPT and BDAT, by `smtp-proto`.
fn parse_other(line: &[u8]) -> Result<Command, CommandError> {
    use smtp_proto::Error;
    let mut owned;
    let line = if line.ends_with(b"\n") {
        line
    } else {
        owned = line.to_vec();
        owned.push(b'\n');
        &owned
    };
    match Request::parse(&mut line.iter()) {
        Ok(req) => Ok(Command::Other(req.into_owned())),
        Err(err) => Err(CommandError::reply(match err {
            Error::UnknownCommand | Error::NeedsMoreData { .. } => {
                Reply::new(500, "5.5.1", "Command unrecognized")
            }
            Error::InvalidSenderAddress => Reply::new(501, "5.1.7", "Bad sender address syntax"),
            Error::InvalidRecipientAddress => {
                Reply::new(501, "5.1.3", "Bad recipient address syntax")
            }
            Error::SyntaxError { syntax } => Reply::new(501, "5.5.4", format!("Syntax: {syntax}")),
            Error::InvalidParameter { param } => {
                Reply::new(501, "5.5.4", format!("Invalid parameter {param}"))
            }
            Error::UnsupportedParameter { param } => Reply::new(
                555,
                "5.5.4",
                format!("Unsupported parameter {}", sanitize(&param)),
            ),
            Error::ResponseTooLong => Reply::new(500, "5.5.2", "Line too long"),
            Error::InvalidResponse { .. } => Reply::new(500, "5.5.2", "Syntax error"),
        })),
    }
}

/// Keeps client-supplied text printable before it is echoed in a reply.
fn sanitize(s: &str) -> String {
    s.chars().filter(char::is_ascii_graphic).take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_lines_and_keeps_the_rest() {
        let mut f = LineFramer::new(100);
        f.push(b"EHLO a\r\nMAIL FROM:<x@y>\r\nRC");
        assert_eq!(f.next_line(), Some(Framed::Line(b"EHLO a\r\n".to_vec())));
        assert_eq!(
            f.next_line(),
            Some(Framed::Line(b"MAIL FROM:<x@y>\r\n".to_vec()))
        );
        assert_eq!(f.next_line(), None);
        assert_eq!(f.buffered(), 2);
    }

    #[test]
    fn over_long_line_is_reported_once_at_its_end() {
        let mut f = LineFramer::new(10);
        f.push(&[b'A'; 25]);
        assert_eq!(f.next_line(), None);
        f.push(b"AAA\r\nNOOP\r\n");
        assert_eq!(f.next_line(), Some(Framed::TooLong));
        assert_eq!(f.next_line(), Some(Framed::Line(b"NOOP\r\n".to_vec())));
    }

    #[test]
    fn parses_dsn_parameters() {
        let cmd =
            parse_command(b"MAIL FROM:<a@b.example> RET=HDRS ENVID=abc SIZE=100\r\n").unwrap();
        let Command::Mail(from) = cmd else {
            panic!("unexpected {cmd:?}")
        };
        assert_eq!(from.address, "a@b.example");
        assert_eq!(from.envid.as_deref(), Some("abc"));
        assert_eq!(from.size, Some(100));
        assert_eq!(from.ret, Some("HDRS"));
        let cmd = parse_command(
            b"rcpt to:<r@c.example> NOTIFY=FAILURE,DELAY ORCPT=rfc822;r@c.example\r\n",
        )
        .unwrap();
        let Command::Rcpt(to) = cmd else {
            panic!("unexpected {cmd:?}")
        };
        assert_eq!(to.orcpt.as_deref(), Some("r@c.example"));
        assert_eq!(to.notify, ["FAILURE", "DELAY"]);
    }

    #[test]
    fn rule_12a_invalid_utf8_is_refused_never_replaced() {
        let err = parse_command(b"RCPT TO:<j\xf6rg@example.net>\r\n").unwrap_err();
        assert_eq!(
            (err.reply.code, err.reply.enhanced.as_str()),
            (553, "5.6.7")
        );
        let err = parse_command(b"MAIL FROM:<\xff@example.net> SMTPUTF8\r\n").unwrap_err();
        assert_eq!(err.reply.code, 553);
    }

    #[test]
    fn bdat_is_read_by_mxg() {
        assert_eq!(
            parse_command(b"BDAT 99999999999999999999999 LAST\r\n").unwrap(),
            Command::Bdat(Bdat::Lost(crate::envelope::too_large("BDAT chunk size")))
        );
        assert_eq!(
            parse_command(b"bdat 12 last\r\n").unwrap(),
            Command::Bdat(Bdat::Chunk {
                size: 12,
                last: true
            })
        );
    }

    #[test]
    fn unknown_command_gets_500() {
        let err = parse_command(b"FROB\r\n").unwrap_err();
        assert_eq!(err.reply.code, 500);
    }
}
