//! `vipcert renew`: decide per lineage whether it is due (the CA's ARI window, else a fraction
//! of the lifetime), back off after failures, let the lease holder order through the issue
//! flow, record the outcome in `state/<lineage>.json`, then install this node's lineages.
//!
//! Owns the due decision (`decide`, pure), the backoff schedule (`backoff`, pure) and the
//! bookkeeping around one renewal run. It does not talk to the CA beyond the ARI query (the
//! order is `issue::run`'s), does not take the lease itself (`issue::run` does) and does not
//! write install targets (`install::run`).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::cert::CertInfo;
use crate::config::{Config, KeyType};
use crate::issue::{LineageResult, Outcome};
use crate::plan::{Lineage, Plan};
use crate::store::{fmt_time, format_version, now, State, Store};
use crate::unixtime::UnixTime;

/// Lifetimes shorter than this renew at half their life (short-lived certificates), longer ones
/// when a third remains.
const SHORT_LIFETIME: i64 = 10 * 86400;
/// RFC 9773 §4.3: clamp the CA's Retry-After for renewalInfo to [1 min, 1 day].
const ARI_RETRY_MIN: i64 = 60;
const ARI_RETRY_MAX: i64 = 86400;

/// The wait after the n-th consecutive failure: about 1 min, 10 min, 100 min, then daily
/// (never more than `retry::LONGEST_BACKOFF`, which judges recorded waits).
pub(crate) fn backoff(failures: u32) -> i64 {
    match failures {
        0 => 0,
        1 => 60,
        2 => 600,
        3 => 6000,
        _ => 86400,
    }
}

/// Whether a lineage is to be renewed now, and why (printed as is).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Due {
    Yes(String),
    No(String),
    /// Due, but an earlier failure (or the CA's Retry-After) says not before `until`.
    BackingOff {
        until: i64,
        why: String,
    },
}

/// The due decision. `cert`: the current leaf, if any; `changed`: how the plan differs from
/// it (`plan_change`), which makes it due at once; `window`: the CA's ARI suggested window for
/// *this* certificate, if known; `jitter` in [0, 1) picks the moment inside the window (RFC
/// 9773 §4.2: a random time in the window, so clients do not all come at once). Backoff after
/// failures applies to a changed plan too: a new node that fails validation must not spend
/// the CA's failed-validation budget every run.
pub(crate) fn decide(
    now: i64,
    cert: Option<&CertInfo>,
    state: &State,
    changed: Option<&str>,
    window: Option<(i64, i64)>,
    force: bool,
    jitter: f64,
) -> Due {
    if force {
        return Due::Yes("--force".into());
    }
    let Some(c) = cert else {
        return Due::Yes("no certificate in the store yet".into());
    };
    let wanted = if let Some(what) = changed {
        Some(format!("the cluster changed: {what}"))
    } else if let Some((start, end)) = window {
        let at = start + ((end - start).max(0) as f64 * jitter.clamp(0.0, 1.0)) as i64;
        if now >= at.min(end) {
            Some(format!(
                "inside the CA's renewal window (ARI) {} .. {}",
                fmt_time(start),
                fmt_time(end)
            ))
        } else if now >= c.not_after {
            Some(format!("expired at {}", fmt_time(c.not_after)))
        } else {
            return Due::No(format!(
                "the CA's renewal window (ARI) starts at {}",
                fmt_time(start)
            ));
        }
    } else {
        let life = c.lifetime_secs().max(1);
        let threshold = if life < SHORT_LIFETIME {
            life / 2
        } else {
            life / 3
        };
        let at = c.not_after - threshold;
        if now >= at {
            Some(format!(
                "{} of the lifetime remains (valid until {})",
                if life < SHORT_LIFETIME {
                    "less than 1/2"
                } else {
                    "less than 1/3"
                },
                fmt_time(c.not_after)
            ))
        } else {
            return Due::No(format!(
                "valid until {}; renews from {}",
                fmt_time(c.not_after),
                fmt_time(at)
            ));
        }
    };
    let why = wanted.unwrap_or_default();
    match state.next_attempt.map(UnixTime::get) {
        // Not a wait vipcert records: a broken or foreign state file does not stop renewal.
        Some(t) if t > now && !crate::retry::credible(t, now, Some(c.not_after)) => {
            Due::Yes(format!(
                "{why} (the renewal state's next attempt {} is further ahead than vipcert ever waits: ignored)",
                fmt_time(t)
            ))
        }
        Some(t) if t > now => Due::BackingOff {
            until: t,
            why: format!(
                "{why}, but backing off after {} failure(s){}",
                state.failures,
                state
                    .last_error
                    .as_deref()
                    .map(|e| format!(" (last: {})", crate::escape::escape(e)))
                    .unwrap_or_default()
            ),
        },
        _ => Due::Yes(why),
    }
}

