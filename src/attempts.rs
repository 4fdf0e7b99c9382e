//! What an attempt at a lineage leaves in `state/<lineage>.json`: a success resets the count
//! and names the CA; a failure is counted, schedules the next attempt (the backoff schedule,
//! or the CA's Retry-After capped by `retry`) and is told to `[notify] on_failure`.
//!
//! Owns the backoff schedule (`backoff`, pure), the failure record (`record_failure`, pure) and
//! writing both records. It does not decide whether a lineage is due (`renew` reads what is
//! recorded here), does not judge a recorded wait (`retry`) and does not run the programs
//! itself (`failure_hook`).

use std::fmt;

use crate::config::Config;
use crate::plan::Plan;
use crate::store::{fmt_time, now, State, Store};
use crate::unixtime::UnixTime;

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

/// What became of a failed attempt's record.
#[derive(Debug, Clone, PartialEq)]
pub enum FailureRecord {
    /// Counted in state/: the `failures`-th failure in a row; `renew` tries again after
    /// `next_attempt` (unix seconds).
    Counted {
        /// Consecutive failures, this one included.
        failures: u32,
        /// Unix seconds of the next automatic attempt.
        next_attempt: i64,
    },
    /// Not counted (state/ could not be read or written), and why: nothing backs off, the next
    /// run tries again.
    Unrecorded(String),
}

impl fmt::Display for FailureRecord {
    /// The record as the commands that order by hand (`issue`, `revoke --reissue`) say it,
    /// after the lineage's name: when `renew` tries again, or why it was not counted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureRecord::Counted {
                failures,
                next_attempt,
            } => write!(
                f,
                "failure {failures} in a row recorded; `vipcert renew` tries again after {}",
                fmt_time(*next_attempt)
            ),
            FailureRecord::Unrecorded(w) => write!(f, "warning: the failure was not recorded: {w}"),
        }
    }
}

/// Count a failed attempt at lineage `l` in state/ (with the CA's Retry-After, if it gave
/// one) and run `[notify] on_failure` for it. The hook runs even when the failure could not be
/// recorded: a failure nobody hears of is worse than one heard of twice.
pub(crate) async fn record_and_notify(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    node: &str,
    l: &str,
    e: &anyhow::Error,
) -> FailureRecord {
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
    // The lineage's CA: `[acme]`, or the `[[acme.ca]]` its node names.
    let ca = cfg
        .acme
        .for_ca(plan.lineage(l).and_then(|x| x.ca.as_deref()))
        .directory;
    let failure = crate::failure_hook::RenewalFailure {
        lineage: l,
        names: plan.lineage(l).map_or(&[], |x| x.names.as_slice()),
        // As recorded: bounded in length.
        error: st.last_error.as_deref().unwrap_or(&e),
        failures: st.failures,
        next_attempt: st.next_attempt.unwrap_or_default().get(),
        node,
        ca: &ca,
    };
    crate::failure_hook::on_failure(&cfg.notify, &failure).await;
    match unrecorded {
        Some(w) => FailureRecord::Unrecorded(w),
        None => FailureRecord::Counted {
            failures: st.failures,
            next_attempt: st.next_attempt.unwrap_or_default().get(),
        },
    }
}

/// notAfter of the current certificate of `l`, when it can be read (the Retry-After cap).
fn current_not_after(store: &Store, l: &str) -> Option<i64> {
    let v = store.read_current(l).ok()??;
    crate::cert::leaf_info(&v.cert_pem)
        .ok()
        .map(|i| i.not_after)
}

/// Record in state/<lineage>.json that `version` was published: failures reset, the issuing
/// CA. The error, if any, says what `check` and `renew` will see instead.
pub(crate) fn record_success(
    cfg: &Config,
    store: &Store,
    lineage: &str,
    version: u32,
) -> Result<(), String> {
    // An unreadable record is replaced: this success is the news it would have held.
    let mut st = store.read_state(lineage).unwrap_or_default();
    st.last_attempt = Some(now().into());
    st.last_success = Some(now().into());
    st.ca = Some(cfg.acme.directory.clone());
    st.failures = 0;
    st.last_error = None;
    st.next_attempt = None;
    store.write_state(lineage, &st).map_err(|e| {
        format!(
            "version {} is published and current, but the success was not recorded: {e:#}; until a later run records one, `check` and `renew` see the state as it was",
            crate::store::format_version(version)
        )
    })
}
