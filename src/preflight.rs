//! Preflight: prove that every name can be validated, by the method that answers for it,
//! before a CA is asked anything (`vipcert preflight`, and the first step of every order).
//!
//! Owns the combined report. Each method's probes are its solver's (`solve::http01`'s
//! fetches through DNS, the VIP and every node). It does not talk to the CA (`acme`).

use anyhow::Result;

use crate::config::Config;
use crate::plan::Plan;
use crate::solve::http01::{self, HttpProbe, ProbeReport};
use crate::store::Store;

/// Every probe of a preflight run.
#[derive(Debug, Clone, Default)]
pub struct PreflightReport {
    http: ProbeReport,
}

impl PreflightReport {
    /// Every probe succeeded.
    pub fn ok(&self) -> bool {
        self.http.ok()
    }
    /// The probes that failed.
    pub fn failures(&self) -> impl Iterator<Item = &HttpProbe> {
        self.http.failures()
    }
    /// A table of every probe (or only failures), aligned, with a hint per failure.
    pub fn table(&self, only_failures: bool) -> String {
        self.http.table(only_failures)
    }
}

/// `vipcert preflight`: every method's probes.
pub async fn run(cfg: &Config, plan: &Plan, store: &Store) -> Result<PreflightReport> {
    Ok(PreflightReport {
        http: http01::preflight(cfg, plan, store).await?,
    })
}
