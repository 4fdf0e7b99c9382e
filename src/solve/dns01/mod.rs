//! The dns-01 solver: for each name, the TXT record at `_acme-challenge.<name>` (followed
//! through CNAMEs, the usual delegation to a zone the site controls) placed in its zone by the
//! configured method (`method`: RFC 2136 with TSIG, or a lego-style program), noted in the
//! shared ledger first (`ledger`, swept by the next run when a run is killed), the
//! propagation barrier (`propagation`: every authoritative server serves every value before
//! the CA is told to validate), removal on every path, and DNS preflight (a probe TXT per
//! name written, seen on every authoritative server and removed, before any CA is asked).
//!
//! It does not speak ACME (`acme` hands out the TXT values) nor DNS on the wire (`dns`).

mod ledger;
mod method;
mod propagation;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use futures_util::future::join_all;

use crate::config::{ChallengeKind, Config, DnsConfig};
use crate::dns::{DnsError, Lookup, NameServer};
use crate::plan::Plan;
use crate::progress::Progress;
use crate::store::Store;
use ledger::{Ledger, Writer};
use method::Method;

/// One TXT record: for identifier `name`, value `value` at `fqdn` in `zone` (both absolute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) name: String,
    pub(crate) fqdn: String,
    pub(crate) zone: String,
    pub(crate) value: String,
}

fn dns_config(cfg: &Config) -> Result<&DnsConfig> {
    cfg.challenge.dns.as_ref().ok_or_else(|| {
        anyhow!(
            "dns-01 needs a [challenge.dns] section in {}",
            cfg.path.display()
        )
    })
}

/// The resolvers names are looked up through: `[preflight] resolver`, else the system's.
pub(super) fn lookup(cfg: &Config) -> Result<Lookup> {
    match cfg.preflight.resolver {
        Some(a) => Ok(Lookup::new(vec![a], cfg.preflight.timeout)),
        None => Lookup::system(cfg.preflight.timeout),
    }
}

/// Where `name`'s TXT record goes: `_acme-challenge.<name>.` through CNAMEs, and its zone
/// (`[challenge.dns] zone` when it holds that name, else found by SOA).
async fn target(
    lookup: &Lookup,
    zone: Option<&str>,
    name: &str,
) -> Result<(String, String), DnsError> {
    let fqdn = lookup
        .follow_cname(&format!("_acme-challenge.{name}."))
        .await?;
    let zone = match zone {
        Some(z) if fqdn == z || fqdn.ends_with(&format!(".{z}")) => z.to_string(),
        Some(z) => {
            return Err(DnsError::ZoneNotFound {
                name: fqdn,
                detail: format!("[challenge.dns] zone {z} does not hold it"),
            })
        }
        None => lookup.zone_of(&fqdn).await?,
    };
    Ok((fqdn, zone))
}

/// Records for `(name, value)` pairs, found in parallel; the first failure names its name.
async fn records(
    lookup: &Lookup,
    d: &DnsConfig,
    answers: &[(String, String)],
) -> Vec<Result<Record, DnsError>> {
    let zone = d.zone.as_deref();
    join_all(answers.iter().map(|(name, value)| async move {
        let (fqdn, zone) = target(lookup, zone, name).await?;
        Ok(Record {
            name: name.clone(),
            fqdn,
            zone,
            value: value.clone(),
        })
    }))
    .await
}

/// Note and place every record (concurrently when the method allows): the placed ones with
/// their ledger entries, and the failures.
async fn place_all(
    method: &Method,
    ledger: &Ledger,
    records: Vec<Record>,
) -> (Vec<(String, Record)>, Vec<(Record, String)>) {
    let one = |r: Record| async move {
        let entry = match ledger.note(&r) {
            Ok(e) => e,
            Err(e) => return Err((r, format!("cannot note it in the ledger: {e:#}"))),
        };
        match method.place(&r).await {
            Ok(()) => Ok((entry, r)),
            Err(e) => {
                ledger.done(&entry);
                Err((r, e.to_string()))
            }
        }
    };
    let results = if method.concurrent() {
        join_all(records.into_iter().map(one)).await
    } else {
        let mut v = Vec::new();
        for r in records {
            v.push(one(r).await);
        }
        v
    };
    let (mut placed, mut failed) = (Vec::new(), Vec::new());
    for r in results {
        match r {
            Ok(p) => placed.push(p),
            Err(f) => failed.push(f),
        }
    }
    (placed, failed)
}

/// Remove every placed record; its ledger entry goes when it is gone (else the next run
/// sweeps it).
async fn remove_all(method: &Method, ledger: &Ledger, placed: &[(String, Record)]) {
    if method.concurrent() {
        join_all(placed.iter().map(|(e, r)| remove_one(method, ledger, e, r))).await;
    } else {
        for (e, r) in placed {
            remove_one(method, ledger, e, r).await;
        }
    }
}

