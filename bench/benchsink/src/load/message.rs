//! Message content: headers unique to each message, a deterministic body,
//! and the transparency rule (dot-stuffing, RFC 5321 §4.5.2) applied on the
//! way out.
//!
//! The body is built and stuffed once per run; each message copies a prefix
//! of it sized so that headers plus body come to the requested size, which
//! keeps the generator's cost per message at a few hundred bytes of
//! formatting and one copy.

use super::date;

/// Body lines stay within the 78 characters RFC 5322 §2.1.1 recommends
/// (the hard limit is 998), as ordinary mail does.
const LINE_WIDTH: usize = 78;

/// Pads the last body line to hit the size; starts with a letter, so it
/// never needs stuffing.
const FILLER: &[u8; LINE_WIDTH] =
    b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor";

/// The vocabulary of the body text.
const WORDS: &str = "relay queue message delivery transport domain policy the and of \
                     secure envelope recipient throughput latency spool";

/// Every this many body lines one starts with a dot, so that the receiver's
/// dot-unstuffing is exercised as real mail (quoted text, `...`) does.
const DOT_EVERY: usize = 25;

pub struct Generator {
    from: String,
    /// Right-hand side of Message-IDs.
    id_domain: String,
    /// Makes Message-IDs unique across runs, not only within one.
    run_id: String,
    /// Requested size of headers plus body, before stuffing.
    size: usize,
    body: Body,
}

/// The body text, dot-stuffed and CRLF-terminated, with the cumulative
/// (plain, wire) length after each line, so a prefix of whole lines of a
/// given plain size is found by binary search.
struct Body {
    wire: Vec<u8>,
    ends: Vec<(usize, usize)>,
}

impl Generator {
    pub fn new(from: &str, id_domain: &str, size: usize) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            from: from.to_owned(),
            id_domain: id_domain.to_owned(),
            run_id: format!("{:x}.{:x}", now.as_micros(), std::process::id()),
            size,
            body: Body::new(size),
        }
    }

    /// Appends message `n`'s content to `out`, dot-stuffed, without the
    /// terminating `.<CRLF>`. `to` goes in the To header. Returns the size
    /// of the message as the receiver stores it (before stuffing).
    pub fn write(&self, n: u64, to: &str, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        // No header line starts with a dot (each starts with a field name),
        // so the header block needs no stuffing.
        out.extend_from_slice(
            format!(
                "Date: {}\r\nFrom: <{}>\r\nTo: <{to}>\r\nSubject: bench {n}\r\n\
                 Message-ID: <{n}.{}@{}>\r\nMIME-Version: 1.0\r\n\
                 Content-Type: text/plain; charset=us-ascii\r\n\r\n",
                date::now(),
                self.from,
                self.run_id,
                self.id_domain
            )
            .as_bytes(),
        );
        let headers = out.len() - start;
        let budget = self.size.saturating_sub(headers);
        let whole = self
            .body
            .ends
            .partition_point(|&(plain, _)| plain <= budget);
        let (mut plain, wire) = whole
            .checked_sub(1)
            .map_or((0, 0), |last| self.body.ends[last]);
        out.extend_from_slice(&self.body.wire[..wire]);
        // One shorter line makes up the rest (at least one character and
        // the CRLF), so sizes come out exact to within two octets.
        let rest = budget - plain;
        if rest >= 3 {
            let take = (rest - 2).min(FILLER.len());
            out.extend_from_slice(&FILLER[..take]);
            out.extend_from_slice(b"\r\n");
            plain += take + 2;
        }
        headers + plain
    }
}

impl Body {
    /// Text lines until at least `size` plain octets; deterministic (fixed
    /// seed) so every run and every message carries the same text.
    fn new(size: usize) -> Self {
        let mut body = Self {
            wire: Vec::with_capacity(size + size / 32),
            ends: Vec::new(),
        };
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut plain = 0;
        let words: Vec<&str> = WORDS.split_ascii_whitespace().collect();
        let mut line = String::with_capacity(LINE_WIDTH);
        while plain < size {
            let i = body.ends.len();
            line.clear();
            if i % DOT_EVERY == 7 {
                line.push('.');
            }
            // The first dotted line is a lone ".", the look-alike of the
            // end-of-data mark that stuffing exists for.
            if i != 7 {
                // Widths vary (40..=78) so line ends do not fall into step
                // with anything.
                let width = 40 + (rng.next() % 39) as usize;
                loop {
                    let word = words[(rng.next() % words.len() as u64) as usize];
                    let sep = usize::from(!line.is_empty() && line != ".");
                    if line.len() + sep + word.len() > width {
                        break;
                    }
                    if sep == 1 {
                        line.push(' ');
                    }
                    line.push_str(word);
                }
            }
            push_stuffed(line.as_bytes(), &mut body.wire);
            plain += line.len() + 2;
            body.ends.push((plain, body.wire.len()));
        }
        body
    }
}

