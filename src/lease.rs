//! The issuer lease, `locks/issuer.lease`: at most one node talks to the CA at a time.
//!
//! Owns taking, refreshing, fencing and releasing the lease with NFS-safe primitives only
//! (exclusive create by `link(2)`, publish by rename; no flock), and deciding whether a holder
//! is dead. No decision reads a clock of another host: a holder on this host whose pid is
//! gone, or whose pid now belongs to another process (its start time differs), is dead at
//! once; any other holder is dead only once this process has watched its lease unchanged (the
//! holder bumps a heartbeat at every refresh) for three refresh intervals on its own monotonic
//! clock. The times in the file are for people. It does not decide what to issue; `issue`
//! holds a `Lease` for the whole flow.

use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::safefs::{Dir, ReadError};
use crate::store::{fmt_time, now, Store};

pub(crate) const LEASE: &str = "issuer.lease";
/// 9999-12-31T23:59:59Z: times read from the lease are clamped to what RFC 3339 can show.
const LAST_SECOND: i64 = 253_402_300_799;

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
    /// Unix seconds on the holder's clock, for people: its last refresh plus the watch window.
    /// Clamped when read (`unixtime`), as the other times below: another host wrote them.
    #[serde(deserialize_with = "crate::unixtime::clamped")]
    pub(crate) expires_at: i64,
    /// When the lease was taken, and the configured `lease_ttl` after it (the holder's clock,
    /// for people; `check` calls a lease whose times are further apart than `lease_ttl` bogus).
    #[serde(default, deserialize_with = "crate::unixtime::clamped")]
    pub(crate) acquired_at: i64,
    #[serde(default, deserialize_with = "crate::unixtime::clamped")]
    pub(crate) held_until: i64,
    /// Bumped at every refresh: another process sees the holder alive when this changes.
    #[serde(default)]
    pub(crate) heartbeat: u64,
    /// Random per acquisition: identifies *this* holding, not just the process.
    pub(crate) token: String,
}

impl Holder {
    /// What an unreadable lease file reads as: dead at once (publishing is by rename, so a
    /// file that does not parse was never a valid lease).
    fn unreadable() -> Holder {
        Holder {
            node: "?".into(),
            host: "?".into(),
            pid: 0,
            start_time: None,
            expires_at: 0,
            acquired_at: 0,
            held_until: 0,
            heartbeat: 0,
            token: String::new(),
        }
    }

    fn clamp_times(mut self) -> Holder {
        for t in [
            &mut self.expires_at,
            &mut self.acquired_at,
            &mut self.held_until,
        ] {
            *t = (*t).clamp(0, LAST_SECOND);
        }
        self
    }
}

/// How long a lease lives: at most `max` (the configured `renew.lease_ttl`) in total, and
/// refreshed every `refresh`. Another process takes it over once it has watched it unchanged
/// for three refreshes (capped by `max`, which the holder never outlives).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub(crate) max: Duration,
    pub(crate) refresh: Duration,
}

impl Timing {
    /// Lease timing: `max` caps the whole holding, `refresh` is how often the holder refreshes.
    pub fn new(max: Duration, refresh: Duration) -> Timing {
        Timing { max, refresh }
    }

    /// The configured timing: `[renew] lease_ttl` and `lease_refresh`.
    pub(crate) fn of(renew: &crate::config::Renew) -> Timing {
        Timing::new(renew.lease_ttl, renew.lease_refresh)
    }

    /// How long a lease must be seen unchanged before it is dead; also how long a holder
    /// trusts its own last refresh when it fences.
    pub(crate) fn window(&self) -> Duration {
        (self.refresh * 3).min(self.max)
    }

