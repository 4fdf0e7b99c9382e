//! What every route answers from: the webroot handle, and the status document and health
//! verdict held in memory, each taken again once a second on a thread of its own; and the
//! server's counters, which the metrics page reads.
//!
//! Owns `NodeServer` (cheap to clone, shared by the routes and the connection loop), the two
//! refresher threads and the refresh periods. It does not build the status document (the
//! `observe` closure it is given does; `observe.rs` makes the node's), read challenge files
//! (`token`), answer requests (`routes`) or count anything itself (`counters`).
//!
//! Why a cache: nothing on this port may make the challenge route wait, and the status
//! document takes file reads and key parsing, the health verdict a listing of a share that
//! may hang. Taken on their own threads, neither ever queues in a pool the routes use, and a
//! status observation stuck on a file never holds up health.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::counters::Counters;
use super::{observe, token};
use crate::config::Config;
use crate::plan::Plan;
use crate::safefs::Dir;
use crate::status::Status;
use crate::store::Store;

/// How often the status document is rebuilt (and at most how stale it is).
const STATUS_REFRESH: Duration = Duration::from_secs(1);
/// How often the health verdict is taken again.
const HEALTH_REFRESH: Duration = Duration::from_secs(1);

/// Everything the routes need; cheap to clone.
#[derive(Clone)]
pub(super) struct NodeServer {
    inner: Arc<Inner>,
}

struct Inner {
    webroot: token::Webroot,
    shared_dir: PathBuf,
    /// Builds the status document (reads installed files): only `refresh_status` calls it.
    observe: Box<dyn Fn() -> Status + Send + Sync>,
    /// The last status document, serialized: what the status route answers; and as data,
    /// for the metrics page.
    status: RwLock<(Bytes, Arc<Status>)>,
    /// The last health verdict and when it was taken: what the health route answers.
    health: RwLock<(Instant, bool)>,
    counters: Counters,
}

impl NodeServer {
    /// `observe` builds the status document (it reads installed files); it runs once here
    /// and then on every `refresh_status`, never per request.
    pub(super) fn new(
        webroot: PathBuf,
        shared_dir: PathBuf,
        observe: impl Fn() -> Status + Send + Sync + 'static,
    ) -> Self {
        let s = NodeServer {
            inner: Arc::new(Inner {
                webroot: token::Webroot::new(webroot, &shared_dir),
                shared_dir,
                observe: Box::new(observe),
                // Replaced at once, below.
                status: RwLock::new((
                    Bytes::new(),
                    Arc::new(Status {
                        node: String::new(),
                        lineages: vec![],
                        targets: vec![],
                    }),
                )),
                health: RwLock::new((Instant::now(), false)),
                counters: Counters::default(),
            }),
        };
        s.refresh_status();
        s.refresh_health();
        s
    }

    /// The server of `node`: webroot and health from the shared directory, status from the
    /// main install target of each lineage the node installs (under `root`).
    pub(super) fn for_node(cfg: &Config, plan: &Plan, node: &str, root: &Path) -> Self {
        let store = Store::new(&cfg.shared_dir);
        NodeServer::new(
            store.webroot_path(),
            cfg.shared_dir.clone(),
            observe::node_status(cfg, plan, node, root),
        )
    }

    /// The webroot the challenge routes read.
    pub(super) fn webroot(&self) -> &token::Webroot {
        &self.inner.webroot
    }

    /// The last status document, serialized.
    pub(super) fn status_body(&self) -> Bytes {
        self.inner
            .status
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// The last status document.
    pub(super) fn status_doc(&self) -> Arc<Status> {
        self.inner
            .status
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    /// What the server counts (for its metrics page).
    pub(super) fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// The last health verdict and when it was taken.
    pub(super) fn health(&self) -> (Instant, bool) {
        *self.inner.health.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Pretend the last health verdict was taken `at` (a check that has not come back).
    #[cfg(test)]
    pub(super) fn set_health_taken_at(&self, at: Instant) {
        self.inner.health.write().unwrap().0 = at;
    }

    /// Observe the installed files again and replace the served status document. Blocking
    /// (file reads, key parsing): the refresher thread of `spawn_status_refresher` calls it
    /// once a second, so a new install shows within a second.
    pub(super) fn refresh_status(&self) {
        let doc = (self.inner.observe)();
        let body = serde_json::to_vec(&doc).expect("status serializes");
        *self.inner.status.write().unwrap_or_else(|e| e.into_inner()) =
            (Bytes::from(body), Arc::new(doc));
    }

    /// Take the health verdict again: the shared directory lists and the webroot opens (a
    /// share that is mounted but lost its webroot cannot answer a challenge either).
    /// Blocking, on a hung NFS mount for as long as it hangs.
    pub(super) fn refresh_health(&self) {
        let ok = Dir::open(&self.inner.shared_dir)
            .and_then(|d| d.list())
            .is_ok()
            && self.inner.webroot.open().is_ok();
        // Came back: the share answers (a verdict of "unreadable" is an answer too).
        self.inner.webroot.share_answered();
        *self.inner.health.write().unwrap_or_else(|e| e.into_inner()) = (Instant::now(), ok);
    }

    /// Refresh the status document every `STATUS_REFRESH` and the health verdict every
    /// `HEALTH_REFRESH`, each on a thread of its own (so that work never queues in a pool
    /// the routes use, and a status observation stuck on a file never holds up health),
    /// until `shutdown`.
    pub(super) fn spawn_status_refresher(
        &self,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let every = |name: &str, period: Duration, work: fn(&NodeServer)| {
            let (s, shutdown) = (self.clone(), shutdown.clone());
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    while !shutdown.is_cancelled() {
                        std::thread::sleep(period);
                        work(&s);
                    }
                })
                .map(drop)
        };
        every("vipcert-status", STATUS_REFRESH, NodeServer::refresh_status)?;
        every("vipcert-health", HEALTH_REFRESH, NodeServer::refresh_health)
    }
}
