//! Scan options as the control plane sends them (JSON), and compiling
//! them once into a reusable [`Scanner`].

use serde::Deserialize;

use crate::detect::Detectors;
use crate::error::ScanError;
use crate::mime::parser;
use crate::scanner::{Limits, Scanner};

/// What to look for and how far. `{}` gives the defaults.
#[derive(Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct ScanOptions {
    /// Decoded text bytes the detectors see in all (default 8 MiB); the
    /// rest of the message is not scanned and `limits` says "bytes".
    pub max_scan_bytes: usize,
    /// MIME nesting depth, message/rfc822 levels included (default 16);
    /// deeper parts are skipped and `limits` says "depth".
    pub max_depth: usize,
    /// MIME parts visited (default 512); then the scan stops and `limits`
    /// says "parts".
    pub max_parts: usize,
    /// Header fields (any case) whose decoded values the features carry,
    /// top-level message only.
    pub headers: Vec<String>,
    /// Keyword lists; each yields a detector "keyword:<name>".
    pub keywords: Vec<KeywordList>,
    /// Regex lists; each yields a detector "regex:<name>".
    pub patterns: Vec<PatternList>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        // Generous for real mail (a 50 MB message has far less text than
        // that once attachments are set aside), small enough that one
        // crafted message cannot tie up a scanner thread for long.
        Self {
            max_scan_bytes: 8 << 20,
            max_depth: 16,
            max_parts: 512,
            headers: Vec::new(),
            keywords: Vec::new(),
            patterns: Vec::new(),
        }
    }
}

/// Words and phrases matched case-insensitively as whole words; the
/// count is the number of distinct words of the list that occur.
#[derive(Deserialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct KeywordList {
    pub name: String,
    pub words: Vec<String>,
}

/// Regular expressions (`regex` crate syntax, case-sensitive unless
/// `(?i)`); the count is the number of distinct matched strings.
#[derive(Deserialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct PatternList {
    pub name: String,
    pub regexes: Vec<String>,
}

impl ScanOptions {
    /// Options from their JSON form.
    pub fn from_json(json: &str) -> Result<Self, ScanError> {
        serde_json::from_str(json).map_err(|e| ScanError::Json(e.to_string()))
    }

    /// Checks the options and compiles the lists; the scanner is then
    /// reused for any number of messages, from any number of threads.
    pub fn compile(&self) -> Result<Scanner, ScanError> {
        for (name, value) in [
            ("max_scan_bytes", self.max_scan_bytes),
            ("max_depth", self.max_depth),
            ("max_parts", self.max_parts),
        ] {
            if value == 0 {
                return Err(ScanError::ZeroLimit(name));
            }
        }
        Ok(Scanner {
            limits: Limits {
                bytes: self.max_scan_bytes,
                depth: self.max_depth,
                parts: self.max_parts,
            },
            headers: self
                .headers
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect(),
            detectors: Detectors::new(self)?,
            parser: parser(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_json_gives_defaults() {
        let o = ScanOptions::from_json("{}").unwrap();
        assert_eq!(o.max_scan_bytes, 8 * 1024 * 1024);
        assert_eq!(o.max_depth, 16);
        assert_eq!(o.max_parts, 512);
        assert!(o.compile().is_ok());
    }

    #[test]
    fn full_json() {
        let o = ScanOptions::from_json(
            r#"{"max_parts": 3, "headers": ["X-Class"],
                "keywords": [{"name": "health", "words": ["Diagnose"]}],
                "patterns": [{"name": "prj", "regexes": ["PRJ-\\d+"]}]}"#,
        )
        .unwrap();
        assert_eq!(o.max_parts, 3);
        assert_eq!(o.max_depth, 16);
        assert_eq!(o.keywords[0].words, ["Diagnose"]);
        assert!(o.compile().is_ok());
    }

    #[test]
    fn unknown_fields_are_errors() {
        assert!(ScanOptions::from_json(r#"{"max_bytes": 1}"#).is_err());
        let err = ScanOptions::from_json(r#"{"keywords": [{"name": "a", "word": []}]}"#);
        assert!(matches!(err, Err(ScanError::Json(_))));
    }

    #[test]
    fn zero_limits_are_errors() {
        for field in ["max_scan_bytes", "max_depth", "max_parts"] {
            let o = ScanOptions::from_json(&format!(r#"{{"{field}": 0}}"#)).unwrap();
            let err = o.compile().expect_err("zero limit rejected").to_string();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn list_errors_are_named() {
        let o = ScanOptions::from_json(r#"{"patterns": [{"name": "prj", "regexes": ["a", "("]}]}"#)
            .unwrap();
        let err = o.compile().err().unwrap().to_string();
        assert!(err.contains("\"prj\"") && err.contains("\"(\""), "{err}");
        let o = ScanOptions::from_json(r#"{"keywords": [{"name": "", "words": ["a"]}]}"#).unwrap();
        assert!(matches!(
            o.compile(),
            Err(ScanError::EmptyListName("keyword"))
        ));
        let o = ScanOptions::from_json(r#"{"patterns": [{"name": "", "regexes": []}]}"#).unwrap();
        assert!(matches!(
            o.compile(),
            Err(ScanError::EmptyListName("regex"))
        ));
    }
}
