//! The result of one `check` run (`CheckReport`): which nodes it looked at (`CheckMode`), its
//! findings, the installed certificates' dates (for perfdata and metrics), the store summary,
//! each lineage's renewal `Schedule` (for the HTML page's timeline, by `renew`'s own rule),
//! and the `Format` it is rendered in.
//!
//! It does not decide (`policy`, `remote`; when a lineage renews: `renew`) nor render
//! (`output`, `html`).

use serde::{Deserialize, Serialize};

use super::finding::{Finding, Severity};
use super::local::Observation;
use super::policy::Thresholds;
use super::store_view::StoreView;

/// How `check` presents its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A table for a terminal.
    Text,
    /// A stable JSON document (docs/monitoring.md).
    Json,
    /// A Nagios/Icinga status line with perfdata.
    Nagios,
    /// node_exporter textfile-collector metrics.
    Prometheus,
    /// One self-contained HTML page: the lineage × node matrix, the findings, the renewal
    /// timelines (docs/monitoring.md).
    Html,
}

/// One installed certificate's dates, for perfdata and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Installed {
    pub(crate) node: String,
    pub(crate) lineage: String,
    pub(crate) path: String,
    pub(crate) sha256: String,
    pub(crate) serial: String,
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

/// Which nodes one `check` run looked at; `local` or `fleet` in the JSON document and the
/// text summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CheckMode {
    /// This node's installed files (`check`).
    Local,
    /// Every node through its status route and the TLS probes (`check --fleet`).
    Fleet,
}

impl CheckMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CheckMode::Local => "local",
            CheckMode::Fleet => "fleet",
        }
    }
}

impl std::fmt::Display for CheckMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one `check` run found, before it is rendered.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CheckReport {
    pub(crate) mode: CheckMode,
    pub(crate) checked_at: i64,
    pub(crate) findings: Vec<Finding>,
    pub(crate) certificates: Vec<Installed>,
    #[serde(skip)]
    pub(crate) thresholds: Thresholds,
    /// Fleet: did each node's status route answer.
    #[serde(skip)]
    pub(crate) nodes_up: Vec<(String, bool)>,
    /// Store current per lineage (number, notAfter).
    #[serde(skip)]
    pub(crate) store: Vec<(String, Option<(u32, i64)>)>,
    /// Per lineage, in the order of `store`: its renewal schedule (the html page's timeline).
    #[serde(skip)]
    pub(crate) schedules: Vec<Schedule>,
}

/// One lineage's renewal schedule as the store and its state say, for the html page: the
/// current version's validity, when `renew` renews it (its own rule), the backoff.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Schedule {
    pub(crate) lineage: String,
    /// Current version: (number, notBefore, notAfter).
    pub(crate) current: Option<(u32, i64, i64)>,
    /// When renew renews the current version (None: no current version).
    pub(crate) renews: Option<crate::schedule::RenewsAt>,
    /// The next attempt renew honours (a backoff, or the CA's Retry-After).
    pub(crate) next_attempt: Option<i64>,
    /// Failed renewals in a row.
    pub(crate) failures: u32,
    /// Every kept version's (number, SHA-256 of its leaf), to name the version a node holds.
    pub(crate) versions: Vec<(u32, String)>,
}

impl CheckReport {
    /// The findings that are not ok, worst first (report order within a severity).
    pub(crate) fn problems(&self) -> Vec<&Finding> {
        let mut p: Vec<&Finding> = self
            .findings
            .iter()
            .filter(|f| f.severity != Severity::Ok)
            .collect();
        p.sort_by_key(|f| std::cmp::Reverse(f.severity));
        p
    }

    pub(crate) fn status(&self) -> Severity {
        self.findings
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Ok)
    }
    pub(crate) fn count(&self, s: Severity) -> usize {
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

pub(super) fn new_report(mode: CheckMode, th: Thresholds, now: i64) -> CheckReport {
    CheckReport {
        mode,
        checked_at: now,
        findings: vec![],
        certificates: vec![],
        thresholds: th,
        nodes_up: vec![],
        store: vec![],
        schedules: vec![],
    }
}

/// The renewal schedule of `v.lineage` at `now` (see `Schedule`).
pub(super) fn schedule(v: &StoreView, now: i64) -> Schedule {
    let cur = v.current();
    let state = v.state.as_ref().ok();
    let leaf = cur.map(|c| &c.leaf);
    Schedule {
        lineage: v.lineage.clone(),
        current: cur.map(|c| (c.number, c.leaf.not_before, c.leaf.not_after)),
        renews: leaf
            .zip(state)
            .map(|(l, st)| crate::schedule::renews_at(l, st)),
        next_attempt: state
            .and_then(|st| crate::schedule::backoff_until(now, leaf.map(|l| l.not_after), st)),
        failures: state.map_or(0, |st| st.failures),
        versions: cur
            .into_iter()
            .chain(&v.others)
            .map(|x| (x.number, x.leaf.sha256.clone()))
            .collect(),
    }
}

pub(super) fn store_summary(v: &StoreView) -> (String, Option<(u32, i64)>) {
    (
        v.lineage.clone(),
        v.current().map(|c| (c.number, c.leaf.not_after)),
    )
}