async fn remove_one(method: &Method, ledger: &Ledger, entry: &str, r: &Record) {
    match method.remove(r).await {
        Ok(()) => ledger.done(entry),
        Err(e) => {
            tracing::warn!(record = %r.fqdn, "cannot remove the TXT record (the next run sweeps it): {e}")
        }
    }
}

/// Remove the records a killed run left (`Ledger::leftovers`). Run once per issuing run,
/// under the issuer lease, before any order; nothing to do without `[challenge.dns]`.
pub(crate) async fn sweep(cfg: &Config, store: &Store) -> Result<()> {
    let Some(d) = cfg.challenge.dns.as_ref() else {
        return Ok(());
    };
    let ledger = Ledger::open(store, Writer::Order)?;
    let left = ledger.leftovers(crate::store::STALE_CHALLENGE);
    if left.is_empty() {
        return Ok(());
    }
    let method = Method::from_config(d)?;
    tracing::info!(
        records = left.len(),
        "sweeping TXT records a killed run left"
    );
    remove_all(&method, &ledger, &left).await;
    Ok(())
}

/// The TXT records of one order, removed by `cleanup`.
pub(crate) struct Presented {
    method: Method,
    ledger: Ledger,
    placed: Vec<(String, Record)>,
    zones: BTreeMap<String, Vec<NameServer>>,
    deadline: Duration,
    bound: Duration,
}

/// Place the TXT record of each `(name, value)` of `lineage` (what a killed run left was swept
/// before the run's first order, `sweep`). On failure what was placed is removed before the
/// error returns.
pub(crate) async fn present(
    cfg: &Config,
    store: &Store,
    lineage: &str,
    answers: &[(String, String)],
    progress: &Progress,
) -> Result<Presented> {
    let d = dns_config(cfg)?;
    let method = Method::from_config(d)?;
    let lookup = lookup(cfg)?;
    let ledger = Ledger::open(store, Writer::Order)?;
    let mut recs = Vec::new();
    for (r, (name, _)) in records(&lookup, d, answers).await.into_iter().zip(answers) {
        recs.push(r.with_context(|| format!("dns-01 for {name}"))?);
    }
    let (placed, failed) = place_all(&method, &ledger, recs.clone()).await;
    let mut p = Presented {
        method,
        ledger,
        placed,
        zones: BTreeMap::new(),
        deadline: d.propagation_timeout,
        bound: cfg.preflight.timeout,
    };
    if let Some((r, e)) = failed.first() {
        p.remove().await;
        bail!(
            "cannot place the dns-01 TXT record of {} at {}: {e}",
            r.name,
            r.fqdn
        );
    }
    match propagation::servers(&lookup, &recs).await {
        Ok(z) => p.zones = z,
        Err(e) => {
            p.remove().await;
            bail!("dns-01 for {lineage}: {e}");
        }
    }
    for r in &recs {
        progress.step(
            lineage,
            &r.name,
            "TXT record placed; waiting for every authoritative server",
        );
    }
    Ok(p)
}

impl Presented {
    /// The propagation barrier over these records.
    pub(crate) async fn barrier(&self, lineage: &str) -> Result<()> {
        let recs: Vec<Record> = self.placed.iter().map(|(_, r)| r.clone()).collect();
        match propagation::wait(&self.zones, &recs, self.deadline, self.bound).await {
            Ok(waited) => {
                tracing::info!(lineage, waited_ms = waited.as_millis() as u64, "propagation barrier: every authoritative server serves every TXT record");
                Ok(())
            }
            Err(lag) => bail!(
                "not every authoritative server serves the dns-01 TXT records of {lineage} after {}; the CA was not asked to validate ([challenge.dns] propagation_timeout).\n{}",
                humantime::format_duration(self.deadline),
                lag.table()
            ),
        }
    }

    async fn remove(&mut self) {
        remove_all(&self.method, &self.ledger, &self.placed).await;
        self.placed.clear();
    }

    /// Remove every record placed. Never fails the order: what cannot be removed now stays
    /// in the ledger for the next run.
    pub(crate) async fn cleanup(mut self) {
        self.remove().await;
    }
}

/// One name's DNS preflight.
#[derive(Debug, Clone)]
pub struct DnsProbe {
    /// The identifier.
    pub name: String,
    /// Where its TXT record goes ("" when that could not be found).
    pub record: String,
    /// Why it failed, or None.
    pub failure: Option<String>,
}

/// Every name's DNS preflight.
#[derive(Debug, Clone, Default)]
pub struct DnsReport {
    probes: Vec<DnsProbe>,
}

impl DnsReport {
    /// Every name passed.
    pub fn ok(&self) -> bool {
        self.probes.iter().all(|p| p.failure.is_none())
    }

    /// The names that failed.
    pub fn failures(&self) -> impl Iterator<Item = &DnsProbe> {
        self.probes.iter().filter(|p| p.failure.is_some())
    }

