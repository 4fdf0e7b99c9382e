//! The drift checker (`vipcert check`): does every node hold the right, current, safe
//! certificate? Findings {node, lineage, check, severity, detail} in a fixed order, modelled
//! on cert-manager's policy chain, and the four outputs monitoring reads (text, JSON, Nagios,
//! Prometheus textfile).
//!
//! Owns: what a node holds as public facts (`Observation`, gathered from the installed files
//! here or sent by the node in `/.well-known/vipcert/status`), the pure evaluation of those
//! facts against the plan, the store and the clock, the fleet requests (status, TLS probes)
//! and the output formats. It does not install or repair anything (`install`), and it never
//! reads or sends key material: only "does the key belong to the certificate" leaves a node.
//!
//! Drift is data, not an error: a missing file or an unreachable node is a finding; only a
//! broken config or an unreadable shared directory root is an error.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::cert::{self, CertInfo, Problem, MAX_PEM_BYTES};
use crate::challenge::Status;
use crate::cli::{CheckArgs, CheckFormat};
use crate::config::{Config, Node, Probe, Sni};
use crate::plan::{Lineage, Plan, Target};
use crate::safefs::{Dir, ReadError};
use crate::store::{State, Store};

/// Largest status document accepted from a node (100 lineages × a few targets is ~200 KiB).
const MAX_STATUS_BYTES: usize = 4 << 20;
/// /etc/passwd and /etc/group are read up to this size to name owners.
const MAX_IDS_BYTES: u64 = 4 << 20;
const DAY: i64 = 86_400;

// ---------------------------------------------------------------------------------------------
// Findings.

/// What was checked, in the fixed order findings are reported in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    /// store/<lineage>/current exists and reads.
    Store,
    /// state/<lineage>.json: failed renewals, backoff.
    Renewal,
    /// The node's status route answered (fleet only).
    Status,
    /// The installed cert and key files exist and are readable regular files.
    File,
    /// They parse as PEM certificate(s) and private key.
    Parse,
    /// The key belongs to the certificate.
    Key,
    /// CN and SAN set as planned.
    Names,
    /// Same leaf as store/<lineage>/current (SHA-256 of the DER).
    Current,
    /// Installed intermediates equal the store's chain.pem.
    Chain,
    /// Owner, group and mode as configured.
    Permissions,
    /// clientAuth present where the node needs it.
    Eku,
    /// Time left before notAfter.
    Expiry,
    /// A TLS endpoint on the node serves the store's certificate (fleet only).
    Probe,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Store => "store",
            Check::Renewal => "renewal",
            Check::Status => "status",
            Check::File => "file",
            Check::Parse => "parse",
            Check::Key => "key",
            Check::Names => "names",
            Check::Current => "current",
            Check::Chain => "chain",
            Check::Permissions => "permissions",
            Check::Eku => "eku",
            Check::Expiry => "expiry",
            Check::Probe => "probe",
        }
    }
}

/// Declaration order is the rank used for the overall status: a known breakage (critical)
/// outranks "could not tell" (unknown), which outranks a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Warning,
    Unknown,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warning => "warning",
            Severity::Unknown => "unknown",
            Severity::Critical => "critical",
        }
    }
    /// Nagios plugin exit codes, used by every format but prometheus.
    pub fn exit_code(self) -> u8 {
        match self {
            Severity::Ok => 0,
            Severity::Warning => 1,
            Severity::Critical => 2,
            Severity::Unknown => 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// None for store-wide findings (store, renewal).
    pub node: Option<String>,
    pub lineage: String,
    pub check: Check,
    pub severity: Severity,
    /// The installed file or probed endpoint the finding is about, if any.
    pub target: Option<String>,
    pub detail: String,
}

fn finding(
    node: Option<&str>,
    lineage: &str,
    check: Check,
    severity: Severity,
    target: Option<&str>,
    detail: impl Into<String>,
) -> Finding {
    Finding {
        node: node.map(str::to_string),
        lineage: lineage.to_string(),
        check,
        severity,
        target: target.map(str::to_string),
        detail: detail.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Observations: what a node holds, as public facts.

/// One installed file as seen on its node. `missing` and `error` are mutually exclusive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileFacts {
    pub path: String,
    pub missing: bool,
    /// Why it could not be read (not a regular file, permission, I/O).
    pub error: Option<String>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Names of uid and gid on the node, when it knows them.
    pub owner: Option<String>,
    pub group: Option<String>,
}

impl FileFacts {
    fn readable(&self) -> bool {
        !self.missing && self.error.is_none()
    }
}

/// What one install target of one lineage holds on a node. Public data only: the key file is
/// described by its metadata and whether it belongs to the certificate, never by its content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub lineage: String,
    pub cert: FileFacts,
    pub key: FileFacts,
    /// The first certificate of the cert file.
    pub leaf: Option<CertInfo>,
    pub cert_error: Option<String>,
    /// SHA-256 of each certificate after the leaf in the cert file.
    #[serde(default)]
    pub chain: Vec<String>,
    pub key_error: Option<String>,
    pub key_matches: Option<bool>,
}

/// Facts from the bytes of a cert file and a key file (None: not readable).
pub fn observe_bytes(
    lineage: &str,
    cert: FileFacts,
    cert_pem: Option<&[u8]>,
    key: FileFacts,
    key_pem: Option<&[u8]>,
) -> Observation {
    let mut o = Observation {
        lineage: lineage.to_string(),
        cert,
        key,
        leaf: None,
        cert_error: None,
        chain: vec![],
        key_error: None,
        key_matches: None,
    };
    let Some(cert_pem) = cert_pem else {
        return o;
    };
    match cert::pem_certs(cert_pem).and_then(|ders| {
        let leaf = cert::info_from_der(&ders[0])?;
        Ok((
            leaf,
            ders[1..].iter().map(|d| cert::sha256_hex(d)).collect(),
        ))
    }) {
        Ok((leaf, chain)) => {
            o.leaf = Some(leaf);
            o.chain = chain;
        }
        Err(e) => {
            o.cert_error = Some(e.to_string());
            return o;
        }
    }
    if let Some(key_pem) = key_pem {
        match cert::key_matches(cert_pem, key_pem) {
            Ok(()) => o.key_matches = Some(true),
            Err(Problem::KeyMismatch) => o.key_matches = Some(false),
            Err(e) => o.key_error = Some(e.to_string()),
        }
    }
    o
}

/// The node's user and group databases, to name owners the way `ls -l` does.
#[derive(Debug, Clone, Default)]
pub struct Ids {
    passwd: String,
    group: String,
}

impl Ids {
    pub fn load() -> Ids {
        let read = |name: &str| {
            Dir::open(Path::new("/etc"))
                .ok()
                .and_then(|d| d.read(name, MAX_IDS_BYTES).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        Ids {
            passwd: read("passwd"),
            group: read("group"),
        }
    }
    pub fn user(&self, uid: u32) -> Option<String> {
        name_of(&self.passwd, uid)
    }
    pub fn group(&self, gid: u32) -> Option<String> {
        name_of(&self.group, gid)
    }
}

/// The name with numeric id `id` in an /etc/passwd- or /etc/group-format text.
pub fn name_of(db: &str, id: u32) -> Option<String> {
    db.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let _pw = f.next()?;
        (f.next()?.trim().parse::<u32>().ok()? == id && !name.is_empty()).then(|| name.to_string())
    })
}

/// Read one installed file without following a symlink in its last component.
fn read_installed(path: &Path, ids: &Ids) -> (FileFacts, Option<Vec<u8>>) {
    let mut f = FileFacts {
        path: path.display().to_string(),
        ..FileFacts::default()
    };
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        f.error = Some("not a file path".into());
        return (f, None);
    };
    let name = name.to_string_lossy();
    let dir = match Dir::open(dir) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            f.missing = true;
            return (f, None);
        }
        Err(e) => {
            f.error = Some(format!("cannot open {}: {e}", dir.display()));
            return (f, None);
        }
    };
    let bytes = match dir.read(&name, MAX_PEM_BYTES) {
        Ok(b) => b,
        Err(ReadError::NotFound) => {
            f.missing = true;
            return (f, None);
        }
        Err(e) => {
            f.error = Some(e.to_string());
            return (f, None);
        }
    };
    if let Ok(st) = dir.stat(&name) {
        f.mode = Some(st.st_mode & 0o7777);
        f.uid = Some(st.st_uid);
        f.gid = Some(st.st_gid);
        f.owner = ids.user(st.st_uid);
        f.group = ids.group(st.st_gid);
    }
    (f, Some(bytes))
}

