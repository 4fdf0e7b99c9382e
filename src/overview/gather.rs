//! What `vipcert status` reads from the shared directory: per lineage its current version
//! (meta.json and cert.pem, never the key), `state/<lineage>.json`, the CA's "no ARI" record,
//! the account file's URL and the revocation marks; and the issuer lease. Reads only: nothing
//! is written and the CA is asked nothing. Blocking (NFS reads).
//!
//! The renewal decision is `renew`'s own (`decide_cached`), not a copy of it. Every read
//! error is kept as data, named, so one broken file does not hide the rest.

use crate::cert::CertInfo;
use crate::config::Config;
use crate::plan::Lineage;
use crate::store::{format_version, Meta, State, Store};
use crate::unixtime::UnixTime;

use super::report::{
    AccountView, Ari, Backoff, CaView, Current, LeaseState, LineageStatus, Renewal, RevokedVersion,
};

/// One lineage's status without the nodes, and (for `--fleet`) the SHA-256 of each kept
/// version's leaf, to name the version a node holds.
pub(crate) struct Gathered {
    pub(crate) status: LineageStatus,
    pub(crate) versions: Vec<(u32, String)>,
    pub(crate) current: Option<u32>,
}

/// Read what the store says about lineage `l` at `now`; with `fleet`, every kept version's
/// leaf too.
pub(crate) fn lineage(cfg: &Config, store: &Store, l: &Lineage, now: i64, fleet: bool) -> Gathered {
    // Its CA is `[acme]`, or the `[[acme.ca]]` its node names.
    let cfg = &cfg.for_ca(l.ca.as_deref());
    let held = current(store, &l.name);
    let (st, state_error) = match store.read_state(&l.name) {
        Ok(s) => (s, None),
        Err(e) => (State::default(), Some(format!("{e:#}"))),
    };
    let held_ok = held.as_ref().ok().and_then(Option::as_ref);
    let info = held_ok.map(|(_, _, i)| i);
    let window = crate::schedule::cached_window(info, &st);
    let renewal = match &held {
        Err(e) => Renewal::unreadable(e),
        Ok(h) => {
            let h = h.as_ref().map(|(_, m, i)| (m, i));
            let due = crate::schedule::decide_cached(cfg, l, h, &st, now, false, 0.0);
            Renewal::of(&due, now, window)
        }
    };
    let meta = held_ok.map(|(_, m, _)| m);
    let status = LineageStatus {
        lineage: l.name.clone(),
        names: l.names.clone(),
        ca: ca_view(cfg, meta),
        account: account_view(cfg, store, meta),
        current: held_ok.map(|(n, m, i)| current_view(*n, m, i, now)),
        current_error: held.as_ref().err().cloned(),
        renewal,
        ari: ari_view(cfg, store, window, &st),
        backoff: Backoff {
            failures: st.failures,
            // The wait renew honours: a past or foreign (incredible) one is none.
            next_attempt: crate::schedule::backoff_until(now, info.map(|i| i.not_after), &st),
            last_attempt: st.last_attempt.map(UnixTime::get),
            last_error: st.last_error.clone(),
        },
        last_success: st.last_success.map(UnixTime::get),
        state_error,
        revoked: revoked(store, &l.name),
        nodes: None,
    };
    Gathered {
        status,
        versions: if fleet {
            leaves(store, &l.name)
        } else {
            vec![]
        },
        current: held_ok.map(|(n, _, _)| *n),
    }
}

/// The version `current` points at, its meta and leaf; or why it cannot be read, naming the
/// file (as `renew` would refuse to order).
fn current(store: &Store, l: &str) -> Result<Option<(u32, Meta, CertInfo)>, String> {
    let Some(n) = store.current(l).map_err(|e| format!("{e:#}"))? else {
        return Ok(None);
    };
    let (meta, pem) = store.read_public(l, n).map_err(|e| format!("{e:#}"))?;
    let file = store
        .store_path()
        .join(l)
        .join(format_version(n))
        .join("cert.pem");
    let info = crate::cert::leaf_info(&pem)
        .map_err(|e| format!("{} does not hold a certificate: {e}", file.display()))?;
    Ok(Some((n, meta, info)))
}