    /// A table (every name, or the failures), "" when no name uses dns-01.
    pub fn table(&self, only_failures: bool) -> String {
        let rows: Vec<&DnsProbe> = self
            .probes
            .iter()
            .filter(|p| !only_failures || p.failure.is_some())
            .collect();
        if rows.is_empty() {
            return String::new();
        }
        let w = rows.iter().map(|p| p.name.len()).max().unwrap_or(4).max(4);
        let r = rows
            .iter()
            .map(|p| p.record.len())
            .max()
            .unwrap_or(6)
            .max(6);
        let mut s = format!("{:<w$}  {:<r$}  DNS-01\n", "NAME", "RECORD");
        for p in rows {
            let what = p
                .failure
                .as_deref()
                .unwrap_or("ok: placed, seen on every authoritative server, removed");
            let _ = writeln!(s, "{:<w$}  {:<r$}  {what}", p.name, p.record);
        }
        s
    }
}

/// DNS preflight: for every name that uses dns-01, a probe TXT record written through the
/// configured method, seen on every authoritative server of its zone, and removed.
pub(crate) async fn preflight(cfg: &Config, plan: &Plan, store: &Store) -> Result<DnsReport> {
    let names: Vec<String> = plan
        .all_names()
        .into_iter()
        .filter(|n| cfg.challenge_for(n) == ChallengeKind::Dns01)
        .collect();
    if names.is_empty() {
        return Ok(DnsReport::default());
    }
    let d = dns_config(cfg)?;
    let fail_all = |why: String| DnsReport {
        probes: names
            .iter()
            .map(|n| DnsProbe {
                name: n.clone(),
                record: String::new(),
                failure: Some(why.clone()),
            })
            .collect(),
    };
    let method = match Method::from_config(d) {
        Ok(m) => m,
        Err(e) => return Ok(fail_all(format!("{e:#}"))),
    };
    let lookup = lookup(cfg)?;
    let ledger = Ledger::open(store, Writer::Probe)?;
    let (recs, mut probes) = probe_records(&lookup, d, &names).await;
    let (placed, failed) = place_all(&method, &ledger, recs).await;
    for (r, e) in failed {
        probes.push(DnsProbe {
            name: r.name,
            record: r.fqdn,
            failure: Some(e),
        });
    }
    let seen: Vec<Record> = placed.iter().map(|(_, r)| r.clone()).collect();
    probes.extend(propagated(&lookup, &seen, d.propagation_timeout, cfg.preflight.timeout).await);
    remove_all(&method, &ledger, &placed).await;
    probes.sort_by_key(|p| names.iter().position(|n| *n == p.name));
    Ok(DnsReport { probes })
}

/// A probe record (a random value) for each name, at the name its `_acme-challenge` leads
/// to; a name whose record cannot be found (zone, CNAME loop) is a failed probe.
async fn probe_records(
    lookup: &Lookup,
    d: &DnsConfig,
    names: &[String],
) -> (Vec<Record>, Vec<DnsProbe>) {
    let answers: Vec<(String, String)> = names
        .iter()
        .map(|n| {
            (
                n.clone(),
                format!("vipcert-probe-{}", crate::random::hex(8)),
            )
        })
        .collect();
    let (mut recs, mut probes) = (Vec::new(), Vec::new());
    for (r, (name, _)) in records(lookup, d, &answers).await.into_iter().zip(&answers) {
        match r {
            Ok(r) => recs.push(r),
            Err(e) => probes.push(DnsProbe {
                name: name.clone(),
                record: String::new(),
                failure: Some(e.to_string()),
            }),
        }
    }
    (recs, probes)
}

/// One probe per record: seen on every authoritative server, or what lags.
async fn propagated(
    lookup: &Lookup,
    recs: &[Record],
    deadline: Duration,
    bound: Duration,
) -> Vec<DnsProbe> {
    let probe = |r: &Record, failure: Option<String>| DnsProbe {
        name: r.name.clone(),
        record: r.fqdn.clone(),
        failure,
    };
    let zones = match propagation::servers(lookup, recs).await {
        Ok(z) => z,
        Err(e) => return recs.iter().map(|r| probe(r, Some(e.to_string()))).collect(),
    };
    match propagation::wait(&zones, recs, deadline, bound).await {
        Ok(_) => recs.iter().map(|r| probe(r, None)).collect(),
        Err(lag) => recs
            .iter()
            .map(|r| {
                let why: Vec<String> = lag
                    .rows
                    .iter()
                    .filter(|row| row.0 == r.fqdn)
                    .map(|(_, _, ns, addr, seen)| match seen {
                        propagation::Seen::Failed(e) => format!("{ns} {addr}: {e}"),
                        _ => format!(
                            "{ns} {addr} does not serve the probe TXT after {}",
                            humantime::format_duration(deadline)
                        ),
                    })
                    .collect();
                probe(r, (!why.is_empty()).then(|| why.join("; ")))
            })
            .collect(),
    }
}
