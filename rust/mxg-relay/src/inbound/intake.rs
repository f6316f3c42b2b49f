//! The intake gate: whether new mail is taken at all, set by the control
//! plane at runtime (`Engine::set_intake`).
//!
//! - `open`: normal service.
//! - `defer`: the store is unreachable (a PostgreSQL store restarting or
//!   failing over). A message could not get its `250` anyway (it waits
//!   for the store, docs/cluster.md), so `MAIL` gets `451 4.3.0` and the
//!   client keeps the message; sessions stay open.
//! - `closed`: the node is draining. New connections get `421 4.3.2`
//!   instead of the greeting, and `MAIL` on an open session gets it too
//!   and the session closes (RFC 5321 §3.8: 421 is the service closing).
//!
//! The gate outlives reloads (`CurrentShared` carries it over).

use mxg_smtp::Reply;
use std::sync::RwLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntakeMode {
    Open,
    Defer,
    Closed,
}

impl IntakeMode {
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "open" => Some(Self::Open),
            "defer" => Some(Self::Defer),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }
}

/// What a gate that is not open answers.
pub enum Gate {
    /// `451 4.3.0`: this transaction is refused, the session goes on.
    Defer(Reply),
    /// `421 4.3.2`: the session closes after it.
    Close(Reply),
}

#[derive(Debug)]
pub struct Intake(RwLock<(IntakeMode, String)>);

impl Default for Intake {
    fn default() -> Self {
        Self(RwLock::new((IntakeMode::Open, String::new())))
    }
}

impl Intake {
    pub fn set(&self, mode: IntakeMode, text: &str) {
        *self.0.write().expect("intake lock poisoned") = (mode, text.to_owned());
    }

    pub fn mode(&self) -> IntakeMode {
        self.0.read().expect("intake lock poisoned").0
    }

    /// The answer to a `MAIL` while the gate is not open; None when open.
    pub fn at_mail(&self, hostname: &str) -> Option<Gate> {
        let (mode, text) = &*self.0.read().expect("intake lock poisoned");
        match mode {
            IntakeMode::Open => None,
            IntakeMode::Defer => Some(Gate::Defer(Reply::new(
                451,
                "4.3.0",
                or_default(text, "Mail store unavailable, try again later"),
            ))),
            IntakeMode::Closed => Some(Gate::Close(closing(hostname, text))),
        }
    }

    /// The reply instead of the greeting while the gate is closed.
    pub fn at_connect(&self, hostname: &str) -> Option<Reply> {
        let (mode, text) = &*self.0.read().expect("intake lock poisoned");
        (*mode == IntakeMode::Closed).then(|| closing(hostname, text))
    }
}

fn closing(hostname: &str, text: &str) -> Reply {
    let text = or_default(text, "Service not available, try again later");
    Reply::new(421, "4.3.2", format!("{hostname} {text}"))
}

fn or_default(text: &str, default: &str) -> String {
    if text.trim().is_empty() {
        default.to_owned()
    } else {
        // One line: a reply text never carries a line break.
        text.replace(['\r', '\n'], " ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_answers_mail_and_connections_as_documented() {
        let gate = Intake::default();
        assert!(gate.at_mail("mx").is_none());
        assert!(gate.at_connect("mx").is_none());
        gate.set(IntakeMode::Defer, "store down\r\nX");
        match gate.at_mail("mx") {
            Some(Gate::Defer(r)) => {
                assert_eq!((r.code, r.enhanced.as_str()), (451, "4.3.0"));
                assert_eq!(r.text(), "store down  X");
            }
            _ => panic!("defer expected"),
        }
        assert!(gate.at_connect("mx").is_none(), "defer keeps sessions");
        gate.set(IntakeMode::Closed, "");
        match gate.at_mail("mx") {
            Some(Gate::Close(r)) => assert_eq!((r.code, r.enhanced.as_str()), (421, "4.3.2")),
            _ => panic!("close expected"),
        }
        let r = gate.at_connect("mx").expect("closed");
        assert!(r.text().starts_with("mx "), "{}", r.text());
        gate.set(IntakeMode::Open, "");
        assert!(gate.at_mail("mx").is_none());
        assert_eq!(IntakeMode::parse("drain"), None);
    }
}
