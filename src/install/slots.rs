//! The install targets of one lineage opened for writing: each target's directory reached
//! from the install root without following a symlink (`safefs::Dir::open_beneath`), the entry
//! names, and the bytes, owner and mode that should be there (a `Slot` per directory).
//!
//! Owns what is checked before any write: no symlink anywhere on a target's path, every entry
//! replaceable (missing, a file or a symlink; never a directory or a device), a killed run's
//! temporary files swept, and links mode's one-pair-per-directory rules; and reading back what
//! a reader sees at a target. It does not write the targets (`place`, `links`).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::failpoint::step;
use super::links::{self, LinkPair};
use super::pair::Pair;
use crate::cert::MAX_PEM_BYTES;
use crate::config::InstallMode;
use crate::plan::{Lineage, Target};
use crate::safefs::Dir;

/// One file to put in place.
pub(super) struct Want<'a> {
    pub(super) path: PathBuf,
    pub(super) data: &'a [u8],
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
}

/// One install target of a lineage: its directory (opened without following links), the two
/// entry names, and what should be there. In files mode a target whose key lives in another
/// directory is two slots, one per directory, each with one name left empty.
pub(super) struct Slot<'a> {
    pub(super) dir: Dir,
    pub(super) dir_path: PathBuf,
    cert_name: String,
    key_name: String,
    pub(super) cert: Want<'a>,
    pub(super) key: Want<'a>,
}

/// The directory and file name of a target path.
pub(super) fn split(path: &Path) -> Result<(&Path, String)> {
    match crate::safefs::split_path(path) {
        Some((d, f)) => Ok((d, f.to_string())),
        None => bail!("{} is not a file path", path.display()),
    }
}

/// Open a target's directory below the install root, creating missing directories (0755).
/// Every component below `root` is opened with O_NOFOLLOW: a symlink anywhere on the path
/// (`<root>/etc`, `<root>/etc/grid-security`, ...) is refused and named, never followed.
pub(super) fn target_dir(root: &Path, dir: &Path) -> Result<Dir> {
    let rel = dir.strip_prefix(root).with_context(|| {
        format!(
            "install path {} is not below the install root {}",
            dir.display(),
            root.display()
        )
    })?;
    // The root itself is the operator's (or a test's) choice and opened by path; a fresh
    // --root is created like the directories below it.
    if std::fs::symlink_metadata(root).is_err() {
        Dir::create_all(root, 0o755)
            .with_context(|| format!("cannot create install root {}", root.display()))?;
    }
    Dir::open_beneath(root, rel, Some(0o755))
        .with_context(|| format!("cannot open install directory {}", dir.display()))
}

/// A target entry must be missing, a regular file or a symlink (replaced, never followed):
/// anything else (a directory, a device) is refused before any write, naming the path.
fn check_replaceable(dir: &Dir, name: &str, path: &Path) -> Result<()> {
    use rustix::fs::FileType;
    match dir.stat(name) {
        Ok(st) => match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile | FileType::Symlink => Ok(()),
            t => bail!(
                "{} is a {}, not a file: vipcert replaces only files (or symlinks) at install targets; remove it or fix the path in [install]",
                path.display(),
                if t == FileType::Directory { "directory" } else { "special file" }
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot stat {}", path.display())),
    }
}

/// Remove temporary files an interrupted run left next to `name`. A directory with such a
/// name is not ours to delete recursively: it is named so the operator can remove it.
pub(super) fn sweep_temps(dir: &Dir, dir_path: &Path, name: &str) -> Result<()> {
    let prefix = format!(".{name}.tmp.");
    for f in dir.list()? {
        if f.starts_with(&prefix) {
            let st = dir.stat(&f)?;
            if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory {
                bail!(
                    "{} is a directory named like vipcert's temporary files; remove it (vipcert does not delete directories it did not create)",
                    dir_path.join(&f).display()
                );
            }
            dir.remove(&f)
                .with_context(|| format!("cannot remove {}", dir_path.join(&f).display()))?;
            step("stale temp removed");
        }
    }
    Ok(())
}

/// Open and check every target of `pair` before anything is written: ancestors are no-follow
/// walked, stale temporaries swept, entries that cannot be replaced refused.
pub(super) fn open<'p>(
    root: &Path,
    pair: &'p Pair,
    targets: &[Target],
    ids: &[(u32, u32)],
    mode: InstallMode,
) -> Result<Vec<Slot<'p>>> {
    let mut out: Vec<Slot> = Vec::new();
    for (t, &ids) in targets.iter().zip(ids) {
        if mode == InstallMode::Links {
            check_links_target(t, &out)?;
        }
        open_target(root, pair, t, ids, &mut out)?;
    }
    Ok(out)
}

