//! TLSA records as the control plane sends them (JSON) and their
//! classification for SMTP (RFC 7672 §3.1).
//!
//! Input: JSON, a list of records or one record; anything else is read as
//! `usage selector mtype` octets followed by the association data.
//! Invariants:
//! - nothing panics;
//! - a usable record has usage 2 or 3, selector 0 or 1, matching type 0,
//!   1 or 2 and data that is hex, nothing else, of the length its type
//!   needs: its octets written as hex give the data back;
//! - a set is usable exactly when one of its records is;
//! - a record survives JSON and Display round trips;
//! - a usable `x x 0` record matches its own octets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxg_dane::{classify, hex, usable, Tlsa};

/// The records the input stands for, if any.
fn records(data: &[u8]) -> Option<Vec<Tlsa>> {
    if let Ok(list) = serde_json::from_slice::<Vec<Tlsa>>(data) {
        return Some(list);
    }
    if let Ok(one) = serde_json::from_slice::<Tlsa>(data) {
        return Some(vec![one]);
    }
    let [usage, selector, mtype, rest @ ..] = data else {
        return None;
    };
    Some(vec![Tlsa {
        usage: *usage,
        selector: *selector,
        mtype: *mtype,
        data: String::from_utf8_lossy(rest).into_owned(),
    }])
}

fuzz_target!(|data: &[u8]| {
    let Some(records) = records(data) else {
        return;
    };
    let mut any = false;
    for r in &records {
        check(r);
        any |= classify(r).is_ok();
    }
    assert_eq!(usable(&records), any);
});

fn check(r: &Tlsa) {
    let json = serde_json::to_string(r).expect("serialise");
    let back: Tlsa = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(&back, r);
    assert_eq!(
        r.to_string(),
        format!("{} {} {} {}", r.usage, r.selector, r.mtype, r.data)
    );

    let octets = r.bytes();
    if let Some(octets) = &octets {
        assert_eq!(
            hex(octets),
            r.data.to_ascii_lowercase(),
            "data {:?} read as {octets:?}",
            r.data
        );
    }
    if classify(r).is_err() {
        return;
    }
    assert!(matches!(r.usage, 2 | 3), "{r}");
    assert!(r.selector <= 1, "{r}");
    let octets = octets.expect("usable record without octets");
    match r.mtype {
        0 => {
            assert!(!octets.is_empty());
            assert!(r.matches(&octets, &octets), "{r} does not match itself");
        }
        1 => assert_eq!(octets.len(), 32),
        2 => assert_eq!(octets.len(), 64),
        _ => panic!("usable record with matching type {}", r.mtype),
    }
}