/// How the planned lineage differs from its current certificate — names added or removed, CN,
/// key type, profile — or None when they agree. Compares the name *set* (the CA orders SANs as
/// it likes). `profile`: (configured, issued with), "" meaning the CA's default; None when
/// either is unknown (a version from before vipcert recorded it, or a CA no longer
/// configured), which is never by itself a change.
pub(crate) fn plan_change(
    l: &Lineage,
    key_type: KeyType,
    profile: Option<(&str, &str)>,
    c: &CertInfo,
) -> Option<String> {
    let planned = l.name_set();
    let held: BTreeSet<String> = c.sans.iter().chain(&c.cn).cloned().collect();
    let list = |v: Vec<&String>| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
    let mut what = Vec::new();
    let added: Vec<&String> = planned.difference(&held).collect();
    if !added.is_empty() {
        what.push(format!("names added: {}", list(added)));
    }
    let removed: Vec<&String> = held.difference(&planned).collect();
    if !removed.is_empty() {
        what.push(format!("names removed: {}", list(removed)));
    }
    if c.cn.as_deref() != Some(l.cn()) {
        let old = c.cn.as_deref().unwrap_or("none");
        what.push(format!("CN {old} -> {}", l.cn()));
    }
    if c.key_type != key_type.as_str() {
        what.push(format!("key type {} -> {}", c.key_type, key_type.as_str()));
    }
    if let Some((want, had)) = profile.filter(|(want, had)| want != had) {
        let show = |p: &str| {
            if p.is_empty() {
                "the CA's default".to_string()
            } else {
                format!("\"{p}\"")
            }
        };
        what.push(format!("profile {} -> {}", show(had), show(want)));
    }
    (!what.is_empty()).then(|| what.join("; "))
}

/// Record a failed attempt: count it and schedule the next one (the CA's Retry-After if it gave
/// one, capped by `retry::retry_at` for the current certificate valid until `not_after`; else
/// the backoff schedule).
pub(crate) fn record_failure(
    st: &mut State,
    now: i64,
    error: &str,
    retry_after: Option<i64>,
    not_after: Option<i64>,
) {
    st.failures = st.failures.saturating_add(1);
    st.last_attempt = Some(UnixTime::new(now));
    let mut e = error.to_string();
    if e.len() > 1000 {
        let mut cut = 1000;
        while !e.is_char_boundary(cut) {
            cut -= 1;
        }
        e.truncate(cut);
    }
    st.last_error = Some(e);
    let next = retry_after
        .map(|t| crate::retry::retry_at(now, t, not_after))
        .filter(|t| *t > now)
        .unwrap_or(now.saturating_add(backoff(st.failures)));
    st.next_attempt = Some(UnixTime::new(next));
}

