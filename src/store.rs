//! The shared directory (NFS): webroot, accounts, versioned certificate store, renewal state.
//!
//! Owns the on-disk format of DESIGN.md "The shared directory" and the NFS-safe way to change
//! it: create exclusively, publish by write-temp + fsync + rename, switch `current` with an
//! atomic symlink rename, never chown. It does not decide when to issue (`renew`), talk to the
//! CA (`acme`) or write install targets (`install`); the issuer lease is `lease`.
//!
//! ```text
//! <shared_dir>/webroot/.well-known/acme-challenge/<token>
//! <shared_dir>/accounts/<ca-host>/account.json
//! <shared_dir>/store/<lineage>/<NNNN>/{cert,chain,fullchain,key}.pem, meta.json
//! <shared_dir>/store/<lineage>/current -> NNNN
//! <shared_dir>/state/<lineage>.json
//! <shared_dir>/locks/issuer.lease
//! ```

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cert::{CertInfo, MAX_PEM_BYTES};
use crate::safefs::{Dir, ReadError};

pub(crate) const CURRENT: &str = "current";
const META_MAX: u64 = 64 * 1024;

/// What `meta.json` says about a version. Public data only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    /// The lineage (store/<lineage>).
    pub lineage: String,
    /// This version's number (store/<lineage>/<NNNN>).
    pub version: u32,
    /// Names as planned, CN first.
    pub names: Vec<String>,
    /// Key type name ("rsa2048", "ecdsa-p256", ...).
    pub key_type: String,
    /// When the certificate was obtained, unix seconds.
    pub issued_at: i64,
    /// Node that ran the order.
    pub issued_by: String,
    /// The CA's directory URL.
    pub ca: String,
    /// The RFC 8555 order URL, when known.
    #[serde(default)]
    pub order_url: Option<String>,
    /// The ACME profile this version was ordered with, "" for the CA's default. Absent in
    /// versions issued before vipcert recorded it: unknown, never by itself a reason to renew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Facts of the issued leaf.
    pub leaf: CertInfo,
}

/// `store/<lineage>/NNNN/revoked.json`: this version was revoked at the CA; nothing installs
/// it or rolls back to it, and `check` calls a node holding it critical.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Revoked {
    /// RFC 5280 reason name, e.g. "keyCompromise".
    pub(crate) reason: String,
    /// Unix seconds.
    pub(crate) revoked_at: i64,
    /// Node that ran `vipcert revoke`.
    pub(crate) by: String,
}

impl std::fmt::Display for Revoked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "revoked ({}) at {} by {}",
            self.reason,
            fmt_time(self.revoked_at),
            self.by
        )
    }
}

pub(crate) const REVOKED: &str = "revoked.json";

/// The PEM files of a fresh certificate, before it has a version number.
pub struct Issued {
    /// The leaf certificate, PEM.
    pub cert_pem: String,
    /// The intermediates the CA sent, PEM.
    pub chain_pem: String,
    /// The private key, PEM.
    pub key_pem: String,
}

impl Issued {
    pub(crate) fn fullchain(&self) -> String {
        let mut s = self.cert_pem.clone();
        if !s.ends_with('\n') {
            s.push('\n');
        }
        s.push_str(&self.chain_pem);
        s
    }
}

/// One version read back from the store.
#[derive(Debug, Clone)]
pub struct Version {
    pub(crate) lineage: String,
    pub(crate) number: u32,
    /// cert.pem: the leaf.
    pub cert_pem: Vec<u8>,
    /// chain.pem: the intermediates.
    pub chain_pem: Vec<u8>,
    pub(crate) fullchain_pem: Vec<u8>,
    /// key.pem: the private key.
    pub key_pem: Vec<u8>,
    pub(crate) meta: Meta,
}