/// Appends one line and its CRLF, doubling a leading dot (RFC 5321
/// §4.5.2) so the receiver cannot mistake it for the end of the data.
pub fn push_stuffed(line: &[u8], out: &mut Vec<u8>) {
    if line.first() == Some(&b'.') {
        out.push(b'.');
    }
    out.extend_from_slice(line);
    out.extend_from_slice(b"\r\n");
}

/// A fixed-seed generator for varied but reproducible text.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dot::DotScanner;

    /// Lines of the wire form, CRLF removed.
    fn lines(wire: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut rest = wire;
        while !rest.is_empty() {
            let end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("CRLF line ends");
            out.push(&rest[..end]);
            rest = &rest[end + 2..];
        }
        out
    }

    /// The message as the receiver stores it.
    fn unstuff(wire: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in lines(wire) {
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn sizes_within_five_percent() {
        for size in [600, 1024, 5120, 100_000, 1_000_000] {
            let g = Generator::new("bench@from.test", "load.test", size);
            for n in [1, 999_999] {
                let mut wire = Vec::new();
                let reported = g.write(n, "u1-0@a.test", &mut wire);
                let plain = unstuff(&wire);
                assert_eq!(reported, plain.len());
                let diff = plain.len().abs_diff(size);
                assert!(diff * 20 <= size, "size {size}: got {}", plain.len());
            }
        }
    }

    #[test]
    fn headers_and_unique_ids() {
        let g = Generator::new("bench@from.test", "load.test", 2000);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        g.write(42, "u42-0@a.test", &mut a);
        g.write(43, "u43-0@a.test", &mut b);
        let text = String::from_utf8(a).unwrap();
        let (head, _) = text.split_once("\r\n\r\n").unwrap();
        for want in [
            "From: <bench@from.test>",
            "To: <u42-0@a.test>",
            "Subject: bench 42",
        ] {
            assert!(head.lines().any(|l| l == want), "{want} missing:\n{head}");
        }
        let date = head.lines().find_map(|l| l.strip_prefix("Date: ")).unwrap();
        assert!(date.ends_with(" +0000"), "{date}");
        let id = |t: &str| {
            t.lines()
                .find_map(|l| l.strip_prefix("Message-ID: "))
                .unwrap()
                .to_owned()
        };
        let id42 = id(&text);
        assert!(id42.starts_with("<42.") && id42.ends_with("@load.test>"));
        assert_ne!(id42, id(&String::from_utf8(b).unwrap()));
    }

    #[test]
    fn lines_short_and_printable() {
        let g = Generator::new("bench@from.test", "load.test", 50_000);
        let mut wire = Vec::new();
        g.write(1, "x@y.test", &mut wire);
        for line in lines(&wire) {
            assert!(line.len() <= 998, "{} octets", line.len());
            assert!(line.iter().all(|&b| (b' '..=b'~').contains(&b)));
        }
        let plain = unstuff(&wire);
        assert!(lines(&plain).iter().all(|l| l.len() <= LINE_WIDTH));
    }

    #[test]
    fn dot_stuffing() {
        let mut out = Vec::new();
        push_stuffed(b".", &mut out);
        push_stuffed(b".x", &mut out);
        push_stuffed(b"x.", &mut out);
        push_stuffed(b"", &mut out);
        assert_eq!(out, b"..\r\n..x\r\nx.\r\n\r\n");

        // The generated body has dotted lines, a lone dot among them, and
        // the sink's scanner finds the end only at the real terminator.
        let g = Generator::new("bench@from.test", "load.test", 10_000);
        let mut wire = Vec::new();
        g.write(1, "x@y.test", &mut wire);
        let plain = unstuff(&wire);
        assert!(lines(&plain).contains(&&b"."[..]));
        assert!(lines(&plain).iter().filter(|l| l.starts_with(b".")).count() > 3);
        assert!(lines(&wire)
            .iter()
            .all(|l| !l.starts_with(b".") || l.starts_with(b"..")));
        wire.extend_from_slice(b".\r\n");
        assert_eq!(DotScanner::new().feed(&wire), Some(wire.len()));
    }
}
