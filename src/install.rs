//! `vipcert install`: put the store's current pair of each lineage of this node at every
//! install target, with the configured owner, group and mode, crash-safely, then run the
//! reload commands and deploy hooks once.
//!
//! Owns the target-side rules of DESIGN.md "Install": verify the store version before touching
//! anything; write each file under a temporary name with its final mode and owner, then rename
//! it over the target (so a target never holds a partial file and a symlink planted at a
//! target is replaced, never written through); an intent journal next to the targets so an
//! interrupted run is completed (files and hooks) by the next one; hooks only after the pair is
//! in place and verified, and only when something changed. It does not decide which version
//! is current (`store`, `renew`, `rollback`) and does not watch for changes (`watch` calls `run`).
//!
//! Failpoint: `VIPCERT_TEST_CRASH_AFTER=N` makes the process SIGKILL itself right after its
//! N-th filesystem step of an install (journal write, temp create, chown, rename, directory
//! fsync, verification, each hook, journal removal). It exists so the crash-safety test can
//! stop the installer at every instant; it is read from the environment only, never from the
//! config, and does nothing when unset.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cert::{self, Problem, MAX_PEM_BYTES};
use crate::config::Config;
use crate::plan::{Lineage, Plan, Target};
use crate::safefs::{Dir, ReadError};
use crate::store::{format_version, now, Store};

/// The intent journal, in the directory of the first target's certificate.
pub const JOURNAL: &str = ".vipcert-install.journal";
/// Environment variable of the crash failpoint (see the module documentation).
pub const CRASH_ENV: &str = "VIPCERT_TEST_CRASH_AFTER";
/// A reload command or deploy hook that runs longer than this is killed and reported.
const HOOK_TIMEOUT: Duration = Duration::from_secs(300);

static STEPS: AtomicU64 = AtomicU64::new(0);

/// Count one filesystem step; die by SIGKILL when the failpoint says so.
fn step(what: &str) {
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    let limit = *LIMIT.get_or_init(|| std::env::var(CRASH_ENV).ok()?.parse().ok());
    let n = STEPS.fetch_add(1, Ordering::SeqCst) + 1;
    if limit == Some(n) {
        eprintln!("{CRASH_ENV}: killing myself after step {n} ({what})");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        std::process::abort();
    }
}

/// What the journal records: which pair is being put in place.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Journal {
    pub lineage: String,
    pub version: u32,
    pub cert_sha256: String,
    pub key_sha256: String,
    pub started_at: i64,
    pub pid: u32,
}

/// The verified bytes to install for one lineage.
#[derive(Debug, Clone)]
pub struct Pair {
    pub lineage: String,
    pub version: u32,
    /// fullchain.pem (install.fullchain = true) or cert.pem.
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub names: Vec<String>,
    pub serial: String,
}

/// Read `current` of `l` and verify it (see `verified_version`); None before the first issue.
pub fn verified_pair(cfg: &Config, store: &Store, l: &Lineage) -> Result<Option<Pair>> {
    match store.current(&l.name)? {
        None => Ok(None),
        Some(n) => verified_version(cfg, store, l, n).map(Some),
    }
}

/// Read version `n` of `l` and verify it as install needs it: every file a bounded regular
/// file (no symlinks), the certificate parses, the key belongs to it, CN and SAN set as
/// planned, fullchain.pem starts with cert.pem. Errors name the file. Rollback and `issue`
/// ask the same question through this one function.
pub fn verified_version(cfg: &Config, store: &Store, l: &Lineage, n: u32) -> Result<Pair> {
    let v = store.read(&l.name, n)?;
    let dir = format!("store/{}/{}", l.name, format_version(n));
    let (cert_bytes, cert_file) = if cfg.install.fullchain {
        (v.fullchain_pem, "fullchain.pem")
    } else {
        (v.cert_pem.clone(), "cert.pem")
    };
    let named = |p: Problem| -> anyhow::Error {
        match p {
            Problem::NoKey | Problem::BadKey(_) => anyhow!("{dir}/key.pem: {p}"),
            Problem::KeyMismatch => anyhow!("{dir}/key.pem does not belong to {dir}/{cert_file}"),
            _ => anyhow!("{dir}/{cert_file}: {p}"),
        }
    };
    let info = cert::verify_pair(&cert_bytes, &v.key_pem, l).map_err(named)?;
    if cfg.install.fullchain {
        // The leaf of fullchain.pem must be cert.pem's certificate.
        let leaf = cert::leaf_info(&v.cert_pem).map_err(|p| anyhow!("{dir}/cert.pem: {p}"))?;
        if leaf.sha256 != info.sha256 {
            bail!("{dir}/fullchain.pem does not start with the certificate of {dir}/cert.pem");
        }
    }
    Ok(Pair {
        lineage: l.name.clone(),
        version: n,
        cert: cert_bytes,
        key: v.key_pem,
        names: l.names.clone(),
        serial: info.serial,
    })
}

