//! The MIME-aware content scanner on arbitrary octets: once with the
//! default options (what `{}` from the control plane gives) and once with
//! tight limits, requested headers and a keyword and a regex list, so the
//! paths where a limit cuts the scan short are reached by small inputs.
//!
//! Invariants:
//! - nothing panics and nothing hangs (libFuzzer's -timeout catches the
//!   latter);
//! - `parts` stays within `max_parts`, `limits` names only "bytes", "depth"
//!   and "parts", once each and in that order;
//! - detector counts are positive, content types are lower case;
//! - the features serialise to JSON (they cross the Python boundary so).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mxg_classify::{Features, ScanOptions, Scanner};

const TIGHT: &str = r#"{
    "max_scan_bytes": 64, "max_depth": 2, "max_parts": 4,
    "headers": ["Subject", "X-Class", "Content-Type"],
    "keywords": [{"name": "health", "words": ["Diagnose", "Befund"]}],
    "patterns": [{"name": "prj", "regexes": ["PRJ-\\d+"]}]
}"#;

fn scanners() -> &'static (Scanner, Scanner) {
    static SCANNERS: OnceLock<(Scanner, Scanner)> = OnceLock::new();
    SCANNERS.get_or_init(|| {
        let default = ScanOptions::default().compile().expect("default options");
        let tight = ScanOptions::from_json(TIGHT)
            .and_then(|o| o.compile())
            .expect("tight options");
        (default, tight)
    })
}

fuzz_target!(|data: &[u8]| {
    let (default, tight) = scanners();
    check(&default.scan(data), 512);
    check(&tight.scan(data), 4);
});

fn check(f: &Features, max_parts: u32) {
    assert!(f.parts <= max_parts.max(1), "{} parts", f.parts);
    let order = ["bytes", "depth", "parts"];
    let mut last = None;
    for l in &f.limits {
        let i = order
            .iter()
            .position(|o| o == l)
            .unwrap_or_else(|| panic!("unknown limit {l:?}"));
        assert!(last < Some(i), "limits {:?}", f.limits);
        last = Some(i);
    }
    assert!(f.detectors.values().all(|&n| n > 0), "{:?}", f.detectors);
    for a in &f.attachments {
        assert_eq!(a.content_type, a.content_type.to_ascii_lowercase());
    }
    serde_json::to_string(f).expect("features serialise");
}
