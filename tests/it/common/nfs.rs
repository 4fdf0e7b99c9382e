//! The shared directory as sites have it: one directory (the "server's disk") and, per node, a
//! bindfs view of it with the kernel's attribute, entry and negative-lookup caches turned on
//! (`bindfs -o attr_timeout=N,entry_timeout=N,negative_timeout=N`). Like an NFS client with
//! `actimeo=N`, a view does not see a file another view created for up to N seconds, and
//! inotify on it sees nothing written through another view.
//!
//! Every view is unmounted when its guard drops (a failing or panicking test included):
//! `fusermount -u`, then `umount -l` if something still holds it busy.
//! Not here: what runs on the views (see `pebble::Lab`, which gives each node its view).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Environment variable: the views' cache timeout in seconds (default [`DEFAULT_CACHE`]).
/// CI keeps it short; a measurement run sets 5.
pub const CACHE_ENV: &str = "VIPCERT_TEST_NFS_CACHE";
pub const DEFAULT_CACHE: Duration = Duration::from_secs(2);

/// The cache timeout the tests use: `$VIPCERT_TEST_NFS_CACHE` seconds, else 2 s.
pub fn cache_timeout() -> Duration {
    match std::env::var(CACHE_ENV) {
        Ok(v) => Duration::from_secs(
            v.parse()
                .unwrap_or_else(|_| panic!("{CACHE_ENV}={v:?}: whole seconds, e.g. 5")),
        ),
        Err(_) => DEFAULT_CACHE,
    }
}

/// Why caching views cannot be made here, or None when they can. The only acceptable reason
/// to skip is a machine without FUSE; a missing bindfs is a setup error (scripts/test and
/// .ci/run install it).
pub fn unavailable() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("no /dev/fuse: this kernel or container has no FUSE".into());
    }
    super::need("/usr/bin/bindfs", "bindfs");
    None
}

/// Is something mounted at `path` (in this process's mount namespace)?
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(m) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let me = path.to_string_lossy();
    // mountinfo's 5th field is the mount point (spaces escaped as \040; ours have none).
    m.lines().any(|l| l.split(' ').nth(4) == Some(me.as_ref()))
}

/// One mounted view; unmounted on drop.
pub struct View {
    pub path: PathBuf,
}

impl View {
    /// Mount `share` at `path` (created) with every kernel cache at `cache`.
    pub fn mount(share: &Path, path: &Path, cache: Duration) -> View {
        std::fs::create_dir_all(path).unwrap();
        let n = cache.as_secs();
        let out = Command::new("/usr/bin/bindfs")
            .arg("-o")
            .arg(format!(
                "attr_timeout={n},entry_timeout={n},negative_timeout={n}"
            ))
            .arg(share)
            .arg(path)
            .output()
            .expect("cannot run bindfs");
        assert!(
            out.status.success(),
            "bindfs {} {} failed: {}",
            share.display(),
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let v = View {
            path: path.to_path_buf(),
        };
        assert!(
            v.mounted(),
            "bindfs returned but {} is no mount",
            path.display()
        );
        v
    }

    fn mounted(&self) -> bool {
        is_mount_point(&self.path)
    }

    /// Unmount; a busy view (a process still in it) is detached lazily, never left mounted.
    /// Processes started in a view are killed and reaped before it drops: a view still busy
    /// after half a second is held by something that will not let go.
    pub fn unmount(&mut self) {
        let t = Instant::now();
        while self.mounted() {
            let ok = Command::new("fusermount")
                .arg("-u")
                .arg(&self.path)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok {
                break;
            }
            if t.elapsed() > Duration::from_millis(500) {
                let _ = Command::new("umount").arg("-l").arg(&self.path).status();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// A view of one share per node.
pub struct Views {
    pub views: Vec<View>,
}

impl Views {
    /// A view of `share` under `dir/views/<name>` for each of `names`.
    pub fn new(share: &Path, dir: &Path, names: &[String], cache: Duration) -> Views {
        std::fs::create_dir_all(share).unwrap();
        let views = names
            .iter()
            .map(|n| View::mount(share, &dir.join("views").join(n), cache))
            .collect();
        Views { views }
    }

    pub fn path(&self, i: usize) -> &Path {
        &self.views[i].path
    }
}
