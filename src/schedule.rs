//! When a lineage renews, and why: the pure renewal schedule that `renew` acts on and that
//! `status`, `check --format html` and the renew textfile show.
//!
//! Owns the due decision (`decide`, with its reasons as data: `Due`, `DueReason`,
//! `NotDueReason`, `PlanChange`), the lifetime rule, the moment a certificate renews
//! (`renews_at`), the backoff a recorded failure holds it back for (`backoff_until`), and
//! `decide_cached`: the decision from what the store holds, with the ARI window cached in
//! `state/`. It asks no CA, writes nothing and runs nothing: refreshing the ARI window and
//! ordering are `renew`'s.

use std::collections::BTreeSet;
use std::fmt;

use anyhow::{Context as _, Result};

use crate::cert::CertInfo;
use crate::config::{Config, KeyType};
use crate::plan::Lineage;
use crate::store::{fmt_time, format_version, State, Store};
use crate::unixtime::UnixTime;

/// Lifetimes shorter than this renew at half their life (short-lived certificates), longer ones
/// when a third remains.
const SHORT_LIFETIME: i64 = 10 * 86400;

/// Whether a lineage is to be renewed now, and why. Displayed as the reason printed after
/// "due: ", "not due: " or "NOT RENEWED: ".
#[derive(Debug, Clone, PartialEq)]
pub enum Due {
    /// Due now.
    Yes {
        /// Why.
        reason: DueReason,
        /// A next attempt the state file records further ahead than vipcert ever waits (a
        /// broken or foreign file), ignored.
        ignored_next_attempt: Option<i64>,
    },
    /// Not due yet.
    No(NotDueReason),
    /// Due, but an earlier failure (or the CA's Retry-After) says not before `until`.
    BackingOff {
        /// Why it would be due.
        reason: DueReason,
        /// Unix seconds of the next attempt.
        until: i64,
        /// Consecutive failures so far.
        failures: u32,
        /// Why the last attempt failed, as recorded.
        last_error: Option<String>,
    },
}

impl Due {
    pub(crate) fn yes(reason: DueReason) -> Due {
        Due::Yes {
            reason,
            ignored_next_attempt: None,
        }
    }
}

impl fmt::Display for Due {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Due::Yes {
                reason,
                ignored_next_attempt: None,
            } => write!(f, "{reason}"),
            Due::Yes {
                reason,
                ignored_next_attempt: Some(t),
            } => write!(
                f,
                "{reason} (the renewal state's next attempt {} is further ahead than vipcert ever waits: ignored)",
                fmt_time(*t)
            ),
            Due::No(why) => write!(f, "{why}"),
            Due::BackingOff {
                reason,
                failures,
                last_error,
                ..
            } => {
                write!(f, "{reason}, but backing off after {failures} failure(s)")?;
                match last_error {
                    Some(e) => write!(f, " (last: {})", crate::escape::escape(e)),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Why a lineage is due.
#[derive(Debug, Clone, PartialEq)]
pub enum DueReason {
    /// `--force`.
    Forced,
    /// The store holds no certificate for it yet.
    NoCertificate,
    /// The plan differs from the current certificate.
    PlanChanged(Box<PlanChange>),
    /// Inside the CA's suggested renewal window (ARI), unix seconds.
    AriWindow {
        /// Start of the window.
        start: i64,
        /// End of the window.
        end: i64,
    },
    /// Before the CA's renewal window, but already expired.
    Expired {
        /// When it expired.
        not_after: i64,
    },
    /// Less than a third of the lifetime remains (half for short-lived certificates).
    Lifetime {
        /// Shorter-lived than `SHORT_LIFETIME`: renewed at half its life.
        short_lived: bool,
        /// When it expires.
        not_after: i64,
    },
}

impl fmt::Display for DueReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DueReason::Forced => write!(f, "--force"),
            DueReason::NoCertificate => write!(f, "no certificate in the store yet"),
            DueReason::PlanChanged(what) => write!(f, "the cluster changed: {what}"),
            DueReason::AriWindow { start, end } => write!(
                f,
                "inside the CA's renewal window (ARI) {} .. {}",
                fmt_time(*start),
                fmt_time(*end)
            ),
            DueReason::Expired { not_after } => write!(f, "expired at {}", fmt_time(*not_after)),
            DueReason::Lifetime {
                short_lived,
                not_after,
            } => write!(
                f,
                "{} of the lifetime remains (valid until {})",
                if *short_lived {
                    "less than 1/2"
                } else {
                    "less than 1/3"
                },
                fmt_time(*not_after)
            ),
        }
    }
}

