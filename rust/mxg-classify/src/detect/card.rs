//! Payment card numbers (PAN, ISO/IEC 7812-1): 13–19 digits, Luhn check
//! digit, printed compact or in groups (4-4-4-4, 4-4-4-4-3, Amex 4-6-5,
//! Diners 4-6-4) separated by spaces or hyphens.
//!
//! Luhn alone passes one random number in ten, so a candidate must also
//! start with the issuer identification number (IIN) of a scheme that
//! issues cards of that length. The ranges are the schemes' published
//! ones (Visa, Mastercard, American Express, Discover, JCB, Diners Club,
//! `UnionPay`, Maestro, Mir).

use super::digits::{for_each, luhn_valid};

/// (lowest prefix, highest prefix, shortest length, longest length).
/// Prefixes are compared at their own number of digits.
const IIN_RANGES: &[(&str, &str, usize, usize)] = &[
    ("4", "4", 13, 13),       // Visa, legacy 13 digits
    ("4", "4", 16, 16),       // Visa
    ("4", "4", 19, 19),       // Visa, 19 digits
    ("51", "55", 16, 16),     // Mastercard
    ("2221", "2720", 16, 16), // Mastercard 2-series
    ("34", "34", 15, 15),     // American Express
    ("37", "37", 15, 15),     // American Express
    ("6011", "6011", 16, 19), // Discover
    ("644", "649", 16, 19),   // Discover
    ("65", "65", 16, 19),     // Discover
    ("3528", "3589", 16, 19), // JCB
    ("36", "36", 14, 19),     // Diners Club International
    ("38", "39", 16, 19),     // Diners Club (Discover network)
    ("300", "305", 14, 19),   // Diners Club Carte Blanche
    ("62", "62", 16, 19),     // UnionPay
    ("2200", "2204", 16, 19), // Mir
    ("5018", "5018", 13, 19), // Maestro
    ("5020", "5020", 13, 19), // Maestro
    ("5038", "5038", 13, 19), // Maestro
    ("5893", "5893", 13, 19), // Maestro
    ("6304", "6304", 13, 19), // Maestro
    ("6759", "6759", 13, 19), // Maestro UK
    ("6761", "6763", 13, 19), // Maestro
];

fn known_iin(digits: &str) -> bool {
    IIN_RANGES.iter().any(|&(lo, hi, min, max)| {
        let prefix = &digits[..lo.len().min(digits.len())];
        (min..=max).contains(&digits.len()) && lo <= prefix && prefix <= hi
    })
}

fn layout_ok(groups: &[usize]) -> bool {
    match groups {
        [n] => (13..=19).contains(n),
        [4, 6, 5 | 4] => true,
        [init @ .., last] if init.len() >= 2 => init.iter().all(|&g| g == 4) && *last <= 4,
        _ => false,
    }
}

/// Reports every valid card number in `text`, as digits.
pub(crate) fn find(text: &str, found: &mut dyn FnMut(&str)) {
    for_each(text, 5, 13..=19, |c| {
        let d = c.digits;
        let all_same = d.bytes().all(|b| b == d.as_bytes()[0]);
        if layout_ok(c.groups) && !all_same && known_iin(d) && luhn_valid(d) {
            found(d);
        }
    });
}

#[cfg(test)]
mod tests {
    fn find(text: &str) -> Vec<String> {
        crate::detect::distinct(super::find, text)
    }

    #[test]
    fn visa_only_at_its_lengths() {
        for wrong in ["42222222222226", "422222222222226", "41111111111111113"] {
            assert!(find(wrong).is_empty(), "{wrong}");
        }
    }

    #[test]
    fn scheme_test_numbers() {
        assert_eq!(find("4111 1111 1111 1111"), ["4111111111111111"]);
        assert_eq!(find("5555-5555-5555-4444"), ["5555555555554444"]);
        assert_eq!(find("Amex 3782 822463 10005"), ["378282246310005"]);
        assert_eq!(find("371449635398431"), ["371449635398431"]);
        assert_eq!(find("6011111111111117"), ["6011111111111117"]);
        assert_eq!(find("3530111333300000"), ["3530111333300000"]);
        assert_eq!(find("2223003122003222"), ["2223003122003222"]);
        assert_eq!(find("Diners 3056 930902 5904"), ["30569309025904"]);
        assert_eq!(find("4222222222222"), ["4222222222222"]);
    }

    #[test]
    fn next_to_other_numbers() {
        // Expiry date and CVC right after the number.
        assert_eq!(find("4111 1111 1111 1111 12/27 123"), ["4111111111111111"]);
        assert_eq!(find("Karte:4111111111111111."), ["4111111111111111"]);
    }

    #[test]
    fn luhn_decoys() {
        assert!(find("4111 1111 1111 1112").is_empty());
        assert!(find("5555555555554445").is_empty());
        assert!(find("378282246310006").is_empty());
    }

    #[test]
    fn unknown_prefix_or_length() {
        // Luhn-valid, but no scheme issues these.
        assert!(find("1234567812345670").is_empty());
        assert!(find("9999999999999995").is_empty());
        // Amex is 15 digits; a Luhn-valid 16-digit "37…" is not a card.
        assert!(find("3700000000000007").is_empty());
        // Mastercard range ends at 2720.
        assert!(find("2721000000000004").is_empty());
    }

    #[test]
    fn all_same_digit() {
        assert!(find("0000 0000 0000 0000").is_empty());
        // Luhn-valid, and no scheme starts with 8 either: the rule is a
        // guard for future table entries.
        assert!(find("8888 8888 8888 8888").is_empty());
    }

    #[test]
    fn not_inside_longer_runs() {
        assert!(find("14111111111111111").is_empty());
        assert!(find("41111111111111110000").is_empty());
        assert!(find("Nr4111111111111111").is_empty());
        assert!(find("2023-4111-1111-1111-1111").is_empty());
    }

    #[test]
    fn word_boundaries_outside_ascii() {
        for glued in [
            "ä4111111111111111",
            "4111111111111111ä",
            "4111 1111 1111 1111½",
            "٣4111-1111-1111-1111",
        ] {
            assert!(find(glued).is_empty(), "{glued}");
        }
        for apart in ["€4111111111111111€", "Straße 4111 1111 1111 1111 – ok"] {
            assert_eq!(find(apart), ["4111111111111111"], "{apart}");
        }
    }

    #[test]
    fn odd_groupings() {
        assert!(find("41 1111 1111 1111 11").is_empty());
        assert!(find("411 111 111 111 1111").is_empty());
    }

    #[test]
    fn phone_numbers_dates_orders() {
        assert!(find("+49 (0)30 1234 5678, 2024-01-15, Auftrag 4711-0815").is_empty());
    }
}
