//! `vipcert install`: put the store's current pair of each lineage of this node at every
//! install target, with the configured owner, group and mode, crash-safely, then run the
//! reload commands and deploy hooks once.
//!
//! Owns the target-side rules of DESIGN.md "Install": verify the store version before touching
//! anything; reach every target directory from the install root without following a symlink
//! (`safefs::Dir::open_beneath`) and refuse, before any write, targets that cannot be replaced;
//! in files mode write every file under a temporary name with its final mode and owner, then
//! rename them in back to back, cert before key (so a target never holds a partial file and a
//! symlink planted at a target is replaced, never written through); in links mode hand each
//! pair to `links` (one switch per pair); an intent journal next to the targets so an
//! interrupted run is completed (files and hooks) by the next one; a report that says exactly
//! which targets changed when a run fails part way; hooks only after the pair is in place and
//! verified, and only when something changed. It does not decide which version
//! is current (`store`, `renew`, `rollback`) and does not watch for changes (`watch` calls
//! `run`).
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

use crate::cert::{self, MAX_PEM_BYTES};
use crate::config::{Config, InstallMode};
use crate::plan::{Lineage, Plan, Target};
use crate::safefs::{Dir, ReadError};
use crate::store::{format_version, now, Store};
use crate::verify;

pub(crate) mod links;
pub mod watch;

/// The intent journal, in the directory of the first target's certificate.
pub(crate) const JOURNAL: &str = ".vipcert-install.journal";
/// Environment variable of the crash failpoint (see the module documentation).
pub(crate) const CRASH_ENV: &str = "VIPCERT_TEST_CRASH_AFTER";
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
pub(crate) struct Journal {
    pub(crate) lineage: String,
    pub(crate) version: u32,
    pub(crate) cert_sha256: String,
    pub(crate) key_sha256: String,
    pub(crate) started_at: i64,
    pub(crate) pid: u32,
}

/// The verified bytes to install for one lineage.
#[derive(Debug, Clone)]
pub(crate) struct Pair {
    pub(crate) lineage: String,
    pub(crate) version: u32,
    /// fullchain.pem (install.fullchain = true) or cert.pem.
    pub(crate) cert: Vec<u8>,
    pub(crate) key: Vec<u8>,
    pub(crate) names: Vec<String>,
    pub(crate) serial: String,
}

/// Read `current` of `l` and verify it (see `verified_version`); None before the first issue.
pub(crate) fn verified_pair(cfg: &Config, store: &Store, l: &Lineage) -> Result<Option<Pair>> {
    match store.current(&l.name)? {
        None => Ok(None),
        Some(n) => verified_version(cfg, store, l, n).map(Some),
    }
}

