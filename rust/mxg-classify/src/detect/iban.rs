//! IBAN, ISO 13616-1:2020: country code, two check digits, a BBAN whose
//! length the country fixes; valid when the number read with its first
//! four characters moved to the end and letters as 10..35 is 1 mod 97
//! (ISO/IEC 7064 MOD 97-10). Printed compact ("DE89370400440532013000")
//! or, as ISO 13616-1 §5.4 prescribes for paper, in groups of four
//! separated by single spaces with a shorter last group.

use super::words::{Words, WordsWithDigits};

/// Country code → IBAN length, from the SWIFT IBAN registry (the ISO
/// 13616 registration authority): the SEPA countries and the others that
/// commonly appear in European payments.
const LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("CH", 21),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("EE", 20),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IS", 26),
    ("IT", 27),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MT", 31),
    ("NL", 18),
    ("NO", 15),
    ("PL", 28),
    ("PT", 25),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("XK", 20),
];

fn iban_length(country: &str) -> Option<usize> {
    LENGTHS
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(country))
        .map(|&(_, n)| n)
}

/// Reports every valid IBAN in `text`, compact and upper case.
#[cfg(test)]
pub(crate) fn find(text: &str, found: &mut dyn FnMut(&str)) {
    each(text, &mut |iban, _| found(iban));
}

/// Reports every valid IBAN in `text`, compact and upper case, and
/// returns `text` with each of them blanked out, for the other detectors:
/// the digits of "DE95 4111 1111 1111 1111 00" are an account, not a card
/// number. Spans are ASCII, so blanking keeps the text valid UTF-8.
pub(crate) fn find_and_mask<'t>(
    text: &'t str,
    found: &mut dyn FnMut(&str),
) -> std::borrow::Cow<'t, str> {
    let mut spans = Vec::new();
    each(text, &mut |iban, span| {
        found(iban);
        spans.push(span);
    });
    if spans.is_empty() {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut bytes = text.as_bytes().to_vec();
    for span in spans {
        bytes[span].fill(b' ');
    }
    std::borrow::Cow::Owned(String::from_utf8(bytes).unwrap_or_else(|_| text.to_owned()))
}

/// Calls `f` with every valid IBAN and the byte range it was printed in.
/// Its first word (the whole IBAN, or its first group) holds the check
/// digits, so only words with digits are looked at.
fn each(text: &str, f: &mut dyn FnMut(&str, std::ops::Range<usize>)) {
    let mut iban = String::new();
    for first in WordsWithDigits::new(text) {
        let (start, end) = (first.start, first.end);
        let first = &text[first];
        let b = first.as_bytes();
        if b.len() < 4
            || !b[..2].iter().all(u8::is_ascii_alphabetic)
            || !b[2..4].iter().all(u8::is_ascii_digit)
        {
            continue;
        }
        let Some(len) = iban_length(&first[..2]) else {
            continue;
        };
        iban.clear();
        iban.push_str(first);
        let complete = if b.len() == 4 {
            grouped(text, end, Words::after(text, end), len, &mut iban)
        } else if b.len() == len && first.is_ascii() {
            Some(end)
        } else {
            None
        };
        if let Some(last) = complete {
            iban.make_ascii_uppercase();
            if valid(&iban) {
                f(&iban, start..last);
            }
        }
    }
}

/// Completes `iban` (its first group, ending at `prev_end`) from the
/// following words if they are exactly its groups of four, one space
/// apart, the last one shorter as the length requires; returns where the
/// last group ends.
fn grouped(
    text: &str,
    mut prev_end: usize,
    rest: Words<'_>,
    len: usize,
    iban: &mut String,
) -> Option<usize> {
    for group in rest {
        if iban.len() == len {
            break;
        }
        let (start, end) = (group.start, group.end);
        let group = &text[group];
        if &text[prev_end..start] != " " || group.len() != (len - iban.len()).min(4) {
            return None;
        }
        if !group.is_ascii() {
            return None;
        }
        iban.push_str(group);
        prev_end = end;
    }
    (iban.len() == len).then_some(prev_end)
}

