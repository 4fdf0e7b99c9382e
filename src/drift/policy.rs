//! The drift checker's policy chain: for one install target of one node, one step function
//! per check, run in the documented order (docs/monitoring.md, "The checks and their
//! severities"); and the findings about the store itself and the issuer lease. The certificate checks are THE verification policy (`verify`), so that
//! `check` calls critical exactly what `install` refuses.
//!
//! Plain functions of facts, plan and clock: it reads nothing (`local`, `store_view`, the
//! node's status do) and renders nothing (`output`).

use std::fmt::Write as _;
use std::time::Duration;

use super::finding::{finding, Check, Finding, Severity};
use super::local::{FileFacts, Observation};
use super::store_view::StoreView;
use crate::cert::CertInfo;
use crate::config::Node;
use crate::plan::{Lineage, Target};
use crate::store::{fmt_time, State};
use crate::unixtime::UnixTime;
use crate::verify::{self, Failure, Step, Verdict};

pub(super) const DAY: i64 = 86_400;

/// Expiry thresholds: time left before notAfter. None: a fraction of the lifetime (warn at
/// 1/3, critical at 1/6 left, like the renewal window of a 90-day certificate at 30/15 days).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Thresholds {
    pub(crate) warn: Option<Duration>,
    pub(crate) crit: Option<Duration>,
}

