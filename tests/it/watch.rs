//! `serve --watch` on a local filesystem, without a CA: store versions are published with
//! `Store::publish` and a node's watcher must install each one. With inotify (chosen by
//! itself, the store being on a local filesystem) a new version and a rollback are in place
//! within milliseconds although `watch_interval` is 30 s; with `[serve] watch = "poll"` they
//! are in place within the poll interval.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::net::Block;
use crate::common::site::{under, Site, VIP};
use crate::common::{next_second_after, Proc};

const MAIN_CERT: &str = "/etc/grid-security/gridftp/gridftp-hostcert.pem";

/// Node `i`'s `serve --watch`, logging at info level into `log`.
fn watcher(s: &Site, i: usize, addr: &str, log: &Path) -> Proc {
    let root = s.root(i);
    let child = s
        .cmd(
            i,
            &[
                "serve",
                "--watch",
                "--listen",
                addr,
                "--root",
                root.to_str().unwrap(),
            ],
        )
        .env("RUST_LOG", "vipcert=info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    Proc::new(child, "serve --watch")
}

/// Node `i` holds version `v` at its main certificate path.
fn holds(s: &Site, i: usize, v: u32) -> bool {
    std::fs::read(under(&s.root(i), MAIN_CERT)).ok()
        == Some(s.version_file(VIP, v, "fullchain.pem"))
}

/// How long until node `i` holds version `v`, polling every 2 ms; panics after `bound`.
fn time_to_hold(s: &Site, i: usize, v: u32, bound: Duration, log: &Path) -> Duration {
    let t = Instant::now();
    while !holds(s, i, v) {
        assert!(
            t.elapsed() < bound,
            "node {i} did not install version {v} within {bound:?}; watcher log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    t.elapsed()
}

/// A site in `block` with `serve` keys `serve`, one published version, and node 1's watcher
/// started and holding that version; its log says `chose` (the watcher it picked).
fn watched_site(block: Block, serve: &str, chose: &str) -> (Site, PathBuf, Proc) {
    let s = Site::new(&block.net(), "shared", "", &format!("[serve]\n{serve}"));
    let log = s.path("watch.log");
    let v1 = s.publish_good(VIP);
    let w = watcher(&s, 1, &block.addr(12, 0).to_string(), &log);
    time_to_hold(&s, 1, v1, Duration::from_secs(10), &log);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains(chose), "{text}");
    (s, log, w)
}

#[test]
fn inotify_installs_a_new_version_and_a_rollback_within_milliseconds() {
    // A 30 s poll interval: only inotify can explain an install within a second.
    let (s, log, _w) = watched_site(
        Block::WatchInotify,
        "watch_interval = \"30s\"\n",
        "watching with inotify",
    );

    let mut delays = vec![];
    for _ in 0..3 {
        let v = s.publish_good(VIP);
        delays.push(time_to_hold(&s, 1, v, Duration::from_secs(5), &log));
    }
    let last = s.store.current(VIP).unwrap().unwrap();
    s.store.set_current(VIP, last - 1).unwrap();
    delays.push(time_to_hold(&s, 1, last - 1, Duration::from_secs(5), &log));
    eprintln!("inotify: publish/rollback -> installed in {delays:?}");
    for d in &delays {
        // ~100 ms expected on a loaded 2-core machine (the install fsyncs); a poll would be 30 s.
        assert!(*d < Duration::from_secs(2), "{delays:?}");
    }
}

#[test]
fn poll_mode_installs_within_the_poll_interval() {
    let (s, log, _w) = watched_site(
        Block::WatchPoll,
        "watch = \"poll\"\nwatch_interval = \"1s\"\n",
        "polling every 1s",
    );
    let mut delays = vec![];
    let mut changed = std::time::SystemTime::now();
    for rollback in [false, true] {
        // The poll watcher compares modification times in whole seconds: flips of `current`
        // less than a second apart are the periodic re-check's job, not this test's. Each
        // flip is made in a later second than the one before.
        next_second_after(changed);
        let v = if rollback {
            let v = s.store.current(VIP).unwrap().unwrap() - 1;
            s.store.set_current(VIP, v).unwrap();
            v
        } else {
            s.publish_good(VIP)
        };
        changed = std::time::SystemTime::now();
        // One poll interval, plus the install itself on a loaded machine.
        delays.push(time_to_hold(&s, 1, v, Duration::from_secs(3), &log));
    }
    eprintln!("poll (1 s): publish/rollback -> installed in {delays:?}");
}
