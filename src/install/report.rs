//! What one `install` run did: per lineage (`LineageInstall`), the hook commands that ran and
//! those that failed (`HookFailure`), and the text people read (`InstallReport::summary`).
//!
//! Owns that data and its wording; `ok` is what callers turn into an exit status. It does not
//! install anything (`flow`).

use std::fmt::{self, Write as _};

use super::hooks::HookFailure;
use crate::plan::Target;
use crate::store::format_version;

/// What happened to one lineage on this node.
#[derive(Debug)]
pub(crate) enum LineageInstall {
    /// Targets already held this version with the right owner/group/mode.
    UpToDate { version: u32 },
    /// Files were written; `content` says whether bytes changed (else only owner/mode).
    Installed {
        version: u32,
        content: bool,
        completed_journal: Option<u32>,
    },
    /// `current` does not exist yet.
    NotIssued,
    /// Nothing was changed; the message names the file and the problem.
    Refused(String),
    /// Failed after some targets were already replaced: the journal stays, so the next run
    /// completes the install (or a fix of the named problem does).
    Partial {
        error: String,
        changed: Vec<String>,
        unchanged: Vec<String>,
    },
}

/// The result of one `install` run.
#[derive(Debug, Default)]
pub struct InstallReport {
    pub(crate) lineages: Vec<(String, LineageInstall)>,
    /// Hook commands that failed, with why.
    pub(crate) hook_failures: Vec<HookFailure>,
    /// Hook commands that ran (reload then deploy hooks), in order.
    pub(crate) hooks_run: usize,
}

impl InstallReport {
    /// No lineage was refused or half-installed and no hook failed.
    pub fn ok(&self) -> bool {
        self.hook_failures.is_empty()
            && !self.lineages.iter().any(|(_, o)| {
                matches!(
                    o,
                    LineageInstall::Refused(_) | LineageInstall::Partial { .. }
                )
            })
    }

    /// What happened per lineage, for the terminal.
    pub fn summary(&self, targets: &[Target]) -> String {
        let mut s = String::new();
        let paths: Vec<String> = targets
            .iter()
            .flat_map(|t| [t.cert.display().to_string(), t.key.display().to_string()])
            .collect();
        let paths = paths.join(", ");
        for (l, o) in &self.lineages {
            let _ = o.write_line(&mut s, l, &paths);
        }
        if self.hooks_run > 0 {
            let _ = writeln!(
                s,
                "ran {} reload/deploy hook command(s), {} failed",
                self.hooks_run,
                self.hook_failures.len()
            );
        }
        for f in &self.hook_failures {
            let _ = writeln!(s, "hook FAILED: {f}");
        }
        s
    }
}

impl LineageInstall {
    /// The summary line(s) of lineage `l`; `paths` lists every target path.
    fn write_line(&self, s: &mut impl fmt::Write, l: &str, paths: &str) -> fmt::Result {
        match self {
            LineageInstall::UpToDate { version } => {
                writeln!(s, "{l}: up to date (version {})", format_version(*version))
            }
            LineageInstall::Installed {
                version,
                content,
                completed_journal,
            } => {
                let what = if *content {
                    "installed"
                } else {
                    "fixed owner/mode of"
                };
                let j = match completed_journal {
                    Some(v) => format!(
                        " (completed an interrupted install of {})",
                        format_version(*v)
                    ),
                    None => String::new(),
                };
                let v = format_version(*version);
                writeln!(s, "{l}: {what} version {v} at {paths}{j}")
            }
            LineageInstall::NotIssued => writeln!(
                s,
                "{l}: not issued yet, nothing to install; run `vipcert issue` on one node (store/{l} has no current version)"
            ),
            LineageInstall::Refused(e) => {
                writeln!(s, "{l}: REFUSED, nothing was changed: {e}")
            }
            LineageInstall::Partial {
                error,
                changed,
                unchanged,
            } => writeln!(
                s,
                "{l}: FAILED part way: {error}\n  changed (new version): {}\n  NOT changed (old version): {}\n  the install journal stays: fix the problem and run `vipcert install` to complete it",
                changed.join(", "),
                if unchanged.is_empty() { "none".to_string() } else { unchanged.join(", ") }
            ),
        }
    }
}
