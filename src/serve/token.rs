//! The challenge route's answer: the key authorization in `<webroot>/<token>`, read through a
//! cached descriptor of the webroot directory, and the response the CA gets for it.
//!
//! Owns the webroot descriptor cache and its reopen rule, where a read is done (in place, on
//! the blocking pool, or not at all while the share hangs), how often "cannot read the
//! webroot" is logged, and the one function that turns a token into a response (the router's
//! challenge route and the fast path in `conn` both reach it through
//! `routes::token_response`, so they answer alike). It does not check the token's pattern
//! (callers do, with `store::valid_token`) nor read anything but the one file
//! (`safefs::Dir::read_served`: no-follow, regular, one link, size cap).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderValue, StatusCode};
use bytes::Bytes;
use http_body_util::Full;

use crate::safefs::{Dir, ReadError, WalkError};
use crate::store::MAX_TOKEN_FILE;

/// How long one open descriptor of the webroot is used before the path is opened again.
///
/// Why reopen at all: the descriptor names the directory it was opened on, not the path. If
/// the webroot is replaced (renamed and recreated, a share remounted), tokens written to the
/// new one are not in the old one. The rule: a descriptor older than this is replaced
/// before use, and a read through a cached descriptor that finds no file or fails (ESTALE
/// on NFS, EIO) is retried once through a freshly opened one. So a replaced webroot is seen
/// at the first miss, and no descriptor outlives a change by more than a second even when
/// every read succeeds (an old directory that still holds a file of the same name).
const REOPEN_AFTER: Duration = Duration::from_secs(1);

/// A read in place is done only while the share answered its health check within this long
/// (the check runs every second on its own thread): past that, it may be hanging.
const READ_HERE_WITHIN: Duration = Duration::from_secs(2);
/// Past this since the share last answered, it hangs (a hard NFS mount that stopped
/// answering): the challenge routes answer 503 without touching it, and so does health
/// (`routes`' `HEALTH_STALE` is this bound).
pub(super) const HUNG_AFTER: Duration = Duration::from_secs(5);
/// Longest a read handed to the blocking pool is waited for before the answer is a 503.
pub(super) const POOL_READ_BOUND: Duration = Duration::from_secs(2);

/// Where the next challenge file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    /// In place, on the connection's worker thread (the fast path).
    Here,
    /// On the blocking pool, waited for at most `POOL_READ_BOUND`.
    Pool,
    /// Not at all: the share hangs; 503.
    Hung,
}

/// Why reads are gated (issue 9's attacker lab): a read in place on a share that hangs
/// blocks its worker thread until the share comes back, and a few challenge requests then
/// block every worker: health, status and everything else on the port stop answering
/// (measured: a stopped FUSE share, 4 token requests, 2 workers, nothing answered until it
/// came back). So a read is done in place only while the share answered lately and fewer than
/// `limit` reads are in place at once (one worker less than there are, at least one); else
/// on the blocking pool, bounded; and once the share has not answered for `HUNG_AFTER`,
/// not at all. Pure: `since_answer` is the time since the share's last answer.
pub(super) fn place(since_answer: Duration, in_place: usize, limit: usize) -> Place {
    if since_answer > HUNG_AFTER {
        Place::Hung
    } else if since_answer <= READ_HERE_WITHIN && in_place < limit {
        Place::Here
    } else {
        Place::Pool
    }
}

/// A read in place, counted while it lasts.
pub(super) struct InPlace<'a>(&'a AtomicUsize);

