//! Every limit the SMTP server enforces, with its number and its reason.

use std::time::Duration;

/// Numeric limits for one inbound SMTP session (ARCHITECTURE.md rule 12).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest command line including CRLF. RFC 5321 §4.5.3.1.4 sets 512;
    /// the extensions we announce may lengthen MAIL and RCPT (SIZE, BODY,
    /// RET, ENVID of up to 100 xtext chars, NOTIFY, ORCPT of up to 500), so
    /// the default allows 2048.
    pub max_command_line: usize,
    /// Longest text line in DATA including CRLF: 1000 octets, RFC 5321
    /// §4.5.3.1.6. Longer lines are refused rather than folded, because
    /// folding would break DKIM signatures of the internal server.
    pub max_data_line: usize,
    /// Largest message accepted, announced in EHLO SIZE (RFC 1870).
    pub max_message_size: usize,
    /// Recipients per transaction; RFC 5321 §4.5.3.1.8 requires at least 100.
    pub max_recipients: usize,
    /// Commands that get an error reply before the session is closed, so a
    /// confused or hostile client cannot occupy a slot forever.
    pub max_errors: usize,
    /// Wait for a command, RFC 5321 §4.5.3.2.7 (server timeout: 5 minutes).
    pub command_timeout: Duration,
    /// Wait for the next DATA block, RFC 5321 §4.5.3.2.5 (3 minutes on the
    /// client side; the server waits at least as long).
    pub data_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_command_line: 2048,
            max_data_line: 1000,
            max_message_size: 50 * 1024 * 1024,
            max_recipients: 1000,
            max_errors: 20,
            command_timeout: Duration::from_mins(5),
            data_timeout: Duration::from_mins(5),
        }
    }
}
