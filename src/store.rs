//! The shared directory (NFS): webroot, accounts, versioned certificate store, renewal state.
//!
//! Owns the on-disk format drawn below (docs/guide.md, "Files in the shared directory", says
//! it for operators) and the NFS-safe way to change it: create exclusively, publish by
//! write-temp + fsync + rename, switch `current` with an atomic symlink rename, never chown. It does not decide when to issue (`renew`), talk to the
//! CA (`acme`) or write install targets (`install`); the issuer lease is `lease`.
//!
//! What it reads back is bounded: times are clamped into the sane range as they are parsed
//! (`unixtime`), and only canonical version names (`0001`..`9999`) are versions, so a stray
//! directory can neither pose as one nor make the counter wrap.
//!
//! ```text
//! <shared_dir>/webroot/.well-known/acme-challenge/<token>
//! <shared_dir>/accounts/<ca-host>/account.json
//! <shared_dir>/accounts/<ca-host>/no-ari.json
//! <shared_dir>/store/<lineage>/<NNNN>/{cert,chain,fullchain,key}.pem, meta.json
//! <shared_dir>/store/<lineage>/current -> NNNN
//! <shared_dir>/state/<lineage>.json
//! <shared_dir>/locks/issuer.lease
//! ```

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cert::{CertInfo, MAX_PEM_BYTES};
use crate::fs_error::{self, FsError};
use crate::safefs::{Dir, ReadError};
use crate::unixtime::UnixTime;

pub(crate) const CURRENT: &str = "current";
const META_MAX: u64 = 64 * 1024;

/// Largest challenge file the node server serves (a key authorization is ~90 bytes).
pub(crate) const MAX_TOKEN_FILE: u64 = 4096;
/// Challenge and probe files older than this are a killed run's leftovers (an order's
/// challenges live for at most a few minutes): `sweep_webroot` removes them.
pub(crate) const STALE_CHALLENGE: std::time::Duration = std::time::Duration::from_secs(600);

/// The webroot's file names, `^[A-Za-z0-9_-]{1,128}$`: the base64url alphabet of RFC 8555
/// tokens. Only such names are written there (`solve::http01`'s `WebrootFile`, for http-01
/// challenges and preflight's probes), served (`serve`) and swept (`sweep_webroot`).
pub(crate) fn valid_token(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

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
    #[serde(deserialize_with = "crate::unixtime::clamped")]
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
    #[serde(deserialize_with = "crate::unixtime::clamped")]
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

/// Per-lineage renewal bookkeeping, `state/<lineage>.json`. Other nodes write it too: its
/// times are clamped when read ([`UnixTime`]), and whether a recorded wait is credible is the
/// renewal policy's to judge (`retry`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// ARI suggested window (unix seconds), when the CA offers one.
    #[serde(default)]
    pub ari_start: Option<UnixTime>,
    /// End of the ARI suggested window (unix seconds).
    #[serde(default)]
    pub ari_end: Option<UnixTime>,
    /// When the ARI window was fetched and when to ask again (Retry-After).
    #[serde(default)]
    pub ari_checked_at: Option<UnixTime>,
    /// Do not ask the CA for the ARI window again before this (its Retry-After).
    #[serde(default)]
    pub ari_retry_after: Option<UnixTime>,
    /// Serial (hex) of the certificate the ARI window belongs to: a window is void once the
    /// certificate is replaced.
    #[serde(default)]
    pub ari_serial: Option<String>,
    /// Last renewal attempt, unix seconds.
    #[serde(default)]
    pub last_attempt: Option<UnixTime>,
    /// Last successful renewal, unix seconds.
    #[serde(default)]
    pub last_success: Option<UnixTime>,
    /// Consecutive failures since the last success.
    #[serde(default)]
    pub failures: u32,
    /// Why the last attempt failed.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Do not try before this time (backoff, or a CA's Retry-After).
    #[serde(default)]
    pub next_attempt: Option<UnixTime>,
    /// Directory URL of the CA that issued the last published version (a fallback CA, maybe).
    #[serde(default)]
    pub ca: Option<String>,
}

/// `accounts/<ca-host>/no-ari.json`: the CA's directory offered no renewalInfo (ARI) when
/// `renew` last fetched it. A fact of the CA, not of a lineage: until `retry_after` no run
/// fetches the directory again to learn it (a CA may add ARI later).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct NoAri {
    /// When the directory was fetched, unix seconds.
    pub checked_at: UnixTime,
    /// Not asked again before this, unix seconds.
    pub retry_after: UnixTime,
}

