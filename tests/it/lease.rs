//! Leases that notice death (issue 8, item 4): a real `vipcert renew --force` holds the issuer
//! lease while its preflight waits on a node that accepts and never answers; killed with -9,
//! the next run on this host takes over at once. The same holder started in its own UTS
//! namespace (another hostname) keeps the lease alive by refreshing it, and once killed stops
//! blocking within three refresh intervals (`renew.lease_refresh = "1s"` here, 10 s by
//! default: ~30 s). `check` warns about the stale lease in between.

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::net::Block;
use crate::common::site::Site;
use crate::common::{text, Proc};

/// Each test's nodes are on its own block's .11-13 (the VIP .10); the
/// first node's port 80 is a listener that accepts and never answers, so a preflight hangs
/// there for its timeout. Dropped after the kill, so the taker's own preflight fails fast.
fn site(b: Block) -> (Site, TcpListener) {
    let net = b.net();
    let s = Site::new(
        &net,
        "shared",
        "",
        "[preflight]\nskip_dns = true\ntimeout = \"60s\"\n[renew]\nlease_refresh = \"1s\"\n",
    );
    let silent = TcpListener::bind(format!("{net}.11:80")).unwrap();
    (s, silent)
}

fn lease_file(s: &Site) -> std::path::PathBuf {
    s.shared.join("locks/issuer.lease")
}

/// Start `vipcert renew --force` as node `i` (through `wrap`, e.g. `unshare`), and wait until
/// it holds the lease.
fn holder(s: &Site, i: usize, wrap: &[&str]) -> Proc {
    let mut inner = s.cmd(i, &["renew", "--force"]);
    let mut cmd = if wrap.is_empty() {
        inner
    } else {
        let mut c = Command::new(wrap[0]);
        c.args(&wrap[1..])
            .arg(inner.get_program())
            .args(inner.get_args());
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        inner = c;
        inner
    };
    let log = s.path(&format!("holder-{i}.log"));
    let p = Proc::spawn(&mut cmd, &log);
    crate::common::wait_for(|| lease_file(s).exists(), "the holder takes the lease");
    p
}

fn renew(s: &Site, i: usize) -> std::process::Output {
    s.run(i, &["renew", "--force"])
}

fn in_progress(o: &std::process::Output) -> bool {
    text(o).contains("renewal in progress")
}

#[test]
fn killed_holder_on_this_host_is_taken_over_at_once() {
    let (s, silent) = site(Block::LeaseHere);
    let mut h = holder(&s, 0, &[]);
    // Alive: the other node waits.
    let out = renew(&s, 1);
    assert!(in_progress(&out), "{}", text(&out));
    assert!(out.status.success(), "{}", text(&out));
    h.kill();
    drop(silent);
    // `check` sees the dead holder's lease and warns (drift is data: exit status aside).
    let check = s.run(1, &["check", "--root", s.root(1).to_str().unwrap()]);
    assert!(
        text(&check).contains("issuer lease of dtn1.example.org")
            && text(&check).contains("is gone on this host"),
        "{}",
        text(&check)
    );
    let t = Instant::now();
    let out = renew(&s, 1);
    let took = t.elapsed();
    assert!(
        !in_progress(&out),
        "a dead holder still blocks: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("took over the issuer lease of dtn1.example.org")
            && text(&out).contains("is gone on this host"),
        "{}",
        text(&out)
    );
    // No waiting for any ttl: the run ends with its own (failing, silent node) preflight.
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(!lease_file(&s).exists(), "the taker released the lease");
}

#[test]
fn killed_holder_on_another_host_stops_blocking_within_three_refreshes() {
    let (s, silent) = site(Block::LeaseElsewhere);
    // Its own hostname: the lease says host "other-host", so this host cannot look at its pid.
    let mut h = holder(
        &s,
        0,
        &[
            "unshare",
            "--uts",
            "sh",
            "-c",
            "hostname other-host && exec \"$0\" \"$@\"",
        ],
    );
    let lease = std::fs::read_to_string(lease_file(&s)).unwrap();
    assert!(lease.contains("\"host\":\"other-host\""), "{lease}");
    // Alive and refreshing: still held well after the short ttl (3 s) would have run out.
    std::thread::sleep(Duration::from_secs(5));
    let out = renew(&s, 1);
    assert!(
        in_progress(&out),
        "a live holder lost its lease: {}",
        text(&out)
    );
    let check = s.run(1, &["check", "--root", s.root(1).to_str().unwrap()]);
    assert!(!text(&check).contains("issuer lease"), "{}", text(&check));
    h.kill();
    drop(silent);
    let killed = Instant::now();
    let mut seen = None;
    while killed.elapsed() < Duration::from_secs(15) {
        let out = renew(&s, 1);
        if !in_progress(&out) {
            assert!(
                text(&out).contains("took over the issuer lease"),
                "{}",
                text(&out)
            );
            seen = Some(killed.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = seen.expect("the dead holder's lease still blocks after 15 s");
    eprintln!("REPORT lease: another host's killed holder stopped blocking after {after:?} (refresh 1 s, short ttl 3 s)");
    assert!(after <= Duration::from_secs(5), "{after:?}");
}
