//! Numbers as people print them: "86095742719", "4111 1111 1111 1111",
//! "4111-1111-1111-1111". The card and tax-id detectors look at the same
//! candidates, so finding them lives here once.
//!
//! A *run* is a maximal sequence of digit groups joined by one separator
//! kind (a single space or a single hyphen). A run never touches a letter
//! or digit on either side: a number glued to other alphanumerics
//! ("RE2024086095742719", "x4111…") is part of some longer identifier and
//! is not a candidate. Within a space-joined run every window of adjacent
//! groups is a candidate, because text puts other numbers next to a card
//! number ("4111 1111 1111 1111 12/27"); a hyphen-joined run is one
//! identifier ("2023-4111-1111-1111-1111" is an order number) and only
//! counts whole.

use std::collections::VecDeque;
use std::ops::{Range, RangeInclusive};

use super::words::{next_digit, word_at, word_before, word_end};

/// One candidate: its digits without separators and the length of each
/// printed group ("4111 1111 1111 1111" → `[4, 4, 4, 4]`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Candidate<'a> {
    pub digits: &'a str,
    pub groups: &'a [usize],
}

/// Calls `f` with every candidate of at most `max_groups` groups whose
/// number of digits is in `digits`. Streaming, with buffers the size of
/// one window: the text may be megabytes of "1 1 1 …", and neither time
/// nor memory may grow faster than the text.
pub(crate) fn for_each(
    text: &str,
    max_groups: usize,
    digits: RangeInclusive<usize>,
    mut f: impl FnMut(Candidate<'_>),
) {
    let b = text.as_bytes();
    let mut emit = Emitter {
        text,
        len: digits,
        digits: String::new(),
        lens: Vec::new(),
    };
    // The last `max_groups` groups of the current run.
    let mut window: VecDeque<Range<usize>> = VecDeque::with_capacity(max_groups + 1);
    let mut i = 0;
    while i < b.len() {
        let Some(digit) = next_digit(b, i) else {
            break;
        };
        i = digit;
        let glued_before = word_before(text, i);
        let mut sep = None;
        let mut index = 0;
        let mut j = i;
        window.clear();
        loop {
            let start = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let joins = j + 1 < b.len()
                && matches!(b[j], b' ' | b'-')
                && b[j + 1].is_ascii_digit()
                && sep.is_none_or(|s| s == b[j]);
            if joins {
                sep = Some(b[j]);
            }
            let glued_after = !joins && word_at(text, j);
            window.push_back(start..j);
            if window.len() > max_groups {
                window.pop_front();
            }
            if sep != Some(b'-') && !glued_after {
                // Every window that ends with this group.
                for k in 1..=window.len() {
                    if !(glued_before && index + 1 == k) {
                        emit.window(window.range(window.len() - k..), &mut f);
                    }
                }
            }
            index += 1;
            if !joins {
                let whole = index <= max_groups && !glued_before && !glued_after;
                if sep == Some(b'-') && whole {
                    emit.window(window.range(..), &mut f);
                }
                break;
            }
            j += 1;
        }
        // Skip the rest of a glued word so its later digits do not start
        // a run of their own ("ab12cd34").
        i = word_end(text, j);
    }
}

/// Builds a candidate from a window of groups into reused buffers.
struct Emitter<'t> {
    text: &'t str,
    len: RangeInclusive<usize>,
    digits: String,
    lens: Vec<usize>,
}

impl Emitter<'_> {
    fn window<'r>(
        &mut self,
        groups: impl Iterator<Item = &'r Range<usize>> + Clone,
        f: &mut impl FnMut(Candidate<'_>),
    ) {
        if !self
            .len
            .contains(&groups.clone().map(ExactSizeIterator::len).sum::<usize>())
        {
            return;
        }
        self.digits.clear();
        self.lens.clear();
        for g in groups {
            self.digits.push_str(&self.text[g.clone()]);
            self.lens.push(g.len());
        }
        f(Candidate {
            digits: &self.digits,
            groups: &self.lens,
        });
    }
}

/// Luhn (ISO/IEC 7812-1 Annex B): doubling every second digit from the
/// right; valid when the sum is a multiple of 10.
pub(crate) fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(text: &str, max_groups: usize) -> Vec<String> {
        let mut out = Vec::new();
        for_each(text, max_groups, 1..=19, |c| {
            assert_eq!(c.digits.len(), c.groups.iter().sum::<usize>());
            out.push(c.digits.to_owned());
        });
        out
    }

    fn digits(text: &str) -> Vec<String> {
        let mut out = windows(text, 5);
        out.sort();
        out
    }

    #[test]
    fn compact_and_grouped() {
        assert_eq!(digits("nr 12345 end"), ["12345"]);
        assert_eq!(digits("1 23"), ["1", "123", "23"]);
        assert_eq!(digits("1 2 3"), ["1", "12", "123", "2", "23", "3"]);
        assert_eq!(digits("1-23"), ["123"]);
    }

    #[test]
    fn glued_to_letters_is_not_a_candidate() {
        assert!(digits("RE2024086095742719").is_empty());
        assert!(digits("ab12cd34").is_empty());
        assert_eq!(digits("x12 34"), ["34"]);
        assert_eq!(digits("12 34y"), ["12"]);
        assert!(digits("x12-34").is_empty());
        assert!(digits("Straße12").is_empty());
    }

    #[test]
    fn separators_do_not_mix() {
        // "1 2-3": the space run ends at the hyphen; "3" stands alone.
        assert_eq!(digits("1 2-3"), ["1", "12", "2", "3"]);
        // Double spaces and other punctuation end a run.
        assert_eq!(digits("1  2"), ["1", "2"]);
        assert_eq!(digits("12/27"), ["12", "27"]);
    }

    #[test]
    fn windows_are_bounded() {
        let text = "1 ".repeat(1000);
        assert_eq!(windows(&text, 3).len(), 1000 + 999 + 998);
        // A hyphen run longer than the window is not a candidate at all.
        assert!(windows("1-2-3-4", 3).is_empty());
        assert_eq!(windows("1-2-3", 3), ["123"]);
        assert!(digits("12345678901234567890").is_empty());
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid("4111111111111111"));
        assert!(luhn_valid("79927398713"));
        assert!(!luhn_valid("4111111111111112"));
        assert!(!luhn_valid("79927398710"));
    }
}
