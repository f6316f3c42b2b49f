//! Helpers shared by the integration tests: building messages by hand.

#![allow(dead_code)]

use std::sync::LazyLock;

use mxg_classify::{Features, ScanOptions, Scanner};

/// Message text written with "\n" line ends, sent with CRLF as on the wire.
pub fn crlf(s: &str) -> Vec<u8> {
    s.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes()
}

/// RFC 4648 base64, lines of 76 characters (RFC 2045 §6.8).
pub fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out.as_bytes()
        .chunks(76)
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn options(json: &str) -> ScanOptions {
    ScanOptions::from_json(json).expect("valid options")
}

/// Scans with default limits and a few lists the tests use; the scanner
/// is compiled once, as in production.
pub fn scan(message: &[u8]) -> Features {
    static SCANNER: LazyLock<Scanner> = LazyLock::new(|| {
        options(
            r#"{"keywords": [{"name": "health", "words": ["Diagnose", "Ärztin", "Überweisung", "привет", "カード"]}],
                "patterns": [{"name": "prj", "regexes": ["PRJ-[0-9]{4}"]}]}"#,
        )
        .compile()
        .unwrap()
    });
    SCANNER.scan(message)
}

pub fn count(f: &Features, key: &str) -> u32 {
    f.detectors.get(key).copied().unwrap_or(0)
}

/// A tiny xorshift PRNG: reproducible "random" input without a crate.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
