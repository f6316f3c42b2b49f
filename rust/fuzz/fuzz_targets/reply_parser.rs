//! The outbound client's reply parser (RFC 5321 §4.2, RFC 2034) on what
//! a hostile or broken server may send.
//!
//! Input: the server's stream; lines end at LF, a CR before it is cut
//! off (as the client's line reader does). After an error the client gives
//! up the connection, so the parser is started afresh.
//! Invariants:
//! - nothing panics;
//! - a reply has a code in 200..=599, at least one line, and an enhanced
//!   code that is empty or `class.subject.detail` of the reply's class;
//! - the wire form of a parsed reply parses back to the same reply, and
//!   its Display form is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxg_smtp::{Reply, ReplyParser};

fuzz_target!(|data: &[u8]| {
    let mut parser = ReplyParser::default();
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match parser.feed(line) {
            Ok(None) => {}
            Ok(Some(reply)) => check(&reply),
            Err(_) => parser = ReplyParser::default(),
        }
    }
});

fn check(reply: &Reply) {
    assert!((200..600).contains(&reply.code), "{reply:?}");
    assert!(!reply.lines.is_empty());
    if !reply.enhanced.is_empty() {
        let parts: Vec<&str> = reply.enhanced.split('.').collect();
        assert_eq!(parts.len(), 3, "{reply:?}");
        assert_eq!(parts[0], (reply.code / 100).to_string(), "{reply:?}");
    }
    let display = reply.to_string();
    assert!(!display.contains('\n'), "Display spans lines: {display:?}");

    let wire = reply.to_wire();
    let mut again = ReplyParser::default();
    let mut back = None;
    for line in wire.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r\n").expect("wire line without CRLF");
        assert!(back.is_none(), "wire form holds two replies: {wire:?}");
        back = again.feed(line).expect("wire form does not parse");
    }
    assert_eq!(back.as_ref(), Some(reply), "wire form {wire:?}");
}
