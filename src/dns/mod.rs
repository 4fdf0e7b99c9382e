//! Speaking DNS, and nothing of ACME or solvers: one question to one server directly (UDP, TCP
//! when truncated, a time bound per question), a name's CNAME target, zone (by SOA), NS set and
//! server addresses through recursive resolvers, the TXT values one authoritative server holds,
//! and RFC 2136 add/delete of one TXT value signed with TSIG. Failures are [`DnsError`] values;
//! no error or log line carries a TSIG secret.
//!
//! Callers: `solve::dns01` (present, propagation barrier, preflight) and dns-persist-01's record
//! placement.

mod error;
mod lookup;
mod tsig;
mod update;
mod wire;

pub use error::{DnsError, TsigCode};
pub use lookup::{txt_at, Lookup, NameServer, CNAME_MAX};
pub use tsig::{TsigAlg, TsigKey};
pub use update::{update_txt, update_txt_record, Change, TxtRecord, TXT_TTL};
