//! Byte-level helpers for sending: dot-stuffing and xtext.

/// Dot-stuffs a message for DATA (RFC 5321 §4.5.2) and appends the end
/// marker. The spool holds CRLF-only messages (bare CR/LF are refused on
/// the way in), so only line starts need looking at.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    // Whole lines are copied at once; memchr finds their ends (a byte-wise
    // loop was the data plane's hottest function in the benchmark).
    let mut line_start = 0;
    for end in memchr::memchr_iter(b'\n', message)
        .map(|i| i + 1)
        .chain(std::iter::once(message.len()))
    {
        let line = &message[line_start..end];
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        line_start = end;
    }
    if !message.is_empty() && !message.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// xtext (RFC 3461 §4): octets outside `!`..`~`, and `+` and `=`, as `+XX`.
pub fn xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffs_leading_dots_and_terminates() {
        assert_eq!(
            dot_stuff(b".a\r\nb\r\n..c\r\n"),
            b"..a\r\nb\r\n...c\r\n.\r\n"
        );
        assert_eq!(dot_stuff(b"no newline"), b"no newline\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
        // A lone dot line in the body, and a dot after the last line end.
        assert_eq!(dot_stuff(b"a\r\n.\r\nb"), b"a\r\n..\r\nb\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\r\n.b"), b"a\r\n..b\r\n.\r\n");
        assert_eq!(dot_stuff(b"a.\r\n. .\r\n"), b"a.\r\n.. .\r\n.\r\n");
    }

    #[test]
    fn encodes_xtext() {
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
    }
}