    /// How often a watcher reads the lease: a few times per refresh.
    fn poll(&self) -> Duration {
        (self.refresh / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

/// Why the lease could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another live holder has the lease (its heartbeat moved while we watched).
    #[error("renewal in progress on {} (host {}, pid {})", .0.node, .0.host, .0.pid)]
    Held(Box<Holder>),
    /// The lease file could not be read, written or broken.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Our holding as the refresher and the fence see it.
#[derive(Debug)]
struct Mine {
    holder: Holder,
    /// Our monotonic clock: until when no watcher can have seen the lease unchanged for a
    /// whole window (the last refresh's start plus the window), and the end of `lease_ttl`.
    fresh_until: Instant,
    ends: Instant,
}

/// A held lease, refreshed by a background thread until `release` (or drop). A crashed
/// holder's lease is seen dead at once on its host and after the watch window elsewhere.
#[derive(Debug)]
pub struct Lease {
    dir: Dir,
    mine: Arc<Mutex<Mine>>,
    timing: Timing,
    stop: Option<mpsc::Sender<()>>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

fn random_token() -> String {
    crate::random::hex(16)
}

pub(crate) fn this_host() -> String {
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

/// Why a lease may be broken without watching it: it is unreadable, or its holder ran on this
/// host and its process is gone. None: only watching can tell.
pub(crate) fn dead_at_once(h: &Holder, host: &str) -> Option<String> {
    // An unreadable lease file reads as a holder with pid 0 on host "?": say so first, before
    // the host comparison that could never match it.
    if h.pid == 0 {
        return Some("the lease file is unreadable".into());
    }
    if h.host != host {
        return None;
    }
    match start_time(h.pid) {
        None => Some(format!("pid {} is gone on this host", h.pid)),
        Some(t) if h.start_time.is_some_and(|s| s != t) => Some(format!(
            "pid {} on this host is now another process (start time differs)",
            h.pid
        )),
        Some(_) => None,
    }
}

/// Why a lease's own times cannot be true: it claims to last longer after it was taken than
/// `lease_ttl` allows (a clock far ahead wrote it, or a hand). Compares the file's times with
/// each other, never with this host's clock. It is taken over like any lease that does not
/// move; `check` warns about it meanwhile.
pub(crate) fn bogus(h: &Holder, timing: Timing) -> Option<String> {
    let ttl = timing.max.as_secs().min(LAST_SECOND as u64) as i64;
    let until = h.expires_at.max(h.held_until);
    (until.saturating_sub(h.acquired_at) > ttl).then(|| {
        format!(
            "it claims to be held until {}, more than lease_ttl ({}) after it was taken ({})",
            fmt_time(until),
            humantime::format_duration(timing.max),
            fmt_time(h.acquired_at)
        )
    })
}

fn read_holder(dir: &Dir, name: &str) -> Result<Option<Holder>> {
    match dir.read(name, 4096) {
        Ok(b) => Ok(Some(
            serde_json::from_slice::<Holder>(&b)
                .map(Holder::clamp_times)
                .unwrap_or_else(|_| Holder::unreadable()),
        )),
        Err(ReadError::NotFound) => Ok(None),
        // Too large, or not a regular file: nothing vipcert wrote, so broken like bad JSON.
        Err(ReadError::TooLarge { .. } | ReadError::NotRegular) => Ok(Some(Holder::unreadable())),
        Err(e) => Err(anyhow::anyhow!("locks/{name}: {e}")),
    }
}

/// The lease file must still carry our token.
fn check_token(dir: &Dir, mine: &Holder) -> Result<()> {
    match read_holder(dir, LEASE)? {
        Some(h) if h.token == mine.token => Ok(()),
        Some(h) => anyhow::bail!(
            "the issuer lease was taken over by {} (host {}, pid {}); nothing was published",
            h.node,
            h.host,
            h.pid
        ),
        None => anyhow::bail!("the issuer lease disappeared; nothing was published"),
    }
}

/// Bump the heartbeat if the lease is still ours and `lease_ttl` has not run out.
fn refresh_file(dir: &Dir, mine: &Mutex<Mine>, timing: Timing) -> Result<()> {
    let mut m = mine.lock().unwrap_or_else(|e| e.into_inner());
    let start = Instant::now();
    anyhow::ensure!(
        start < m.ends,
        "held the issuer lease for lease_ttl ({}); it is no longer refreshed",
        humantime::format_duration(timing.max)
    );
    check_token(dir, &m.holder)?;
    let mut h = m.holder.clone();
    h.heartbeat += 1;
    h.expires_at = (now() + timing.window().as_secs() as i64).min(h.held_until);
    dir.replace(LEASE, &serde_json::to_vec(&h)?, 0o644)?;
    m.holder = h;
    m.fresh_until = (start + timing.window()).min(m.ends);
    Ok(())
}

/// What watching a lease found.
enum Watched {
    /// It changed or was released: its holder is alive (or has just finished).
    Alive(Holder),
    /// It may be broken, and why.
    Dead(Holder, String),
}

/// Watch the lease `h` until it changes or disappears (alive), or is dead: at once by
/// `dead_at_once`, else once unchanged for the whole window on our monotonic clock.
fn watch(dir: &Dir, h: Holder, host: &str, timing: Timing) -> Result<Watched> {
    let since = Instant::now();
    loop {
        if let Some(why) = dead_at_once(&h, host) {
            return Ok(Watched::Dead(h, why));
        }
        let watched = since.elapsed();
        if watched >= timing.window() {
            let why = format!(
                "its heartbeat ({}) did not move in {:.1} s of watching",
                h.heartbeat,
                watched.as_secs_f64()
            );
            return Ok(Watched::Dead(h, why));
        }
        std::thread::sleep(timing.poll().min(timing.window() - watched));
        match read_holder(dir, LEASE)? {
            // Released while we watched: the renewal we saw in progress is done, not ours to
            // repeat (as when the lease was found fresh).
            None => return Ok(Watched::Alive(h)),
            Some(now) if now != h => return Ok(Watched::Alive(now)),
            Some(_) => {}
        }
    }
}

/// Break the dead lease `h` by renaming it aside: only one breaker's rename succeeds on the
/// same file, the others find it gone and retry. If what was renamed is not what was judged
/// (its holder refreshed at that instant), it is put back.
fn break_lease(dir: &Dir, h: &Holder, why: &str) {
    let aside = format!(".{LEASE}.broken.{}", random_token());
    if dir.rename(LEASE, &aside).is_err() {
        return;
    }
    let judged = read_holder(dir, &aside).ok().flatten().as_ref() == Some(h);
    if !judged {
        let _ = dir.link(&aside, LEASE);
    }
    let _ = dir.remove(&aside);
    if judged {
        tracing::warn!(
            "took over the issuer lease of {} (host {}, pid {}): {why}",
            h.node,
            h.host,
            h.pid
        );
    }
}

/// Create the lease file for `holder` unless one exists; true when it is ours.
fn try_create(dir: &Dir, holder: &Holder) -> Result<bool> {
    let tmp = crate::safefs::temp_name(LEASE);
    dir.create_new(&tmp, &serde_json::to_vec(holder).context("lease")?, 0o644)
        .context("cannot write the issuer lease in locks/")?;
    let linked = dir.link(&tmp, LEASE);
    let _ = dir.remove(&tmp);
    match linked {
        Ok(()) => {
            dir.sync().context("fsync locks/")?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(anyhow::Error::from(e).context("cannot create locks/issuer.lease")),
    }
}

fn new_holder(node: &str, host: &str, timing: Timing) -> Holder {
    let t = now();
    let held_until = t.saturating_add(timing.max.as_secs().min(LAST_SECOND as u64) as i64);
    let pid = std::process::id();
    Holder {
        node: node.to_string(),
        host: host.to_string(),
        pid,
        start_time: start_time(pid),
        expires_at: (t + timing.window().as_secs() as i64).min(held_until),
        acquired_at: t,
        held_until,
        heartbeat: 0,
        token: random_token(),
    }
}

impl Lease {
    /// Who holds the lease now, if anyone (alive or not).
    pub(crate) fn holder(store: &Store) -> Result<Option<Holder>> {
        read_holder(&store.locks()?, LEASE)
    }

    /// Take the lease, breaking a dead one (logged, with why). A lease held elsewhere is
    /// watched first (blocking, up to the watch window): `LeaseError::Held` as soon as it
    /// moves or is released, taken over when it does not.
    pub fn acquire(store: &Store, node: &str, timing: Timing) -> Result<Lease, LeaseError> {
        let dir = store.locks()?;
        let host = this_host();
        for _ in 0..5 {
            let started = Instant::now();
            let holder = new_holder(node, &host, timing);
            if try_create(&dir, &holder)? {
                let mine = Mine {
                    holder,
                    fresh_until: started + timing.window(),
                    ends: started + timing.max,
                };
                return Ok(Lease::start(store, dir, mine, timing)?);
            }
            let Some(h) = read_holder(&dir, LEASE)? else {
                continue; // released between our link and read: try again
            };
            match watch(&dir, h, &host, timing)? {
                Watched::Alive(h) => return Err(LeaseError::Held(Box::new(h))),
                Watched::Dead(h, why) => break_lease(&dir, &h, &why),
            }
        }
        Err(
            anyhow::anyhow!("could not take locks/issuer.lease after 5 attempts (contention)")
                .into(),
        )
    }

    /// Start the refresher thread of a freshly taken lease.
    fn start(store: &Store, dir: Dir, mine: Mine, timing: Timing) -> Result<Lease> {
        let mine = Arc::new(Mutex::new(mine));
        let (tx, rx) = mpsc::channel::<()>();
        let (m2, d2) = (mine.clone(), store.locks()?);
        let refresher = std::thread::Builder::new()
            .name("lease-refresh".into())
            .spawn(move || {
                // Ends on release (a message or a dropped sender) or when the lease is lost.
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(timing.refresh) {
                    if let Err(e) = refresh_file(&d2, &m2, timing) {
                        tracing::warn!(error = %format!("{e:#}"), "stopped refreshing the issuer lease");
                        return;
                    }
                }
            })
            .context("cannot start the lease refresher")?;
        Ok(Lease {
            dir,
            mine,
            timing,
            stop: Some(tx),
            refresher: Some(refresher),
        })
    }

    /// Fencing check before publishing: the file still carries our token, and by our own
    /// monotonic clock no watcher can yet have judged us dead.
    pub fn verify(&self) -> Result<()> {
        let m = self.mine.lock().unwrap_or_else(|e| e.into_inner());
        check_token(&self.dir, &m.holder)?;
        let now = Instant::now();
        anyhow::ensure!(
            now < m.ends,
            "we held the issuer lease for lease_ttl ({}); nothing was published",
            humantime::format_duration(self.timing.max)
        );
        anyhow::ensure!(
            now < m.fresh_until,
            "the issuer lease was not refreshed for {} (the shared directory stalled?), so another node may take it over; nothing was published",
            humantime::format_duration(self.timing.window())
        );
        Ok(())
    }

    /// Refresh the lease now (the background thread also does, every `refresh`).
    pub(crate) fn refresh(&mut self) -> Result<()> {
        refresh_file(&self.dir, &self.mine, self.timing)
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
    /// removed is logged, and is taken over once it stops moving.
    pub(crate) fn release_or_log(self) {
        if let Err(e) = self.release() {
            tracing::warn!(error = %format!("{e:#}"), "cannot release the issuer lease; the next run takes it over");
        }
    }

    /// Remove the lease if it is still ours.
    pub fn release(mut self) -> Result<()> {
        self.stop_refresher();
        let token = self
            .mine
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .holder
            .token
            .clone();
        if let Ok(Some(h)) = read_holder(&self.dir, LEASE) {
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

    /// Refreshed every 200 ms: a lease that does not move is dead after 600 ms of watching.
    const T60: Timing = Timing {
        max: Duration::from_secs(60),
        refresh: Duration::from_millis(200),
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
        // Each keeps what it got until all are done: a lease dropped unreleased stops beating,
        // and would rightly be taken over by those still watching it.
        let got: Vec<Option<Lease>> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let s = s.clone();
                    sc.spawn(move || Lease::acquire(&s, &format!("n{i}"), T60).ok())
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let wins = got.iter().filter(|l| l.is_some()).count();
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
            heartbeat: 0,
            token: "t".into(),
        }
    }

    /// Acquire, and how long it took.
    fn timed(s: &Store) -> (Result<Lease, LeaseError>, Duration) {
        let t = Instant::now();
        (Lease::acquire(s, "dtn1", T60), t.elapsed())
    }

    #[test]
    fn dead_pid_or_reused_pid_on_this_host_is_taken_over_at_once() {
        let (_t, s) = store();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        lease_file(&s, &holder(&this_host(), dead, Some(1), 600));
        let (l, took) = timed(&s);
        l.unwrap().release().unwrap();
        assert!(took < T60.window(), "{took:?}");
        // Our own pid, but another start time: the pid was reused.
        let me = std::process::id();
        lease_file(
            &s,
            &holder(&this_host(), me, Some(start_time(me).unwrap() + 1), 600),
        );
        let (l, took) = timed(&s);
        l.unwrap().release().unwrap();
        assert!(took < T60.window(), "{took:?}");
        // Alive, the same process, refreshing: held.
        let live = Lease::acquire(&s, "dtn9", T60).unwrap();
        assert!(matches!(
            Lease::acquire(&s, "dtn1", T60),
            Err(LeaseError::Held(_))
        ));
        live.release().unwrap();
    }

    /// A lease of host "elsewhere" whose heartbeat a thread bumps every 100 ms until `stop`.
    fn beating(s: &Store, h: Holder, stop: &std::sync::atomic::AtomicBool) {
        let mut h = h;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            h.heartbeat += 1;
            lease_file(s, &h);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    #[test]
    fn another_hosts_lease_is_judged_by_its_heartbeat_never_by_its_times() {
        let (_t, s) = store();
        let stop = std::sync::atomic::AtomicBool::new(false);
        // Expired by its own times (a clock behind ours wrote it, or ours is ahead): it beats,
        // so it is held.
        std::thread::scope(|sc| {
            sc.spawn(|| beating(&s, holder("elsewhere", 1, Some(1), -600), &stop));
            std::thread::sleep(Duration::from_millis(50));
            let (l, took) = timed(&s);
            assert!(matches!(l, Err(LeaseError::Held(_))), "{l:?}");
            assert!(took < T60.window(), "{took:?}");
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        // Valid for ten more minutes by its own times, but it no longer beats: taken over after
        // the watch window, on our clock.
        lease_file(&s, &holder("elsewhere", 1, Some(1), 600));
        let (l, took) = timed(&s);
        l.unwrap().release().unwrap();
        assert!(took >= T60.window(), "{took:?}");
        assert!(took < T60.window() * 3, "{took:?}");
    }

    #[test]
    fn a_lease_claiming_forever_is_bogus_and_taken_over_after_the_window() {
        let (_t, s) = store();
        let json = r#"{"node":"evil","host":"other","pid":4294967295,"expires_at":9223372036854775807,"held_until":9223372036854775807,"token":"x"}"#;
        s.locks()
            .unwrap()
            .replace(LEASE, json.as_bytes(), 0o644)
            .unwrap();
        let h = Lease::holder(&s).unwrap().unwrap();
        assert_eq!(h.expires_at, LAST_SECOND, "clamped when read");
        let why = bogus(&h, T60).expect("bogus");
        assert!(why.contains("until 9999-12-31T23:59:59Z"), "{why}");
        assert_eq!(dead_at_once(&h, &this_host()), None);
        let (l, took) = timed(&s);
        assert!(took >= T60.window(), "{took:?}");
        let l = l.unwrap();
        // Ours is not bogus: its times lie exactly lease_ttl apart.
        assert_eq!(bogus(&Lease::holder(&s).unwrap().unwrap(), T60), None);
        l.release().unwrap();
    }

    #[test]
    fn an_oversized_or_garbled_lease_is_broken_at_once() {
        let (_t, s) = store();
        for junk in [vec![b'x'; 10_000], b"{not json".to_vec()] {
            s.locks().unwrap().replace(LEASE, &junk, 0o644).unwrap();
            let (l, took) = timed(&s);
            l.unwrap().release().unwrap();
            assert!(took < T60.window(), "{took:?}");
        }
    }

    #[test]
    fn a_holder_that_could_not_refresh_for_the_window_publishes_nothing() {
        let (_t, s) = store();
        let l = Lease::acquire(&s, "dtn1", T60).unwrap();
        l.verify().unwrap();
        // As if the shared directory had stalled every refresh for the whole window.
        l.mine.lock().unwrap().fresh_until = Instant::now();
        let e = l.verify().unwrap_err().to_string();
        assert!(e.contains("was not refreshed for"), "{e}");
        l.release().unwrap();
    }

    #[test]
    fn the_holder_refreshes_while_it_works() {
        let (_t, s) = store();
        let timing = Timing::new(Duration::from_secs(60), Duration::from_secs(1));
        let l = Lease::acquire(&s, "dtn1", timing).unwrap();
        let first = Lease::holder(&s).unwrap().unwrap();
        std::thread::sleep(Duration::from_millis(2500));
        let later = Lease::holder(&s).unwrap().unwrap();
        assert!(
            later.expires_at > first.expires_at,
            "{} -> {}",
            first.expires_at,
            later.expires_at
        );
        assert!(later.heartbeat >= 2, "{later:?}");
        l.release().unwrap();
        assert!(Lease::holder(&s).unwrap().is_none());
    }

    #[test]
    fn the_holder_stops_at_lease_ttl() {
        let (_t, s) = store();
        let timing = Timing::new(Duration::from_millis(300), Duration::from_millis(100));
        let l = Lease::acquire(&s, "dtn1", timing).unwrap();
        std::thread::sleep(Duration::from_millis(600));
        let beats = Lease::holder(&s).unwrap().unwrap().heartbeat;
        assert!(beats <= 3, "{beats}");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            Lease::holder(&s).unwrap().unwrap().heartbeat,
            beats,
            "still beating"
        );
        let e = l.verify().unwrap_err().to_string();
        assert!(e.contains("for lease_ttl"), "{e}");
        l.release().unwrap();
    }
}