impl Thresholds {
    /// (warn, crit) in seconds left, for a certificate of `lifetime` seconds.
    pub(crate) fn for_lifetime(&self, lifetime: i64) -> (i64, i64) {
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
pub(crate) fn parse_threshold(s: &str) -> Result<Duration, String> {
    if let Ok(days) = s.trim().parse::<u64>() {
        return Ok(Duration::from_secs(days * DAY as u64));
    }
    crate::config::parse_duration(s).map_err(|e| format!("{e} (or a number of days)"))
}

fn days(secs: i64) -> String {
    format!("{:.1} d", secs as f64 / DAY as f64)
}

pub(super) fn short(sha: &str) -> &str {
    &sha[..sha.len().min(16)]
}

/// A warning when `locks/issuer.lease` is stale (its holder ran on this host and is gone) or
/// bogus (its own times lie further apart than `lease_ttl`): renewals wait until the next
/// `renew` or `issue` takes it over (which it does, saying so). A lease held on another host
/// is judged only by watching it, which `check` does not do.
pub(crate) fn lease_finding(
    store: &crate::store::Store,
    timing: crate::lease::Timing,
) -> Option<Finding> {
    let h = crate::lease::Lease::holder(store).ok()??;
    let what = match crate::lease::dead_at_once(&h, &crate::lease::this_host()) {
        Some(why) => format!("is stale: {why}; the next `vipcert renew` or `issue` takes it over"),
        None => format!(
            "is bogus: {}; the next `vipcert renew` or `issue` takes it over once it has seen it unchanged for {}",
            crate::lease::bogus(&h, timing)?,
            humantime::format_duration(timing.window())
        ),
    };
    Some(finding(
        None,
        "issuer.lease",
        Check::Renewal,
        Severity::Warning,
        Some("locks/issuer.lease"),
        format!(
            "issuer lease of {} (host {}, pid {}) {what}",
            h.node, h.host, h.pid
        ),
    ))
}

/// A finding when this node's clock is more than 30 s off one source (like the lease, a
/// clock within bounds, or one that could not be compared, says nothing).
pub(crate) fn clock_finding(node: Option<&str>, r: &crate::clock::Reading) -> Option<Finding> {
    use crate::clock::SkewLevel;
    let severity = match r.level()? {
        SkewLevel::Ok => return None,
        SkewLevel::Warning => Severity::Warning,
        SkewLevel::Critical => Severity::Critical,
    };
    Some(finding(
        node,
        "clock",
        Check::Clock,
        severity,
        None,
        r.describe(),
    ))
}

/// Findings about the store itself and the renewal state of `view.lineage`.
pub(crate) fn store_findings(view: &StoreView, now: i64) -> Vec<Finding> {
    let l = &view.lineage;
    let mut out = vec![current_finding(view)];
    out.push(match &view.state {
        Err(e) => finding(
            None,
            l,
            Check::Renewal,
            Severity::Warning,
            None,
            format!("renewal state unreadable: {e}"),
        ),
        Ok(s) => renewal_finding(l, s, now, view.current().map(|v| v.leaf.not_after)),
    });
    if let Ok(s) = &view.state {
        let lifetime = view.current().map(|v| v.leaf.lifetime_secs());
        out.extend(bogus_state(s, lifetime).map(|why| {
            let d = format!("state/{l}.json is bogus: {why}; `vipcert renew` waits until then: remove the key from the file, or run `vipcert renew --force`");
            finding(None, l, Check::Renewal, Severity::Warning, None, d)
        }));
    }
    out
}

/// The store check of `view.lineage`: its current version, and whether install takes it.
fn current_finding(view: &StoreView) -> Finding {
    let l = &view.lineage;
    let (severity, detail) = match &view.current {
        Err(e) => (Severity::Critical, format!("cannot read the store: {e}")),
        // Critical: whatever serves this lineage has no certificate at all.
        Ok(None) if view.others.is_empty() => (
            Severity::Critical,
            format!("never issued: store/{l}/current does not exist and no version is kept; run `vipcert issue` on one node"),
        ),
        Ok(None) => (
            Severity::Critical,
            format!(
                "store/{l}/current does not exist, though versions {} are kept: point it at one with `vipcert rollback {l} --to N`, or run `vipcert issue` on one node",
                view.others.iter().map(|v| format!("{:04}", v.number)).collect::<Vec<_>>().join(", ")
            ),
        ),
        Ok(Some(v)) => match &v.refusal {
            Some(refusal) => (
                Severity::Critical,
                format!(
                    "current version {:04} fails the verification policy, so `vipcert install` refuses it: {refusal}; issue a new certificate (`vipcert renew --force`) or roll back to a good version (`vipcert rollback`)",
                    v.number
                ),
            ),
            None => (
                Severity::Ok,
                format!(
                    "current is version {:04}, serial {}, notAfter {}, from the CA {}",
                    v.number,
                    v.leaf.serial,
                    fmt_time(v.leaf.not_after),
                    v.ca
                ),
            ),
        },
    };
    finding(None, l, Check::Store, severity, None, detail)
}

/// The renewal state of lineage `l` at `now` (its current certificate valid until
/// `not_after`): failures, the backoff, and a next attempt no vipcert would record (a warning:
/// `renew` ignores it).
fn renewal_finding(l: &str, s: &State, now: i64, not_after: Option<i64>) -> Finding {
    let next = s.next_attempt.map(UnixTime::get).filter(|&t| t > now);
    let bogus = next.filter(|&t| !crate::retry::credible(t, now, not_after));
    let mut d = if s.failures > 0 {
        format!(
            "{} failed renewal attempt(s), last: {}",
            s.failures,
            s.last_error.as_deref().unwrap_or("(no message)")
        )
    } else {
        String::from("no failed renewal")
    };
    if let Some(t) = s.last_success.filter(|_| s.failures == 0) {
        let _ = write!(d, "; last success {t}");
    }
    let severity = match (bogus, next) {
        (Some(t), _) => {
            let _ = write!(
                d,
                "; state/{l}.json's next attempt {} is further ahead than vipcert ever waits: `vipcert renew` ignores it",
                fmt_time(t)
            );
            Severity::Warning
        }
        (None, Some(t)) if s.failures > 0 => {
            let _ = write!(d, "; backoff until {}", fmt_time(t));
            Severity::Warning
        }
        (None, Some(t)) => {
            let _ = write!(d, "; next attempt not before {}", fmt_time(t));
            Severity::Ok
        }
        (None, None) if s.failures > 0 => Severity::Warning,
        (None, None) => Severity::Ok,
    };
    finding(None, l, Check::Renewal, severity, None, d)
}

/// Why the times in a state file cannot be true: a wait lying further after the attempt that
/// set it than vipcert ever waits (a day of backoff; for a CA's Retry-After, a third of the
/// current certificate's lifetime; a day for an ARI retry). Compares the file's times with
/// each other only (a wait with no start is not judged), never with this node's clock: a
/// hand or a bug wrote it.
fn bogus_state(s: &crate::store::State, lifetime: Option<i64>) -> Option<String> {
    let longest = lifetime.map_or(DAY, |l| (l / 3).max(DAY));
    let waits = [
        (
            "next_attempt",
            s.next_attempt,
            "last_attempt",
            s.last_attempt,
            longest,
        ),
        (
            "ari_retry_after",
            s.ari_retry_after,
            "ari_checked_at",
            s.ari_checked_at,
            DAY,
        ),
    ];
    waits
        .into_iter()
        .find_map(|(key, until, from_key, from, max)| {
            let wait = until?.get().saturating_sub(from?.get());
            (wait > max).then(|| {
                format!(
                    "{key} lies {} after {from_key}, longer than vipcert ever waits ({})",
                    days(wait),
                    days(max)
                )
            })
        })
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

/// What a target should be: the plan's lineage, the configured pair, and the node.
pub(crate) struct Expected<'a> {
    pub(crate) node: &'a Node,
    pub(crate) lineage: &'a Lineage,
    pub(crate) target: &'a Target,
    /// install.fullchain: the cert file holds leaf + intermediates.
    pub(crate) fullchain: bool,
    /// `[acme] require_cn`: a certificate without a subject CN is wrong.
    pub(crate) require_cn: bool,
}

/// Everything one target's steps read.
struct Cx<'a> {
    want: &'a Expected<'a>,
    obs: &'a Observation,
    store: &'a StoreView,
    th: &'a Thresholds,
    now: i64,
}

impl Cx<'_> {
    fn f(&self, check: Check, sev: Severity, detail: String) -> Finding {
        finding(
            Some(&self.want.node.hostname),
            &self.want.lineage.name,
            check,
            sev,
            Some(&self.obs.cert.path),
            detail,
        )
    }
}

