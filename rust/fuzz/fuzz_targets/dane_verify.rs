//! The DANE verifier's decision (`DaneVerifier::check`, the pure part of
//! the rustls verifier) on arbitrary DER chains.
//!
//! Input: a flag byte, four octets of "now" (seconds, big-endian), then
//! certificates as `length (u16, big-endian) + DER`, the first the end
//! entity. The flags choose records made from the chain itself, so that
//! matching and the DANE-TA chain check are reached, not only the parse
//! failures:
//!
//! | bit | record |
//! |---|---|
//! | 0 | `3 0 0` end entity |
//! | 1 | `3 0 1` SHA-256 of the end entity |
//! | 2 | `3 1 1` SHA-256 of its SPKI |
//! | 3 | `2 0 0` last certificate |
//! | 4 | `2 0 1` SHA-256 of the last certificate |
//! | 5 | `2 1 2` SHA-512 of its SPKI |
//! | 6 | `3 1 1` that matches nothing |
//! | 7 | the last certificate is left out of the chain (anchor from the record only) |
//!
//! Invariants:
//! - nothing panics;
//! - a match names one of the records, with its usage;
//! - without usable records nothing matches;
//! - a parsable end entity with a DANE-EE record of its own always
//!   matches, whatever its dates, names and chain (RFC 7672 §3.1.1).
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mxg_dane::{hex, usable, DaneUsage, DaneVerifier, Tlsa};
use ring::digest::{digest, SHA256, SHA512};
use rustls::pki_types::{CertificateDer, UnixTime};

fn rec(usage: u8, selector: u8, mtype: u8, data: &[u8]) -> Tlsa {
    Tlsa {
        usage,
        selector,
        mtype,
        data: hex(data),
    }
}

fn spki(der: &[u8]) -> Option<Vec<u8>> {
    let der = CertificateDer::from(der);
    let cert = webpki::EndEntityCert::try_from(&der).ok()?;
    Some(cert.subject_public_key_info().as_ref().to_vec())
}

fuzz_target!(|data: &[u8]| {
    let [flags, t0, t1, t2, t3, rest @ ..] = data else {
        return;
    };
    let mut rest = rest;
    let now = UnixTime::since_unix_epoch(Duration::from_secs(u64::from(u32::from_be_bytes([
        *t0, *t1, *t2, *t3,
    ]))));
    let mut certs: Vec<&[u8]> = Vec::new();
    while let [hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (cert, tail) = tail.split_at(len);
        certs.push(cert);
        rest = tail;
    }
    let Some((&ee, _)) = certs.split_first() else {
        return;
    };
    let last = *certs.last().unwrap_or(&ee);

    let bit = |n: u8| flags & (1 << n) != 0;
    let mut records = Vec::new();
    if bit(0) {
        records.push(rec(3, 0, 0, ee));
    }
    if bit(1) {
        records.push(rec(3, 0, 1, digest(&SHA256, ee).as_ref()));
    }
    let ee_spki = spki(ee);
    if let (true, Some(s)) = (bit(2), &ee_spki) {
        records.push(rec(3, 1, 1, digest(&SHA256, s).as_ref()));
    }
    if bit(3) {
        records.push(rec(2, 0, 0, last));
    }
    if bit(4) {
        records.push(rec(2, 0, 1, digest(&SHA256, last).as_ref()));
    }
    if let (true, Some(s)) = (bit(5), spki(last)) {
        records.push(rec(2, 1, 2, digest(&SHA512, &s).as_ref()));
    }
    if bit(6) {
        records.push(rec(3, 1, 1, &[0; 32]));
    }
    let mut chain = &certs[1..];
    if bit(7) && !chain.is_empty() {
        chain = &chain[..chain.len() - 1];
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let names = vec!["mx.example.net".to_owned(), "example.net".to_owned()];
    let verifier = DaneVerifier::new(&records, names, provider);
    let end_entity = CertificateDer::from(ee);
    let intermediates: Vec<CertificateDer<'_>> =
        chain.iter().map(|c| CertificateDer::from(*c)).collect();
    let verdict = verifier.check(&end_entity, &intermediates, now);

    assert_eq!(verifier.has_usable_records(), usable(&records));
    if !usable(&records) {
        assert!(verdict.is_err(), "matched without usable records");
    }
    match &verdict {
        Ok(m) => {
            let r = records
                .iter()
                .find(|r| r.to_string() == m.record)
                .unwrap_or_else(|| panic!("match {m:?} names no record"));
            let usage = if r.usage == 3 {
                DaneUsage::DaneEe
            } else {
                DaneUsage::DaneTa
            };
            assert_eq!(m.usage, usage);
        }
        Err(e) => {
            // It is a TLS-RPT result type in every case.
            assert!(!e.result_type().is_empty());
        }
    }
    let own_ee_record = bit(0) || bit(1) || (bit(2) && ee_spki.is_some());
    if own_ee_record && ee_spki.is_some() {
        assert!(
            matches!(&verdict, Ok(m) if m.usage == DaneUsage::DaneEe),
            "DANE-EE record of the end entity did not match: {verdict:?}"
        );
    }
});
