//! What can go wrong speaking DNS, as data a caller branches on: the server, the zone and the
//! code that named the failure, never a TSIG secret.

use std::net::SocketAddr;
use std::time::Duration;

/// The TSIG error a server put in its answer's TSIG record (RFC 8945 section 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsigCode {
    /// BADSIG (16): the MAC does not match: the secret differs from the server's.
    BadSig,
    /// BADKEY (17): the server knows no key of this name and algorithm.
    BadKey,
    /// BADTIME (18): the clocks differ by more than the fudge (300 s).
    BadTime,
    /// BADTRUNC (22) or another code.
    Other(u16),
}

impl TsigCode {
    /// The code from the TSIG record's error field.
    pub fn from_u16(code: u16) -> TsigCode {
        match code {
            16 => TsigCode::BadSig,
            17 => TsigCode::BadKey,
            18 => TsigCode::BadTime,
            n => TsigCode::Other(n),
        }
    }

    fn hint(self) -> &'static str {
        match self {
            TsigCode::BadSig => "the secret differs from the server's: copy the key's secret again",
            TsigCode::BadKey => {
                "the server knows no key of this name and algorithm: check tsig_key_name and tsig_algorithm against its `key` statement"
            }
            TsigCode::BadTime => "this host's clock and the server's differ by more than 5 minutes: fix NTP",
            TsigCode::Other(_) => "see the server's log",
        }
    }
}

impl std::fmt::Display for TsigCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TsigCode::BadSig => f.write_str("BADSIG"),
            TsigCode::BadKey => f.write_str("BADKEY"),
            TsigCode::BadTime => f.write_str("BADTIME"),
            TsigCode::Other(n) => write!(f, "TSIG error {n}"),
        }
    }
}

/// A DNS failure. Names are absolute (trailing dot); no variant carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The server refused our TSIG signature.
    #[error("TSIG refused by {server} for key {key}: {code} ({hint})", hint = code.hint())]
    TsigRefused {
        /// Who refused.
        server: SocketAddr,
        /// The key's name.
        key: String,
        /// BADKEY, BADSIG, BADTIME.
        code: TsigCode,
    },
    /// NOTAUTH without a TSIG error: the server is not the primary of the zone, or the key may
    /// not update it.
    #[error(
        "{server} answered NOTAUTH for an update of zone {zone}: it is not the zone's primary, or the TSIG key may not update it (BIND: update-policy/allow-update)"
    )]
    NotAuth {
        /// Who answered.
        server: SocketAddr,
        /// The zone updated.
        zone: String,
    },
    /// REFUSED: the server will not do this (update policy, or no such zone there).
    #[error(
        "{server} REFUSED {what} in zone {zone}: its policy does not allow it (BIND: update-policy grants the key `TXT` on `_acme-challenge` names; a query: the server does not serve that zone)"
    )]
    Refused {
        /// Who refused.
        server: SocketAddr,
        /// The zone.
        zone: String,
        /// "the update of NAME" or "a query for NAME".
        what: String,
    },
    /// No SOA found for the name or any parent.
    #[error(
        "no DNS zone found for {name}: {detail} (set [challenge.dns] zone, or check the resolver)"
    )]
    ZoneNotFound {
        /// The name looked up.
        name: String,
        /// What the resolvers said.
        detail: String,
    },
    /// The CNAME chain from `_acme-challenge.<name>` loops or is too long.
    #[error("CNAME loop or chain longer than {max} from {}: {}", chain[0], chain.join(" -> "))]
    CnameLoop {
        /// The names followed, first to last (the last repeats an earlier one on a loop).
        chain: Vec<String>,
        /// The bound on hops.
        max: usize,
    },
    /// The server answers but is not authoritative for the zone (no AA bit, or REFUSED).
    #[error(
        "{server} (a name server of {zone}) answers but does not hold the zone: fix its NS record or the server's zone list"
    )]
    NotAuthoritative {
        /// Who answered.
        server: SocketAddr,
        /// The zone.
        zone: String,
    },
    /// No answer within the time bound.
    #[error("no answer from {server} within {}", humantime::format_duration(*after))]
    Timeout {
        /// Who was asked.
        server: SocketAddr,
        /// The time bound.
        after: Duration,
    },
    /// A name server of the zone has no address.
    #[error("name server {ns} of zone {zone} has no A or AAAA record")]
    NoAddress {
        /// The NS name.
        ns: String,
        /// The zone.
        zone: String,
    },
    /// Another RCODE.
    #[error("{server} answered {rcode} to {what}")]
    Rcode {
        /// Who answered.
        server: SocketAddr,
        /// The RCODE's name (SERVFAIL, NXDOMAIN, …).
        rcode: String,
        /// What was asked.
        what: String,
    },
    /// A network error (connection refused, unreachable).
    #[error("cannot reach {server}: {detail}")]
    Io {
        /// Who was asked.
        server: SocketAddr,
        /// The OS error.
        detail: String,
    },
    /// An answer that does not parse, does not match the question, or whose TSIG does not verify.
    #[error("bad answer from {server}: {detail}")]
    BadAnswer {
        /// Who answered.
        server: SocketAddr,
        /// What was wrong.
        detail: String,
    },
    /// A name that is not a valid DNS name.
    #[error("{name:?} is not a valid DNS name: {detail}")]
    BadName {
        /// The text given.
        name: String,
        /// Why.
        detail: String,
    },
}
