//! The whole job with the shared directory as sites have it: every node's processes (`serve
//! --watch`, `issue`, `renew`, `rollback`, `check`) see it only through that node's own bindfs
//! view with kernel caches of `$VIPCERT_TEST_NFS_CACHE` seconds (default 2), against Pebble,
//! for both layouts. One lab per layout, walked through in order: the views really cache;
//! `issue` on one node passes the readiness barrier (its wait is reported); three `renew
//! --force` at once place one order; every watcher installs the new version and a rollback
//! (each delay reported against the cache timeout); `check --fleet` is right once the caches
//! have expired; a lease holder killed mid-run is taken over by another node.
//!
//! Run with `VIPCERT_TEST_NFS_CACHE=5 cargo test --test it nfs:: -- --nocapture` for the 5 s
//! figures of docs/operations.md.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::net::Block;
use crate::common::nfs::{cache_timeout, is_mount_point, unavailable, View};
use crate::common::pebble::{Lab, LabOptions};
use crate::common::{next_second_after, text, Proc};

const VIP: &str = "gridftp.example.org";
/// The poll watcher's interval in these labs.
const POLL: Duration = Duration::from_secs(1);

struct Layout {
    name: &'static str,
    block: Block,
    cert: &'static str,
}

const SHARED: Layout = Layout {
    name: "shared",
    block: Block::NfsShared,
    cert: "etc/grid-security/gridftp/gridftp-hostcert.pem",
};
const PER_HOST: Layout = Layout {
    name: "per-host",
    block: Block::NfsPerHost,
    cert: "etc/grid-security/hostcert.pem",
};

impl Layout {
    fn lineage<'a>(&self, lab: &'a Lab, i: usize) -> &'a str {
        if self.name == "shared" {
            VIP
        } else {
            &lab.nodes[i].0
        }
    }

    fn lineages(&self) -> usize {
        if self.name == "shared" {
            1
        } else {
            3
        }
    }
}

/// The version of its lineage node `i` holds (compared with the store behind the views).
fn installed(lab: &Lab, l: &Layout, i: usize) -> Option<u32> {
    let c = std::fs::read(lab.root(i).join(l.cert)).ok()?;
    let dir = lab.store_dir(l.lineage(lab, i));
    (1..=20).find(|v| {
        let vd = dir.join(format!("{v:04}"));
        ["fullchain.pem", "cert.pem"]
            .iter()
            .any(|f| std::fs::read(vd.join(f)).ok().as_ref() == Some(&c))
    })
}

