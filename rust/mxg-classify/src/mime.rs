//! Reading MIME header fields off mail-parser's parts: content types with
//! their defaults, file names, and decoded header values.

use std::collections::BTreeMap;

use mail_parser::parsers::MessageStream;
use mail_parser::{
    ContentType, HeaderName, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders,
};

/// The parser the scanner uses: the MIME fields that shape the body and
/// the Subject are parsed; every other field is only located (its offsets
/// kept for [`requested_headers`]), which saves building address lists
/// and Received traces nobody reads.
pub(crate) fn parser() -> MessageParser {
    MessageParser::new()
        .with_mime_headers()
        .header_text(HeaderName::Subject)
        .default_header_ignore()
}

/// Lower-case "type/subtype" of a part. Without a Content-Type field a
/// part is text/plain (RFC 2045 §5.2), or message/rfc822 inside a
/// multipart/digest (RFC 2046 §5.1.5).
pub(crate) fn content_type(part: &MessagePart<'_>, in_digest: bool) -> String {
    match part.content_type() {
        Some(ct) => {
            let mut s = ct.ctype().to_ascii_lowercase();
            if let Some(sub) = ct.subtype() {
                s.push('/');
                s.push_str(&sub.to_ascii_lowercase());
            }
            s
        }
        None if in_digest => "message/rfc822".into(),
        None => "text/plain".into(),
    }
}

/// A Content-Type parameter, name compared case-insensitively (RFC 2045
/// §5.1), value as given.
pub(crate) fn param<'p>(part: &'p MessagePart<'_>, name: &str) -> Option<&'p str> {
    attribute(part.content_type()?, name)
}

fn attribute<'c>(ct: &'c ContentType<'_>, name: &str) -> Option<&'c str> {
    ct.attributes()?
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))
        .map(|a| a.value.as_ref())
}

/// The decoded file name: Content-Disposition filename (RFC 2183, with
/// RFC 2231 and RFC 2047 encodings undone by mail-parser), else the
/// Content-Type name parameter that older clients send.
pub(crate) fn file_name<'p>(part: &'p MessagePart<'_>) -> Option<&'p str> {
    part.content_disposition()
        .and_then(|cd| attribute(cd, "filename"))
        .or_else(|| param(part, "name"))
}

/// The sender meant the part as a file: disposition attachment, or it has
/// a file name.
pub(crate) fn is_attachment(part: &MessagePart<'_>) -> bool {
    part.content_disposition()
        .is_some_and(|cd| cd.ctype().eq_ignore_ascii_case("attachment"))
        || file_name(part).is_some()
}

/// Decoded Subject of a (possibly nested) message.
pub(crate) fn subject<'m>(msg: &'m Message<'_>) -> Option<&'m str> {
    msg.parts.first()?;
    msg.subject()
}

/// Every occurrence of the requested fields (`wanted`: lower-case names)
/// in the top-level header, RFC 2047 encoded words decoded and folding
/// undone. Read from the raw octets, so a field is returned the same way
/// whichever parser mail-parser would pick for it (address, date, …).
pub(crate) fn requested_headers(
    msg: &Message<'_>,
    wanted: &[String],
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let Some(root) = msg.parts.first() else {
        return out;
    };
    for h in &root.headers {
        let name = h.name.as_str().to_ascii_lowercase();
        if !wanted.contains(&name) {
            continue;
        }
        let raw = msg
            .raw_message
            .get(h.offset_start as usize..h.offset_end as usize)
            .unwrap_or_default();
        out.entry(name).or_default().push(decode_unstructured(raw));
    }
    out
}

/// An unstructured field value (RFC 5322 §3.2.5) with encoded words (RFC
/// 2047) decoded in any charset mail-parser knows.
fn decode_unstructured(raw: &[u8]) -> String {
    let mut owned;
    let mut raw = raw;
    // The parser ends a value at a line end not followed by folding.
    if !raw.ends_with(b"\n") {
        owned = raw.to_vec();
        owned.extend_from_slice(b"\r\n");
        raw = &owned;
    }
    match MessageStream::new(raw).parse_unstructured() {
        HeaderValue::Text(t) => t.trim().to_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requested_headers_decoded() {
        let raw = b"From: =?UTF-8?Q?J=C3=BCrgen?= <j@example.org>\r\n\
            X-Class: high\r\n\
            x-class: =?ISO-8859-1?Q?vertraulich_f=FCr_alle?=\r\n\
            X-Folded: one\r\n two\r\n\
            \r\nbody\r\n";
        let msg = parser().parse(raw).unwrap();
        let wanted = [
            "from".to_owned(),
            "x-class".to_owned(),
            "x-folded".to_owned(),
            "to".to_owned(),
        ];
        let h = requested_headers(&msg, &wanted);
        assert_eq!(h["from"], ["Jürgen <j@example.org>"]);
        assert_eq!(h["x-class"], ["high", "vertraulich für alle"]);
        assert_eq!(h["x-folded"], ["one two"]);
        assert!(!h.contains_key("to"));
    }

    #[test]
    fn defaults_and_names() {
        let raw = b"Content-Type: multipart/digest; boundary=b\r\n\r\n--b\r\n\r\n\
            Subject: inner\r\n\r\nx\r\n--b\r\n\
            Content-Type: APPLICATION/PDF; NAME=\"a.pdf\"\r\n\r\n%PDF\r\n--b--\r\n";
        let msg = parser().parse(raw).unwrap();
        assert_eq!(content_type(&msg.parts[0], false), "multipart/digest");
        assert_eq!(content_type(&msg.parts[1], true), "message/rfc822");
        let pdf = msg.parts.last().unwrap();
        assert_eq!(content_type(pdf, false), "application/pdf");
        assert_eq!(file_name(pdf), Some("a.pdf"));
        assert!(is_attachment(pdf));
    }

    #[test]
    fn undecodable_value_is_empty_not_an_error() {
        assert_eq!(decode_unstructured(b""), "");
        assert_eq!(decode_unstructured(b" =?x?Q?broken"), "=?x?Q?broken");
    }
}
