//! Text as the detectors see it, and how much of it they may see.

use std::borrow::Cow;

/// Spaces that render as spaces become ' ', and characters that render as
/// nothing are dropped, so "DE89&nbsp;3704…" or an IBAN with a zero-width
/// space inside is found like the plain one.
pub(crate) fn clean(text: &str) -> Cow<'_, str> {
    // All of them are outside ASCII: most text is left as it is after
    // one fast pass.
    if text.is_ascii() || !has_odd(text) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .filter(|&c| !is_invisible(c))
            .map(|c| if is_space(c) { ' ' } else { c })
            .collect(),
    )
}

/// Whether `text` has a character [`clean`] changes. Each of them is
/// encoded with a lead byte of C2 (U+00A0, U+00AD), E2 (U+2000..U+2060),
/// E3 (U+3000) or EF (U+FEFF): only there is a character decoded.
fn has_odd(text: &str) -> bool {
    text.bytes().enumerate().any(|(i, b)| {
        matches!(b, 0xC2 | 0xE2 | 0xE3 | 0xEF)
            && text[i..]
                .chars()
                .next()
                .is_some_and(|c| is_space(c) || is_invisible(c))
    })
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
        assert!(matches!(clean("Grüße, 東京 ½"), Cow::Borrowed(_)));
    }

    #[test]
    fn clean_every_odd_character_anywhere() {
        // Each one at the start, in the middle (after other non-ASCII
        // text sharing its lead byte) and at the end.
        let odd = [
            '\u{a0}', '\u{ad}', '\u{2000}', '\u{200a}', '\u{200b}', '\u{200d}', '\u{202f}',
            '\u{205f}', '\u{2060}', '\u{3000}', '\u{feff}',
        ];
        for c in odd {
            let text = format!("{c}a\u{a9}\u{2013}\u{3001}\u{ff01}{c}b{c}");
            let dropped = if is_space(c) { " " } else { "" };
            let want = format!("{dropped}a\u{a9}\u{2013}\u{3001}\u{ff01}{dropped}b{dropped}");
            assert_eq!(clean(&text), want, "{c:?}");
        }
        // Neighbours of the odd ones with the same lead bytes stay.
        for same_lead in ["\u{a9}", "\u{2013}", "\u{2061}", "\u{3001}", "\u{fefe}"] {
            assert!(
                matches!(clean(same_lead), Cow::Borrowed(_)),
                "{same_lead:?}"
            );
        }
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