/// A user or group: a name looked up in /etc/passwd or /etc/group, or a number.
fn lookup_id(db: &str, name: &str) -> Result<u32> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    let text = std::fs::read_to_string(db).with_context(|| format!("cannot read {db}"))?;
    id_in(&text, name).ok_or_else(|| {
        anyhow!(
            "{name:?} is not in {db}; create it or set install owner/group to an existing {}",
            if db.ends_with("passwd") {
                "user"
            } else {
                "group"
            }
        )
    })
}

/// (first field, third field) of each line with a numeric third field: the name and id of an
/// /etc/passwd or /etc/group text. `drift` names owners with it the other way round.
pub(crate) fn id_entries(text: &str) -> impl Iterator<Item = (&str, u32)> {
    text.lines().filter_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        f.next()?;
        Some((name, f.next()?.trim().parse().ok()?))
    })
}

/// The third field of the line whose first field is `name` (passwd and group share this).
fn id_in(text: &str, name: &str) -> Option<u32> {
    id_entries(text).find(|&(n, _)| n == name).map(|(_, id)| id)
}

pub fn uid_of(name: &str) -> Result<u32> {
    lookup_id("/etc/passwd", name)
}

pub fn gid_of(name: &str) -> Result<u32> {
    lookup_id("/etc/group", name)
}

/// One file to put in place.
struct Want<'a> {
    path: PathBuf,
    data: &'a [u8],
    mode: u32,
    uid: u32,
    gid: u32,
}

#[derive(Debug, PartialEq)]
enum FileState {
    Same,
    /// Right bytes, wrong owner/group/mode.
    Meta,
    /// Missing, different bytes, or not a regular file (e.g. a planted symlink).
    Content,
}

fn split(path: &Path) -> Result<(&Path, String)> {
    match (path.parent(), path.file_name()) {
        (Some(d), Some(f)) => Ok((d, f.to_string_lossy().into_owned())),
        _ => bail!("{} is not a file path", path.display()),
    }
}

/// Open a target's directory, creating it (0755) if missing. The directory itself must not be
/// a symlink: an install path that leads elsewhere through a link is refused, not followed.
fn target_dir(dir: &Path) -> Result<Dir> {
    if std::fs::symlink_metadata(dir).is_err() {
        Dir::create_all(dir, 0o755)
            .with_context(|| format!("cannot create install directory {}", dir.display()))?;
    }
    Dir::open(dir).with_context(|| {
        format!(
            "cannot open install directory {} (a symlink there is refused: configure the real directory)",
            dir.display()
        )
    })
}

fn file_state(dir: &Dir, name: &str, w: &Want) -> Result<FileState> {
    match dir.read(name, MAX_PEM_BYTES) {
        Ok(b) if b == w.data => {}
        Ok(_) | Err(ReadError::NotFound | ReadError::NotRegular | ReadError::TooLarge { .. }) => {
            return Ok(FileState::Content)
        }
        Err(ReadError::Io(e)) => {
            return Err(e).with_context(|| format!("cannot read {}", w.path.display()))
        }
    }
    let st = dir
        .stat(name)
        .with_context(|| format!("cannot stat {}", w.path.display()))?;
    if st.st_uid == w.uid && st.st_gid == w.gid && st.st_mode & 0o7777 == w.mode {
        Ok(FileState::Same)
    } else {
        Ok(FileState::Meta)
    }
}

