//! The install flow of one node: each of the node's lineages goes through verify (`pair`) →
//! journal (`journal`) → place (`slots`, `place`); then, once, the hooks (`hooks`) for the
//! lineages whose targets changed, and their journals are removed.
//!
//! Owns the order of those steps and what a failure of each means for the report: refused
//! (nothing was changed) or partial (some targets were replaced; the journal stays so the next
//! run completes the install). It does not decide which version is current (`store`, `renew`,
//! `rollback`) nor when to install (`watch`, `renew`, `issue`).

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::journal::JournalDir;
use super::pair::{verified_pair, Pair};
use super::report::{InstallReport, LineageInstall};
use super::{hooks, owners, place, slots};
use crate::config::{Config, InstallMode};
use crate::plan::{Lineage, Plan, Target};
use crate::store::Store;

/// Where this run installs: the targets under the install root, their owners, the mode.
struct Dest<'a> {
    root: &'a Path,
    targets: &'a [Target],
    /// (uid, gid) of each target.
    ids: &'a [(u32, u32)],
    mode: InstallMode,
}

/// A lineage whose files changed: hooks still to run, its journal (and the installer lock)
/// held until they did.
struct Changed {
    pair: Pair,
    journal: JournalDir,
}

/// Install every lineage of `node` under `root` (the targets of `plan::targets(cfg, root)`).
/// Per-lineage refusals are in the report; `Err` only for problems that stop everything
/// (cannot open the store, cannot resolve owners).
pub fn run(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    node: &str,
    root: &Path,
) -> Result<InstallReport> {
    // An unmounted share reads as "not issued yet" otherwise: say so instead.
    store.require_root()?;
    let targets = crate::plan::targets(cfg, root);
    // Resolve owners before any write: a typo in a user name must not leave a half-done run.
    let ids = owners::resolve(&targets)?;
    let to = Dest {
        root,
        targets: &targets,
        ids: &ids,
        mode: cfg.install.mode,
    };
    let mut report = InstallReport::default();
    let mut changed: Vec<Changed> = Vec::new();
    for l in plan.for_node(node) {
        let (outcome, ch) = install_lineage(cfg, store, &to, l);
        report.lineages.push((l.name.clone(), outcome));
        changed.extend(ch);
    }
    if changed.is_empty() {
        return Ok(report);
    }
    // Every changed pair is in place and verified: reload services once, then one deploy hook
    // run per changed lineage, then forget the journals.
    let pairs: Vec<&Pair> = changed.iter().map(|c| &c.pair).collect();
    let ran = hooks::run(&cfg.install, node, &targets[0], &pairs);
    report.hooks_run = ran.count;
    report.hook_failures = ran.failures;
    for c in &changed {
        // A failed hook is reported, not retried by the next run: retrying a broken reload on
        // every `serve --watch` poll would not fix it.
        c.journal.remove()?;
    }
    Ok(report)
}

/// One lineage through verify → journal → place: what happened to it, and, when its targets
/// changed, what the hooks step needs.
fn install_lineage(
    cfg: &Config,
    store: &Store,
    to: &Dest,
    l: &Lineage,
) -> (LineageInstall, Option<Changed>) {
    let pair = match verified_pair(cfg, store, l) {
        Ok(Some(p)) => p,
        Ok(None) => return (LineageInstall::NotIssued, None),
        Err(e) => return (LineageInstall::Refused(format!("{e:#}")), None),
    };
    let mut done = Vec::new();
    match journal_and_place(to, l, &pair, &mut done) {
        Ok((outcome, journal)) => (outcome, journal.map(|journal| Changed { pair, journal })),
        Err(e) if done.is_empty() => (LineageInstall::Refused(format!("{e:#}")), None),
        Err(e) => (partial(&e, &done, to.targets), None),
    }
}

/// The journal and place steps for a verified pair. `changed` collects each target path as it
/// is replaced. The journal directory comes back (still locked) when the hooks must run: new
/// bytes landed, or an interrupted install was completed.
fn journal_and_place(
    to: &Dest,
    l: &Lineage,
    pair: &Pair,
    changed: &mut Vec<PathBuf>,
) -> Result<(LineageInstall, Option<JournalDir>)> {
    let journal = JournalDir::lock(to.root, &to.targets[0], &l.name)?;
    let slots = slots::open(to.root, pair, to.targets, to.ids, to.mode)?;
    let survey = place::survey(&slots, l, pair.version, to.mode)?;
    let pending = journal.pending.as_ref().map(|j| j.version);
    if survey.same() && pending.is_none() {
        let version = pair.version;
        return Ok((LineageInstall::UpToDate { version }, None));
    }
    if let Some(j) = &journal.pending {
        tracing::warn!(lineage = %l.name, version = j.version, pid = j.pid, "completing an interrupted install");
    }
    if survey.content {
        journal.write_intent(pair)?;
    }
    place::put(&slots, &survey, l, pair.version, to.mode, changed)?;
    place::check_placed(&slots)?;
    let hooks = survey.content || pending.is_some();
    let outcome = LineageInstall::Installed {
        version: pair.version,
        content: survey.content,
        completed_journal: pending,
    };
    Ok((outcome, hooks.then_some(journal)))
}

/// A lineage that failed after the targets in `done` were replaced.
fn partial(e: &anyhow::Error, done: &[PathBuf], targets: &[Target]) -> LineageInstall {
    let all = targets.iter().flat_map(|t| [&t.cert, &t.key]);
    LineageInstall::Partial {
        error: format!("{e:#}"),
        unchanged: all
            .filter(|p| !done.contains(p))
            .map(|p| p.display().to_string())
            .collect(),
        changed: done.iter().map(|p| p.display().to_string()).collect(),
    }
}
