//! The on-disk form of one spooled message:
//!
//! ```text
//! MXG1 <length of the envelope JSON in octets>\n
//! <envelope JSON>\n
//! <message octets, CRLF line ends, no dot-stuffing>
//! ```

use crate::envelope::Envelope;
use crate::error::SpoolError;
use std::path::Path;

pub const MAGIC: &str = "MXG1";

/// Serialises envelope and message into the spool file's bytes.
pub fn spool_file_bytes(envelope: &Envelope, message: &[u8]) -> Vec<u8> {
    let mut out = spool_file_head(envelope, message.len());
    out.extend_from_slice(message);
    out
}

/// The spool file up to where the message starts (the header line and the
/// envelope), with room for `then` more octets: the message itself is
/// written after it without being copied in (`Spool::commit_shared`).
pub fn spool_file_head(envelope: &Envelope, then: usize) -> Vec<u8> {
    let json = serde_json::to_vec(envelope).expect("envelope serialises");
    let head = format!("{MAGIC} {}\n", json.len());
    let mut out = Vec::with_capacity(head.len() + json.len() + 1 + then);
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&json);
    out.push(b'\n');
    out
}

/// Splits a spool file into envelope and the offset where the message starts.
pub fn parse_spool_file(path: &Path, bytes: &[u8]) -> Result<(Envelope, usize), SpoolError> {
    let bad = |reason: &str| SpoolError::Malformed {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let nl = bytes
        .iter()
        .take(32)
        .position(|&b| b == b'\n')
        .ok_or_else(|| bad("no header line"))?;
    let head = std::str::from_utf8(&bytes[..nl]).map_err(|_| bad("header is not text"))?;
    let len: usize = head
        .strip_prefix(MAGIC)
        .and_then(|r| r.strip_prefix(' '))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| bad("header is not 'MXG1 <length>'"))?;
    let start = nl + 1;
    let end = start.checked_add(len).filter(|&e| e < bytes.len());
    let end = end.ok_or_else(|| bad("truncated envelope"))?;
    if bytes[end] != b'\n' {
        return Err(bad("envelope not followed by a newline"));
    }
    let envelope: Envelope = serde_json::from_slice(&bytes[start..end])
        .map_err(|e| bad(&format!("envelope JSON: {e}")))?;
    Ok((envelope, end + 1))
}
