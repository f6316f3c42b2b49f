//! What a scan returns: plain data for the control plane's rules
//! (`mxg.classify`), serialised as JSON across the Python boundary.

use std::collections::BTreeMap;

use serde::Serialize;

/// Features of one message.
#[derive(Serialize, Debug, Default, Clone, PartialEq)]
pub struct Features {
    /// Decoded Subject of the top-level message ("" when absent).
    pub subject: String,
    /// Requested header fields (lower-case name) → decoded value of every
    /// occurrence, top-level message only; absent fields are left out.
    pub headers: BTreeMap<String, Vec<String>>,
    /// Detector key → number of distinct values found; only non-zero
    /// entries. Keys: "iban", "tax-id", "card", "kvnr",
    /// "keyword:<list>", "regex:<list>".
    pub detectors: BTreeMap<String, u32>,
    /// Attachments and other non-text parts, in document order.
    pub attachments: Vec<Attachment>,
    /// "smime" or "pgp" when the message content as a whole is end-to-end
    /// encrypted.
    pub encryption: Option<String>,
    /// "smime" or "pgp" when the message content is signed.
    pub signed: Option<String>,
    /// MIME parts visited.
    pub parts: u32,
    /// The limits that cut the scan short: "bytes", "depth", "parts".
    pub limits: Vec<String>,
}

/// A part listed in [`Features::attachments`].
#[derive(Serialize, Debug, Default, Clone, PartialEq)]
pub struct Attachment {
    /// Decoded file name (Content-Disposition filename, else Content-Type
    /// name); "" when the part has none.
    pub name: String,
    /// Lower-case "type/subtype".
    pub content_type: String,
    /// Size in bytes after transfer decoding; for text parts the size of
    /// the text in UTF-8.
    pub size: u64,
}
