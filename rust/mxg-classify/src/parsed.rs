//! Owning a parsed message without recursion on drop.
//!
//! mail-parser nests each message/rfc822 part as a `Message` inside its
//! parent, to any depth (it builds them with a loop, not recursion). The
//! compiler-generated drop, however, recurses once per level: about
//! 20,000 nested parts — 660 KB of input — overflow a 2 MiB thread stack
//! and abort the process. [`Parsed`] takes the nest apart level by level
//! instead.

use mail_parser::{Message, PartType};

pub(crate) struct Parsed<'x>(Option<Message<'x>>);

impl<'x> Parsed<'x> {
    pub fn new(message: Option<Message<'x>>) -> Self {
        Self(message)
    }

    pub fn get(&self) -> Option<&Message<'x>> {
        self.0.as_ref()
    }
}

impl Drop for Parsed<'_> {
    fn drop(&mut self) {
        let mut pending: Vec<Message<'_>> = self.0.take().into_iter().collect();
        while let Some(mut msg) = pending.pop() {
            for part in &mut msg.parts {
                if matches!(part.body, PartType::Message(_)) {
                    let body = std::mem::replace(&mut part.body, PartType::Multipart(Vec::new()));
                    if let PartType::Message(inner) = body {
                        pending.push(inner);
                    }
                }
            }
            // `msg` drops here, with no message left inside it.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Parsed;
    use crate::mime::parser;

    #[test]
    fn deep_nesting_drops_without_overflow() {
        let depth = 50_000;
        let mut raw = "Content-Type: message/rfc822\r\n\r\n".repeat(depth);
        raw.push_str("Subject: x\r\n\r\nhello\r\n");
        // A thread with a small stack proves the point quickly.
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || drop(Parsed::new(parser().parse(raw.as_bytes()))))
            .unwrap()
            .join()
            .expect("no stack overflow");
    }
}
