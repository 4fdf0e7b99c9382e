//! The issuing pipeline: the issue flow (`issue::run`) → each failed lineage's attempt
//! recorded (`attempts`: counted, backed off, `[notify] on_failure` told) → this node's
//! install (`install::run`) → `[renew] metrics_file` written (`textfile`). `vipcert issue`,
//! `renew` and `revoke --reissue` all go this way. A dry run (`dry_run`, for `issue --dry-run`
//! and `renew --dry-run`) is the issue flow alone, at the staging CA, in
//! `issue::Mode::DryRun`: no record, no install, no hook, no textfile.
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
use crate::issue::{IssueOptions, IssueOutcome, LineageResult, Mode};
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
/// what is current on this node (every other node's `serve --watch` does too), and leave the
/// run's textfile (`[renew] metrics_file`) — also when the flow stopped. `Err` only when the
/// issue flow stopped before ordering and `opts.when_stopped` says to return it.
pub async fn run(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    opts: &PipelineOptions,
) -> Result<PipelineReport> {
    let issued = match &opts.issue {
        Some(io) => match issue(cfg, plan, store, io, opts.when_stopped).await {
            Ok(o) => Some(o),
            Err(e) => {
                crate::textfile::after_run(cfg, plan, store, crate::store::now(), false);
                return Err(e);
            }
        },
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
    let report = PipelineReport {
        node: opts.node.clone(),
        issued,
        recorded,
        install: crate::install::run(cfg, plan, store, &opts.node, &opts.root),
        targets: crate::plan::targets(cfg, &opts.root),
    };
    crate::textfile::after_run(cfg, plan, store, crate::store::now(), report.ok());
    Ok(report)
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

/// What a dry run did: the issue flow's outcome at the staging CA.
pub struct DryRunReport {
    /// The staging CA's directory.
    pub staging_directory: String,
    /// Its account file (created by the first dry run), apart from every real account.
    pub account_file: PathBuf,
    /// Renew's words: every lineage ordered "as if due".
    pub as_renew: bool,
    /// The issue flow's outcome, every lineage asked.
    pub issued: IssueOutcome,
}

impl DryRunReport {
    /// Every lineage was issued and verified (another node holding the lease means nothing
    /// was tried: not a success).
    pub fn ok(&self) -> bool {
        matches!(self.issued, IssueOutcome::Done(_)) && self.issued.ok()
    }
}

impl fmt::Display for DryRunReport {
    /// A first line saying what the dry run does, a line per lineage ("<lineage>: dry run: …"
    /// or "<lineage>: dry run FAILED: …") and a last line starting "dry run: " or "dry run
    /// FAILED".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.as_renew {
            "as if every lineage were due, ordering each"
        } else {
            "ordering every lineage"
        };
        writeln!(
            f,
            "dry run: {what} at the staging CA {} (account {})",
            self.staging_directory,
            self.account_file.display()
        )?;
        match &self.issued {
            IssueOutcome::InProgress(h) => writeln!(
                f,
                "dry run FAILED: nothing tried: the issuer lease is held by {} (pid {}); try again when its run is over",
                crate::escape::escape(&h.node),
                h.pid
            ),
            IssueOutcome::Done(results) => dry_run_lines(f, results),
        }
    }
}

/// A dry run's line per lineage, then its last line.
fn dry_run_lines(f: &mut fmt::Formatter<'_>, results: &[(String, LineageResult)]) -> fmt::Result {
    let (mut good, mut failed) = (0, 0);
    for (l, r) in results {
        match r {
            LineageResult::Verified { serial, not_after } => {
                good += 1;
                writeln!(
                    f,
                    "{l}: {}",
                    crate::issue::verified_words(serial, *not_after)
                )?
            }
            LineageResult::Failed(e) => {
                failed += 1;
                writeln!(f, "{l}: dry run FAILED: {e:#}")?
            }
            // Not met (a dry run orders every lineage and publishes nothing); said anyway.
            LineageResult::Published { .. } | LineageResult::Skipped { .. } => {
                writeln!(f, "{l}: dry run: not ordered")?
            }
        }
    }
    let n = results.len();
    let nothing = "nothing was published, installed, recorded or hooked";
    if failed == 0 {
        writeln!(
            f,
            "dry run: {good} of {n} lineage(s) issued and verified; {nothing}"
        )
    } else {
        writeln!(
            f,
            "dry run FAILED for {failed} of {n} lineage(s); {nothing}"
        )
    }
}

