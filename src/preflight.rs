//! Preflight: prove that every name can be validated, by the method that answers for it,
//! before a CA is asked anything (`vipcert preflight`, and the first step of every order).
//!
//! Owns the combined report. Each method's probes are its solver's (`solve::http01`'s
//! fetches through DNS, the VIP and every node; `solve::dns01`'s probe TXT records seen on
//! every authoritative server). It does not talk to the CA (`acme`).

use anyhow::Result;

use crate::config::Config;
use crate::plan::Plan;
use crate::solve::dns01::{self, DnsReport};
use crate::solve::http01::{self, HttpProbe, ProbeReport};
use crate::store::Store;

/// Every probe of a preflight run.
#[derive(Debug, Clone, Default)]
pub struct PreflightReport {
    http: ProbeReport,
    dns: DnsReport,
}

impl PreflightReport {
    /// Every probe succeeded.
    pub fn ok(&self) -> bool {
        self.http.ok() && self.dns.ok()
    }
    /// The HTTP-01 probes that failed.
    pub fn failures(&self) -> impl Iterator<Item = &HttpProbe> {
        self.http.failures()
    }
    /// How many probes failed, of every method.
    pub fn failed(&self) -> usize {
        self.http.failures().count() + self.dns.failures().count()
    }
    /// A table of every probe (or only failures), aligned, with a hint per failure: HTTP-01's,
    /// then DNS-01's.
    pub fn table(&self, only_failures: bool) -> String {
        let http = self.http.table(only_failures);
        let dns = self.dns.table(only_failures);
        match (self.http.is_empty(), dns.is_empty()) {
            (true, false) => dns,
            (_, true) => http,
            (false, false) => format!("{http}\n{dns}"),
        }
    }
}

/// What a passed preflight proved, by the methods the plan's names use.
pub fn ok_line(cfg: &Config, plan: &Plan) -> String {
    use crate::config::ChallengeKind;
    let uses = |k| plan.all_names().iter().any(|n| cfg.challenge_for(n) == k);
    let http = format!("every http-01 name answers on port {}", cfg.acme.http_port);
    let dns =
        "every dns-01 name's TXT record was placed, seen on every authoritative server and removed";
    match (uses(ChallengeKind::Http01), uses(ChallengeKind::Dns01)) {
        (true, true) => format!("{http}; {dns}"),
        (false, true) => dns.to_string(),
        _ => http,
    }
}

/// `vipcert preflight`: every method's probes, concurrently.
pub async fn run(cfg: &Config, plan: &Plan, store: &Store) -> Result<PreflightReport> {
    let (http, dns) = tokio::join!(
        http01::preflight(cfg, plan, store),
        dns01::preflight(cfg, plan, store)
    );
    Ok(PreflightReport {
        http: http?,
        dns: dns?,
    })
}
