//! TLSA records and their usability for SMTP (RFC 7672 §3.1).

use serde::{Deserialize, Serialize};

/// One TLSA record: `usage selector mtype data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub mtype: u8,
    /// Association data as lower-case hex, as in zone files.
    pub data: String,
}

/// Why a TLSA record cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    /// PKIX-TA(0) and PKIX-EE(1): RFC 7672 §3.1.3 - SMTP clients cannot
    /// know which CAs a server's operator meant, so these are unusable.
    #[error("usage {0} (PKIX-TA/PKIX-EE) is unusable for SMTP (RFC 7672 3.1.3)")]
    PkixUsage(u8),
    #[error("unknown usage {0}")]
    UnknownUsage(u8),
    #[error("unknown selector {0}")]
    UnknownSelector(u8),
    #[error("unknown matching type {0}")]
    UnknownMatchingType(u8),
    #[error("association data is not hex or has the wrong length for its matching type")]
    BadData,
}

/// Whether a record can authenticate a server: usages 2 (DANE-TA) and 3
/// (DANE-EE), selectors 0 (full certificate) and 1 (SPKI), matching types
/// 0 (exact), 1 (SHA-256) and 2 (SHA-512) with data of the right length.
/// A set in which no record is usable gives no authentication: the MX is
/// reached at most at the `encrypted` level (RFC 7672 §2.2).
pub fn classify(r: &Tlsa) -> Result<(), Unusable> {
    match r.usage {
        2 | 3 => {}
        0 | 1 => return Err(Unusable::PkixUsage(r.usage)),
        u => return Err(Unusable::UnknownUsage(u)),
    }
    if r.selector > 1 {
        return Err(Unusable::UnknownSelector(r.selector));
    }
    let data = r.bytes().ok_or(Unusable::BadData)?;
    let fits = match r.mtype {
        0 => !data.is_empty(),
        1 => data.len() == 32,
        2 => data.len() == 64,
        m => return Err(Unusable::UnknownMatchingType(m)),
    };
    if fits {
        Ok(())
    } else {
        Err(Unusable::BadData)
    }
}

/// Whether a record set authenticates at all: at least one record is
/// usable (see [`classify`]). A set without one is treated as no TLSA
/// records, so TLS is not made mandatory by it (RFC 7672 §2.2); a lookup
/// that failed is the control plane's business and never reaches here
/// as an empty set (ARCHITECTURE.md rule 2).
pub fn usable(records: &[Tlsa]) -> bool {
    records.iter().any(|r| classify(r).is_ok())
}

impl Tlsa {
    /// The association data as octets; `None` unless it is hex digits
    /// only, two per octet (`u8::from_str_radix` alone would also take a
    /// sign: "+a" is not hex).
    pub fn bytes(&self) -> Option<Vec<u8>> {
        let hex = self.data.as_bytes();
        if !hex.len().is_multiple_of(2) {
            return None;
        }
        let digit = |b: u8| char::from(b).to_digit(16);
        hex.chunks(2)
            .map(|p| Some((digit(p[0])? * 16 + digit(p[1])?) as u8))
            .collect()
    }

    /// Whether this record matches a certificate (DER), per its selector
    /// and matching type. `spki` is the certificate's `SubjectPublicKeyInfo`.
    pub fn matches(&self, cert: &[u8], spki: &[u8]) -> bool {
        let Some(want) = self.bytes() else {
            return false;
        };
        let selected = if self.selector == 0 { cert } else { spki };
        match self.mtype {
            0 => selected == want.as_slice(),
            1 => ring::digest::digest(&ring::digest::SHA256, selected).as_ref() == want.as_slice(),
            2 => ring::digest::digest(&ring::digest::SHA512, selected).as_ref() == want.as_slice(),
            _ => false,
        }
    }
}

/// Lower-case hex, as TLSA data and certificate fingerprints are written.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

impl std::fmt::Display for Tlsa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.usage, self.selector, self.mtype, self.data
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(usage: u8, selector: u8, mtype: u8, data: &str) -> Tlsa {
        Tlsa {
            usage,
            selector,
            mtype,
            data: data.to_owned(),
        }
    }

    #[test]
    fn usable_and_unusable_records() {
        let sha256 = "ab".repeat(32);
        assert_eq!(classify(&rec(3, 1, 1, &sha256)), Ok(()));
        assert_eq!(classify(&rec(2, 0, 2, &"cd".repeat(64))), Ok(()));
        assert_eq!(classify(&rec(3, 0, 0, "3082")), Ok(()));
        assert_eq!(
            classify(&rec(1, 1, 1, &sha256)),
            Err(Unusable::PkixUsage(1))
        );
        assert_eq!(
            classify(&rec(0, 0, 1, &sha256)),
            Err(Unusable::PkixUsage(0))
        );
        assert_eq!(
            classify(&rec(4, 1, 1, &sha256)),
            Err(Unusable::UnknownUsage(4))
        );
        assert_eq!(
            classify(&rec(3, 2, 1, &sha256)),
            Err(Unusable::UnknownSelector(2))
        );
        assert_eq!(
            classify(&rec(3, 1, 3, &sha256)),
            Err(Unusable::UnknownMatchingType(3))
        );
        assert_eq!(classify(&rec(3, 1, 1, "abcd")), Err(Unusable::BadData));
        assert_eq!(classify(&rec(3, 1, 1, "zz")), Err(Unusable::BadData));
    }

    #[test]
    fn data_is_hex_digits_only() {
        // Found by the dane_tlsa fuzz target: "+8" was read as 0x08.
        assert_eq!(rec(3, 0, 0, "+8").bytes(), None);
        assert_eq!(
            classify(&rec(3, 1, 1, &"+a".repeat(32))),
            Err(Unusable::BadData)
        );
        assert_eq!(classify(&rec(3, 0, 0, "-1")), Err(Unusable::BadData));
        assert_eq!(rec(3, 0, 0, "0aFf").bytes(), Some(vec![0x0a, 0xff]));
    }

    #[test]
    fn a_set_is_usable_when_one_record_is() {
        let sha256 = "ab".repeat(32);
        assert!(!usable(&[]));
        assert!(!usable(&[rec(1, 1, 1, &sha256), rec(3, 1, 1, "abcd")]));
        assert!(usable(&[rec(1, 1, 1, &sha256), rec(3, 1, 1, &sha256)]));
    }

    #[test]
    fn matching_by_selector_and_type() {
        let cert = b"certificate bytes";
        let spki = b"spki bytes";
        let sha256 = hex(ring::digest::digest(&ring::digest::SHA256, spki).as_ref());
        assert!(rec(3, 1, 1, &sha256).matches(cert, spki));
        assert!(!rec(3, 0, 1, &sha256).matches(cert, spki));
        assert!(rec(3, 0, 0, &hex(cert)).matches(cert, spki));
        let sha512 = hex(ring::digest::digest(&ring::digest::SHA512, cert).as_ref());
        assert!(rec(2, 0, 2, &sha512).matches(cert, spki));
    }
}