/// Per-lineage renewal bookkeeping, `state/<lineage>.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// ARI suggested window (unix seconds), when the CA offers one.
    #[serde(default)]
    pub ari_start: Option<i64>,
    /// End of the ARI suggested window (unix seconds).
    #[serde(default)]
    pub ari_end: Option<i64>,
    /// When the ARI window was fetched and when to ask again (Retry-After).
    #[serde(default)]
    pub ari_checked_at: Option<i64>,
    /// Do not ask the CA for the ARI window again before this (its Retry-After).
    #[serde(default)]
    pub ari_retry_after: Option<i64>,
    /// Serial (hex) of the certificate the ARI window belongs to: a window is void once the
    /// certificate is replaced.
    #[serde(default)]
    pub ari_serial: Option<String>,
    /// Last renewal attempt, unix seconds.
    #[serde(default)]
    pub last_attempt: Option<i64>,
    /// Last successful renewal, unix seconds.
    #[serde(default)]
    pub last_success: Option<i64>,
    /// Consecutive failures since the last success.
    #[serde(default)]
    pub failures: u32,
    /// Why the last attempt failed.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Do not try before this time (backoff, or a CA's Retry-After).
    #[serde(default)]
    pub next_attempt: Option<i64>,
    /// Directory URL of the CA that issued the last published version (a fallback CA, maybe).
    #[serde(default)]
    pub ca: Option<String>,
}

/// The shared directory: versions, current, accounts, state, locks.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

pub(crate) fn format_version(n: u32) -> String {
    format!("{n:04}")
}

fn parse_version(s: &str) -> Option<u32> {
    if s.len() >= 4 && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// Now, unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// What to say about a missing `shared_dir`: the nearest existing ancestor and the mount
/// point it is on (from /proc/self/mountinfo), so the admin sees which share is not mounted.
fn missing_shared_dir(root: &Path) -> String {
    let mut anc = root.parent();
    while let Some(a) = anc {
        if a.exists() {
            break;
        }
        anc = a.parent();
    }
    let anc = anc.unwrap_or(Path::new("/"));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mount = mount_point_of(&mounts, anc).unwrap_or_else(|| "/".into());
    format!(
        "shared_dir {} does not exist ({} exists, on the filesystem mounted at {mount}): is the shared filesystem (NFS, CephFS) mounted on this node? vipcert never creates shared_dir, so an unmounted share is not mistaken for an empty store: mount it (on first setup, create the directory by hand on the shared filesystem)",
        root.display(),
        anc.display(),
    )
}

/// The longest mount point in a /proc/self/mountinfo text that contains `path`.
fn mount_point_of(mountinfo: &str, path: &Path) -> Option<String> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        // mountinfo escapes space, tab, newline and backslash as octal.
        .map(|m| {
            m.replace("\\040", " ")
                .replace("\\011", "\t")
                .replace("\\134", "\\")
        })
        .filter(|m| path.starts_with(m))
        .max_by_key(|m| m.len())
}

/// A unix time as RFC 3339 (UTC, seconds), for messages.
pub(crate) fn fmt_time(t: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64),
    )
    .to_string()
}

impl Store {
    /// The store at `root` (the config's shared_dir); nothing is touched until used.
    pub fn new(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    /// Refuse a missing `shared_dir`: on a node whose NFS share is not mounted, creating it
    /// would make a private, empty store (a second account, a second issuer, certificates no
    /// other node sees). The error names the mount the directory should be on.
    pub(crate) fn require_root(&self) -> Result<()> {
        match std::fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => bail!("shared_dir {} is not a directory", self.root.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("{}", missing_shared_dir(&self.root))
            }
            Err(e) => {
                Err(e).with_context(|| format!("cannot stat shared_dir {}", self.root.display()))
            }
        }
    }

    /// Create the directory skeleton inside an existing `shared_dir` (idempotent). Modes:
    /// secrets 0700, webroot 0755.
    pub fn init(&self) -> Result<()> {
        self.require_root()?;
        let root = Dir::open(&self.root)
            .with_context(|| format!("cannot open shared dir {}", self.root.display()))?;
        let web = root.ensure_dir("webroot", 0o755)?;
        let wk = web.ensure_dir(".well-known", 0o755)?;
        wk.ensure_dir("acme-challenge", 0o755)?;
        root.ensure_dir("accounts", 0o700)?;
        root.ensure_dir("store", 0o700)?;
        root.ensure_dir("state", 0o700)?;
        root.ensure_dir("locks", 0o755)?;
        Ok(())
    }

    /// Where HTTP-01 tokens live: webroot/.well-known/acme-challenge.
    pub fn webroot_path(&self) -> PathBuf {
        self.root.join("webroot/.well-known/acme-challenge")
    }

    /// The challenge directory, opened for directory-relative access.
    pub(crate) fn webroot(&self) -> Result<Dir> {
        let p = self.webroot_path();
        Dir::open(&p).with_context(|| {
            format!(
                "cannot open webroot {} (run `vipcert issue` once, or check the NFS mount)",
                p.display()
            )
        })
    }