fn jitter() -> f64 {
    let mut b = [0u8; 8];
    crate::random::fill(&mut b);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// What `vipcert renew` was asked.
pub struct Options {
    /// This node's hostname (lease holder, meta.issued_by).
    pub node: String,
    /// Renew every lineage now, whatever its window or backoff says.
    pub force: bool,
    /// Sleep a random time up to this long first.
    pub random_delay: Option<Duration>,
    /// Prefix for install paths.
    pub root: std::path::PathBuf,
}

/// The run's outcome: lines to print and whether it succeeded.
pub struct Report {
    /// Lines to print.
    pub text: String,
    /// Nothing failed.
    pub ok: bool,
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

/// The ARI window of `leaf` from the CA, updating `st` (cached until the CA's Retry-After).
/// Returns the identifier for `replaces` when the CA supports ARI.
async fn ari(
    ca: &str,
    account: &instant_acme::Account,
    lineage: &str,
    pem: &[u8],
    leaf: &CertInfo,
    st: &mut State,
    t: i64,
) -> Option<instant_acme::CertificateIdentifier<'static>> {
    let (aki, ser) = crate::cert::ari_parts(pem).ok().flatten()?;
    let id = instant_acme::CertificateIdentifier::new(
        rustls_pki_types::Der::from_slice(&aki),
        rustls_pki_types::Der::from_slice(&ser),
    )
    .into_owned();
    // Asked again once the CA's wait is over, or at once if the recorded wait is longer than
    // any this function records (a state file written wrongly).
    let serial = leaf.serial.as_str();
    let fresh = st.ari_serial.as_deref() == Some(serial)
        && st
            .ari_retry_after
            .is_some_and(|r| r.get() > t && r.get() <= t.saturating_add(ARI_RETRY_MAX));
    if fresh {
        return Some(id);
    }
    match account.renewal_info(&id).await {
        Ok((info, delay)) => {
            let w = &info.suggested_window;
            st.ari_start = Some(UnixTime::new(w.start.unix_timestamp()));
            st.ari_end = Some(UnixTime::new(w.end.unix_timestamp()));
            st.ari_checked_at = Some(UnixTime::new(t));
            st.ari_retry_after = Some(UnixTime::new(ari_again(t, delay, leaf.not_after)));
            st.ari_serial = Some(serial.to_string());
            Some(id)
        }
        Err(instant_acme::Error::Unsupported(_)) => None,
        Err(e) => {
            tracing::warn!(lineage, error = %crate::acme::describe(ca, e), "cannot fetch the ARI renewal window; using the lifetime rule");
            // Still an ARI CA: renew with `replaces` if due by the lifetime rule.
            Some(id)
        }
    }
}

/// One renewal run on this node (see the module documentation).
pub async fn run(cfg: &Config, plan: &Plan, store: &Store, opts: &Options) -> Result<Report> {
    if let Some(d) = opts.random_delay.filter(|d| !d.is_zero()) {
        let wait = d.mul_f64(jitter());
        tracing::info!(
            "waiting {} (--random-delay)",
            humantime::format_duration(Duration::from_secs(wait.as_secs()))
        );
        tokio::time::sleep(wait).await;
    }
    store.init()?;
    let mut text = String::new();
    let mut ok = true;

    // The account is needed only for ARI; a CA that cannot be reached now is not an error
    // here (the order, if one is due, will say what is wrong).
    let account = match crate::acme::load_account(cfg, store).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot load the ACME account; deciding without ARI");
            None
        }
    };

    let mut due = Vec::new();
    let mut if_current = Vec::new();
    for l in &plan.lineages {
        let (line, verdict) = judge(cfg, store, account.as_ref(), l, opts.force).await?;
        text.push_str(&line);
        match verdict {
            Verdict::Due { replaces, current } => {
                due.push((l.name.clone(), replaces));
                if_current.push((l.name.clone(), current));
            }
            Verdict::NotDue => {}
            Verdict::Blocked => ok = false,
        }
    }
    if !due.is_empty() {
        ok &= order(cfg, plan, store, opts, due, if_current, &mut text).await;
    }

    // Every node installs what is current, whoever renewed it.
    match crate::install::run(cfg, plan, store, &opts.node, &opts.root) {
        Ok(rep) => {
            text.push_str(&rep.summary(&crate::plan::targets(cfg, &opts.root)));
            ok &= rep.ok();
        }
        Err(e) => {
            ok = false;
            let _ = writeln!(text, "install FAILED on {}: {e:#}", opts.node);
        }
    }
    Ok(Report { text, ok })
}

/// What `judge` decided for one lineage.
enum Verdict {
    /// To be ordered, with `replaces` (ARI) and the version `current` held when decided.
    Due {
        replaces: Option<instant_acme::CertificateIdentifier<'static>>,
        current: Option<u32>,
    },
    NotDue,
    /// Not ordered, and the run fails: backing off, or the store needs the admin.
    Blocked,
}

/// The current version of `l` and its leaf, or what the admin must fix, naming the file. An
/// unreadable `current` is never "no certificate yet": ordering would not repair whatever
/// broke it (a lost share, a hand edit, a planted file), and a node whose view of the share
/// fails would order on every run.
fn current_leaf(store: &Store, l: &str) -> Result<Option<(crate::store::Version, CertInfo)>> {
    let Some(v) = store.read_current(l)? else {
        return Ok(None);
    };
    let file = store
        .store_path()
        .join(l)
        .join(format_version(v.number))
        .join("cert.pem");
    // The certificate itself, not meta.json, says when it expires.
    let info = crate::cert::leaf_info(&v.cert_pem)
        .with_context(|| format!("{} does not hold a certificate", file.display()))?;
    Ok(Some((v, info)))
}

