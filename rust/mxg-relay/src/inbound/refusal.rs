//! Why the inbound server refused a client, a command or a message: one
//! word each, for the log line (with the client's address) and the
//! refusal counters (`crate::stats`).
//!
//! Refusals are logged one line each, as Postfix logs its rejects: they
//! are rare next to the messages accepted, and a client that keeps making
//! errors is cut off after `limits.max_errors` of them.

use crate::events::{Event, EventBus};
use crate::stats::Stats;
use mxg_smtp::Reply;
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client is not in `client_networks` and outsiders are refused
    /// at the greeting (rule 7).
    Outsider,
    /// `max_connections` (or the outsiders' pool) is full.
    ConnectionLimit,
    /// `max_connections_per_client` is reached for this address.
    ClientLimit,
    /// RCPT from a client outside `client_networks` (rule 7).
    RelayDenied,
    /// A command that is not SMTP, out of sequence or malformed, a line
    /// too long, bare CR or LF in the content, an address that needs
    /// SMTPUTF8: the client broke the protocol.
    ProtocolError,
    /// The client made more errors than `limits.max_errors` and was
    /// disconnected.
    TooManyErrors,
    /// The STARTTLS handshake failed or timed out.
    TlsFailure,
    /// The message is larger than `limits.max_message_size`.
    Size,
    /// More recipients than `limits.max_recipients`.
    TooManyRecipients,
    /// All sessions together hold `limits.max_message_memory` (rule 12b).
    Memory,
    /// More Received fields than a mail loop allows (RFC 5321 §6.3).
    Loop,
    /// A class's policy refused the recipient or the message (a verdict
    /// at RCPT or at the end of DATA).
    Policy,
    /// The spool could not store the message (a full disk, an I/O error).
    Storage,
}

impl Refusal {
    pub const ALL: [Self; 13] = [
        Self::Outsider,
        Self::ConnectionLimit,
        Self::ClientLimit,
        Self::RelayDenied,
        Self::ProtocolError,
        Self::TooManyErrors,
        Self::TlsFailure,
        Self::Size,
        Self::TooManyRecipients,
        Self::Memory,
        Self::Loop,
        Self::Policy,
        Self::Storage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Outsider => "outsider",
            Self::ConnectionLimit => "connection-limit",
            Self::ClientLimit => "client-limit",
            Self::RelayDenied => "relay-denied",
            Self::ProtocolError => "protocol-error",
            Self::TooManyErrors => "too-many-errors",
            Self::TlsFailure => "tls-failure",
            Self::Size => "size",
            Self::TooManyRecipients => "too-many-recipients",
            Self::Memory => "memory",
            Self::Loop => "loop",
            Self::Policy => "policy",
            Self::Storage => "storage",
        }
    }

    /// The log line's level: a full limit of mxg's is a warning, its disk
    /// failing an error; a client's mistakes are info.
    fn level(self) -> &'static str {
        match self {
            Self::ConnectionLimit | Self::Memory => "warning",
            Self::Storage => "error",
            _ => "info",
        }
    }
}

/// Counts a refusal and logs it with the client's address and the reply
/// it got (`detail` adds what the reply does not say, e.g. a TLS error).
pub fn note(
    bus: &EventBus,
    stats: &Stats,
    why: Refusal,
    peer: SocketAddr,
    reply: Option<&Reply>,
    detail: Option<String>,
) {
    stats.refused(why);
    let mut fields = vec![
        ("client".to_owned(), peer.ip().to_string()),
        ("port".to_owned(), peer.port().to_string()),
        ("reason".to_owned(), why.as_str().to_owned()),
    ];
    if let Some(reply) = reply {
        let text = reply.text();
        let line = if reply.enhanced.is_empty() {
            format!("{} {text}", reply.code)
        } else {
            format!("{} {} {text}", reply.code, reply.enhanced)
        };
        fields.push(("reply".to_owned(), line));
    }
    if let Some(detail) = detail {
        fields.push(("error".to_owned(), detail));
    }
    bus.push(Event::log_with(why.level(), "inbound refused", fields));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_is_listed_once_with_its_own_word() {
        let words: std::collections::HashSet<&str> =
            Refusal::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(words.len(), Refusal::ALL.len());
        for (i, r) in Refusal::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "ALL is in declaration order");
        }
    }

    #[test]
    fn a_refusal_is_counted_and_logged_with_the_client_address() {
        let bus = EventBus::new().unwrap();
        let stats = Stats::default();
        let peer: SocketAddr = "192.0.2.7:40001".parse().unwrap();
        let reply = Reply::new(554, "5.7.1", "<x@y.test>: Relay access denied");
        note(&bus, &stats, Refusal::RelayDenied, peer, Some(&reply), None);
        let events = bus.drain();
        let Event::Log {
            level,
            message,
            fields,
        } = &events[0]
        else {
            panic!("a log event");
        };
        assert_eq!(
            (level.as_str(), message.as_str()),
            ("info", "inbound refused")
        );
        let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
        assert_eq!(get("client"), Some("192.0.2.7"));
        assert_eq!(get("reason"), Some("relay-denied"));
        assert_eq!(
            get("reply"),
            Some("554 5.7.1 <x@y.test>: Relay access denied")
        );
        assert!(stats
            .snapshot()
            .contains(&("inbound_refused:relay-denied".to_owned(), 1)));
    }
}
