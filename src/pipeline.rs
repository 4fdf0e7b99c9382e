//! The issuing pipeline: the issue flow (`issue::run`) → each failed lineage's attempt
//! recorded (`attempts`: counted, backed off, `[notify] on_failure` told) → this node's
//! install (`install::run`). `vipcert issue`, `renew` and `revoke --reissue` all go this way.
//!
//! Owns the order of those three steps and what a run that stops before ordering means for
//! each caller (`WhenStopped`), and returns what each step did as data (`PipelineReport`). It
//! does not decide what to order (`renew`, or the operator), nor word the renewal's report
//! (`renew::RenewReport`).

use std::fmt;
use std::path::PathBuf;

use anyhow::Result;

use crate::attempts::FailureRecord;
use crate::config::Config;
use crate::install::InstallReport;
use crate::issue::{IssueOptions, IssueOutcome, LineageResult};
use crate::plan::{Plan, Target};
use crate::store::Store;

/// What a run that stops before any order (the lease file cannot be taken, the store cannot
/// be read) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenStopped {
    /// Return the error: the operator at the terminal reads it (`issue`, `revoke --reissue`);
    /// nothing is recorded or installed.
    Return,
    /// Count it as the failure of every lineage asked for and go on (`renew`, run by a timer):
    /// the hook hears of it, and this node still installs what is current.
    FailEach,
}

/// What the pipeline is asked.
pub struct PipelineOptions {
    /// What to order; None when nothing is to be ordered (install only).
    pub issue: Option<IssueOptions>,
    /// What a run that stops before ordering does.
    pub when_stopped: WhenStopped,
    /// This node's hostname: who installs and who recorded the failures (the same as
    /// `issue.node`).
    pub node: String,
    /// Prefix for install paths.
    pub root: PathBuf,
}

/// What each step of the pipeline did.
pub struct PipelineReport {
    /// The node that installed.
    pub node: String,
    /// The issue flow's outcome; None when nothing was to be ordered.
    pub issued: Option<IssueOutcome>,
    /// The record of each lineage that failed, in the outcome's order.
    pub recorded: Vec<(String, FailureRecord)>,
    /// This node's install, or why it could not run.
    pub install: Result<InstallReport>,
    /// The install targets under the install root (named in the install's summary).
    pub targets: Vec<Target>,
}

impl PipelineReport {
    /// The record of lineage `l`'s failure, if it failed.
    pub fn record_of(&self, l: &str) -> Option<&FailureRecord> {
        self.recorded.iter().find(|(n, _)| n == l).map(|(_, r)| r)
    }

    /// Nothing failed, the install included (an install that could not run is not ok).
    pub fn ok(&self) -> bool {
        self.issued.as_ref().is_none_or(IssueOutcome::ok)
            && self.install.as_ref().is_ok_and(InstallReport::ok)
    }

    /// Whether nothing failed; the install's error, if it could not run, as the command's
    /// error (`issue` and `revoke --reissue` print the rest first).
    pub fn into_ok(self) -> Result<bool> {
        // The install's error even when an order failed too: it is said either way.
        let installed = self.install?.ok();
        Ok(self.issued.as_ref().is_none_or(IssueOutcome::ok) && installed)
    }
}

impl fmt::Display for PipelineReport {
    /// As `issue` says it: the outcome per lineage, each failure's record, the install's
    /// summary (an install that could not run is the command's error, not a line).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(o) = &self.issued {
            write!(f, "{o}")?;
        }
        for (l, r) in &self.recorded {
            writeln!(f, "{l}: {r}")?;
        }
        if let Ok(rep) = &self.install {
            write!(f, "{}", rep.summary(&self.targets))?;
        }
        Ok(())
    }
}

/// Issue what `opts.issue` asks (if anything), record each lineage that failed, then install
/// what is current on this node (every other node's `serve --watch` does too). `Err` only
/// when the issue flow stopped before ordering and `opts.when_stopped` says to return it.
pub async fn run(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    opts: &PipelineOptions,
) -> Result<PipelineReport> {
    let issued = match &opts.issue {
        Some(io) => Some(issue(cfg, plan, store, io, opts.when_stopped).await?),
        None => None,
    };
    let mut recorded = Vec::new();
    if let Some(IssueOutcome::Done(results)) = &issued {
        for (l, r) in results {
            if let LineageResult::Failed(e) = r {
                let rec =
                    crate::attempts::record_and_notify(cfg, plan, store, &opts.node, l, e).await;
                recorded.push((l.clone(), rec));
            }
        }
    }
    Ok(PipelineReport {
        node: opts.node.clone(),
        issued,
        recorded,
        install: crate::install::run(cfg, plan, store, &opts.node, &opts.root),
        targets: crate::plan::targets(cfg, &opts.root),
    })
}

/// The issue flow's outcome; a run that stopped is returned or made every asked lineage's
/// failure, as `when` says.
async fn issue(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    opts: &IssueOptions,
    when: WhenStopped,
) -> Result<IssueOutcome> {
    match crate::issue::run(cfg, plan, store, opts).await {
        Ok(o) => Ok(o),
        Err(e) if when == WhenStopped::Return => Err(e),
        Err(e) => {
            let names: Vec<String> = match &opts.only {
                Some(only) => only.iter().map(|(n, _)| n.clone()).collect(),
                None => plan.lineages.iter().map(|l| l.name.clone()).collect(),
            };
            Ok(IssueOutcome::Done(crate::issue::all_failed(names, e)))
        }
    }
}
