//! The propagation barrier: wait until every authoritative server of each record's zone (its
//! NS set, each address asked directly, UDP with TCP fallback) serves every TXT value, all
//! records and servers in parallel, bounded; on timeout a table of which server lacks which
//! record.
//!
//! Owns the wait and its table. It does not place records (`method`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::StreamExt as _;

/// Questions in flight at once: records × servers × addresses come from DNS and the plan (up
/// to 100 names), and each question is a socket of its own.
const IN_FLIGHT: usize = 64;

use super::Record;
use crate::dns::{self, DnsError, Lookup, NameServer};

/// One server's view of one record, at the last look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    /// It serves the value.
    Served,
    /// It answers, without the value.
    Missing,
    /// It did not answer, or not as the zone's server.
    Failed(DnsError),
}

/// A (record, server, address) the barrier watches.
struct Check {
    record: usize,
    ns: String,
    addr: SocketAddr,
    seen: Seen,
}

/// What the barrier found on timeout (or could not start: a zone without servers).
#[derive(Debug)]
pub(crate) struct Lagging {
    /// (record's fqdn, value, server, address, what it saw), only those not served.
    pub(crate) rows: Vec<(String, String, String, SocketAddr, Seen)>,
}

impl Lagging {
    /// The table: one line per server that lacks a record.
    pub(crate) fn table(&self) -> String {
        let w = self
            .rows
            .iter()
            .map(|r| r.0.len())
            .max()
            .unwrap_or(6)
            .max(6);
        let mut s = format!("{:<w$}  {:<34}  RESULT\n", "RECORD", "SERVER");
        for (fqdn, value, ns, addr, seen) in &self.rows {
            let server = format!("{ns} {addr}");
            let what = match seen {
                Seen::Served => "serves it".to_string(),
                Seen::Missing => format!("answers without TXT \"{value}\""),
                Seen::Failed(e) => e.to_string(),
            };
            let _ = writeln!(s, "{fqdn:<w$}  {server:<34}  {what}");
        }
        s
    }
}

/// The NS set of every zone of `records`, each asked once.
pub(crate) async fn servers(
    lookup: &Lookup,
    records: &[Record],
) -> Result<BTreeMap<String, Vec<NameServer>>, DnsError> {
    let mut zones: Vec<&str> = records.iter().map(|r| r.zone.as_str()).collect();
    zones.sort();
    zones.dedup();
    let found = join_all(zones.iter().map(|z| lookup.name_servers(z))).await;
    let mut out = BTreeMap::new();
    for (z, ns) in zones.into_iter().zip(found) {
        out.insert(z.to_string(), ns?);
    }
    Ok(out)
}

/// Wait (at most `deadline`) until every server of `zones` serves every record's value; how
/// long that took, or what lags.
pub(crate) async fn wait(
    zones: &BTreeMap<String, Vec<NameServer>>,
    records: &[Record],
    deadline: Duration,
    bound: Duration,
) -> Result<Duration, Lagging> {
    let mut checks: Vec<Check> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        for ns in zones.get(&r.zone).into_iter().flatten() {
            for &addr in &ns.addrs {
                checks.push(Check {
                    record: i,
                    ns: ns.name.clone(),
                    addr,
                    seen: Seen::Missing,
                });
            }
        }
    }
    let start = Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        let pending: Vec<usize> = (0..checks.len())
            .filter(|&i| checks[i].seen != Seen::Served)
            .collect();
        if pending.is_empty() {
            return Ok(start.elapsed());
        }
        if start.elapsed() + delay > deadline {
            break;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
        // Each question's bound never runs past the deadline.
        let q = bound
            .min(deadline.saturating_sub(start.elapsed()))
            .max(Duration::from_millis(100));
        let looks = pending.iter().map(|&i| {
            let c = &checks[i];
            let r = &records[c.record];
            look(c.addr, r, q)
        });
        let seen: Vec<_> = futures_util::stream::iter(looks)
            .buffered(IN_FLIGHT)
            .collect()
            .await;
        for (i, seen) in pending.iter().zip(seen) {
            checks[*i].seen = seen;
        }
    }
    Err(Lagging {
        rows: checks
            .into_iter()
            .filter(|c| c.seen != Seen::Served)
            .map(|c| {
                let r = &records[c.record];
                (r.fqdn.clone(), r.value.clone(), c.ns, c.addr, c.seen)
            })
            .collect(),
    })
}

async fn look(addr: SocketAddr, r: &Record, bound: Duration) -> Seen {
    match dns::txt_at(addr, &r.zone, &r.fqdn, bound).await {
        Ok(v) if v.contains(&r.value) => Seen::Served,
        Ok(_) => Seen::Missing,
        Err(e) => Seen::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_the_server_and_the_record() {
        let l = Lagging {
            rows: vec![(
                "_acme-challenge.a.example.org.".into(),
                "abc".into(),
                "ns2.example.org.".into(),
                "192.0.2.2:53".parse().unwrap(),
                Seen::Missing,
            )],
        };
        let t = l.table();
        assert!(
            t.contains("_acme-challenge.a.example.org.  ns2.example.org. 192.0.2.2:53"),
            "{t}"
        );
        assert!(t.contains("answers without TXT \"abc\""), "{t}");
    }
}
