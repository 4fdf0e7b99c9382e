//! `serve --watch`: notice when `store/<lineage>/current` of this node's lineages moves and run
//! the install flow (`flow::run`) for this node.
//!
//! Owns the choice of how to notice (the `notify` crate's inotify watcher where the store is on
//! a local filesystem, its poll watcher where it is on a network, cluster or FUSE filesystem,
//! told apart by the `statfs(2)` magic number, or forced by `[serve] watch`) and the loop that
//! re-reads `current` and installs. Both watchers feed one code path: an event only wakes the
//! loop, which then compares `current` (one readlink per lineage) with what it last installed.
//! It does not decide what is current (`store`, `renew`) nor how a pair is installed (`flow`
//! and its steps).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, WatchMode};
use crate::plan::Plan;
use crate::store::Store;

/// Whatever the watcher says, `current` is re-read this often: inotify can lose events (queue
/// overflow, the store directory replaced or mounted over) and the poll watcher compares
/// modification times in whole seconds, so two flips within one second look like one.
pub(crate) const RECHECK: Duration = Duration::from_secs(60);

/// How this node notices a change of `current`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchMethod {
    /// inotify: a change made on this host is seen within milliseconds.
    Inotify,
    /// A scan of the store every `[serve] watch_interval`: sees other hosts' writes on a
    /// shared filesystem, once this host's attribute cache lets it.
    Poll,
}

/// What `statfs(2)` says about the filesystem the store is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FsKind {
    pub(crate) magic: u64,
    /// Short name for logs ("nfs", "ext4", ...); "unknown" when the magic is not listed.
    pub(crate) name: &'static str,
    /// Other hosts write to it without this kernel knowing: inotify is blind to their writes.
    pub(crate) shared: bool,
}

/// Filesystems whose writes from other hosts inotify never sees (linux/magic.h and the vendors'
/// headers). FUSE covers GlusterFS, CephFS-fuse, sshfs, bindfs and the like.
const SHARED_FS: &[(u64, &str)] = &[
    (0x6969, "nfs"),
    (0x517B, "smb"),
    (0xFF53_4D42, "cifs"),
    (0xFE53_4D42, "smb2"),
    (0x6573_5546, "fuse"),
    (0x00C3_6400, "ceph"),
    (0x0BD0_0BD0, "lustre"),
    (0x4750_4653, "gpfs"),
    (0x1983_0326, "beegfs"),
    (0x0116_1970, "gfs2"),
    (0x7461_636F, "ocfs2"),
    (0x5346_414F, "afs"),
    (0x6B41_4653, "kafs"),
    (0x0102_1997, "9p"),
    (0x7375_7245, "coda"),
    (0x564C, "ncp"),
];

/// Local filesystems: every write to them goes through this kernel, so inotify sees it.
const LOCAL_FS: &[(u64, &str)] = &[
    (0xEF53, "ext4"),
    (0x5846_5342, "xfs"),
    (0x9123_683E, "btrfs"),
    (0x0102_1994, "tmpfs"),
    (0x8584_58F6, "ramfs"),
    (0x2FC1_2FC1, "zfs"),
    (0xF2F5_2010, "f2fs"),
    (0x794C_7630, "overlayfs"),
    (0xCA45_1A4E, "bcachefs"),
    (0x3153_464A, "jfs"),
    (0x5265_4973, "reiserfs"),
    (0x4D44, "vfat"),
];

/// Name a `statfs` magic number. An unknown filesystem counts as shared: polling it costs a
/// few seconds of delay, while trusting inotify on a network filesystem misses every change.
pub(crate) fn classify(magic: u64) -> FsKind {
    if let Some((_, name)) = LOCAL_FS.iter().find(|(m, _)| *m == magic) {
        return FsKind {
            magic,
            name,
            shared: false,
        };
    }
    let name = SHARED_FS
        .iter()
        .find(|(m, _)| *m == magic)
        .map_or("unknown", |(_, n)| *n);
    FsKind {
        magic,
        name,
        shared: true,
    }
}

/// The watch method `mode` asks for on a filesystem of `kind`.
pub(crate) fn method(mode: WatchMode, kind: FsKind) -> WatchMethod {
    match mode {
        WatchMode::Inotify => WatchMethod::Inotify,
        WatchMode::Poll => WatchMethod::Poll,
        WatchMode::Auto if kind.shared => WatchMethod::Poll,
        WatchMode::Auto => WatchMethod::Inotify,
    }
}

/// `statfs(2)` of `path`, classified.
pub(crate) fn fs_kind(path: &Path) -> Result<FsKind> {
    let st =
        rustix::fs::statfs(path).with_context(|| format!("cannot statfs {}", path.display()))?;
    // f_type is signed on some targets; the magic numbers are 32-bit patterns.
    Ok(classify(st.f_type as u64 & 0xFFFF_FFFF))
}

