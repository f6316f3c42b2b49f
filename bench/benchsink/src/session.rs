//! The SMTP command loop (RFC 5321 §4.1) for one plaintext or TLS phase of
//! a connection. Every envelope is accepted and every message discarded.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::conn::{Conn, Line};
use crate::server::Settings;

/// Why a session phase ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// QUIT answered (or an unrecoverable protocol error): close politely.
    Quit,
    /// The peer went away.
    Closed,
    /// STARTTLS answered with 220 and flushed; the caller runs the handshake.
    StartTls,
}

/// Transaction state, reset by EHLO/HELO, RSET and message completion
/// (RFC 5321 §4.1.4).
#[derive(Default)]
struct Txn {
    mail: bool,
    rcpts: u64,
    /// A BDAT chunk was accepted; DATA may no longer be used (RFC 3030 §2).
    bdat: bool,
}

/// Runs commands until QUIT, EOF or STARTTLS. `tls` says whether this phase
/// is already encrypted (then STARTTLS is neither offered nor accepted, and
/// the client must greet again, RFC 3207 §4.2).
// Long on purpose: one match over the sink's SMTP commands, read top to
// bottom like the protocol.
#[allow(clippy::too_many_lines)]
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    settings: &Settings,
    tls: bool,
) -> io::Result<End> {
    let offer_tls = settings.tls.is_some() && !tls;
    let mut line = Vec::with_capacity(256);
    let mut greeted = false;
    let mut txn = Txn::default();
    loop {
        match conn.read_line(&mut line).await? {
            Line::Ok => {}
            Line::Eof => return Ok(End::Closed),
            Line::TooLong => {
                // RFC 5321 §4.2.2 lists 500 for "line too long".
                conn.reply(b"500 5.5.2 Line too long\r\n").await?;
                continue;
            }
        }
        let (verb, arg) = split_command(&line);
        let mut upper = [0u8; 8];
        let verb = if verb.len() <= upper.len() {
            let u = &mut upper[..verb.len()];
            u.copy_from_slice(verb);
            u.make_ascii_uppercase();
            &*u
        } else {
            b"" // longer than any verb we know: unknown
        };
        match verb {
            b"EHLO" | b"HELO" => {
                // §4.1.1.1: the domain (or address literal) is required.
                if arg.is_empty() {
                    conn.reply(b"501 5.5.4 Domain name required\r\n").await?;
                    continue;
                }
                greeted = true;
                txn = Txn::default();
                if verb == b"EHLO" {
                    conn.reply(ehlo_reply(&settings.hostname, offer_tls).as_bytes())
                        .await?;
                } else {
                    conn.reply(format!("250 {}\r\n", settings.hostname).as_bytes())
                        .await?;
                }
            }
            b"MAIL" => {
                // §4.1.4: MAIL needs a greeting and no open transaction.
                // Parameters (SIZE, BODY, SMTPUTF8, RET, ENVID) are accepted
                // and ignored.
                if !greeted {
                    conn.reply(b"503 5.5.1 Send EHLO first\r\n").await?;
                } else if txn.mail {
                    conn.reply(b"503 5.5.1 Nested MAIL command\r\n").await?;
                } else if !starts_with_ci(arg, b"FROM:") {
                    conn.reply(b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n")
                        .await?;
                } else {
                    txn.mail = true;
                    conn.reply(b"250 2.1.0 Ok\r\n").await?;
                }
            }
            b"RCPT" => {
                if !txn.mail {
                    conn.reply(b"503 5.5.1 Need MAIL command\r\n").await?;
                } else if !starts_with_ci(arg, b"TO:") {
                    conn.reply(b"501 5.5.4 Syntax: RCPT TO:<address>\r\n")
                        .await?;
                } else {
                    txn.rcpts += 1;
                    settings.stats.recipient();
                    conn.reply(b"250 2.1.5 Ok\r\n").await?;
                }
            }
            b"DATA" => {
                if !arg.is_empty() {
                    conn.reply(b"501 5.5.4 DATA takes no arguments\r\n").await?;
                } else if let Some(err) = data_refusal(&txn) {
                    // RFC 2920 §3.1: DATA after all RCPTs failed gets 554/503
                    // and no 354, so the client does not send the content.
                    conn.reply(err).await?;
                } else if txn.bdat {
                    conn.reply(b"503 5.5.1 DATA after BDAT\r\n").await?;
                } else {
                    conn.reply(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                        .await?;
                    if !conn.skip_data().await? {
                        return Ok(End::Closed);
                    }
                    accept_message(conn, settings).await?;
                    txn = Txn::default();
                }
            }
            b"BDAT" => {
                let Some((size, last)) = parse_bdat(arg) else {
                    // Without a valid size the chunk cannot be skipped, so
                    // the command stream cannot be resynchronised.
                    conn.reply(b"501 5.5.4 Syntax: BDAT size [LAST]\r\n")
                        .await?;
                    return Ok(End::Quit);
                };
                // RFC 3030 §2: the chunk follows the command unconditionally,
                // so it is consumed even when the command is refused.
                if !conn.skip_exact(size).await? {
                    return Ok(End::Closed);
                }
                if let Some(err) = data_refusal(&txn) {
                    conn.reply(err).await?;
                } else if last {
                    accept_message(conn, settings).await?;
                    txn = Txn::default();
                } else {
                    txn.bdat = true;
                    conn.reply(format!("250 2.0.0 {size} octets received\r\n").as_bytes())
                        .await?;
                }
            }
            b"RSET" => {
                txn = Txn::default();
                conn.reply(b"250 2.0.0 Ok\r\n").await?;
            }
            b"NOOP" => conn.reply(b"250 2.0.0 Ok\r\n").await?,
            b"QUIT" => {
                conn.reply(b"221 2.0.0 Bye\r\n").await?;
                return Ok(End::Quit);
            }
            b"STARTTLS" => {
                if tls {
                    conn.reply(b"503 5.5.1 TLS already active\r\n").await?;
                } else if !offer_tls {
                    conn.reply(b"502 5.5.1 STARTTLS not available\r\n").await?;
                } else if !arg.is_empty() {
                    conn.reply(b"501 5.5.4 STARTTLS takes no arguments\r\n")
                        .await?;
                } else {
                    conn.reply(b"220 2.0.0 Ready to start TLS\r\n").await?;
                    conn.flush().await?;
                    return Ok(End::StartTls);
                }
            }
            _ => conn.reply(b"502 5.5.1 Command not implemented\r\n").await?,
        }
    }
}

/// Counts the message and sends the final reply for DATA or BDAT LAST.
async fn accept_message<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    settings: &Settings,
) -> io::Result<()> {
    if !settings.reply_delay.is_zero() {
        tokio::time::sleep(settings.reply_delay).await;
    }
    let id = settings.stats.message();
    conn.reply(format!("250 2.0.0 Ok: queued as {id:X}\r\n").as_bytes())
        .await
}

/// The refusal for message content arriving without a usable envelope.
fn data_refusal(txn: &Txn) -> Option<&'static [u8]> {
    if !txn.mail {
        Some(b"503 5.5.1 Need MAIL command\r\n")
    } else if txn.rcpts == 0 {
        Some(b"554 5.5.1 No valid recipients\r\n")
    } else {
        None
    }
}

