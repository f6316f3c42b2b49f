//! Mailbox addresses as SMTP carries them (RFC 5321 §4.1.2, with the
//! UTF-8 additions of RFC 6531 §3.3): read from a MAIL or RCPT command into
//! mxg's form, and written back for the next hop.
//!
//! mxg's form of an address (the spool, the control plane, logs) is the
//! local part with its quoting undone, `@`, and the domain. A domain never
//! holds an `@`, so the last `@` splits the two again. The writer quotes the
//! local part whenever it is not a Dot-string, escaping `"` and `\` as
//! quoted-pairs, so `"quoted user"@x` leaves as `"quoted user"@x`: the next
//! hop reads the address that was received, never a different one
//! (ARCHITECTURE.md rule 12a). What cannot be written that way (a control
//! character, an invalid domain) is refused on the way in and, should an
//! old spool hold it, again on the way out.

/// Longest path between `<` and `>` on the wire, as RFC 5321 §4.5.3.1.3
/// counts it (256 octets with the brackets; the old parser allowed 256
/// inside them, and so does this one).
pub const MAX_PATH: usize = 256;

/// Why an address cannot be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address syntax: {0}")]
    Syntax(&'static str),
    /// A control character (U+0000–U+001F, U+007F–U+009F), quoted or not:
    /// never relayed, because the next hop may end a line at it.
    #[error("address contains a control character")]
    Control,
    #[error("address needs a domain")]
    NoDomain,
    /// An 8-bit address in a session or message without SMTPUTF8.
    #[error("non-ASCII address needs SMTPUTF8")]
    NonAscii,
    #[error("address longer than {MAX_PATH} octets")]
    TooLong,
}

/// `atext` of RFC 5322 §3.2.3 (ASCII); RFC 6531 adds every non-ASCII
/// character, which callers allow separately.
pub fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

/// A character of an unquoted local part: atext, `.`, or (RFC 6531)
/// non-ASCII that is no control character.
fn is_dot_string_char(c: char) -> bool {
    is_atext(c) || c == '.' || (!c.is_ascii() && !c.is_control())
}

/// True when `local` can go unquoted: `Atom *("." Atom)`.
pub fn is_dot_string(local: &str) -> bool {
    !local.is_empty()
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(|c| is_atext(c) || !c.is_ascii()))
}

/// A domain as RFC 5321 §4.1.2 and RFC 6531 allow it: dot-separated labels
/// of letters, digits, hyphens (and, leniently, underscores) or non-ASCII
/// U-label characters; or an address literal `[...]` of printable ASCII.
pub fn is_domain(domain: &str) -> bool {
    if domain.len() > 255 {
        return false;
    }
    if let Some(inner) = domain.strip_prefix('[') {
        // address-literal; dcontent is %d33-90 / %d94-126 (§4.1.3), less
        // `<` and `>`, which no real literal holds and a careless next hop
        // would take for the end of the path.
        return inner.strip_suffix(']').is_some_and(|lit| {
            !lit.is_empty()
                && lit.bytes().all(|b| {
                    (33..=126).contains(&b) && !matches!(b, b'[' | b'\\' | b']' | b'<' | b'>')
                })
        });
    }
    !domain.is_empty()
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| {
                    c.is_ascii_alphanumeric()
                        || c == '-'
                        || c == '_'
                        || (!c.is_ascii() && !c.is_control())
                })
        })
}