/// Does a change at `path` concern one of `lineages` (their directory or anything in it)?
/// Events elsewhere in the store (other nodes' per-host lineages) wake nobody.
pub(crate) fn concerns(store: &Path, lineages: &[String], path: &Path) -> bool {
    let Ok(rest) = path.strip_prefix(store) else {
        return false;
    };
    match rest.components().next() {
        Some(std::path::Component::Normal(first)) => lineages.iter().any(|l| first == l.as_str()),
        // The store directory itself (created, removed, watcher error without a path).
        None => true,
        _ => false,
    }
}

/// What the watch loop needs besides the config.
#[derive(Clone)]
pub struct WatchOptions {
    /// This node's hostname: which lineages it installs.
    pub node: String,
    /// Prefix for every install path (labs give each node its own).
    pub root: PathBuf,
    /// inotify or polling (by filesystem, or forced by [serve] watch).
    pub mode: WatchMode,
    /// The poll watcher's scan interval, and the retry delay after a failed install.
    pub interval: Duration,
    /// Called after every install run (changed or not) with how it ended: the node server
    /// counts them for its metrics page.
    pub on_install: Option<Arc<dyn Fn(WatchRun) + Send + Sync>>,
}

/// How one install run of the watch loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchRun {
    /// It ran and nothing failed (whether or not anything changed).
    Ok,
    /// It ran, but a lineage was refused or half-installed, or a hook failed (logged as
    /// errors): retried when `current` moves, or, for a half install, by the next run.
    Refused,
    /// It could not run at all (logged): retried after `interval`.
    Failed,
}

/// Start the notify watcher of `method` on `store` (recursive), waking `wake` on every event
/// that concerns `lineages`. The watcher stops when the returned value is dropped.
fn start(
    method: WatchMethod,
    store: &Path,
    lineages: Vec<String>,
    interval: Duration,
    wake: Arc<Notify>,
) -> notify::Result<Box<dyn Watcher + Send>> {
    let root = store.to_path_buf();
    let handler = move |ev: notify::Result<notify::Event>| match ev {
        Ok(ev) => {
            if ev.paths.iter().any(|p| concerns(&root, &lineages, p)) {
                wake.notify_one();
            }
        }
        Err(e) => {
            // A name listed but gone when stat'ed: a temporary file renamed meanwhile, or (on
            // NFS) a new directory still hidden by this host's negative lookup cache. Normal.
            if matches!(&e.kind, notify::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::NotFound)
            {
                tracing::debug!(error = %e, "watch: entry vanished while scanning");
            } else {
                tracing::warn!(error = %e, "watch: watcher error; re-reading current");
            }
            wake.notify_one();
        }
    };
    // `current` is a symlink to a version directory: watch the link, never follow it.
    let config = notify::Config::default()
        .with_poll_interval(interval)
        .with_follow_symlinks(false);
    let mut w: Box<dyn Watcher + Send> = match method {
        WatchMethod::Inotify => Box::new(notify::RecommendedWatcher::new(handler, config)?),
        WatchMethod::Poll => Box::new(notify::PollWatcher::new(handler, config)?),
    };
    w.watch(store, RecursiveMode::Recursive)?;
    Ok(w)
}

/// Pick the watch method for this store and start it; inotify that cannot start (watch limit
/// reached) falls back to polling, which always works.
fn start_for(
    store: &Path,
    lineages: &[String],
    o: &WatchOptions,
    wake: &Arc<Notify>,
) -> Result<Box<dyn Watcher + Send>> {
    let kind = fs_kind(store)?;
    let m = method(o.mode, kind);
    tracing::info!(
        "watch: store {} is on {} (0x{:x}); {}",
        store.display(),
        kind.name,
        kind.magic,
        match m {
            WatchMethod::Inotify => "watching with inotify".to_string(),
            WatchMethod::Poll =>
                format!("polling every {}", humantime::format_duration(o.interval)),
        }
    );
    match start(m, store, lineages.to_vec(), o.interval, wake.clone()) {
        Ok(w) => Ok(w),
        Err(e) if m == WatchMethod::Inotify => {
            tracing::warn!(error = %e, "watch: inotify failed to start; polling instead");
            start(
                WatchMethod::Poll,
                store,
                lineages.to_vec(),
                o.interval,
                wake.clone(),
            )
            .context("cannot start the poll watcher")
        }
        Err(e) => Err(e).context("cannot start the poll watcher"),
    }
}

/// Run until `shutdown`: install whatever is current at start, then again each time
/// `current` of one of this node's lineages moves.
pub async fn run(cfg: Config, plan: Plan, o: WatchOptions, shutdown: CancellationToken) {
    let store = Store::new(&cfg.shared_dir);
    let lineages: Vec<String> = plan.for_node(&o.node).map(|l| l.name.clone()).collect();
    let wake = Arc::new(Notify::new());
    let store_path = store.store_path();
    // Kept alive for the whole loop: dropping it stops the watcher.
    let watcher = match start_for(&store_path, &lineages, &o, &wake) {
        Ok(w) => Some(w),
        Err(e) => {
            // Without a watcher the loop still re-reads `current` every interval.
            tracing::error!(error = %format!("{e:#}"), "watch: no watcher; re-reading current every interval");
            None
        }
    };
    let blind = watcher.is_none();
    let mut seen: Option<Vec<Option<u32>>> = None;
    let mut failed = false;
    loop {
        match read_current(&store, &lineages).await {
            Ok(cur) if seen.as_ref() != Some(&cur) || failed => {
                let run = install(&cfg, &plan, &store, &o).await;
                failed = run == WatchRun::Failed;
                if let Some(f) = &o.on_install {
                    f(run);
                }
                seen = Some(cur);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "watch: cannot read store/*/current")
            }
        }
        let next = if failed || blind {
            o.interval
        } else {
            RECHECK.max(o.interval)
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(next) => {}
        }
    }
}

