//! `[install] mode = "links"`: each install target is a symlink into a versioned directory
//! beside it, so that ONE rename of a directory symlink switches the certificate and the key
//! together.
//!
//! ```text
//! <dir>/<cert name>  -> .vipcert/<lineage>/current/<cert name>
//! <dir>/<key name>   -> .vipcert/<lineage>/current/<key name>
//! <dir>/.vipcert/<lineage>/current -> <NNNN>-<digest>      (the switch)
//! <dir>/.vipcert/<lineage>/<NNNN>-<digest>/{<cert name>,<key name>}   real files, final owner/mode
//! ```
//!
//! The digest covers the bytes, owner and modes, so a version directory is never rewritten in
//! place: a change of any of them is a new directory and a new switch. Owns that layout: build
//! a version directory, switch, make the target links, prune, and resolve a target link back to
//! its real file (for the installer's read-back and for `check`). It does not decide what to
//! install or when (`flow`, `place`), and reaches every entry relative to an open directory
//! without following links (`safefs`).

use std::io;

use anyhow::{Context, Result};

use crate::safefs::{check_name, Dir, FileState};

/// The directory beside the targets that holds the versioned copies.
pub(crate) const AREA: &str = ".vipcert";
const CURRENT: &str = "current";

/// One pair to put in place in one directory.
pub(crate) struct LinkPair<'a> {
    pub(crate) lineage: &'a str,
    pub(crate) version: u32,
    pub(crate) cert_name: &'a str,
    pub(crate) key_name: &'a str,
    pub(crate) cert: &'a [u8],
    pub(crate) key: &'a [u8],
    pub(crate) cert_mode: u32,
    pub(crate) key_mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// The text of the symlink at target `name` of `lineage`.
pub(crate) fn link_text(lineage: &str, name: &str) -> String {
    format!("{AREA}/{lineage}/{CURRENT}/{name}")
}

