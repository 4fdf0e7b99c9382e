//! `[install]` and `[[install.copy]]`: where each node puts the current pair, owned and
//! moded how, and what runs afterwards.
//!
//! Owns the validated `Install`/`Copy` and the per-layout default paths. It does not apply
//! `root` to the paths (`plan`) nor write any file (`crate::install`).

use std::path::PathBuf;

use super::raw::{RawCopy, RawInstall};
use super::values::{mode, FileMode};
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
        Ok(Install {
            root: i.root.clone().unwrap_or_else(|| "/".into()),
            main,
            extra,
            reload: i.reload.clone(),
            deploy_hook: i.deploy_hook.clone(),
            keep_versions: i.keep_versions.unwrap_or(5).max(1),
            fullchain: i.fullchain.unwrap_or(true),
        })
    }
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