/// The failure of `step` among `verdicts`, if it ran and failed.
fn failure(verdicts: &[Verdict], step: Step) -> Option<&Failure> {
    verdicts
        .iter()
        .find(|v| v.step == step)
        .and_then(|v| v.failure.as_ref())
}

/// A policy failure as a finding's detail: the finding names the file already.
fn detail(f: &Failure) -> String {
    let s = f.to_string();
    match s.split_once(": ") {
        Some((file, rest)) if !file.contains(' ') => rest.to_string(),
        _ => s,
    }
}

/// All findings for one target of one node, in the fixed order of docs/monitoring.md:
/// file → parse → key → names → current → chain → permissions → eku → expiry. A check whose
/// input is missing (the file did not read, the store has no current) is skipped: the earlier
/// finding already says why. The certificate checks are THE verification policy (`verify`):
/// the file steps as the node computed them (`Observation::verdicts`), the fact steps here.
pub(crate) fn target_findings(
    want: &Expected,
    obs: &Observation,
    store: &StoreView,
    th: &Thresholds,
    now: i64,
) -> Vec<Finding> {
    let cx = Cx {
        want,
        obs,
        store,
        th,
        now,
    };
    let mut out = vec![file(&cx)];
    if !obs.cert.readable() {
        return out;
    }
    let Some(leaf) = parse(&cx, &mut out) else {
        return out;
    };
    let installed = store.version_of(&leaf.sha256);
    let expect = verify::Expect {
        lineage: want.lineage,
        client_auth: want.node.needs_client_auth,
        revoked: installed.is_some_and(|v| v.revoked),
        now,
        require_cn: want.require_cn,
    };
    let facts = verify::check_facts(leaf, &obs.cert.path, &expect);
    out.extend(key(&cx));
    out.push(names(&cx, &facts));
    out.extend(current(&cx, leaf, &facts));
    out.extend(chain(&cx));
    out.push(permissions(&cx));
    out.push(eku(&cx, leaf, &facts));
    out.push(expiry(&cx, leaf, &facts));
    out
}

/// Step 1: both files exist and read.
fn file(cx: &Cx) -> Finding {
    let obs = cx.obs;
    let mut bad = Vec::new();
    for (what, ff) in [("certificate", &obs.cert), ("key", &obs.key)] {
        if ff.missing {
            bad.push(format!("{what} {} is missing", ff.path));
        } else if let Some(e) = &ff.error {
            bad.push(format!("{what} {} is unreadable: {e}", ff.path));
        }
    }
    if bad.is_empty() {
        cx.f(
            Check::File,
            Severity::Ok,
            format!("{} and {} readable", obs.cert.path, obs.key.path),
        )
    } else {
        cx.f(Check::File, Severity::Critical, bad.join("; "))
    }
}

