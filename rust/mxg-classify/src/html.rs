//! HTML to the text a reader sees, for the detectors.
//!
//! mail-parser has an `html_to_text`, but it joins the contents of
//! adjacent block elements ("<td>4111…</td><td>2027</td>" becomes one
//! long digit run), which hides numbers from the detectors. This one is
//! made for scanning: tags vanish (inline tags join their neighbours as a
//! browser renders them, "DE89<b>3704</b>"), block and cell boundaries
//! become a line break or space, whitespace collapses as in rendering,
//! script and style contents and comments are dropped, and character
//! references are decoded (named ones through mail-parser's entity
//! table). It is no validating parser: it never fails, whatever the input.

use mail_parser::decoders::html::add_html_token;

use crate::bytes::find_byte;

/// Elements that start a new line when rendered.
const BLOCKS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "br",
    "caption",
    "center",
    "dd",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "option",
    "p",
    "pre",
    "section",
    "table",
    "tbody",
    "tfoot",
    "thead",
    "title",
    "tr",
    "ul",
];

/// Elements whose contents are not text at all.
const RAW: &[&str] = &["script", "style", "template"];

/// The rendered text of `html`; conversion stops soon after the text
/// exceeds `limit` bytes (the scan budget: converting more is wasted).
pub(crate) fn to_text(html: &str, limit: usize) -> String {
    let b = html.as_bytes();
    // Rendered text is rarely longer than its markup: one allocation.
    let mut out = String::with_capacity(html.len().min(limit.saturating_add(1)));
    let mut skip_until: Option<&str> = None;
    let mut i = 0;
    while i < b.len() && out.len() <= limit {
        match b[i] {
            b'<' if html[i..].starts_with("<!--") => {
                i = html[i + 4..].find("-->").map_or(b.len(), |e| i + 4 + e + 3);
            }
            b'<' if b
                .get(i + 1)
                .is_some_and(|&c| c.is_ascii_alphabetic() || matches!(c, b'/' | b'!' | b'?')) =>
            {
                let end = tag_end(b, i + 1);
                let (closing, name) = tag_name(&html[i + 1..end]);
                i = end;
                if let Some(raw) = skip_until {
                    if closing && is(raw, name) {
                        skip_until = None;
                    }
                } else if let Some(raw) = RAW.iter().find(|r| is(r, name)).filter(|_| !closing) {
                    skip_until = Some(raw);
                } else if BLOCKS.iter().any(|b| is(b, name)) {
                    push_break(&mut out, '\n');
                } else if is("td", name) || is("th", name) {
                    push_break(&mut out, ' ');
                }
            }
            _ if skip_until.is_some() => i += 1,
            b'&' => i = entity(html, i, &mut out),
            _ => {
                // Past the first character, which may be a '<' that
                // starts no tag.
                let from = i + html[i..].chars().next().map_or(1, char::len_utf8);
                // Both ASCII, so found byte-wise at a character boundary.
                let end = find_byte(b, from, |c| matches!(c, b'<' | b'&')).unwrap_or(b.len());
                push_text(&mut out, &html[i..end], limit);
                i = end;
            }
        }
    }
    out
}

