//! `[install]` and `[[install.copy]]`: where each node puts the current pair, owned and
//! moded how, and what runs afterwards.
//!
//! Owns the validated `Install`/`InstallCopy` and the per-layout default paths. It does not
//! apply `root` to the paths (`plan`) nor write any file (`crate::install`).

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::ctx::Ctx;
use super::layout::Layout;
use super::raw::{RawCopy, RawInstall};
use super::values::{abs_path, account, mode, number, one_of, optional, FileMode, PathKind};

/// One pair to install (the main one or a `[[install.copy]]`): paths as configured, owners.
#[derive(Debug, Clone)]
pub(crate) struct InstallCopy {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) owner: String,
    pub(crate) group: String,
    pub(crate) cert_mode: FileMode,
    pub(crate) key_mode: FileMode,
}

/// `[install]`: where each node puts its certificate and key, and what runs after.
#[derive(Debug, Clone)]
pub struct Install {
    /// Prefix for every install path (normally /; labs give each node its own directory).
    pub root: PathBuf,
    /// The main pair; paths are as configured (absolute), `root` is applied by `plan`.
    pub(crate) main: InstallCopy,
    pub(crate) extra: Vec<InstallCopy>,
    pub(crate) reload: Vec<String>,
    pub(crate) deploy_hook: Vec<String>,
    pub(crate) keep_versions: u32,
    /// The certificate file holds the leaf then the chain (true) or the leaf alone.
    pub fullchain: bool,
    pub(crate) mode: InstallMode,
}

/// How targets are written (`[install] mode`); docs/operations.md states the pair guarantee
/// of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum InstallMode {
    /// Each target is a regular file, replaced by rename (default).
    #[default]
    Files,
    /// Each target is a symlink into a versioned directory beside it; one rename of a
    /// directory symlink switches cert and key together.
    Links,
}

impl Install {
    pub(super) fn from_raw(i: &RawInstall, layout: Layout, cx: &Ctx) -> anyhow::Result<Install> {
        let main = InstallCopy::main(i, layout, cx)?;
        let extra = i
            .copies
            .iter()
            .map(|c| InstallCopy::extra(c, &main, cx))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let install_mode = optional(&i.mode, InstallMode::Files, |v| {
            one_of(
                cx,
                "install.mode",
                v,
                &[("files", InstallMode::Files), ("links", InstallMode::Links)],
            )
        })?;
        if let (InstallMode::Links, Some(m)) = (install_mode, &i.mode) {
            links_layout(std::iter::once(&main).chain(&extra), m.span(), cx)?;
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
/// each cert and key must share a directory, and no two pairs may share one. Reported at
/// `install.mode` (`span`), the key that asks for it.
fn links_layout<'a>(
    copies: impl Iterator<Item = &'a InstallCopy>,
    span: std::ops::Range<usize>,
    cx: &Ctx,
) -> anyhow::Result<()> {
    let mut dirs: Vec<&std::path::Path> = Vec::new();
    for c in copies {
        let (cd, kd) = (c.cert.parent(), c.key.parent());
        if cd != kd {
            return cx.err(
                span,
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
                span,
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

impl InstallCopy {
    /// The main pair from `[install]` itself.
    fn main(i: &RawInstall, layout: Layout, cx: &Ctx) -> anyhow::Result<InstallCopy> {
        let (cert, key) = default_paths(layout);
        let cert = optional(&i.cert, cert.into(), |p| {
            abs_path(cx, "install.cert", p, PathKind::File)
        })?;
        let key = optional(&i.key, key.into(), |p| {
            abs_path(cx, "install.key", p, PathKind::File)
        })?;
        distinct(
            &cert,
            &key,
            i.key.as_ref().or(i.cert.as_ref()),
            "install.key",
            cx,
        )?;
        Ok(InstallCopy {
            cert,
            owner: optional(&i.owner, "root".into(), |o| account(cx, "install.owner", o))?,
            group: optional(&i.group, "root".into(), |g| account(cx, "install.group", g))?,
            cert_mode: mode(cx, "install.cert_mode", &i.cert_mode, FileMode(0o644))?,
            key_mode: key_mode(cx, "install.key_mode", &i.key_mode, FileMode(0o400), &key)?,
            key,
        })
    }

    /// An `[[install.copy]]`: owner, group and modes default to the main pair's.
    fn extra(c: &RawCopy, main: &InstallCopy, cx: &Ctx) -> anyhow::Result<InstallCopy> {
        let cert = abs_path(cx, "install.copy.cert", &c.cert, PathKind::File)?;
        let key = abs_path(cx, "install.copy.key", &c.key, PathKind::File)?;
        distinct(&cert, &key, Some(&c.key), "install.copy.key", cx)?;
        Ok(InstallCopy {
            cert,
            owner: optional(&c.owner, main.owner.clone(), |o| {
                account(cx, "install.copy.owner", o)
            })?,
            group: optional(&c.group, main.group.clone(), |g| {
                account(cx, "install.copy.group", g)
            })?,
            cert_mode: mode(cx, "install.copy.cert_mode", &c.cert_mode, main.cert_mode)?,
            key_mode: key_mode(
                cx,
                "install.copy.key_mode",
                &c.key_mode,
                main.key_mode,
                &key,
            )?,
            key,
        })
    }
}

/// A cert and key at one path: the key would overwrite the certificate. Reported at `at`,
/// the path key that makes them the same.
fn distinct(
    cert: &Path,
    key: &Path,
    at: Option<&Spanned<PathBuf>>,
    name: &str,
    cx: &Ctx,
) -> anyhow::Result<()> {
    if cert != key {
        return Ok(());
    }
    cx.err(
        at.map_or(0..0, |v| v.span()),
        name,
        format!(
            "cert and key are the same file {}: the key would overwrite the certificate; give them different paths",
            cert.display()
        ),
    )
}

/// A private key's mode: nobody but the owner may read it. An absent key means `default`,
/// already checked (the built-in 0400, or the main pair's).
fn key_mode(
    cx: &Ctx,
    name: &str,
    v: &Option<Spanned<String>>,
    default: FileMode,
    key: &Path,
) -> anyhow::Result<FileMode> {
    let m = mode(cx, name, v, default)?;
    match v {
        Some(s) if m.0 & 0o077 != 0 => cx.err(
            s.span(),
            name,
            format!(
                "{:o} lets group or others read the private key {}; use 0400 or 0600",
                m.0,
                key.display()
            ),
        ),
        _ => Ok(m),
    }
}
