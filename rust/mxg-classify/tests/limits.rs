//! The limits: each stops the scan where it should and says so.

mod common;

use common::{base64, count, crlf, options};
use mxg_classify::Features;

const IBAN: &str = "DE89370400440532013000";

fn scan_with(json: &str, message: &[u8]) -> Features {
    options(json).compile().unwrap().scan(message)
}

/// `levels` multiparts, one inside the other, the IBAN in the innermost.
fn nested_multiparts(levels: usize) -> Vec<u8> {
    let mut m = String::from("Subject: deep\n");
    for i in 0..levels {
        m.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n"
        ));
    }
    m.push_str(&format!("Content-Type: text/plain\n\n{IBAN}\n"));
    for i in (0..levels).rev() {
        m.push_str(&format!("--b{i}--\n"));
    }
    crlf(&m)
}

#[test]
fn depth_limit() {
    let m = nested_multiparts(3);
    let f = scan_with("{}", &m);
    assert_eq!((count(&f, "iban"), f.limits.len()), (1, 0));
    // The text part sits at depth 3.
    let f = scan_with(r#"{"max_depth": 3}"#, &m);
    assert_eq!((count(&f, "iban"), f.limits.len()), (1, 0));
    let f = scan_with(r#"{"max_depth": 2}"#, &m);
    assert_eq!(count(&f, "iban"), 0);
    assert_eq!(f.limits, ["depth"]);
}

#[test]
fn depth_counts_nested_messages() {
    let levels = 20;
    let mut m = "Content-Type: message/rfc822\n\n".repeat(levels);
    m.push_str(&format!("Subject: innermost\n\n{IBAN}\n"));
    let f = scan_with("{}", &crlf(&m));
    assert_eq!(count(&f, "iban"), 0);
    assert_eq!(f.limits, ["depth"]);
    let f = scan_with(r#"{"max_depth": 20}"#, &crlf(&m));
    assert_eq!(count(&f, "iban"), 1);
    assert!(f.limits.is_empty());
}

#[test]
fn encoded_messages_beyond_the_parser_count_as_depth() {
    // Four levels of base64-encoded message/rfc822: mail-parser stops at
    // three and hands the fourth over as bytes.
    let mut inner = format!("Subject: core\r\n\r\n{IBAN}\r\n");
    for _ in 0..4 {
        inner = format!(
            "Subject: wrap\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            base64(inner.as_bytes()).replace('\n', "\r\n")
        );
    }
    let f = scan_with("{}", inner.as_bytes());
    assert_eq!(count(&f, "iban"), 0);
    assert_eq!(f.limits, ["depth"]);
}

#[test]
fn parts_limit() {
    let mut m = String::from("Subject: many\nContent-Type: multipart/mixed; boundary=b\n\n");
    for i in 0..10 {
        m.push_str(&format!("--b\nContent-Type: text/plain\n\nPRJ-{i:04}\n"));
    }
    m.push_str("--b--\n");
    let json = r#"{"max_parts": 4, "patterns": [{"name": "prj", "regexes": ["PRJ-\\d{4}"]}]}"#;
    let f = scan_with(json, &crlf(&m));
    assert_eq!(f.parts, 4);
    assert_eq!(count(&f, "regex:prj"), 3, "the multipart and three texts");
    assert_eq!(f.limits, ["parts"]);
    // Exactly enough parts is no cut.
    let json = r#"{"max_parts": 11}"#;
    assert!(scan_with(json, &crlf(&m)).limits.is_empty());
}

#[test]
fn bytes_limit() {
    let text = format!("{}{IBAN}\n", "x ".repeat(50));
    let m = crlf(&format!("Subject: s\n\n{text}"));
    let f = scan_with(r#"{"max_scan_bytes": 60}"#, &m);
    assert_eq!(count(&f, "iban"), 0);
    assert_eq!(f.limits, ["bytes"]);
    let f = scan_with(r#"{"max_scan_bytes": 1000}"#, &m);
    assert_eq!(count(&f, "iban"), 1);
    assert!(f.limits.is_empty());
}

#[test]
fn bytes_limit_in_html_and_across_parts() {
    let html = format!("<p>{}</p><p>{IBAN}</p>", "word ".repeat(100));
    let m = crlf(&format!("Subject: s\nContent-Type: text/html\n\n{html}\n"));
    let f = scan_with(r#"{"max_scan_bytes": 200}"#, &m);
    assert_eq!(count(&f, "iban"), 0);
    assert_eq!(f.limits, ["bytes"]);

    // The budget is for the whole message, not per part.
    let m = crlf(&format!(
        "Subject: s\nContent-Type: multipart/mixed; boundary=b\n\n\
         --b\n\n{}\n--b\n\n{IBAN}\n--b--\n",
        "y".repeat(100)
    ));
    let f = scan_with(r#"{"max_scan_bytes": 110}"#, &m);
    assert_eq!(count(&f, "iban"), 0);
    assert_eq!(f.limits, ["bytes"]);
    // Attachments are still listed after the budget is spent.
    assert_eq!(f.parts, 3);
}

#[test]
fn several_limits_at_once_in_fixed_order() {
    let m = nested_multiparts(5);
    let f = scan_with(
        r#"{"max_depth": 2, "max_parts": 2, "max_scan_bytes": 1}"#,
        &m,
    );
    assert_eq!(f.limits, ["bytes", "parts"]);
    let f = scan_with(r#"{"max_depth": 1, "max_scan_bytes": 1}"#, &m);
    assert_eq!(f.limits, ["bytes", "depth"]);
}
