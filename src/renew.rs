//! `vipcert renew` and `rollback`. Renew decides per lineage whether it is due (the CA's ARI
//! window, else a fraction of the lifetime; at once when the plan changed), holding back
//! while a recorded failure's backoff lasts, then acts: the lineages due go through the
//! issuing pipeline (issue → record failures → install), and every node installs what is
//! current whoever renewed it.
//!
//! Owns the run: each lineage judged by `schedule`'s pure decision (`Due` and its reasons),
//! the ARI window's refresh and cache in `state/` (a run whose cached answers are
//! all fresh asks the CA nothing, not even its directory), and the renewal's report
//! (`RenewReport`). It does not talk to the CA beyond the ARI query, does not
//! take the lease nor order (`issue`), does not count failures or schedule the backoff
//! (`attempts`) and does not write install targets (`install`); `pipeline` runs those steps.
//! `renew --dry-run` (`dry_run`) decides nothing: as certbot's, it tries every lineage.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use instant_acme::CertificateIdentifier;

use crate::attempts::FailureRecord;
use crate::cert::CertInfo;
use crate::config::Config;
use crate::install::InstallReport;
use crate::issue::{IssueOptions, IssueOutcome, LineageResult};
use crate::pipeline::{PipelineOptions, PipelineReport, WhenStopped};
use crate::plan::{Lineage, Plan, Target};
use crate::schedule::{change_since, current_leaf, decide_cached, jitter, Due};
use crate::store::{fmt_time, format_version, now, NoAri, State, Store};
use crate::unixtime::UnixTime;

/// RFC 9773 §4.3: clamp the CA's Retry-After for renewalInfo to [1 min, 1 day].
const ARI_RETRY_MIN: i64 = 60;
const ARI_RETRY_MAX: i64 = 86400;

/// What `vipcert renew` was asked.
pub struct RenewOptions {
    /// This node's hostname (lease holder, meta.issued_by).
    pub node: String,
    /// Renew every lineage now, whatever its window or backoff says.
    pub force: bool,
    /// Sleep a random time up to this long first.
    pub random_delay: Option<Duration>,
    /// Prefix for install paths.
    pub root: std::path::PathBuf,
}

/// What renew decided for one lineage.
#[derive(Debug)]
pub enum Decision {
    /// `decide`'s verdict.
    Judged(Due),
    /// The current version cannot be read (the error names the file): nothing is ordered
    /// until the admin repairs it, and the run fails.
    Unreadable(anyhow::Error),
}

impl Decision {
    /// Not ordered, and the run fails: backing off, or the store needs the admin.
    pub fn blocked(&self) -> bool {
        matches!(
            self,
            Decision::Judged(Due::BackingOff { .. }) | Decision::Unreadable(_)
        )
    }
}

impl fmt::Display for Decision {
    /// The line after "<lineage>: ".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Judged(d @ Due::Yes { .. }) => write!(f, "due: {d}"),
            Decision::Judged(d @ Due::No(_)) => write!(f, "not due: {d}"),
            Decision::Judged(d @ Due::BackingOff { until, .. }) => write!(
                f,
                "NOT RENEWED: {d}; next attempt after {} (or `vipcert renew --force`)",
                fmt_time(*until)
            ),
            Decision::Unreadable(e) => write!(
                f,
                "NOT RENEWED, nothing ordered: the current version cannot be read: {e:#}; renew orders nothing until it can (point current at a kept version with `vipcert rollback --to NNNN`, or order a new one with `vipcert issue --force`)"
            ),
        }
    }
}

/// What one renewal run did: every lineage's decision, then the pipeline's run (the orders
/// of the lineages due, their failures' records, this node's install).
pub struct RenewReport {
    /// Every planned lineage's decision, in plan order.
    pub decisions: Vec<(String, Decision)>,
    /// The issuing pipeline: `issued` is None when nothing was due.
    pub run: PipelineReport,
}

impl RenewReport {
    /// Nothing was blocked or failed, the install included.
    pub fn ok(&self) -> bool {
        !self.decisions.iter().any(|(_, d)| d.blocked()) && self.run.ok()
    }
}

impl fmt::Display for RenewReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (l, d) in &self.decisions {
            writeln!(f, "{l}: {d}")?;
        }
        match &self.run.issued {
            Some(IssueOutcome::InProgress(h)) => writeln!(
                f,
                "renewal in progress on {} (pid {}); this node only installs",
                crate::escape::escape(&h.node),
                h.pid
            )?,
            Some(IssueOutcome::Done(results)) => {
                for (l, r) in results {
                    renewed_line(f, l, r, self.run.record_of(l))?;
                }
            }
            None => {}
        }
        match &self.run.install {
            Ok(rep) => write!(f, "{}", rep.summary(&self.run.targets)),
            Err(e) => writeln!(f, "install FAILED on {}: {e:#}", self.run.node),
        }
    }
}

/// How the order of lineage `l` went, as renew says it (`rec`: its failure's record).
fn renewed_line(
    f: &mut fmt::Formatter<'_>,
    l: &str,
    r: &LineageResult,
    rec: Option<&FailureRecord>,
) -> fmt::Result {
    match (r, rec) {
        (
            LineageResult::Published {
                version,
                serial,
                not_after,
                warnings,
            },
            _,
        ) => writeln!(
            f,
            "{l}: renewed: version {} (serial {serial}, valid until {}){}",
            format_version(*version),
            fmt_time(*not_after),
            crate::issue::warning_lines(l, warnings)
        ),
        // Not met: renew publishes (`renew --dry-run` reports through `DryRunReport`).
        (LineageResult::Verified { serial, not_after }, _) => writeln!(
            f,
            "{l}: {}",
            crate::issue::verified_words(serial, *not_after)
        ),
        (LineageResult::Skipped { version }, _) => writeln!(
            f,
            "{l}: already renewed by another node (version {})",
            format_version(*version)
        ),
        (
            LineageResult::Failed(e),
            Some(FailureRecord::Counted {
                failures,
                next_attempt,
            }),
        ) => writeln!(
            f,
            "{l}: RENEWAL FAILED (failure {failures} in a row; next attempt after {}): {e:#}",
            fmt_time(*next_attempt),
        ),
        // Nothing counted, so no backoff either: the next run tries again.
        (LineageResult::Failed(e), Some(w @ FailureRecord::Unrecorded(_))) => {
            writeln!(f, "{l}: RENEWAL FAILED: {e:#}\n{l}: {w}")
        }
        (LineageResult::Failed(e), None) => writeln!(f, "{l}: RENEWAL FAILED: {e:#}"),
    }
}

