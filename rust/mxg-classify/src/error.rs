//! The one error type of the crate: what is wrong with the scan options.
//! Scanning itself cannot fail; a message that does not parse is scanned
//! as far as it goes.

/// Rejected scan options, with the list and entry at fault.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("scan options: {0}")]
    Json(String),
    #[error("regex list {list:?}: invalid regex {regex:?}: {reason}")]
    Regex {
        list: String,
        regex: String,
        reason: String,
    },
    #[error("keyword list {list:?}: {reason}")]
    Keywords { list: String, reason: String },
    #[error("keyword list {0:?}: empty keyword")]
    EmptyKeyword(String),
    #[error("a {0} list has an empty name")]
    EmptyListName(&'static str),
    #[error("two {kind} lists are named {name:?}")]
    DuplicateListName { kind: &'static str, name: String },
    #[error("{0} must be at least 1")]
    ZeroLimit(&'static str),
}
