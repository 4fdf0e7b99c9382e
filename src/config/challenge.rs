//! `[challenge]`: which ACME challenge type answers for which name.
//!
//! Owns the challenge types vipcert answers (`ChallengeKind`) and the choice per name. It
//! does not answer a challenge (the solvers in `solve` do) nor speak ACME (`acme`).

use std::fmt;

/// An ACME challenge type vipcert can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChallengeKind {
    /// RFC 8555 §8.3: a file in the shared webroot, served by every node and the VIP.
    #[default]
    Http01,
    /// RFC 8555 §8.4: a TXT record at `_acme-challenge.<name>`, placed for each order.
    Dns01,
    /// draft-ietf-acme-dns-persist: a persistent TXT record at `_validation-persist.<name>`
    /// binding the name to the account; nothing is placed per order.
    DnsPersist01,
}

impl ChallengeKind {
    /// The challenge type's name, as RFC 8555 and the config spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::Dns01 => "dns-01",
            ChallengeKind::DnsPersist01 => "dns-persist-01",
        }
    }
}

impl fmt::Display for ChallengeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
