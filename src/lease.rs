//! The issuer lease, `locks/issuer.lease`: at most one node talks to the CA at a time.
//!
//! Owns taking, refreshing, fencing and releasing the lease with NFS-safe primitives only
//! (exclusive create by `link(2)`, publish by rename; no flock), and deciding whether a holder
//! is dead: a holder on this host whose pid is gone, or whose pid now belongs to another
//! process (its start time differs), is dead at once; a holder elsewhere is dead when it has
//! stopped refreshing for the short ttl. It does not decide what to issue; `issue` holds a
//! `Lease` for the whole flow.

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::safefs::{Dir, ReadError};
use crate::store::{fmt_time, now, Store};

pub(crate) const LEASE: &str = "issuer.lease";

/// What the lease file says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Holder {
    pub(crate) node: String,
    pub(crate) host: String,
    pub(crate) pid: u32,
    /// The holder process's start time (/proc/<pid>/stat field 22, clock ticks since boot):
    /// with `pid`, names the process, so a reused pid is not mistaken for the holder.
    #[serde(default)]
    pub(crate) start_time: Option<u64>,
    /// Unix seconds after which anyone may break the lease: a short ttl the holder pushes
    /// forward while it works (see `Timing`). Clamped when read (`unixtime`), as the other
    /// times below: another host wrote them.
    #[serde(deserialize_with = "crate::unixtime::clamped")]
    pub(crate) expires_at: i64,
    /// When the lease was taken, and the configured `lease_ttl` after it: the holder never
    /// extends past `held_until`, and `check` warns about a lease still held after it.
    #[serde(default, deserialize_with = "crate::unixtime::clamped")]
    pub(crate) acquired_at: i64,
    #[serde(default, deserialize_with = "crate::unixtime::clamped")]
    pub(crate) held_until: i64,
    /// Random per acquisition: identifies *this* holding, not just the process.
    pub(crate) token: String,
}

/// How long a lease lives: at most `max` (the configured `renew.lease_ttl`) in total, and
/// `3 × refresh` (capped by `max`) past the holder's last refresh, so a holder that died on
/// another host is seen within about three refresh intervals.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub(crate) max: Duration,
    pub(crate) refresh: Duration,
}

impl Timing {
    /// Lease timing: `max` caps the short ttl, `refresh` is how often the holder refreshes.
    pub fn new(max: Duration, refresh: Duration) -> Timing {
        Timing { max, refresh }
    }

    /// The configured timing: `[renew] lease_ttl` and `lease_refresh`.
    pub(crate) fn of(renew: &crate::config::Renew) -> Timing {
        Timing::new(renew.lease_ttl, renew.lease_refresh)
    }

    fn short_ttl(&self) -> Duration {
        (self.refresh * 3).min(self.max)
    }

    /// The short ttl in whole seconds, rounded up (the lease file counts in seconds).
    fn short_ttl_secs(&self) -> i64 {
        self.short_ttl().as_secs_f64().ceil() as i64
    }
}

/// Why the lease could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another live holder has the lease.
    #[error("renewal in progress on {} (host {}, pid {}, lease until {})", .0.node, .0.host, .0.pid, fmt_time(.0.expires_at))]
    Held(Holder),
    /// The lease file could not be read, written or broken.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// A held lease, refreshed by a background thread until `release` (or drop). A crashed
