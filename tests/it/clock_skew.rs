//! Clocks and leases (issue 17, Why 1 and 2), against a real Pebble behind a relay that makes
//! every CA answer ~0.35 s late, so an order takes seconds:
//! - node A (its own hostname, through a UTS namespace) runs `issue --force`; once A holds the
//!   issuer lease, node B, its clock 10 minutes ahead or behind (libfaketime), runs the same. Exactly one order, one
//!   new version, no failure recorded; B says "renewal in progress". Then `check` and
//!   `preflight` on B name the skew against the shared filesystem and the CA.
//! - a lease claiming to last for ever, from a host nobody can look at, is taken over after
//!   three refresh intervals of watching it, and `check` warns about it meanwhile.
//! - a node 20 minutes ahead sweeps no live challenge file from the shared webroot (their age
//!   is measured by the filesystem's clock), while a file 20 minutes old still goes.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::net::Block;
use crate::common::pebble::{Lab, LabOptions};
use crate::common::site::Site;
use crate::common::{need, text, Proc};

const VIP: &str = "gridftp.example.org";
/// Short lease refreshes (a dead holder is watched for 3 s), and room for the slow CA.
const EXTRA: &str = "[renew]\nlease_refresh = \"1s\"\n\n[check]\ntimeout = \"10s\"\n";
/// How late the relay passes on each chunk a client sends to the CA: A's order takes about
/// 6 s (0.7 s made it 12 s), and B needs about one of A's lease refreshes (1 s) to see A alive.
const CA_DELAY: Duration = Duration::from_millis(350);

/// A TCP relay in front of the CA that holds every chunk a client sends for `delay`: each
/// answer comes that much later. Pebble builds its URLs from the Host a client sent, so every
/// request of an order goes through the relay. Stops accepting when dropped; the open
/// connections end with their client.
struct SlowRelay {
    stop: Arc<AtomicBool>,
}

