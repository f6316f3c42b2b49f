//! Who each message goes to.

/// The recipients of every message of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    /// The same list for every message (`--to`, repeatable).
    Fixed(Vec<String>),
    /// `per_message` recipients `u<n>-<i>@domain` per message, the domains
    /// taken round-robin over the whole run (`--rcpts`, `--domains`).
    Generated {
        per_message: usize,
        domains: Vec<String>,
    },
}

impl Recipients {
    /// How many RCPT commands each message carries.
    pub fn per_message(&self) -> usize {
        match self {
            Self::Fixed(list) => list.len(),
            Self::Generated { per_message, .. } => *per_message,
        }
    }

    /// Fills `out` with the recipients of message `n` (1-based).
    ///
    /// The round-robin runs over all recipients of the run, not within each
    /// message: every message still spans `min(R, D)` domains, and each
    /// domain gets the same share of the total (a relay delivers per
    /// destination, so an uneven split would measure the busiest domain).
    pub fn expand(&self, n: u64, out: &mut Vec<String>) {
        out.clear();
        match self {
            Self::Fixed(list) => out.extend(list.iter().cloned()),
            Self::Generated {
                per_message,
                domains,
            } => {
                let first = (n - 1) * *per_message as u64;
                for i in 0..*per_message {
                    let slot = (first + i as u64) % domains.len() as u64;
                    // The slot is below domains.len(), so it fits a usize.
                    let domain = &domains[slot as usize];
                    out.push(format!("u{n}-{i}@{domain}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_round_robin() {
        let r = Recipients::Generated {
            per_message: 3,
            domains: vec!["a.test".into(), "b.test".into()],
        };
        let mut out = Vec::new();
        r.expand(1, &mut out);
        assert_eq!(out, ["u1-0@a.test", "u1-1@b.test", "u1-2@a.test"]);
        r.expand(2, &mut out);
        assert_eq!(out, ["u2-0@b.test", "u2-1@a.test", "u2-2@b.test"]);
        assert_eq!(r.per_message(), 3);
    }

    #[test]
    fn fixed() {
        let r = Recipients::Fixed(vec!["x@y.test".into()]);
        let mut out = vec!["stale".to_owned()];
        r.expand(7, &mut out);
        assert_eq!(out, ["x@y.test"]);
    }
}