/// Step 2: the certificate and the key parse (the key unencrypted). The leaf, when it parsed.
fn parse<'o>(cx: &Cx<'o>, out: &mut Vec<Finding>) -> Option<&'o CertInfo> {
    let obs = cx.obs;
    let leaf = match (&obs.leaf, &obs.cert_error) {
        (Some(leaf), None) => leaf,
        (_, e) => {
            out.push(cx.f(
                Check::Parse,
                Severity::Critical,
                format!(
                    "{}: {}",
                    obs.cert.path,
                    e.as_deref().unwrap_or("no certificate")
                ),
            ));
            return None;
        }
    };
    out.push(match &obs.key_error {
        Some(e) => cx.f(
            Check::Parse,
            Severity::Critical,
            format!("{}: {e}", obs.key.path),
        ),
        None => cx.f(
            Check::Parse,
            Severity::Ok,
            format!(
                "leaf + {} chain certificate(s), {}",
                obs.chain.len(),
                leaf.key_type
            ),
        ),
    });
    Some(leaf)
}

/// Step 3: the key belongs to the certificate.
fn key(cx: &Cx) -> Option<Finding> {
    let obs = cx.obs;
    Some(match obs.key_matches? {
        true => cx.f(
            Check::Key,
            Severity::Ok,
            "the key belongs to the certificate".into(),
        ),
        false => cx.f(
            Check::Key,
            Severity::Critical,
            format!(
                "the private key {} does not belong to the certificate {}",
                obs.key.path, obs.cert.path
            ),
        ),
    })
}

/// Step 4: CN and SAN set as planned.
fn names(cx: &Cx, facts: &[Verdict]) -> Finding {
    let l = cx.want.lineage;
    match failure(facts, Step::Names) {
        None => cx.f(
            Check::Names,
            Severity::Ok,
            format!("CN {} and {} SANs as planned", l.cn(), l.names.len()),
        ),
        Some(f) => cx.f(Check::Names, Severity::Critical, detail(f)),
    }
}

/// Step 5: the same leaf as store/current, not revoked. Advice names what fixes it: when the
/// store's current version is itself refused, installing cannot help.
fn current(cx: &Cx, leaf: &CertInfo, facts: &[Verdict]) -> Option<Finding> {
    if let Some(f) = failure(facts, Step::Revoked) {
        return Some(cx.f(Check::Current, Severity::Critical, detail(f)));
    }
    let cur = cx.store.current()?;
    if cur.leaf.sha256 == leaf.sha256 {
        return Some(cx.f(
            Check::Current,
            Severity::Ok,
            format!("version {:04} (store current)", cur.number),
        ));
    }
    let held = match cx.store.version_of(&leaf.sha256) {
        Some(v) => format!("version {:04}", v.number),
        None => format!(
            "a certificate not in the store (sha256 {}…, serial {})",
            short(&leaf.sha256),
            leaf.serial
        ),
    };
    let fix = if cur.refusal.is_some() {
        "which install refuses (see the store finding): issue a new certificate with `vipcert renew --force`"
    } else {
        "run `vipcert install` on the node"
    };
    Some(cx.f(
        Check::Current,
        Severity::Warning,
        format!(
            "holds {held}; store current is version {:04}: {fix}",
            cur.number
        ),
    ))
}

/// Step 6: each certificate signed by the next, ending at a trusted root (the node's policy
/// verdicts), and the intermediates those of the store.
fn chain(cx: &Cx) -> Option<Finding> {
    let obs = cx.obs;
    let l = &cx.want.lineage.name;
    let policy = failure(&obs.verdicts, Step::Chain).or(failure(&obs.verdicts, Step::Root));
    if let Some(f) = policy {
        return Some(cx.f(Check::Chain, Severity::Critical, detail(f)));
    }
    if !cx.want.fullchain {
        return Some(if obs.chain.is_empty() {
            cx.f(
                Check::Chain,
                Severity::Ok,
                "leaf only, as install.fullchain = false".into(),
            )
        } else {
            cx.f(
                Check::Chain,
                Severity::Warning,
                format!("the cert file holds {} certificate(s) after the leaf, but install.fullchain = false", obs.chain.len()),
            )
        });
    }
    let v = cx.store.version_of(&obs.leaf.as_ref()?.sha256)?;
    Some(if obs.chain == v.chain {
        cx.f(
            Check::Chain,
            Severity::Ok,
            format!("{} intermediate(s) as in the store", v.chain.len()),
        )
    } else {
        cx.f(
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
        )
    })
}

