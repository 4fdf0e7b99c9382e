//! Preflight: prove that every name can be validated, by the method that answers for it,
//! before a CA is asked anything (`vipcert preflight`, and the first step of every order).
//!
//! Owns the combined report. Each method's probes are its solver's (`solve::http01`'s
//! fetches through DNS, the VIP and every node; `solve::dns01`'s probe TXT records seen on
//! every authoritative server; `solve::persist`'s dns-persist-01 records judged on every
//! authoritative server). It does not talk to the CA (`acme`), but for dns-persist-01's
//! issuer names, read from its directory.

use anyhow::Result;

use crate::config::Config;
use crate::plan::Plan;
use crate::solve::dns01::{self, DnsReport};
use crate::solve::http01::{self, HttpProbe, ProbeReport};
use crate::solve::persist;
use crate::store::Store;

/// Every probe of a preflight run.
#[derive(Debug, Clone, Default)]
pub struct PreflightReport {
    http: ProbeReport,
    dns: DnsReport,
    persist: crate::persist::Table,
}

impl PreflightReport {
    /// Every probe succeeded.
    pub fn ok(&self) -> bool {
        self.http.ok() && self.dns.ok() && self.persist.ok()
    }
    /// The HTTP-01 probes that failed.
    pub fn failures(&self) -> impl Iterator<Item = &HttpProbe> {
        self.http.failures()
    }
    /// How many probes failed, of every method.
    pub fn failed(&self) -> usize {
        let persist = self.persist.rows.iter();
        let persist = persist.filter(|r| r.verdict != Ok(crate::persist::Verdict::Good));
        self.http.failures().count() + self.dns.failures().count() + persist.count()
    }
    /// A table of every probe (or only failures), aligned, with a hint per failure: HTTP-01's,
    /// then DNS-01's.
    pub fn table(&self, only_failures: bool) -> String {
        let mut parts = Vec::new();
        if !self.http.is_empty() {
            parts.push(self.http.table(only_failures));
        }
        let dns = self.dns.table(only_failures);
        if !dns.is_empty() {
            parts.push(dns);
        }
        // dns-persist-01's table lists what is wrong, or one line when nothing is.
        if !self.persist.rows.is_empty() {
            parts.push(self.persist.to_string());
        }
        if parts.is_empty() {
            return self.http.table(only_failures);
        }
        parts.join("\n")
    }
}

/// What a passed preflight proved, by the methods the plan's names use.
pub fn ok_line(cfg: &Config, plan: &Plan) -> String {
    use crate::config::ChallengeKind;
    let uses = |k| plan.all_names().iter().any(|n| cfg.challenge_for(n) == k);
    let http = format!("every http-01 name answers on port {}", cfg.acme.http_port);
    let dns =
        "every dns-01 name's TXT record was placed, seen on every authoritative server and removed";
    let persist = "every dns-persist-01 name's record is on every authoritative server";
    let said: Vec<String> = [
        (ChallengeKind::Http01, http),
        (ChallengeKind::Dns01, dns.to_string()),
        (ChallengeKind::DnsPersist01, persist.to_string()),
    ]
    .into_iter()
    .filter(|(k, _)| uses(*k))
    .map(|(_, s)| s)
    .collect();
    if said.is_empty() {
        return format!("every http-01 name answers on port {}", cfg.acme.http_port);
    }
    said.join("; ")
}

/// `vipcert preflight`: every method's probes, concurrently.
pub async fn run(cfg: &Config, plan: &Plan, store: &Store) -> Result<PreflightReport> {
    let (http, dns, persist) = tokio::join!(
        http01::preflight(cfg, plan, store),
        dns01::preflight(cfg, plan, store),
        persist::preflight(cfg, plan, store)
    );
    Ok(PreflightReport {
        http: http?,
        dns: dns?,
        persist: persist?,
    })
}