async fn read_current(store: &Store, lineages: &[String]) -> Result<Vec<Option<u32>>> {
    let (s, ls) = (store.clone(), lineages.to_vec());
    tokio::task::spawn_blocking(move || ls.iter().map(|l| s.current(l)).collect())
        .await
        .context("current reader task failed")?
}

/// One `install` run, logged line by line. Only a run that failed as a whole is retried after
/// `interval`; a refused version is retried when `current` moves.
async fn install(cfg: &Config, plan: &Plan, store: &Store, o: &WatchOptions) -> WatchRun {
    let (c, p, s, n, r) = (
        cfg.clone(),
        plan.clone(),
        store.clone(),
        o.node.clone(),
        o.root.clone(),
    );
    let res = tokio::task::spawn_blocking(move || {
        let rep = super::flow::run(&c, &p, &s, &n, &r)?;
        Ok::<_, anyhow::Error>((rep.summary(&crate::plan::targets(&c, &r)), rep.ok()))
    })
    .await;
    match res {
        Ok(Ok((text, ok))) => {
            for line in text.lines() {
                if ok {
                    tracing::info!("watch: {line}");
                } else {
                    tracing::error!("watch: {line}");
                }
            }
            if ok {
                WatchRun::Ok
            } else {
                WatchRun::Refused
            }
        }
        Ok(Err(e)) => {
            tracing::error!(error = %format!("{e:#}"), "watch: install failed; retrying");
            WatchRun::Failed
        }
        Err(e) => {
            tracing::error!(error = %e, "watch: install task failed; retrying");
            WatchRun::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statfs_magic_picks_the_backend() {
        for (magic, name) in [
            (0x6969, "nfs"),
            (0xFF53_4D42, "cifs"),
            (0xFE53_4D42, "smb2"),
            (0x6573_5546, "fuse"),
            (0x00C3_6400, "ceph"),
            (0x0BD0_0BD0, "lustre"),
            (0x4750_4653, "gpfs"),
        ] {
            let k = classify(magic);
            assert_eq!((k.name, k.shared), (name, true), "{magic:x}");
            assert_eq!(method(WatchMode::Auto, k), WatchMethod::Poll, "{name}");
            assert_eq!(
                method(WatchMode::Inotify, k),
                WatchMethod::Inotify,
                "{name}"
            );
        }
        for (magic, name) in [
            (0xEF53, "ext4"),
            (0x5846_5342, "xfs"),
            (0x0102_1994, "tmpfs"),
        ] {
            let k = classify(magic);
            assert_eq!((k.name, k.shared), (name, false));
            assert_eq!(method(WatchMode::Auto, k), WatchMethod::Inotify, "{name}");
            assert_eq!(method(WatchMode::Poll, k), WatchMethod::Poll, "{name}");
        }
        // Not known to be local: polled.
        let k = classify(0x1234_5678);
        assert_eq!((k.name, k.shared), ("unknown", true));
        assert_eq!(method(WatchMode::Auto, k), WatchMethod::Poll);
    }

    #[test]
    fn statfs_of_a_real_directory() {
        // /proc is procfs: not a store anyone would use, but a filesystem we know is there.
        let k = fs_kind(Path::new("/proc")).unwrap();
        assert_eq!(k.magic, 0x9FA0);
        assert!(fs_kind(Path::new("/nonexistent-vipcert")).is_err());
    }

    #[test]
    fn events_concern_only_this_nodes_lineages() {
        let store = Path::new("/s/store");
        let ours = vec!["dtn1.example.org".to_string()];
        assert!(concerns(
            store,
            &ours,
            Path::new("/s/store/dtn1.example.org/current")
        ));
        assert!(concerns(
            store,
            &ours,
            Path::new("/s/store/dtn1.example.org/0002/cert.pem")
        ));
        assert!(concerns(
            store,
            &ours,
            Path::new("/s/store/dtn1.example.org")
        ));
        assert!(concerns(store, &ours, Path::new("/s/store")));
        assert!(!concerns(
            store,
            &ours,
            Path::new("/s/store/dtn2.example.org/current")
        ));
        assert!(!concerns(
            store,
            &ours,
            Path::new("/s/store/dtn1.example.org.tmp/x")
        ));
        assert!(!concerns(
            store,
            &ours,
            Path::new("/s/state/dtn1.example.org.json")
        ));
    }
}
