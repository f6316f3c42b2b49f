//! German tax identification number (steuerliche Identifikationsnummer,
//! § 139b AO; structure in § 1 StIdV): ten digits and a check digit.
//! Printed compact ("86095742719") or as the Bundeszentralamt für Steuern
//! prints it in its letters, "86 095 742 719".
//!
//! Beyond the check digit, the Bundeszentralamt issues only numbers whose first ten digits
//! have exactly one digit occurring twice or three times and every other
//! digit at most once; since 2016 a tripled digit may not fill three
//! adjacent places. Together with the leading non-zero digit this rejects
//! most dates, phone and order numbers that happen to fit the check digit.

use super::digits::for_each;

/// Reports every valid tax id in `text`, as 11 digits.
pub(crate) fn find(text: &str, found: &mut dyn FnMut(&str)) {
    for_each(text, 4, 11..=11, |c| {
        let layout_ok = c.groups == [11] || c.groups == [2, 3, 3, 3];
        if layout_ok && valid(c.digits) {
            found(c.digits);
        }
    });
}

fn valid(id: &str) -> bool {
    let d: Vec<u8> = id.bytes().map(|b| b - b'0').collect();
    d.len() == 11 && d[0] != 0 && structure_ok(&d[..10]) && check_digit(&d[..10]) == d[10]
}

fn structure_ok(first10: &[u8]) -> bool {
    let mut counts = [0u8; 10];
    for &x in first10 {
        counts[usize::from(x)] += 1;
    }
    let repeated: Vec<usize> = (0..10).filter(|&x| counts[x] > 1).collect();
    let [digit] = repeated[..] else {
        return false;
    };
    match counts[digit] {
        2 => true,
        3 => !first10
            .windows(3)
            .any(|w| w.iter().all(|&x| usize::from(x) == digit)),
        _ => false,
    }
}

/// ISO/IEC 7064 MOD 11,10 (hybrid system), the check digit of § 139b AO.
fn check_digit(first10: &[u8]) -> u8 {
    let mut product = 10u8;
    for &x in first10 {
        let mut sum = (x + product) % 10;
        if sum == 0 {
            sum = 10;
        }
        product = (sum * 2) % 11;
    }
    let check = 11 - product;
    if check == 10 {
        0
    } else {
        check
    }
}

#[cfg(test)]
mod tests {
    use super::{check_digit, structure_ok, valid};

    fn find(text: &str) -> Vec<String> {
        crate::detect::distinct(super::find, text)
    }

    #[test]
    fn published_examples() {
        // The BZSt's sample number and python-stdnum's documented one.
        assert_eq!(find("IdNr 86095742719"), ["86095742719"]);
        assert_eq!(find("Steuer-ID: 36 574 261 809."), ["36574261809"]);
    }

    #[test]
    fn check_digit_decoys() {
        assert!(find("86095742718").is_empty());
        assert!(find("86095742710").is_empty());
        assert!(find("36574261890").is_empty());
    }

    #[test]
    fn structure_rule() {
        // More than one repeated digit (python-stdnum's example).
        assert!(!valid("36554266806"));
        // No digit repeated at all.
        let ten = "1234567890";
        let d: Vec<u8> = ten.bytes().map(|b| b - b'0').collect();
        assert!(!structure_ok(&d));
        // A digit three times is fine unless the three are adjacent.
        assert!(structure_ok(&[1, 1, 2, 1, 3, 4, 5, 6, 7, 8]));
        assert!(!structure_ok(&[1, 1, 1, 2, 3, 4, 5, 6, 7, 8]));
        // Four times is never issued.
        assert!(!structure_ok(&[1, 1, 2, 1, 3, 1, 5, 6, 7, 8]));
    }

    /// The ten digits with their check digit, as printed.
    fn with_check_digit(first: &[u8; 10]) -> String {
        first
            .iter()
            .chain(std::iter::once(&check_digit(first)))
            .map(|d| char::from(b'0' + d))
            .collect()
    }

    #[test]
    fn valid_check_digit_with_bad_structure_is_rejected() {
        // Same check digit arithmetic, but digits 1–10 repeat two digits.
        assert!(find(&with_check_digit(&[3, 6, 5, 5, 4, 2, 6, 6, 8, 0])).is_empty());
    }

    #[test]
    fn leading_zero_and_layout() {
        assert!(find(&with_check_digit(&[0, 6, 0, 9, 5, 7, 4, 2, 7, 1])).is_empty());
        // Other groupings are other numbers (phone numbers, dates).
        assert!(find("860 957 427 19").is_empty());
        assert!(find("8609-5742719").is_empty());
    }

    #[test]
    fn not_inside_longer_runs() {
        assert!(find("186095742719").is_empty());
        assert!(find("860957427190").is_empty());
        assert!(find("Nr86095742719").is_empty());
        assert!(find("2024-86095742719").is_empty());
    }

    #[test]
    fn word_boundaries_outside_ascii() {
        assert!(find("½86095742719").is_empty());
        assert!(find("86 095 742 719ü").is_empty());
        assert_eq!(find("Größe 86095742719 €"), ["86095742719"]);
        assert_eq!(find("86095742719"), ["86095742719"]);
    }

    #[test]
    fn phone_numbers_dates_orders() {
        assert!(find("Tel 030 12345678, 01.02.2024, Bestellung 2024-000123").is_empty());
        assert!(find("+49 1512 3456789").is_empty());
    }
}