impl LinkPair<'_> {
    /// The version directory's name: store version + digest of everything that goes in it.
    fn version_dir(&self) -> String {
        let mut m = Vec::new();
        for part in [
            self.cert,
            self.key,
            self.cert_name.as_bytes(),
            self.key_name.as_bytes(),
        ] {
            m.extend_from_slice(&(part.len() as u64).to_le_bytes());
            m.extend_from_slice(part);
        }
        for n in [self.cert_mode, self.key_mode, self.uid, self.gid] {
            m.extend_from_slice(&n.to_le_bytes());
        }
        let digest = crate::cert::sha256_hex(&m);
        format!("{:04}-{}", self.version, &digest[..12])
    }

    fn files(&self) -> [(&str, &[u8], u32); 2] {
        [
            (self.cert_name, self.cert, self.cert_mode),
            (self.key_name, self.key, self.key_mode),
        ]
    }

    /// Does `vd` hold exactly our files, bytes and owner/mode?
    fn holds(&self, vd: &Dir) -> Result<bool> {
        for (name, data, mode) in self.files() {
            let owner = (self.uid, self.gid, mode);
            if vd.state_of(name, data, owner, crate::cert::MAX_PEM_BYTES)? != FileState::Same {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// True when `dir` already has this pair switched in and both target links in place.
    pub(crate) fn up_to_date(&self, dir: &Dir) -> Result<bool> {
        let area = match dir.open_dir(AREA).and_then(|a| a.open_dir(self.lineage)) {
            Ok(a) => a,
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let vname = self.version_dir();
        if area.read_link(CURRENT).ok().flatten().as_deref() != Some(vname.as_str()) {
            return Ok(false);
        }
        let vd = match area.open_dir(&vname) {
            Ok(d) => d,
            Err(_) => return Ok(false),
        };
        if !self.holds(&vd)? {
            return Ok(false);
        }
        for name in [self.cert_name, self.key_name] {
            if dir.read_link(name).ok().flatten() != Some(link_text(self.lineage, name)) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Build the version directory (if needed), switch `current` to it with one rename, make
    /// the target links, prune all but the new and the previous version. `step` is called
    /// after each filesystem step (the installer's crash failpoint).
    pub(crate) fn put(&self, dir: &Dir, step: &dyn Fn(&str)) -> Result<()> {
        let area = dir
            .ensure_dir(AREA, 0o755)?
            .ensure_dir(self.lineage, 0o755)?;
        let vname = self.version_dir();
        // A killed run's half-built directory or temporary link: ours, named with a dot.
        for e in area.list()? {
            if e.starts_with('.') {
                remove_entry(&area, &e)?;
                step("stale temp removed");
            }
        }
        let ready = match area.open_dir(&vname) {
            Ok(vd) => self.holds(&vd)?,
            Err(_) => false,
        };
        if !ready {
            let tmp = crate::safefs::temp_name(&vname);
            let vd = area.ensure_dir(&tmp, 0o755)?;
            for (name, data, mode) in self.files() {
                vd.create_new(name, data, mode)?;
                vd.chown(name, self.uid, self.gid)
                    .with_context(|| format!("cannot chown {name} to {}:{}", self.uid, self.gid))?;
                step("version file written");
            }
            vd.sync()?;
            if area.exists(&vname)? {
                // A damaged directory of the same name: swap the good one in atomically (it
                // may be the current one), then drop the damaged one.
                area.exchange(&tmp, &vname)?;
                remove_entry(&area, &tmp)?;
            } else {
                area.rename(&tmp, &vname)?;
            }
            area.sync()?;
            step("version dir in place");
        }
        let previous = area.read_link(CURRENT).ok().flatten();
        // THE switch: cert and key change together for every reader that resolves them after it.
        area.replace_symlink(CURRENT, &vname)?;
        step("switched");
        for name in [self.cert_name, self.key_name] {
            let want = link_text(self.lineage, name);
            if dir.read_link(name).ok().flatten().as_deref() != Some(want.as_str()) {
                dir.replace_symlink(name, &want)?;
                step("target linked");
            }
        }
        for e in area.list()? {
            if e != CURRENT && e != vname && Some(&e) != previous.as_ref() {
                remove_entry(&area, &e)?;
                step("old version removed");
            }
        }
        area.sync()?;
        Ok(())
    }
}

/// Remove a file, link or one of our flat directories (the error names the entry).
fn remove_entry(area: &Dir, name: &str) -> Result<()> {
    let st = area.stat(name)?;
    let res = if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
    {
        area.remove_flat_dir(name)
    } else {
        area.remove(name)
    };
    res.with_context(|| format!("cannot remove {AREA}/…/{name} (remove it by hand)"))
}

/// If `name` in `dir` is a target link of this layout, the version directory and file name it
/// resolves to now, reached without following any link. None if `name` is not one of our
/// links (a regular file, or a foreign symlink, which callers then refuse as not a regular
/// file: vipcert never reads through a link of any other shape).
pub(crate) fn resolve(dir: &Dir, name: &str) -> Result<Option<(Dir, String)>> {
    let text = match dir.read_link(name) {
        Ok(Some(t)) => t,
        Ok(None) => return Ok(None),
        // EINVAL: not a symlink.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
            return Ok(None)
        }
        Err(e) => return Err(e.into()),
    };
    let parts: Vec<&str> = text.split('/').collect();
    let [AREA, lineage, CURRENT, file] = parts[..] else {
        return Ok(None);
    };
    check_name(lineage)?;
    check_name(file)?;
    let area = dir.open_dir(AREA)?.open_dir(lineage)?;
    let v = area
        .read_link(CURRENT)?
        .with_context(|| format!("{AREA}/{lineage}/{CURRENT} is missing"))?;
    check_name(&v)?;
    Ok(Some((area.open_dir(&v)?, file.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair<'a>(cert: &'a [u8], key: &'a [u8], version: u32) -> LinkPair<'a> {
        let me = (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        );
        LinkPair {
            lineage: "vip.example.org",
            version,
            cert_name: "hostcert.pem",
            key_name: "hostkey.pem",
            cert,
            key,
            cert_mode: 0o644,
            key_mode: 0o400,
            uid: me.0,
            gid: me.1,
        }
    }

    #[test]
    fn switch_moves_both_and_keeps_one_previous() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open(t.path()).unwrap();
        for v in 1..=3u32 {
            let (c, k) = (format!("cert{v}"), format!("key{v}"));
            let p = pair(c.as_bytes(), k.as_bytes(), v);
            assert!(!p.up_to_date(&d).unwrap());
            p.put(&d, &|_| {}).unwrap();
            assert!(p.up_to_date(&d).unwrap());
            assert_eq!(
                std::fs::read(t.path().join("hostcert.pem")).unwrap(),
                c.as_bytes()
            );
            assert_eq!(
                std::fs::read(t.path().join("hostkey.pem")).unwrap(),
                k.as_bytes()
            );
            let (vd, f) = resolve(&d, "hostkey.pem").unwrap().unwrap();
            assert_eq!(vd.read(&f, 100).unwrap(), k.as_bytes());
        }
        let area = Dir::open(&t.path().join(".vipcert/vip.example.org")).unwrap();
        let mut names = area.list().unwrap();
        names.sort();
        assert_eq!(names.len(), 3, "{names:?}"); // 0002-…, 0003-…, current
        assert!(names[0].starts_with("0002-") && names[1].starts_with("0003-"));
    }

    #[test]
    fn foreign_links_are_not_resolved() {
        let t = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("hostcert.pem")).unwrap();
        std::fs::write(t.path().join("plain"), b"x").unwrap();
        let d = Dir::open(t.path()).unwrap();
        assert!(resolve(&d, "hostcert.pem").unwrap().is_none());
        assert!(resolve(&d, "plain").unwrap().is_none());
        assert!(resolve(&d, "missing").unwrap().is_none());
    }
}