/// `iban`: upper-case ASCII alphanumerics of the right length.
fn valid(iban: &str) -> bool {
    let b = iban.as_bytes();
    // ISO 13616-1 §6.1: check digits are 02..98; "00", "01" and "99" are
    // never issued even where the remainder would come out right.
    if matches!(&b[2..4], b"00" | b"01" | b"99") {
        return false;
    }
    if !b[4..].iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let mut rem = 0u32;
    for &ch in b[4..].iter().chain(&b[..4]) {
        let v = if ch.is_ascii_digit() {
            u32::from(ch - b'0')
        } else {
            u32::from(ch - b'A') + 10
        };
        rem = if v < 10 {
            (rem * 10 + v) % 97
        } else {
            (rem * 100 + v) % 97
        };
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    fn find(text: &str) -> Vec<String> {
        crate::detect::distinct(super::find, text)
    }

    #[test]
    fn known_valid_ibans() {
        assert_eq!(
            find("IBAN DE89370400440532013000."),
            ["DE89370400440532013000"]
        );
        assert_eq!(
            find("DE89 3704 0044 0532 0130 00"),
            ["DE89370400440532013000"]
        );
        assert_eq!(
            find("GB82 WEST 1234 5698 7654 32"),
            ["GB82WEST12345698765432"]
        );
        assert_eq!(find("gb82west12345698765432"), ["GB82WEST12345698765432"]);
        assert_eq!(find("AT61 1904 3002 3457 3201"), ["AT611904300234573201"]);
        assert_eq!(find("CH9300762011623852957"), ["CH9300762011623852957"]);
        assert_eq!(
            find("FR1420041010050500013M02606"),
            ["FR1420041010050500013M02606"]
        );
        assert_eq!(find("NL91ABNA0417164300"), ["NL91ABNA0417164300"]);
        assert_eq!(find("BE68539007547034"), ["BE68539007547034"]);
        assert_eq!(find("NO9386011117947"), ["NO9386011117947"]);
        assert_eq!(
            find("(LI21 0881 0000 2324 013A A)"),
            ["LI21088100002324013AA"]
        );
    }

    #[test]
    fn distinct_values_once() {
        let text = "DE89370400440532013000 and again DE89 3704 0044 0532 0130 00";
        assert_eq!(find(text).len(), 1);
    }

    #[test]
    fn check_digit_decoys() {
        // One digit off, transposed digits, wrong check digits.
        assert!(find("DE89370400440532013001").is_empty());
        assert!(find("DE89370400440532031000").is_empty());
        assert!(find("DE88370400440532013000").is_empty());
        assert!(find("GB82 WEST 1234 5698 7654 33").is_empty());
    }

    #[test]
    fn wrong_length_or_country() {
        // DE is 22 long; a valid-looking 21 or 23 is not an IBAN.
        assert!(find("DE8937040044053201300").is_empty());
        assert!(find("DE893704004405320130000").is_empty());
        assert!(find("ZZ89370400440532013000").is_empty());
    }

    #[test]
    fn not_inside_longer_runs() {
        assert!(find("XDE89370400440532013000").is_empty());
        assert!(find("DE89370400440532013000X").is_empty());
        assert!(find("DE89370400440532013000ä").is_empty());
    }

    #[test]
    fn word_boundaries_outside_ascii() {
        // Letters and digits of any script continue a word ("½" and "٣"
        // are numeric); symbols and punctuation do not.
        for glued in [
            "äDE89370400440532013000",
            "٣DE89370400440532013000",
            "DE89370400440532013000½",
            "DE89 3704 0044 0532 0130 00ä",
            "DE89 3704 0044 0532 0130 00½",
            "DE89 3704 0044 ä532 0130 00",
            "DE89 3704 0044\u{a0}0532 0130 00",
        ] {
            assert!(find(glued).is_empty(), "{glued}");
        }
        for apart in [
            "€DE89370400440532013000€",
            "Überweisung: DE89370400440532013000, danke",
            "Grüße DE89 3704 0044 0532 0130 00 – Straße",
            "DE89 3704 0044 0532 0130 00😀",
        ] {
            assert_eq!(find(apart), ["DE89370400440532013000"], "{apart}");
        }
    }

    #[test]
    fn at_the_start_and_end_of_the_text() {
        assert_eq!(
            find("DE89 3704 0044 0532 0130 00"),
            ["DE89370400440532013000"]
        );
        // A group cut off by the end of the text.
        assert!(find("x DE89 3704 0044 0532 0130 0").is_empty());
        assert!(find("DE89").is_empty());
        assert!(find("DE8").is_empty());
    }

    #[test]
    fn grouping_must_be_exact() {
        assert!(find("DE89 37040044 0532 0130 00").is_empty());
        assert!(find("DE89  3704 0044 0532 0130 00").is_empty());
        assert!(find("DE89 3704 0044 0532 0130").is_empty());
        // A trailing word after the last group does not matter.
        assert_eq!(find("DE89 3704 0044 0532 0130 00 BIC").len(), 1);
    }

    #[test]
    fn reserved_check_digits() {
        // 98 ≡ 1 (mod 97): for a BBAN whose check digits are 98, "01"
        // passes the arithmetic too, but is never issued.
        let bban = (0..10_000)
            .map(|n| format!("3704004405320{n:05}"))
            .find(|b| !find(&format!("DE98{b}")).is_empty())
            .expect("some BBAN has check digits 98");
        assert!(find(&format!("DE01{bban}")).is_empty());
    }

    #[test]
    fn phone_numbers_and_dates_are_not_ibans() {
        assert!(find("Tel. +49 30 1234567, am 2024-01-15").is_empty());
    }
}