    /// Remove challenge and probe files older than `max_age` from the webroot: a killed run's
    /// leftovers would otherwise be served forever. Only entries `is_ours` accepts (the token
    /// pattern) and only regular files, never following a link. Returns how many went.
    pub(crate) fn sweep_webroot(
        &self,
        max_age: std::time::Duration,
        is_ours: fn(&str) -> bool,
    ) -> Result<usize> {
        let dir = self.webroot()?;
        // Ages by the filesystem's own clock, which set the mtimes: a node whose clock is
        // ahead must not sweep another node's live challenge files.
        let fs_now = dir.now().context("cannot write a file in the webroot")?;
        let fs_now = fs_now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let cutoff = fs_now as i64 - max_age.as_secs() as i64;
        let mut removed = 0;
        for name in dir.list()? {
            if !is_ours(&name) {
                continue;
            }
            let Ok(st) = dir.stat(&name) else { continue };
            let regular = rustix::fs::FileType::from_raw_mode(st.st_mode)
                == rustix::fs::FileType::RegularFile;
            if regular && st.st_mtime < cutoff {
                dir.remove(&name)
                    .with_context(|| format!("cannot remove stale challenge file {name}"))?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(
                removed,
                "swept stale challenge/probe files from the webroot"
            );
        }
        Ok(removed)
    }

    pub(crate) fn locks(&self) -> Result<Dir> {
        let p = self.root.join("locks");
        Dir::open(&p).with_context(|| format!("cannot open {}", p.display()))
    }

    pub(crate) fn account_path(&self, ca_host: &str) -> PathBuf {
        self.root
            .join("accounts")
            .join(ca_host)
            .join("account.json")
    }

    /// Read the account credentials for `ca_host`, if any.
    pub(crate) fn read_account(&self, ca_host: &str) -> Result<Option<Vec<u8>>> {
        let dir = match Dir::open(&self.root.join("accounts")).and_then(|d| d.open_dir(ca_host)) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).context("cannot open accounts directory"),
        };
        match dir.read("account.json", META_MAX) {
            Ok(b) => Ok(Some(b)),
            Err(ReadError::NotFound) => Ok(None),
            Err(e) => Err(anyhow::anyhow!(
                "{}: {e}",
                self.account_path(ca_host).display()
            )),
        }
    }

    /// Save account credentials (0600) for `ca_host`. Exclusive: if another node saved one
    /// first, returns false and leaves theirs.
    pub(crate) fn save_account(&self, ca_host: &str, json: &[u8]) -> Result<bool> {
        let dir = Dir::open(&self.root.join("accounts"))?.ensure_dir(ca_host, 0o700)?;
        let tmp = crate::safefs::temp_name("account.json");
        dir.create_new(&tmp, json, 0o600)?;
        let res = dir.link(&tmp, "account.json");
        let _ = dir.remove(&tmp);
        match res {
            Ok(()) => {
                dir.sync()?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e).context("cannot save account credentials"),
        }
    }

    /// Replace the account credentials for `ca_host` (key rollover, a re-found account):
    /// written whole at 0600 and renamed over, so a reader sees the old or the new file.
    pub(crate) fn replace_account(&self, ca_host: &str, json: &[u8]) -> Result<()> {
        let dir = Dir::open(&self.root.join("accounts"))?.ensure_dir(ca_host, 0o700)?;
        dir.replace("account.json", json, 0o600)
            .with_context(|| format!("cannot write {}", self.account_path(ca_host).display()))
    }

    /// Move the account credentials for `ca_host` aside (the CA no longer knows the account,
    /// or it was deactivated) as `account.json.retired-<unix time>`, kept for the record; the
    /// next issue creates a new account. Returns the new name, or None if there was none.
    pub(crate) fn retire_account(&self, ca_host: &str) -> Result<Option<PathBuf>> {
        let dir = match Dir::open(&self.root.join("accounts")).and_then(|d| d.open_dir(ca_host)) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).context("cannot open accounts directory"),
        };
        let to = format!("account.json.retired-{}", now());
        match dir.rename("account.json", &to) {
            Ok(()) => {
                dir.sync()?;
                Ok(Some(self.account_path(ca_host).with_file_name(to)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| {
                format!("cannot move {} aside", self.account_path(ca_host).display())
            }),
        }
    }

    /// `<shared_dir>/store`, where the versions and `current` links live.
    pub(crate) fn store_path(&self) -> PathBuf {
        self.root.join("store")
    }

    fn store_dir(&self) -> Result<Dir> {
        let p = self.root.join("store");
        Dir::open(&p).with_context(|| format!("cannot open store {}", p.display()))
    }

    fn lineage_dir(&self, lineage: &str) -> Result<Option<Dir>> {
        match self.store_dir()?.open_dir(lineage) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot open store/{lineage}")),
        }
    }

    /// The directory of version `number` and its name (`NNNN`).
    fn version_dir(&self, lineage: &str, number: u32) -> Result<(String, Dir)> {
        let name = format_version(number);
        let d = self
            .lineage_dir(lineage)?
            .with_context(|| format!("store/{lineage} does not exist"))?
            .open_dir(&name)
            .with_context(|| format!("cannot open store/{lineage}/{name}"))?;
        Ok((name, d))
    }

    /// The version `current` points at, if any.
    pub fn current(&self, lineage: &str) -> Result<Option<u32>> {
        let Some(d) = self.lineage_dir(lineage)? else {
            return Ok(None);
        };
        let link = d.read_link(CURRENT).map_err(|e| {
            let what = match d.stat(CURRENT).map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode)) {
                Ok(rustix::fs::FileType::RegularFile) => "a regular file",
                Ok(rustix::fs::FileType::Directory) => "a directory",
                _ => return anyhow::Error::from(e).context(format!("cannot read store/{lineage}/current")),
            };
            anyhow::anyhow!(
                "store/{lineage}/current is {what}, not a symlink to a version: move it aside and run `vipcert rollback` to point it at a kept version (or `vipcert issue`)"
            )
        })?;
        match link {
            None => Ok(None),
            Some(t) => match parse_version(&t) {
                Some(n) => Ok(Some(n)),
                None => bail!("store/{lineage}/current points at {t:?}, not a version number"),
            },
        }
    }

    /// All kept versions, ascending.
    pub fn versions(&self, lineage: &str) -> Result<Vec<u32>> {
        let Some(d) = self.lineage_dir(lineage)? else {
            return Ok(vec![]);
        };
        let mut v: Vec<u32> = d.list()?.iter().filter_map(|n| parse_version(n)).collect();
        v.sort_unstable();
        Ok(v)
    }

    /// Read one version's files (bounded, no symlinks followed).
    pub fn read(&self, lineage: &str, number: u32) -> Result<Version> {
        let (name, d) = self.version_dir(lineage, number)?;
        let get = |f: &str, limit: u64| -> Result<Vec<u8>> {
            d.read(f, limit)
                .map_err(|e| anyhow::anyhow!("store/{lineage}/{name}/{f}: {e}"))
        };
        let meta: Meta = serde_json::from_slice(&get("meta.json", META_MAX)?)
            .with_context(|| format!("store/{lineage}/{name}/meta.json is not valid"))?;
        Ok(Version {
            lineage: lineage.to_string(),
            number,
            cert_pem: get("cert.pem", MAX_PEM_BYTES)?,
            chain_pem: get("chain.pem", MAX_PEM_BYTES)?,
            fullchain_pem: get("fullchain.pem", MAX_PEM_BYTES)?,
            key_pem: get("key.pem", MAX_PEM_BYTES)?,
            meta,
        })
    }

    /// Mark version `number` of `lineage` revoked (written whole, then renamed into place).
    pub(crate) fn mark_revoked(&self, lineage: &str, number: u32, r: &Revoked) -> Result<()> {
        let (name, d) = self.version_dir(lineage, number)?;
        d.replace(REVOKED, &serde_json::to_vec_pretty(r)?, 0o644)
            .with_context(|| format!("cannot write store/{lineage}/{name}/{REVOKED}"))
    }

    /// The revocation mark of version `number`, if it has one.
    pub(crate) fn revoked(&self, lineage: &str, number: u32) -> Result<Option<Revoked>> {
        let (name, d) = self.version_dir(lineage, number)?;
        match d.read(REVOKED, META_MAX) {
            Ok(b) => serde_json::from_slice(&b).map(Some).with_context(|| {
                // Unreadable mark: treat as revoked-and-broken, never as "not revoked".
                format!(
                    "store/{lineage}/{name}/{REVOKED} is not valid; the version counts as revoked"
                )
            }),
            Err(ReadError::NotFound) => Ok(None),
            Err(e) => Err(anyhow::anyhow!("store/{lineage}/{name}/{REVOKED}: {e}")),
        }
    }

    /// The version `current` points at, read.
    pub(crate) fn read_current(&self, lineage: &str) -> Result<Option<Version>> {
        match self.current(lineage)? {
            None => Ok(None),
            Some(n) => self.read(lineage, n).map(Some),
        }
    }

    /// Write a new version and flip `current` to it. The version directory is built under a
    /// temporary name and renamed into place only when complete, so readers never see a
    /// partial version; `current` moves by an atomic symlink rename. `fence` runs just before
    /// the flip: the issuer checks it still holds the lease there.
    pub fn publish(
        &self,
        lineage: &str,
        issued: &Issued,
        mut meta: Meta,
        keep: u32,
        fence: impl FnOnce() -> Result<()>,
    ) -> Result<u32> {
        crate::safefs::check_name(lineage)?;
        let store = self.store_dir()?;
        let ld = store.ensure_dir(lineage, 0o700)?;
        let next = self.versions(lineage)?.last().copied().unwrap_or(0) + 1;
        let tmp = crate::safefs::temp_name("version");
        let vd = ld.ensure_dir(&tmp, 0o700)?;
        meta.version = next;
        let res = (|| -> Result<()> {
            vd.create_new("key.pem", issued.key_pem.as_bytes(), 0o600)?;
            vd.create_new("cert.pem", issued.cert_pem.as_bytes(), 0o644)?;
            vd.create_new("chain.pem", issued.chain_pem.as_bytes(), 0o644)?;
            vd.create_new("fullchain.pem", issued.fullchain().as_bytes(), 0o644)?;
            vd.create_new("meta.json", &serde_json::to_vec_pretty(&meta)?, 0o644)?;
            vd.sync()?;
            // rename(2) onto an existing non-empty directory fails, so two publishers cannot
            // both claim the same number.
            ld.rename(&tmp, &format_version(next)).with_context(|| {
                format!(
                    "store/{lineage}/{} appeared while publishing",
                    format_version(next)
                )
            })?;
            ld.sync()?;
            Ok(())
        })();
        if let Err(e) = res {
            let _ = ld.remove_flat_dir(&tmp);
            return Err(e);
        }
        if let Err(e) = fence() {
            let _ = ld.remove_flat_dir(&format_version(next));
            return Err(e);
        }
        ld.replace_symlink(CURRENT, &format_version(next))?;
        self.prune(lineage, keep)?;
        Ok(next)
    }

    /// Point `current` at an existing version (rollback).
    pub fn set_current(&self, lineage: &str, number: u32) -> Result<()> {
        let ld = self
            .lineage_dir(lineage)?
            .with_context(|| format!("store/{lineage} does not exist"))?;
        // Refuse to point at something that is not a complete version.
        self.read(lineage, number)?;
        ld.replace_symlink(CURRENT, &format_version(number))?;
        Ok(())
    }

    /// Delete the oldest versions beyond `keep`, never the current one.
    pub(crate) fn prune(&self, lineage: &str, keep: u32) -> Result<()> {
        let Some(ld) = self.lineage_dir(lineage)? else {
            return Ok(());
        };
        let current = self.current(lineage)?;
        let versions = self.versions(lineage)?;
        let excess = versions.len().saturating_sub(keep as usize);
        for &n in versions.iter().take(excess) {
            if Some(n) == current {
                continue;
            }
            ld.remove_flat_dir(&format_version(n))?;
        }
        Ok(())
    }

    /// The renewal bookkeeping of `lineage` (default if none yet).
    pub fn read_state(&self, lineage: &str) -> Result<State> {
        let d = Dir::open(&self.root.join("state"))?;
        match d.read(&format!("{lineage}.json"), META_MAX) {
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("state/{lineage}.json is not valid")),
            Err(ReadError::NotFound) => Ok(State::default()),
            Err(e) => Err(anyhow::anyhow!("state/{lineage}.json: {e}")),
        }
    }

    /// Replace the renewal bookkeeping of `lineage` (write-temp + rename).
    pub fn write_state(&self, lineage: &str, state: &State) -> Result<()> {
        let d = Dir::open(&self.root.join("state"))?;
        d.replace(
            &format!("{lineage}.json"),
            &serde_json::to_vec_pretty(state)?,
            0o644,
        )?;
        Ok(())
    }
}