/// The EHLO reply (RFC 5321 §4.1.1.1): hostname, then one extension per
/// line. `SIZE 0` means no fixed limit (RFC 1870 §4).
fn ehlo_reply(hostname: &str, offer_tls: bool) -> String {
    let mut exts = vec![
        "PIPELINING",
        "SIZE 0",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "SMTPUTF8",
        "DSN",
        "CHUNKING",
    ];
    if offer_tls {
        exts.push("STARTTLS");
    }
    let mut out = format!("250-{hostname}\r\n");
    for (i, ext) in exts.iter().enumerate() {
        let sep = if i + 1 == exts.len() { ' ' } else { '-' };
        out.push_str(&format!("250{sep}{ext}\r\n"));
    }
    out
}

/// Splits a command line at the first space; the argument is trimmed.
fn split_command(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|&b| b == b' ') {
        Some(p) => (&line[..p], line[p + 1..].trim_ascii()),
        None => (line.trim_ascii_end(), &[]),
    }
}

fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Parses `size [LAST]` (RFC 3030 §2).
fn parse_bdat(arg: &[u8]) -> Option<(u64, bool)> {
    let text = std::str::from_utf8(arg).ok()?;
    let mut words = text.split_ascii_whitespace();
    let size = words.next()?;
    if !size.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let size = size.parse().ok()?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return None,
    };
    words.next().is_none().then_some((size, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bdat_args() {
        assert_eq!(parse_bdat(b"10"), Some((10, false)));
        assert_eq!(parse_bdat(b"0 last"), Some((0, true)));
        assert_eq!(parse_bdat(b"+5"), None);
        assert_eq!(parse_bdat(b"5 LAST x"), None);
        assert_eq!(parse_bdat(b""), None);
    }

    #[test]
    fn ehlo_lines() {
        let r = ehlo_reply("h", true);
        assert!(r.starts_with("250-h\r\n250-PIPELINING\r\n"));
        assert!(r.ends_with("250-CHUNKING\r\n250 STARTTLS\r\n"));
        assert!(ehlo_reply("h", false).ends_with("250 CHUNKING\r\n"));
    }

    #[test]
    fn command_split() {
        assert_eq!(
            split_command(b"MAIL FROM:<a> "),
            (&b"MAIL"[..], &b"FROM:<a>"[..])
        );
        assert_eq!(split_command(b"QUIT"), (&b"QUIT"[..], &b""[..]));
    }
}
