//! The detectors: each finds distinct values in one piece of text; the
//! findings of all pieces of a message are merged here, so a value seen in
//! both the text and the HTML alternative counts once.

mod card;
mod digits;
mod iban;
mod keywords;
mod kvnr;
mod patterns;
mod tax_id;
mod words;

use std::collections::{BTreeMap, HashSet};

use crate::error::ScanError;
use crate::options::ScanOptions;
use crate::text::clean;
use keywords::KeywordMatcher;
use patterns::PatternMatcher;

/// A built-in detector: reports each valid value it finds in a text
/// (repeats included; [`Findings`] keeps the distinct ones).
type Detector = fn(&str, &mut dyn FnMut(&str));

/// The distinct values `find` reports, in order of appearance.
#[cfg(test)]
pub(crate) fn distinct(find: Detector, text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    find(text, &mut |v| {
        if !out.iter().any(|o| o == v) {
            out.push(v.to_owned());
        }
    });
    out
}

/// Compiled keyword and regex lists; the built-in detectors need nothing.
pub(crate) struct Detectors {
    keywords: Vec<KeywordMatcher>,
    patterns: Vec<PatternMatcher>,
}

/// Distinct values found so far, by detector key.
#[derive(Default)]
pub(crate) struct Findings {
    found: BTreeMap<String, HashSet<String>>,
}

impl Findings {
    fn add(&mut self, key: &str, value: &str) {
        if let Some(set) = self.found.get_mut(key) {
            if !set.contains(value) {
                set.insert(value.to_owned());
            }
        } else {
            self.found
                .insert(key.to_owned(), HashSet::from([value.to_owned()]));
        }
    }

    /// Number of distinct values per detector, only those that found any.
    pub fn counts(self) -> BTreeMap<String, u32> {
        self.found
            .into_iter()
            .filter(|(_, set)| !set.is_empty())
            .map(|(k, set)| (k, u32::try_from(set.len()).unwrap_or(u32::MAX)))
            .collect()
    }
}

impl Detectors {
    pub fn new(options: &ScanOptions) -> Result<Self, ScanError> {
        let mut names = HashSet::new();
        let keywords = options
            .keywords
            .iter()
            .map(|l| {
                check_name(&mut names, "keyword", &l.name)?;
                KeywordMatcher::new(&l.name, &l.words)
            })
            .collect::<Result<_, _>>()?;
        let mut names = HashSet::new();
        let patterns = options
            .patterns
            .iter()
            .map(|l| {
                check_name(&mut names, "regex", &l.name)?;
                PatternMatcher::new(&l.name, &l.regexes)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { keywords, patterns })
    }

    /// Runs every detector over `text` and records what it finds.
    pub fn run(&self, text: &str, findings: &mut Findings) {
        if text.is_empty() {
            return;
        }
        let text = clean(text);
        // Every built-in identifier has ASCII digits (an IBAN's check
        // digits, the digits of the others), and much text has none.
        if words::next_digit(text.as_bytes(), 0).is_some() {
            // The digits of an IBAN are not also a card or tax number.
            let rest = iban::find_and_mask(&text, &mut |v| findings.add("iban", v));
            let builtin: [(&str, Detector); 3] = [
                ("tax-id", tax_id::find),
                ("card", card::find),
                ("kvnr", kvnr::find),
            ];
            for (key, find) in builtin {
                find(&rest, &mut |v| findings.add(key, v));
            }
        }
        if !self.keywords.is_empty() {
            let hay = keywords::normalise(&text);
            for list in &self.keywords {
                for word in list.find(&hay) {
                    findings.add(&list.key, word);
                }
            }
        }
        for list in &self.patterns {
            for m in list.find(&text) {
                findings.add(&list.key, m);
            }
        }
    }
}

/// Two lists of one kind with one name would share a detector key and
/// mix their counts.
fn check_name<'a>(
    seen: &mut HashSet<&'a str>,
    kind: &'static str,
    name: &'a str,
) -> Result<(), ScanError> {
    if name.trim().is_empty() {
        return Err(ScanError::EmptyListName(kind));
    }
    if !seen.insert(name) {
        return Err(ScanError::DuplicateListName {
            kind,
            name: name.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{KeywordList, PatternList};

    fn detectors() -> Detectors {
        Detectors::new(&ScanOptions {
            keywords: vec![KeywordList {
                name: "health".into(),
                words: vec!["Diagnose".into()],
            }],
            patterns: vec![PatternList {
                name: "prj".into(),
                regexes: vec![r"PRJ-\d+".into()],
            }],
            ..ScanOptions::default()
        })
        .unwrap()
    }

    #[test]
    fn distinct_across_pieces() {
        let d = detectors();
        let mut f = Findings::default();
        d.run("DE89 3704 0044 0532 0130 00, Diagnose, PRJ-1", &mut f);
        d.run("DE89370400440532013000 diagnose PRJ-1 PRJ-2", &mut f);
        let counts = f.counts();
        assert_eq!(counts["iban"], 1);
        assert_eq!(counts["keyword:health"], 1);
        assert_eq!(counts["regex:prj"], 2);
        assert!(!counts.contains_key("card"));
    }

    #[test]
    fn no_break_spaces_and_invisible_characters() {
        let d = detectors();
        let mut f = Findings::default();
        d.run(
            "DE89\u{a0}3704\u{a0}0044\u{202f}0532 01\u{200b}30 00",
            &mut f,
        );
        assert_eq!(f.counts()["iban"], 1);
    }

    #[test]
    fn list_names() {
        let two = |a: &str, b: &str| ScanOptions {
            keywords: vec![
                KeywordList {
                    name: a.into(),
                    words: vec!["x".into()],
                },
                KeywordList {
                    name: b.into(),
                    words: vec!["y".into()],
                },
            ],
            ..ScanOptions::default()
        };
        assert!(Detectors::new(&two("a", "b")).is_ok());
        assert!(matches!(
            Detectors::new(&two("a", "a")),
            Err(ScanError::DuplicateListName { .. })
        ));
        assert!(matches!(
            Detectors::new(&two("a", " ")),
            Err(ScanError::EmptyListName("keyword"))
        ));
    }

    #[test]
    fn the_digits_of_an_iban_are_not_a_card_number() {
        let mut findings = Findings::default();
        detectors().run(
            "IBAN DE95 4111 1111 1111 1111 00, Karte 4111 1111 1111 1111",
            &mut findings,
        );
        let counts = findings.counts();
        assert_eq!(counts.get("iban"), Some(&1));
        assert_eq!(counts.get("card"), Some(&1));
        let mut only_iban = Findings::default();
        detectors().run("IBAN: DE71 9547 4467 9329 5260 80", &mut only_iban);
        assert_eq!(only_iban.counts().get("card"), None);
    }
}
