//! The text of `vipcert status`: per lineage a two-column table (what, value), then the
//! issuer lease and the timer. Every value passes `escape`: much of it comes from shared
//! files (meta.json, state, the lease, the account file) and from other nodes.
//!
//! Owns the wording; the data is `report`'s.

use std::fmt::Write as _;

use crate::store::{fmt_time, format_version};

use super::report::{
    Ari, Backoff, Current, LeaseState, LineageStatus, NodeInstall, Renewal, StatusReport,
    TimerNext, Verdict,
};

/// Width of the first column.
const KEY: usize = 14;

/// The report as people read it.
pub(crate) fn render(r: &StatusReport) -> String {
    let mut out = String::new();
    for l in &r.lineages {
        lineage(&mut out, l);
        out.push('\n');
    }
    row(&mut out, "", "issuer lease", &lease(&r.lease));
    row(&mut out, "", "renew timer", &timer(&r.timer));
    out
}

/// One row: `indent`, the key padded to `KEY`, the value escaped.
fn row(out: &mut String, indent: &str, key: &str, value: &str) {
    let _ = writeln!(out, "{indent}{key:<KEY$} {}", crate::escape::escape(value));
}

fn lineage(out: &mut String, l: &LineageStatus) {
    let _ = writeln!(out, "{}", crate::escape::escape(&l.lineage));
    let r = |out: &mut String, k: &str, v: &str| row(out, "  ", k, v);
    r(out, "names", &l.names.join(", "));
    r(out, "CA", &ca(l));
    let account = match (&l.account.url, &l.account.error) {
        (_, Some(e)) => format!("unreadable: {e}"),
        (Some(u), None) => u.clone(),
        (None, None) => format!("none yet ({})", l.account.file),
    };
    r(out, "account", &account);
    match (&l.current, &l.current_error) {
        (Some(c), _) => current(out, c),
        (None, Some(e)) => r(out, "current", &format!("UNREADABLE: {e}")),
        (None, None) => r(out, "current", "none (never issued)"),
    }
    r(out, "renewal", &l.renewal.reason);
    if let Some(when) = when(&l.renewal) {
        r(out, "renews", &when);
    }
    r(out, "ARI", &ari(&l.ari));
    r(out, "backoff", &backoff(&l.backoff));
    if let Some(e) = &l.backoff.last_error {
        r(out, "last error", e);
    }
    if let Some(e) = &l.state_error {
        r(out, "state", &format!("UNREADABLE: {e}"));
    }
    r(
        out,
        "last success",
        &l.last_success.map_or("never".into(), fmt_time),
    );
    r(out, "revoked", &revoked(l));
    for n in l.nodes.iter().flatten() {
        r(out, "node", &node(n));
    }
}

fn ca(l: &LineageStatus) -> String {
    let profile = |p: &Option<String>| match p.as_deref() {
        None => "unknown".to_string(),
        Some("") => "the CA's default".to_string(),
        Some(p) => format!("\"{p}\""),
    };
    let mut s = match &l.ca.issued_by {
        Some(by) if *by != l.ca.directory => {
            format!("{} (current version from {by})", l.ca.directory)
        }
        _ => l.ca.directory.clone(),
    };
    let _ = write!(s, "; profile {}", profile(&l.ca.profile));
    if l.ca.issued_profile.is_some() && l.ca.issued_profile != l.ca.profile {
        let _ = write!(
            s,
            " (current ordered with {})",
            profile(&l.ca.issued_profile)
        );
    }
    s
}

fn current(out: &mut String, c: &Current) {
    let r = |out: &mut String, k: &str, v: &str| row(out, "  ", k, v);
    r(
        out,
        "current",
        &format!(
            "version {}, serial {}, issued {} by {}",
            format_version(c.version),
            c.serial,
            fmt_time(c.issued_at),
            c.issued_by
        ),
    );
    let cn = c.cn.as_deref().unwrap_or("(none)");
    r(
        out,
        "certificate",
        &format!("CN {cn}; SANs {}", c.names.join(", ")),
    );
    r(
        out,
        "valid",
        &format!(
            "{} .. {} ({:.0}% of the lifetime left)",
            fmt_time(c.not_before),
            fmt_time(c.not_after),
            c.lifetime_left * 100.0
        ),
    );
}