pub(crate) const NO_ARI: &str = "no-ari.json";

/// The shared directory: versions, current, accounts, state, locks.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// The last version number: version directories are named with exactly four digits.
pub(crate) const LAST_VERSION: u32 = 9999;

/// The directory name of version `n` (`0001`..`9999`).
pub(crate) fn format_version(n: u32) -> String {
    format!("{n:04}")
}

/// The number of a version directory name: exactly the names `format_version` writes, four
/// ASCII digits from `0001` to `9999`. `00005`, `5`, `0000` or `4294967295` are not versions:
/// a number has one name, so what is counted is what is opened, and no name can push the
/// counter past what four digits hold.
fn parse_version(s: &str) -> Option<u32> {
    if s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok().filter(|&n| n >= 1)
    } else {
        None
    }
}

/// Say once per process that `store/<lineage>/<name>` is not a version and is ignored:
/// `versions` runs several times in one command.
fn warn_not_a_version(lineage: &str, name: &str) {
    static WARNED: std::sync::Mutex<std::collections::BTreeSet<String>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let dir = format!("store/{lineage}/{name}");
    let first = WARNED
        .lock()
        .map(|mut w| w.insert(dir.clone()))
        .unwrap_or(true);
    if first {
        tracing::warn!(
            dir = %dir.escape_debug(),
            "not a version directory (versions are named 0001 to 9999); ignored: move it out of the store"
        );
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

/// A unix time as RFC 3339 (UTC, seconds), for messages. Total: see `unixtime::rfc3339`.
pub(crate) fn fmt_time(t: i64) -> String {
    crate::unixtime::rfc3339(t)
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
        let root =
            Dir::open(&self.root).map_err(fs_error::at("open the shared directory", &self.root))?;
        let ensure = |d: &Dir, rel: &str, mode: u32| -> Result<Dir> {
            let name = rel.rsplit('/').next().unwrap_or(rel);
            d.ensure_dir(name, mode)
                .map_err(fs_error::at("create the directory", &self.at(rel)))
        };
        let web = ensure(&root, "webroot", 0o755)?;
        let wk = ensure(&web, "webroot/.well-known", 0o755)?;
        ensure(&wk, "webroot/.well-known/acme-challenge", 0o755)?;
        ensure(&root, "accounts", 0o700)?;
        ensure(&root, "store", 0o700)?;
        ensure(&root, "state", 0o700)?;
        ensure(&root, "locks", 0o755)?;
        Ok(())
    }

    /// `<shared_dir>/<rel>`: the path messages name.
    fn at(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
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
        let list = dir.list();
        for name in list.map_err(fs_error::at("list", &self.webroot_path()))? {
            if !is_ours(&name) {
                continue;
            }
            let Ok(st) = dir.stat(&name) else { continue };
            let regular = rustix::fs::FileType::from_raw_mode(st.st_mode)
                == rustix::fs::FileType::RegularFile;
            if regular && st.st_mtime < cutoff {
                dir.remove(&name).map_err(fs_error::at(
                    "remove the stale challenge file",
                    &self.webroot_path().join(&name),
                ))?;
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

    /// `<shared_dir>/dns01`: the ledger of TXT records DNS-01 placed and has not yet removed
    /// (created 0700 when missing).
    pub(crate) fn dns01_ledger(&self) -> Result<Dir> {
        let p = self.at("dns01");
        Dir::create_all(&p, 0o700).map_err(fs_error::at("create", &p))
    }

    pub(crate) fn locks(&self) -> Result<Dir> {
        let p = self.locks_path();
        Dir::open(&p).map_err(fs_error::at("open", &p))
    }

    /// `<shared_dir>/locks`, where the issuer lease lives.
    pub(crate) fn locks_path(&self) -> PathBuf {
        self.at("locks")
    }

    /// `accounts/<dir>/account.json`; `dir` is `Acme::account_dir` (the CA's host, or
    /// `staging/<host>` for a dry run's staging CA).
    pub(crate) fn account_path(&self, ca_host: &str) -> PathBuf {
        self.root
            .join("accounts")
            .join(ca_host)
            .join("account.json")
    }

    /// Read the account credentials for `ca_host`, if any.
    pub(crate) fn read_account(&self, ca_host: &str) -> Result<Option<Vec<u8>>> {
        let dir = match self.account_dir(ca_host) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match dir.read("account.json", META_MAX) {
            Ok(b) => Ok(Some(b)),
            Err(ReadError::NotFound) => Ok(None),
            Err(e) => Err(read_error(&self.account_path(ca_host), e)),
        }
    }

    /// What `accounts/<ca_host>/no-ari.json` says, if it exists.
    pub(crate) fn read_no_ari(&self, ca_host: &str) -> Result<Option<NoAri>> {
        let path = self.account_path(ca_host).with_file_name(NO_ARI);
        let dir = match self.account_dir(ca_host) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match dir.read(NO_ARI, META_MAX) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .with_context(|| format!("{} is not valid", path.display())),
            Err(ReadError::NotFound) => Ok(None),
            Err(e) => Err(read_error(&path, e)),
        }
    }

    /// Record that the CA at `ca_host` offers no ARI (`None`: remove the record, it does now).
    pub(crate) fn write_no_ari(&self, ca_host: &str, n: Option<&NoAri>) -> Result<()> {
        let path = self.account_path(ca_host).with_file_name(NO_ARI);
        let dir = self.ensure_account_dir(ca_host)?;
        match n {
            Some(n) => dir
                .replace(NO_ARI, &serde_json::to_vec_pretty(n)?, 0o644)
                .map_err(fs_error::at("write", &path)),
            None => match dir.remove(NO_ARI) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(FsError::new("remove", path, e).into())
                }
                _ => Ok(()),
            },
        }
    }

    /// accounts/<ca_host>, opened (each '/'-separated component without following a symlink).
    fn account_dir(&self, ca_host: &str) -> std::result::Result<Dir, FsError> {
        let path = self.at("accounts").join(ca_host);
        Dir::open(&self.root.join("accounts"))
            .and_then(|d| ca_host.split('/').try_fold(d, |d, c| d.open_dir(c)))
            .map_err(|e| FsError::new("open", path, e))
    }

    /// accounts/<ca_host>, created (each component 0700) if missing.
    fn ensure_account_dir(&self, ca_host: &str) -> Result<Dir> {
        let accounts = self.at("accounts");
        let mut dir = Dir::open(&accounts).map_err(fs_error::at("open", &accounts))?;
        let mut path = accounts;
        for c in ca_host.split('/') {
            path.push(c);
            dir = dir
                .ensure_dir(c, 0o700)
                .map_err(fs_error::at("create the directory", &path))?;
        }
        Ok(dir)
    }

    /// Save account credentials (0600) for `ca_host`. Exclusive: if another node saved one
    /// first, returns false and leaves theirs.
    pub(crate) fn save_account(&self, ca_host: &str, json: &[u8]) -> Result<bool> {
        let dir = self.ensure_account_dir(ca_host)?;
        let path = self.account_path(ca_host);
        let tmp = crate::safefs::temp_name("account.json");
        dir.create_new(&tmp, json, 0o600)
            .map_err(fs_error::at("write", &path.with_file_name(&tmp)))?;
        let res = dir.link(&tmp, "account.json");
        let _ = dir.remove(&tmp);
        match res {
            Ok(()) => {
                dir.sync()
                    .map_err(fs_error::at("fsync the directory of", &path))?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(FsError::new("save the account credentials as", path, e).into()),
        }
    }

    /// Replace the account credentials for `ca_host` (key rollover, a re-found account):
    /// written whole at 0600 and renamed over, so a reader sees the old or the new file.
    pub(crate) fn replace_account(&self, ca_host: &str, json: &[u8]) -> Result<()> {
        let dir = self.ensure_account_dir(ca_host)?;
        dir.replace("account.json", json, 0o600)
            .map_err(fs_error::at("write", &self.account_path(ca_host)))
    }

    /// Move the account credentials for `ca_host` aside (the CA no longer knows the account,
    /// or it was deactivated) as `account.json.retired-<unix time>`, kept for the record; the
    /// next issue creates a new account. Returns the new name, or None if there was none.
    pub(crate) fn retire_account(&self, ca_host: &str) -> Result<Option<PathBuf>> {
        let dir = match self.account_dir(ca_host) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let to = format!("account.json.retired-{}", now());
        let path = self.account_path(ca_host);
        match dir.rename("account.json", &to) {
            Ok(()) => {
                dir.sync()
                    .map_err(fs_error::at("fsync the directory of", &path))?;
                Ok(Some(path.with_file_name(to)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FsError::new(format!("move aside (as {to})"), path, e).into()),
        }
    }

    /// `<shared_dir>/store`, where the versions and `current` links live.
    pub(crate) fn store_path(&self) -> PathBuf {
        self.root.join("store")
    }

    fn store_dir(&self) -> Result<Dir> {
        let p = self.root.join("store");
        Dir::open(&p).map_err(fs_error::at("open the store", &p))
    }

    /// `store/<lineage>`, None before its first version. A shared_dir without `store/` is a
    /// fresh one (nothing issued yet), unless shared_dir itself is missing (not mounted).
    fn lineage_dir(&self, lineage: &str) -> Result<Option<Dir>> {
        let store = match Dir::open(&self.store_path()) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.require_root()?;
                return Ok(None);
            }
            Err(e) => return Err(fs_error::at("open the store", &self.store_path())(e)),
        };
        match store.open_dir(lineage) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FsError::new("open", self.at("store").join(lineage), e).into()),
        }
    }

    /// The directory of version `number` and its name (`NNNN`).
    fn version_dir(&self, lineage: &str, number: u32) -> Result<(String, Dir)> {
        let name = format_version(number);
        let path = self.at("store").join(lineage);
        let d = self
            .lineage_dir(lineage)?
            .with_context(|| format!("{} does not exist", path.display()))?
            .open_dir(&name)
            .map_err(fs_error::at("open", &path.join(&name)))?;
        Ok((name, d))
    }

    /// The version `current` points at, if any.
    pub fn current(&self, lineage: &str) -> Result<Option<u32>> {
        let Some(d) = self.lineage_dir(lineage)? else {
            return Ok(None);
        };
        let path = self.at("store").join(lineage).join(CURRENT);
        let link = d.read_link(CURRENT).map_err(|e| {
            let what = match d.stat(CURRENT).map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode)) {
                Ok(rustix::fs::FileType::RegularFile) => "a regular file",
                Ok(rustix::fs::FileType::Directory) => "a directory",
                _ => return FsError::new("read the link", &path, e).into(),
            };
            anyhow::anyhow!(
                "{} is {what}, not a symlink to a version: move it aside and run `vipcert rollback` to point it at a kept version (or `vipcert issue`)",
                path.display()
            )
        })?;
        match link {
            None => Ok(None),
            Some(t) => match parse_version(&t) {
                Some(n) => Ok(Some(n)),
                // Debug quotes and escapes the target's control characters.
                None => bail!("{} points at {t:?}, not a version number", path.display()),
            },
        }
    }

    /// All kept versions, ascending. Only canonical names count (`parse_version`); any other
    /// entry but `current` and hidden temporaries is ignored, with a warning naming it.
    pub fn versions(&self, lineage: &str) -> Result<Vec<u32>> {
        let Some(d) = self.lineage_dir(lineage)? else {
            return Ok(vec![]);
        };
        let names = d
            .list()
            .map_err(fs_error::at("list", &self.at("store").join(lineage)))?;
        let mut v = Vec::new();
        for name in names {
            match parse_version(&name) {
                Some(n) => v.push(n),
                None if name == CURRENT || name.starts_with('.') => {}
                None => warn_not_a_version(lineage, &name),
            }
        }
        v.sort_unstable();
        Ok(v)
    }

    /// The number the next version of `lineage` gets: one past the newest. A number is never
    /// reused nor wrapped, so after `9999` there is none: an error that says what to do.
    /// `issue` asks before ordering, so a full counter wastes no certificate.
    pub(crate) fn next_version(&self, lineage: &str) -> Result<u32> {
        let newest = self.versions(lineage)?.last().copied().unwrap_or(0);
        if newest >= LAST_VERSION {
            let dir = self.store_path().join(lineage);
            bail!(
                "store/{lineage}/{} exists: no version number left (versions are named 0001 to 9999, and a number is never reused); if vipcert did not publish it, move store/{lineage}/{} out of the store; otherwise move {} aside (keep it for the record) and run `vipcert issue --force`, which starts the lineage again at 0001",
                format_version(newest),
                format_version(newest),
                dir.display()
            );
        }
        Ok(newest + 1)
    }

    /// Read one version's files (bounded, no symlinks followed).
    pub fn read(&self, lineage: &str, number: u32) -> Result<Version> {
        let (name, d) = self.version_dir(lineage, number)?;
        let dir = self.at("store").join(lineage).join(&name);
        let get = |f: &str, limit: u64| -> Result<Vec<u8>> {
            d.read(f, limit).map_err(|e| read_error(&dir.join(f), e))
        };
        let meta: Meta = serde_json::from_slice(&get("meta.json", META_MAX)?)
            .with_context(|| format!("{} is not valid", dir.join("meta.json").display()))?;
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

    /// Version `number`'s meta.json and cert.pem, not its key: for what only shows a version
    /// (`status`).
    pub(crate) fn read_public(&self, lineage: &str, number: u32) -> Result<(Meta, Vec<u8>)> {
        let (name, d) = self.version_dir(lineage, number)?;
        let dir = self.at("store").join(lineage).join(&name);
        let get = |f: &str, limit: u64| -> Result<Vec<u8>> {
            d.read(f, limit).map_err(|e| read_error(&dir.join(f), e))
        };
        let meta: Meta = serde_json::from_slice(&get("meta.json", META_MAX)?)
            .with_context(|| format!("{} is not valid", dir.join("meta.json").display()))?;
        Ok((meta, get("cert.pem", MAX_PEM_BYTES)?))
    }

    /// Mark version `number` of `lineage` revoked (written whole, then renamed into place).
    pub(crate) fn mark_revoked(&self, lineage: &str, number: u32, r: &Revoked) -> Result<()> {
        let (name, d) = self.version_dir(lineage, number)?;
        let path = self.at("store").join(lineage).join(name).join(REVOKED);
        d.replace(REVOKED, &serde_json::to_vec_pretty(r)?, 0o644)
            .map_err(fs_error::at("write", &path))
    }

    /// The revocation mark of version `number`, if it has one.
    pub(crate) fn revoked(&self, lineage: &str, number: u32) -> Result<Option<Revoked>> {
        let (name, d) = self.version_dir(lineage, number)?;
        let path = self.at("store").join(lineage).join(name).join(REVOKED);
        match d.read(REVOKED, META_MAX) {
            Ok(b) => serde_json::from_slice(&b).map(Some).with_context(|| {
                // Unreadable mark: treat as revoked-and-broken, never as "not revoked".
                format!(
                    "{} is not valid; the version counts as revoked",
                    path.display()
                )
            }),
            Err(ReadError::NotFound) => Ok(None),
            Err(e) => Err(read_error(&path, e)),
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
    ///
    /// An error means `current` did not move. Once it has, the version is published, and what
    /// fails after (the directory's fsync, pruning old versions) is logged as a warning naming
    /// the file: the caller reports success.
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
        let lpath = self.at("store").join(lineage);
        let ld = store
            .ensure_dir(lineage, 0o700)
            .map_err(fs_error::at("create the directory", &lpath))?;
        let next = self.next_version(lineage)?;
        let tmp = crate::safefs::temp_name("version");
        let tpath = lpath.join(&tmp);
        let vd = ld
            .ensure_dir(&tmp, 0o700)
            .map_err(fs_error::at("create the directory", &tpath))?;
        meta.version = next;
        let res = (|| -> Result<()> {
            let meta = serde_json::to_vec_pretty(&meta)?;
            let fullchain = issued.fullchain();
            for (f, data, mode) in [
                ("key.pem", issued.key_pem.as_bytes(), 0o600),
                ("cert.pem", issued.cert_pem.as_bytes(), 0o644),
                ("chain.pem", issued.chain_pem.as_bytes(), 0o644),
                ("fullchain.pem", fullchain.as_bytes(), 0o644),
                ("meta.json", &meta, 0o644),
            ] {
                vd.create_new(f, data, mode)
                    .map_err(fs_error::at("write", &tpath.join(f)))?;
            }
            vd.sync()
                .map_err(fs_error::at("fsync the new version directory", &tpath))?;
            // rename(2) onto an existing non-empty directory fails, so two publishers cannot
            // both claim the same number.
            ld.rename(&tmp, &format_version(next)).with_context(|| {
                format!(
                    "{} appeared while publishing",
                    lpath.join(format_version(next)).display()
                )
            })?;
            ld.sync()
                .map_err(fs_error::at("fsync the directory", &lpath))?;
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
        self.flip(&ld, lineage, next)?;
        // Published: from here on, nothing fails the run.
        if let Err(e) = self.prune(lineage, keep) {
            tracing::warn!(
                lineage,
                "version {} is published and current, but old versions were not pruned: {e:#}",
                format_version(next)
            );
        }
        Ok(next)
    }

    /// Point `current` (in the open lineage directory `ld`) at `number`. An error means it
    /// still points where it did; a failure after the rename (the directory's fsync) is only
    /// logged, since `current` has moved.
    fn flip(&self, ld: &Dir, lineage: &str, number: u32) -> Result<()> {
        let name = format_version(number);
        let path = self.at("store").join(lineage).join(CURRENT);
        let Err(e) = ld.replace_symlink(CURRENT, &name) else {
            return Ok(());
        };
        if ld.read_link(CURRENT).ok().flatten().as_deref() == Some(name.as_str()) {
            tracing::warn!(
                lineage,
                "current is version {name}, but the switch may not be durable yet: {}",
                FsError::new("fsync the directory of", &path, e)
            );
            return Ok(());
        }
        Err(
            anyhow::Error::from(FsError::new("replace the link", &path, e))
                .context(format!("version {name} is complete but not current")),
        )
    }

    /// Point `current` at an existing version (rollback).
    pub fn set_current(&self, lineage: &str, number: u32) -> Result<()> {
        let ld = self.lineage_dir(lineage)?.with_context(|| {
            format!(
                "{} does not exist",
                self.at("store").join(lineage).display()
            )
        })?;
        // Refuse to point at something that is not a complete version.
        self.read(lineage, number)?;
        self.flip(&ld, lineage, number)
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
            let name = format_version(n);
            ld.remove_flat_dir(&name).map_err(fs_error::at(
                "remove the old version",
                &self.at("store").join(lineage).join(&name),
            ))?;
        }
        Ok(())
    }

    /// `<shared_dir>/state/<lineage>.json`: the file `read_state` and `write_state` use.
    pub fn state_path(&self, lineage: &str) -> PathBuf {
        self.at("state").join(format!("{lineage}.json"))
    }

    /// The renewal bookkeeping of `lineage` (default if none yet).
    pub fn read_state(&self, lineage: &str) -> Result<State> {
        let path = self.state_path(lineage);
        let d = match Dir::open(&self.at("state")) {
            Ok(d) => d,
            // A fresh shared_dir: no run has kept state yet (a missing shared_dir is an error).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.require_root()?;
                return Ok(State::default());
            }
            Err(e) => return Err(fs_error::at("open", &self.at("state"))(e)),
        };
        match d.read(&format!("{lineage}.json"), META_MAX) {
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("{} is not valid", path.display())),
            Err(ReadError::NotFound) => Ok(State::default()),
            Err(e) => Err(read_error(&path, e)),
        }
    }

    /// Replace the renewal bookkeeping of `lineage` (write-temp + rename).
    pub fn write_state(&self, lineage: &str, state: &State) -> Result<()> {
        let path = self.state_path(lineage);
        let d = Dir::open(&self.at("state")).map_err(fs_error::at("open", &self.at("state")))?;
        d.replace(
            &format!("{lineage}.json"),
            &serde_json::to_vec_pretty(state)?,
            0o644,
        )
        .map_err(fs_error::at("write", &path))
    }
}