/// Why a lineage is not due yet.
#[derive(Debug, Clone, PartialEq)]
pub enum NotDueReason {
    /// The CA's renewal window (ARI) has not started.
    BeforeAriWindow {
        /// Unix seconds of its start.
        start: i64,
    },
    /// Enough of the lifetime remains.
    Lifetime {
        /// When the certificate expires.
        not_after: i64,
        /// When the lifetime rule makes it due.
        renews_from: i64,
    },
}

impl fmt::Display for NotDueReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotDueReason::BeforeAriWindow { start } => write!(
                f,
                "the CA's renewal window (ARI) starts at {}",
                fmt_time(*start)
            ),
            NotDueReason::Lifetime {
                not_after,
                renews_from,
            } => write!(
                f,
                "valid until {}; renews from {}",
                fmt_time(*not_after),
                fmt_time(*renews_from)
            ),
        }
    }
}

/// How the planned lineage differs from its current certificate. Displayed as "names added:
/// …; names removed: …; CN a -> b; key type a -> b; profile a -> b; CA a -> b", the parts
/// that apply.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlanChange {
    /// Names planned but not in the certificate, sorted.
    pub added: Vec<String>,
    /// Names in the certificate but no longer planned, sorted.
    pub removed: Vec<String>,
    /// The CN when it differs: (the certificate's, None when it has none; the planned one).
    pub cn: Option<(Option<String>, String)>,
    /// The key type when it differs: (the certificate's, the configured one).
    pub key_type: Option<(String, String)>,
    /// The profile when both are known and differ: (issued with, configured); "" is the CA's
    /// default.
    pub profile: Option<(String, String)>,
    /// The CA when the version's (`meta.ca`) is none of the lineage's CAs any more (its named
    /// CA, or `[acme]` and its fallbacks): (issued by, the lineage's CA now).
    pub ca: Option<(String, String)>,
}

impl fmt::Display for PlanChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |p: &str| {
            if p.is_empty() {
                "the CA's default".to_string()
            } else {
                format!("\"{p}\"")
            }
        };
        let mut what = Vec::new();
        if !self.added.is_empty() {
            what.push(format!("names added: {}", self.added.join(", ")));
        }
        if !self.removed.is_empty() {
            what.push(format!("names removed: {}", self.removed.join(", ")));
        }
        if let Some((old, new)) = &self.cn {
            what.push(format!("CN {} -> {new}", old.as_deref().unwrap_or("none")));
        }
        if let Some((held, want)) = &self.key_type {
            what.push(format!("key type {held} -> {want}"));
        }
        if let Some((had, want)) = &self.profile {
            what.push(format!("profile {} -> {}", show(had), show(want)));
        }
        if let Some((had, want)) = &self.ca {
            what.push(format!("CA {had} -> {want}"));
        }
        write!(f, "{}", what.join("; "))
    }
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
    changed: Option<PlanChange>,
    window: Option<(i64, i64)>,
    force: bool,
    jitter: f64,
) -> Due {
    if force {
        return Due::yes(DueReason::Forced);
    }
    let Some(c) = cert else {
        return Due::yes(DueReason::NoCertificate);
    };
    match wanted(now, c, changed, window, jitter) {
        Ok(reason) => held_back(now, c, state, reason),
        Err(why) => Due::No(why),
    }
}

/// Whether certificate `c` is due by the plan, the ARI window or its lifetime, ignoring
/// failures (`decide`'s arguments).
fn wanted(
    now: i64,
    c: &CertInfo,
    changed: Option<PlanChange>,
    window: Option<(i64, i64)>,
    jitter: f64,
) -> Result<DueReason, NotDueReason> {
    if let Some(what) = changed {
        return Ok(DueReason::PlanChanged(Box::new(what)));
    }
    if let Some((start, end)) = window {
        let at = start + ((end - start).max(0) as f64 * jitter.clamp(0.0, 1.0)) as i64;
        return if now >= at.min(end) {
            Ok(DueReason::AriWindow { start, end })
        } else if now >= c.not_after {
            Ok(DueReason::Expired {
                not_after: c.not_after,
            })
        } else {
            Err(NotDueReason::BeforeAriWindow { start })
        };
    }
    let (at, short_lived) = lifetime_rule(c);
    if now >= at {
        Ok(DueReason::Lifetime {
            short_lived,
            not_after: c.not_after,
        })
    } else {
        Err(NotDueReason::Lifetime {
            not_after: c.not_after,
            renews_from: at,
        })
    }
}

