//! `[install]` and `[[install.copy]]`: where each node puts the current pair, owned and
//! moded how, and what runs afterwards.
//!
//! Owns the validated `Install`/`Copy` and the per-layout default paths. It does not apply
//! `root` to the paths (`plan`) nor write any file (`crate::install`).

use std::path::PathBuf;

use super::raw::{RawCopy, RawInstall};
use super::values::{mode, number, one_of, optional, FileMode};
use super::{Ctx, Layout};

#[derive(Debug, Clone)]
pub struct Copy {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub owner: String,
    pub group: String,
    pub cert_mode: FileMode,
    pub key_mode: FileMode,
}

#[derive(Debug, Clone)]
pub struct Install {
    pub root: PathBuf,
    /// The main pair; paths are as configured (absolute), `root` is applied by `plan`.
    pub main: Copy,
    pub extra: Vec<Copy>,
    pub reload: Vec<String>,
    pub deploy_hook: Vec<String>,
    pub keep_versions: u32,
    /// The certificate file holds the leaf then the chain (true) or the leaf alone.
    pub fullchain: bool,
    pub mode: InstallMode,
}

/// How targets are written (`[install] mode`); docs/operations.md states the pair guarantee
/// of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InstallMode {
    /// Each target is a regular file, replaced by rename (default).
    #[default]
    Files,
    /// Each target is a symlink into a versioned directory beside it; one rename of a
    /// directory symlink switches cert and key together.
    Links,
}

impl Install {
    pub(super) fn from_raw(i: &RawInstall, layout: Layout, cx: &Ctx) -> anyhow::Result<Install> {
        let main = Copy::main(i, layout, cx)?;
        let extra = i
            .copies
            .iter()
            .map(|c| Copy::extra(c, &main, cx))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for c in std::iter::once(&main).chain(&extra) {
            c.check(cx)?;
        }
        let install_mode = optional(&i.mode, InstallMode::Files, |v| {
            one_of(
                cx,
                "install.mode",
                v,
                &[("files", InstallMode::Files), ("links", InstallMode::Links)],
            )
        })?;
        if install_mode == InstallMode::Links {
            links_layout(std::iter::once(&main).chain(&extra), cx)?;
        }
        Ok(Install {
            root: i.root.clone().unwrap_or_else(|| "/".into()),
            main,
            extra,
            reload: i.reload.clone(),
            deploy_hook: i.deploy_hook.clone(),
            keep_versions: number(
                cx,
                "install.keep_versions",
                &i.keep_versions,
                5,
                1..=100,
                "",
            )?,
            fullchain: i.fullchain.unwrap_or(true),
            mode: install_mode,
        })
    }
}

/// Links mode puts a `.vipcert/<lineage>/` beside each pair and points both files into it:
/// each cert and key must share a directory, and no two pairs may share one.
fn links_layout<'a>(copies: impl Iterator<Item = &'a Copy>, cx: &Ctx) -> anyhow::Result<()> {
    let mut dirs: Vec<&std::path::Path> = Vec::new();
    for c in copies {
        let (cd, kd) = (c.cert.parent(), c.key.parent());
        if cd != kd {
            return cx.err(
                0..0,
                "install.mode",
                format!(
                    "\"links\" needs each cert and key in one directory: {} and {} are not; use mode = \"files\" or move one",
                    c.cert.display(),
                    c.key.display()
                ),
            );
        }
        let d = cd.unwrap_or(std::path::Path::new("/"));
        if dirs.contains(&d) {
            return cx.err(
                0..0,
                "install.mode",
                format!(
                    "\"links\" needs one pair per directory: {} holds two; use mode = \"files\" or move one",
                    d.display()
                ),
            );
        }
        dirs.push(d);
    }
    Ok(())
}

/// Where Globus GridFTP looks for its pair: a shared certificate is the GridFTP server's own,
/// a per-host one is the host's.
fn default_paths(layout: Layout) -> (&'static str, &'static str) {
    match layout {
        Layout::Shared => (
            "/etc/grid-security/gridftp/gridftp-hostcert.pem",
            "/etc/grid-security/gridftp/gridftp-hostkey.pem",
        ),
        Layout::PerHost => (
            "/etc/grid-security/hostcert.pem",
            "/etc/grid-security/hostkey.pem",
        ),
    }
}

impl Copy {
    /// The main pair from `[install]` itself.
    fn main(i: &RawInstall, layout: Layout, cx: &Ctx) -> anyhow::Result<Copy> {
        let (cert, key) = default_paths(layout);
        Ok(Copy {
            cert: i.cert.clone().unwrap_or_else(|| cert.into()),
            key: i.key.clone().unwrap_or_else(|| key.into()),
            owner: i.owner.clone().unwrap_or_else(|| "root".into()),
            group: i.group.clone().unwrap_or_else(|| "root".into()),
            cert_mode: mode(cx, "install.cert_mode", &i.cert_mode, FileMode(0o644))?,
            key_mode: mode(cx, "install.key_mode", &i.key_mode, FileMode(0o400))?,
        })
    }

    /// An `[[install.copy]]`: owner, group and modes default to the main pair's.
    fn extra(c: &RawCopy, main: &Copy, cx: &Ctx) -> anyhow::Result<Copy> {
        Ok(Copy {
            cert: c.cert.clone(),
            key: c.key.clone(),
            owner: c.owner.clone().unwrap_or_else(|| main.owner.clone()),
            group: c.group.clone().unwrap_or_else(|| main.group.clone()),
            cert_mode: mode(cx, "install.copy.cert_mode", &c.cert_mode, main.cert_mode)?,
            key_mode: mode(cx, "install.copy.key_mode", &c.key_mode, main.key_mode)?,
        })
    }

    /// Absolute file paths, and a private key nobody else can read.
    fn check(&self, cx: &Ctx) -> anyhow::Result<()> {
        for p in [&self.cert, &self.key] {
            if !p.is_absolute() || p.file_name().is_none() {
                return cx.err(
                    0..0,
                    "install",
                    format!("{} must be an absolute file path", p.display()),
                );
            }
        }
        if self.cert == self.key {
            return cx.err(
                0..0,
                "install",
                format!(
                    "cert and key are the same file {}: the key would overwrite the certificate; give them different paths",
                    self.cert.display()
                ),
            );
        }
        if self.key_mode.0 & 0o077 != 0 {
            return cx.err(
                0..0,
                "install.key_mode",
                format!(
                    "{:o} lets group or others read the private key {}; use 0400 or 0600",
                    self.key_mode.0,
                    self.key.display()
                ),
            );
        }
        Ok(())
    }
}
