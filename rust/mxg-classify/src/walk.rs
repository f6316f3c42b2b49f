//! The walk over one message's MIME tree: which parts are scanned, which
//! are listed as attachments, and where the limits stop it.
//!
//! The tree is walked with an explicit stack, never by recursion: depth
//! is whatever the input says, and the limits, not the thread's stack,
//! must be what stops a crafted message.

use std::panic::{catch_unwind, AssertUnwindSafe};

use mail_parser::{Encoding, Message, PartType};

use crate::crypto;
use crate::detect::Findings;
use crate::features::{Attachment, Features};
use crate::html;
use crate::mime::{content_type, file_name, is_attachment, requested_headers, subject};
use crate::parsed::Parsed;
use crate::scanner::Scanner;
use crate::text::Budget;

/// mail-parser parses a transfer-encoded message/rfc822 part (which RFC
/// 2046 §5.2.1 does not even allow) only this many levels deep and leaves
/// deeper ones as opaque bytes: their content went unscanned because of
/// nesting, which is what the "depth" limit reports.
const PARSER_ENCODED_MESSAGE_DEPTH: u8 = 3;

pub(crate) fn scan(scanner: &Scanner, message: &[u8]) -> Features {
    // mail-parser means never to panic, and its release builds do not;
    // but its debug builds assert on recovery paths that corrupted input
    // does reach (`debug_assert!(false, …)` in parsers/message.rs). Such
    // a message is then scanned as plain text rather than failing.
    let parsed = catch_unwind(AssertUnwindSafe(|| scanner.parser.parse(message)))
        .ok()
        .flatten();
    let parsed = Parsed::new(parsed);
    let mut w = Walker {
        scanner,
        features: Features::default(),
        findings: Findings::default(),
        budget: Budget::new(scanner.limits.bytes),
        depth_hit: false,
        parts_hit: false,
    };
    match parsed.get() {
        Some(msg) => {
            subject(msg)
                .unwrap_or_default()
                .trim()
                .clone_into(&mut w.features.subject);
            w.features.headers = requested_headers(msg, &scanner.headers);
            let protection = crypto::judge(msg);
            w.features.encryption = protection.encryption.map(Into::into);
            w.features.signed = protection.signed.map(Into::into);
            if has_body(msg) {
                w.walk(msg);
            } else {
                w.not_a_message(message);
            }
        }
        None => w.not_a_message(message),
    }
    w.finish()
}

/// mail-parser found header fields but no empty line before a body: the
/// input is at best a header and at worst not mail at all.
fn has_body(msg: &Message<'_>) -> bool {
    match msg.parts.as_slice() {
        [only] => {
            !(only.is_encoding_problem && matches!(&only.body, PartType::Text(t) if t.is_empty()))
        }
        parts => !parts.is_empty(),
    }
}

struct Walker<'s> {
    scanner: &'s Scanner,
    features: Features,
    findings: Findings,
    budget: Budget,
    depth_hit: bool,
    parts_hit: bool,
}

/// A part waiting to be visited.
#[derive(Clone, Copy)]
struct Item<'m> {
    msg: &'m Message<'m>,
    id: usize,
    /// Containers above it: multiparts and messages.
    depth: usize,
    /// Its parent is a multipart/digest (changes the default type).
    in_digest: bool,
    /// Transfer-encoded message/rfc822 parts above it.
    encoded_messages: u8,
}

impl Walker<'_> {
    /// Input that is no message (no header, or no body separator) reaches
    /// the recipient all the same: it is scanned as one text, so garbage
    /// cannot hide what it carries.
    fn not_a_message(&mut self, raw: &[u8]) {
        self.features.parts = 1;
        self.scan_text(&String::from_utf8_lossy(raw));
    }

    fn walk(&mut self, top: &Message<'_>) {
        let limits = &self.scanner.limits;
        let mut stack = vec![Item {
            msg: top,
            id: 0,
            depth: 0,
            in_digest: false,
            encoded_messages: 0,
        }];
        while let Some(item) = stack.pop() {
            if item.depth > limits.depth {
                self.depth_hit = true;
                continue;
            }
            if self.features.parts as usize >= limits.parts {
                self.parts_hit = true;
                break;
            }
            let Some(part) = item.msg.parts.get(item.id) else {
                continue;
            };
            self.features.parts += 1;
            if item.id == 0 {
                if let Some(s) = subject(item.msg) {
                    self.scan_text(s);
                }
            }
            let ctype = content_type(part, item.in_digest);
            let name = file_name(part).unwrap_or_default();
            self.scan_text(name);
            match &part.body {
                PartType::Multipart(children) => {
                    let in_digest = ctype == "multipart/digest";
                    // Pushed in reverse so that they are visited in
                    // document order. A child always follows its parent
                    // in mail-parser's flat list; anything else would be
                    // a cycle and is ignored.
                    for &child in children.iter().rev() {
                        if child as usize > item.id {
                            stack.push(Item {
                                id: child as usize,
                                depth: item.depth + 1,
                                in_digest,
                                ..item
                            });
                        }
                    }
                }
                PartType::Message(nested) => {
                    let encoded = part.encoding != Encoding::None;
                    if is_attachment(part) {
                        let size = if encoded {
                            nested.raw_message.len()
                        } else {
                            part.offset_end.saturating_sub(part.offset_body) as usize
                        };
                        self.attach(name, ctype, size);
                    }
                    stack.push(Item {
                        msg: nested,
                        id: 0,
                        depth: item.depth + 1,
                        in_digest: false,
                        encoded_messages: item.encoded_messages + u8::from(encoded),
                    });
                }
                PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
                    if ctype.starts_with("message/")
                        && part.encoding != Encoding::None
                        && item.encoded_messages >= PARSER_ENCODED_MESSAGE_DEPTH
                    {
                        self.depth_hit = true;
                    }
                    self.attach(name, ctype, bytes.len());
                }
                PartType::Text(text) | PartType::Html(text) => {
                    // mail-parser turns a part it cannot decode into text
                    // whatever its type; a PDF with broken base64 is still
                    // a PDF and not scanned.
                    let textual = ["text/", "multipart/", "message/"]
                        .iter()
                        .any(|t| ctype.starts_with(t));
                    let is_html = matches!(part.body, PartType::Html(_));
                    if !textual || is_attachment(part) {
                        self.attach(name, ctype, text.len());
                    }
                    if textual && is_html {
                        let rendered = html::to_text(text, self.budget.left());
                        self.scan_text(&rendered);
                    } else if textual {
                        self.scan_text(text);
                    }
                }
            }
        }
    }

    fn attach(&mut self, name: &str, content_type: String, size: usize) {
        self.features.attachments.push(Attachment {
            name: name.to_owned(),
            content_type,
            size: size as u64,
        });
    }

    fn scan_text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        let text = self.budget.take(text);
        self.scanner.detectors.run(text, &mut self.findings);
    }

    fn finish(self) -> Features {
        let mut f = self.features;
        f.detectors = self.findings.counts();
        for (hit, name) in [
            (self.budget.exhausted, "bytes"),
            (self.depth_hit, "depth"),
            (self.parts_hit, "parts"),
        ] {
            if hit {
                f.limits.push(name.to_owned());
            }
        }
        f
    }
}
