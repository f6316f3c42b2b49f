//! Keyword lists: case-insensitive whole-word (or whole-phrase) matching,
//! Unicode aware ("Diagnose" is found in "Diagnose," and "Diagnose-Bericht",
//! not in "Diagnosen"; "ärztlich" in "ÄRZTLICH").
//!
//! Both sides are lower-cased (Unicode) and whitespace runs collapse to
//! one space, so a phrase is found across a line break. One Aho-Corasick
//! automaton per list finds every occurrence, overlapping ones included,
//! in one pass; each is then kept only if it does not continue a longer
//! word on either side. Overlapping search matters: with "Diagnose" and
//! "Diagnosen" in one list, the shorter must not hide the longer.

use aho_corasick::{AhoCorasick, MatchKind};

use crate::error::ScanError;

pub(crate) struct KeywordMatcher {
    /// "keyword:<list name>".
    pub key: String,
    /// Normalised words, one per automaton pattern.
    words: Vec<String>,
    automaton: AhoCorasick,
}

impl KeywordMatcher {
    pub fn new(name: &str, words: &[String]) -> Result<Self, ScanError> {
        let mut normal: Vec<String> = Vec::new();
        for w in words {
            let n = normalise(w);
            if n.is_empty() {
                return Err(ScanError::EmptyKeyword(name.to_owned()));
            }
            // "Diagnose" and "diagnose" are one word of the list.
            if !normal.contains(&n) {
                normal.push(n);
            }
        }
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(&normal)
            .map_err(|e| ScanError::Keywords {
                list: name.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            key: format!("keyword:{name}"),
            words: normal,
            automaton,
        })
    }

    /// The distinct words of the list that occur in `hay`, a text after
    /// [`normalise`] (done once for all lists).
    pub fn find(&self, hay: &str) -> Vec<&str> {
        let mut seen = vec![false; self.words.len()];
        let mut left = self.words.len();
        for m in self.automaton.find_overlapping_iter(hay) {
            let id = m.pattern().as_usize();
            if seen[id] || !whole(hay, m.start(), m.end()) {
                continue;
            }
            seen[id] = true;
            left -= 1;
            if left == 0 {
                break;
            }
        }
        self.words
            .iter()
            .zip(seen)
            .filter_map(|(w, s)| s.then_some(w.as_str()))
            .collect()
    }
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric()
}

/// The match at `start..end` does not extend a word: where the keyword
/// itself begins (ends) with a word character, the text must not have one
/// just before (after) it.
fn whole(hay: &str, start: usize, end: usize) -> bool {
    let m = &hay[start..end];
    let starts_word = m.chars().next().is_some_and(is_word);
    let ends_word = m.chars().next_back().is_some_and(is_word);
    let before = hay[..start].chars().next_back().is_some_and(is_word);
    let after = hay[end..].chars().next().is_some_and(is_word);
    !(starts_word && before || ends_word && after)
}

/// Lower case, whitespace runs as one space, no leading or trailing space.
pub(crate) fn normalise(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    // Whitespace seen since the last character put out: one space before
    // the next, if any.
    let mut space = false;
    // Start of the text not yet put out: it is copied as it is.
    let mut from = 0;
    let mut i = 0;
    // Mail is mostly ASCII, and asking Unicode about every character
    // was most of a scan with keyword lists. So printable ASCII, and
    // single spaces between it, are copied a piece at a time (and lower-
    // cased at the end: the lower case of any other character has no
    // capital ASCII letter in it); only the rest is looked at one
    // character at a time.
    while i < b.len() {
        let byte = b[i];
        if byte.is_ascii_graphic()
            || byte == b' ' && i > from && b.get(i + 1).is_some_and(u8::is_ascii_graphic)
        {
            i += 1;
            continue;
        }
        copy(&mut out, &s[from..i], &mut space);
        let Some(c) = s[i..].chars().next() else {
            break;
        };
        if c.is_whitespace() {
            space = !out.is_empty();
        } else {
            if space {
                out.push(' ');
                space = false;
            }
            out.extend(c.to_lowercase());
        }
        i += c.len_utf8();
        from = i;
    }
    copy(&mut out, &s[from..], &mut space);
    out.make_ascii_lowercase();
    out
}