/// A dry run for `node`: every lineage ordered at the staging CA (`Config::staging`) with its
/// own account, under the issuer lease, through preflight and real validation, verified, then
/// discarded; nothing recorded, installed or hooked. `as_renew`: worded for `renew --dry-run`.
/// An error when no staging CA is configured, its roots cannot be read, or the run stopped
/// before ordering (the lease file cannot be taken): said, never recorded.
pub async fn dry_run(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    node: &str,
    as_renew: bool,
) -> Result<DryRunReport> {
    use anyhow::Context as _;
    let staging = cfg.staging()?;
    if let Some(roots) = &staging.acme.ca_roots {
        crate::verify::Anchors::load_as(Some(roots), "acme.staging_ca_roots")?;
    }
    let opts = IssueOptions {
        force: true,
        node: node.to_string(),
        only: None,
        if_current: None,
        mode: Mode::DryRun,
    };
    let issued = crate::issue::run(&staging, plan, store, &opts)
        .await
        .context("dry run")?;
    Ok(DryRunReport {
        staging_directory: staging.acme.directory.clone(),
        account_file: store.account_path(&staging.acme.account_dir()),
        as_renew,
        issued,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dry run's words, which operators and scripts read: a first line, "dry run" on every
    /// lineage's line, a last line; it is ok only when every lineage was issued and verified
    /// (a lease held elsewhere means nothing was tried).
    #[test]
    fn a_dry_run_says_dry_run_on_every_line() {
        const T: i64 = 1_800_000_000; // 2027-01-15T08:00:00Z
        let report = |issued| DryRunReport {
            staging_directory: "https://staging.example.org/dir".into(),
            account_file: "/srv/vipcert/accounts/staging/staging.example.org/account.json".into(),
            as_renew: true,
            issued,
        };
        let verified = || LineageResult::Verified {
            serial: "0a".into(),
            not_after: T,
        };
        let ok = report(IssueOutcome::Done(vec![("a".into(), verified())]));
        assert!(ok.ok());
        assert_eq!(
            ok.to_string(),
            "dry run: as if every lineage were due, ordering each at the staging CA https://staging.example.org/dir (account /srv/vipcert/accounts/staging/staging.example.org/account.json)\n\
             a: dry run: issued by the staging CA and verified (serial 0a, valid until 2027-01-15T08:00:00Z), then discarded\n\
             dry run: 1 of 1 lineage(s) issued and verified; nothing was published, installed, recorded or hooked\n"
        );
        let failed = LineageResult::Failed(std::sync::Arc::new(anyhow::anyhow!("boom")));
        let bad = report(IssueOutcome::Done(vec![
            ("a".into(), verified()),
            ("b".into(), failed),
        ]));
        assert!(!bad.ok());
        let text = bad.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[2], "b: dry run FAILED: boom");
        assert_eq!(
            lines[3],
            "dry run FAILED for 1 of 2 lineage(s); nothing was published, installed, recorded or hooked"
        );
        let holder: crate::lease::Holder = serde_json::from_str(
            r#"{"node":"dtn2.example.org","host":"dtn2","pid":7,"expires_at":0,"token":"t"}"#,
        )
        .unwrap();
        let held = report(IssueOutcome::InProgress(holder));
        assert!(!held.ok());
        assert!(held
            .to_string()
            .ends_with("dry run FAILED: nothing tried: the issuer lease is held by dtn2.example.org (pid 7); try again when its run is over\n"));
    }
}