/// Delete a version directory and its files (the store never nests deeper).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_shared_dir_is_refused_naming_the_mount() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::new(t.path().join("nfs/vipcert"));
        let e = format!("{:#}", s.init().unwrap_err());
        assert!(
            e.contains("nfs/vipcert does not exist") && e.contains("mounted at"),
            "{e}"
        );
        assert!(!t.path().join("nfs").exists());
        let info = "22 1 0:21 / / rw - ext4 /dev/sda1 rw\n40 22 0:40 / /mnt/nfs\\040share rw - nfs4 srv:/x rw\n";
        assert_eq!(
            mount_point_of(info, Path::new("/mnt/nfs share/a")).as_deref(),
            Some("/mnt/nfs share")
        );
        assert_eq!(
            mount_point_of(info, Path::new("/srv")).as_deref(),
            Some("/")
        );
    }
    use std::os::unix::fs::PermissionsExt;

    fn issued() -> (Issued, Meta) {
        let (c, k) = crate::cert::tests::make(&["vip.example.org", "a.example.org"]);
        let leaf = crate::cert::leaf_info(c.as_bytes()).unwrap();
        let meta = Meta {
            lineage: "vip.example.org".into(),
            version: 0,
            names: vec!["vip.example.org".into(), "a.example.org".into()],
            key_type: "ecdsa-p256".into(),
            issued_at: now(),
            issued_by: "a.example.org".into(),
            ca: "test".into(),
            order_url: None,
            profile: None,
            leaf,
        };
        (
            Issued {
                cert_pem: c.clone(),
                chain_pem: c,
                key_pem: k,
            },
            meta,
        )
    }

    #[test]
    fn publish_read_rollback_prune() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::new(t.path().join("shared"));
        std::fs::create_dir(t.path().join("shared")).unwrap();
        s.init().unwrap();
        let (i, m) = issued();
        for want in 1..=7 {
            let n = s
                .publish("vip.example.org", &i, m.clone(), 5, || Ok(()))
                .unwrap();
            assert_eq!(n, want);
        }
        assert_eq!(s.current("vip.example.org").unwrap(), Some(7));
        assert_eq!(s.versions("vip.example.org").unwrap(), vec![3, 4, 5, 6, 7]);
        let v = s.read_current("vip.example.org").unwrap().unwrap();
        assert_eq!(v.meta.version, 7);
        let kp = t.path().join("shared/store/vip.example.org/0007/key.pem");
        assert_eq!(
            std::fs::metadata(kp).unwrap().permissions().mode() & 0o777,
            0o600
        );
        s.set_current("vip.example.org", 4).unwrap();
        assert_eq!(s.current("vip.example.org").unwrap(), Some(4));
        assert!(s.set_current("vip.example.org", 1).is_err());

        assert_eq!(s.revoked("vip.example.org", 4).unwrap(), None);
        let r = Revoked {
            reason: "keyCompromise".into(),
            revoked_at: 1_800_000_000,
            by: "a.example.org".into(),
        };
        s.mark_revoked("vip.example.org", 4, &r).unwrap();
        assert_eq!(s.revoked("vip.example.org", 4).unwrap(), Some(r));
        // A broken mark is not "not revoked".
        let p = t
            .path()
            .join("shared/store/vip.example.org/0004/revoked.json");
        std::fs::write(&p, b"{").unwrap();
        assert!(s.revoked("vip.example.org", 4).is_err());
    }

    #[test]
    fn failed_fence_publishes_nothing_current() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::new(t.path());
        s.init().unwrap();
        let (i, m) = issued();
        assert!(s
            .publish("vip.example.org", &i, m, 5, || anyhow::bail!("lease lost"))
            .is_err());
        assert_eq!(s.current("vip.example.org").unwrap(), None);
        assert!(s.versions("vip.example.org").unwrap().is_empty());
    }

    #[test]
    fn account_is_saved_once() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::new(t.path());
        s.init().unwrap();
        assert!(s.read_account("ca").unwrap().is_none());
        assert!(s.save_account("ca", b"{\"a\":1}").unwrap());
        assert!(!s.save_account("ca", b"{\"a\":2}").unwrap());
        assert_eq!(s.read_account("ca").unwrap().unwrap(), b"{\"a\":1}");
        s.replace_account("ca", b"{\"a\":3}").unwrap();
        assert_eq!(s.read_account("ca").unwrap().unwrap(), b"{\"a\":3}");
        let aside = s.retire_account("ca").unwrap().unwrap();
        assert!(aside.exists());
        assert!(s.read_account("ca").unwrap().is_none());
        assert!(s.retire_account("ca").unwrap().is_none());
    }
}