/// Puts out a piece of text without whitespace to collapse, after the
/// space that whitespace before it left pending.
fn copy(out: &mut String, piece: &str, space: &mut bool) {
    if piece.is_empty() {
        return;
    }
    if *space {
        out.push(' ');
        *space = false;
    }
    out.push_str(piece);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits<'m>(m: &'m KeywordMatcher, text: &str) -> Vec<&'m str> {
        m.find(&normalise(text))
    }

    fn list(words: &[&str]) -> KeywordMatcher {
        let words: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
        KeywordMatcher::new("t", &words).unwrap()
    }

    #[test]
    fn whole_words_case_insensitive() {
        let m = list(&["Diagnose", "Befund"]);
        assert_eq!(hits(&m, "Die DIAGNOSE, bitte."), ["diagnose"]);
        assert_eq!(hits(&m, "Diagnose-Bericht"), ["diagnose"]);
        assert!(hits(&m, "Diagnosen und Befunde").is_empty());
        assert!(hits(&m, "Prädiagnose").is_empty());
        assert_eq!(hits(&m, "befund diagnose"), ["diagnose", "befund"]);
    }

    #[test]
    fn umlauts() {
        let m = list(&["ärztlich", "Überweisung"]);
        assert_eq!(hits(&m, "ÄRZTLICH verordnet"), ["ärztlich"]);
        assert_eq!(hits(&m, "Die überweisung."), ["überweisung"]);
        assert!(hits(&m, "fachärztlich").is_empty());
    }

    #[test]
    fn overlapping_words_both_count() {
        let m = list(&["Diagnose", "Diagnosen", "New York", "York"]);
        assert_eq!(hits(&m, "Diagnosen"), ["diagnosen"]);
        assert_eq!(hits(&m, "in New York"), ["new york", "york"]);
    }

    #[test]
    fn phrases_across_line_breaks() {
        let m = list(&["streng  vertraulich"]);
        assert_eq!(hits(&m, "STRENG\r\n VERTRAULICH!"), ["streng vertraulich"]);
        assert!(hits(&m, "strengvertraulich").is_empty());
    }

    #[test]
    fn punctuation_at_the_edges() {
        // A keyword ending in punctuation has no word end to respect.
        let m = list(&["C++", "§ 203"]);
        assert_eq!(
            hits(&m, "wir nutzen c++17 und § 203 StGB"),
            ["c++", "§ 203"]
        );
        assert!(hits(&m, "§ 2030").is_empty());
    }

    #[test]
    fn normalise_ascii_and_beyond() {
        assert_eq!(
            normalise(" \tÄRZTLICH\x0b\x0cAttest\r\n"),
            "ärztlich attest"
        );
        // Unicode spaces are spaces; a lower case that is longer than the
        // capital ("İ" → "i̇") is kept whole; symbols stay.
        assert_eq!(
            normalise("A\u{a0}\u{2003}B İ C++ ß ΣΑ"),
            "a b i\u{307} c++ ß σα"
        );
        // Control characters that are no whitespace stay as they are.
        assert_eq!(normalise("A\x1fB"), "a\x1fb");
    }

    #[test]
    fn duplicates_count_once() {
        let m = list(&["Diagnose", "diagnose"]);
        assert_eq!(hits(&m, "Diagnose diagnose").len(), 1);
    }

    #[test]
    fn empty_list_finds_nothing() {
        assert!(hits(&list(&[]), "anything").is_empty());
    }

    #[test]
    fn empty_word_is_an_error() {
        let words = vec!["ok".to_owned(), "  ".to_owned()];
        assert!(KeywordMatcher::new("t", &words).is_err());
    }
}
