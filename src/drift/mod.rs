//! The drift checker (`vipcert check`): does every node hold the right, current, safe
//! certificate? Findings {node, lineage, check, severity, detail} in a fixed order, modelled
//! on cert-manager's policy chain, and the four outputs monitoring reads (text, JSON, Nagios,
//! Prometheus textfile).
//!
//! Owns the `Report`, the `Options` of a run and `run` (local or fleet, then render). The
//! parts: the finding vocabulary (`finding`), the policy chain, one step per check
//! (`policy`, whose certificate checks are THE verification policy, `crate::verify`), the
//! network findings (`remote`), a node's files (`local`), the store (`store_view`), the
//! fleet requests (`fleet`) and the renderings (`output`). It does not install or repair
//! anything (`install`), and it never reads or sends key material: only "does the key belong
//! to the certificate" leaves a node.
//!
//! Drift is data, not an error: a missing file or an unreachable node is a finding; only a
//! broken config or an unreadable shared directory root is an error.

mod finding;
mod fleet;
mod local;
mod output;
mod policy;
mod remote;
mod store_view;

pub use finding::{Check, Finding, Severity};
pub use fleet::check_fleet;
pub use local::{
    check_local, name_of, observe, observe_bytes, observe_node, FileFacts, Ids, Observation, Trust,
};
pub use output::{exit_code, failed, json, nagios, prometheus, text, SCHEMA};
pub use policy::{parse_threshold, store_findings, target_findings, Expected, Thresholds};
pub use remote::{probe_finding, status_findings};
pub use store_view::{read_store, StoreVersion, StoreView};

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::plan::Plan;
use crate::store::Store;

/// One installed certificate's dates, for perfdata and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Installed {
    pub node: String,
    pub lineage: String,
    pub path: String,
    pub sha256: String,
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// "local" or "fleet".
    pub mode: &'static str,
    pub checked_at: i64,
    pub findings: Vec<Finding>,
    pub certificates: Vec<Installed>,
    #[serde(skip)]
    pub thresholds: Thresholds,
    /// Fleet: did each node's status route answer.
    #[serde(skip)]
    pub nodes_up: Vec<(String, bool)>,
    /// Store current per lineage (number, notAfter).
    #[serde(skip)]
    pub store: Vec<(String, Option<(u32, i64)>)>,
}

impl Report {
    pub fn status(&self) -> Severity {
        self.findings
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Ok)
    }
    pub fn count(&self, s: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == s).count()
    }
    pub(super) fn add_installed(&mut self, node: &str, obs: &Observation) {
        if let Some(leaf) = &obs.leaf {
            self.certificates.push(Installed {
                node: node.to_string(),
                lineage: obs.lineage.clone(),
                path: obs.cert.path.clone(),
                sha256: leaf.sha256.clone(),
                serial: leaf.serial.clone(),
                not_before: leaf.not_before,
                not_after: leaf.not_after,
            });
        }
    }
}

pub(super) fn new_report(mode: &'static str, th: Thresholds, now: i64) -> Report {
    Report {
        mode,
        checked_at: now,
        findings: vec![],
        certificates: vec![],
        thresholds: th,
        nodes_up: vec![],
        store: vec![],
    }
}

pub(super) fn store_summary(v: &StoreView) -> (String, Option<(u32, i64)>) {
    (
        v.lineage.clone(),
        v.current().map(|c| (c.number, c.leaf.not_after)),
    )
}

/// How `check` presents its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Nagios,
    Prometheus,
}

/// What `vipcert check` was asked (main.rs builds it from the command line).
#[derive(Debug, Clone)]
pub struct Options {
    /// Every node over the network instead of this node's files.
    pub fleet: bool,
    pub format: Format,
    pub warn: Option<Duration>,
    pub crit: Option<Duration>,
    /// Prefix of the installed paths checked locally (default: [install] root).
    pub root: Option<PathBuf>,
    /// This node's name (default: the host name).
    pub node: Option<String>,
}

/// `vipcert check`: the report (this node's files, or every node with `fleet`) and its
/// rendering in `opts.format`, with the exit code.
pub async fn run(cfg: &Config, plan: &Plan, store: &Store, opts: &Options) -> Result<(String, u8)> {
    if let (Some(w), Some(c)) = (opts.warn, opts.crit) {
        anyhow::ensure!(
            c <= w,
            "--crit ({c:?}) must not be longer than --warn ({w:?})"
        );
    }
    let th = Thresholds {
        warn: opts.warn,
        crit: opts.crit,
    };
    let now = crate::store::now();
    let report = if opts.fleet {
        check_fleet(cfg, plan, store, th, now).await?
    } else {
        let node = cfg.this_node(opts.node.as_deref())?.clone();
        let root = opts
            .root
            .clone()
            .unwrap_or_else(|| cfg.install.root.clone());
        let (cfg2, plan2, store2) = (cfg.clone(), plan.clone(), store.clone());
        tokio::task::spawn_blocking(move || {
            check_local(&cfg2, &plan2, &store2, &node, &root, th, now)
        })
        .await??
    };
    let color = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none();
    let out = match opts.format {
        Format::Text => text(&report, color),
        Format::Json => json(&report),
        Format::Nagios => nagios(&report),
        Format::Prometheus => prometheus(&report, true),
    };
    Ok((out, exit_code(&report, opts.format)))
}