/// Reads a path that starts at `<` (RFC 5321 §4.1.2 `Path`, or `<>`).
/// Returns the address in mxg's form (empty for `<>`) and the length of the
/// path including both brackets. A source route (`<@a,@b:x@y>`) is read and
/// dropped, as §4.1.1.3 and Appendix C ask.
pub fn read_path(s: &str) -> Result<(String, usize), AddressError> {
    let Some(inner) = s.strip_prefix('<') else {
        return Err(AddressError::Syntax("the address must be in <>"));
    };
    if inner.starts_with('>') {
        return Ok((String::new(), 2));
    }
    let mut pos = 0;
    if inner.starts_with('@') {
        pos = skip_source_route(inner)?;
    }
    let (local, after_local) = read_local_part(&inner[pos..])?;
    pos += after_local;
    let rest = &inner[pos..];
    if rest.starts_with('>') {
        return Err(AddressError::NoDomain);
    }
    let Some(rest) = rest.strip_prefix('@') else {
        return Err(AddressError::Syntax("expected @ after the local part"));
    };
    pos += 1;
    // No domain character is `>` (address literals included, see
    // `is_domain`), so the domain runs to the first one.
    let end = rest
        .find('>')
        .ok_or(AddressError::Syntax("missing > at the end of the address"))?;
    let domain = &rest[..end];
    if domain.chars().any(char::is_control) {
        return Err(AddressError::Control);
    }
    if !is_domain(domain) {
        return Err(AddressError::Syntax("invalid domain"));
    }
    pos += end;
    if pos > MAX_PATH {
        return Err(AddressError::TooLong);
    }
    // `<` + inner up to pos + `>`
    Ok((format!("{local}@{domain}"), pos + 2))
}

/// `At-domain *( "," At-domain ) ":"`; returns the length up to the colon.
fn skip_source_route(s: &str) -> Result<usize, AddressError> {
    let colon = s
        .find(':')
        .ok_or(AddressError::Syntax("source route without :"))?;
    for hop in s[..colon].split(',') {
        match hop.strip_prefix('@') {
            Some(d) if is_domain(d) => {}
            _ => return Err(AddressError::Syntax("invalid source route")),
        }
    }
    Ok(colon + 1)
}

/// A Dot-string or a Quoted-string; returns the local part with quoting
/// undone and the number of bytes read.
fn read_local_part(s: &str) -> Result<(String, usize), AddressError> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    if s.starts_with('"') {
        chars.next();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    if out.is_empty() {
                        return Err(AddressError::Syntax("empty quoted local part"));
                    }
                    return Ok((out, i + 1));
                }
                // quoted-pairSMTP = %d92 %d32-126 (§4.1.2).
                '\\' => match chars.next() {
                    Some((_, q)) if (' '..='~').contains(&q) => out.push(q),
                    Some((_, q)) if q.is_control() => return Err(AddressError::Control),
                    _ => return Err(AddressError::Syntax("bad quoted-pair")),
                },
                c if c.is_control() => return Err(AddressError::Control),
                // qtextSMTP: printable ASCII but " and \, and (RFC 6531) UTF-8.
                c => out.push(c),
            }
        }
        return Err(AddressError::Syntax("unterminated quoted string"));
    }
    let end = s.find(|c| !is_dot_string_char(c)).unwrap_or(s.len());
    let local = &s[..end];
    if let Some(c) = s[end..].chars().next() {
        if c.is_control() {
            return Err(AddressError::Control);
        }
    }
    if !is_dot_string(local) {
        return Err(AddressError::Syntax(if local.is_empty() {
            "empty or invalid local part"
        } else {
            "local part is not a dot-atom; quote it"
        }));
    }
    Ok((local.to_owned(), end))
}