/// Links mode switches a whole directory: a target's cert and key share one directory, and
/// no directory (already in `opened`) holds two targets.
fn check_links_target(t: &Target, opened: &[Slot]) -> Result<()> {
    let (cd, _) = split(&t.cert)?;
    let (kd, _) = split(&t.key)?;
    if cd != kd {
        bail!(
            "install mode \"links\" needs the cert and key of a target in one directory: {} and {} are not",
            t.cert.display(),
            t.key.display()
        );
    }
    if opened.iter().any(|s| s.dir_path == cd) {
        bail!(
            "install mode \"links\" needs one target per directory: {} holds two",
            cd.display()
        );
    }
    Ok(())
}

/// Open target `t` (owned by `uid`:`gid`), check its entries, and add its slot(s) to `out`.
fn open_target<'p>(
    root: &Path,
    pair: &'p Pair,
    t: &Target,
    (uid, gid): (u32, u32),
    out: &mut Vec<Slot<'p>>,
) -> Result<()> {
    let (cd, cert_name) = split(&t.cert)?;
    let (kd, key_name) = split(&t.key)?;
    let dir = target_dir(root, cd)?;
    // The key may live in another directory in files mode; open it the same way.
    let key_dir = if cd == kd {
        None
    } else {
        Some(target_dir(root, kd)?)
    };
    for (d, dp, name, path) in [
        (&dir, cd, &cert_name, &t.cert),
        (key_dir.as_ref().unwrap_or(&dir), kd, &key_name, &t.key),
    ] {
        // Before deciding whether anything changed, so a killed run's temporary files go
        // even when the targets turn out up to date.
        sweep_temps(d, dp, name)?;
        check_replaceable(d, name, path)?;
    }
    let want = |path: &Path, data: &'p [u8], mode: u32| Want {
        path: path.to_path_buf(),
        data,
        mode,
        uid,
        gid,
    };
    let (cert, key) = (
        want(&t.cert, &pair.cert, t.cert_mode),
        want(&t.key, &pair.key, t.key_mode),
    );
    match key_dir {
        None => out.push(Slot::new(dir, cd, (cert_name, cert), (key_name, key))),
        Some(kdir) => {
            // Files mode with the key elsewhere: a slot per directory keeps the code one shape.
            let (no_cert, no_key) = (want(&t.cert, &[], 0), want(&t.key, &[], 0));
            out.push(Slot::new(
                dir,
                cd,
                (cert_name, cert),
                (String::new(), no_key),
            ));
            out.push(Slot::new(
                kdir,
                kd,
                (String::new(), no_cert),
                (key_name, key),
            ));
        }
    }
    Ok(())
}

impl<'a> Slot<'a> {
    /// A slot in `dir` (at `dir_path`) putting the (name, want) pairs `cert` and `key`; an
    /// empty name puts nothing.
    fn new(dir: Dir, dir_path: &Path, cert: (String, Want<'a>), key: (String, Want<'a>)) -> Self {
        Slot {
            dir,
            dir_path: dir_path.to_path_buf(),
            cert_name: cert.0,
            key_name: key.0,
            cert: cert.1,
            key: key.1,
        }
    }

    /// (name, want) of the files this slot puts, cert first.
    pub(super) fn files(&self) -> impl Iterator<Item = (&str, &Want<'_>)> {
        [(&self.cert_name, &self.cert), (&self.key_name, &self.key)]
            .into_iter()
            .filter(|(n, _)| !n.is_empty())
            .map(|(n, w)| (n.as_str(), w))
    }

    /// This slot as a links-mode pair of `l`'s `version`.
    pub(super) fn link_pair<'s>(&'s self, l: &'s Lineage, version: u32) -> LinkPair<'s> {
        LinkPair {
            lineage: &l.name,
            version,
            cert_name: &self.cert_name,
            key_name: &self.key_name,
            cert: self.cert.data,
            key: self.key.data,
            cert_mode: self.cert.mode,
            key_mode: self.key.mode,
            uid: self.cert.uid,
            gid: self.cert.gid,
        }
    }

    /// Read back what a reader sees at the target now (through our links in links mode).
    pub(super) fn read_back(&self, name: &str, path: &Path) -> Result<Vec<u8>> {
        let (d, n) =
            match links::resolve(&self.dir, name).with_context(|| path.display().to_string())? {
                Some((d, n)) => (Some(d), n),
                None => (None, name.to_string()),
            };
        d.as_ref()
            .unwrap_or(&self.dir)
            .read(&n, MAX_PEM_BYTES)
            .map_err(|e| anyhow!("{}: {e}", path.display()))
    }
}