/// Decide whether lineage `l` is due (refreshing its ARI window on the way): the line to print
/// and the verdict.
async fn judge(
    cfg: &Config,
    store: &Store,
    account: Option<&instant_acme::Account>,
    l: &Lineage,
    force: bool,
) -> Result<(String, Verdict)> {
    let t = now();
    let (current, info) = match current_leaf(store, &l.name) {
        Ok(Some((v, i))) => (Some(v), Some(i)),
        Ok(None) => (None, None),
        Err(e) => {
            let line = format!(
                "{}: NOT RENEWED, nothing ordered: the current version cannot be read: {e:#}; renew orders nothing until it can (point current at a kept version with `vipcert rollback --to NNNN`, or order a new one with `vipcert issue --force`)\n",
                l.name
            );
            return Ok((line, Verdict::Blocked));
        }
    };
    let mut st = store.read_state(&l.name)?;
    let mut replaces = None;
    if let (Some(acc), Some(v), Some(i)) = (account, &current, &info) {
        let before = st.clone();
        replaces = ari(
            &cfg.acme.directory,
            acc,
            &l.name,
            &v.cert_pem,
            i,
            &mut st,
            t,
        )
        .await;
        if st != before {
            save_ari(store, &l.name, &mut st)?;
        }
    }
    let window = match (&info, st.ari_serial.as_deref()) {
        (Some(i), Some(s)) if s == i.serial => st
            .ari_start
            .zip(st.ari_end)
            .map(|(a, b)| (a.get(), b.get())),
        _ => None,
    };
    let changed = current
        .as_ref()
        .zip(info.as_ref())
        .and_then(|(v, i)| change_since(cfg, l, v, i));
    let verdict = decide(
        t,
        info.as_ref(),
        &st,
        changed.as_deref(),
        window,
        force,
        jitter(),
    );
    Ok(match verdict {
        Due::Yes(why) => (
            format!("{}: due: {why}\n", l.name),
            Verdict::Due {
                replaces,
                current: current.as_ref().map(|v| v.number),
            },
        ),
        Due::No(why) => (format!("{}: not due: {why}\n", l.name), Verdict::NotDue),
        Due::BackingOff { until, why } => (
            format!(
                "{}: NOT RENEWED: {why}; next attempt after {} (or `vipcert renew --force`)\n",
                l.name,
                fmt_time(until)
            ),
            Verdict::Blocked,
        ),
    })
}

