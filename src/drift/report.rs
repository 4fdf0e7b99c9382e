//! The result of one `check` run: its findings, the installed certificates' dates (for
//! perfdata and metrics), the store summary, and the `Format` it is rendered in.
//!
//! It does not decide (`policy`, `remote`) nor render (`output`).

use serde::{Deserialize, Serialize};

use super::finding::{Finding, Severity};
use super::local::Observation;
use super::policy::Thresholds;
use super::store_view::StoreView;

/// How `check` presents its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Nagios,
    Prometheus,
}

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