/// Read version `n` of `l` and verify it with THE verification policy (`verify`): a version
/// with any critical failure is refused, with the failure (naming the file) and what to do.
/// Rollback and `issue` ask the same question through this one function.
pub(crate) fn verified_version(cfg: &Config, store: &Store, l: &Lineage, n: u32) -> Result<Pair> {
    let v = store.read(&l.name, n)?;
    let anchors = verify::Anchors::load(cfg.acme.ca_roots.as_deref())?;
    let revoked = store.revoked(&l.name, n)?.is_some();
    let want = verify::expect_for(cfg, l, revoked, now());
    let verdicts = verify::check_version(&v, &anchors, &want);
    if let Some(f) = verdicts.refusal() {
        bail!("{f}; this version is refused: issue a new certificate (`vipcert renew --force`) or roll back (`vipcert rollback`)");
    }
    let info = verdicts
        .leaf
        .expect("a version without a critical failure parsed");
    Ok(Pair {
        lineage: l.name.clone(),
        version: n,
        cert: if cfg.install.fullchain {
            v.fullchain_pem
        } else {
            v.cert_pem
        },
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

pub(crate) fn uid_of(name: &str) -> Result<u32> {
    lookup_id("/etc/passwd", name)
}

pub(crate) fn gid_of(name: &str) -> Result<u32> {
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

use crate::safefs::FileState;

fn split(path: &Path) -> Result<(&Path, String)> {
    match crate::safefs::split_path(path) {
        Some((d, f)) => Ok((d, f.to_string())),
        None => bail!("{} is not a file path", path.display()),
    }
}

/// Open a target's directory below the install root, creating missing directories (0755).
/// Every component below `root` is opened with O_NOFOLLOW: a symlink anywhere on the path
/// (`<root>/etc`, `<root>/etc/grid-security`, ...) is refused and named, never followed.
fn target_dir(root: &Path, dir: &Path) -> Result<Dir> {
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

fn file_state(dir: &Dir, name: &str, w: &Want) -> Result<FileState> {
    dir.state_of(name, w.data, (w.uid, w.gid, w.mode), MAX_PEM_BYTES)
        .with_context(|| format!("cannot read {}", w.path.display()))
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

/// Remove temporary files an interrupted run left next to `name`. A directory with such a
/// name is not ours to delete recursively: it is named so the operator can remove it.
fn sweep_temps(dir: &Dir, dir_path: &Path, name: &str) -> Result<()> {
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

/// What happened to one lineage on this node.
#[derive(Debug)]
pub(crate) enum Outcome {
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
    /// Failed after some targets were already replaced: the journal stays, so the next run
    /// completes the install (or a fix of the named problem does).
    Partial {
        error: String,
        changed: Vec<String>,
        unchanged: Vec<String>,
    },
}

/// The result of one `install` run.
#[derive(Debug, Default)]
pub struct Report {
    pub(crate) lineages: Vec<(String, Outcome)>,
    /// Hook command lines that failed, with why.
    pub(crate) hook_failures: Vec<String>,
    /// Hook commands that ran (reload then deploy hooks), in order.
    pub(crate) hooks_run: usize,
}

impl Report {
    /// No lineage was refused or half-installed and no hook failed.
    pub fn ok(&self) -> bool {
        self.hook_failures.is_empty()
            && !self
                .lineages
                .iter()
                .any(|(_, o)| matches!(o, Outcome::Refused(_) | Outcome::Partial { .. }))
    }

    /// What happened per lineage, for the terminal.
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
                    "{l}: not issued yet, nothing to install; run `vipcert issue` on one node (store/{l} has no current version)"
                ),
                Outcome::Refused(e) => {
                    writeln!(s, "{l}: REFUSED, nothing was changed: {e}")
                }
                Outcome::Partial {
                    error,
                    changed,
                    unchanged,
                } => writeln!(
                    s,
                    "{l}: FAILED part way: {error}\n  changed (new version): {}\n  NOT changed (old version): {}\n  the install journal stays: fix the problem and run `vipcert install` to complete it",
                    changed.join(", "),
                    if unchanged.is_empty() { "none".to_string() } else { unchanged.join(", ") }
                ),
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
    // An unmounted share reads as "not issued yet" otherwise: say so instead.
    store.require_root()?;
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
        match install_lineage(root, l, pair, &targets, &ids, cfg.install.mode) {
            Ok((outcome, ch)) => {
                report.lineages.push((l.name.clone(), outcome));
                changed.extend(ch);
            }
            Err((e, done)) if done.is_empty() => report
                .lineages
                .push((l.name.clone(), Outcome::Refused(format!("{e:#}")))),
            Err((e, done)) => {
                let all = targets.iter().flat_map(|t| [&t.cert, &t.key]);
                report.lineages.push((
                    l.name.clone(),
                    Outcome::Partial {
                        error: format!("{e:#}"),
                        unchanged: all
                            .filter(|p| !done.contains(p))
                            .map(|p| p.display().to_string())
                            .collect(),
                        changed: done.iter().map(|p| p.display().to_string()).collect(),
                    },
                ))
            }
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

/// One install target of a lineage: its directory (opened without following links), the two
/// entry names, and what should be there.
struct Slot<'a> {
    dir: Dir,
    dir_path: PathBuf,
    cert_name: String,
    key_name: String,
    cert: Want<'a>,
    key: Want<'a>,
}

/// Open and check every target of `pair` before anything is written: ancestors are no-follow
/// walked, stale temporaries swept, entries that cannot be replaced refused.
fn slots<'p>(
    root: &Path,
    pair: &'p Pair,
    targets: &[Target],
    ids: &[(u32, u32)],
    mode: InstallMode,
) -> Result<Vec<Slot<'p>>> {
    let mut out: Vec<Slot> = Vec::new();
    for (t, &(uid, gid)) in targets.iter().zip(ids) {
        let (cd, cert_name) = split(&t.cert)?;
        let (kd, key_name) = split(&t.key)?;
        if mode == InstallMode::Links && cd != kd {
            bail!(
                "install mode \"links\" needs the cert and key of a target in one directory: {} and {} are not",
                t.cert.display(),
                t.key.display()
            );
        }
        if mode == InstallMode::Links && out.iter().any(|s| s.dir_path == cd) {
            bail!(
                "install mode \"links\" needs one target per directory: {} holds two",
                cd.display()
            );
        }
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
        if let Some(kdir) = key_dir {
            // Files mode with the key elsewhere: a slot per directory keeps the code one shape.
            out.push(Slot {
                dir,
                dir_path: cd.to_path_buf(),
                cert_name,
                key_name: String::new(),
                cert: want(&t.cert, &pair.cert, t.cert_mode),
                key: want(&t.key, &[], 0),
            });
            out.push(Slot {
                dir: kdir,
                dir_path: kd.to_path_buf(),
                cert_name: String::new(),
                key_name,
                cert: want(&t.cert, &[], 0),
                key: want(&t.key, &pair.key, t.key_mode),
            });
            continue;
        }
        out.push(Slot {
            dir,
            dir_path: cd.to_path_buf(),
            cert_name,
            key_name,
            cert: want(&t.cert, &pair.cert, t.cert_mode),
            key: want(&t.key, &pair.key, t.key_mode),
        });
    }
    Ok(out)
}

impl Slot<'_> {
    /// (name, want) of the files this slot puts, cert first.
    fn files(&self) -> impl Iterator<Item = (&str, &Want<'_>)> {
        [(&self.cert_name, &self.cert), (&self.key_name, &self.key)]
            .into_iter()
            .filter(|(n, _)| !n.is_empty())
            .map(|(n, w)| (n.as_str(), w))
    }

    fn link_pair<'s>(&'s self, l: &'s Lineage, version: u32) -> links::LinkPair<'s> {
        links::LinkPair {
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
    fn read_back(&self, name: &str, path: &Path) -> Result<Vec<u8>> {
        let (d, n) = match links::resolve(&self.dir, name)
            .with_context(|| path.display().to_string())?
        {
            Some((d, n)) => (Some(d), n),
            None => (None, name.to_string()),
        };
        d.as_ref()
            .unwrap_or(&self.dir)
            .read(&n, MAX_PEM_BYTES)
            .map_err(|e| anyhow!("{}: {e}", path.display()))
    }
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

fn install_lineage<'a>(
    root: &Path,
    l: &'a Lineage,
    pair: Pair,
    targets: &[Target],
    ids: &[(u32, u32)],
    mode: InstallMode,
) -> std::result::Result<(Outcome, Option<Changed<'a>>), (anyhow::Error, Vec<PathBuf>)> {
    let mut changed = Vec::new();
    match install_lineage_inner(root, l, &pair, targets, ids, mode, &mut changed) {
        Ok((outcome, None)) => Ok((outcome, None)),
        Ok((outcome, Some(journal_dir))) => Ok((
            outcome,
            Some(Changed {
                pair,
                journal_dir,
                l,
            }),
        )),
        Err(e) => Err((e, changed)),
    }
}

fn install_lineage_inner(
    root: &Path,
    l: &Lineage,
    pair: &Pair,
    targets: &[Target],
    ids: &[(u32, u32)],
    mode: InstallMode,
    changed: &mut Vec<PathBuf>,
) -> Result<(Outcome, Option<Dir>)> {
    let (jdir_path, _) = split(&targets[0].cert)?;
    let journal_dir = target_dir(root, jdir_path)?;
    // Serialise installers on this host (`serve --watch`, `renew`, a manual run): flock is a
    // local lock on the local target directory, never on the shared one.
    rustix::fs::flock(
        journal_dir.as_fd(),
        rustix::fs::FlockOperation::LockExclusive,
    )
    .with_context(|| format!("cannot lock {}", jdir_path.display()))?;
    // A run killed while writing the journal leaves its temporary file; nobody else writes
    // here while we hold the lock.
    sweep_temps(&journal_dir, jdir_path, JOURNAL)?;

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

    let slots = slots(root, pair, targets, ids, mode)?;
    let (content, meta, states) = match mode {
        InstallMode::Files => {
            let mut states = Vec::new();
            for s in &slots {
                for (name, w) in s.files() {
                    states.push(file_state(&s.dir, name, w)?);
                }
            }
            let content = states.contains(&FileState::Content);
            (content, states.contains(&FileState::Meta), states)
        }
        InstallMode::Links => {
            let mut stale = false;
            for s in &slots {
                stale |= !s.link_pair(l, pair.version).up_to_date(&s.dir)?;
            }
            // A new version directory is content; owner/mode alone also makes a new one, so
            // links mode does not tell the two apart: any change runs the hooks.
            (stale, false, Vec::new())
        }
    };
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
    match mode {
        InstallMode::Files => put_files(&slots, &states, changed)?,
        InstallMode::Links => {
            for s in &slots {
                let lp = s.link_pair(l, pair.version);
                if !lp.up_to_date(&s.dir)? {
                    lp.put(&s.dir, &step).with_context(|| {
                        format!("cannot switch {} to the new version", s.cert.path.display())
                    })?;
                    changed.extend([s.cert.path.clone(), s.key.path.clone()]);
                }
            }
        }
    }
    // Read back what is at the targets now: each pair must be the bytes we meant and verify.
    // The bytes verified_version passed through the policy: equal bytes are verified.
    for s in &slots {
        for (name, w) in s.files() {
            let b = s.read_back(name, &w.path)?;
            if b != w.data {
                bail!("{} changed under us while installing", w.path.display());
            }
        }
    }
    step("verified");
    let hooks = content || pending.is_some();
    let outcome = Outcome::Installed {
        version: pair.version,
        content,
        completed_journal: pending.map(|j| j.version),
    };
    Ok((outcome, hooks.then_some(journal_dir)))
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