/// When the next renewal happens, in words; None when it cannot (unreadable).
fn when(r: &Renewal) -> Option<String> {
    let at = fmt_time(r.at?);
    Some(match (r.verdict, r.window_end) {
        (Verdict::Due, _) => "at the next `vipcert renew` run".into(),
        (Verdict::BackingOff, _) => format!("after {at} (the backoff ends)"),
        (Verdict::NotDue, Some(end)) => format!(
            "at a random moment between {at} and {} (the CA's renewal window)",
            fmt_time(end)
        ),
        (Verdict::NotDue, None) => format!("from {at} (the lifetime rule)"),
        (Verdict::Unreadable, _) => return None,
    })
}

fn ari(a: &Ari) -> String {
    let t = |t: &Option<i64>| t.map_or("unknown".into(), fmt_time);
    match a {
        Ari::Window {
            start,
            end,
            fetched_at,
            ask_again_after,
        } => format!(
            "window {} .. {}, fetched {}; the CA is asked again after {}",
            fmt_time(*start),
            fmt_time(*end),
            t(fetched_at),
            t(ask_again_after)
        ),
        Ari::NotOffered {
            checked_at,
            ask_again_after,
        } => format!(
            "the CA offers none (its directory as of {}; asked again after {})",
            fmt_time(*checked_at),
            fmt_time(*ask_again_after)
        ),
        Ari::NotAsked => "not asked yet (the next `vipcert renew` run asks)".into(),
    }
}

fn backoff(b: &Backoff) -> String {
    let mut s = match (b.failures, b.next_attempt) {
        (0, None) => return "none".into(),
        (0, Some(t)) => format!("next attempt not before {}", fmt_time(t)),
        (n, Some(t)) => format!(
            "{n} failure(s) in a row; next attempt after {}",
            fmt_time(t)
        ),
        (n, None) => format!("{n} failure(s) in a row; the next run tries again"),
    };
    if let Some(t) = b.last_attempt {
        let _ = write!(s, "; last attempt {}", fmt_time(t));
    }
    s
}

fn revoked(l: &LineageStatus) -> String {
    if l.revoked.is_empty() {
        return "none".into();
    }
    l.revoked
        .iter()
        .map(|r| match (&r.reason, &r.error) {
            (_, Some(e)) => format!("{} (mark unreadable: {e})", format_version(r.version)),
            (reason, None) => format!(
                "{} ({} at {} by {})",
                format_version(r.version),
                reason.as_deref().unwrap_or("?"),
                r.revoked_at.map_or("?".into(), fmt_time),
                r.by.as_deref().unwrap_or("?")
            ),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn node(n: &NodeInstall) -> String {
    if let Some(e) = &n.error {
        return format!("{}: UNKNOWN: {e}", n.node);
    }
    let what = match (n.version, n.current) {
        (Some(v), true) => format!("version {} (current)", format_version(v)),
        (Some(v), false) => format!("version {} (NOT current)", format_version(v)),
        (None, _) => format!(
            "a certificate the store does not keep (serial {})",
            n.serial.as_deref().unwrap_or("?")
        ),
    };
    let at = n.installed_at.map_or("unknown".into(), fmt_time);
    format!("{}: {what}, installed {at}", n.node)
}

fn lease(l: &LeaseState) -> String {
    match l {
        LeaseState::Free => "free".into(),
        LeaseState::Held {
            node,
            host,
            pid,
            acquired_at,
            expires_at,
        } => format!(
            "held by {node} (host {host}, pid {pid}) since {}; expires {} unless refreshed (the holder's clock)",
            fmt_time(*acquired_at),
            fmt_time(*expires_at)
        ),
        LeaseState::Unreadable { error } => format!("UNREADABLE: {error}"),
    }
}

fn timer(t: &TimerNext) -> String {
    match t {
        TimerNext::At { at } => format!("next run {}", fmt_time(*at)),
        TimerNext::Said { text } => format!("next run {text}"),
        TimerNext::Unknown { why } => format!("next run unknown ({why})"),
    }
}
