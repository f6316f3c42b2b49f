//! Time `Scanner::scan` on the relay's typical load: a 5 KB us-ascii
//! text/plain message of ordinary words ("plain"), the same text as a
//! multipart/alternative with an HTML twin ("alt"), and the plain one
//! with dates, times and reference numbers on every fourth line
//! ("digits": the built-in detectors skip text without digits); and the
//! plain one scanned with a keyword and a regex list as `bench.classify`
//! configures them ("lists").
//!
//!     cargo run --release -p mxg-classify --example scan_bench [plain|alt|digits|lists|all] [scans]
//!
//! Prints µs per scan (the best of a few rounds: the machine may be
//! shared, and the minimum is the least disturbed figure). For
//! instruction counts, run one variant under
//! `valgrind --tool=callgrind` with a small scan count.

use std::hint::black_box;
use std::time::Instant;

use mxg_classify::{ScanOptions, Scanner};

const WORDS: &[&str] = &[
    "relay",
    "queue",
    "message",
    "delivery",
    "transport",
    "domain",
    "policy",
    "the",
    "and",
    "of",
    "secure",
    "envelope",
    "recipient",
    "throughput",
    "latency",
    "spool",
];

const HEADER: &str = "Date: Mon, 3 Mar 2025 10:00:00 +0100\r\n\
    From: Alice Sender <alice@example.org>\r\n\
    To: Bob Recipient <bob@partner.example>\r\n\
    Subject: Weekly relay queue report\r\n\
    Message-ID: <20250303100000.12345@example.org>\r\n\
    MIME-Version: 1.0\r\n";

/// Numbers as ordinary mail has them, none of them an identifier.
const NUMBERS: &[&str] = &[
    "2025-03-03",
    "10:45",
    "4711",
    "+49 30 1234567",
    "B-2024-000123",
    "12.5%",
    "v1.2.3",
    "RFC 5321",
];

/// About `bytes` of 78-character lines of words; every 25th line starts
/// with '.', as dot-stuffing tests do; with `numbers`, every fourth line
/// has one.
fn body(bytes: usize, numbers: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let mut next = 0usize;
    let mut total = 0;
    while total < bytes {
        let mut line = String::new();
        if lines.len() % 25 == 24 {
            line.push('.');
        }
        if numbers && lines.len() % 4 == 1 {
            line.push_str(NUMBERS[lines.len() / 4 % NUMBERS.len()]);
        }
        loop {
            let w = WORDS[next % WORDS.len()];
            if line.len() + w.len() + 1 > 78 {
                break;
            }
            if !line.is_empty() && line != "." {
                line.push(' ');
            }
            line.push_str(w);
            // Not a simple cycle, so lines differ.
            next = next * 7 + 3;
        }
        total += line.len() + 2;
        lines.push(line);
    }
    lines
}

fn plain(numbers: bool) -> Vec<u8> {
    let mut m = HEADER.to_owned();
    m.push_str("Content-Type: text/plain; charset=us-ascii\r\n");
    m.push_str("Content-Transfer-Encoding: 7bit\r\n\r\n");
    for l in body(5000, numbers) {
        m.push_str(&l);
        m.push_str("\r\n");
    }
    m.into_bytes()
}

fn alternative() -> Vec<u8> {
    let lines = body(2500, false);
    let mut m = HEADER.to_owned();
    m.push_str("Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n");
    m.push_str("--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n");
    for l in &lines {
        m.push_str(l);
        m.push_str("\r\n");
    }
    m.push_str("--b1\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n");
    m.push_str("<html><body>\r\n");
    for chunk in lines.chunks(5) {
        m.push_str("<p>");
        m.push_str(&chunk.join("\r\n"));
        m.push_str("</p>\r\n");
    }
    m.push_str("</body></html>\r\n--b1--\r\n");
    m.into_bytes()
}

/// The options the relay compiles when no rule has keywords or regexes:
/// the built-in detectors and the two header fields the rules read.
const OPTIONS: &str = r#"{"headers": ["TLS-Required", "X-MXG-Risk"]}"#;

/// With the keyword and regex lists of `bench.classify`.
const OPTIONS_WITH_LISTS: &str = r#"{"headers": ["TLS-Required", "X-MXG-Risk"],
    "keywords": [{"name": "health", "words": ["Diagnose", "Befund", "Krankheit",
        "Sozialhilfe", "Therapie", "Pflegegrad", "Arbeitsunfähigkeit",
        "Schwerbehinderung", "diagnosis", "disability", "welfare", "pregnancy"]}],
    "patterns": [{"name": "aktenzeichen", "regexes": ["\\bAZ[- ]\\d{3}/\\d{2}\\b"]}]}"#;

fn scanner(options: &str) -> Scanner {
    ScanOptions::from_json(options)
        .and_then(|o| o.compile())
        .expect("options compile")
}

fn time(scanner: &Scanner, name: &str, message: &[u8], scans: u32) {
    let features = scanner.scan(message);
    let rounds = 5;
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..scans {
            black_box(scanner.scan(black_box(message)));
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e6 / f64::from(scans));
    }
    println!(
        "{name:6} {:5} bytes  {best:8.2} µs/scan  (best of {rounds} x {scans}; detectors {:?}, parts {})",
        message.len(),
        features.detectors,
        features.parts,
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "all".into());
    let scans: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(2000);
    let scanner = scanner(OPTIONS);
    if matches!(which.as_str(), "plain" | "all") {
        time(&scanner, "plain", &plain(false), scans);
    }
    if matches!(which.as_str(), "alt" | "all") {
        time(&scanner, "alt", &alternative(), scans);
    }
    if matches!(which.as_str(), "digits" | "all") {
        time(&scanner, "digits", &plain(true), scans);
    }
    if matches!(which.as_str(), "lists" | "all") {
        time(
            &self::scanner(OPTIONS_WITH_LISTS),
            "lists",
            &plain(false),
            scans,
        );
    }
}