impl Drop for InPlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The webroot and its cached descriptor.
pub(super) struct Webroot {
    path: PathBuf,
    /// When the share last answered the health thread's check, in ms since `epoch`.
    answered_ms: AtomicU64,
    epoch: Instant,
    /// Reads in place now, and how many may be (`place`).
    in_place: AtomicUsize,
    in_place_limit: AtomicUsize,
    /// When "cannot read the webroot" was last logged (ms since `epoch`, `u64::MAX`: never),
    /// and how many were left out since: one line a second, however many requests fail
    /// (the rate of failing requests is the client's to choose).
    warned_ms: AtomicU64,
    unwarned: AtomicU64,
    /// Where the no-follow walk to `path` starts: the shared directory when the webroot is
    /// below it (the operator configured that path; links above it are theirs), else the
    /// webroot itself.
    base: PathBuf,
    cached: Mutex<Option<(Instant, Arc<Dir>)>>,
}

impl Webroot {
    /// The webroot at `path`, opened by a walk from `shared_dir` when it is below it.
    pub(super) fn new(path: PathBuf, shared_dir: &Path) -> Webroot {
        let base = if path.starts_with(shared_dir) {
            shared_dir.to_path_buf()
        } else {
            path.clone()
        };
        Webroot {
            path,
            answered_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            in_place: AtomicUsize::new(0),
            in_place_limit: AtomicUsize::new(1),
            warned_ms: AtomicU64::new(u64::MAX),
            unwarned: AtomicU64::new(0),
            base,
            cached: Mutex::new(None),
        }
    }

    /// Log that the webroot cannot be read, at most once a second (with how many failures
    /// went unlogged since); true when logged.
    pub(super) fn warn_unreadable(&self, e: &dyn std::fmt::Display) -> bool {
        self.warn_unreadable_at(self.epoch.elapsed().as_millis() as u64, e)
    }

    fn warn_unreadable_at(&self, now_ms: u64, e: &dyn std::fmt::Display) -> bool {
        let last = self.warned_ms.load(Ordering::Relaxed);
        let due = last == u64::MAX || now_ms >= last.saturating_add(1000);
        if !due
            || self
                .warned_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            self.unwarned.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let also = self.unwarned.swap(0, Ordering::Relaxed);
        tracing::warn!(error = %e, webroot = %self.path.display(), also_failed = also, "cannot read the webroot (logged at most once a second)");
        true
    }

    /// The share answered (the health thread's check came back, whatever its verdict).
    pub(super) fn share_answered(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.answered_ms.store(ms, Ordering::Relaxed);
    }

    /// At most `workers - 1` reads in place at once (at least one): one worker thread always
    /// stays free of the share.
    pub(super) fn set_workers(&self, workers: usize) {
        let limit = workers.saturating_sub(1).max(1);
        self.in_place_limit.store(limit, Ordering::Relaxed);
    }

    /// Where the next read goes; a `Here` comes with its count, held while it reads.
    pub(super) fn place(&self, now: Instant) -> (Place, Option<InPlace<'_>>) {
        let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        let since =
            Duration::from_millis(now_ms.saturating_sub(self.answered_ms.load(Ordering::Relaxed)));
        let n = self.in_place.fetch_add(1, Ordering::Relaxed);
        let guard = InPlace(&self.in_place);
        match place(since, n, self.in_place_limit.load(Ordering::Relaxed)) {
            Place::Here => (Place::Here, Some(guard)),
            p => (p, None),
        }
    }

    /// Open the webroot directory afresh, walking from the shared directory one component at
    /// a time without following a symlink: a link planted at `webroot` or `.well-known` by
    /// anyone who can write the share would otherwise serve files from wherever it points on
    /// this node.
    pub(super) fn open(&self) -> io::Result<Dir> {
        let rel = self.path.strip_prefix(&self.base).unwrap_or(Path::new(""));
        Dir::open_beneath(&self.base, rel, None).map_err(|e| match e {
            WalkError::Io(_, e) => e,
            WalkError::Symlink(p) => io::Error::other(format!(
                "{} is a symlink: the webroot is opened without following links; replace it \
                 with the real directory",
                p.display()
            )),
            e => io::Error::other(e.to_string()),
        })
    }

