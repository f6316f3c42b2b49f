use serde::{Deserialize, Serialize};

/// One recipient as the client gave it, with its DSN parameters (RFC 3461).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    /// NOTIFY keywords (`SUCCESS`, `FAILURE`, `DELAY`, `NEVER`); empty when
    /// the client gave none, which means the default FAILURE,DELAY.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
    /// ORCPT address (RFC 3461 §4.2), type `rfc822` implied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<String>,
}

/// The envelope of a spooled message: everything SMTP said about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub queue_id: String,
    /// Unix time in milliseconds when the message was accepted.
    pub received_ms: u64,
    /// Reverse path; empty for the null sender `<>`.
    pub sender: String,
    pub recipients: Vec<Recipient>,
    /// RET=FULL|HDRS (RFC 3461 §4.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<String>,
    /// ENVID (RFC 3461 §4.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envid: Option<String>,
    /// BODY=7BIT|8BITMIME (RFC 6152).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// SMTPUTF8 given on MAIL (RFC 6531).
    #[serde(default)]
    pub smtputf8: bool,
    /// REQUIRETLS given on MAIL (RFC 8689 §4): the message may travel only
    /// over authenticated TLS, and only to servers that offer REQUIRETLS.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requiretls: bool,
    /// Where it came from: `smtp` from a client, `local` for messages mxg
    /// made itself (delivery status notifications).
    pub origin: String,
    #[serde(default)]
    pub client_addr: String,
    #[serde(default)]
    pub client_helo: String,
    /// TLS version and cipher of the inbound session, when there was TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_tls: Option<String>,
    /// Message size in octets as stored.
    pub size: u64,
    /// The Message-ID header field's value, for logs; absent if none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}