/// Step 7: owner, group and mode as configured; a key readable by others is critical.
fn permissions(cx: &Cx) -> Finding {
    let (obs, t) = (cx.obs, cx.want.target);
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
        cx.f(
            Check::Permissions,
            Severity::Ok,
            format!(
                "{}:{} cert {:04o} key {:04o}",
                t.owner, t.group, t.cert_mode, t.key_mode
            ),
        )
    } else {
        cx.f(
            Check::Permissions,
            sev.max(Severity::Warning),
            perm.join("; "),
        )
    }
}

/// Why a certificate lacks clientAuth nowadays, and the two ways out.
const CLIENT_AUTH_HINT: &str = "Let's Encrypt stopped issuing clientAuth on 2026-02-11: get this node's certificate from a CA that still issues it (an IGTF CA: [acme] directory and eab_kid/eab_hmac_key_file), or set needs_client_auth = false if the node makes no TLS client connections";

/// Step 8: serverAuth (critical without), clientAuth where the node needs it (warning).
fn eku(cx: &Cx, leaf: &CertInfo, facts: &[Verdict]) -> Finding {
    let eku = if leaf.eku.is_empty() {
        "none".to_string()
    } else {
        leaf.eku.join(", ")
    };
    match failure(facts, Step::Eku) {
        None => cx.f(Check::Eku, Severity::Ok, format!("EKU {eku}")),
        Some(Failure::NoClientAuth { .. }) => cx.f(
            Check::Eku,
            Severity::Warning,
            format!(
                "no clientAuth EKU (has {eku}) but the node has needs_client_auth = true: TLS client use (e.g. XRootD third-party copy) will fail. {CLIENT_AUTH_HINT}"
            ),
        ),
        Some(f) => cx.f(Check::Eku, level(f), detail(f)),
    }
}

/// THE severity table of `verify`, in the checker's words.
pub(super) fn level(f: &Failure) -> Severity {
    match f.level() {
        verify::Level::Warning => Severity::Warning,
        verify::Level::Critical => Severity::Critical,
    }
}

