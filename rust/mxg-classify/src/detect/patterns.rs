//! Regex lists, in the `regex` crate's syntax: linear-time matching, so a
//! pattern from the configuration cannot make a message take exponential
//! time. Case-sensitive unless the pattern says `(?i)`.

use regex::Regex;

use crate::error::ScanError;

pub(crate) struct PatternMatcher {
    /// "regex:<list name>".
    pub key: String,
    regexes: Vec<Regex>,
}

impl PatternMatcher {
    pub fn new(name: &str, sources: &[String]) -> Result<Self, ScanError> {
        let regexes = sources
            .iter()
            .map(|src| {
                Regex::new(src).map_err(|e| ScanError::Regex {
                    list: name.to_owned(),
                    regex: src.clone(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            key: format!("regex:{name}"),
            regexes,
        })
    }

    /// Every non-empty match of every regex (the caller counts distinct
    /// ones). An empty match says nothing about the text: `a*` matches
    /// everywhere.
    pub fn find<'a>(&'a self, text: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.regexes.iter().flat_map(move |re| {
            re.find_iter(text)
                .map(|m| m.as_str())
                .filter(|s| !s.is_empty())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(sources: &[&str]) -> PatternMatcher {
        let sources: Vec<String> = sources.iter().map(|s| (*s).to_owned()).collect();
        PatternMatcher::new("t", &sources).unwrap()
    }

    #[test]
    fn matches_of_every_regex() {
        let m = list(&[r"PRJ-\d{4}", r"(?i)geheim"]);
        let found: Vec<&str> = m.find("PRJ-0001, prj-0002, GEHEIM").collect();
        assert_eq!(found, ["PRJ-0001", "GEHEIM"]);
    }

    #[test]
    fn empty_matches_do_not_count() {
        let m = list(&["x*"]);
        assert_eq!(m.find("abc").count(), 0);
        assert_eq!(m.find("axxb").collect::<Vec<_>>(), ["xx"]);
    }

    #[test]
    fn bad_regex_names_list_and_regex() {
        let err = PatternMatcher::new("projects", &["ok".into(), "(unclosed".into()])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("projects") && err.contains("(unclosed"),
            "{err}"
        );
    }
}