impl SlowRelay {
    fn start(listen: SocketAddr, to: SocketAddr, delay: Duration) -> SlowRelay {
        let l = TcpListener::bind(listen).unwrap();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        c.set_nonblocking(false).unwrap();
                        if let Ok(s) = TcpStream::connect(to) {
                            let (c2, s2) = (c.try_clone().unwrap(), s.try_clone().unwrap());
                            std::thread::spawn(move || pump(c, s2, delay));
                            std::thread::spawn(move || pump(s, c2, Duration::ZERO));
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        SlowRelay { stop }
    }
}

impl Drop for SlowRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let mut buf = [0u8; 16384];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        std::thread::sleep(delay);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// A lab whose nodes reach Pebble through a [`SlowRelay`] on its port 14001.
fn slow_lab(block: Block) -> (Lab, SlowRelay) {
    need("/usr/bin/faketime", "faketime");
    let lab = Lab::new(
        block,
        LabOptions {
            extra: EXTRA,
            ..Default::default()
        },
    );
    let relay = SlowRelay::start(block.addr(2, 14001), lab.pebble.listen, CA_DELAY);
    lab.edit_config(|c| c.replace(":14000/dir", ":14001/dir"));
    (lab, relay)
}

/// `inner` run through the program and arguments of `wrap`, with `inner`'s environment.
fn wrapped(inner: Command, wrap: &[&str]) -> Command {
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
    c
}

/// `vipcert <args>` as node `i` with its clock moved by `skew` (libfaketime, e.g. "+10m";
/// the monotonic clock stays true).
fn skewed(lab: &Lab, i: usize, skew: &str, args: &[&str]) -> Command {
    let mut c = wrapped(lab.cmd(i, args), &["faketime", "-f", skew]);
    c.env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    c
}

fn run(mut c: Command, what: &str) -> Output {
    let out = c.output().unwrap();
    eprintln!("$ {what}\n-- exit {:?}\n{}", out.status.code(), text(&out));
    out
}

/// The version directories of the VIP lineage.
fn versions(lab: &Lab) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(lab.store_dir(VIP))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.len() == 4 && n.bytes().all(|b| b.is_ascii_digit()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn failures(lab: &Lab) -> u64 {
    let st = std::fs::read(lab.shared.join(format!("state/{VIP}.json"))).unwrap();
    let st: serde_json::Value = serde_json::from_slice(&st).unwrap();
    st["failures"].as_u64().unwrap_or(0)
}

/// Rows of `check`'s text output about the clock that are not ok.
fn clock_rows(out: &Output) -> Vec<String> {
    text(out)
        .lines()
        .filter(|l| l.contains(" clock ") && !l.starts_with("ok"))
        .map(str::to_string)
        .collect()
}

/// A on another host issues through the slow CA; B, its clock moved by `skew`, starts once A
/// holds the lease (A takes it first, before preflight and the CA; B used to start a fixed
/// 3 s later): one order, one version, no failure, B in progress. Then B's `check` and `preflight`
/// see the skew (`word`: "ahead of" or "behind") against the shared filesystem and the CA.
fn one_order_while_b_is_skewed(block: Block, skew: &str, word: &str) {
    let (lab, relay) = slow_lab(block);
    let root_a = lab.root(0);
    let a = lab.cmd(0, &["issue", "--force", "--root", root_a.to_str().unwrap()]);
    let mut a = wrapped(
        a,
        &[
            "unshare",
            "--uts",
            "sh",
            "-c",
            "hostname host-a && exec \"$0\" \"$@\"",
        ],
    );
    let mut pa = Proc::spawn(&mut a, &lab.dir.join("node-a.log"));
    let lease = lab.shared.join("locks/issuer.lease");
    crate::common::wait_for(|| lease.exists(), "A takes the issuer lease");
    assert!(
        pa.child.try_wait().unwrap().is_none(),
        "A finished as soon as it held the lease: the CA is not slow enough\n{}",
        pa.log_text()
    );
    let root_b = lab.root(1);
    let root_b = root_b.to_str().unwrap();
    let b = run(
        skewed(&lab, 1, skew, &["issue", "--force", "--root", root_b]),
        &format!("faketime {skew} vipcert issue --force (B)"),
    );
    let status = pa.wait_exit(Duration::from_secs(120)).expect("A hangs");
    eprintln!("-- node A\n{}", pa.log_text());
    assert!(status.success(), "A failed:\n{}", pa.log_text());
    assert!(
        pa.log_text()
            .contains(&format!("{VIP}: issued version 0001")),
        "{}",
        pa.log_text()
    );
    assert!(b.status.success(), "{}", text(&b));
    assert!(
        text(&b).contains("renewal in progress on dtn1.example.org"),
        "{}",
        text(&b)
    );
    assert!(!text(&b).contains("took over"), "{}", text(&b));
    assert_eq!(lab.pebble.orders_created(), 1, "one order at the CA");
    assert_eq!(versions(&lab), ["0001"], "one new version");
    assert_eq!(failures(&lab), 0, "no failure recorded");

    // The skew is seen, against both sources (the CA asked directly now: no relay).
    drop(relay);
    lab.edit_config(|c| c.replace(":14001/dir", ":14000/dir"));
    let check = run(
        skewed(&lab, 1, skew, &["check", "--root", root_b]),
        "faketime vipcert check",
    );
    let rows = clock_rows(&check);
    for source in ["the shared filesystem", "the CA"] {
        assert!(
            rows.iter()
                .any(|r| r.starts_with("critical") && r.contains(&format!("{word} {source}"))),
            "no critical clock row {word} {source}:\n{}",
            text(&check)
        );
    }
    let pre = run(skewed(&lab, 1, skew, &["preflight"]), "faketime preflight");
    assert_eq!(pre.status.code(), Some(1), "{}", text(&pre));
    assert!(
        text(&pre).contains(&format!("{word} the CA")),
        "{}",
        text(&pre)
    );
    // With the true clock, nothing to say.
    let check = lab.run_as(1, &["check"]);
    assert!(clock_rows(&check).is_empty(), "{}", text(&check));
}

#[test]
fn a_node_ten_minutes_ahead_places_no_second_order() {
    one_order_while_b_is_skewed(Block::ClockAhead, "+10m", "ahead of");
}

#[test]
fn a_node_ten_minutes_behind_places_no_second_order() {
    one_order_while_b_is_skewed(Block::ClockBehind, "-10m", "behind");
}

#[test]
fn a_lease_claiming_forever_is_taken_over_and_check_warns() {
    let lab = Lab::new(
        Block::ClockForeverLease,
        LabOptions {
            extra: EXTRA,
            ..Default::default()
        },
    );
    vipcert::store::Store::new(&lab.shared).init().unwrap();
    std::fs::write(
        lab.shared.join("locks/issuer.lease"),
        r#"{"node":"evil","host":"other","pid":4294967295,"expires_at":9223372036854775807,"held_until":9223372036854775807,"token":"x"}"#,
    )
    .unwrap();
    let check = lab.run_as(0, &["check"]);
    assert!(
        text(&check)
            .lines()
            .any(|l| l.starts_with("warning") && l.contains("issuer lease of evil (host other")),
        "{}",
        text(&check)
    );
    let t = Instant::now();
    let out = lab.run_as(0, &["renew", "--force"]);
    let took = t.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("took over the issuer lease of evil (host other"),
        "{}",
        text(&out)
    );
    // Watched for three refresh intervals (1 s here) on this node's own clock first.
    assert!(took >= Duration::from_secs(3), "{took:?}");
    assert_eq!(versions(&lab), ["0001"]);
    assert!(!lab.shared.join("locks/issuer.lease").exists());
}

#[test]
fn a_node_far_ahead_sweeps_no_live_challenge_file() {
    need("/usr/bin/faketime", "faketime");
    let s = Site::new(
        &Block::ClockSweep.net(),
        "shared",
        "",
        "[preflight]\nskip_dns = true\ntimeout = \"1s\"\n",
    );
    let web = s.shared.join("webroot/.well-known/acme-challenge");
    std::fs::create_dir_all(&web).unwrap();
    let live = web.join("liveToken_0123456789");
    let old = web.join("oldToken_0123456789");
    std::fs::write(&live, "a live order's key authorization").unwrap();
    std::fs::write(&old, "a killed run's key authorization").unwrap();
    let f = std::fs::File::options().write(true).open(&old).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(20 * 60))
        .unwrap();
    // `renew --force` takes the lease and sweeps the webroot before its preflight (which fails:
    // no node serves here).
    let mut c = wrapped(s.cmd(1, &["renew", "--force"]), &["faketime", "-f", "+20m"]);
    c.env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    let out = run(c, "faketime +20m vipcert renew --force");
    assert!(text(&out).contains("preflight"), "{}", text(&out));
    assert!(
        live.exists(),
        "a node 20 minutes ahead swept a live challenge file"
    );
    assert!(!old.exists(), "a challenge file 20 minutes old was kept");
}
