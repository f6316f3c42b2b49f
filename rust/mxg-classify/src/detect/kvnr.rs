//! German health insurance number, the unchangeable part of the
//! Krankenversichertennummer (§ 290 SGB V; algorithm in the GKV-Spitzen-
//! verband's "Richtlinien nach § 290 Abs. 1 Satz 2 SGB V", Anlage 1): an
//! upper-case letter, eight digits and a check digit, "A123456780".
//!
//! Check digit: the letter becomes its two-digit alphabet position
//! (A = 01 … Z = 26); with the eight digits that gives ten digits, weighted
//! 1, 2, 1, 2, …; the digit sums of the products are added; the sum mod
//! 10 is the check digit.

use super::words::WordsWithDigits;

/// Reports every valid KVNR in `text`: a whole word, so only words with
/// digits are looked at.
pub(crate) fn find(text: &str, found: &mut dyn FnMut(&str)) {
    for word in WordsWithDigits::new(text) {
        let word = &text[word];
        if valid(word) {
            found(word);
        }
    }
}

fn valid(token: &str) -> bool {
    let b = token.as_bytes();
    if b.len() != 10 || !b[0].is_ascii_uppercase() || !b[1..].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let letter = b[0] - b'A' + 1;
    let digits = [letter / 10, letter % 10]
        .into_iter()
        .chain(b[1..9].iter().map(|d| d - b'0'));
    let sum: u32 = digits
        .enumerate()
        .map(|(i, d)| {
            let p = u32::from(d) * if i % 2 == 0 { 1 } else { 2 };
            p / 10 + p % 10
        })
        .sum();
    sum % 10 == u32::from(b[9] - b'0')
}

#[cfg(test)]
mod tests {
    fn find(text: &str) -> Vec<String> {
        crate::detect::distinct(super::find, text)
    }

    #[test]
    fn known_valid() {
        assert_eq!(find("KVNR A123456780"), ["A123456780"]);
        // Z = 26: 2,6 then 1..8 — sum 2+3+1+4+3+8+5+3+7+7 = 43 → 3.
        assert_eq!(find("(Z123456783)"), ["Z123456783"]);
        assert_eq!(find("A123456780, A123456780"), ["A123456780"]);
    }

    #[test]
    fn check_digit_decoys() {
        assert!(find("A123456781").is_empty());
        assert!(find("A123456789").is_empty());
        assert!(find("B123456780").is_empty());
    }

    #[test]
    fn shape() {
        assert!(find("a123456780").is_empty());
        assert!(find("A12345678").is_empty());
        assert!(find("AB23456780").is_empty());
    }

    #[test]
    fn not_inside_longer_runs() {
        assert!(find("XA123456780").is_empty());
        assert!(find("A1234567801").is_empty());
        assert!(find("A123456780ü").is_empty());
        // The full 30-place number continues with the insurer's IK.
        assert!(find("A123456780109500969").is_empty());
    }

    #[test]
    fn word_boundaries_outside_ascii() {
        for glued in ["ÄA123456780", "A123456780½", "٣A123456780", "A123456780ß"] {
            assert!(find(glued).is_empty(), "{glued}");
        }
        for apart in [
            "€A123456780€",
            "ü A123456780 ü",
            "A123456780😀",
            "Nr.:A123456780",
        ] {
            assert_eq!(find(apart), ["A123456780"], "{apart}");
        }
    }

    #[test]
    fn order_numbers() {
        assert!(find("Bestellung B-2024-000123, Rechnung R2024001234").is_empty());
    }
}