/// holder's lease is seen dead at once on its host and after the short ttl elsewhere.
#[derive(Debug)]
pub struct Lease {
    dir: Dir,
    holder: Arc<Mutex<Holder>>,
    timing: Timing,
    stop: Option<mpsc::Sender<()>>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

fn random_token() -> String {
    crate::random::hex(16)
}

fn this_host() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Field 22 of /proc/<pid>/stat (the process start time), None if there is no such process.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2 (comm) is in parentheses and may hold spaces: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Why a lease may be broken, or None while its holder is alive and within its ttl.
pub(crate) fn dead_because(h: &Holder, host: &str, now: i64) -> Option<String> {
    // An unparsable lease file reads as a holder with pid 0 on host "?": say so first, before
    // the host comparison that could never match it.
    if h.pid == 0 {
        return Some("the lease file is unreadable".into());
    }
    if h.host == host {
        match start_time(h.pid) {
            None => return Some(format!("pid {} is gone on this host", h.pid)),
            Some(t) if h.start_time.is_some_and(|s| s != t) => {
                return Some(format!(
                    "pid {} on this host is now another process (start time differs)",
                    h.pid
                ))
            }
            Some(_) => {}
        }
    }
    if h.expires_at <= now {
        return Some(format!(
            "not refreshed since {} (expired)",
            fmt_time(h.expires_at)
        ));
    }
    if h.held_until > 0 && h.held_until <= now {
        return Some(format!("held past lease_ttl ({})", fmt_time(h.held_until)));
    }
    None
}

fn read_holder(dir: &Dir) -> Result<Option<Holder>> {
    match dir.read(LEASE, 4096) {
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(h) => Ok(Some(h)),
            // A lease we cannot parse is treated as expired: it was never validly written
            // (publishing is by rename, so this is corruption, not a race).
            Err(_) => Ok(Some(Holder {
                node: "?".into(),
                host: "?".into(),
                pid: 0,
                start_time: None,
                expires_at: 0,
                acquired_at: 0,
                held_until: 0,
                token: String::new(),
            })),
        },
        Err(ReadError::NotFound) => Ok(None),
        Err(e) => Err(anyhow::anyhow!("{LEASE}: {e}")),
    }
}

/// Push the lease's expiry forward if it is still ours; never past `held_until`.
fn refresh_file(dir: &Dir, holder: &Mutex<Holder>, timing: Timing) -> Result<()> {
    let mut mine = holder.lock().unwrap_or_else(|e| e.into_inner());
    verify_holder(dir, &mine)?;
    let mut h = mine.clone();
    h.expires_at = (now() + timing.short_ttl_secs()).min(h.held_until);
    dir.replace(LEASE, &serde_json::to_vec(&h)?, 0o644)?;
    *mine = h;
    Ok(())
}

fn verify_holder(dir: &Dir, mine: &Holder) -> Result<()> {
    match read_holder(dir)? {
        Some(h) if h.token == mine.token && h.expires_at > now() => Ok(()),
        Some(h) if h.token == mine.token => {
            anyhow::bail!(
                "our issuer lease expired at {} before publishing; nothing was published",
                fmt_time(h.expires_at)
            )
        }
        Some(h) => anyhow::bail!(
            "the issuer lease was taken over by {} (pid {}); nothing was published",
            h.node,
            h.pid
        ),
        None => anyhow::bail!("the issuer lease disappeared; nothing was published"),
    }
}

impl Lease {
    /// Who holds the lease now, if anyone (expired or not).
    pub(crate) fn holder(store: &Store) -> Result<Option<Holder>> {
        read_holder(&store.locks()?)
    }

    /// Take the lease, breaking a dead one (logged, with why). Fails with `LeaseError::Held`
    /// when a live lease belongs to someone else.
    pub fn acquire(store: &Store, node: &str, timing: Timing) -> Result<Lease, LeaseError> {
        let dir = store.locks()?;
        let host = this_host();
        let pid = std::process::id();
        for _ in 0..5 {
            let t = now();
            let held_until = t.saturating_add(timing.max.as_secs().min(i64::MAX as u64 / 2) as i64);
            let holder = Holder {
                node: node.to_string(),
                host: host.clone(),
                pid,
                start_time: start_time(pid),
                expires_at: (t + timing.short_ttl_secs()).min(held_until),
                acquired_at: t,
                held_until,
                token: random_token(),
            };
            let tmp = crate::safefs::temp_name(LEASE);
            dir.create_new(&tmp, &serde_json::to_vec(&holder).context("lease")?, 0o644)
                .context("cannot write the issuer lease in locks/")?;
            let linked = dir.link(&tmp, LEASE);
            let _ = dir.remove(&tmp);
            match linked {
                Ok(()) => {
                    dir.sync().context("fsync locks/")?;
                    return Ok(Lease::start(store, dir, holder, timing)?);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(anyhow::Error::from(e)
                        .context("cannot create locks/issuer.lease")
                        .into())
                }
            }
            match read_holder(&dir)? {
                None => continue, // released between our link and read: try again
                Some(h) => match dead_because(&h, &host, now()) {
                    None => return Err(LeaseError::Held(h)),
                    Some(why) => {
                        // Break the dead lease by renaming it aside: only one breaker's rename
                        // succeeds on the same file, the others find it gone and retry.
                        let aside = format!(".{LEASE}.broken.{}", random_token());
                        if dir.rename(LEASE, &aside).is_ok() {
                            let _ = dir.remove(&aside);
                            tracing::warn!(
                                "took over the issuer lease of {} (host {}, pid {}): {why}",
                                h.node,
                                h.host,
                                h.pid
                            );
                        }
                    }
                },
            }
        }
        Err(
            anyhow::anyhow!("could not take locks/issuer.lease after 5 attempts (contention)")
                .into(),
        )
    }

