//! Word boundaries and digits in UTF-8 text, for the built-in detectors.
//!
//! A *word* is a maximal run of alphanumeric characters in any script
//! (`char::is_alphanumeric`): an identifier glued to other letters or
//! digits, "XDE89…" or "DE89…ä", is part of a longer word and not found.
//!
//! Mail is mostly ASCII, and decoding every character to ask Unicode
//! about it was the scanner's largest cost. So these functions read a
//! byte at a time and decode a character only where a byte is not ASCII;
//! the answers are those of `char::is_alphanumeric` either way.

use std::ops::Range;

use crate::bytes::find_byte;

fn is_word(c: char) -> bool {
    c.is_alphanumeric()
}

/// Whether the character that starts at byte `i` is a word character;
/// false at the end of the text.
pub(crate) fn word_at(text: &str, i: usize) -> bool {
    match text.as_bytes().get(i) {
        Some(b) if b.is_ascii() => b.is_ascii_alphanumeric(),
        Some(_) => text[i..].chars().next().is_some_and(is_word),
        None => false,
    }
}

/// Whether the character that ends at byte `i` is a word character;
/// false at the start of the text.
pub(crate) fn word_before(text: &str, i: usize) -> bool {
    match i.checked_sub(1).map(|k| text.as_bytes()[k]) {
        Some(b) if b.is_ascii() => b.is_ascii_alphanumeric(),
        Some(_) => text[..i].chars().next_back().is_some_and(is_word),
        None => false,
    }
}

/// Where the run of characters from byte `i` on that are (`word`) or are
/// not (`!word`) word characters ends.
fn run_end(text: &str, mut i: usize, word: bool) -> usize {
    let b = text.as_bytes();
    while let Some(&byte) = b.get(i) {
        if byte.is_ascii() {
            if byte.is_ascii_alphanumeric() != word {
                break;
            }
            i += 1;
        } else {
            match text[i..].chars().next() {
                Some(c) if is_word(c) == word => i += c.len_utf8(),
                _ => break,
            }
        }
    }
    i
}

/// Where the word that byte `i` is in (or starts) ends: `i` itself if no
/// word character starts there.
pub(crate) fn word_end(text: &str, i: usize) -> usize {
    run_end(text, i, true)
}

/// Where the word that ends at byte `i` begins: `i` itself if no word
/// character ends there.
fn word_start(text: &str, mut i: usize) -> usize {
    let b = text.as_bytes();
    while i > 0 {
        let byte = b[i - 1];
        if byte.is_ascii() {
            if !byte.is_ascii_alphanumeric() {
                break;
            }
            i -= 1;
        } else {
            match text[..i].chars().next_back() {
                Some(c) if is_word(c) => i -= c.len_utf8(),
                _ => break,
            }
        }
    }
    i
}

/// The first ASCII digit in `b` at or after `from`.
pub(crate) fn next_digit(b: &[u8], from: usize) -> Option<usize> {
    find_byte(b, from, |c| c.is_ascii_digit())
}

/// The words of a text, as byte ranges, in order.
pub(crate) struct Words<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Words<'a> {
    /// The words that start at or after byte `pos`, a character boundary
    /// that is not inside a word.
    pub fn after(text: &'a str, pos: usize) -> Self {
        Self { text, pos }
    }
}

impl Iterator for Words<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        let start = run_end(self.text, self.pos, false);
        if start == self.text.len() {
            self.pos = start;
            return None;
        }
        let end = word_end(self.text, start);
        self.pos = end;
        Some(start..end)
    }
}

/// The words of a text that contain an ASCII digit, in order: the only
/// ones that can be an IBAN's first group or a KVNR. Found from the
/// digits, so the words in between cost next to nothing.
pub(crate) struct WordsWithDigits<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> WordsWithDigits<'a> {
    pub fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }
}

impl Iterator for WordsWithDigits<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        let digit = next_digit(self.text.as_bytes(), self.pos)?;
        // `pos` is 0 or the end of the previous word, where a non-word
        // character stands; so the word starts after it.
        let start = word_start(self.text, digit);
        let end = word_end(self.text, digit);
        self.pos = end;
        Some(start..end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words as the definition gives them, character by character.
    fn words_by_chars(text: &str) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut start = None;
        for (i, c) in text.char_indices().chain([(text.len(), ' ')]) {
            match (c.is_alphanumeric(), start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    out.push(s..i);
                    start = None;
                }
                _ => {}
            }
        }
        out
    }

    const TEXTS: &[&str] = &[
        "",
        " ",
        "a",
        "DE89 3704",
        "äDE89ä x",
        "DE89370400440532013000ä",
        "ß1 ½2 ٣4 一5 \u{a0}6\u{200b}7 x",
        "A123456780ü, (Z123456783)",
        "  trailing  ",
        "😀12😀",
        "straße-1234 ÅB12",
    ];

    #[test]
    fn words_match_the_definition() {
        for text in TEXTS {
            let expected = words_by_chars(text);
            assert_eq!(
                Words::after(text, 0).collect::<Vec<_>>(),
                expected,
                "{text:?}"
            );
            let with_digits: Vec<_> = expected
                .into_iter()
                .filter(|w| text[w.clone()].bytes().any(|b| b.is_ascii_digit()))
                .collect();
            assert_eq!(
                WordsWithDigits::new(text).collect::<Vec<_>>(),
                with_digits,
                "{text:?}"
            );
        }
    }

    #[test]
    fn boundaries_match_the_definition() {
        for text in TEXTS {
            for (i, _) in text.char_indices().chain([(text.len(), ' ')]) {
                let at = text[i..].chars().next().is_some_and(char::is_alphanumeric);
                let before = text[..i]
                    .chars()
                    .next_back()
                    .is_some_and(char::is_alphanumeric);
                assert_eq!(word_at(text, i), at, "{text:?} {i}");
                assert_eq!(word_before(text, i), before, "{text:?} {i}");
            }
        }
    }

    #[test]
    fn digits_are_ascii_digits() {
        assert_eq!(next_digit("x٣ 一½7".as_bytes(), 0), Some(9));
        assert_eq!(next_digit("٣ 一".as_bytes(), 0), None);
    }
}