/// When to ask for the ARI window again after the CA said `delay` at `t`: RFC 9773's clamp to
/// [1 min, 1 day], and never later than `retry::retry_at` allows for a certificate valid until
/// `not_after`.
fn ari_again(t: i64, delay: Duration, not_after: i64) -> i64 {
    let rounded = delay
        .as_secs()
        .saturating_add(u64::from(delay.subsec_millis() >= 500));
    let secs = i64::try_from(rounded)
        .unwrap_or(i64::MAX)
        .clamp(ARI_RETRY_MIN, ARI_RETRY_MAX);
    crate::retry::retry_at(t, t.saturating_add(secs), Some(not_after))
}

/// What the ARI caches say about a certificate at a moment.
enum AriCache {
    /// The certificate names no issuer key (no AKI): there is nothing to ask about.
    NoId,
    /// Nothing to ask now: the identifier for `replaces`, with the window cached in `state/`
    /// until the CA's Retry-After; or None, the CA's directory offered no ARI when last fetched
    /// (`accounts/<ca-host>/no-ari.json`, for a day).
    Fresh(Option<CertificateIdentifier<'static>>),
    /// To be asked (never asked for this certificate, or the Retry-After has passed).
    Stale(CertificateIdentifier<'static>),
}

/// Whether a cached "ask again after `until`" still holds at `t`: not once passed, nor when
/// it lies further ahead than vipcert ever records (a file written wrongly).
fn still_fresh(until: Option<UnixTime>, t: i64) -> bool {
    until.is_some_and(|r| r.get() > t && r.get() <= t.saturating_add(ARI_RETRY_MAX))
}

/// What the caches say about the ARI window of `leaf` (PEM `pem`) at `t`: `st`'s window, or
/// the CA's record `no_ari`.
fn ari_cached(pem: &[u8], leaf: &CertInfo, st: &State, no_ari: Option<&NoAri>, t: i64) -> AriCache {
    let Some((aki, ser)) = crate::cert::ari_parts(pem).ok().flatten() else {
        return AriCache::NoId;
    };
    let id = CertificateIdentifier::new(
        rustls_pki_types::Der::from_slice(&aki),
        rustls_pki_types::Der::from_slice(&ser),
    )
    .into_owned();
    let window = st.ari_serial.as_deref() == Some(leaf.serial.as_str())
        && st.ari_start.is_some()
        && still_fresh(st.ari_retry_after, t);
    if window {
        AriCache::Fresh(Some(id))
    } else if no_ari.is_some_and(|n| still_fresh(Some(n.retry_after), t)) {
        AriCache::Fresh(None)
    } else {
        AriCache::Stale(id)
    }
}

/// What the CA answered to a renewalInfo query.
enum AriAnswer {
    /// Its window, now in the state.
    Window,
    /// Its directory offers no renewalInfo.
    Unsupported,
    /// The query failed (logged); nothing is cached, the next run asks again.
    Failed,
}

/// Ask the CA for the ARI window of `leaf` (identifier `id`); a window goes into `st`, cached
/// until the CA's Retry-After.
async fn ari_ask(
    ca: &str,
    account: &instant_acme::Account,
    lineage: &str,
    id: &CertificateIdentifier<'static>,
    leaf: &CertInfo,
    st: &mut State,
    t: i64,
) -> AriAnswer {
    match account.renewal_info(id).await {
        Ok((info, delay)) => {
            let w = &info.suggested_window;
            st.ari_start = Some(UnixTime::new(w.start.unix_timestamp()));
            st.ari_end = Some(UnixTime::new(w.end.unix_timestamp()));
            st.ari_checked_at = Some(UnixTime::new(t));
            st.ari_retry_after = Some(UnixTime::new(ari_again(t, delay, leaf.not_after)));
            st.ari_serial = Some(leaf.serial.clone());
            AriAnswer::Window
        }
        Err(instant_acme::Error::Unsupported(_)) => AriAnswer::Unsupported,
        Err(e) => {
            tracing::warn!(lineage, error = %crate::acme::describe(ca, e), "cannot fetch the ARI renewal window; using the lifetime rule");
            AriAnswer::Failed
        }
    }
}

/// The account ARI queries are sent with, loaded when the first lineage needs one: a run whose
/// ARI answers are all cached asks the CA nothing, not even its directory.
struct AriAccount<'a> {
    cfg: &'a Config,
    store: &'a Store,
    /// `accounts/<ca-host>/no-ari.json`, as read at the start of the run.
    no_ari: Option<NoAri>,
    /// None until asked for; then the account, or None (no account file, or the CA could not
    /// be reached: deciding goes on without ARI, and an order, if one is due, says what is
    /// wrong).
    loaded: Option<Option<instant_acme::Account>>,
}

impl<'a> AriAccount<'a> {
    fn new(cfg: &'a Config, store: &'a Store) -> AriAccount<'a> {
        let no_ari = store.read_no_ari(&cfg.acme.ca_host()).unwrap_or_else(|e| {
            tracing::warn!(error = %format!("{e:#}"), "cannot read what the CA said about ARI; asking it again if needed");
            None
        });
        AriAccount {
            cfg,
            store,
            no_ari,
            loaded: None,
        }
    }