fn current_view(n: u32, m: &Meta, i: &CertInfo, now: i64) -> Current {
    let life = i.not_after.saturating_sub(i.not_before).max(1) as f64;
    let left = i.not_after.saturating_sub(now) as f64 / life;
    Current {
        version: n,
        serial: i.serial.clone(),
        cn: i.cn.clone(),
        names: i.sans.clone(),
        not_before: i.not_before,
        not_after: i.not_after,
        lifetime_left: left.clamp(0.0, 1.0),
        issued_at: m.issued_at,
        issued_by: m.issued_by.clone(),
    }
}

fn ca_view(cfg: &Config, meta: Option<&Meta>) -> CaView {
    let issued_by = meta.map(|m| m.ca.clone());
    let ca = issued_by.as_deref().unwrap_or(&cfg.acme.directory);
    CaView {
        directory: cfg.acme.directory.clone(),
        profile: cfg.acme.profile_at(ca).map(str::to_string),
        issued_profile: meta.and_then(|m| m.profile.clone()),
        issued_by,
    }
}

/// The account file of the CA that issued the current version (if still configured), else
/// of `[acme]`; its URL, read as JSON without parsing the key in it.
fn account_view(cfg: &Config, store: &Store, meta: Option<&Meta>) -> AccountView {
    let host = meta
        .and_then(|m| cfg.issuers().into_iter().find(|c| c.acme.directory == m.ca))
        .map_or_else(|| cfg.acme.account_dir(), |c| c.acme.account_dir());
    let file = store.account_path(&host).display().to_string();
    let (url, error) = match store.read_account(&host) {
        Ok(None) => (None, None),
        Ok(Some(json)) => match serde_json::from_slice::<serde_json::Value>(&json) {
            Ok(v) => (
                v.get("id").and_then(|i| i.as_str()).map(str::to_string),
                None,
            ),
            Err(e) => (None, Some(format!("{file} is not valid JSON: {e}"))),
        },
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    AccountView { file, url, error }
}

/// The window `st` caches for the current certificate, else the CA's "no ARI" record (for
/// `[acme]`'s CA, which `renew` asks), else not asked.
fn ari_view(cfg: &Config, store: &Store, window: Option<(i64, i64)>, st: &State) -> Ari {
    if let Some((start, end)) = window {
        return Ari::Window {
            start,
            end,
            fetched_at: st.ari_checked_at.map(UnixTime::get),
            ask_again_after: st.ari_retry_after.map(UnixTime::get),
        };
    }
    match store.read_no_ari(&cfg.acme.ca_host()) {
        Ok(Some(n)) => Ari::NotOffered {
            checked_at: n.checked_at.get(),
            ask_again_after: n.retry_after.get(),
        },
        _ => Ari::NotAsked,
    }
}

/// The kept versions of `l` marked revoked (an unreadable mark counts, with its error).
fn revoked(store: &Store, l: &str) -> Vec<RevokedVersion> {
    let none = RevokedVersion {
        version: 0,
        reason: None,
        revoked_at: None,
        by: None,
        error: None,
    };
    store
        .versions(l)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| match store.revoked(l, n) {
            Ok(None) => None,
            Ok(Some(r)) => Some(RevokedVersion {
                version: n,
                reason: Some(r.reason),
                revoked_at: Some(r.revoked_at),
                by: Some(r.by),
                ..none.clone()
            }),
            Err(e) => Some(RevokedVersion {
                version: n,
                error: Some(format!("{e:#}")),
                ..none.clone()
            }),
        })
        .collect()
}

/// (version, SHA-256 of its leaf) of every kept version of `l` that reads.
fn leaves(store: &Store, l: &str) -> Vec<(u32, String)> {
    store
        .versions(l)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| {
            let (_, pem) = store.read_public(l, n).ok()?;
            Some((n, crate::cert::leaf_info(&pem).ok()?.sha256))
        })
        .collect()
}

/// Who holds `locks/issuer.lease` now (display only).
pub(crate) fn lease(store: &Store) -> LeaseState {
    // A shared directory where nothing has run yet has no locks/ either.
    if !store.locks_path().exists() {
        return LeaseState::Free;
    }
    match crate::lease::Lease::holder(store) {
        Ok(None) => LeaseState::Free,
        Ok(Some(h)) => LeaseState::Held {
            node: h.node,
            host: h.host,
            pid: h.pid,
            acquired_at: h.acquired_at,
            expires_at: h.expires_at,
        },
        Err(e) => LeaseState::Unreadable {
            error: format!("{e:#}"),
        },
    }
}
