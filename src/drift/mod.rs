//! The drift checker (`vipcert check`): does every node hold the right, current, safe
//! certificate? Findings {node, lineage, check, severity, detail} in a fixed order, modelled
//! on cert-manager's policy chain, and the four outputs monitoring reads (text, JSON, Nagios,
//! Prometheus textfile).
//!
//! Owns: the finding vocabulary (`Check`, `Severity`, `Finding`), the pure evaluation of a
//! node's public facts against the plan, the store and the clock, in the fixed order, the
//! `Report` and `run` (local or fleet, then render). It does not read a node's files
//! (`local`), read the store (`store_view`), talk to the fleet (`fleet`) or render
//! (`output`); it does not install or repair anything (`install`), and it never reads or
//! sends key material: only "does the key belong to the certificate" leaves a node.
//!
//! Drift is data, not an error: a missing file or an unreachable node is a finding; only a
//! broken config or an unreadable shared directory root is an error.

mod fleet;
mod local;
mod output;
mod store_view;

pub use crate::status::{FileFacts, Observation};
pub use fleet::check_fleet;
pub use local::{check_local, name_of, observe, observe_bytes, observe_node, Ids};
pub use output::{exit_code, failed, json, nagios, prometheus, text, SCHEMA};
pub use store_view::{read_store, StoreVersion, StoreView};

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::cert::{self, CertInfo};
use crate::cli::{CheckArgs, CheckFormat};
use crate::config::{Config, Node, Probe};
use crate::plan::{Lineage, Plan, Target};
use crate::status::Status;
use crate::store::fmt_time;
use crate::store::Store;

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
                fmt_time(v.leaf.not_after)
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
                let _ = write!(d, "; backoff until {}", fmt_time(t));
            }
            finding(None, l, Check::Renewal, Severity::Warning, None, d)
        }
        Ok(s) => {
            let mut d = String::from("no failed renewal");
            if let Some(t) = s.last_success {
                let _ = write!(d, "; last success {}", fmt_time(t));
            }
            if let Some(t) = s.next_attempt.filter(|&t| t > now) {
                let _ = write!(d, "; next attempt not before {}", fmt_time(t));
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
            format!("expired {} ago ({})", days(-left), fmt_time(leaf.not_after)),
        )
    } else if left <= c {
        (
            Severity::Critical,
            format!(
                "expires in {} ({}), critical below {}",
                days(left),
                fmt_time(leaf.not_after),
                days(c)
            ),
        )
    } else if left <= w {
        (
            Severity::Warning,
            format!(
                "expires in {} ({}), warning below {}",
                days(left),
                fmt_time(leaf.not_after),
                days(w)
            ),
        )
    } else {
        (
            Severity::Ok,
            format!("expires in {} ({})", days(left), fmt_time(leaf.not_after)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Sni;
    use crate::store::State;

    pub(super) const NOW: i64 = 1_800_000_000;

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

    pub(super) fn good_obs() -> Observation {
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

    pub(super) fn view() -> StoreView {
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

    pub(super) fn eval(
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
}
