//! The command side of the inbound server: `LineFramer` cuts a byte
//! stream (delivered in arbitrary reads) into lines, `parse_command`
//! parses each.
//!
//! Input: one seed byte (line limit, read sizes), then the stream.
//! Invariants:
//! - nothing panics;
//! - a framed line ends in LF, holds no other LF and respects the limit;
//!   what is left buffered never exceeds the limit;
//! - an over-long line is reported, once its end arrived; without one,
//!   the lines and what is left buffered are the stream;
//! - an error reply is 5xx and one line: nothing the client sent can add
//!   a line to it;
//! - no parsed address, host or parameter carries CR or LF, which would
//!   let a client inject commands into the outbound session or a header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxg_fuzz::pieces;
use mxg_smtp::command::Framed;
use mxg_smtp::{parse_command, Bdat, Command, CommandError, LineFramer, Reply};
use smtp_proto::Request;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    check_parse(stream);

    // Small limits most of the time so that the over-long path is hit;
    // the default (2048) when the low bits are all set.
    let max_line = match seed & 0x3f {
        0x3f => 2048,
        n => 8 + usize::from(n) * 4,
    };
    let mut framer = LineFramer::new(max_line);
    let mut framed = Vec::new();
    let mut too_long = false;
    for piece in pieces(seed, stream) {
        framer.push(piece);
        while let Some(f) = framer.next_line() {
            match f {
                Framed::Line(line) => {
                    assert!(line.ends_with(b"\n"), "line without LF: {line:?}");
                    assert!(!line[..line.len() - 1].contains(&b'\n'));
                    assert!(line.len() <= max_line, "{} > {max_line}", line.len());
                    check_parse(&line);
                    framed.extend_from_slice(&line);
                }
                Framed::TooLong => too_long = true,
            }
        }
        assert!(framer.buffered() <= max_line);
    }
    // A line (or an unfinished last line) over the limit is skipped; when
    // there is none, the framer gives back every octet in order.
    let fits = stream
        .split_inclusive(|&b| b == b'\n')
        .all(|l| l.len() <= max_line);
    if fits {
        assert!(!too_long, "a line within the limit was reported too long");
        framed.extend_from_slice(&framer.take_buffered());
        assert_eq!(framed, stream, "framing lost or added bytes");
    } else if stream
        .split_inclusive(|&b| b == b'\n')
        .any(|l| l.len() > max_line && l.ends_with(b"\n"))
    {
        assert!(too_long, "an over-long line was not reported");
    }
});

fn check_parse(line: &[u8]) {
    match parse_command(line) {
        Ok(cmd) => check_command(&cmd),
        Err(CommandError { reply }) => check_refusal(&reply),
    }
}

/// A refusal is 5xx and one line: nothing the client sent can add a line.
fn check_refusal(reply: &Reply) {
    assert!((500..600).contains(&reply.code), "{reply:?}");
    let wire = reply.to_wire();
    assert!(wire.ends_with(b"\r\n"));
    let ends = wire.iter().filter(|&&b| b == b'\n' || b == b'\r').count();
    assert_eq!(ends, 2, "error reply spans lines: {wire:?}");
}

fn check_command(cmd: &Command) {
    let mut relayed: Vec<&str> = Vec::new();
    let mut other: Vec<&str> = Vec::new();
    match cmd {
        Command::Mail(from) => {
            relayed.push(&from.address);
            relayed.extend(from.envid.as_deref());
        }
        Command::Rcpt(to) => {
            relayed.push(&to.address);
            relayed.extend(to.orcpt.as_deref());
        }
        Command::Bdat(Bdat::Bad { reply, .. } | Bdat::Lost(reply)) => check_refusal(reply),
        Command::Bdat(Bdat::Chunk { .. }) => {}
        Command::Other(
            Request::Ehlo { host } | Request::Helo { host } | Request::Lhlo { host },
        ) => other.push(host),
        Command::Other(Request::Vrfy { value } | Request::Expn { value }) => other.push(value),
        Command::Other(_) => {}
    }
    // Rule 12a: what is relayed carries no control character at all (a
    // line end would add a command on the next hop, a NUL cut it short).
    for f in relayed {
        assert!(
            !f.chars().any(char::is_control),
            "control character in a relayed field of {cmd:?}"
        );
    }
    // The rest (the EHLO name goes into the Received field) never carries
    // a line end, which would let a client add a header or a command.
    for f in other {
        assert!(
            !f.contains(['\r', '\n']),
            "line end in a parsed field of {cmd:?}"
        );
    }
}