/// How the plan differs from version `v` (leaf `i`), logged; None when it does not.
fn change_since(
    cfg: &Config,
    l: &Lineage,
    v: &crate::store::Version,
    i: &CertInfo,
) -> Option<String> {
    // The profile to compare with is that of the CA which issued the version (a fallback
    // CA may have its own).
    let profile = v
        .meta
        .profile
        .as_deref()
        .and_then(|had| Some((cfg.acme.profile_at(&v.meta.ca)?, had)));
    let what = plan_change(l, cfg.acme.key_type, profile, i)?;
    tracing::info!(lineage = %l.name, "the cluster changed since the current certificate: {what}");
    Some(what)
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

/// Order the lineages of `due` through the issue flow and say how each went; whether all went
/// well.
async fn order(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    opts: &Options,
    due: Vec<(String, Option<instant_acme::CertificateIdentifier<'static>>)>,
    if_current: Vec<(String, Option<u32>)>,
    text: &mut String,
) -> bool {
    let names: Vec<String> = due.iter().map(|(n, _)| n.clone()).collect();
    let iopts = crate::issue::Options {
        force: opts.force,
        node: opts.node.clone(),
        only: Some(due),
        // Even with --force: a node that gets the lease after another one renewed this
        // lineage must not order a second certificate.
        if_current: Some(if_current),
    };
    let results = match crate::issue::run(cfg, plan, store, &iopts).await {
        Ok(Outcome::InProgress(h)) => {
            let _ = writeln!(
                text,
                "renewal in progress on {} (pid {}); this node only installs",
                crate::escape::escape(&h.node),
                h.pid
            );
            return true;
        }
        Ok(Outcome::Done(results)) => results,
        Err(e) => {
            let e = std::sync::Arc::new(e);
            names
                .into_iter()
                .map(|n| (n, LineageResult::Failed(e.clone())))
                .collect()
        }
    };
    let mut ok = true;
    for (l, r) in results {
        match r {
            LineageResult::Published {
                version,
                serial,
                not_after,
                warnings,
            } => {
                let _ = writeln!(
                    text,
                    "{l}: renewed: version {} (serial {serial}, valid until {}){}",
                    format_version(version),
                    fmt_time(not_after),
                    crate::issue::warning_lines(&l, &warnings)
                );
            }
            LineageResult::Skipped { version } => {
                let _ = writeln!(
                    text,
                    "{l}: already renewed by another node (version {})",
                    format_version(version)
                );
            }
            LineageResult::Failed(e) => {
                ok = false;
                fail(cfg, plan, store, &opts.node, &l, &e, text).await;
            }
        }
    }
    ok
}

/// Record a failed attempt at lineage `l`, say so, and tell `[notify] on_failure`.
async fn fail(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    node: &str,
    l: &str,
    e: &anyhow::Error,
    text: &mut String,
) {
    let (st, unrecorded) = record_and_notify(cfg, plan, store, node, l, e).await;
    let _ = match unrecorded {
        None => writeln!(
            text,
            "{l}: RENEWAL FAILED (failure {} in a row; next attempt after {}): {e:#}",
            st.failures,
            fmt_time(st.next_attempt.unwrap_or_default().get()),
        ),
        // Nothing counted, so no backoff either: the next run tries again.
        Some(w) => writeln!(text, "{l}: RENEWAL FAILED: {e:#}\n{l}: warning: {w}"),
    };
}

/// After `issue`: record each lineage that failed (its failure count rises, so the hook runs
/// once for it) and say when `renew` tries again. The failures themselves are in
/// `Outcome::summary`.
pub async fn record_failures(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    node: &str,
    out: &Outcome,
) -> Result<String> {
    let mut text = String::new();
    let Outcome::Done(results) = out else {
        return Ok(text);
    };
    for (l, r) in results {
        if let LineageResult::Failed(e) = r {
            let (st, unrecorded) = record_and_notify(cfg, plan, store, node, l, e).await;
            let _ = match unrecorded {
                None => writeln!(
                    text,
                    "{l}: failure {} in a row recorded; `vipcert renew` tries again after {}",
                    st.failures,
                    fmt_time(st.next_attempt.unwrap_or_default().get())
                ),
                Some(w) => writeln!(text, "{l}: warning: {w}"),
            };
        }
    }
    Ok(text)
}

/// Count a failed attempt at lineage `l` in state/ (with the CA's Retry-After, if it gave
/// one) and run `[notify] on_failure` for it. Returns the new state, and why it could not be
/// recorded if so: the hook runs all the same (a failure nobody hears of is worse than one
/// heard of twice).
async fn record_and_notify(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    node: &str,
    l: &str,
    e: &anyhow::Error,
) -> (State, Option<String>) {
    let mut unrecorded = None;
    let mut st = store.read_state(l).unwrap_or_else(|e| {
        unrecorded = Some(format!("{e:#}"));
        State::default()
    });
    // The CA's Retry-After travels as data in the typed ACME failure; it is capped by what
    // remains of the current certificate.
    let retry_after = crate::acme::AcmeError::find(e)
        .and_then(|a| a.retry_after())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let not_after = current_not_after(store, l);
    let e = format!("{e:#}");
    record_failure(&mut st, now(), &e, retry_after, not_after);
    if unrecorded.is_none() {
        if let Err(w) = store.write_state(l, &st) {
            unrecorded = Some(format!("{w:#}"));
        }
    }
    let unrecorded = unrecorded.map(|w| format!("the failure was not recorded: {w}"));
    let failure = crate::failure_hook::Failure {
        lineage: l,
        names: plan.lineage(l).map_or(&[], |x| x.names.as_slice()),
        // As recorded: bounded in length.
        error: st.last_error.as_deref().unwrap_or(&e),
        failures: st.failures,
        next_attempt: st.next_attempt.unwrap_or_default().get(),
        node,
        ca: &cfg.acme.directory,
    };
    crate::failure_hook::on_failure(&cfg.notify, &failure).await;
    (st, unrecorded)
}

/// notAfter of the current certificate of `l`, when it can be read (the Retry-After cap).
fn current_not_after(store: &Store, l: &str) -> Option<i64> {
    let v = store.read_current(l).ok()??;
    crate::cert::leaf_info(&v.cert_pem)
        .ok()
        .map(|i| i.not_after)
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

/// `vipcert rollback`: point `current` at an earlier kept version, then install here.
pub fn rollback(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    node: &str,
    root: &Path,
    lineage: &str,
    to: Option<u32>,
) -> Result<Report> {
    let l = plan.named_lineage(lineage)?;
    let current = store.current(&l.name)?;
    let target = rollback_target(&store.versions(&l.name)?, current, to)?;
    // Refuse a version that would not install: verify it as install will.
    crate::install::verified_version(cfg, store, l, target)
        .map_err(|e| anyhow::anyhow!("{e:#}; not rolled back"))?;
    store.set_current(&l.name, target)?;
    let mut text = format!(
        "{}: current is now version {} (was {})\n",
        l.name,
        format_version(target),
        current.map(format_version).unwrap_or_else(|| "none".into())
    );
    let rep = crate::install::run(cfg, plan, store, node, root)?;
    text.push_str(&rep.summary(&crate::plan::targets(cfg, root)));
    Ok(Report { text, ok: rep.ok() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86400;

    fn cert(not_before: i64, days: i64) -> CertInfo {
        CertInfo {
            cn: None,
            sans: vec![],
            serial: "01".into(),
            not_before,
            not_after: not_before + days * DAY,
            sha256: String::new(),
            eku: vec![],
            key_type: "ecdsa-p256".into(),
            issuer: String::new(),
            aki: None,
        }
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

    fn yes(d: &Due) -> bool {
        matches!(d, Due::Yes(_))
    }

    #[test]
    fn plan_change_sees_a_profile_change_only_when_both_are_known() {
        let l = Lineage {
            name: "v.example.org".into(),
            names: vec!["v.example.org".into()],
            nodes: vec![],
        };
        let mut c = cert(0, 90);
        c.cn = Some("v.example.org".into());
        c.sans = vec!["v.example.org".into()];
        let k = KeyType::EcdsaP256;
        assert_eq!(plan_change(&l, k, Some(("classic", "classic")), &c), None);
        // Unknown (an older version, or a CA no longer configured): not due for that alone.
        assert_eq!(plan_change(&l, k, None, &c), None);
        assert_eq!(
            plan_change(&l, k, Some(("tlsclient", "classic")), &c).as_deref(),
            Some("profile \"classic\" -> \"tlsclient\"")
        );
        assert_eq!(
            plan_change(&l, k, Some(("classic", "")), &c).as_deref(),
            Some("profile the CA's default -> \"classic\"")
        );
        assert_eq!(
            plan_change(&l, k, Some(("", "shortlived")), &c).as_deref(),
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
            plan_change(&l, KeyType::Rsa2048, None, &c).as_deref(),
            Some("names added: c.example.org; names removed: b.example.org; key type ecdsa-p256 -> rsa2048")
        );
        // A changed plan is due at once, even early in the lifetime; a backoff still holds.
        let mut st = State::default();
        assert!(yes(&decide(
            DAY,
            Some(&c),
            &st,
            Some("x"),
            None,
            false,
            0.0
        )));
        st.next_attempt = Some(UnixTime::new(2 * DAY));
        assert!(matches!(
            decide(DAY, Some(&c), &st, Some("x"), None, false, 0.0),
            Due::BackingOff { .. }
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

    #[test]
    fn force_missing_and_backoff() {
        let c = cert(0, 90);
        let mut st = State::default();
        assert!(yes(&due(0, None, &st, None, false, 0.0)));
        assert!(yes(&due(0, Some(&c), &st, None, true, 0.0)));
        record_failure(&mut st, 70 * DAY, "the CA said: boom", None, None);
        assert_eq!(st.failures, 1);
        assert_eq!(st.next_attempt, Some(UnixTime::new(70 * DAY + 60)));
        match due(70 * DAY + 59, Some(&c), &st, None, false, 0.0) {
            Due::BackingOff { until, why } => {
                assert_eq!(until, 70 * DAY + 60);
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
        match due(70 * DAY, Some(&c), &st, None, false, 0.0) {
            Due::Yes(why) => assert!(
                why.contains("9999-12-31T23:59:59Z is further ahead than vipcert ever waits"),
                "{why}"
            ),
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
