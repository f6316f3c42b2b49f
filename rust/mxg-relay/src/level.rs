//! Transport levels, ordered `none < opportunistic < encrypted < qualified`
//! (ARCHITECTURE.md, vocabulary). The order is the order of guarantees: each level promises
//! everything the one below it does, so "meets" is a comparison.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsLevel {
    /// Plaintext; STARTTLS is not even attempted. Only by operator choice.
    None,
    /// STARTTLS when offered, no checks of the peer.
    Opportunistic,
    /// STARTTLS mandatory with current parameters; peer not authenticated.
    Encrypted,
    /// Encrypted and the peer authenticated (DANE, MTA-STS, ...).
    Qualified,
}

impl TlsLevel {
    /// Every level, weakest first.
    pub const ALL: [Self; 4] = [
        Self::None,
        Self::Opportunistic,
        Self::Encrypted,
        Self::Qualified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Opportunistic => "opportunistic",
            Self::Encrypted => "encrypted",
            Self::Qualified => "qualified",
        }
    }

    /// STARTTLS is attempted when the server offers it.
    pub fn tries_tls(self) -> bool {
        self >= Self::Opportunistic
    }

    /// A session without TLS does not meet this level.
    pub fn requires_tls(self) -> bool {
        self >= Self::Encrypted
    }

    pub fn meets(self, required: Self) -> bool {
        self >= required
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_the_order_of_guarantees() {
        assert!(TlsLevel::None < TlsLevel::Opportunistic);
        assert!(TlsLevel::Opportunistic < TlsLevel::Encrypted);
        assert!(TlsLevel::Encrypted < TlsLevel::Qualified);
        assert!(TlsLevel::Qualified.meets(TlsLevel::Encrypted));
        assert!(!TlsLevel::Opportunistic.meets(TlsLevel::Encrypted));
        assert!(!TlsLevel::None.tries_tls());
        assert!(TlsLevel::Encrypted.requires_tls());
    }
}