    /// The cached descriptor if younger than `REOPEN_AFTER`, else a new one; true when new.
    fn dir(&self, now: Instant) -> io::Result<(Arc<Dir>, bool)> {
        let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        match &*cached {
            Some((at, d)) if now.saturating_duration_since(*at) < REOPEN_AFTER => {
                Ok((d.clone(), false))
            }
            _ => {
                drop(cached);
                self.reopen(now).map(|d| (d, true))
            }
        }
    }

    /// Open the webroot path again and cache the descriptor.
    fn reopen(&self, now: Instant) -> io::Result<Arc<Dir>> {
        let d = Arc::new(self.open()?);
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = Some((now, d.clone()));
        Ok(d)
    }

    /// The content of the challenge file `token` (a valid token).
    fn read(&self, token: &str, now: Instant) -> Result<Vec<u8>, ReadError> {
        let (dir, fresh) = self.dir(now)?;
        match dir.read_served(token, MAX_TOKEN_FILE) {
            Err(ReadError::NotFound | ReadError::Io(_)) if !fresh => {
                self.reopen(now)?.read_served(token, MAX_TOKEN_FILE)
            }
            r => r,
        }
    }
}

/// The challenge route's 503: the webroot cannot be read (now, or within `POOL_READ_BOUND`).
pub(super) fn unavailable() -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r
}

/// `read` on the blocking pool, waited for at most `POOL_READ_BOUND`: None when it has not
/// come back by then (the read goes on, holding one pool thread, until the share answers).
pub(super) async fn from_pool<T: Send + 'static>(
    read: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    tokio::time::timeout(POOL_READ_BOUND, tokio::task::spawn_blocking(read))
        .await
        .ok()?
        .ok()
}

/// The challenge route's answer for `token` (already matched against the token pattern):
/// 200 text/plain with the file's content, 404 when there is no such servable file, 503 when
/// the webroot cannot be read.
pub(super) fn respond(webroot: &Webroot, token: &str) -> http::Response<Full<Bytes>> {
    respond_at(webroot, token, Instant::now())
}