/// When the lifetime rule makes certificate `c` due: when a third of its lifetime remains (half
/// for a short-lived one), and whether it is short-lived.
fn lifetime_rule(c: &CertInfo) -> (i64, bool) {
    let life = c.lifetime_secs().max(1);
    let short_lived = life < SHORT_LIFETIME;
    let threshold = if short_lived { life / 2 } else { life / 3 };
    (c.not_after - threshold, short_lived)
}

/// When a lineage renews by the rules `decide` applies, the plan unchanged and before any
/// backoff: the schedule `check --format html` draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RenewsAt {
    /// The CA's suggested window (ARI) for this certificate, as cached in state/; renew picks
    /// a random moment inside it.
    Ari {
        /// Start of the window, unix seconds.
        start: i64,
        /// End of the window.
        end: i64,
        /// When the window was fetched from the CA.
        checked_at: Option<i64>,
    },
    /// The lifetime rule: due from `from` (a third of the lifetime left, half when
    /// `short_lived`).
    Lifetime {
        /// Unix seconds.
        from: i64,
        /// Shorter-lived than `SHORT_LIFETIME`.
        short_lived: bool,
    },
}

/// When certificate `c` of a lineage with renewal state `st` renews (see `RenewsAt`).
pub(crate) fn renews_at(c: &CertInfo, st: &State) -> RenewsAt {
    match cached_window(Some(c), st) {
        Some((start, end)) => RenewsAt::Ari {
            start,
            end,
            checked_at: st.ari_checked_at.map(UnixTime::get),
        },
        None => {
            let (from, short_lived) = lifetime_rule(c);
            RenewsAt::Lifetime { from, short_lived }
        }
    }
}

/// The next attempt `st` records that renew honours at `now` for a certificate valid until
/// `not_after`: still ahead, and a wait vipcert could have recorded (a broken or foreign
/// state file does not stop renewal).
pub(crate) fn backoff_until(now: i64, not_after: Option<i64>, st: &State) -> Option<i64> {
    st.next_attempt
        .map(UnixTime::get)
        .filter(|&t| t > now && crate::retry::credible(t, now, not_after))
}

