//! The Received trace header (RFC 5321 §4.4) and the RFC 5322 date in it.

use std::time::{SystemTime, UNIX_EPOCH};

/// `Thu, 26 Nov 2026 14:15:47 +0000` for a time in UTC.
// Day counts since 1970 fit i64 and are never negative here.
#[allow(clippy::cast_possible_wrap, clippy::cast_sign_loss)]
pub fn rfc5322_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    format!(
        "{weekday}, {d} {month} {y} {:02}:{:02}:{:02} +0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
// Day and month values are in 1..=31 and 1..=12 by construction.
#[allow(clippy::cast_sign_loss)]
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

pub struct TraceInfo<'a> {
    pub helo: &'a str,
    pub client_ip: &'a str,
    pub hostname: &'a str,
    /// `ESMTP`, `ESMTPS` (TLS) or `SMTP` (HELO), RFC 3848.
    pub protocol: &'a str,
    pub queue_id: &'a str,
    pub tls: Option<&'a str>,
    /// The recipient, named only when there is exactly one (privacy).
    pub single_recipient: Option<&'a str>,
}

/// The Received header field, folded, with CRLF.
pub fn received_header(t: &TraceInfo<'_>, now: SystemTime) -> String {
    let mut h = format!(
        "Received: from {} ([{}])\r\n\tby {} (mxg) with {} id {}",
        sanitize(t.helo),
        t.client_ip,
        t.hostname,
        t.protocol,
        t.queue_id
    );
    if let Some(tls) = t.tls {
        h.push_str(&format!("\r\n\t({tls})"));
    }
    if let Some(rcpt) = t.single_recipient {
        h.push_str(&format!("\r\n\tfor <{}>", sanitize(rcpt)));
    }
    h.push_str(&format!(";\r\n\t{}\r\n", rfc5322_date(now)));
    h
}

/// Client-chosen text in a header: printable ASCII without parentheses or
/// angle brackets, so it cannot break out of its place.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() && !"()<>;\\".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(255)
        .collect()
}

/// Counts Received header fields in the header section, for the hop limit
/// (RFC 5321 §6.3: a loop is assumed past 100).
pub fn count_received(message: &[u8]) -> usize {
    let mut count = 0;
    for line in message.split(|&b| b == b'\n') {
        if line == b"\r" || line.is_empty() {
            break;
        }
        if line.len() >= 9 && line[..9].eq_ignore_ascii_case(b"received:") {
            count += 1;
        }
    }
    count
}

/// The Message-ID field's value (unfolded, at most 998 octets), if the
/// header section has one.
pub fn message_id(message: &[u8]) -> Option<String> {
    let mut lines = message.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None;
        }
        if line.len() >= 11 && line[..11].eq_ignore_ascii_case(b"message-id:") {
            let mut value = String::from_utf8_lossy(&line[11..]).trim().to_owned();
            while let Some(next) = lines.peek() {
                if !next.starts_with(b" ") && !next.starts_with(b"\t") {
                    break;
                }
                let next = lines.next().unwrap_or_default();
                value.push_str(String::from_utf8_lossy(next).trim());
            }
            value.truncate(998);
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_dates() {
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 1 Jan 1970 00:00:00 +0000");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_788_947);
        assert_eq!(rfc5322_date(t), "Fri, 27 Nov 2026 14:15:47 +0000");
    }

    #[test]
    fn counts_received_in_header_only() {
        let m = b"Received: a\r\nreceived: b\r\nSubject: x\r\n\r\nReceived: body\r\n";
        assert_eq!(count_received(m), 2);
    }

    #[test]
    fn finds_folded_message_id() {
        let m = b"Subject: x\r\nMessage-Id:\r\n <a@b.example>\r\n\r\nMessage-ID: <no>\r\n";
        assert_eq!(message_id(m).as_deref(), Some("<a@b.example>"));
        assert_eq!(
            message_id(b"Subject: x\r\n\r\nMessage-ID: <body>\r\n"),
            None
        );
    }

    #[test]
    fn client_text_cannot_break_the_header() {
        let h = received_header(
            &TraceInfo {
                helo: "evil\r\nX-Injected: 1",
                client_ip: "127.0.0.1",
                hostname: "mxg.example",
                protocol: "ESMTP",
                queue_id: "0000000000000001",
                tls: None,
                single_recipient: None,
            },
            UNIX_EPOCH,
        );
        assert!(!h.contains("\r\nX-Injected"));
    }
}