/// Read the cert and key of one target of `lineage`.
pub fn observe(lineage: &str, target: &Target, ids: &Ids) -> Observation {
    let (cf, cb) = read_installed(&target.cert, ids);
    let (kf, kb) = read_installed(&target.key, ids);
    observe_bytes(lineage, cf, cb.as_deref(), kf, kb.as_deref())
}

/// Every target of every lineage `node` installs, under `root`, in plan then target order.
/// The node server sends this in its status; local `check` evaluates it directly.
pub fn observe_node(lineages: &[String], targets: &[Target]) -> Vec<Observation> {
    let ids = Ids::load();
    lineages
        .iter()
        .flat_map(|l| targets.iter().map(|t| observe(l, t, &ids)))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The store as the checker sees it.

#[derive(Debug, Clone, PartialEq)]
pub struct StoreVersion {
    pub number: u32,
    pub leaf: CertInfo,
    /// SHA-256 of each certificate in chain.pem.
    pub chain: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct StoreView {
    pub lineage: String,
    /// Err: why current could not be read.
    pub current: Result<Option<StoreVersion>, String>,
    /// The other kept versions (to name the version a stale node still holds).
    pub others: Vec<StoreVersion>,
    pub state: Result<State, String>,
}

impl StoreView {
    fn current(&self) -> Option<&StoreVersion> {
        self.current.as_ref().ok().and_then(|c| c.as_ref())
    }
    /// The kept version whose leaf has this SHA-256.
    fn version_of(&self, sha256: &str) -> Option<&StoreVersion> {
        self.current()
            .into_iter()
            .chain(&self.others)
            .find(|v| v.leaf.sha256 == sha256)
    }
}

fn store_version(store: &Store, lineage: &str, n: u32) -> Result<StoreVersion, String> {
    let v = store.read(lineage, n).map_err(|e| format!("{e:#}"))?;
    let leaf = cert::leaf_info(&v.cert_pem)
        .map_err(|e| format!("store/{lineage}/{:04}/cert.pem: {e}", n))?;
    let chain = match cert::pem_certs(&v.chain_pem) {
        Ok(d) => d.iter().map(|d| cert::sha256_hex(d)).collect(),
        Err(Problem::NoCertificate) => vec![],
        Err(e) => return Err(format!("store/{lineage}/{:04}/chain.pem: {e}", n)),
    };
    Ok(StoreVersion {
        number: n,
        leaf,
        chain,
    })
}

/// Read what the store says about `lineage` (current, other versions, renewal state).
pub fn read_store(store: &Store, lineage: &str) -> StoreView {
    let current = match store.current(lineage) {
        Err(e) => Err(format!("{e:#}")),
        Ok(None) => Ok(None),
        Ok(Some(n)) => store_version(store, lineage, n).map(Some),
    };
    let cur_n = current
        .as_ref()
        .ok()
        .and_then(|c| c.as_ref())
        .map(|v| v.number);
    let others = store
        .versions(lineage)
        .unwrap_or_default()
        .into_iter()
        .filter(|&n| Some(n) != cur_n)
        .filter_map(|n| store_version(store, lineage, n).ok())
        .collect();
    StoreView {
        lineage: lineage.to_string(),
        current,
        others,
        state: store.read_state(lineage).map_err(|e| format!("{e:#}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation: plain functions of facts, plan and clock.

/// Expiry thresholds: time left before notAfter. None: a fraction of the lifetime (warn at
/// 1/3, critical at 1/6 left, like the renewal window of a 90-day certificate at 30/15 days).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Thresholds {
    pub warn: Option<Duration>,
    pub crit: Option<Duration>,
}

impl Thresholds {
    /// (warn, crit) in seconds left, for a certificate of `lifetime` seconds.
    pub fn for_lifetime(&self, lifetime: i64) -> (i64, i64) {
        let w = self
            .warn
            .map(|d| d.as_secs() as i64)
            .unwrap_or(lifetime / 3);
        let c = self
            .crit
            .map(|d| d.as_secs() as i64)
            .unwrap_or(lifetime / 6);
        // `--warn 5` alone must not leave a default critical above it: warning would never
        // show. Critical never starts before warning.
        (w, c.min(w))
    }
}

/// `--warn 20` (days), `--warn 20d`, `--warn 36h`.
pub fn parse_threshold(s: &str) -> Result<Duration, String> {
    if let Ok(days) = s.trim().parse::<u64>() {
        return Ok(Duration::from_secs(days * DAY as u64));
    }
    crate::config::parse_duration(s).map_err(|e| format!("{e} (or a number of days)"))
}

fn days(secs: i64) -> String {
    format!("{:.1} d", secs as f64 / DAY as f64)
}

fn date(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(16)]
}

/// Findings about the store itself and the renewal state of `view.lineage`.
pub fn store_findings(view: &StoreView, now: i64) -> Vec<Finding> {
    let l = &view.lineage;
    let mut out = Vec::new();
    out.push(match &view.current {
        Err(e) => finding(
            None,
            l,
            Check::Store,
            Severity::Critical,
            None,
            format!("cannot read the store: {e}"),
        ),
        Ok(None) => finding(
            None,
            l,
            Check::Store,
            Severity::Critical,
            None,
            format!("store/{l}/current does not exist: no certificate yet (run `vipcert issue`)"),
        ),
        Ok(Some(v)) => finding(
            None,
            l,
            Check::Store,
            Severity::Ok,
            None,
            format!(
                "current is version {:04}, serial {}, notAfter {}",
                v.number,
                v.leaf.serial,
                date(v.leaf.not_after)
            ),
        ),
    });
    out.push(match &view.state {
        Err(e) => finding(
            None,
            l,
            Check::Renewal,
            Severity::Warning,
            None,
            format!("renewal state unreadable: {e}"),
        ),
        Ok(s) if s.failures > 0 => {
            let mut d = format!(
                "{} failed renewal attempt(s), last: {}",
                s.failures,
                s.last_error.as_deref().unwrap_or("(no message)")
            );
            if let Some(t) = s.next_attempt.filter(|&t| t > now) {
                let _ = write!(d, "; backoff until {}", date(t));
            }
            finding(None, l, Check::Renewal, Severity::Warning, None, d)
        }
        Ok(s) => {
            let mut d = String::from("no failed renewal");
            if let Some(t) = s.last_success {
                let _ = write!(d, "; last success {}", date(t));
            }
            if let Some(t) = s.next_attempt.filter(|&t| t > now) {
                let _ = write!(d, "; next attempt not before {}", date(t));
            }
            finding(None, l, Check::Renewal, Severity::Ok, None, d)
        }
    });
    out
}

/// What a target should be: the plan's lineage, the configured pair, and the node.
pub struct Expected<'a> {
    pub node: &'a Node,
    pub lineage: &'a Lineage,
    pub target: &'a Target,
    /// install.fullchain: the cert file holds leaf + intermediates.
    pub fullchain: bool,
}

/// Does an owner named in the config (`root`, or a number) match what the node reports?
fn id_matches(want: &str, id: Option<u32>, name: Option<&str>) -> bool {
    name == Some(want) || id.map(|i| i.to_string()).as_deref() == Some(want)
}

fn describe_owner(id: Option<u32>, name: Option<&str>) -> String {
    match (name, id) {
        (Some(n), _) => n.to_string(),
        (None, Some(i)) => i.to_string(),
        (None, None) => "?".into(),
    }
}

/// Owner/group/mode problems of one file; (problems, key readable by others).
fn permission_problems(
    f: &FileFacts,
    owner: &str,
    group: &str,
    mode: u32,
    what: &str,
) -> Vec<String> {
    let mut p = Vec::new();
    if let Some(m) = f.mode {
        if m != mode {
            p.push(format!(
                "{what} {} has mode {m:04o}, configured {mode:04o}",
                f.path
            ));
        }
    }
    if f.uid.is_some() && !id_matches(owner, f.uid, f.owner.as_deref()) {
        p.push(format!(
            "{what} {} is owned by {}, configured {owner}",
            f.path,
            describe_owner(f.uid, f.owner.as_deref())
        ));
    }
    if f.gid.is_some() && !id_matches(group, f.gid, f.group.as_deref()) {
        p.push(format!(
            "{what} {} has group {}, configured {group}",
            f.path,
            describe_owner(f.gid, f.group.as_deref())
        ));
    }
    p
}

/// All findings for one target of one node, in the fixed order. A check whose input is
/// missing (the file did not read, the store has no current) is skipped: the earlier
/// finding already says why.
pub fn target_findings(
    want: &Expected,
    obs: &Observation,
    store: &StoreView,
    th: &Thresholds,
    now: i64,
) -> Vec<Finding> {
    let node = Some(want.node.hostname.as_str());
    let l = want.lineage.name.as_str();
    let path = Some(obs.cert.path.as_str());
    let f = |check, sev, detail: String| finding(node, l, check, sev, path, detail);
    let mut out = Vec::new();

    // file
    let mut bad = Vec::new();
    for (what, ff) in [("certificate", &obs.cert), ("key", &obs.key)] {
        if ff.missing {
            bad.push(format!("{what} {} is missing", ff.path));
        } else if let Some(e) = &ff.error {
            bad.push(format!("{what} {} is unreadable: {e}", ff.path));
        }
    }
    if bad.is_empty() {
        out.push(f(
            Check::File,
            Severity::Ok,
            format!("{} and {} readable", obs.cert.path, obs.key.path),
        ));
    } else {
        out.push(f(Check::File, Severity::Critical, bad.join("; ")));
    }
    if !obs.cert.readable() {
        return out;
    }

    // parse
    let leaf = match (&obs.leaf, &obs.cert_error) {
        (Some(leaf), None) => leaf,
        (_, e) => {
            out.push(f(
                Check::Parse,
                Severity::Critical,
                format!(
                    "{}: {}",
                    obs.cert.path,
                    e.as_deref().unwrap_or("no certificate")
                ),
            ));
            return out;
        }
    };
    match &obs.key_error {
        Some(e) => out.push(f(
            Check::Parse,
            Severity::Critical,
            format!("{}: {e}", obs.key.path),
        )),
        None => out.push(f(
            Check::Parse,
            Severity::Ok,
            format!(
                "leaf + {} chain certificate(s), {}",
                obs.chain.len(),
                leaf.key_type
            ),
        )),
    }

    // key
    match obs.key_matches {
        Some(true) => out.push(f(
            Check::Key,
            Severity::Ok,
            "the key belongs to the certificate".into(),
        )),
        Some(false) => out.push(f(
            Check::Key,
            Severity::Critical,
            format!(
                "the private key {} does not belong to the certificate {}",
                obs.key.path, obs.cert.path
            ),
        )),
        None => {}
    }

    // names
    match cert::names_match(leaf, want.lineage) {
        Ok(()) => out.push(f(
            Check::Names,
            Severity::Ok,
            format!(
                "CN {} and {} SANs as planned",
                want.lineage.cn(),
                want.lineage.names.len()
            ),
        )),
        Err(p) => out.push(f(Check::Names, Severity::Critical, p.to_string())),
    }

    // current
    let installed_version = store.version_of(&leaf.sha256);
    if let Some(cur) = store.current() {
        if cur.leaf.sha256 == leaf.sha256 {
            out.push(f(
                Check::Current,
                Severity::Ok,
                format!("version {:04} (store current)", cur.number),
            ));
        } else {
            let held = match installed_version {
                Some(v) => format!("version {:04}", v.number),
                None => format!(
                    "a certificate not in the store (sha256 {}…, serial {})",
                    short(&leaf.sha256),
                    leaf.serial
                ),
            };
            out.push(f(
                Check::Current,
                Severity::Warning,
                format!("holds {held}; store current is version {:04}: run `vipcert install` on the node", cur.number),
            ));
        }
    }

    // chain
    if want.fullchain {
        if let Some(v) = installed_version {
            if obs.chain == v.chain {
                out.push(f(
                    Check::Chain,
                    Severity::Ok,
                    format!("{} intermediate(s) as in the store", v.chain.len()),
                ));
            } else {
                out.push(f(
                    Check::Chain,
                    Severity::Critical,
                    format!(
                        "intermediates differ from store/{l}/{:04}/chain.pem: installed {} certificate(s) [{}], store {} [{}]",
                        v.number,
                        obs.chain.len(),
                        obs.chain.iter().map(|s| short(s)).collect::<Vec<_>>().join(", "),
                        v.chain.len(),
                        v.chain.iter().map(|s| short(s)).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
    } else if obs.chain.is_empty() {
        out.push(f(
            Check::Chain,
            Severity::Ok,
            "leaf only, as install.fullchain = false".into(),
        ));
    } else {
        out.push(f(
            Check::Chain,
            Severity::Warning,
            format!("the cert file holds {} certificate(s) after the leaf, but install.fullchain = false", obs.chain.len()),
        ));
    }

    // permissions
    let t = want.target;
    let mut perm = permission_problems(&obs.cert, &t.owner, &t.group, t.cert_mode, "certificate");
    let mut sev = Severity::Ok;
    if obs.key.readable() {
        perm.extend(permission_problems(
            &obs.key, &t.owner, &t.group, t.key_mode, "key",
        ));
        if obs.key.mode.is_some_and(|m| m & 0o077 != 0) {
            sev = Severity::Critical;
            perm.insert(
                0,
                format!(
                    "private key {} is readable by group or others",
                    obs.key.path
                ),
            );
        }
    }
    if perm.is_empty() {
        out.push(f(
            Check::Permissions,
            Severity::Ok,
            format!(
                "{}:{} cert {:04o} key {:04o}",
                t.owner, t.group, t.cert_mode, t.key_mode
            ),
        ));
    } else {
        out.push(f(
            Check::Permissions,
            sev.max(Severity::Warning),
            perm.join("; "),
        ));
    }

    // eku
    let eku = if leaf.eku.is_empty() {
        "none".to_string()
    } else {
        leaf.eku.join(", ")
    };
    if want.node.needs_client_auth && !leaf.has_client_auth() {
        out.push(f(
            Check::Eku,
            Severity::Warning,
            format!(
                "no clientAuth EKU (has {eku}) but the node has needs_client_auth = true: TLS client use (e.g. XRootD third-party copy) will fail"
            ),
        ));
    } else {
        out.push(f(Check::Eku, Severity::Ok, format!("EKU {eku}")));
    }

    // expiry
    out.push(expiry_finding(node, l, path, leaf, th, now));
    out
}

fn expiry_finding(
    node: Option<&str>,
    l: &str,
    path: Option<&str>,
    leaf: &CertInfo,
    th: &Thresholds,
    now: i64,
) -> Finding {
    let left = leaf.not_after - now;
    let (w, c) = th.for_lifetime(leaf.lifetime_secs());
    let (sev, d) = if left <= 0 {
        (
            Severity::Critical,
            format!("expired {} ago ({})", days(-left), date(leaf.not_after)),
        )
    } else if left <= c {
        (
            Severity::Critical,
            format!(
                "expires in {} ({}), critical below {}",
                days(left),
                date(leaf.not_after),
                days(c)
            ),
        )
    } else if left <= w {
        (
            Severity::Warning,
            format!(
                "expires in {} ({}), warning below {}",
                days(left),
                date(leaf.not_after),
                days(w)
            ),
        )
    } else {
        (
            Severity::Ok,
            format!("expires in {} ({})", days(left), date(leaf.not_after)),
        )
    };
    finding(node, l, Check::Expiry, sev, path, d)
}

/// Findings when a node's status could not be fetched, or answered as another node.
pub fn status_findings(
    node: &Node,
    lineages: &[&Lineage],
    status: &Result<Status, String>,
    addr: SocketAddr,
) -> Vec<Finding> {
    let n = Some(node.hostname.as_str());
    let target = format!("http://{addr}/.well-known/vipcert/status");
    lineages
        .iter()
        .map(|l| match status {
            Err(e) => finding(
                n,
                &l.name,
                Check::Status,
                Severity::Unknown,
                Some(&target),
                format!("cannot tell what the node holds: {e} (is `vipcert serve` running there?)"),
            ),
            Ok(s) if s.node != node.hostname => finding(
                n,
                &l.name,
                Check::Status,
                Severity::Critical,
                Some(&target),
                format!(
                    "{addr} answers as node {:?}: check the node's address and its `serve --node`",
                    s.node
                ),
            ),
            Ok(_) => finding(
                n,
                &l.name,
                Check::Status,
                Severity::Ok,
                Some(&target),
                "node server answered",
            ),
        })
        .collect()
}

/// The finding for one TLS probe of one node: the served leaf against the store.
pub fn probe_finding(
    node: &Node,
    probe: &Probe,
    endpoint: &str,
    served: &Result<CertInfo, String>,
    node_views: &[&StoreView],
    all_views: &[StoreView],
) -> Finding {
    let n = Some(node.hostname.as_str());
    let views = node_views;
    let lineage = views.first().map(|v| v.lineage.as_str()).unwrap_or("");
    let f = |l: &str, sev, d: String| finding(n, l, Check::Probe, sev, Some(endpoint), d);
    let leaf = match served {
        Err(e) => {
            return f(
                lineage,
                Severity::Unknown,
                format!("probe {}: {e}", probe.name),
            )
        }
        Ok(leaf) => leaf,
    };
    for v in views {
        if let Some(cur) = v.current() {
            if cur.leaf.sha256 == leaf.sha256 {
                return f(
                    &v.lineage,
                    Severity::Ok,
                    format!(
                        "probe {} serves version {:04} (store current)",
                        probe.name, cur.number
                    ),
                );
            }
        }
    }
    for v in views {
        if let (Some(old), Some(cur)) = (v.version_of(&leaf.sha256), v.current()) {
            return f(
                &v.lineage,
                Severity::Warning,
                format!(
                    "probe {} serves version {:04}, store current is {:04}: reload the service",
                    probe.name, old.number, cur.number
                ),
            );
        }
    }
    // Another lineage's certificate (per-host: a neighbour's pair copied by hand).
    for v in all_views {
        if let Some(other) = v.version_of(&leaf.sha256) {
            return f(
                lineage,
                Severity::Critical,
                format!(
                    "probe {} serves the certificate of lineage {} (version {:04}), not this node's",
                    probe.name, v.lineage, other.number
                ),
            );
        }
    }
    f(
        lineage,
        Severity::Critical,
        format!(
            "probe {} serves a certificate that is not in the store: CN {:?}, serial {}, sha256 {}…",
            probe.name,
            leaf.cn.as_deref().unwrap_or(""),
            leaf.serial,
            short(&leaf.sha256)
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// Report.

/// One installed certificate's dates, for perfdata and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Installed {
    pub node: String,
    pub lineage: String,
    pub path: String,
    pub sha256: String,
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// "local" or "fleet".
    pub mode: &'static str,
    pub checked_at: i64,
    pub findings: Vec<Finding>,
    pub certificates: Vec<Installed>,
    #[serde(skip)]
    pub thresholds: Thresholds,
    /// Fleet: did each node's status route answer.
    #[serde(skip)]
    pub nodes_up: Vec<(String, bool)>,
    /// Store current per lineage (number, notAfter).
    #[serde(skip)]
    pub store: Vec<(String, Option<(u32, i64)>)>,
}

impl Report {
    pub fn status(&self) -> Severity {
        self.findings
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Ok)
    }
    pub fn count(&self, s: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == s).count()
    }
    fn add_installed(&mut self, node: &str, obs: &Observation) {
        if let Some(leaf) = &obs.leaf {
            self.certificates.push(Installed {
                node: node.to_string(),
                lineage: obs.lineage.clone(),
                path: obs.cert.path.clone(),
                sha256: leaf.sha256.clone(),
                serial: leaf.serial.clone(),
                not_before: leaf.not_before,
                not_after: leaf.not_after,
            });
        }
    }
}

/// Exit code of a report in `format`: the Nagios codes, except prometheus, which exits 0
/// whenever it wrote metrics (the drift is in the metrics; a cron `… > f.tmp && mv` must
/// still move the file).
pub fn exit_code(report: &Report, format: CheckFormat) -> u8 {
    match format {
        CheckFormat::Prometheus => 0,
        _ => report.status().exit_code(),
    }
}

/// Check this node's installed files (`check` without `--fleet`).
pub fn check_local(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    node: &Node,
    root: &Path,
    th: Thresholds,
    now: i64,
) -> Report {
    let mut r = new_report("local", th, now);
    let targets = crate::plan::targets(cfg, root);
    let ids = Ids::load();
    let lineages: Vec<&Lineage> = plan.for_node(&node.hostname).collect();
    let views: Vec<StoreView> = lineages
        .iter()
        .map(|l| read_store(store, &l.name))
        .collect();
    for v in &views {
        r.findings.extend(store_findings(v, now));
        r.store.push(store_summary(v));
    }
    for (l, v) in lineages.iter().zip(&views) {
        for t in &targets {
            let obs = observe(&l.name, t, &ids);
            let want = Expected {
                node,
                lineage: l,
                target: t,
                fullchain: cfg.install.fullchain,
            };
            r.findings.extend(target_findings(&want, &obs, v, &th, now));
            r.add_installed(&node.hostname, &obs);
        }
    }
    r
}

fn new_report(mode: &'static str, th: Thresholds, now: i64) -> Report {
    Report {
        mode,
        checked_at: now,
        findings: vec![],
        certificates: vec![],
        thresholds: th,
        nodes_up: vec![],
        store: vec![],
    }
}

fn store_summary(v: &StoreView) -> (String, Option<(u32, i64)>) {
    (
        v.lineage.clone(),
        v.current().map(|c| (c.number, c.leaf.not_after)),
    )
}

/// Check every node through its status route and the configured TLS probes, concurrently.
pub async fn check_fleet(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    th: Thresholds,
    now: i64,
) -> Report {
    let mut r = new_report("fleet", th, now);
    let views: Vec<StoreView> = {
        let store = store.clone();
        let names: Vec<String> = plan.lineages.iter().map(|l| l.name.clone()).collect();
        // NFS reads can block: off the reactor.
        tokio::task::spawn_blocking(move || names.iter().map(|l| read_store(&store, l)).collect())
            .await
            .unwrap_or_default()
    };
    for v in &views {
        r.findings.extend(store_findings(v, now));
        r.store.push(store_summary(v));
    }
    let timeout = cfg.check.timeout;
    let tls = Arc::new(probe_client_config());
    let statuses = futures_util::future::join_all(cfg.nodes.iter().map(|n| {
        let addr = SocketAddr::new(n.address, cfg.check.status_port);
        let host = n.hostname.clone();
        async move { (addr, fetch_status(addr, &host, timeout).await) }
    }));
    let probes = futures_util::future::join_all(cfg.nodes.iter().flat_map(|n| {
        let tls = tls.clone();
        cfg.check.probes.iter().map(move |p| {
            let sni = match &p.sni {
                Sni::Node => n.hostname.clone(),
                Sni::Virtual => cfg.virtual_hostname.clone(),
                Sni::Name(s) => s.clone(),
            };
            let addr = SocketAddr::new(n.address, p.port);
            let tls = tls.clone();
            async move { tls_probe(tls, addr, &sni, timeout).await }
        })
    }));
    let (statuses, probes) = tokio::join!(statuses, probes);
    let targets = crate::plan::targets(cfg, &cfg.install.root);
    let mut probes = probes.into_iter();
    for (node, (addr, status)) in cfg.nodes.iter().zip(statuses) {
        let lineages: Vec<&Lineage> = plan.for_node(&node.hostname).collect();
        r.findings
            .extend(status_findings(node, &lineages, &status, addr));
        r.nodes_up.push((node.hostname.clone(), status.is_ok()));
        if let Some(st) = status.as_ref().ok().filter(|s| s.node == node.hostname) {
            for l in &lineages {
                let v = views
                    .iter()
                    .find(|v| v.lineage == l.name)
                    .expect("a view per lineage");
                let obs: Vec<&Observation> =
                    st.targets.iter().filter(|o| o.lineage == l.name).collect();
                if obs.len() != targets.len() {
                    r.findings.push(finding(
                        Some(&node.hostname),
                        &l.name,
                        Check::Status,
                        Severity::Unknown,
                        None,
                        format!(
                            "the node reports {} install target(s) for this lineage, this config has {}: is the node running the same config and vipcert version?",
                            obs.len(),
                            targets.len()
                        ),
                    ));
                    continue;
                }
                for (o, t) in obs.iter().zip(&targets) {
                    let want = Expected {
                        node,
                        lineage: l,
                        target: t,
                        fullchain: cfg.install.fullchain,
                    };
                    r.findings.extend(target_findings(&want, o, v, &th, now));
                    r.add_installed(&node.hostname, o);
                }
            }
        }
        let node_views: Vec<&StoreView> = views
            .iter()
            .filter(|v| lineages.iter().any(|l| l.name == v.lineage))
            .collect();
        for p in &cfg.check.probes {
            let (endpoint, served) = probes.next().expect("a result per probe");
            r.findings.push(probe_finding(
                node,
                p,
                &endpoint,
                &served,
                &node_views,
                &views,
            ));
        }
    }
    r
}

/// GET the node's status document by its real address, bounded in time and size.
async fn fetch_status(addr: SocketAddr, host: &str, timeout: Duration) -> Result<Status, String> {
    let started = Instant::now();
    let work = async {
        use http_body_util::{BodyExt, Empty, Limited};
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (mut tx, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("{addr}: {e}"))?;
        tokio::spawn(conn);
        let req = hyper::Request::get("/.well-known/vipcert/status")
            .header(hyper::header::HOST, host)
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = tx
            .send_request(req)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{addr} answered HTTP {}", resp.status()));
        }
        let body = Limited::new(resp.into_body(), MAX_STATUS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("{addr}: reading the status: {e}"))?
            .to_bytes();
        serde_json::from_slice::<Status>(&body)
            .map_err(|e| format!("{addr}: the status is not vipcert's: {e}"))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer from {addr} within {:?}",
            started.elapsed()
        )),
    }
}

/// Accepts any server certificate: the probe compares the served leaf with the store by
/// hash, so trust paths do not matter; handshake signatures are still verified, which proves
/// the server holds the key of the certificate it sent.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn probe_client_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth()
}

/// TLS handshake with `sni` at `addr`; the served leaf's facts. Returns the endpoint label.
async fn tls_probe(
    tls: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    sni: &str,
    timeout: Duration,
) -> (String, Result<CertInfo, String>) {
    let endpoint = format!("{addr} (SNI {sni})");
    let work = async {
        let name = rustls_pki_types::ServerName::try_from(sni.to_string())
            .map_err(|e| format!("SNI {sni:?}: {e}"))?;
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let tls = tokio_rustls::TlsConnector::from(tls)
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
        let der = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or_else(|| format!("{addr} sent no certificate"))?;
        cert::info_from_der(der)
            .map_err(|e| format!("{addr} served an unparsable certificate: {e}"))
    };
    let res = match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("no TLS handshake with {addr} within {timeout:?}")),
    };
    (endpoint, res)
}

/// `vipcert check`: the report and its rendering in `args.format`.
pub async fn run(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    args: &CheckArgs,
    node: Option<&str>,
) -> Result<(String, u8)> {
    if let (Some(w), Some(c)) = (args.warn, args.crit) {
        anyhow::ensure!(
            c <= w,
            "--crit ({c:?}) must not be longer than --warn ({w:?})"
        );
    }
    let th = Thresholds {
        warn: args.warn,
        crit: args.crit,
    };
    let now = crate::store::now();
    let report = if args.fleet {
        check_fleet(cfg, plan, store, th, now).await
    } else {
        let node = cfg.this_node(node)?.clone();
        let root = args
            .root
            .clone()
            .unwrap_or_else(|| cfg.install.root.clone());
        let (cfg2, plan2, store2) = (cfg.clone(), plan.clone(), store.clone());
        tokio::task::spawn_blocking(move || {
            check_local(&cfg2, &plan2, &store2, &node, &root, th, now)
        })
        .await?
    };
    let color = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none();
    let out = match args.format {
        CheckFormat::Text => text(&report, color),
        CheckFormat::Json => json(&report),
        CheckFormat::Nagios => nagios(&report),
        CheckFormat::Prometheus => prometheus(&report, true),
    };
    Ok((out, exit_code(&report, args.format)))
}

/// What `check` prints when it could not run at all (bad config, …): UNKNOWN, exit 3.
pub fn failed(format: CheckFormat, err: &anyhow::Error) -> (String, u8) {
    let msg = format!("{err:#}");
    let out = match format {
        CheckFormat::Nagios => format!("VIPCERT UNKNOWN - {}\n", msg.replace('\n', " ")),
        CheckFormat::Json => {
            let v = serde_json::json!({"schema": SCHEMA, "status": "unknown", "exit_code": 3, "error": msg});
            format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
        }
        CheckFormat::Prometheus => {
            let mut s = String::new();
            metric_head(
                &mut s,
                "vipcert_check_success",
                "gauge",
                "1 when vipcert check ran; 0 when it could not (see its stderr).",
            );
            s.push_str("vipcert_check_success 0\n");
            s
        }
        CheckFormat::Text => String::new(),
    };
    (out, 3)
}

// ---------------------------------------------------------------------------------------------
// Output formats.

/// Version of the JSON document; bumped only on incompatible changes.
pub const SCHEMA: u32 = 1;

pub fn json(r: &Report) -> String {
    let v = serde_json::json!({
        "schema": SCHEMA,
        "mode": r.mode,
        "checked_at": r.checked_at,
        "status": r.status(),
        "exit_code": r.status().exit_code(),
        "summary": {
            "ok": r.count(Severity::Ok),
            "warning": r.count(Severity::Warning),
            "critical": r.count(Severity::Critical),
            "unknown": r.count(Severity::Unknown),
        },
        "findings": r.findings,
        "certificates": r.certificates,
    });
    format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
}

fn paint(s: &str, sev: Severity, color: bool) -> String {
    if !color {
        return s.to_string();
    }
    let code = match sev {
        Severity::Ok => "32",
        Severity::Warning => "33",
        Severity::Unknown => "35",
        Severity::Critical => "1;31",
    };
    format!("\x1b[{code}m{s}\x1b[0m")
}

/// The readable table: a node's lineage whose checks all passed is one row (with its expiry),
/// so a healthy cluster of 20 nodes is 20 lines; one with a problem shows every check, so the
/// problem is seen in its context.
pub fn text(r: &Report, color: bool) -> String {
    let mut rows: Vec<(Severity, String, String, String, String)> = Vec::new();
    let node_of = |f: &Finding| f.node.clone().unwrap_or_else(|| "(store)".into());
    // Group by (node, lineage) in first-seen order.
    let mut order: Vec<(Option<String>, String)> = Vec::new();
    for f in &r.findings {
        let k = (f.node.clone(), f.lineage.clone());
        if !order.contains(&k) {
            order.push(k);
        }
    }
    for (node, lineage) in &order {
        let group: Vec<&Finding> = r
            .findings
            .iter()
            .filter(|f| &f.node == node && &f.lineage == lineage)
            .collect();
        let ok: Vec<&&Finding> = group
            .iter()
            .filter(|f| f.severity == Severity::Ok)
            .collect();
        if ok.len() == group.len() {
            // The most useful detail of a healthy group: its expiry, or the store's version.
            let exp = group
                .iter()
                .find(|f| f.check == Check::Expiry || f.check == Check::Store)
                .map(|f| format!("; {}", f.detail))
                .unwrap_or_default();
            rows.push((
                Severity::Ok,
                node_of(group[0]),
                lineage.clone(),
                format!("all {}", ok.len()),
                format!(
                    "{}{exp}",
                    group
                        .iter()
                        .map(|f| f.check.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            ));
            continue;
        }
        for f in group {
            rows.push((
                f.severity,
                node_of(f),
                f.lineage.clone(),
                f.check.as_str().to_string(),
                f.detail.clone(),
            ));
        }
    }
    let w = |i: usize| {
        rows.iter()
            .map(|r| match i {
                1 => r.1.len(),
                2 => r.2.len(),
                _ => r.3.len(),
            })
            .max()
            .unwrap_or(0)
    };
    let (w1, w2, w3) = (w(1).max(4), w(2).max(7), w(3).max(5));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<8}  {:<w1$}  {:<w2$}  {:<w3$}  DETAIL",
        "SEVERITY", "NODE", "LINEAGE", "CHECK"
    );
    for (sev, n, l, c, d) in &rows {
        let sv = paint(&format!("{:<8}", sev.as_str()), *sev, color);
        let _ = writeln!(s, "{sv}  {n:<w1$}  {l:<w2$}  {c:<w3$}  {d}");
    }
    let st = r.status();
    let _ = writeln!(
        s,
        "\n{}: {} critical, {} unknown, {} warning, {} ok ({} check, exit {})",
        paint(&st.as_str().to_uppercase(), st, color),
        r.count(Severity::Critical),
        r.count(Severity::Unknown),
        r.count(Severity::Warning),
        r.count(Severity::Ok),
        r.mode,
        st.exit_code()
    );
    s
}

/// Smallest time left per lineage over the installed certificates that could be read, with
/// the warn/crit thresholds of that certificate, in days.
fn days_left(r: &Report) -> Vec<(String, f64, f64, f64)> {
    let mut out: BTreeMap<String, (f64, f64, f64)> = BTreeMap::new();
    for c in &r.certificates {
        let (w, cr) = r.thresholds.for_lifetime(c.not_after - c.not_before);
        let d = |x: i64| x as f64 / DAY as f64;
        let left = d(c.not_after - r.checked_at);
        let e = out
            .entry(c.lineage.clone())
            .or_insert((f64::INFINITY, d(w), d(cr)));
        if left < e.0 {
            *e = (left, d(w), d(cr));
        }
    }
    out.into_iter().map(|(l, (a, b, c))| (l, a, b, c)).collect()
}

/// One line for Nagios/Icinga (status, summary, perfdata), then one line per problem.
pub fn nagios(r: &Report) -> String {
    let st = r.status();
    let problems: Vec<&Finding> = {
        let mut p: Vec<&Finding> = r
            .findings
            .iter()
            .filter(|f| f.severity != Severity::Ok)
            .collect();
        p.sort_by_key(|f| std::cmp::Reverse(f.severity));
        p
    };
    let summary = if problems.is_empty() {
        let nodes: std::collections::BTreeSet<&str> = r
            .findings
            .iter()
            .filter_map(|f| f.node.as_deref())
            .collect();
        format!(
            "{} lineage(s) on {} node(s) as planned",
            r.store.len(),
            nodes.len()
        )
    } else {
        let first = problems[0];
        format!(
            "{} critical, {} unknown, {} warning; {} {} {}: {}",
            r.count(Severity::Critical),
            r.count(Severity::Unknown),
            r.count(Severity::Warning),
            first.node.as_deref().unwrap_or("store"),
            first.lineage,
            first.check.as_str(),
            first.detail
        )
    };
    let summary = summary.replace('|', "/");
    let perf: Vec<String> = days_left(r)
        .iter()
        .map(|(l, left, w, c)| format!("'{}'={left:.2};{w:.2};{c:.2};;", l.replace('\'', "")))
        .collect();
    let mut s = format!("VIPCERT {} - {summary}", st.as_str().to_uppercase());
    if !perf.is_empty() {
        let _ = write!(s, " | {}", perf.join(" "));
    }
    s.push('\n');
    for f in problems.iter().skip(1) {
        let _ = writeln!(
            s,
            "{} {} {} {}: {}",
            f.severity.as_str().to_uppercase(),
            f.node.as_deref().unwrap_or("store"),
            f.lineage,
            f.check.as_str(),
            f.detail.replace('|', "/")
        );
    }
    s
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn metric_head(s: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(s, "# HELP {name} {help}");
    let _ = writeln!(s, "# TYPE {name} {kind}");
}

/// Text for node_exporter's textfile collector.
pub fn prometheus(r: &Report, success: bool) -> String {
    let mut s = String::new();
    metric_head(
        &mut s,
        "vipcert_check_success",
        "gauge",
        "1 when vipcert check ran; 0 when it could not (see its stderr).",
    );
    let _ = writeln!(s, "vipcert_check_success {}", u8::from(success));
    metric_head(
        &mut s,
        "vipcert_check_timestamp_seconds",
        "gauge",
        "When the check ran, unix seconds.",
    );
    let _ = writeln!(s, "vipcert_check_timestamp_seconds {}", r.checked_at);
    metric_head(
        &mut s,
        "vipcert_check_status",
        "gauge",
        "Overall result as a Nagios code: 0 ok, 1 warning, 2 critical, 3 unknown.",
    );
    let _ = writeln!(s, "vipcert_check_status {}", r.status().exit_code());
    metric_head(
        &mut s,
        "vipcert_check_findings",
        "gauge",
        "Findings of the check by severity.",
    );
    for sev in [
        Severity::Ok,
        Severity::Warning,
        Severity::Critical,
        Severity::Unknown,
    ] {
        let _ = writeln!(
            s,
            "vipcert_check_findings{{severity=\"{}\"}} {}",
            sev.as_str(),
            r.count(sev)
        );
    }
    metric_head(&mut s, "vipcert_cert_not_after_seconds", "gauge", "notAfter of the certificate installed on a node (earliest of its install targets), unix seconds.");
    let mut na: BTreeMap<(String, String), i64> = BTreeMap::new();
    for c in &r.certificates {
        let e = na
            .entry((c.lineage.clone(), c.node.clone()))
            .or_insert(c.not_after);
        *e = (*e).min(c.not_after);
    }
    for ((l, n), t) in &na {
        let _ = writeln!(
            s,
            "vipcert_cert_not_after_seconds{{lineage=\"{}\",node=\"{}\"}} {t}",
            label(l),
            label(n)
        );
    }
    metric_head(
        &mut s,
        "vipcert_store_not_after_seconds",
        "gauge",
        "notAfter of store/<lineage>/current, unix seconds.",
    );
    for (l, cur) in &r.store {
        if let Some((_, t)) = cur {
            let _ = writeln!(
                s,
                "vipcert_store_not_after_seconds{{lineage=\"{}\"}} {t}",
                label(l)
            );
        }
    }
    metric_head(
        &mut s,
        "vipcert_store_version",
        "gauge",
        "Version number store/<lineage>/current points at.",
    );
    for (l, cur) in &r.store {
        if let Some((n, _)) = cur {
            let _ = writeln!(s, "vipcert_store_version{{lineage=\"{}\"}} {n}", label(l));
        }
    }
    if r.mode == "fleet" {
        metric_head(
            &mut s,
            "vipcert_node_status_up",
            "gauge",
            "1 when the node's /.well-known/vipcert/status answered.",
        );
        for (n, up) in &r.nodes_up {
            let _ = writeln!(
                s,
                "vipcert_node_status_up{{node=\"{}\"}} {}",
                label(n),
                u8::from(*up)
            );
        }
    }
    metric_head(
        &mut s,
        "vipcert_drift",
        "gauge",
        "1 when the worst finding of (node, lineage, check) has this severity, else 0; node=\"\" is the shared store.",
    );
    let mut worst: BTreeMap<(String, String, Check), Severity> = BTreeMap::new();
    let mut order = Vec::new();
    for f in &r.findings {
        let k = (
            f.node.clone().unwrap_or_default(),
            f.lineage.clone(),
            f.check,
        );
        if !worst.contains_key(&k) {
            order.push(k.clone());
        }
        let e = worst.entry(k).or_insert(f.severity);
        *e = (*e).max(f.severity);
    }
    for k in &order {
        let sev = worst[k];
        for s2 in [Severity::Warning, Severity::Critical, Severity::Unknown] {
            let _ = writeln!(
                s,
                "vipcert_drift{{node=\"{}\",lineage=\"{}\",check=\"{}\",severity=\"{}\"}} {}",
                label(&k.0),
                label(&k.1),
                k.2.as_str(),
                s2.as_str(),
                u8::from(sev == s2)
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn node(needs_client_auth: bool) -> Node {
        Node {
            hostname: "dtn1.example.org".into(),
            address: "192.0.2.11".parse().unwrap(),
            weight: 1,
            needs_client_auth,
        }
    }

    fn lineage() -> Lineage {
        Lineage {
            name: "vip.example.org".into(),
            names: vec![
                "vip.example.org".into(),
                "dtn1.example.org".into(),
                "dtn2.example.org".into(),
            ],
            nodes: vec!["dtn1.example.org".into(), "dtn2.example.org".into()],
        }
    }

    fn target() -> Target {
        Target {
            cert: "/etc/c.pem".into(),
            key: "/etc/k.pem".into(),
            owner: "root".into(),
            group: "root".into(),
            cert_mode: 0o644,
            key_mode: 0o400,
        }
    }

    fn leaf(sha: &str, sans: &[&str], not_before: i64, not_after: i64) -> CertInfo {
        CertInfo {
            cn: Some(sans[0].into()),
            sans: sans.iter().map(|s| s.to_string()).collect(),
            serial: "01".into(),
            not_before,
            not_after,
            sha256: sha.into(),
            eku: vec!["serverAuth".into()],
            key_type: "ecdsa-p256".into(),
            issuer: "CN=test".into(),
            aki: None,
        }
    }

    const SANS: [&str; 3] = ["vip.example.org", "dtn2.example.org", "dtn1.example.org"];

    fn file(path: &str, mode: u32) -> FileFacts {
        FileFacts {
            path: path.into(),
            mode: Some(mode),
            uid: Some(0),
            gid: Some(0),
            owner: Some("root".into()),
            group: Some("root".into()),
            ..FileFacts::default()
        }
    }

    fn good_obs() -> Observation {
        Observation {
            lineage: "vip.example.org".into(),
            cert: file("/etc/c.pem", 0o644),
            key: file("/etc/k.pem", 0o400),
            leaf: Some(leaf("aa", &SANS, NOW - 30 * DAY, NOW + 60 * DAY)),
            cert_error: None,
            chain: vec!["cc".into()],
            key_error: None,
            key_matches: Some(true),
        }
    }

    fn view() -> StoreView {
        StoreView {
            lineage: "vip.example.org".into(),
            current: Ok(Some(StoreVersion {
                number: 2,
                leaf: leaf("aa", &SANS, NOW - 30 * DAY, NOW + 60 * DAY),
                chain: vec!["cc".into()],
            })),
            others: vec![StoreVersion {
                number: 1,
                leaf: leaf("bb", &SANS, NOW - 80 * DAY, NOW + 10 * DAY),
                chain: vec!["cc".into()],
            }],
            state: Ok(State::default()),
        }
    }

    fn eval(
        obs: &Observation,
        view: &StoreView,
        needs_client_auth: bool,
        th: Thresholds,
    ) -> Vec<Finding> {
        let (n, l, t) = (node(needs_client_auth), lineage(), target());
        let want = Expected {
            node: &n,
            lineage: &l,
            target: &t,
            fullchain: true,
        };
        target_findings(&want, obs, view, &th, NOW)
    }

    /// The non-ok findings as (check, severity).
    fn problems(f: &[Finding]) -> Vec<(Check, Severity)> {
        f.iter()
            .filter(|f| f.severity != Severity::Ok)
            .map(|f| (f.check, f.severity))
            .collect()
    }

    #[test]
    fn good_target_is_all_ok_in_fixed_order() {
        let f = eval(&good_obs(), &view(), false, Thresholds::default());
        let checks: Vec<Check> = f.iter().map(|f| f.check).collect();
        assert_eq!(
            checks,
            [
                Check::File,
                Check::Parse,
                Check::Key,
                Check::Names,
                Check::Current,
                Check::Chain,
                Check::Permissions,
                Check::Eku,
                Check::Expiry
            ]
        );
        assert!(problems(&f).is_empty(), "{f:#?}");
    }

    #[test]
    fn missing_and_unparsable_stop_the_chain() {
        let mut o = good_obs();
        o.cert.missing = true;
        o.leaf = None;
        let f = eval(&o, &view(), false, Thresholds::default());
        assert_eq!(problems(&f), [(Check::File, Severity::Critical)]);
        assert_eq!(f.len(), 1);
        let mut o = good_obs();
        o.leaf = None;
        o.cert_error = Some("no PEM certificate found".into());
        assert_eq!(
            problems(&eval(&o, &view(), false, Thresholds::default())),
            [(Check::Parse, Severity::Critical)]
        );
    }

    #[test]
    fn key_names_order_current_chain() {
        let mut o = good_obs();
        o.key_matches = Some(false);
        assert_eq!(
            problems(&eval(&o, &view(), false, Thresholds::default())),
            [(Check::Key, Severity::Critical)]
        );

        // Same names, other order: no finding. A missing node: critical.
        let mut o = good_obs();
        o.leaf.as_mut().unwrap().sans.reverse();
        assert!(problems(&eval(&o, &view(), false, Thresholds::default())).is_empty());
        let mut o = good_obs();
        o.leaf.as_mut().unwrap().sans.pop();
        let f = eval(&o, &view(), false, Thresholds::default());
        assert_eq!(problems(&f)[0], (Check::Names, Severity::Critical));

        // The previous version: warning naming both versions.
        let mut o = good_obs();
        o.leaf = Some(leaf("bb", &SANS, NOW - 80 * DAY, NOW + 50 * DAY));
        let f = eval(&o, &view(), false, Thresholds::default());
        assert_eq!(problems(&f), [(Check::Current, Severity::Warning)]);
        assert!(f.iter().any(|f| f
            .detail
            .contains("holds version 0001; store current is version 0002")));

        let mut o = good_obs();
        o.chain = vec![];
        assert_eq!(
            problems(&eval(&o, &view(), false, Thresholds::default())),
            [(Check::Chain, Severity::Critical)]
        );
    }

    #[test]
    fn permissions_owner_and_open_key() {
        let mut o = good_obs();
        o.cert.mode = Some(0o600);
        o.key.owner = Some("nobody".into());
        o.key.uid = Some(65534);
        let f = eval(&o, &view(), false, Thresholds::default());
        assert_eq!(problems(&f), [(Check::Permissions, Severity::Warning)]);
        let d = &f
            .iter()
            .find(|f| f.check == Check::Permissions)
            .unwrap()
            .detail;
        assert!(
            d.contains("mode 0600, configured 0644") && d.contains("owned by nobody"),
            "{d}"
        );
        let mut o = good_obs();
        o.key.mode = Some(0o644);
        assert_eq!(
            problems(&eval(&o, &view(), false, Thresholds::default())),
            [(Check::Permissions, Severity::Critical)]
        );
        // A numeric owner in the config matches the uid.
        assert!(id_matches("0", Some(0), None));
        assert!(!id_matches("root", Some(65534), Some("nobody")));
    }

    #[test]
    fn eku_only_where_needed() {
        assert!(problems(&eval(&good_obs(), &view(), false, Thresholds::default())).is_empty());
        assert_eq!(
            problems(&eval(&good_obs(), &view(), true, Thresholds::default())),
            [(Check::Eku, Severity::Warning)]
        );
        let mut o = good_obs();
        o.leaf.as_mut().unwrap().eku.push("clientAuth".into());
        assert!(problems(&eval(&o, &view(), true, Thresholds::default())).is_empty());
    }

    #[test]
    fn expiry_fractions_and_overrides() {
        let at = |left_days: i64| {
            let mut o = good_obs();
            o.leaf = Some(leaf(
                "aa",
                &SANS,
                NOW - (90 - left_days) * DAY,
                NOW + left_days * DAY,
            ));
            o
        };
        let sev = |o: &Observation, th: Thresholds| {
            eval(o, &view(), false, th)
                .into_iter()
                .find(|f| f.check == Check::Expiry)
                .unwrap()
                .severity
        };
        let d = Thresholds::default();
        assert_eq!(sev(&at(31), d), Severity::Ok);
        assert_eq!(sev(&at(29), d), Severity::Warning);
        assert_eq!(sev(&at(14), d), Severity::Critical);
        assert_eq!(sev(&at(-1), d), Severity::Critical);
        let th = Thresholds {
            warn: Some(parse_threshold("40").unwrap()),
            crit: Some(parse_threshold("35d").unwrap()),
        };
        assert_eq!(sev(&at(41), th), Severity::Ok);
        assert_eq!(sev(&at(39), th), Severity::Warning);
        assert_eq!(sev(&at(34), th), Severity::Critical);
        assert!(parse_threshold("soon").is_err());
        let warn_only = Thresholds {
            warn: Some(parse_threshold("5").unwrap()),
            crit: None,
        };
        assert_eq!(warn_only.for_lifetime(90 * DAY), (5 * DAY, 5 * DAY));
        assert_eq!(sev(&at(10), warn_only), Severity::Ok);
        assert_eq!(
            parse_threshold("36h").unwrap(),
            Duration::from_secs(36 * 3600)
        );
    }

    #[test]
    fn store_and_renewal_findings() {
        let mut v = view();
        assert!(store_findings(&v, NOW)
            .iter()
            .all(|f| f.severity == Severity::Ok));
        v.current = Ok(None);
        v.state = Ok(State {
            failures: 2,
            last_error: Some("rateLimited".into()),
            next_attempt: Some(NOW + 3600),
            ..State::default()
        });
        let f = store_findings(&v, NOW);
        assert_eq!(
            problems(&f),
            [
                (Check::Store, Severity::Critical),
                (Check::Renewal, Severity::Warning)
            ]
        );
        assert!(
            f[1].detail
                .contains("2 failed renewal attempt(s), last: rateLimited; backoff until"),
            "{}",
            f[1].detail
        );
        v.current = Err("permission denied".into());
        assert_eq!(store_findings(&v, NOW)[0].severity, Severity::Critical);
    }

    #[test]
    fn probe_compares_with_store() {
        let (n, v) = (node(false), view());
        let p = Probe {
            name: "xrootd".into(),
            port: 1094,
            sni: Sni::Node,
        };
        let ok = probe_finding(&n, &p, "e", &Ok(leaf("aa", &SANS, 0, 1)), &[&v], &[]);
        assert_eq!(ok.severity, Severity::Ok);
        let old = probe_finding(&n, &p, "e", &Ok(leaf("bb", &SANS, 0, 1)), &[&v], &[]);
        assert_eq!(old.severity, Severity::Warning);
        let other = probe_finding(&n, &p, "e", &Ok(leaf("zz", &SANS, 0, 1)), &[&v], &[]);
        assert_eq!(other.severity, Severity::Critical);
        let down = probe_finding(&n, &p, "e", &Err("refused".into()), &[&v], &[]);
        assert_eq!(down.severity, Severity::Unknown);
    }

    #[test]
    fn passwd_names() {
        let db = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
        assert_eq!(name_of(db, 0).as_deref(), Some("root"));
        assert_eq!(name_of(db, 65534).as_deref(), Some("nobody"));
        assert_eq!(name_of(db, 7), None);
        assert_eq!(name_of("garbage", 0), None);
    }

    fn report(findings: Vec<Finding>) -> Report {
        let mut r = new_report("local", Thresholds::default(), NOW);
        r.findings = findings;
        r.store = vec![("vip.example.org".into(), Some((2, NOW + 60 * DAY)))];
        r.certificates = vec![Installed {
            node: "dtn1.example.org".into(),
            lineage: "vip.example.org".into(),
            path: "/etc/c.pem".into(),
            sha256: "aa".into(),
            serial: "01".into(),
            not_before: NOW - 30 * DAY,
            not_after: NOW + 60 * DAY,
        }];
        r
    }

    #[test]
    fn formats_and_exit_codes() {
        let mut o = good_obs();
        o.key_matches = Some(false);
        let mut f = store_findings(&view(), NOW);
        f.extend(eval(&o, &view(), false, Thresholds::default()));
        let r = report(f);
        assert_eq!(r.status(), Severity::Critical);
        assert_eq!(exit_code(&r, CheckFormat::Nagios), 2);
        assert_eq!(exit_code(&r, CheckFormat::Prometheus), 0);
        let n = nagios(&r);
        assert!(n.starts_with("VIPCERT CRITICAL - 1 critical, 0 unknown, 0 warning; dtn1.example.org vip.example.org key: "), "{n}");
        assert!(n.contains("| 'vip.example.org'=60.00;30.00;15.00;;"), "{n}");
        let p = prometheus(&r, true);
        assert!(p.contains("vipcert_drift{node=\"dtn1.example.org\",lineage=\"vip.example.org\",check=\"key\",severity=\"critical\"} 1"), "{p}");
        assert!(p.contains("vipcert_cert_not_after_seconds{lineage=\"vip.example.org\",node=\"dtn1.example.org\"} "), "{p}");
        let j: serde_json::Value = serde_json::from_str(&json(&r)).unwrap();
        assert_eq!(j["status"], "critical");
        assert_eq!(j["exit_code"], 2);
        let t = text(&r, false);
        assert!(t.contains("critical  dtn1.example.org"), "{t}");
        // Unknown outranks warning, critical outranks unknown.
        let mut g = vec![finding(
            None,
            "l",
            Check::Renewal,
            Severity::Warning,
            None,
            "",
        )];
        g.push(finding(
            Some("n"),
            "l",
            Check::Status,
            Severity::Unknown,
            None,
            "",
        ));
        assert_eq!(report(g.clone()).status().exit_code(), 3);
        g.push(finding(
            Some("n"),
            "l",
            Check::Key,
            Severity::Critical,
            None,
            "",
        ));
        assert_eq!(report(g).status().exit_code(), 2);
        assert_eq!(report(vec![]).status().exit_code(), 0);
    }
}
