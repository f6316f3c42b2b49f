//! Text as the detectors see it, and how much of it they may see.

use std::borrow::Cow;

/// Spaces that render as spaces become ' ', and characters that render as
/// nothing are dropped, so "DE89&nbsp;3704…" or an IBAN with a zero-width
/// space inside is found like the plain one.
pub(crate) fn clean(text: &str) -> Cow<'_, str> {
    let odd = |c: char| is_space(c) || is_invisible(c);
    if !text.contains(odd) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .filter(|&c| !is_invisible(c))
            .map(|c| if is_space(c) { ' ' } else { c })
            .collect(),
    )
}

/// No-break, figure, thin, narrow no-break and the other fixed-width
/// spaces (Unicode Zs other than U+0020).
fn is_space(c: char) -> bool {
    matches!(
        c,
        '\u{a0}' | '\u{2000}'..='\u{200a}' | '\u{202f}' | '\u{205f}' | '\u{3000}'
    )
}

/// Soft hyphen, zero-width space/joiners, word joiner, BOM.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}' | '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}'
    )
}

/// The `max_scan_bytes` budget: the detectors see at most that much text
/// in all, so a huge message costs a bounded amount of scanning.
pub(crate) struct Budget {
    left: usize,
    pub exhausted: bool,
}

impl Budget {
    pub fn new(bytes: usize) -> Self {
        Self {
            left: bytes,
            exhausted: false,
        }
    }

    pub fn left(&self) -> usize {
        self.left
    }

    /// The part of `text` that still fits, cut at a character boundary.
    pub fn take<'t>(&mut self, text: &'t str) -> &'t str {
        if text.len() <= self.left {
            self.left -= text.len();
            return text;
        }
        let mut cut = self.left;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        self.left = 0;
        self.exhausted = true;
        &text[..cut]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_spaces_and_invisibles() {
        assert_eq!(clean("a\u{a0}b\u{202f}c\u{200b}d\u{ad}e"), "a b cde");
        assert!(matches!(clean("plain text"), Cow::Borrowed(_)));
    }

    #[test]
    fn budget_cuts_at_char_boundary() {
        let mut b = Budget::new(5);
        assert_eq!(b.take("abc"), "abc");
        assert!(!b.exhausted);
        // "ää" is 4 bytes; only 2 are left, exactly one "ä".
        assert_eq!(b.take("äää"), "ä");
        assert!(b.exhausted);
        assert_eq!(b.take("x"), "");
        let mut b = Budget::new(1);
        assert_eq!(b.take("ä"), "");
    }
}
