//! The ledger of TXT records placed and not yet removed, one small file per record in
//! `<shared_dir>/dns01/`, written before the record is placed and removed after it is gone.
//! A run killed in between leaves its files; the next issuing run (under the issuer lease, so
//! no other issuer is at work) removes those records and their files: TXT records are swept
//! as challenge files are. Preflight's probes (written without the lease) are swept only once
//! stale, as the webroot's probe files are.
//!
//! Owns the files' names and format (`fqdn zone value`, one line). It does not place or
//! remove records (`method`).

use std::sync::OnceLock;
use std::time::Duration;

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

/// Who wrote an entry, which decides when another run may sweep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writer {
    /// An order, under the issuer lease: the next lease holder knows no order is at work and
    /// sweeps it at once.
    Order,
    /// Preflight, which holds no lease (`vipcert preflight` on any node): its probe may be
    /// live while another node issues, so it is swept only once stale by the share's clock.
    Probe,
}

impl Writer {
    fn prefix(self) -> &'static str {
        match self {
            Writer::Order => "o",
            Writer::Probe => "p",
        }
    }
}

/// The open ledger directory, for entries of one writer.
pub(crate) struct Ledger {
    dir: Dir,
    writer: Writer,
}

impl Ledger {
    pub(crate) fn open(store: &Store, writer: Writer) -> Result<Ledger> {
        Ok(Ledger {
            dir: store.dns01_ledger()?,
            writer,
        })
    }

    /// Note `r` before it is placed; the entry's name.
    pub(crate) fn note(&self, r: &Record) -> Result<String> {
        let name = format!(
            "{}-{}-{}",
            self.writer.prefix(),
            run_id(),
            crate::random::hex(8)
        );
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

    /// Entries other runs left, that this run (holding the issuer lease) may sweep: every
    /// order's, and preflight's once older than `stale` by the share's own clock (a node whose
    /// clock is ahead must not sweep another node's live probe).
    pub(crate) fn leftovers(&self, stale: Duration) -> Vec<(String, Record)> {
        let mine = format!("-{}-", run_id());
        let Ok(names) = self.dir.list() else {
            return Vec::new();
        };
        let cutoff = self.dir.now().ok().and_then(|t| t.checked_sub(stale));
        names
            .into_iter()
            .filter(|n| !n.contains(&mine) && !n.starts_with('.'))
            .filter(|n| !n.starts_with("p-") || self.older_than(n, cutoff))
            .take(SWEEP_MAX)
            .filter_map(|n| {
                let bytes = self.dir.read(&n, ENTRY_MAX).ok()?;
                let r = parse(&String::from_utf8_lossy(&bytes))?;
                Some((n, r))
            })
            .collect()
    }

    /// Whether entry `n` was last modified before `cutoff` (None: the share's clock is unknown,
    /// so nothing is old).
    fn older_than(&self, n: &str, cutoff: Option<std::time::SystemTime>) -> bool {
        let (Some(cutoff), Ok(st)) = (cutoff, self.dir.stat(n)) else {
            return false;
        };
        let cutoff = cutoff
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        st.st_mtime < cutoff
    }
}

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

    /// The next lease holder sweeps an order's entry at once, but a preflight probe's (written
    /// without the lease, maybe live on another node) only once stale by the share's clock.
    #[test]
    fn probes_are_swept_only_when_stale() {
        let tmp = tempfile::tempdir().unwrap();
        let line = "_acme-challenge.a.example.org. example.org. v\n";
        for n in ["o-other-1", "p-other-1"] {
            std::fs::write(tmp.path().join(n), line).unwrap();
        }
        let ledger = Ledger {
            dir: Dir::open(tmp.path()).unwrap(),
            writer: Writer::Order,
        };
        let stale = Duration::from_secs(600);
        let names = |l: &Ledger| -> Vec<String> {
            let mut v: Vec<String> = l.leftovers(stale).into_iter().map(|(n, _)| n).collect();
            v.sort();
            v
        };
        assert_eq!(names(&ledger), ["o-other-1"]);
        let old = std::time::SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(tmp.path().join("p-other-1"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(names(&ledger), ["o-other-1", "p-other-1"]);
        // This run's own entries are never its leftovers.
        let mine = ledger.note(&parse(line).unwrap()).unwrap();
        assert!(!names(&ledger).contains(&mine));
    }

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