/// Index just past the '>' that closes the tag starting at `from`,
/// skipping quoted attribute values; the end of input if none does.
fn tag_end(b: &[u8], from: usize) -> usize {
    let mut quote = None;
    for (k, &c) in b.iter().enumerate().skip(from) {
        match (quote, c) {
            (None, b'"' | b'\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, b'>') => return k + 1,
            _ => {}
        }
    }
    b.len()
}

/// Whether the tag closes an element, and its name as written.
fn tag_name(tag: &str) -> (bool, &str) {
    let closing = tag.starts_with('/');
    let tag = tag.trim_start_matches('/');
    let len = tag.bytes().take_while(u8::is_ascii_alphanumeric).count();
    (closing, &tag[..len])
}

/// Whether a tag `name` as written is the element `element` (lower
/// case): HTML element names are ASCII and case-insensitive.
fn is(element: &str, name: &str) -> bool {
    element.eq_ignore_ascii_case(name)
}

fn push_break(out: &mut String, brk: char) {
    match out.chars().next_back() {
        Some(' ') if brk == '\n' => {
            out.pop();
            out.push('\n');
        }
        Some(c) if c != ' ' && c != '\n' => out.push(brk),
        _ => {}
    }
}

/// Text between tags, whitespace collapsed as a browser renders it.
fn push_text(out: &mut String, text: &str, limit: usize) {
    // Collapsing never lengthens text: if all of it fits, the limit
    // cannot stop it midway.
    if out.len().saturating_add(text.len()) > limit {
        return push_text_up_to(out, text, limit);
    }
    let b = text.as_bytes();
    // Start of the text not yet copied: everything in it renders as
    // written, so it is copied in one piece.
    let mut from = 0;
    for (k, &c) in b.iter().enumerate() {
        if !c.is_ascii_whitespace() {
            continue;
        }
        let after_blank = if k > from {
            b[k - 1] == b' '
        } else {
            out.is_empty() || out.ends_with([' ', '\n'])
        };
        // A single space after other text renders as itself.
        if c == b' ' && !after_blank {
            continue;
        }
        out.push_str(&text[from..k]);
        if !after_blank {
            out.push(' ');
        }
        from = k + 1;
    }
    out.push_str(&text[from..]);
}

/// [`push_text`] near the limit: like the rest of `to_text` it stops at
/// the first character that would start past `limit`.
fn push_text_up_to(out: &mut String, text: &str, limit: usize) {
    for c in text.chars() {
        if out.len() > limit {
            return;
        }
        if c.is_ascii_whitespace() {
            if !out.is_empty() && !out.ends_with([' ', '\n']) {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
}

/// Decodes the character reference at `html[at..]` ("&nbsp;", "&#160;",
/// "&#xA0;"); a '&' that starts none is text. Returns where to go on.
fn entity(html: &str, at: usize, out: &mut String) -> usize {
    let rest = &html.as_bytes()[at + 1..];
    let len = rest
        .iter()
        .take(32)
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'#')
        .count();
    if rest.get(len) != Some(&b';') || len == 0 {
        out.push('&');
        return at + 1;
    }
    let name = &html[at + 1..at + 1 + len];
    let numeric = name
        .strip_prefix('#')
        .map(|n| match n.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16),
            None => n.parse(),
        });
    match numeric {
        Some(code) => out.push(
            code.ok()
                .and_then(char::from_u32)
                .filter(|&c| c != '\0')
                .unwrap_or(char::REPLACEMENT_CHARACTER),
        ),
        // Unknown names are pushed back as they were.
        None => add_html_token(out, &html.as_bytes()[at..=at + 1 + len], false),
    }
    at + len + 2
}

#[cfg(test)]
mod tests {
    use super::to_text;

    fn text(html: &str) -> String {
        to_text(html, usize::MAX - 1)
    }

    #[test]
    fn tags_and_entities() {
        assert_eq!(
            text("<p>IBAN:&nbsp;DE89&nbsp;3704 <b>0044</b> 0532&#32;0130&#x20;00</p>"),
            "IBAN:\u{a0}DE89\u{a0}3704 0044 0532 0130 00\n"
        );
        assert_eq!(
            text("a &lt;b&gt; &amp;amp; &unknown; & c"),
            "a <b> &amp; &unknown; & c"
        );
        assert_eq!(text("DE89<span>3704</span>"), "DE893704");
    }

    #[test]
    fn blocks_and_cells_separate() {
        assert_eq!(
            text("<table><tr><td>4111</td><td>2027</td></tr></table><div>x</div><div>y</div>"),
            "4111 2027\nx\ny\n"
        );
        assert_eq!(text("a<br>b<br/>c"), "a\nb\nc");
    }

    #[test]
    fn whitespace_collapses() {
        assert_eq!(text("DE89\r\n   3704\t0044"), "DE89 3704 0044");
    }

    #[test]
    fn hidden_content_is_dropped() {
        assert_eq!(
            text("<style>p{x:1}</style>a<script>var s='</p>';</script>b<!-- c -->d"),
            "abd"
        );
        assert_eq!(text("<a href='x>y'>link</a>"), "link");
    }

    #[test]
    fn broken_markup_never_fails() {
        for html in [
            "<",
            "<p",
            "&",
            "&#",
            "&#;",
            "&#xZZ;",
            "&#99999999999;",
            "<!--",
            "a<b c='",
            "ä<ü>ö&ß;",
        ] {
            let _ = text(html);
        }
        assert_eq!(text("&#0;&#xD800;"), "\u{fffd}\u{fffd}");
        assert_eq!(text("1 < 2"), "1 < 2");
    }

    #[test]
    fn stops_at_the_first_character_past_the_limit() {
        let html = "ää  wörd\r\n\tx <b>y</b>";
        let full = text(html);
        assert_eq!(full, "ää wörd x y");
        for limit in 0..full.len() + 2 {
            let want: String = full
                .char_indices()
                .take_while(|&(at, _)| at <= limit)
                .map(|(_, c)| c)
                .collect();
            assert_eq!(to_text(html, limit), want, "{limit}");
        }
    }

    #[test]
    fn whitespace_at_the_edges_of_text_runs() {
        assert_eq!(text(" a"), "a");
        assert_eq!(text("a <b> b</b>"), "a b");
        assert_eq!(text("<p>a</p> \r\n b"), "a\nb");
        assert_eq!(text("a&amp; \t b"), "a& b");
        assert_eq!(text("a\u{a0} b"), "a\u{a0} b");
    }

    #[test]
    fn stops_near_the_limit() {
        let html = "<p>".to_owned() + &"word ".repeat(10_000);
        let t = to_text(&html, 100);
        assert!(t.len() > 100 && t.len() < 110, "{}", t.len());
    }
}
