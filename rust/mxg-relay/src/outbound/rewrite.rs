//! Changes to the header section before a message leaves: the risk marker
//! (`X-MXG-Risk` by default) is an instruction to mxg, not something the
//! recipient should see, and a subject tag such as `[vertraulich]` may be
//! configured to go too. The body is never touched.

/// The message with the named header fields removed and `subject_tag`
/// taken out of the Subject; None when nothing changed, so the common
/// case costs no copy. Field names compare case-insensitively (RFC 5322
/// §1.2.2); a field's folded continuation lines go with it (§2.2.3).
pub fn rewrite(message: &[u8], strip: &[String], subject_tag: Option<&str>) -> Option<Vec<u8>> {
    let tag = subject_tag.filter(|t| !t.is_empty());
    if strip.is_empty() && tag.is_none() {
        return None;
    }
    let header_end = header_end(message);
    let mut out = Vec::with_capacity(message.len());
    let mut changed = false;
    for field in fields(&message[..header_end]) {
        let name = field_name(field);
        if strip
            .iter()
            .any(|s| s.as_bytes().eq_ignore_ascii_case(name))
        {
            changed = true;
            continue;
        }
        if let (Some(tag), true) = (tag, name.eq_ignore_ascii_case(b"subject")) {
            if let Some(without) = remove_tag(field, tag.as_bytes()) {
                out.extend_from_slice(&without);
                changed = true;
                continue;
            }
        }
        out.extend_from_slice(field);
    }
    if !changed {
        return None;
    }
    out.extend_from_slice(&message[header_end..]);
    Some(out)
}

/// Offset of the empty line that ends the header section (or the end).
fn header_end(message: &[u8]) -> usize {
    if message.starts_with(b"\r\n") {
        return 0;
    }
    message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |p| p + 2)
}

/// Header fields with their continuation lines and line ends.
fn fields(headers: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    while pos < headers.len() {
        let end = headers[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(headers.len(), |p| pos + p + 1);
        let continuation = matches!(headers.get(end), Some(b' ' | b'\t'));
        if !continuation {
            out.push(&headers[start..end]);
            start = end;
        }
        pos = end;
    }
    if start < headers.len() {
        out.push(&headers[start..]);
    }
    out
}

fn field_name(field: &[u8]) -> &[u8] {
    let colon = field.iter().position(|&b| b == b':').unwrap_or(0);
    let name = &field[..colon];
    let trimmed = name.len() - name.iter().rev().take_while(|b| **b == b' ').count();
    &name[..trimmed]
}

/// The Subject field without the first (ASCII case-insensitive)
/// occurrence of `tag` and one space next to it.
fn remove_tag(field: &[u8], tag: &[u8]) -> Option<Vec<u8>> {
    let colon = field.iter().position(|&b| b == b':')? + 1;
    let value = &field[colon..];
    let at = value
        .windows(tag.len())
        .position(|w| w.eq_ignore_ascii_case(tag))?;
    let mut end = colon + at + tag.len();
    let mut start = colon + at;
    if field.get(end) == Some(&b' ') {
        end += 1;
    } else if start > colon + 1 && field[start - 1] == b' ' {
        start -= 1;
    }
    let mut out = Vec::with_capacity(field.len());
    out.extend_from_slice(&field[..start]);
    out.extend_from_slice(&field[end..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"Received: from x\r\n by y\r\nX-MXG-Risk: high\r\nSubject: [vertraulich] Befund\r\nx-mxg-risk: secret\r\n  folded\r\nFrom: a@b\r\n\r\nX-MXG-Risk: body stays\r\n";

    #[test]
    fn strips_every_marker_with_its_folded_lines_and_leaves_the_body() {
        let out = rewrite(MSG, &["X-MXG-Risk".into()], None).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "Received: from x\r\n by y\r\nSubject: [vertraulich] Befund\r\nFrom: a@b\r\n\r\nX-MXG-Risk: body stays\r\n"
        );
    }

    #[test]
    fn removes_the_subject_tag_once() {
        let out = rewrite(MSG, &[], Some("[VERTRAULICH]")).unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("\r\nSubject: Befund\r\n"));
        let tail = b"Subject: Befund [vertraulich]\r\n\r\nx";
        let out = rewrite(tail, &[], Some("[vertraulich]")).unwrap();
        assert_eq!(out, b"Subject: Befund\r\n\r\nx");
    }

    #[test]
    fn nothing_to_do_costs_no_copy() {
        assert!(rewrite(MSG, &[], None).is_none());
        assert!(rewrite(MSG, &["X-Other".into()], Some("[geheim]")).is_none());
        assert!(rewrite(b"\r\nX-MXG-Risk: high\r\n", &["X-MXG-Risk".into()], None).is_none());
    }
}