/// Step 9: the validity window (verify's verdict: not yet valid is critical), then the time
/// left against the thresholds.
fn expiry(cx: &Cx, leaf: &CertInfo, facts: &[Verdict]) -> Finding {
    if let Some(f @ Failure::NotYetValid { .. }) = failure(facts, Step::Validity) {
        return cx.f(Check::Expiry, Severity::Critical, detail(f));
    }
    let (th, now) = (cx.th, cx.now);
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
    cx.f(Check::Expiry, sev, d)
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::store_view::StoreVersion;
    use super::*;

    pub(in crate::drift) const NOW: i64 = 1_800_000_000;

    pub(in crate::drift) fn node(needs_client_auth: bool) -> Node {
        Node {
            hostname: "dtn1.example.org".into(),
            address: "192.0.2.11".parse().unwrap(),
            weight: 1,
            needs_client_auth,
            challenge: None,
            ca: None,
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
            ca: None,
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

    pub(in crate::drift) fn leaf(
        sha: &str,
        sans: &[&str],
        not_before: i64,
        not_after: i64,
    ) -> CertInfo {
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

    pub(in crate::drift) const SANS: [&str; 3] =
        ["vip.example.org", "dtn2.example.org", "dtn1.example.org"];

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

    pub(in crate::drift) fn good_obs() -> Observation {
        Observation {
            lineage: "vip.example.org".into(),
            cert: file("/etc/c.pem", 0o644),
            key: file("/etc/k.pem", 0o400),
            leaf: Some(leaf("aa", &SANS, NOW - 30 * DAY, NOW + 60 * DAY)),
            cert_error: None,
            chain: vec!["cc".into()],
            key_error: None,
            key_matches: Some(true),
            verdicts: vec![],
        }
    }

    pub(in crate::drift) fn view() -> StoreView {
        StoreView {
            lineage: "vip.example.org".into(),
            current: Ok(Some(StoreVersion {
                number: 2,
                leaf: leaf("aa", &SANS, NOW - 30 * DAY, NOW + 60 * DAY),
                chain: vec!["cc".into()],
                refusal: None,
                revoked: false,
                ca: "https://ca.example/dir".into(),
            })),
            others: vec![StoreVersion {
                number: 1,
                leaf: leaf("bb", &SANS, NOW - 80 * DAY, NOW + 10 * DAY),
                chain: vec!["cc".into()],
                refusal: None,
                revoked: false,
                ca: "https://ca.example/dir".into(),
            }],
            state: Ok(State::default()),
        }
    }

    pub(in crate::drift) fn eval(
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
            require_cn: true,
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
            next_attempt: Some(UnixTime::new(NOW + 3600)),
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

    /// A next attempt no vipcert would record (year 10000, clamped to 9999-12-31 when read)
    /// is a warning naming the state file, whether or not failures are counted.
    #[test]
    fn a_next_attempt_further_than_any_wait_is_a_warning() {
        let mut v = view();
        for failures in [0, 3] {
            let st: State = serde_json::from_str(&format!(
                r#"{{"next_attempt": 253402300800, "last_success": -1, "failures": {failures}}}"#
            ))
            .unwrap();
            v.state = Ok(st);
            let f = store_findings(&v, NOW);
            assert_eq!(problems(&f), [(Check::Renewal, Severity::Warning)]);
            assert!(
                f[1].detail.contains("state/vip.example.org.json's next attempt 9999-12-31T23:59:59Z is further ahead than vipcert ever waits"),
                "{}",
                f[1].detail
            );
        }
        // A genuine backoff (a day) is not.
        v.state = Ok(State {
            next_attempt: Some(UnixTime::new(NOW + DAY)),
            ..State::default()
        });
        assert!(store_findings(&v, NOW)
            .iter()
            .all(|f| f.severity == Severity::Ok));
    }

    /// Every formatter of a time or a span here is total: the ends of i64, year 10000, and
    /// a certificate at the ends of the sane range.
    #[test]
    fn formatters_are_total() {
        use crate::unixtime::{tests::EXTREMES, MAX, MIN};
        for t in EXTREMES {
            assert!(days(t).ends_with(" d"), "{}", days(t));
            assert!(fmt_time(t).ends_with('Z'));
            let e = Failure::Expired {
                file: "f".into(),
                not_after: t,
            };
            let n = Failure::NotYetValid {
                file: "f".into(),
                not_before: t,
            };
            assert!(e.to_string().contains('Z') && n.to_string().contains('Z'));
        }
        for (nb, na) in [(MIN, MAX), (MIN, MIN), (MAX, MAX)] {
            let mut o = good_obs();
            o.leaf = Some(leaf("aa", &SANS, nb, na));
            let f = eval(&o, &view(), false, Thresholds::default());
            assert!(f.iter().any(|f| f.check == Check::Expiry), "{f:?}");
        }
    }

    #[test]
    fn a_state_wait_longer_than_vipcert_ever_waits_is_bogus() {
        let mut s = State {
            last_attempt: Some(UnixTime::new(NOW)),
            next_attempt: Some(UnixTime::new(NOW + DAY)),
            ..Default::default()
        };
        assert_eq!(bogus_state(&s, None), None);
        s.next_attempt = Some(UnixTime::new(NOW + 2 * DAY));
        let why = bogus_state(&s, None).expect("two days of backoff");
        assert!(
            why.starts_with("next_attempt lies 2.0 d after last_attempt"),
            "{why}"
        );
        // A CA's Retry-After may reach a third of a 90-day certificate's lifetime.
        assert_eq!(bogus_state(&s, Some(90 * DAY)), None);
        // Year 10000.
        s.next_attempt = Some(UnixTime::new(253_402_300_800));
        assert!(bogus_state(&s, Some(90 * DAY)).is_some());
        let s = State {
            ari_checked_at: Some(UnixTime::new(NOW)),
            ari_retry_after: Some(UnixTime::new(NOW + 2 * DAY)),
            ..Default::default()
        };
        let why = bogus_state(&s, None).expect("an ARI retry of two days");
        assert!(why.starts_with("ari_retry_after lies 2.0 d"), "{why}");
    }
}
