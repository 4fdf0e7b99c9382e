//! The place step: compare the opened targets (`slots`) with the verified pair, put the pair
//! in place, and read back what readers now see. Files mode stages every temporary file (final
//! mode and owner, fsynced) and then renames them in back to back, cert before key, so a
//! target never holds a partial file and a symlink planted at a target is replaced, never
//! written through; links mode switches each directory's version link (`links`).
//!
//! Owns the rename order and the list of paths changed so far (for an honest message when a
//! run fails part way). It does not open or check the targets (`slots`), write the journal
//! (`journal`) nor run hooks (`hooks`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::failpoint::step;
use super::slots::{Slot, Want};
use crate::cert::MAX_PEM_BYTES;
use crate::config::InstallMode;
use crate::plan::Lineage;
use crate::safefs::{Dir, FileState};

/// How the targets differ from the pair.
pub(super) struct Survey {
    /// Bytes differ somewhere (or, in links mode, anything differs): a new version lands.
    pub(super) content: bool,
    /// Only owner, group or mode differ somewhere (files mode).
    pub(super) meta: bool,
    /// Files mode: the state of each file of `Slot::files`, slot by slot.
    states: Vec<FileState>,
}

impl Survey {
    /// The targets already hold the pair with the right owner, group and mode.
    pub(super) fn same(&self) -> bool {
        !self.content && !self.meta
    }
}

/// Compare every slot with what should be there, changing nothing.
pub(super) fn survey(
    slots: &[Slot],
    l: &Lineage,
    version: u32,
    mode: InstallMode,
) -> Result<Survey> {
    match mode {
        InstallMode::Files => {
            let mut states = Vec::new();
            for s in slots {
                for (name, w) in s.files() {
                    states.push(file_state(&s.dir, name, w)?);
                }
            }
            let content = states.contains(&FileState::Content);
            let meta = states.contains(&FileState::Meta);
            Ok(Survey {
                content,
                meta,
                states,
            })
        }
        InstallMode::Links => {
            let mut stale = false;
            for s in slots {
                stale |= !s.link_pair(l, version).up_to_date(&s.dir)?;
            }
            // A new version directory is content; owner/mode alone also makes a new one, so
            // links mode does not tell the two apart: any change runs the hooks.
            Ok(Survey {
                content: stale,
                meta: false,
                states: Vec::new(),
            })
        }
    }
}

fn file_state(dir: &Dir, name: &str, w: &Want) -> Result<FileState> {
    dir.state_of(name, w.data, (w.uid, w.gid, w.mode), MAX_PEM_BYTES)
        .with_context(|| format!("cannot read {}", w.path.display()))
}

/// Put `l`'s `version` at every slot that `survey` found different. `changed` collects each
/// target path as it is replaced.
pub(super) fn put(
    slots: &[Slot],
    survey: &Survey,
    l: &Lineage,
    version: u32,
    mode: InstallMode,
    changed: &mut Vec<PathBuf>,
) -> Result<()> {
    match mode {
        InstallMode::Files => put_files(slots, &survey.states, changed),
        InstallMode::Links => {
            for s in slots {
                let lp = s.link_pair(l, version);
                if !lp.up_to_date(&s.dir)? {
                    lp.put(&s.dir, &step).with_context(|| {
                        format!("cannot switch {} to the new version", s.cert.path.display())
                    })?;
                    changed.extend([s.cert.path.clone(), s.key.path.clone()]);
                }
            }
            Ok(())
        }
    }
}

/// Read back what is at the targets now: each pair must be the bytes we meant. Those are the
/// bytes `verified_version` passed through the policy, so equal bytes are verified.
pub(super) fn check_placed(slots: &[Slot]) -> Result<()> {
    for s in slots {
        for (name, w) in s.files() {
            let b = s.read_back(name, &w.path)?;
            if b != w.data {
                bail!("{} changed under us while installing", w.path.display());
            }
        }
    }
    step("verified");
    Ok(())
}

/// Write-temp with final mode and owner, fsynced; returns the temp name. Counted as steps.
fn stage(dir: &Dir, name: &str, w: &Want) -> Result<String> {
    let tmp = crate::safefs::temp_name(name);
    let p = w.path.display();
    dir.create_new(&tmp, w.data, w.mode)
        .with_context(|| format!("cannot write a temporary file next to {p}"))?;
    step("temp written");
    if let Err(e) = dir.chown(&tmp, w.uid, w.gid) {
        let _ = dir.remove(&tmp);
        return Err(e).with_context(|| format!("cannot chown the new {p} to {}:{}", w.uid, w.gid));
    }
    step("temp chowned");
    Ok(tmp)
}

/// Files mode: stage every temporary (final mode and owner, fsynced) first, then rename them
/// in back to back, each target's cert then its key. Cert first because readers (GSI, XRootD)
/// open the cert and then the key: with cert-then-key renames a reader sees a mismatch only
/// if BOTH its opens fall between the two renames (a few microseconds); key-then-cert would
/// mismatch any reader whose cert open precedes the first rename and whose key open follows it.
/// `changed` collects each path as its rename lands, for an honest message on failure.
fn put_files(slots: &[Slot], states: &[FileState], changed: &mut Vec<PathBuf>) -> Result<()> {
    let mut staged: Vec<(&Dir, String, &str, &Want)> = Vec::new();
    let todo = slots
        .iter()
        .flat_map(|s| s.files().map(move |(n, w)| (&s.dir, n, w)))
        .zip(states)
        .filter(|(_, st)| **st != FileState::Same);
    for ((d, name, w), _) in todo {
        match stage(d, name, w) {
            Ok(tmp) => staged.push((d, tmp, name, w)),
            Err(e) => {
                for (d, tmp, _, _) in &staged {
                    let _ = d.remove(tmp);
                }
                return Err(e);
            }
        }
    }
    let mut rest = staged.iter();
    while let Some((d, tmp, name, w)) = rest.next() {
        if let Err(e) = d.rename(tmp, name) {
            let _ = d.remove(tmp);
            for (d, tmp, _, _) in rest {
                let _ = d.remove(tmp);
            }
            return Err(e)
                .with_context(|| format!("cannot rename the new file onto {}", w.path.display()));
        }
        changed.push(w.path.clone());
        step("renamed");
    }
    for s in slots {
        s.dir
            .sync()
            .with_context(|| format!("cannot fsync {}", s.dir_path.display()))?;
        step("dir synced");
    }
    Ok(())
}