/// Writes an address in mxg's form as it goes between `<` and `>`: the
/// local part quoted unless it is a Dot-string. `utf8` says whether the
/// transaction carries SMTPUTF8. Empty stays empty (the null path).
pub fn write_mailbox(address: &str, utf8: bool) -> Result<String, AddressError> {
    if address.is_empty() {
        return Ok(String::new());
    }
    if address.chars().any(char::is_control) {
        return Err(AddressError::Control);
    }
    if !utf8 && !address.is_ascii() {
        return Err(AddressError::NonAscii);
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err(AddressError::NoDomain);
    };
    if local.is_empty() {
        return Err(AddressError::Syntax("empty local part"));
    }
    if !is_domain(domain) {
        return Err(AddressError::Syntax("invalid domain"));
    }
    let mut out = String::with_capacity(address.len() + 2);
    if is_dot_string(local) {
        out.push_str(local);
    } else {
        out.push('"');
        for c in local.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    out.push('@');
    out.push_str(domain);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(s: &str) -> Result<String, AddressError> {
        read_path(s).map(|(a, _)| a)
    }

    #[test]
    fn rule_12a_quoted_local_parts_round_trip() {
        for (wire, ours) in [
            ("<a@b.example>", "a@b.example"),
            (
                "<\"victim@other.example> NOTIFY=SUCCESS\"@evil.test>",
                "victim@other.example> NOTIFY=SUCCESS@evil.test",
            ),
            ("<\"quoted user\"@x.example>", "quoted user@x.example"),
            ("<\"a\\\"b\\\\c\"@x.example>", "a\"b\\c@x.example"),
            ("<\"jörg\"@bücher.example>", "jörg@bücher.example"),
            ("<x@[192.0.2.1]>", "x@[192.0.2.1]"),
        ] {
            assert_eq!(read(wire).as_deref(), Ok(ours), "{wire}");
            let back = format!("<{}>", write_mailbox(ours, true).unwrap());
            assert_eq!(read(&back).as_deref(), Ok(ours), "{back}");
        }
        // A quoted Dot-string is the same address unquoted (RFC 5321 §4.1.2).
        assert_eq!(read("<\"a.b\"@x>").unwrap(), "a.b@x");
        assert_eq!(write_mailbox("a.b@x", false).unwrap(), "a.b@x");
        assert_eq!(
            write_mailbox("quoted user@x.example", false).unwrap(),
            "\"quoted user\"@x.example"
        );
    }

    #[test]
    fn rule_12a_control_characters_are_refused_quoted_or_not() {
        for wire in [
            "<\"a\0b> RET=FULL ENVID=zz\"@x.example>",
            "<\"a\rb\"@x.example>",
            "<\"a\\\rb\"@x.example>",
            "<\"a\tb\"@x.example>",
            "<\"a\u{7f}b\"@x.example>",
            "<a\0b@x.example>",
            "<a@x\r.example>",
        ] {
            assert_eq!(read(wire), Err(AddressError::Control), "{wire:?}");
        }
        assert_eq!(write_mailbox("a\rb@x", true), Err(AddressError::Control));
        assert_eq!(write_mailbox("a@x\n", true), Err(AddressError::Control));
    }

    #[test]
    fn rule_12a_invalid_shapes_are_refused() {
        for wire in [
            "<a b@x>",
            "<a<b@x>",
            "<a@x y>",
            "<a@x",
            "<.a@x>",
            "<a..b@x>",
            "<a@x..y>",
            "<a@.x>",
            "<a@x.>",
            "<a@>",
            "<@x>",
            "<\"\"@x>",
            "<\"a@x>",
            "<a@[1.2.3.4>",
        ] {
            assert!(
                matches!(read(wire), Err(AddressError::Syntax(_))),
                "{wire:?}: {:?}",
                read(wire)
            );
        }
        assert_eq!(read("<postmaster>"), Err(AddressError::NoDomain));
        assert_eq!(read("<>"), Ok(String::new()));
        assert_eq!(
            read("<@a.example,@b.example:u@c.example>").unwrap(),
            "u@c.example"
        );
        let long = format!("<{}@x.example>", "a".repeat(300));
        assert_eq!(read(&long), Err(AddressError::TooLong));
        assert_eq!(write_mailbox("jörg@x", false), Err(AddressError::NonAscii));
        assert_eq!(write_mailbox("nodomain", true), Err(AddressError::NoDomain));
        assert!(write_mailbox("a@b c", true).is_err());
        assert!(write_mailbox("a@b>", true).is_err());
    }
}
