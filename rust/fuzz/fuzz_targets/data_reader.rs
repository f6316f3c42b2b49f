//! The DATA reader (RFC 5321 §4.5.2) on arbitrary streams cut at
//! arbitrary points.
//!
//! Input: one seed byte (limits, read sizes), then the stream.
//! Invariants:
//! - nothing panics;
//! - the outcome does not depend on how the stream was cut into reads:
//!   the same end (at the same octet), the same error, the same body;
//! - the end is found only at `<CRLF>.<CRLF>` (or `.<CRLF>` first), and
//!   `consumed` lies within the read that completed it;
//! - the body is never larger than what was consumed; it is the consumed
//!   lines with one leading dot deleted (RFC 5321 §4.5.2), and where the
//!   client stuffed every dot line, re-stuffing it gives back exactly the
//!   consumed octets (unstuffing is reversible);
//! - a complete body has no bare CR or LF, so it can be relayed as is;
//! - `size`, `oversize` and `longest_line` agree with the octets on the wire;
//! - any valid body, dot-stuffed and cut anywhere, reads back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxg_fuzz::{as_body, dot_stuff, pieces};
use mxg_smtp::data::check_line_ends;
use mxg_smtp::{DataProgress, DataReader};

#[derive(Debug, PartialEq, Eq)]
enum End {
    Done(usize),
    Failed(mxg_smtp::DataError),
    Open,
}

struct Outcome {
    end: End,
    body: Vec<u8>,
    size: usize,
    oversize: bool,
    longest_line: usize,
}

fn read(reads: &[&[u8]], max_line: usize, max_size: usize) -> Outcome {
    let mut r = DataReader::new(max_line, max_size);
    let mut offset = 0;
    let mut end = End::Open;
    for piece in reads {
        match r.feed(piece) {
            DataProgress::NeedMore => offset += piece.len(),
            DataProgress::Done { consumed } => {
                assert!(
                    (1..=piece.len()).contains(&consumed),
                    "consumed {consumed} of a read of {}",
                    piece.len()
                );
                end = End::Done(offset + consumed);
                break;
            }
            DataProgress::Failed(e) => {
                end = End::Failed(e);
                break;
            }
        }
    }
    let (size, oversize, longest_line) = (r.size, r.oversize, r.longest_line);
    Outcome {
        end,
        body: r.into_body(),
        size,
        oversize,
        longest_line,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let max_line = 4 + usize::from(seed & 0x0f) * 8;
    let max_size = if seed & 0x30 == 0 {
        usize::from(seed & 0x0f) * 3
    } else {
        1 << 20
    };

    let cut = read(&pieces(seed, stream), max_line, max_size);
    let whole = read(&[stream], max_line, max_size);
    assert_eq!(cut.end, whole.end, "outcome depends on the reads");
    assert_eq!(cut.body, whole.body, "body depends on the reads");
    assert_eq!(cut.size, whole.size);
    assert_eq!(cut.oversize, whole.oversize);

    if let End::Done(end) = cut.end {
        let wire = &stream[..end];
        assert!(
            wire == b".\r\n" || wire.ends_with(b"\r\n.\r\n"),
            "ended at {wire:?}"
        );
        assert!(cut.body.len() <= end);
        assert_eq!(cut.oversize, cut.size > max_size);
        if cut.oversize {
            assert!(cut.body.is_empty());
        } else {
            assert_eq!(cut.size, cut.body.len());
            // RFC 5321 §4.5.2: a leading dot is deleted from every line
            // (a client must have doubled it); the reader does that...
            let lines: Vec<&[u8]> = wire[..end - 3].split_inclusive(|&b| b == b'\n').collect();
            let unstuffed: Vec<u8> = lines
                .iter()
                .flat_map(|l| l.strip_prefix(b".").unwrap_or(l))
                .copied()
                .collect();
            assert_eq!(
                cut.body, unstuffed,
                "unstuffing differs from RFC 5321 4.5.2"
            );
            // ...and when the client did stuff, stuffing the body again
            // gives the very octets received.
            if lines
                .iter()
                .all(|l| !l.starts_with(b".") || l.starts_with(b".."))
            {
                assert_eq!(dot_stuff(&cut.body), wire, "unstuffing is not reversible");
            }
            let longest = check_line_ends(&cut.body).expect("complete body has bare CR/LF");
            assert!(longest <= cut.longest_line);
        }
        let on_wire = wire[..end - 3]
            .split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::len)
            .max()
            .unwrap_or(0);
        assert_eq!(cut.longest_line, on_wire, "longest line miscounted");
    }

    // Any body comes back unchanged through stuffing and the reader.
    let body = as_body(stream);
    let wire = dot_stuff(&body);
    let back = read(&pieces(seed.rotate_left(3), &wire), 1000, 1 << 20);
    assert_eq!(back.end, End::Done(wire.len()));
    assert_eq!(back.body, body);
});