/// How long until node `i` holds version `v`, from `since`; panics after `bound`.
fn install_delay(
    lab: &Lab,
    l: &Layout,
    i: usize,
    v: u32,
    since: Instant,
    bound: Duration,
) -> Duration {
    while installed(lab, l, i) != Some(v) {
        assert!(
            since.elapsed() < bound,
            "node {i} did not install version {v} within {bound:?} (holds {:?}); its log:\n{}",
            installed(lab, l, i),
            std::fs::read_to_string(lab.dir.join(format!("watch-{i}.log"))).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    since.elapsed()
}

/// The largest `waited_ms=N` the readiness barrier logged.
fn barrier_wait(out: &str) -> Duration {
    let ms = out
        .lines()
        .filter(|l| l.contains("readiness barrier"))
        .filter_map(|l| l.split("waited_ms=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .max();
    Duration::from_millis(ms.unwrap_or_else(|| panic!("no barrier line in:\n{out}")))
}

/// A file created through view 0 after view 1 looked for it stays invisible through view 1
/// for about the cache timeout: the harness really caches (else every test here is moot).
fn views_cache(lab: &Lab, cache: Duration) {
    let name = format!("probe-{}", std::process::id());
    let (v0, v1) = (lab.shared_of(0).join(&name), lab.shared_of(1).join(&name));
    assert!(!v1.exists());
    std::fs::write(&v0, b"x").unwrap();
    let t = Instant::now();
    while !v1.exists() {
        assert!(
            t.elapsed() < cache + Duration::from_secs(3),
            "never visible"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let hidden = t.elapsed();
    std::fs::remove_file(&v0).unwrap();
    eprintln!("views: a new file stayed hidden from another view for {hidden:?}");
    assert!(
        hidden >= cache / 2,
        "the views do not cache: hidden {hidden:?}"
    );
}

fn walk(l: &Layout) {
    if let Some(why) = unavailable() {
        eprintln!("SKIPPED: caching views need FUSE: {why}");
        return;
    }
    let cache = cache_timeout();
    let mut lab = Lab::new(
        l.block,
        LabOptions {
            layout: l.name,
            cache: Some(cache),
            ..Default::default()
        },
    );
    views_cache(&lab, cache);
    lab.edit_config(|c| c.replacen("[serve]\n", "[serve]\nwatch_interval = \"1s\"\n", 1));
    let _watchers: Vec<Proc> = (0..3).map(|i| lab.start_watcher(i)).collect();
    for i in 0..3 {
        let log = lab.dir.join(format!("watch-{i}.log"));
        crate::common::wait_for(
            || {
                std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .contains("polling every 1s")
            },
            "the watcher on a FUSE view polls",
        );
    }
    // A node's watcher may see the new `current` up to one poll plus one cache timeout late.
    let bound = cache + POLL + Duration::from_secs(5);
    let mut report = vec![format!("layout {}, cache {cache:?}", l.name)];

    // 1. issue on node 0; every other node's watcher installs.
    let out = lab.run_as(0, &["issue"]);
    assert!(out.status.success(), "{}", text(&out));
    let done = Instant::now();
    report.push(format!(
        "issue: barrier waited {:?}",
        barrier_wait(&text(&out))
    ));
    let d: Vec<_> = (0..3)
        .map(|i| install_delay(&lab, l, i, 1, done, bound))
        .collect();
    report.push(format!("issue -> installed on each node after {d:?}"));

    // 2. three renew --force at once: one order per lineage, every node ends with it.
    let orders = lab.pebble.orders_created();
    let outs = lab.run_on_all_at_once(&["renew", "--force"]);
    let done = Instant::now();
    let renewed_at = std::time::SystemTime::now();
    let mut renewed = 0;
    for (i, o) in outs.iter().enumerate() {
        let t = text(o);
        assert!(o.status.success(), "renew on node {i}:\n{t}");
        if t.contains("renewed: version 0002") {
            renewed += 1;
        } else {
            assert!(t.contains("renewal in progress on"), "node {i}:\n{t}");
        }
    }
    assert_eq!(renewed, 1, "exactly one node renews");
    assert_eq!(
        lab.pebble.orders_created(),
        orders + l.lineages(),
        "one order per lineage"
    );
    let d: Vec<_> = (0..3)
        .map(|i| install_delay(&lab, l, i, 2, done, bound))
        .collect();
    report.push(format!("renew -> installed on each node after {d:?}"));

    // 3. a rollback made on node 2 (of node 1's lineage), installed by node 1's watcher (and
    // node 0's in the shared layout). The poll watcher sees mtimes in whole seconds: made in
    // a later second than the renewal.
    next_second_after(renewed_at);
    let lineage = l.lineage(&lab, 1).to_string();
    let out = lab.run_as(2, &["rollback", &lineage]);
    assert!(out.status.success(), "{}", text(&out));
    let done = Instant::now();
    let watched: Vec<usize> = if l.name == "shared" {
        vec![0, 1]
    } else {
        vec![1]
    };
    let d: Vec<_> = watched
        .iter()
        .map(|&i| install_delay(&lab, l, i, 1, done, bound))
        .collect();
    report.push(format!(
        "rollback -> installed by watchers {watched:?} after {d:?}"
    ));

    // 4. once the caches have expired, `check --fleet` from any node sees every node right.
    std::thread::sleep(cache + Duration::from_millis(500));
    for i in 0..3 {
        let out = lab.run(i, &["check", "--fleet"]);
        let t = text(&out);
        assert!(out.status.success(), "check --fleet on node {i}:\n{t}");
        // Every node answered and holds what the store says (a row "ok <node> ..." each).
        for (h, _) in &lab.nodes {
            assert!(
                t.lines()
                    .any(|l| l.starts_with("ok") && l.split_whitespace().nth(1) == Some(h)),
                "check --fleet on node {i} has no ok row for {h}:\n{t}"
            );
        }
    }

    // 5. a lease holder killed mid-run is detected through another node's view: node 1 takes
    // the lease over (at once when it can tell the holder is dead, else once the ttl is out).
    let ttl = Duration::from_secs(4);
    // lease_refresh × 3 must fit in lease_ttl (config check refuses the default 10 s here).
    lab.edit_config(|c| format!("{c}\n[renew]\nlease_ttl = \"4s\"\nlease_refresh = \"1s\"\n"));
    let killed = kill_holder(&lab);
    let t = Instant::now();
    loop {
        let out = lab.run_as(1, &["renew", "--force"]);
        let t2 = text(&out);
        assert!(
            out.status.success(),
            "renew on node 1 after the kill:\n{t2}"
        );
        if t2.contains("renewed: version") {
            break;
        }
        assert!(t2.contains("renewal in progress on"), "{t2}");
        assert!(
            t.elapsed() < ttl + cache + Duration::from_secs(5),
            "node 1 never took over the dead holder's lease:\n{t2}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    report.push(format!(
        "lease of a holder killed {killed:?} into its run taken over by node 1 after {:?} (ttl {ttl:?})",
        t.elapsed()
    ));

    eprintln!("NFS-LIKE {}", report.join("; "));
}

/// Start `renew --force` on node 0 and SIGKILL it while it holds the issuer lease (seen on
/// the file server's side). Returns how far into its run it was killed.
fn kill_holder(lab: &Lab) -> Duration {
    let lease = lab.shared.join("locks/issuer.lease");
    for _ in 0..5 {
        let root = lab.root(0);
        let mut p = Proc::new(
            lab.cmd(0, &["renew", "--force", "--root", root.to_str().unwrap()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
            "renew on node 0",
        );
        let t = Instant::now();
        while !lease.exists() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(2));
        }
        p.kill();
        if lease.exists() {
            return t.elapsed();
        }
        // It finished before we saw the lease: try again.
    }
    panic!("could not kill a renew while it held the lease");
}

#[test]
fn a_panicking_test_leaves_no_view_mounted_even_a_busy_one() {
    if let Some(why) = unavailable() {
        eprintln!("SKIPPED: caching views need FUSE: {why}");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (share, at) = (t.path().join("share"), t.path().join("view"));
    std::fs::create_dir(&share).unwrap();
    let r = std::panic::catch_unwind(|| {
        let v = View::mount(&share, &at, Duration::from_secs(1));
        // A process still inside the view when it is unmounted: `fusermount -u` says busy.
        let _inside = Proc::new(
            std::process::Command::new("sleep")
                .arg("30")
                .current_dir(&v.path)
                .spawn()
                .unwrap(),
            "sleep in the view",
        );
        let _v = v;
        panic!("a test failing with its view mounted");
    });
    assert!(r.is_err());
    assert!(!is_mount_point(&at), "{} is still mounted", at.display());
}

#[test]
fn shared_layout_through_caching_views() {
    walk(&SHARED);
}

#[test]
fn per_host_layout_through_caching_views() {
    walk(&PER_HOST);
}
