//! The journal step: the intent journal (`.vipcert-install.journal`, in the directory of the
//! first target's certificate) is written before a lineage's new bytes land and removed only
//! after its hooks ran, so a run killed in between is completed, files and hooks, by the next
//! one.
//!
//! Owns the journal's format, the per-host installer lock (flock on that local directory,
//! held from the journal read to the journal removal) and a killed run's temporary journal.
//! It does not decide whether the targets need writing (`place`) nor run hooks (`hooks`).

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::failpoint::step;
use super::pair::Pair;
use super::slots::{split, sweep_temps, target_dir};
use crate::cert;
use crate::plan::Target;
use crate::safefs::{Dir, ReadError};
use crate::store::now;

/// The intent journal, in the directory of the first target's certificate.
pub(crate) const JOURNAL: &str = ".vipcert-install.journal";

/// What the journal records: which pair is being put in place.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Journal {
    pub(crate) lineage: String,
    pub(crate) version: u32,
    pub(crate) cert_sha256: String,
    pub(crate) key_sha256: String,
    pub(crate) started_at: i64,
    pub(crate) pid: u32,
}

/// The journal's directory, locked for this installer while the value lives.
pub(super) struct JournalDir {
    dir: Dir,
    /// The journal an interrupted run left, if any: this run completes that install.
    pub(super) pending: Option<Journal>,
}

impl JournalDir {
    /// Open the directory of `first`'s certificate below `root`, take the installer lock and
    /// read the journal an interrupted install of `lineage` left there.
    pub(super) fn lock(root: &Path, first: &Target, lineage: &str) -> Result<JournalDir> {
        let (path, _) = split(&first.cert)?;
        let dir = target_dir(root, path)?;
        // Serialise installers on this host (`serve --watch`, `renew`, a manual run): flock is
        // a local lock on the local target directory, never on the shared one.
        rustix::fs::flock(dir.as_fd(), rustix::fs::FlockOperation::LockExclusive)
            .with_context(|| format!("cannot lock {}", path.display()))?;
        // A run killed while writing the journal leaves its temporary file; nobody else writes
        // here while we hold the lock.
        sweep_temps(&dir, path, JOURNAL)?;
        let pending = match dir.read(JOURNAL, 64 * 1024) {
            // An unreadable journal still says an install was interrupted: complete it.
            Ok(b) => Some(serde_json::from_slice(&b).unwrap_or(Journal {
                lineage: lineage.to_string(),
                version: 0,
                cert_sha256: String::new(),
                key_sha256: String::new(),
                started_at: 0,
                pid: 0,
            })),
            Err(ReadError::NotFound) => None,
            Err(e) => bail!("{}/{JOURNAL}: {e}", path.display()),
        };
        Ok(JournalDir { dir, pending })
    }

    /// Record that `pair` is being put in place, before its first byte lands.
    pub(super) fn write_intent(&self, pair: &Pair) -> Result<()> {
        let j = Journal {
            lineage: pair.lineage.clone(),
            version: pair.version,
            cert_sha256: cert::sha256_hex(&pair.cert),
            key_sha256: cert::sha256_hex(&pair.key),
            started_at: now(),
            pid: std::process::id(),
        };
        self.dir
            .replace(JOURNAL, &serde_json::to_vec_pretty(&j)?, 0o600)
            .context("cannot write the install journal")?;
        step("journal written");
        Ok(())
    }

    /// Forget the journal: the pair is in place and its hooks ran (or failed and were
    /// reported: retrying a broken reload on every `serve --watch` poll would not fix it).
    pub(super) fn remove(&self) -> Result<()> {
        self.dir
            .remove(JOURNAL)
            .and_then(|_| self.dir.sync())
            .context("cannot remove the install journal")?;
        step("journal removed");
        Ok(())
    }
}
