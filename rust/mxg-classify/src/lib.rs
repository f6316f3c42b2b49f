//! MIME-aware content scanner for risk classification.
//!
//! [`Scanner::scan`] reads one RFC 5322 message as received and returns
//! [`Features`]: what the message carries, not what to do about it. The
//! control plane (`mxg.classify`) applies the configured rules to them and
//! picks the risk class, so policy stays in one place and this crate stays
//! a pure function of its input, unit-testable and free of Python.
//!
//! What it does:
//! - walks the MIME tree (mail-parser 0.11), nested message/rfc822 parts
//!   included, and decodes transfer encodings and charsets (anything
//!   `encoding_rs` knows; an unknown charset is read as UTF-8, lossily);
//! - scans the decoded Subject, every text part (HTML rendered to text
//!   first), text attachments and attachment file names with the
//!   detectors: IBAN (ISO 13616), German tax id (§ 139b AO), payment card
//!   numbers (Luhn and issuer ranges), German health insurance number
//!   (§ 290 SGB V), and the configured keyword and regex lists;
//! - counts *distinct* values per detector, so the same IBAN in the text
//!   and HTML alternatives of a message counts once;
//! - lists attachments (name, type, decoded size), says whether the
//!   content as a whole is S/MIME- or PGP-encrypted or signed, and returns
//!   requested top-level header fields decoded.
//!
//! What it does not do:
//! - look inside binary attachments (PDF, Office, images, archives) or
//!   encrypted content: those are listed by name, type and size only;
//! - decide anything: no thresholds, no classes;
//! - go past its limits ([`ScanOptions`]: bytes of text scanned, nesting
//!   depth, parts): a scan that was cut short says so in
//!   [`Features::limits`], so a rule can treat "not fully scanned" as it
//!   sees fit. Parsing itself is linear in the input and bounded by the
//!   SMTP size limit upstream.
//!
//! It never panics and never recurses on input structure: malformed,
//! truncated or binary input yields the features of whatever could be
//! read, and input that is no message at all is scanned as plain text.

mod bytes;
mod crypto;
mod detect;
mod error;
mod features;
mod html;
mod mime;
mod options;
mod parsed;
mod scanner;
mod text;
mod walk;

pub use error::ScanError;
pub use features::{Attachment, Features};
pub use options::{KeywordList, PatternList, ScanOptions};
pub use scanner::Scanner;