/// `respond` with the time already read (one clock read per request on the fast path).
pub(super) fn respond_at(
    webroot: &Webroot,
    token: &str,
    now: Instant,
) -> http::Response<Full<Bytes>> {
    let (code, body) = match webroot.read(token, now) {
        // Boxed first: a Vec with spare capacity would cost `Bytes` a second allocation.
        Ok(body) => (StatusCode::OK, Bytes::from(body.into_boxed_slice())),
        Err(ReadError::NotFound | ReadError::NotRegular | ReadError::TooLarge { .. }) => {
            (StatusCode::NOT_FOUND, Bytes::new())
        }
        Err(ReadError::Io(e)) => {
            webroot.warn_unreadable(&e);
            (StatusCode::SERVICE_UNAVAILABLE, Bytes::new())
        }
    };
    let ok = code == StatusCode::OK;
    let mut r = http::Response::new(Full::new(body));
    *r.status_mut() = code;
    if ok {
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A webroot at `<t>/webroot` holding `name` with `content`, and its `Webroot`.
    fn webroot_with(t: &Path, name: &str, content: &str) -> Webroot {
        let web = t.join("webroot");
        std::fs::create_dir(&web).unwrap();
        std::fs::write(web.join(name), content).unwrap();
        Webroot::new(web, t)
    }

    /// Rename `<t>/webroot` away and make a new one holding `name` with `content`.
    fn replace_webroot(t: &Path, name: &str, content: &str) {
        std::fs::rename(t.join("webroot"), t.join("gone")).unwrap();
        std::fs::create_dir(t.join("webroot")).unwrap();
        std::fs::write(t.join("webroot").join(name), content).unwrap();
    }

    #[test]
    fn a_replaced_webroot_is_seen_at_the_first_miss() {
        let t = tempfile::tempdir().unwrap();
        let w = webroot_with(t.path(), "old", "old-content");
        assert_eq!(w.read("old", Instant::now()).unwrap(), b"old-content");
        // Replaced under the cached descriptor (renamed away, a new one made).
        replace_webroot(t.path(), "new", "new-content");
        assert_eq!(w.read("new", Instant::now()).unwrap(), b"new-content");
        // And the old directory's files are no longer served once the descriptor is new.
        assert!(matches!(
            w.read("old", Instant::now()),
            Err(ReadError::NotFound)
        ));
    }

    #[test]
    fn an_old_descriptor_is_not_used_past_a_second() {
        let t = tempfile::tempdir().unwrap();
        let w = webroot_with(t.path(), "tok", "one");
        let t0 = Instant::now();
        let (first, fresh) = w.dir(t0).unwrap();
        assert!(fresh);
        let (again, fresh) = w.dir(t0 + Duration::from_millis(500)).unwrap();
        assert!(!fresh && Arc::ptr_eq(&first, &again));
        // The old directory still holds a file of that name: only the age rule notices.
        replace_webroot(t.path(), "tok", "two");
        let (later, fresh) = w.dir(t0 + REOPEN_AFTER).unwrap();
        assert!(fresh && !Arc::ptr_eq(&first, &later));
        assert_eq!(later.read_served("tok", 100).unwrap(), b"two");
    }

    #[test]
    fn reads_in_place_only_while_the_share_answers_and_a_worker_stays_free() {
        let s = Duration::from_millis;
        assert_eq!(place(s(900), 0, 1), Place::Here);
        assert_eq!(place(s(900), 1, 1), Place::Pool, "one worker left free");
        assert_eq!(place(s(900), 2, 3), Place::Here);
        assert_eq!(place(s(3000), 0, 1), Place::Pool, "the share is late");
        assert_eq!(place(HUNG_AFTER + s(1), 0, 1), Place::Hung);
    }

    #[test]
    fn the_in_place_count_is_given_back() {
        let t = tempfile::tempdir().unwrap();
        let w = Webroot::new(t.path().to_path_buf(), t.path());
        w.share_answered();
        let (p, first) = w.place(Instant::now());
        assert_eq!(p, Place::Here);
        assert_eq!(
            w.place(Instant::now()).0,
            Place::Pool,
            "limit 1: the second goes to the pool"
        );
        drop(first);
        assert_eq!(w.place(Instant::now()).0, Place::Here);
        w.set_workers(4);
        let held: Vec<_> = (0..3).map(|_| w.place(Instant::now())).collect();
        assert!(held.iter().all(|(p, _)| *p == Place::Here));
        assert_eq!(w.place(Instant::now()).0, Place::Pool);
    }

    #[test]
    fn an_unreadable_webroot_is_logged_once_a_second() {
        let t = tempfile::tempdir().unwrap();
        let w = Webroot::new(t.path().to_path_buf(), t.path());
        let e = "EIO";
        assert!(w.warn_unreadable_at(5_000, &e));
        let logged = (0..1000).filter(|i| w.warn_unreadable_at(5_000 + i % 999, &e));
        assert_eq!(logged.count(), 0);
        assert_eq!(w.unwarned.load(Ordering::Relaxed), 1000);
        assert!(w.warn_unreadable_at(6_000, &e));
        assert_eq!(
            w.unwarned.load(Ordering::Relaxed),
            0,
            "counted in that line"
        );
    }

    #[test]
    fn answers_name_the_outcome() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("tok"), "keyauth").unwrap();
        std::fs::write(t.path().join("big"), vec![b'a'; 5000]).unwrap();
        let w = Webroot::new(t.path().to_path_buf(), t.path());
        let r = respond(&w, "tok");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/plain");
        assert_eq!(respond(&w, "missing").status(), StatusCode::NOT_FOUND);
        assert_eq!(respond(&w, "big").status(), StatusCode::NOT_FOUND);
        let gone = Webroot::new(t.path().join("nope"), t.path());
        assert_eq!(
            respond(&gone, "tok").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
