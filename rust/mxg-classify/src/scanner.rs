//! The compiled scanner: options checked, lists compiled, parser set up.

use mail_parser::MessageParser;

use crate::detect::Detectors;
use crate::features::Features;
use crate::walk;

/// The `max_*` options.
pub(crate) struct Limits {
    pub bytes: usize,
    pub depth: usize,
    pub parts: usize,
}

/// A compiled [`crate::ScanOptions`]: immutable, so one scanner serves
/// every thread at once.
pub struct Scanner {
    pub(crate) limits: Limits,
    /// Requested header fields, lower case.
    pub(crate) headers: Vec<String>,
    pub(crate) detectors: Detectors,
    pub(crate) parser: MessageParser,
}

impl Scanner {
    /// The features of one message (RFC 5322 octets as received). Never
    /// fails and never panics: whatever does not parse is scanned as far
    /// as it goes, or as text.
    pub fn scan(&self, message: &[u8]) -> Features {
        walk::scan(self, message)
    }
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("max_scan_bytes", &self.limits.bytes)
            .field("max_depth", &self.limits.depth)
            .field("max_parts", &self.limits.parts)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::Scanner;

    #[test]
    fn scanner_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Scanner>();
    }
}