    async fn get(&mut self) -> Option<&instant_acme::Account> {
        if self.loaded.is_none() {
            let acc = match crate::acme::load_account(self.cfg, self.store).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "cannot load the ACME account; deciding without ARI");
                    None
                }
            };
            self.loaded = Some(acc);
        }
        self.loaded.as_ref().and_then(Option::as_ref)
    }

    /// Record what the CA said about ARI at `t` in `accounts/<ca-host>/no-ari.json`: none
    /// offered (asked again after a day), or a window (the record, if any, goes). A failed
    /// write only costs asking again next time: a warning.
    fn record(&mut self, offered: bool, t: i64) {
        let n = (!offered).then(|| NoAri {
            checked_at: UnixTime::new(t),
            retry_after: UnixTime::new(t.saturating_add(ARI_RETRY_MAX)),
        });
        if n.is_none() && self.no_ari.is_none() {
            return;
        }
        if let Err(e) = self
            .store
            .write_no_ari(&self.cfg.acme.ca_host(), n.as_ref())
        {
            tracing::warn!("what the CA said about ARI was not saved: {e:#}");
        }
        self.no_ari = n;
    }
}

/// The identifier for `replaces` of the current leaf `leaf` (PEM `pem`) of `lineage`, asking
/// the CA for its ARI window only when the cached answer is stale (and saving the new one).
async fn refresh_ari(
    store: &Store,
    account: &mut AriAccount<'_>,
    lineage: &str,
    pem: &[u8],
    leaf: &CertInfo,
    st: &mut State,
    t: i64,
) -> Result<Option<CertificateIdentifier<'static>>> {
    let id = match ari_cached(pem, leaf, st, account.no_ari.as_ref(), t) {
        AriCache::NoId => return Ok(None),
        AriCache::Fresh(id) => return Ok(id),
        AriCache::Stale(id) => id,
    };
    let cfg = account.cfg;
    let Some(acc) = account.get().await else {
        return Ok(None);
    };
    match ari_ask(&cfg.acme.directory, acc, lineage, &id, leaf, st, t).await {
        AriAnswer::Window => {
            save_ari(store, lineage, st)?;
            account.record(true, t);
            Ok(Some(id))
        }
        AriAnswer::Unsupported => {
            account.record(false, t);
            Ok(None)
        }
        // Still an ARI CA: renew with `replaces` if due by the lifetime rule.
        AriAnswer::Failed => Ok(Some(id)),
    }
}

/// One renewal run on this node: decide every lineage, then act on those due (see the module
/// documentation).
pub async fn run(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    opts: &RenewOptions,
) -> Result<RenewReport> {
    random_delay(opts.random_delay).await;
    store.init()?;
    let judged = decide_all(cfg, plan, store, opts.force).await?;
    let mut decisions = Vec::with_capacity(judged.len());
    let mut due = Vec::new();
    for j in judged {
        if let Some(o) = j.order {
            due.push((j.lineage.clone(), o));
        }
        decisions.push((j.lineage, j.decision));
    }
    let run = act(cfg, plan, store, opts, due).await?;
    Ok(RenewReport { decisions, run })
}

/// `renew --dry-run`: as certbot's, every lineage as if it were due — no due decision, so no
/// ARI query and nothing read from state/ — ordered at the staging CA and discarded
/// (`pipeline::dry_run`); `--random-delay` still waits first. `force` and `root` play no part:
/// nothing is installed.
pub async fn dry_run(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    opts: &RenewOptions,
) -> Result<crate::pipeline::DryRunReport> {
    random_delay(opts.random_delay).await;
    crate::pipeline::dry_run(cfg, plan, store, &opts.node, true).await
}

/// `--random-delay`: sleep a random time up to `d` first.
async fn random_delay(d: Option<Duration>) {
    if let Some(d) = d.filter(|d| !d.is_zero()) {
        let wait = d.mul_f64(jitter());
        tracing::info!(
            "waiting {} (--random-delay)",
            humantime::format_duration(Duration::from_secs(wait.as_secs()))
        );
        tokio::time::sleep(wait).await;
    }
}

/// One lineage's decision, and what ordering it needs when it is due.
pub(crate) struct Judged {
    /// The lineage.
    pub(crate) lineage: String,
    /// Due or not, and why.
    pub(crate) decision: Decision,
    /// Set when due: what the order needs.
    pub(crate) order: Option<ToOrder>,
}

/// What the order of a due lineage needs from the decision.
pub(crate) struct ToOrder {
    /// The certificate it replaces (ARI).
    pub(crate) replaces: Option<CertificateIdentifier<'static>>,
    /// The version `current` held when decided: ordered only if it still does once the lease
    /// is held.
    pub(crate) current: Option<u32>,
}

/// Deciding: every planned lineage, due or not and why, refreshing ARI windows on the way
/// (only those whose cached answer is stale: see `AriAccount`).
pub(crate) async fn decide_all(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    force: bool,
) -> Result<Vec<Judged>> {
    // One account per CA: a lineage on a `[[acme.ca]]` asks that CA for its ARI window.
    let mut cas: Vec<Option<&str>> = plan.lineages.iter().map(|l| l.ca.as_deref()).collect();
    cas.sort();
    cas.dedup();
    let cfgs: Vec<Config> = cas.iter().map(|c| cfg.for_ca(*c)).collect();
    let mut accounts: Vec<AriAccount> = cfgs.iter().map(|c| AriAccount::new(c, store)).collect();
    let mut judged = Vec::with_capacity(plan.lineages.len());
    for l in &plan.lineages {
        let i = cas.binary_search(&l.ca.as_deref()).unwrap_or(0);
        judged.push(judge(cfg, store, &mut accounts[i], l, force).await?);
    }
    Ok(judged)
}

