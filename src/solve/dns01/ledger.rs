//! The ledger of TXT records placed and not yet removed, one small file per record in
//! `<shared_dir>/dns01/`, written before the record is placed and removed after it is gone.
//! A run killed in between leaves its files; the next issuing run (under the issuer lease, so
//! no other issuer is at work) removes those records and their files: TXT records are swept
//! as challenge files are.
//!
//! Owns the files' names and format (`fqdn zone value`, one line). It does not place or
//! remove records (`method`).

use std::sync::OnceLock;

use anyhow::Result;

use super::Record;
use crate::safefs::Dir;
use crate::store::Store;

/// Largest ledger file read (a line of two names and a value).
const ENTRY_MAX: u64 = 1024;
/// Most leftovers swept per run (a runaway directory is not walked forever).
const SWEEP_MAX: usize = 1000;

/// This process's run: its ledger files start with it, and a sweep leaves them alone (the
/// concurrent orders of one run share it).
fn run_id() -> &'static str {
    static RUN: OnceLock<String> = OnceLock::new();
    RUN.get_or_init(|| crate::random::hex(6))
}

/// The open ledger directory.
pub(crate) struct Ledger {
    dir: Dir,
}

impl Ledger {
    pub(crate) fn open(store: &Store) -> Result<Ledger> {
        Ok(Ledger {
            dir: store.dns01_ledger()?,
        })
    }

    /// Note `r` before it is placed; the entry's name.
    pub(crate) fn note(&self, r: &Record) -> Result<String> {
        let name = format!("{}-{}", run_id(), crate::random::hex(8));
        let line = format!("{} {} {}\n", r.fqdn, r.zone, r.value);
        self.dir.create_new(&name, line.as_bytes(), 0o600)?;
        Ok(name)
    }

    /// The record of `entry` is gone.
    pub(crate) fn done(&self, entry: &str) {
        if let Err(e) = self.dir.remove(entry) {
            tracing::warn!(entry, "cannot remove the DNS-01 ledger entry: {e}");
        }
    }

    /// Entries other runs left: (entry, record).
    pub(crate) fn leftovers(&self) -> Vec<(String, Record)> {
        let ours = format!("{}-", run_id());
        let Ok(names) = self.dir.list() else {
            return Vec::new();
        };
        names
            .into_iter()
            .filter(|n| !n.starts_with(&ours) && !n.starts_with('.'))
            .take(SWEEP_MAX)
            .filter_map(|n| {
                let bytes = self.dir.read(&n, ENTRY_MAX).ok()?;
                let r = parse(&String::from_utf8_lossy(&bytes))?;
                Some((n, r))
            })
            .collect()
    }
}

/// An entry's line, validated: the shared directory is written by every node, and what is
/// read back is sent to the DNS server or the exec program, so only what vipcert writes
/// passes: two DNS names and a value of the base64url alphabet (a dns-01 value, or a probe's).
fn parse(line: &str) -> Option<Record> {
    let mut it = line.split_whitespace();
    let (fqdn, zone, value) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || !dns_name(fqdn) || !dns_name(zone) || !token(value) {
        return None;
    }
    let name = fqdn
        .strip_prefix("_acme-challenge.")
        .unwrap_or(fqdn)
        .trim_end_matches('.');
    Some(Record {
        name: name.to_string(),
        fqdn: fqdn.to_string(),
        zone: zone.to_string(),
        value: value.to_string(),
    })
}

/// An absolute DNS name as vipcert writes one: at most 253 bytes, labels of 1 to 63 letters,
/// digits, '-' or '_', ending in a dot.
fn dns_name(n: &str) -> bool {
    let Some(body) = n.strip_suffix('.') else {
        return false;
    };
    n.len() <= 254
        && body.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A TXT value vipcert places: 1 to 64 characters of the base64url alphabet.
fn token(v: &str) -> bool {
    (1..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_reads_back() {
        let r = parse("_acme-challenge.a.example.org. example.org. v-1_x\n").unwrap();
        assert_eq!(
            (r.fqdn.as_str(), r.zone.as_str(), r.value.as_str()),
            ("_acme-challenge.a.example.org.", "example.org.", "v-1_x")
        );
        assert!(parse("half a").is_none());
        // What a hostile writer of the share might plant is not swept: another name's syntax,
        // a value outside base64url or over-long, extra words.
        for bad in [
            "_acme-challenge.a.example.org example.org. v\n",
            "_acme-challenge.a.example.org. example.org. v;rm\n",
            "a..b. example.org. v\n",
            "_acme-challenge.a.example.org. example.org. v extra\n",
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
        let long = format!("x.example.org. example.org. {}\n", "a".repeat(65));
        assert!(parse(&long).is_none());
    }
}