/// Write-temp (final mode and owner) + fsync + rename + fsync dir, each counted as a step.
fn put(dir: &Dir, name: &str, w: &Want) -> Result<()> {
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
    if let Err(e) = dir.rename(&tmp, name) {
        let _ = dir.remove(&tmp);
        return Err(e).with_context(|| format!("cannot rename the new file onto {p}"));
    }
    step("renamed");
    dir.sync()
        .with_context(|| format!("cannot fsync the directory of {p}"))?;
    step("dir synced");
    Ok(())
}

/// Remove temporary files an interrupted run left next to `name`.
fn sweep_temps(dir: &Dir, name: &str) -> Result<()> {
    let prefix = format!(".{name}.tmp.");
    for f in dir.list()? {
        if f.starts_with(&prefix) {
            dir.remove(&f)?;
            step("stale temp removed");
        }
    }
    Ok(())
}

/// What happened to one lineage on this node.
#[derive(Debug)]
pub enum Outcome {
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
}

/// The result of one `install` run.
#[derive(Debug, Default)]
pub struct Report {
    pub lineages: Vec<(String, Outcome)>,
    /// Hook command lines that failed, with why.
    pub hook_failures: Vec<String>,
    /// Hook commands that ran (reload then deploy hooks), in order.
    pub hooks_run: usize,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.hook_failures.is_empty()
            && !self
                .lineages
                .iter()
                .any(|(_, o)| matches!(o, Outcome::Refused(_)))
    }

    /// Did any target change?
    pub fn changed(&self) -> bool {
        self.lineages
            .iter()
            .any(|(_, o)| matches!(o, Outcome::Installed { .. }))
    }

    pub fn summary(&self, targets: &[Target]) -> String {
        let mut s = String::new();
        let paths: Vec<String> = targets
            .iter()
            .flat_map(|t| [t.cert.display().to_string(), t.key.display().to_string()])
            .collect();
        for (l, o) in &self.lineages {
            let _ = match o {
                Outcome::UpToDate { version } => {
                    writeln!(s, "{l}: up to date (version {})", format_version(*version))
                }
                Outcome::Installed {
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
                    writeln!(
                        s,
                        "{l}: {what} version {} at {}{j}",
                        format_version(*version),
                        paths.join(", ")
                    )
                }
                Outcome::NotIssued => writeln!(
                    s,
                    "{l}: not issued yet (store/{l} has no current version; run `vipcert issue`)"
                ),
                Outcome::Refused(e) => {
                    writeln!(s, "{l}: REFUSED, nothing was changed: {e}")
                }
            };
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

/// A lineage whose files changed: hooks still to run, journal to remove afterwards.
struct Changed<'a> {
    pair: Pair,
    journal_dir: Dir,
    l: &'a Lineage,
}

/// Install every lineage of `node` under `root` (the targets of `plan::targets(cfg, root)`).
/// Per-lineage refusals are in the report; `Err` only for problems that stop everything
/// (cannot open the store, cannot resolve owners).
pub fn run(cfg: &Config, plan: &Plan, store: &Store, node: &str, root: &Path) -> Result<Report> {
    let targets = crate::plan::targets(cfg, root);
    let mut report = Report::default();
    let mut changed: Vec<Changed> = Vec::new();
    // Resolve owners before any write: a typo in a user name must not leave a half-done run.
    let mut ids = Vec::new();
    for t in &targets {
        ids.push((
            uid_of(&t.owner).with_context(|| format!("install owner for {}", t.cert.display()))?,
            gid_of(&t.group).with_context(|| format!("install group for {}", t.cert.display()))?,
        ));
    }
    for l in plan.for_node(node) {
        let pair = match verified_pair(cfg, store, l) {
            Ok(Some(p)) => p,
            Ok(None) => {
                report.lineages.push((l.name.clone(), Outcome::NotIssued));
                continue;
            }
            Err(e) => {
                report
                    .lineages
                    .push((l.name.clone(), Outcome::Refused(format!("{e:#}"))));
                continue;
            }
        };
        match install_lineage(l, pair, &targets, &ids) {
            Ok((outcome, ch)) => {
                report.lineages.push((l.name.clone(), outcome));
                changed.extend(ch);
            }
            Err(e) => report
                .lineages
                .push((l.name.clone(), Outcome::Refused(format!("{e:#}")))),
        }
    }
    if changed.is_empty() {
        return Ok(report);
    }
    // Every changed pair is in place and verified: reload services once, then one deploy hook
    // run per changed lineage, then forget the journals.
    let main = &targets[0];
    let base_env = vec![("VIPCERT_NODE".to_string(), node.to_string())];
    for cmd in &cfg.install.reload {
        let mut env = base_env.clone();
        env.extend(lineage_env(&changed[0].pair, main));
        report.hooks_run += 1;
        if let Err(e) = run_hook(cmd, &env) {
            report.hook_failures.push(format!("reload {cmd:?}: {e:#}"));
        }
        step("reload ran");
    }
    for c in &changed {
        let mut env = base_env.clone();
        env.extend(lineage_env(&c.pair, main));
        for cmd in &cfg.install.deploy_hook {
            report.hooks_run += 1;
            if let Err(e) = run_hook(cmd, &env) {
                report
                    .hook_failures
                    .push(format!("deploy_hook {cmd:?} for {}: {e:#}", c.l.name));
            }
            step("deploy hook ran");
        }
    }
    for c in &changed {
        // A failed hook is reported, not retried by the next run: retrying a broken reload on
        // every `serve --watch` poll would not fix it.
        c.journal_dir
            .remove(JOURNAL)
            .and_then(|_| c.journal_dir.sync())
            .context("cannot remove the install journal")?;
        step("journal removed");
    }
    Ok(report)
}

/// The environment of hooks: certbot's names plus ours.
fn lineage_env(p: &Pair, main: &Target) -> Vec<(String, String)> {
    vec![
        ("RENEWED_LINEAGE".into(), p.lineage.clone()),
        ("RENEWED_DOMAINS".into(), p.names.join(" ")),
        ("VIPCERT_CERT".into(), main.cert.display().to_string()),
        ("VIPCERT_KEY".into(), main.key.display().to_string()),
        ("VIPCERT_VERSION".into(), format_version(p.version)),
        ("VIPCERT_SERIAL".into(), p.serial.clone()),
    ]
}

fn run_hook(cmd: &str, env: &[(String, String)]) -> Result<()> {
    tracing::info!(command = %cmd, "running hook");
    let mut child = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .spawn()
        .context("cannot start /bin/sh")?;
    let deadline = Instant::now() + HOOK_TIMEOUT;
    loop {
        if let Some(st) = child.try_wait()? {
            return if st.success() {
                Ok(())
            } else {
                Err(anyhow!("exited with {st}"))
            };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("killed after {} s", HOOK_TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn install_lineage<'a>(
    l: &'a Lineage,
    pair: Pair,
    targets: &[Target],
    ids: &[(u32, u32)],
) -> Result<(Outcome, Option<Changed<'a>>)> {
    let (jdir_path, _) = split(&targets[0].cert)?;
    let journal_dir = target_dir(jdir_path)?;
    // Serialise installers on this host (`serve --watch`, `renew`, a manual run): flock is a
    // local lock on the local target directory, never on the shared one.
    rustix::fs::flock(
        journal_dir.as_fd(),
        rustix::fs::FlockOperation::LockExclusive,
    )
    .with_context(|| format!("cannot lock {}", jdir_path.display()))?;
    // A run killed while writing the journal leaves its temporary file; nobody else writes
    // here while we hold the lock.
    sweep_temps(&journal_dir, JOURNAL)?;

    let pending: Option<Journal> = match journal_dir.read(JOURNAL, 64 * 1024) {
        Ok(b) => Some(serde_json::from_slice(&b).unwrap_or(Journal {
            lineage: l.name.clone(),
            version: 0,
            cert_sha256: String::new(),
            key_sha256: String::new(),
            started_at: 0,
            pid: 0,
        })),
        Err(ReadError::NotFound) => None,
        Err(e) => bail!("{}/{JOURNAL}: {e}", jdir_path.display()),
    };

    let mut files: Vec<(Dir, String, Want)> = Vec::new();
    for (t, &(uid, gid)) in targets.iter().zip(ids) {
        for (path, data, mode) in [
            (&t.key, &pair.key[..], t.key_mode),
            (&t.cert, &pair.cert[..], t.cert_mode),
        ] {
            let (d, name) = split(path)?;
            let dir = target_dir(d)?;
            // Before deciding whether anything changed, so a killed run's temporary files go
            // even when the targets turn out up to date.
            sweep_temps(&dir, &name)?;
            files.push((
                dir,
                name,
                Want {
                    path: path.clone(),
                    data,
                    mode,
                    uid,
                    gid,
                },
            ));
        }
    }
    let mut states = Vec::new();
    for (d, name, w) in &files {
        states.push(file_state(d, name, w)?);
    }
    let content = states.contains(&FileState::Content);
    let meta = states.contains(&FileState::Meta);
    if !content && !meta && pending.is_none() {
        return Ok((
            Outcome::UpToDate {
                version: pair.version,
            },
            None,
        ));
    }
    if let Some(j) = &pending {
        tracing::warn!(lineage = %l.name, version = j.version, pid = j.pid, "completing an interrupted install");
    }
    if content {
        let j = Journal {
            lineage: l.name.clone(),
            version: pair.version,
            cert_sha256: cert::sha256_hex(&pair.cert),
            key_sha256: cert::sha256_hex(&pair.key),
            started_at: now(),
            pid: std::process::id(),
        };
        journal_dir
            .replace(JOURNAL, &serde_json::to_vec_pretty(&j)?, 0o600)
            .context("cannot write the install journal")?;
        step("journal written");
    }
    for ((d, name, w), st) in files.iter().zip(&states) {
        if *st != FileState::Same {
            put(d, name, w)?;
        }
    }
    // Read back what is at the targets now: each pair must be the bytes we meant and verify.
    for pairs in files.chunks(2) {
        let [(kd, kn, kw), (cd, cn, cw)] = pairs else {
            unreachable!("files come in key, cert pairs")
        };
        let k = kd
            .read(kn, MAX_PEM_BYTES)
            .map_err(|e| anyhow!("{}: {e}", kw.path.display()))?;
        let c = cd
            .read(cn, MAX_PEM_BYTES)
            .map_err(|e| anyhow!("{}: {e}", cw.path.display()))?;
        if k != kw.data || c != cw.data {
            bail!(
                "{} or {} changed under us while installing",
                cw.path.display(),
                kw.path.display()
            );
        }
        cert::verify_pair(&c, &k, l)
            .map_err(|p| anyhow!("installed pair at {} fails: {p}", cw.path.display()))?;
    }
    step("verified");
    let hooks = content || pending.is_some();
    let outcome = Outcome::Installed {
        version: pair.version,
        content,
        completed_journal: pending.map(|j| j.version),
    };
    if !hooks {
        return Ok((outcome, None));
    }
    Ok((
        outcome,
        Some(Changed {
            pair,
            journal_dir,
            l,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_passwd_and_group_text() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nxrootd:x:998:997::/var/spool/xrootd:/sbin/nologin\n";
        assert_eq!(id_in(passwd, "root"), Some(0));
        assert_eq!(id_in(passwd, "xrootd"), Some(998));
        assert_eq!(id_in(passwd, "nobod"), None);
        assert_eq!(id_in(passwd, "x"), None);
        let group = "root:x:0:\nnogroup:x:65534:\n";
        assert_eq!(id_in(group, "nogroup"), Some(65534));
        assert_eq!(lookup_id("/nonexistent", "1234").unwrap(), 1234);
        assert!(lookup_id("/etc/passwd", "no-such-user-vipcert").is_err());
    }
}
