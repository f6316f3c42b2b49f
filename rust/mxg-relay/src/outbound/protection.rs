//! The protection header: a trace field, added on each connection once its
//! level is established, that tells the recipient how the message
//! travelled on its last hop, e.g.
//!
//! ```text
//! X-MXG-Protection: qualified; method=dane-ee; tls=TLSv1.3
//! ```
//!
//! It states what the session achieved ([`Conn::level`]), not what the job
//! required: an opportunistic job that got an authenticated session says
//! `qualified`, one that went in plaintext says `none`. `method` is given
//! only for `qualified` (the method that counted), `tls` only with TLS.
//!
//! Off unless the job asks (`[delivery] protection_header`). When on,
//! every field of that name the message already carries is removed first
//! (`rewrite`, with the marker header): a sender, or an earlier hop, must
//! not be able to put a claim there that the recipient reads as this
//! gateway's, and a second field next to ours would make it ambiguous.
//! When off, the message is left as it came.

use super::conn::Conn;
use crate::level::TlsLevel;

/// The field's name (docs/configuration.md, `[delivery]`).
pub const HEADER: &str = "X-MXG-Protection";

/// The whole field with its line end, for the level, method and TLS
/// version a session achieved. All parts are tokens of mxg's vocabulary
/// and rustls' version names, so the line is ASCII and far below 78
/// octets (RFC 5322 §2.1.1): it needs no encoding and no folding.
pub fn field(level: TlsLevel, method: Option<&str>, tls_version: Option<&str>) -> String {
    let mut value = level.as_str().to_owned();
    if let (TlsLevel::Qualified, Some(method)) = (level, method) {
        value.push_str("; method=");
        value.push_str(method);
    }
    if let Some(version) = tls_version.filter(|_| level > TlsLevel::None) {
        value.push_str("; tls=");
        value.push_str(version);
    }
    format!("{HEADER}: {value}\r\n")
}

/// The field for what `conn` achieved.
pub fn field_for(conn: &Conn) -> String {
    field(
        conn.level(),
        conn.qualified_by.map(crate::vocab::Method::as_str),
        conn.tls.as_ref().map(|t| t.version.as_str()),
    )
}

/// The DATA octets with `field` as the first header line. `data` is
/// already dot-stuffed; the field cannot start with a dot, so it needs no
/// stuffing, and a trace field goes at the top (RFC 5321 §4.4).
pub fn stamp(field: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len() + data.len());
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::rewrite::rewrite;

    #[test]
    fn states_level_method_and_tls_version() {
        assert_eq!(
            field(TlsLevel::Qualified, Some("dane-ee"), Some("TLSv1.3")),
            "X-MXG-Protection: qualified; method=dane-ee; tls=TLSv1.3\r\n"
        );
        assert_eq!(
            field(TlsLevel::Encrypted, None, Some("TLSv1.2")),
            "X-MXG-Protection: encrypted; tls=TLSv1.2\r\n"
        );
        assert_eq!(
            field(TlsLevel::Opportunistic, None, Some("TLSv1.2")),
            "X-MXG-Protection: opportunistic; tls=TLSv1.2\r\n"
        );
        assert_eq!(
            field(TlsLevel::None, None, None),
            "X-MXG-Protection: none\r\n"
        );
    }

    #[test]
    fn a_method_is_named_only_when_it_made_the_session_qualified() {
        // A method that authenticated the server but does not count for
        // qualified in this job leaves the session encrypted.
        assert_eq!(
            field(TlsLevel::Encrypted, Some("dnssec-pkix"), Some("TLSv1.3")),
            "X-MXG-Protection: encrypted; tls=TLSv1.3\r\n"
        );
    }

    #[test]
    fn stamped_data_has_the_field_on_top_and_one_field_only() {
        // What the sender put there goes before ours is added.
        let forged = b"X-MXG-Protection: qualified; method=pinned\r\nSubject: x\r\nx-mxg-protection: forged\r\n  folded\r\n\r\nX-MXG-Protection: body stays\r\n";
        let clean = rewrite(forged, &[HEADER.to_owned()], None).unwrap();
        let data = super::super::wire::dot_stuff(&clean);
        let out = stamp(&field(TlsLevel::Encrypted, None, Some("TLSv1.3")), &data);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "X-MXG-Protection: encrypted; tls=TLSv1.3\r\nSubject: x\r\n\r\nX-MXG-Protection: body stays\r\n.\r\n"
        );
    }
}