/// Acting: the lineages `due` through the issuing pipeline (any run that stops counts as
/// each one's failure: a timer runs renew, and the hook must hear of it), then this node's
/// install, whether anything was due or not.
async fn act(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    opts: &RenewOptions,
    due: Vec<(String, ToOrder)>,
) -> Result<PipelineReport> {
    let issue = (!due.is_empty()).then(|| {
        let (only, if_current) = due
            .into_iter()
            .map(|(n, o)| ((n.clone(), o.replaces), (n, o.current)))
            .unzip();
        IssueOptions {
            force: opts.force,
            node: opts.node.clone(),
            only: Some(only),
            // Even with --force: a node that gets the lease after another one renewed this
            // lineage must not order a second certificate.
            if_current: Some(if_current),
            mode: crate::issue::Mode::Publish,
        }
    });
    let p = PipelineOptions {
        issue,
        when_stopped: WhenStopped::FailEach,
        node: opts.node.clone(),
        root: opts.root.clone(),
    };
    crate::pipeline::run(cfg, plan, store, &p).await
}

/// Decide whether lineage `l` is due, refreshing its ARI window on the way.
async fn judge(
    cfg: &Config,
    store: &Store,
    account: &mut AriAccount<'_>,
    l: &Lineage,
    force: bool,
) -> Result<Judged> {
    let t = now();
    let held = match current_leaf(store, &l.name) {
        Ok(h) => h,
        Err(e) => {
            return Ok(Judged {
                lineage: l.name.clone(),
                decision: Decision::Unreadable(e),
                order: None,
            })
        }
    };
    let mut st = store.read_state(&l.name)?;
    let mut replaces = None;
    if let Some((v, i)) = &held {
        replaces = refresh_ari(store, account, &l.name, &v.cert_pem, i, &mut st, t).await?;
    }
    let held_meta = held.as_ref().map(|(v, i)| (&v.meta, i));
    if let Some(what) = held_meta.and_then(|(m, i)| change_since(cfg, l, m, i)) {
        tracing::info!(lineage = %l.name, "the cluster changed since the current certificate: {what}");
    }
    let due = decide_cached(cfg, l, held_meta, &st, t, force, jitter());
    let order = matches!(due, Due::Yes { .. }).then(|| ToOrder {
        replaces,
        current: held.as_ref().map(|(v, _)| v.number),
    });
    Ok(Judged {
        lineage: l.name.clone(),
        decision: Decision::Judged(due),
        order,
    })
}

/// Save the ARI fields of `st`. Other nodes write this file too (the lease holder records
/// failures): it is re-read and only the ARI fields change, so a concurrent failure record is
/// not lost. A failed write only costs asking the CA again next time: a warning.
fn save_ari(store: &Store, lineage: &str, st: &mut State) -> Result<()> {
    let mut fresh = store.read_state(lineage)?;
    fresh.ari_start = st.ari_start;
    fresh.ari_end = st.ari_end;
    fresh.ari_checked_at = st.ari_checked_at;
    fresh.ari_retry_after = st.ari_retry_after;
    fresh.ari_serial = st.ari_serial.clone();
    if let Err(e) = store.write_state(lineage, &fresh) {
        tracing::warn!(
            lineage,
            "the CA's renewal window (ARI) was not saved: {e:#}"
        );
    }
    *st = fresh;
    Ok(())
}

/// Which version `rollback` goes to: `to`, else the newest kept version older than `current`.
pub(crate) fn rollback_target(
    versions: &[u32],
    current: Option<u32>,
    to: Option<u32>,
) -> Result<u32> {
    if let Some(t) = to {
        if !versions.contains(&t) {
            anyhow::bail!(
                "version {} is not kept; kept versions: {}",
                format_version(t),
                list(versions)
            );
        }
        return Ok(t);
    }
    let cur = current.ok_or_else(|| anyhow::anyhow!("the lineage has no current version"))?;
    versions
        .iter()
        .rev()
        .find(|&&v| v < cur)
        .copied()
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no kept version older than the current {}; kept versions: {}",
                format_version(cur),
                list(versions)
            )
        })
}

fn list(v: &[u32]) -> String {
    v.iter()
        .map(|n| format_version(*n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What `vipcert rollback` did: where `current` points now, and this node's install.
pub struct RollbackReport {
    /// The lineage.
    pub lineage: String,
    /// The version `current` points at now.
    pub version: u32,
    /// The version it pointed at before, if any.
    pub was: Option<u32>,
    /// This node's install after the move.
    pub install: InstallReport,
    /// The install targets under the install root.
    pub targets: Vec<Target>,
}

impl RollbackReport {
    /// The install succeeded.
    pub fn ok(&self) -> bool {
        self.install.ok()
    }
}

impl fmt::Display for RollbackReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: current is now version {} (was {})",
            self.lineage,
            format_version(self.version),
            self.was
                .map(format_version)
                .unwrap_or_else(|| "none".into())
        )?;
        write!(f, "{}", self.install.summary(&self.targets))
    }
}