/// A refused bounded read of `path`, as an error naming it.
fn read_error(path: &Path, e: ReadError) -> anyhow::Error {
    match e {
        ReadError::Io(e) => FsError::new("read", path, e).into(),
        e => anyhow::anyhow!("cannot read {}: {e}", path.display()),
    }
}

/// Delete a version directory and its files (the store never nests deeper).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_pattern() {
        assert!(valid_token("abc-DEF_123"));
        assert!(valid_token(&"a".repeat(128)));
        assert!(!valid_token(&"a".repeat(129)));
        for bad in [
            "",
            "..",
            "a/b",
            "a.b",
            "%2e",
            "a b",
            "/etc/passwd",
            ".hidden",
        ] {
            assert!(!valid_token(bad), "{bad}");
        }
    }

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

    /// The CA's "no ARI" record: absent, written (times clamped when read back), removed.
    #[test]
    fn no_ari_record_round_trips_and_goes() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::new(t.path());
        s.init().unwrap();
        assert_eq!(s.read_no_ari("ca_443").unwrap(), None);
        let n = NoAri {
            checked_at: UnixTime::new(1_800_000_000),
            retry_after: UnixTime::new(1_800_086_400),
        };
        s.write_no_ari("ca_443", Some(&n)).unwrap();
        assert_eq!(s.read_no_ari("ca_443").unwrap(), Some(n));
        std::fs::write(
            t.path().join("accounts/ca_443/no-ari.json"),
            r#"{"checked_at": 1e300, "retry_after": -5}"#,
        )
        .unwrap();
        let back = s.read_no_ari("ca_443").unwrap().unwrap();
        assert_eq!(
            (back.checked_at.get(), back.retry_after.get()),
            (crate::unixtime::MAX, 0)
        );
        s.write_no_ari("ca_443", None).unwrap();
        s.write_no_ari("ca_443", None).unwrap();
        assert_eq!(s.read_no_ari("ca_443").unwrap(), None);
    }

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
    fn only_canonical_names_are_versions_and_the_counter_never_wraps() {
        for (name, n) in [("0001", Some(1)), ("0042", Some(42)), ("9999", Some(9999))] {
            assert_eq!(parse_version(name), n, "{name}");
            assert_eq!(format_version(n.unwrap()), name);
        }
        for name in [
            "0000",
            "00005",
            "5",
            "4294967295",
            "99999",
            "+001",
            "00a1",
            "",
            "current",
        ] {
            assert_eq!(parse_version(name), None, "{name}");
        }
        let t = tempfile::tempdir().unwrap();
        let s = Store::new(t.path());
        s.init().unwrap();
        let (i, m) = issued();
        let l = "vip.example.org";
        assert_eq!(s.next_version(l).unwrap(), 1);
        s.publish(l, &i, m.clone(), 5, || Ok(())).unwrap();
        let ld = t.path().join("store").join(l);
        for stray in ["4294967295", "00005", "0000", "5", "x"] {
            std::fs::create_dir(ld.join(stray)).unwrap();
        }
        assert_eq!(s.versions(l).unwrap(), vec![1]);
        assert_eq!(s.publish(l, &i, m.clone(), 5, || Ok(())).unwrap(), 2);
        // `current` naming a non-canonical version is refused, not opened as another.
        std::fs::remove_file(ld.join(CURRENT)).unwrap();
        std::os::unix::fs::symlink("00002", ld.join(CURRENT)).unwrap();
        assert!(s.current(l).is_err());
        std::fs::remove_file(ld.join(CURRENT)).unwrap();
        std::os::unix::fs::symlink("0002", ld.join(CURRENT)).unwrap();

        // Full: a clear error naming the directory; nothing published, current unchanged.
        std::fs::create_dir(ld.join("9999")).unwrap();
        let e = format!("{:#}", s.next_version(l).unwrap_err());
        assert!(
            e.contains("store/vip.example.org/9999 exists: no version number left"),
            "{e}"
        );
        let e = s.publish(l, &i, m, 5, || Ok(())).unwrap_err();
        assert!(format!("{e:#}").contains("no version number left"), "{e:#}");
        assert_eq!(s.current(l).unwrap(), Some(2));
        assert_eq!(s.versions(l).unwrap(), vec![1, 2, 9999]);
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

    /// Once `current` has flipped the version is published: a failure after it (here: an old
    /// version that cannot be pruned) is a warning, never the publish's error.
    #[test]
    fn publish_succeeds_once_current_flipped_even_if_pruning_fails() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::new(t.path());
        s.init().unwrap();
        let (i, m) = issued();
        assert_eq!(
            s.publish("v.example.org", &i, m.clone(), 1, || Ok(()))
                .unwrap(),
            1
        );
        // A directory inside 0001: remove_flat_dir cannot remove it.
        std::fs::create_dir(t.path().join("store/v.example.org/0001/stray")).unwrap();
        assert_eq!(s.publish("v.example.org", &i, m, 1, || Ok(())).unwrap(), 2);
        assert_eq!(s.current("v.example.org").unwrap(), Some(2));
        assert_eq!(s.versions("v.example.org").unwrap(), vec![1, 2]);
        let e = format!("{:#}", s.prune("v.example.org", 1).unwrap_err());
        let want = t.path().join("store/v.example.org/0001");
        assert!(
            e.starts_with(&format!(
                "cannot remove the old version {}: ",
                want.display()
            )),
            "{e}"
        );
    }

    /// Every I/O error names the file, absolute, and the step.
    #[test]
    fn state_errors_name_the_file() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::new(t.path());
        s.init().unwrap();
        let p = t.path().join("state/v.example.org.json");
        std::fs::create_dir(&p).unwrap();
        let e = format!(
            "{:#}",
            s.write_state("v.example.org", &State::default())
                .unwrap_err()
        );
        assert!(
            e.starts_with(&format!("cannot write {}: ", p.display())),
            "{e}"
        );
        let e = format!("{:#}", s.read_state("v.example.org").unwrap_err());
        assert!(
            e.starts_with(&format!("cannot read {}: not a regular file", p.display())),
            "{e}"
        );
        std::fs::remove_dir(&p).unwrap();
        std::fs::write(&p, b"{").unwrap();
        let e = format!("{:#}", s.read_state("v.example.org").unwrap_err());
        assert!(
            e.starts_with(&format!("{} is not valid", p.display())),
            "{e}"
        );
        // A link target that is no version: named with the link, escaped.
        let (i, m) = issued();
        s.publish("v.example.org", &i, m, 5, || Ok(())).unwrap();
        let cur = t.path().join("store/v.example.org/current");
        std::fs::remove_file(&cur).unwrap();
        std::os::unix::fs::symlink("x\nOK", &cur).unwrap();
        let e = format!("{:#}", s.current("v.example.org").unwrap_err());
        assert!(
            e.starts_with(&format!("{} points at \"x\\nOK\"", cur.display())),
            "{e}"
        );
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

    /// A dry run's staging account (`staging/<host>`) lives in a directory of its own, 0700
    /// like every account's, and leaves the real account of the same host untouched.
    #[test]
    fn a_staging_account_is_kept_apart_from_the_real_one() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let s = Store::new(t.path());
        s.init().unwrap();
        assert!(s.save_account("ca", b"real").unwrap());
        assert!(s.read_account("staging/ca").unwrap().is_none());
        assert!(s.save_account("staging/ca", b"staging").unwrap());
        assert_eq!(s.read_account("ca").unwrap().unwrap(), b"real");
        assert_eq!(s.read_account("staging/ca").unwrap().unwrap(), b"staging");
        let file = t.path().join("accounts/staging/ca/account.json");
        assert_eq!(s.account_path("staging/ca"), file);
        for d in ["accounts/staging", "accounts/staging/ca"] {
            let m = std::fs::metadata(t.path().join(d)).unwrap();
            assert_eq!(m.permissions().mode() & 0o7777, 0o700, "{d}");
        }
        let m = std::fs::metadata(&file).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o600);
    }

    /// Times in state/, meta.json and revoked.json are clamped as they are read, and every
    /// formatter of them is total.
    #[test]
    fn times_read_back_are_clamped_and_format() {
        use crate::unixtime::{tests::EXTREMES, MAX, MIN};
        for t in EXTREMES {
            let s = fmt_time(t);
            assert!(s.ends_with('Z') && s.len() == 20, "{t}: {s}");
            let r = Revoked {
                reason: "keyCompromise".into(),
                revoked_at: t,
                by: "a".into(),
            };
            assert!(r.to_string().contains(&s), "{r}");
        }
        let st: State = serde_json::from_str(
            r#"{"next_attempt": 253402300800, "last_success": -9223372036854775808,
                "ari_end": 1e300, "ari_checked_at": 18446744073709551615, "failures": 1}"#,
        )
        .unwrap();
        assert_eq!(st.next_attempt.map(UnixTime::get), Some(MAX));
        assert_eq!(st.last_success.map(UnixTime::get), Some(MIN));
        assert_eq!(st.ari_end.map(UnixTime::get), Some(MAX));
        assert_eq!(st.ari_checked_at.map(UnixTime::get), Some(MAX));
        let r: Revoked =
            serde_json::from_str(r#"{"reason":"x","revoked_at":9223372036854775807,"by":"a"}"#)
                .unwrap();
        assert_eq!(r.revoked_at, MAX);
        let (_, mut m) = issued();
        m.issued_at = i64::MAX;
        m.leaf.not_before = i64::MIN;
        m.leaf.not_after = i64::MAX;
        let m: Meta = serde_json::from_slice(&serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(
            (m.issued_at, m.leaf.not_before, m.leaf.not_after),
            (MAX, MIN, MAX)
        );
        assert_eq!(m.leaf.lifetime_secs(), MAX);
    }
}