/// A lineage due for `reason`, unless the recorded next attempt is still ahead (one vipcert
/// could have recorded for certificate `c`).
fn held_back(now: i64, c: &CertInfo, state: &State, reason: DueReason) -> Due {
    if let Some(until) = backoff_until(now, Some(c.not_after), state) {
        return Due::BackingOff {
            reason,
            until,
            failures: state.failures,
            last_error: state.last_error.clone(),
        };
    }
    Due::Yes {
        reason,
        ignored_next_attempt: state.next_attempt.map(UnixTime::get).filter(|&t| t > now),
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
) -> Option<PlanChange> {
    let planned = l.name_set();
    let held: BTreeSet<String> = c.sans.iter().chain(&c.cn).cloned().collect();
    let change = PlanChange {
        added: planned.difference(&held).cloned().collect(),
        removed: held.difference(&planned).cloned().collect(),
        cn: (c.cn.as_deref() != Some(l.cn())).then(|| (c.cn.clone(), l.cn().to_string())),
        key_type: (c.key_type != key_type.as_str())
            .then(|| (c.key_type.clone(), key_type.as_str().to_string())),
        profile: profile
            .filter(|(want, had)| want != had)
            .map(|(want, had)| (had.to_string(), want.to_string())),
        ca: None,
    };
    (change != PlanChange::default()).then_some(change)
}

pub(crate) fn jitter() -> f64 {
    let mut b = [0u8; 8];
    crate::random::fill(&mut b);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// The current version of `l` and its leaf, or what the admin must fix, naming the file. An
/// unreadable `current` is never "no certificate yet": ordering would not repair whatever
/// broke it (a lost share, a hand edit, a planted file), and a node whose view of the share
/// fails would order on every run.
pub(crate) fn current_leaf(
    store: &Store,
    l: &str,
) -> Result<Option<(crate::store::Version, CertInfo)>> {
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

/// The ARI window `st` caches for certificate `info` (None when it caches none, or one for
/// another certificate).
pub(crate) fn cached_window(info: Option<&CertInfo>, st: &State) -> Option<(i64, i64)> {
    match (info, st.ari_serial.as_deref()) {
        (Some(i), Some(s)) if s == i.serial => st
            .ari_start
            .zip(st.ari_end)
            .map(|(a, b)| (a.get(), b.get())),
        _ => None,
    }
}

/// `decide` for lineage `l` from what the store holds: its current version's meta and leaf
/// (`held`), its state with the ARI window cached there. Asks the CA nothing; `status` shows
/// this (with `jitter` 0: due from the window's start).
pub(crate) fn decide_cached(
    cfg: &Config,
    l: &Lineage,
    held: Option<(&crate::store::Meta, &CertInfo)>,
    st: &State,
    t: i64,
    force: bool,
    jitter: f64,
) -> Due {
    let info = held.map(|(_, i)| i);
    let changed = held.and_then(|(m, i)| change_since(cfg, l, m, i));
    decide(t, info, st, changed, cached_window(info, st), force, jitter)
}

/// How the plan differs from the version with meta `m` and leaf `i`; None when it does not.
pub(crate) fn change_since(
    cfg: &Config,
    l: &Lineage,
    m: &crate::store::Meta,
    i: &CertInfo,
) -> Option<PlanChange> {
    // The profile to compare with is that of the CA which issued the version (a fallback
    // CA may have its own).
    let profile = m
        .profile
        .as_deref()
        .and_then(|had| Some((cfg.acme.profile_at(&m.ca)?, had)));
    let change = PlanChange {
        ca: moved_ca(cfg, l, &m.ca),
        ..plan_change(l, cfg.acme.key_type, profile, i).unwrap_or_default()
    };
    (change != PlanChange::default()).then_some(change)
}

/// (issued by, the lineage's CA now) when `issued_by` (a version's `meta.ca`) is another
/// configured CA than the lineage's (its named CA, or `[acme]` and its fallbacks): a node
/// moved to or from a `[[acme.ca]]`. A version of a fallback CA is no change. Neither is one
/// from a CA no longer configured at all: vipcert cannot tell a retired CA from a renamed
/// directory URL, and renewing every lineage at once on a URL edit would be worse.
fn moved_ca(cfg: &Config, l: &Lineage, issued_by: &str) -> Option<(String, String)> {
    let now = cfg.for_ca(cfg.lineage_ca(&l.name));
    let ours = now.issuers().iter().any(|c| c.acme.directory == issued_by);
    let configured = cfg.at_directory(None, issued_by).is_some();
    (configured && !ours).then(|| (issued_by.to_string(), now.acme.directory.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version from another configured CA than its lineage's is a plan change; one from a
    /// fallback CA, or from a CA no longer configured, is not.
    #[test]
    fn a_lineage_moved_to_another_ca_is_a_change() {
        let text = |ca_line: &str| {
            format!(
                "virtual_hostname = \"v.example.org\"\nvirtual_ip = \"192.0.2.10\"\nshared_dir = \"/srv/v\"\nlayout = \"per-host\"\n[acme]\ndirectory = \"https://le.example/dir\"\n[[acme.fallback]]\ndirectory = \"https://zerossl.example/dir\"\n[[acme.ca]]\nname = \"igtf\"\ndirectory = \"https://igtf.example/dir\"\n[[node]]\nhostname = \"dtn1.example.org\"\naddress = \"192.0.2.11\"\n{ca_line}"
            )
        };
        let on_le = Config::parse(std::path::Path::new("t.toml"), &text("")).unwrap();
        let on_igtf =
            Config::parse(std::path::Path::new("t.toml"), &text("ca = \"igtf\"\n")).unwrap();
        let plan = crate::plan::Plan::new(&on_le).unwrap();
        let l = &plan.lineages[0];
        assert_eq!(moved_ca(&on_le, l, "https://le.example/dir"), None);
        assert_eq!(moved_ca(&on_le, l, "https://zerossl.example/dir"), None);
        assert_eq!(moved_ca(&on_le, l, ""), None);
        assert_eq!(moved_ca(&on_le, l, "https://retired.example/dir"), None);
        assert_eq!(
            moved_ca(&on_igtf, l, "https://le.example/dir"),
            Some((
                "https://le.example/dir".to_string(),
                "https://igtf.example/dir".to_string()
            ))
        );
        assert_eq!(moved_ca(&on_igtf, l, "https://igtf.example/dir"), None);
        let back = moved_ca(&on_le, l, "https://igtf.example/dir").unwrap();
        let shown = PlanChange {
            ca: Some(back),
            ..PlanChange::default()
        };
        assert_eq!(
            shown.to_string(),
            "CA https://igtf.example/dir -> https://le.example/dir"
        );
    }
}