/// `vipcert rollback`: point `current` at an earlier kept version, then install here.
pub fn rollback(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    node: &str,
    root: &Path,
    lineage: &str,
    to: Option<u32>,
) -> Result<RollbackReport> {
    let l = plan.named_lineage(lineage)?;
    let current = store.current(&l.name)?;
    let target = rollback_target(&store.versions(&l.name)?, current, to)?;
    // Refuse a version that would not install: verify it as install will.
    crate::install::verified_version(cfg, store, l, target)
        .map_err(|e| anyhow::anyhow!("{e:#}; not rolled back"))?;
    store.set_current(&l.name, target)?;
    Ok(RollbackReport {
        lineage: l.name.clone(),
        version: target,
        was: current,
        install: crate::install::run(cfg, plan, store, node, root)?,
        targets: crate::plan::targets(cfg, root),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attempts::{backoff, record_failure};
    use crate::config::KeyType;
    use crate::schedule::*;

    const DAY: i64 = 86400;

    fn cert(not_before: i64, days: i64) -> CertInfo {
        CertInfo::valid_between("01", not_before, not_before + days * DAY)
    }

    /// `decide` for a plan that did not change.
    fn due(
        now: i64,
        c: Option<&CertInfo>,
        st: &State,
        w: Option<(i64, i64)>,
        force: bool,
        j: f64,
    ) -> Due {
        decide(now, c, st, None, w, force, j)
    }

    /// A plan change (its content does not matter to `decide`).
    fn changed() -> PlanChange {
        PlanChange {
            added: vec!["x".into()],
            ..PlanChange::default()
        }
    }

    fn yes(d: &Due) -> bool {
        matches!(d, Due::Yes { .. })
    }

    #[test]
    fn plan_change_sees_a_profile_change_only_when_both_are_known() {
        let l = Lineage {
            name: "v.example.org".into(),
            names: vec!["v.example.org".into()],
            nodes: vec![],
            ca: None,
        };
        let mut c = cert(0, 90);
        c.cn = Some("v.example.org".into());
        c.sans = vec!["v.example.org".into()];
        let k = KeyType::EcdsaP256;
        assert_eq!(plan_change(&l, k, Some(("classic", "classic")), &c), None);
        // Unknown (an older version, or a CA no longer configured): not due for that alone.
        assert_eq!(plan_change(&l, k, None, &c), None);
        assert_eq!(
            plan_change(&l, k, Some(("tlsclient", "classic")), &c)
                .map(|c| c.to_string())
                .as_deref(),
            Some("profile \"classic\" -> \"tlsclient\"")
        );
        assert_eq!(
            plan_change(&l, k, Some(("classic", "")), &c)
                .map(|c| c.to_string())
                .as_deref(),
            Some("profile the CA's default -> \"classic\"")
        );
        assert_eq!(
            plan_change(&l, k, Some(("", "shortlived")), &c)
                .map(|c| c.to_string())
                .as_deref(),
            Some("profile \"shortlived\" -> the CA's default")
        );
    }

    #[test]
    fn plan_change_names_what_differs() {
        let l = Lineage {
            name: "v.example.org".into(),
            names: vec![
                "v.example.org".into(),
                "a.example.org".into(),
                "c.example.org".into(),
            ],
            nodes: vec![],
            ca: None,
        };
        let mut c = cert(0, 90);
        c.cn = Some("v.example.org".into());
        // SAN order is the CA's: the same set is no change.
        c.sans = vec![
            "c.example.org".into(),
            "a.example.org".into(),
            "v.example.org".into(),
        ];
        assert_eq!(plan_change(&l, KeyType::EcdsaP256, None, &c), None);
        c.sans = vec![
            "v.example.org".into(),
            "a.example.org".into(),
            "b.example.org".into(),
        ];
        assert_eq!(
            plan_change(&l, KeyType::Rsa2048, None, &c)
                .map(|c| c.to_string())
                .as_deref(),
            Some("names added: c.example.org; names removed: b.example.org; key type ecdsa-p256 -> rsa2048")
        );
        // A changed plan is due at once, even early in the lifetime; a backoff still holds.
        let mut st = State::default();
        assert!(yes(&decide(
            DAY,
            Some(&c),
            &st,
            Some(changed()),
            None,
            false,
            0.0
        )));
        st.next_attempt = Some(UnixTime::new(2 * DAY));
        assert!(matches!(
            decide(DAY, Some(&c), &st, Some(changed()), None, false, 0.0),
            Due::BackingOff { .. }
        ));
    }

    /// A certificate with an AKI (so it has an ARI identifier) and its facts.
    fn ari_leaf() -> (String, CertInfo) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["v.example.org".to_string()]).unwrap();
        p.use_authority_key_identifier_extension = true;
        p.key_identifier_method = rcgen::KeyIdMethod::Sha256;
        let pem = p.self_signed(&key).unwrap().pem();
        let info = crate::cert::leaf_info(pem.as_bytes()).unwrap();
        (pem, info)
    }

    /// The ARI caches: a window for this certificate until the CA's Retry-After, else the
    /// CA's "no ARI" record until its own; anything else (or a wait longer than vipcert
    /// records) is asked again.
    #[test]
    fn ari_is_asked_only_when_no_cached_answer_holds() {
        const T: i64 = 1_800_000_000;
        let (pem, leaf) = ari_leaf();
        let cached =
            |st: &State, n: Option<&NoAri>| match ari_cached(pem.as_bytes(), &leaf, st, n, T) {
                AriCache::NoId => "no id",
                AriCache::Fresh(Some(_)) => "window",
                AriCache::Fresh(None) => "no ari",
                AriCache::Stale(_) => "ask",
            };
        let window = |serial: &str, retry: i64| State {
            ari_start: Some(UnixTime::new(T + DAY)),
            ari_end: Some(UnixTime::new(T + 2 * DAY)),
            ari_checked_at: Some(UnixTime::new(T - 60)),
            ari_retry_after: Some(UnixTime::new(retry)),
            ari_serial: Some(serial.to_string()),
            ..State::default()
        };
        let no_ari = |retry: i64| NoAri {
            checked_at: UnixTime::new(T - 60),
            retry_after: UnixTime::new(retry),
        };
        assert_eq!(cached(&State::default(), None), "ask");
        assert_eq!(cached(&window(&leaf.serial, T + 3600), None), "window");
        assert_eq!(cached(&window(&leaf.serial, T), None), "ask");
        assert_eq!(cached(&window(&leaf.serial, T + 2 * DAY), None), "ask");
        assert_eq!(cached(&window("0bad", T + 3600), None), "ask");
        let fresh = no_ari(T + 3600);
        assert_eq!(cached(&State::default(), Some(&fresh)), "no ari");
        assert_eq!(
            cached(&window(&leaf.serial, T + 3600), Some(&fresh)),
            "window"
        );
        assert_eq!(cached(&State::default(), Some(&no_ari(T))), "ask");
        assert_eq!(cached(&State::default(), Some(&no_ari(T + 2 * DAY))), "ask");
        // Without an AKI there is nothing to ask about.
        let (plain, _) = crate::cert::tests::make(&["v.example.org"]);
        let st = State::default();
        assert!(matches!(
            ari_cached(plain.as_bytes(), &leaf, &st, None, T),
            AriCache::NoId
        ));
    }

    #[test]
    fn lifetime_rule_third_and_half() {
        let st = State::default();
        let c = cert(0, 90);
        // 90 days: due when less than 30 days remain, i.e. from day 60.
        assert!(!yes(&due(59 * DAY, Some(&c), &st, None, false, 0.5)));
        assert!(yes(&due(60 * DAY, Some(&c), &st, None, false, 0.5)));
        assert!(yes(&due(100 * DAY, Some(&c), &st, None, false, 0.5)));
        // 6 days (short-lived): due at half.
        let s = cert(0, 6);
        assert!(!yes(&due(3 * DAY - 1, Some(&s), &st, None, false, 0.0)));
        assert!(yes(&due(3 * DAY, Some(&s), &st, None, false, 0.0)));
        // 45 days: third.
        let m = cert(0, 45);
        assert!(!yes(&due(30 * DAY - 1, Some(&m), &st, None, false, 0.0)));
        assert!(yes(&due(30 * DAY, Some(&m), &st, None, false, 0.0)));
    }

    #[test]
    fn ari_window_wins_over_lifetime() {
        let st = State::default();
        let c = cert(0, 90);
        // Window early in life (CA wants a revocation-driven renewal): due inside it.
        let w = Some((10 * DAY, 12 * DAY));
        assert!(!yes(&due(9 * DAY, Some(&c), &st, w, false, 0.0)));
        assert!(yes(&due(10 * DAY, Some(&c), &st, w, false, 0.0)));
        // The moment inside the window follows the jitter; the end is always due.
        assert!(!yes(&due(11 * DAY - 1, Some(&c), &st, w, false, 0.5)));
        assert!(yes(&due(11 * DAY, Some(&c), &st, w, false, 0.5)));
        assert!(yes(&due(12 * DAY, Some(&c), &st, w, false, 0.999)));
        // A late window holds back a renewal the lifetime rule would start.
        let late = Some((80 * DAY, 82 * DAY));
        assert!(!yes(&due(70 * DAY, Some(&c), &st, late, false, 0.0)));
        // ... but never past expiry.
        assert!(yes(&due(90 * DAY, Some(&c), &st, late, false, 0.0)));
    }

    /// The schedule `check --format html` draws is the one `decide` follows: the cached ARI
    /// window of this very certificate, else the lifetime rule; a credible backoff only.
    #[test]
    fn renews_at_and_backoff_until_follow_decide() {
        let c = cert(0, 90);
        let mut st = State::default();
        let rule = RenewsAt::Lifetime {
            from: 60 * DAY,
            short_lived: false,
        };
        assert_eq!(renews_at(&c, &st), rule);
        assert!(!yes(&due(60 * DAY - 1, Some(&c), &st, None, false, 0.0)));
        assert!(yes(&due(60 * DAY, Some(&c), &st, None, false, 0.0)));
        let short = cert(0, 6);
        assert_eq!(
            renews_at(&short, &st),
            RenewsAt::Lifetime {
                from: 3 * DAY,
                short_lived: true
            }
        );
        st.ari_start = Some(UnixTime::new(50 * DAY));
        st.ari_end = Some(UnixTime::new(52 * DAY));
        st.ari_checked_at = Some(UnixTime::new(49 * DAY));
        // The window of the certificate this one replaced is void.
        st.ari_serial = Some("02".into());
        assert_eq!(renews_at(&c, &st), rule);
        st.ari_serial = Some("01".into());
        let ari = RenewsAt::Ari {
            start: 50 * DAY,
            end: 52 * DAY,
            checked_at: Some(49 * DAY),
        };
        assert_eq!(renews_at(&c, &st), ari);
        // A backoff renew honours, and one it ignores (further ahead than it ever waits).
        st.next_attempt = Some(UnixTime::new(70 * DAY + 600));
        assert_eq!(
            backoff_until(70 * DAY, Some(c.not_after), &st),
            Some(70 * DAY + 600)
        );
        assert_eq!(backoff_until(70 * DAY + 600, Some(c.not_after), &st), None);
        st.next_attempt = Some(UnixTime::new(80 * DAY));
        assert_eq!(backoff_until(70 * DAY, Some(c.not_after), &st), None);
        assert!(matches!(
            due(70 * DAY, Some(&c), &st, None, false, 0.0),
            Due::Yes {
                ignored_next_attempt: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn force_missing_and_backoff() {
        let c = cert(0, 90);
        let mut st = State::default();
        assert!(yes(&due(0, None, &st, None, false, 0.0)));
        assert!(yes(&due(0, Some(&c), &st, None, true, 0.0)));
        record_failure(&mut st, 70 * DAY, "the CA said: boom", None, None);
        assert_eq!(st.failures, 1);
        assert_eq!(st.next_attempt, Some(UnixTime::new(70 * DAY + 60)));
        let d = due(70 * DAY + 59, Some(&c), &st, None, false, 0.0);
        match &d {
            Due::BackingOff { until, .. } => {
                assert_eq!(*until, 70 * DAY + 60);
                let why = d.to_string();
                assert!(why.contains("boom"), "{why}");
            }
            d => panic!("{d:?}"),
        }
        assert!(yes(&due(70 * DAY + 60, Some(&c), &st, None, false, 0.0)));
        // Not due at all: no backoff message either.
        assert!(matches!(
            due(DAY, Some(&c), &st, None, false, 0.0),
            Due::No(_)
        ));
        // --force overrides backoff.
        assert!(yes(&due(70 * DAY + 1, Some(&c), &st, None, true, 0.0)));
    }

    #[test]
    fn backoff_schedule_and_retry_after() {
        assert_eq!(
            (1..=6).map(backoff).collect::<Vec<_>>(),
            vec![60, 600, 6000, 86400, 86400, 86400]
        );
        let mut st = State::default();
        for _ in 0..3 {
            record_failure(&mut st, 1000, "x", None, None);
        }
        assert_eq!(st.next_attempt, Some(UnixTime::new(1000 + 6000)));
        // A CA's Retry-After wins over the schedule; one in the past does not.
        let mut st = State::default();
        record_failure(
            &mut st,
            1_800_000_000,
            "slow down",
            Some(1_800_003_600),
            None,
        );
        assert_eq!(st.next_attempt, Some(UnixTime::new(1_800_003_600)));
        assert_eq!(st.failures, 1);
    }

    /// The CA's Retry-After (any form, already a time) is capped at a third of the current
    /// certificate's remaining lifetime, or a day without one; the backoff stays within what
    /// `retry` calls credible.
    #[test]
    fn retry_after_is_capped_by_the_remaining_lifetime() {
        let now = 1_800_000_000;
        let mut st = State::default();
        record_failure(
            &mut st,
            now,
            "x",
            Some(253_402_300_799),
            Some(now + 30 * DAY),
        );
        assert_eq!(st.next_attempt, Some(UnixTime::new(now + 10 * DAY)));
        let mut st = State::default();
        record_failure(&mut st, now, "x", Some(i64::MAX), None);
        assert_eq!(st.next_attempt, Some(UnixTime::new(now + DAY)));
        // Expiring in 6 hours: 2 hours at most, whatever the CA says.
        let mut st = State::default();
        record_failure(&mut st, now, "x", Some(now + DAY), Some(now + 6 * 3600));
        assert_eq!(st.next_attempt, Some(UnixTime::new(now + 2 * 3600)));
        assert!((0..100).all(|n| backoff(n) <= crate::retry::LONGEST_BACKOFF));

        // ARI: RFC 9773's [1 min, 1 day], then the same cap.
        let a = |secs: u64, left: i64| ari_again(now, Duration::from_secs(secs), now + left) - now;
        assert_eq!(a(21600, 30 * DAY), 21600);
        assert_eq!(a(u64::MAX, 30 * DAY), DAY);
        assert_eq!(a(0, 30 * DAY), 60);
        assert_eq!(a(21600, 6 * 3600), 2 * 3600);
        assert_eq!(
            ari_again(now, Duration::from_millis(90_500), now + DAY) - now,
            91
        );
    }

    /// A next attempt no vipcert would record (a broken or foreign state file) does not stop
    /// renewal; the reason says it was ignored. Every message formats any time.
    #[test]
    fn an_incredible_next_attempt_is_ignored_and_every_message_formats() {
        let c = cert(0, 90);
        let st = State {
            next_attempt: Some(UnixTime::new(253_402_300_800)),
            failures: 1,
            ..State::default()
        };
        let d = due(70 * DAY, Some(&c), &st, None, false, 0.0);
        match &d {
            Due::Yes { .. } => {
                let why = d.to_string();
                assert!(
                    why.contains("9999-12-31T23:59:59Z is further ahead than vipcert ever waits"),
                    "{why}"
                )
            }
            d => panic!("{d:?}"),
        }
        // A credible one still holds.
        let st = State {
            next_attempt: Some(UnixTime::new(70 * DAY + DAY)),
            ..State::default()
        };
        assert!(matches!(
            due(70 * DAY, Some(&c), &st, None, false, 0.0),
            Due::BackingOff { .. }
        ));
        use crate::unixtime::{MAX, MIN};
        for (nb, na) in [(MIN, MAX), (MIN, MIN), (MAX, MAX)] {
            let c = CertInfo {
                not_before: nb,
                not_after: na,
                ..cert(0, 1)
            };
            for now in [MIN, MAX] {
                for w in [None, Some((MIN, MAX)), Some((MAX, MIN))] {
                    let _ = due(now, Some(&c), &State::default(), w, false, 0.5);
                }
            }
        }
    }

    /// The report's words, which operators, scripts and tests/it read: a line per decision in
    /// plan order, then a line per ordered lineage (a failure with its record), then the
    /// install (here: one that could not run).
    #[test]
    fn the_report_words_every_decision_and_every_order() {
        use crate::attempts::FailureRecord;
        const T: i64 = 1_800_000_000; // 2027-01-15T08:00:00Z
        const D: i64 = T + DAY;
        let change = PlanChange {
            added: vec!["x.example.org".into()],
            key_type: Some(("rsa2048".into(), "ecdsa-p256".into())),
            ..PlanChange::default()
        };
        let decisions = vec![
            ("a", Due::yes(DueReason::NoCertificate)),
            (
                "b",
                Due::Yes {
                    reason: DueReason::Lifetime {
                        short_lived: false,
                        not_after: D,
                    },
                    ignored_next_attempt: Some(T),
                },
            ),
            (
                "c",
                Due::No(NotDueReason::Lifetime {
                    not_after: D,
                    renews_from: T,
                }),
            ),
            (
                "d",
                Due::BackingOff {
                    reason: DueReason::AriWindow { start: T, end: D },
                    until: D,
                    failures: 2,
                    last_error: Some("boom\n".into()),
                },
            ),
            ("f", Due::yes(DueReason::PlanChanged(Box::new(change)))),
            ("g", Due::yes(DueReason::Forced)),
        ];
        let mut decisions: Vec<(String, Decision)> = decisions
            .into_iter()
            .map(|(l, d)| (l.to_string(), Decision::Judged(d)))
            .collect();
        let unreadable = anyhow::anyhow!("store/e/0001/cert.pem does not hold a certificate");
        decisions.insert(4, ("e".into(), Decision::Unreadable(unreadable)));
        let e = std::sync::Arc::new(anyhow::anyhow!("the CA said no"));
        let published = LineageResult::Published {
            version: 2,
            serial: "0a".into(),
            not_after: D,
            warnings: vec!["not recorded".into()],
        };
        let run = PipelineReport {
            node: "dtn1.example.org".into(),
            issued: Some(IssueOutcome::Done(vec![
                ("a".into(), published),
                ("b".into(), LineageResult::Skipped { version: 3 }),
                ("f".into(), LineageResult::Failed(e.clone())),
                ("g".into(), LineageResult::Failed(e)),
            ])),
            recorded: vec![
                (
                    "f".into(),
                    FailureRecord::Counted {
                        failures: 1,
                        next_attempt: D,
                    },
                ),
                ("g".into(), FailureRecord::Unrecorded("disk full".into())),
            ],
            install: Err(anyhow::anyhow!("no install root")),
            targets: vec![],
        };
        let rep = RenewReport { decisions, run };
        assert!(!rep.ok());
        assert_eq!(
            rep.to_string(),
            "a: due: no certificate in the store yet\n\
             b: due: less than 1/3 of the lifetime remains (valid until 2027-01-16T08:00:00Z) (the renewal state's next attempt 2027-01-15T08:00:00Z is further ahead than vipcert ever waits: ignored)\n\
             c: not due: valid until 2027-01-16T08:00:00Z; renews from 2027-01-15T08:00:00Z\n\
             d: NOT RENEWED: inside the CA's renewal window (ARI) 2027-01-15T08:00:00Z .. 2027-01-16T08:00:00Z, but backing off after 2 failure(s) (last: boom\\n); next attempt after 2027-01-16T08:00:00Z (or `vipcert renew --force`)\n\
             e: NOT RENEWED, nothing ordered: the current version cannot be read: store/e/0001/cert.pem does not hold a certificate; renew orders nothing until it can (point current at a kept version with `vipcert rollback --to NNNN`, or order a new one with `vipcert issue --force`)\n\
             f: due: the cluster changed: names added: x.example.org; key type rsa2048 -> ecdsa-p256\n\
             g: due: --force\n\
             a: renewed: version 0002 (serial 0a, valid until 2027-01-16T08:00:00Z)\n\
             a: warning: not recorded\n\
             b: already renewed by another node (version 0003)\n\
             f: RENEWAL FAILED (failure 1 in a row; next attempt after 2027-01-16T08:00:00Z): the CA said no\n\
             g: RENEWAL FAILED: the CA said no\n\
             g: warning: the failure was not recorded: disk full\n\
             install FAILED on dtn1.example.org: no install root\n"
        );
        // The same pipeline run as `issue` says it: its own words, the records after the
        // outcome, and no line for an install that could not run (the command's error).
        assert_eq!(
            rep.run.to_string(),
            "a: issued version 0002 (serial 0a, valid until 2027-01-16T08:00:00Z)\n\
             a: warning: not recorded\n\
             b: already issued (version 0003); use --force to order again\n\
             f: FAILED: the CA said no\n\
             g: FAILED: the CA said no\n\
             f: failure 1 in a row recorded; `vipcert renew` tries again after 2027-01-16T08:00:00Z\n\
             g: warning: the failure was not recorded: disk full\n"
        );
        assert!(rep.run.into_ok().is_err());
    }

    /// Every reason a lineage is not due, and the short-lived lifetime rule, in words.
    #[test]
    fn every_reason_has_its_words() {
        const T: i64 = 1_800_000_000;
        let say = |d: Due| d.to_string();
        assert_eq!(
            say(Due::No(NotDueReason::BeforeAriWindow { start: T })),
            "the CA's renewal window (ARI) starts at 2027-01-15T08:00:00Z"
        );
        assert_eq!(
            say(Due::yes(DueReason::Expired { not_after: T })),
            "expired at 2027-01-15T08:00:00Z"
        );
        assert_eq!(
            say(Due::yes(DueReason::Lifetime {
                short_lived: true,
                not_after: T
            })),
            "less than 1/2 of the lifetime remains (valid until 2027-01-15T08:00:00Z)"
        );
        let change = PlanChange {
            removed: vec!["old.example.org".into()],
            cn: Some((None, "v.example.org".into())),
            ..PlanChange::default()
        };
        assert_eq!(
            change.to_string(),
            "names removed: old.example.org; CN none -> v.example.org"
        );
    }

    #[test]
    fn rollback_picks_previous_kept() {
        assert_eq!(rollback_target(&[3, 4, 5], Some(5), None).unwrap(), 4);
        assert_eq!(rollback_target(&[3, 4, 5], Some(4), None).unwrap(), 3);
        assert!(rollback_target(&[3, 4, 5], Some(3), None).is_err());
        assert_eq!(rollback_target(&[3, 4, 5], Some(5), Some(3)).unwrap(), 3);
        assert!(rollback_target(&[3, 4, 5], Some(5), Some(1)).is_err());
        assert!(rollback_target(&[], None, None).is_err());
    }
}