    /// Start the refresher thread of a freshly taken lease.
    fn start(store: &Store, dir: Dir, holder: Holder, timing: Timing) -> Result<Lease> {
        let holder = Arc::new(Mutex::new(holder));
        let (tx, rx) = mpsc::channel::<()>();
        let (h2, d2) = (holder.clone(), store.locks()?);
        let refresher = std::thread::Builder::new()
            .name("lease-refresh".into())
            .spawn(move || {
                // Ends on release (a message or a dropped sender) or when the lease is lost.
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(timing.refresh) {
                    if let Err(e) = refresh_file(&d2, &h2, timing) {
                        tracing::warn!(error = %format!("{e:#}"), "stopped refreshing the issuer lease");
                        return;
                    }
                }
            })
            .context("cannot start the lease refresher")?;
        Ok(Lease {
            dir,
            holder,
            timing,
            stop: Some(tx),
            refresher: Some(refresher),
        })
    }

    /// Fencing check before publishing: the file must still carry our token and not be expired.
    pub fn verify(&self) -> Result<()> {
        verify_holder(
            &self.dir,
            &self.holder.lock().unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Extend the lease now (the background thread also does, every `refresh`).
    pub(crate) fn refresh(&mut self) -> Result<()> {
        refresh_file(&self.dir, &self.holder, self.timing)
    }

    fn stop_refresher(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
    }

    /// `acquire` for an operator's one-off command (`account`, `revoke`): a live lease held by
    /// someone else is an error saying to try again, not an outcome.
    pub(crate) fn acquire_now(store: &Store, node: &str, timing: Timing) -> Result<Lease> {
        match Lease::acquire(store, node, timing) {
            Ok(l) => Ok(l),
            Err(LeaseError::Held(h)) => anyhow::bail!(
                "an order is in progress on {} (pid {}); try again when it is done",
                h.node,
                h.pid
            ),
            Err(LeaseError::Other(e)) => Err(e),
        }
    }

    /// `release` at the end of a run, whose own result matters more: a lease that cannot be
    /// removed is logged, and expires by itself.
    pub(crate) fn release_or_log(self) {
        if let Err(e) = self.release() {
            tracing::warn!(error = %format!("{e:#}"), "cannot release the issuer lease; it expires by itself");
        }
    }

    /// Remove the lease if it is still ours.
    pub fn release(mut self) -> Result<()> {
        self.stop_refresher();
        let token = self
            .holder
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .token
            .clone();
        if let Ok(Some(h)) = read_holder(&self.dir) {
            if h.token == token {
                self.dir.remove(LEASE)?;
                self.dir.sync()?;
            }
        }
        Ok(())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop_refresher();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T60: Timing = Timing {
        max: Duration::from_secs(60),
        refresh: Duration::from_secs(10),
    };

    fn store() -> (tempfile::TempDir, Store) {
        let t = tempfile::tempdir().unwrap();
        let s = Store::new(t.path());
        s.init().unwrap();
        (t, s)
    }

    #[test]
    fn second_acquire_sees_holder_and_release_frees() {
        let (_t, s) = store();
        let a = Lease::acquire(&s, "dtn1", T60).unwrap();
        match Lease::acquire(&s, "dtn2", T60) {
            Err(LeaseError::Held(h)) => assert_eq!(h.node, "dtn1"),
            other => panic!("{other:?}"),
        }
        a.verify().unwrap();
        a.release().unwrap();
        let b = Lease::acquire(&s, "dtn2", T60).unwrap();
        assert_eq!(Lease::holder(&s).unwrap().unwrap().node, "dtn2");
        b.release().unwrap();
    }

    #[test]
    fn expired_lease_is_broken_and_old_holder_is_fenced() {
        let (_t, s) = store();
        let a = Lease::acquire(
            &s,
            "dtn1",
            Timing::new(Duration::from_secs(0), Duration::from_secs(10)),
        )
        .unwrap();
        let b = Lease::acquire(&s, "dtn2", T60).unwrap();
        let e = a.verify().unwrap_err().to_string();
        assert!(e.contains("taken over by dtn2"), "{e}");
        // a's release must not remove b's lease
        a.release().unwrap();
        b.verify().unwrap();
    }

    #[test]
    fn concurrent_acquirers_one_wins() {
        let (_t, s) = store();
        let wins: usize = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let s = s.clone();
                    sc.spawn(move || Lease::acquire(&s, &format!("n{i}"), T60).is_ok() as usize)
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(wins, 1);
    }

    fn lease_file(s: &Store, h: &Holder) {
        s.locks()
            .unwrap()
            .replace(LEASE, &serde_json::to_vec(h).unwrap(), 0o644)
            .unwrap();
    }

    fn holder(host: &str, pid: u32, start: Option<u64>, expires_in: i64) -> Holder {
        Holder {
            node: "dtn9".into(),
            host: host.into(),
            pid,
            start_time: start,
            expires_at: now() + expires_in,
            acquired_at: now(),
            held_until: now() + 600,
            token: "t".into(),
        }
    }

    #[test]
    fn dead_pid_or_reused_pid_on_this_host_is_taken_over_at_once() {
        let (_t, s) = store();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        lease_file(&s, &holder(&this_host(), dead, Some(1), 600));
        Lease::acquire(&s, "dtn1", T60).unwrap().release().unwrap();
        // Our own pid, but another start time: the pid was reused.
        let me = std::process::id();
        lease_file(
            &s,
            &holder(&this_host(), me, Some(start_time(me).unwrap() + 1), 600),
        );
        Lease::acquire(&s, "dtn1", T60).unwrap().release().unwrap();
        // Alive and the same process: held.
        lease_file(&s, &holder(&this_host(), me, start_time(me), 600));
        assert!(matches!(
            Lease::acquire(&s, "dtn1", T60),
            Err(LeaseError::Held(_))
        ));
    }

    #[test]
    fn another_hosts_lease_blocks_until_its_short_ttl_passes() {
        let (_t, s) = store();
        lease_file(&s, &holder("elsewhere", 1, Some(1), 30));
        assert!(matches!(
            Lease::acquire(&s, "dtn1", T60),
            Err(LeaseError::Held(_))
        ));
        lease_file(&s, &holder("elsewhere", 1, Some(1), -1));
        Lease::acquire(&s, "dtn1", T60).unwrap().release().unwrap();
    }

    #[test]
    fn the_holder_refreshes_while_it_works() {
        let (_t, s) = store();
        let timing = Timing::new(Duration::from_secs(60), Duration::from_secs(1));
        let l = Lease::acquire(&s, "dtn1", timing).unwrap();
        let first = Lease::holder(&s).unwrap().unwrap().expires_at;
        std::thread::sleep(Duration::from_millis(2500));
        let later = Lease::holder(&s).unwrap().unwrap().expires_at;
        assert!(later > first, "{first} -> {later}");
        l.release().unwrap();
        assert!(Lease::holder(&s).unwrap().is_none());
    }
}
