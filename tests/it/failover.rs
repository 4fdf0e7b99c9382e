//! High availability with real keepalived, in network namespaces the test makes (root only;
//! skipped with a message where namespaces cannot be made): two balancer hosts, each running
//! keepalived (VRRP with unicast peers, config from `vipcert render keepalived`, mode vrrp)
//! and `vipcert balance` on the VIP, in front of two nodes running `vipcert serve` and
//! GridFTP. The MASTER's keepalived stops, then (after it is back) the MASTER's balancer
//! dies, then the MASTER host drops off the segment: each time the VIP moves to the BACKUP,
//! and a challenge file over HTTP and a GridFTP transfer through the VIP work again; the gaps
//! are measured and printed. The old MASTER returns and takes the VIP back (preempt, the
//! default). With `preempt = false` the returning MASTER leaves the VIP where it is until
//! that host's keepalived stops.
//!
//! Also: `render node-vip` applied in a node namespace makes the node accept traffic for
//! the VIP without answering ARP for it, and every `render keepalived` variant passes
//! `keepalived -t` where its interface exists.
//!
//! Addresses: 198.18.0.0/24 (RFC 2544 benchmarking range), only inside these namespaces.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::netns::{Netns, Segment};
use crate::common::{Proc, BIN};

const KEEPALIVED: &str = "/usr/sbin/keepalived";
const GRIDFTP: &str = "/usr/sbin/globus-gridftp-server";
const COPY: &str = "/usr/bin/globus-url-copy";
const VIP: &str = "198.18.0.10";
const LB: [(&str, &str); 2] = [("lb1", "198.18.0.1"), ("lb2", "198.18.0.2")];
const NODES: [(&str, &str, &str); 2] = [
    ("n1", "n1.ha.test", "198.18.0.11"),
    ("n2", "n2.ha.test", "198.18.0.12"),
];
const CLIENT: (&str, &str) = ("cl", "198.18.0.100");
const TOKEN: &str = "failover-probe_0123456789";
const BODY: &str = "failover-probe_0123456789.keyauth";

/// Some reason to skip, or a segment with the given hosts.
fn segment(hosts: &[(&str, &str)]) -> Option<Segment> {
    // .ci/run installs keepalived: a missing one is a failure, never a silent pass.
    crate::common::need(KEEPALIVED, "keepalived");
    match Segment::new(hosts) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("skipped: cannot make network namespaces here (needs root): {e}");
            None
        }
    }
}

fn config_text(shared: &Path, keepalived: &str) -> String {
    let mut s = format!(
        "virtual_hostname = \"gridftp.ha.test\"\nvirtual_ip = \"{VIP}\"\nshared_dir = \"{}\"\nlayout = \"shared\"\n\
         [serve]\nlisten = [\"0.0.0.0:80\"]\n\
         [balancer]\ndelay_loop = \"1s\"\nconnect_timeout = \"1s\"\nrise = 1\nfall = 2\nadmin_listen = \"127.0.0.1:9811\"\n\
         [balancer.keepalived]\ninterface = \"eth0\"\nvirtual_router_id = 51\n{keepalived}\n",
        shared.display()
    );
    for (_, h, a) in NODES {
        s.push_str(&format!(
            "[[node]]\nhostname = \"{h}\"\naddress = \"{a}\"\n"
        ));
    }
    s
}

/// `vipcert render <args>` run inside `ns` (so that it sees that host's addresses).
fn render(ns: &Netns, config: &Path, args: &[&str]) -> String {
    let out = ns
        .cmd(BIN)
        .arg("--config")
        .arg(config)
        .arg("render")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "render {args:?} in {}: {}",
        ns.name,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `keepalived -t` inside `ns`. keepalived 2.2.7 ends a check of a file with a vrrp_script by
/// SIGTERM to itself, and reports most problems on stderr only: accepted = exit 0 or that
/// SIGTERM, and nothing on stderr.
fn keepalived_t(ns: &Netns, conf: &Path) -> Result<(), String> {
    use std::os::unix::process::ExitStatusExt;
    let out = ns
        .cmd(KEEPALIVED)
        .arg("-t")
        .arg("-f")
        .arg(conf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let finished = out.status.success() || out.status.signal() == Some(15);
    if finished && err.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {err}", out.status))
    }
}

/// One HTTP GET of the probe token through the VIP from the client; bounded by 0.5 s.
fn fetch(cl: &Netns) -> bool {
    cl.cmd("curl")
        .args(["-sf", "--max-time", "0.5", "-o", "-"])
        .arg(format!("http://{VIP}/.well-known/acme-challenge/{TOKEN}"))
        .stderr(Stdio::null())
        .output()
        .map(|o| o.status.success() && o.stdout == BODY.as_bytes())
        .unwrap_or(false)
}

/// globus-url-copy through the VIP (control channel via the balancer) into `dst`, bounded.
fn gridftp_copy(cl: &Netns, src: &Path, dst: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(dst);
    crate::common::run_bounded(
        cl.cmd(COPY)
            .arg(format!("ftp://{VIP}:2811{}", src.display()))
            .arg(format!("file://{}", dst.display())),
        Duration::from_secs(30),
    )
}

fn wait_until(what: &str, bound: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < bound, "not within {bound:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    t.elapsed()
}

/// Everything of the failover lab; fields drop in order: processes, then namespaces.
struct Lab {
    keepalived: Vec<Option<Proc>>,
    /// GridFTP parts present: a payload and the bytes it holds.
    gridftp: Option<(PathBuf, Vec<u8>)>,
    balance: Vec<Option<Proc>>,
    _nodes: Vec<Proc>,
    seg: Segment,
    dir: PathBuf,
    config: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Lab {
    fn lb(&self, i: usize) -> &Netns {
        self.seg.host(LB[i].0)
    }

    fn start_keepalived(&mut self, i: usize) {
        let ns = self.seg.host(LB[i].0);
        let d = self.dir.join(LB[i].0);
        let conf = d.join("keepalived.conf");
        // Own pid files: never the host's /run/keepalived.pid.
        let p = Proc::spawn(
            ns.cmd(KEEPALIVED)
                .args(["-n", "-l", "-D", "-P", "-f"])
                .arg(&conf)
                .arg("-p")
                .arg(d.join("keepalived.pid"))
                .arg("-r")
                .arg(d.join("vrrp.pid"))
                .arg("-c")
                .arg(d.join("checkers.pid")),
            &d.join(format!(
                "keepalived-{}.log",
                Instant::now().elapsed().as_nanos()
            )),
        );
        self.keepalived[i] = Some(p);
    }

    /// Wait until lb1 alone holds the VIP (how long that took) and a challenge answers
    /// through it: the start of each test.
    fn vip_on_lb1(&self) -> Duration {
        let t = wait_until("lb1 holds the VIP", Duration::from_secs(20), || {
            self.holder() == Some(0)
        });
        wait_until(
            "a challenge through the VIP",
            Duration::from_secs(30),
            || fetch(self.seg.host(CLIENT.0)),
        );
        t
    }

    /// Start balancer `i`'s keepalived again once the stopped one has exited.
    fn restart_keepalived(&mut self, i: usize) {
        if let Some(p) = self.keepalived[i].as_mut() {
            p.wait_exit(Duration::from_secs(10));
        }
        self.start_keepalived(i);
    }

    fn start_balance(&mut self, i: usize) {
        let ns = self.seg.host(LB[i].0);
        let p = Proc::spawn(
            ns.cmd(BIN)
                .arg("--config")
                .arg(&self.config)
                .args(["balance", "--threads", "1"])
                .env("NO_COLOR", "1"),
            &self.dir.join(LB[i].0).join("balance.log"),
        );
        self.balance[i] = Some(p);
        let ns = self.seg.host(LB[i].0);
        wait_until(
            "the balancer's admin endpoint answers",
            Duration::from_secs(30),
            || {
                ns.sh("curl -sf -o /dev/null --max-time 1 http://127.0.0.1:9811/metrics")
                    .is_ok()
            },
        );
    }

    /// Which balancer alone holds the VIP (None: neither, or both for the moment of a
    /// handover).
    fn holder(&self) -> Option<usize> {
        match (self.lb(0).holds(VIP), self.lb(1).holds(VIP)) {
            (true, false) => Some(0),
            (false, true) => Some(1),
            _ => None,
        }
    }

    /// No split brain: balancer `i` alone holds the VIP for a while after a move.
    fn settled_on(&self, i: usize) {
        for _ in 0..15 {
            assert_eq!(
                self.holder(),
                Some(i),
                "the VIP left lb{} after moving there\n{}",
                i + 1,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for p in self.keepalived.iter().chain(&self.balance).flatten() {
            s.push_str(&format!("--- {}\n{}\n", p.name, p.log_text()));
        }
        s
    }

    /// A GridFTP transfer through the VIP (when GridFTP is here), byte-identical.
    fn transfer(&self, when: &str) {
        let Some((payload, data)) = &self.gridftp else {
            return;
        };
        let cl = self.seg.host(CLIENT.0);
        let copied = self.dir.join("copy.bin");
        let t = Instant::now();
        // Just after a move the new balancer may still count a node down: a few tries.
        let mut last = String::new();
        for _ in 0..5 {
            match gridftp_copy(cl, payload, &copied) {
                Ok(()) => {
                    assert!(
                        std::fs::read(&copied).unwrap() == *data,
                        "{when}: copy differs"
                    );
                    eprintln!(
                        "GridFTP transfer through the VIP {when}: ok in {:?}",
                        t.elapsed()
                    );
                    return;
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!(
            "GridFTP through the VIP {when} failed: {last}\n{}",
            self.logs()
        );
    }

    /// After `fail` at t0: the time until the VIP is on balancer `to` and a challenge fetch
    /// through it succeeds, probing every 100 ms.
    fn gap(&self, to: usize, fail: impl FnOnce()) -> Duration {
        self.gap_to(to, true, fail)
    }

    /// As `gap`; with `alone` false the old holder may keep the VIP (cut off from the
    /// segment, it cannot know it lost it).
    fn gap_to(&self, to: usize, alone: bool, fail: impl FnOnce()) -> Duration {
        let cl = self.seg.host(CLIENT.0);
        assert!(
            fetch(cl),
            "the VIP does not answer before the failure\n{}",
            self.logs()
        );
        let t0 = Instant::now();
        fail();
        loop {
            let moved = if alone {
                self.holder() == Some(to)
            } else {
                self.lb(to).holds(VIP)
            };
            if moved && fetch(cl) {
                let gap = t0.elapsed();
                if alone {
                    self.settled_on(to);
                }
                return gap;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "no answer through the VIP on lb{} within 20 s\n{}",
                to + 1,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The two balancer hosts (each with its own `render keepalived` output from one config
/// whose `[balancer.keepalived]` ends with `keepalived_keys`, checked by `check(host, text)`),
/// two nodes running `vipcert serve` (and anonymous GridFTP with `gridftp`) and a client, all
/// started; None where namespaces cannot be made. lb1's keepalived is running (in its first
/// state) before lb2's balancer starts, so lb1 is the first to claim the VIP.
fn start_lab(keepalived_keys: &str, gridftp: bool, check: impl Fn(usize, &str)) -> Option<Lab> {
    let hosts: Vec<(&str, String)> = LB
        .iter()
        .map(|(t, a)| (*t, format!("{a}/24")))
        .chain(NODES.iter().map(|(t, _, a)| (*t, format!("{a}/24"))))
        .chain([(CLIENT.0, format!("{}/24", CLIENT.1))])
        .collect();
    let hosts: Vec<(&str, &str)> = hosts.iter().map(|(t, a)| (*t, a.as_str())).collect();
    let mut seg = segment(&hosts)?;
    if gridftp {
        crate::common::need(GRIDFTP, "globus-gridftp-server-progs");
        crate::common::need(COPY, "globus-gass-copy-progs");
    }
    let etc_hosts: String = NODES
        .iter()
        .map(|(_, h, a)| format!("{a} {h}\n"))
        .chain([format!("{VIP} gridftp.ha.test\n")])
        .collect();
    for (t, _, a) in NODES {
        seg.host_mut(t).set_etc(a, &etc_hosts);
    }
    seg.host_mut(CLIENT.0).set_etc(CLIENT.1, &etc_hosts);

    let tmp = tempfile::tempdir().unwrap();
    // Anonymous GridFTP sessions run as nobody: the tree must be world-readable.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tmp.path().to_path_buf();
    let shared = dir.join("shared");
    let webroot = shared.join("webroot/.well-known/acme-challenge");
    std::fs::create_dir_all(&webroot).unwrap();
    std::fs::write(webroot.join(TOKEN), BODY).unwrap();
    let config = dir.join("vipcert.toml");
    std::fs::write(
        &config,
        config_text(
            &shared,
            &format!(
                "mode = \"vrrp\"\nunicast_peers = [\"198.18.0.1\", \"198.18.0.2\"]\n{keepalived_keys}"
            ),
        ),
    )
    .unwrap();
    let payload = dir.join("payload.bin");
    let data: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    if gridftp {
        std::fs::write(&payload, &data).unwrap();
        std::fs::set_permissions(&payload, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    // The nodes: vipcert serve (and GridFTP) on each node's own address.
    let mut nodes = Vec::new();
    for (t, h, a) in NODES {
        let ns = seg.host(t);
        nodes.push(Proc::spawn(
            ns.cmd(BIN)
                .arg("--config")
                .arg(&config)
                .args(["--node", h, "serve"])
                .env("NO_COLOR", "1"),
            &dir.join(format!("serve-{t}.log")),
        ));
        if !gridftp {
            continue;
        }
        nodes.push(Proc::spawn(
            ns.cmd(GRIDFTP).args([
                "-aa",
                "-p",
                "2811",
                "-control-interface",
                a,
                "-data-interface",
                a,
                "-anonymous-user",
                "nobody",
            ]),
            &dir.join(format!("gridftp-{t}.log")),
        ));
    }
    // Each balancer host renders its own keepalived.conf from the one shared file.
    for (i, (t, addr)) in LB.iter().enumerate() {
        let d = dir.join(t);
        std::fs::create_dir_all(&d).unwrap();
        let text = render(seg.host(t), &config, &["keepalived"]);
        let other = LB[1 - i].1;
        assert!(
            text.contains(&format!(
                "unicast_src_ip {addr}\n    unicast_peer {{\n        {other}\n    }}"
            )),
            "{text}"
        );
        assert!(!text.contains("virtual_server"), "{text}");
        check(i, &text);
        std::fs::write(d.join("keepalived.conf"), &text).unwrap();
        keepalived_t(seg.host(t), &d.join("keepalived.conf"))
            .unwrap_or_else(|e| panic!("keepalived -t refused the rendered file: {e}\n{text}"));
    }
    let mut lab = Lab {
        keepalived: vec![None, None],
        gridftp: gridftp.then_some((payload, data)),
        balance: vec![None, None],
        _nodes: nodes,
        seg,
        dir,
        config,
        _tmp: tmp,
    };
    lab.start_balance(0);
    lab.start_keepalived(0);
    // lb1 first up, whatever the machine's load: its VRRP instance has entered its first state
    // before lb2's starts (with nopreempt, the first MASTER keeps the VIP). Once, on a 2-core
    // machine running four tests at once, lb1's keepalived was still starting when lb2's came up.
    wait_until(
        "lb1's keepalived enters its first state",
        Duration::from_secs(20),
        || {
            lab.keepalived[0]
                .as_ref()
                .unwrap()
                .log_text()
                .contains("Entering ")
        },
    );
    lab.start_balance(1);
    lab.start_keepalived(1);
    Some(lab)
}

#[test]
fn vip_moves_when_keepalived_or_the_balancer_dies_and_returns_with_preempt() {
    // Its gaps are timed in seconds: never beside a socket flood (the soak, the 8,000-connection
    // balancer test), which starved its GridFTP transfer once on a 2-core machine.
    let _quiet = crate::common::quiet();
    let Some(mut lab) = start_lab("", true, |i, text| {
        assert!(
            text.contains(if i == 0 {
                "state MASTER"
            } else {
                "state BACKUP"
            }),
            "{text}"
        );
    }) else {
        return;
    };
    lab.vip_on_lb1();
    lab.transfer("at start");

    // 1. The MASTER's keepalived stops (SIGTERM: it gives the VIP up and says so).
    let gap = lab.gap(1, || lab.keepalived[0].as_ref().unwrap().signal("TERM"));
    eprintln!("failover gap, MASTER keepalived stopped: {gap:?}");
    assert!(!lab.lb(0).holds(VIP));
    lab.transfer("after keepalived stopped on lb1");
    assert!(gap < Duration::from_secs(5), "gap {gap:?}");

    // It returns: with preempt (default) the higher priority takes the VIP back.
    lab.restart_keepalived(0);
    let back = lab.gap(0, || {});
    eprintln!("lb1 back (preempt): challenge through the VIP on lb1 after {back:?}");
    lab.transfer("after lb1 took the VIP back");

    // 2. The MASTER's balancer dies (SIGKILL): the track script takes the VIP away.
    let gap2 = lab.gap(1, || lab.balance[0].as_ref().unwrap().signal("KILL"));
    eprintln!("failover gap, MASTER vipcert balance killed: {gap2:?}");
    lab.transfer("after vipcert balance died on lb1");
    assert!(gap2 < Duration::from_secs(6), "gap {gap2:?}");

    // The balancer returns: the track script passes again and lb1 takes the VIP back.
    lab.start_balance(0);
    let back2 = lab.gap(0, || {});
    eprintln!("lb1 balancer back (preempt): VIP on lb1 after {back2:?}");
    lab.transfer("after lb1's balancer returned");

    // 3. The MASTER host drops off the segment (its port leaves the bridge): the BACKUP
    //    hears no adverts and takes over after keepalived's master-down timer.
    let sw = &lab.seg.switch;
    let gap3 = lab.gap_to(1, false, || {
        sw.ip(&["link", "set", "p-lb1", "nomaster"]);
    });
    eprintln!("failover gap, MASTER host cut off: {gap3:?}");
    lab.transfer("after lb1 was cut off");
    assert!(gap3 < Duration::from_secs(8), "gap {gap3:?}");
    // Back on the segment, the two masters hear each other and the higher priority stays.
    let back3 = lab.gap(0, || {
        sw.ip(&["link", "set", "p-lb1", "master", "br0"]);
    });
    eprintln!("lb1 back on the segment (preempt): VIP on lb1 alone after {back3:?}");
    // Gratuitous ARP after the split heals (rendered vrrp_higher_prio_send_advert and
    // vrrp_garp_lower_prio_repeat): without it the client keeps the BACKUP's MAC until its
    // ARP entry expires (8 s measured).
    assert!(
        back3 < Duration::from_secs(5),
        "split healed after {back3:?}"
    );
    lab.transfer("after lb1 rejoined the segment");
}

/// `preempt = false`: both hosts render `state BACKUP` + `nopreempt`. The MASTER's keepalived
/// stops, the VIP moves to lb2; lb1's keepalived returns with the higher priority and does
/// NOT take the VIP back (watched for 6 s, longer than the ~4 s after which a preempting lb1
/// took it in the test above), while challenges through the VIP keep answering; then lb2's
/// keepalived stops and the VIP goes back to lb1.
#[test]
fn vip_stays_on_the_new_holder_when_the_old_master_returns_with_nopreempt() {
    // Timed gaps: never beside a socket flood (see the test above).
    let _quiet = crate::common::quiet();
    let t_all = Instant::now();
    let Some(mut lab) = start_lab("preempt = false\n", false, |i, text| {
        assert!(
            text.contains("    state BACKUP\n") && text.contains("    nopreempt\n"),
            "lb{}: {text}",
            i + 1
        );
        let prio = if i == 0 {
            "priority 100"
        } else {
            "priority 90"
        };
        assert!(text.contains(prio), "lb{}: {text}", i + 1);
    }) else {
        return;
    };
    // Both start BACKUP: lb1, first up and higher, claims the VIP after the master-down timer.
    let first = lab.vip_on_lb1();
    eprintln!("nopreempt: lb1 claimed the VIP {first:?} after the wait began");

    // 1. lb1's keepalived stops: lb2 takes the VIP.
    let gap = lab.gap(1, || lab.keepalived[0].as_ref().unwrap().signal("TERM"));
    eprintln!("nopreempt: failover gap, lb1 keepalived stopped: {gap:?}");
    assert!(gap < Duration::from_secs(5), "gap {gap:?}");

    // 2. lb1's keepalived returns. It must come up as BACKUP (it hears lb2's adverts) and stay
    //    BACKUP: no second move, and challenges through the VIP keep answering.
    lab.restart_keepalived(0);
    let up = wait_until(
        "the returning lb1 keepalived enters BACKUP",
        Duration::from_secs(20),
        || {
            lab.keepalived[0]
                .as_ref()
                .unwrap()
                .log_text()
                .contains("Entering BACKUP STATE")
        },
    );
    let watch = Instant::now();
    let (mut probes, mut answered) = (0u32, 0u32);
    while watch.elapsed() < Duration::from_secs(6) {
        assert_eq!(
            lab.holder(),
            Some(1),
            "lb1 took the VIP back {:?} after entering BACKUP, with nopreempt\n{}",
            watch.elapsed(),
            lab.logs()
        );
        probes += 1;
        answered += u32::from(fetch(lab.seg.host(CLIENT.0)));
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "nopreempt: lb1 back as BACKUP after {up:?}; VIP stayed on lb2 for {:?}; {answered}/{probes} challenges through the VIP answered",
        watch.elapsed()
    );
    assert_eq!(
        answered,
        probes,
        "challenges through the VIP failed while the VIP stayed on lb2\n{}",
        lab.logs()
    );
    assert!(
        !lab.keepalived[0]
            .as_ref()
            .unwrap()
            .log_text()
            .contains("Entering MASTER STATE"),
        "lb1 was MASTER for a moment\n{}",
        lab.logs()
    );

    // 3. lb2's keepalived stops: the VIP goes back to lb1.
    let back = lab.gap(0, || lab.keepalived[1].as_ref().unwrap().signal("TERM"));
    eprintln!("nopreempt: failover gap, lb2 keepalived stopped: {back:?}");
    assert!(back < Duration::from_secs(5), "gap {back:?}");
    eprintln!("nopreempt: whole test {:?}", t_all.elapsed());
}

/// Whether anything on the segment answers ARP for `addr`, asked from `from` with arping
/// (Debian iputils-arping, which .ci/run installs): two requests, each answered. One
/// `arping -c 1` per request: `-c 2` sends its second request a second after the first
/// (whole seconds only), so a yes took a second.
fn arp_answers(from: &Netns, addr: &str) -> bool {
    crate::common::need("/usr/bin/arping", "iputils-arping");
    (0..2).all(|_| {
        from.cmd("arping")
            .args(["-q", "-c", "1", "-w", "2", "-I", "eth0", addr])
            .status()
            .unwrap()
            .success()
    })
}

/// Whether nothing on the segment answers ARP for `addr` from `from`: two requests, neither
/// answered (a node that answers only now and then is not silent).
fn arp_silent(from: &Netns, addr: &str) -> bool {
    crate::common::need("/usr/bin/arping", "iputils-arping");
    (0..2).all(|_| {
        !from
            .cmd("arping")
            .args(["-q", "-c", "1", "-w", "2", "-I", "eth0", addr])
            .status()
            .unwrap()
            .success()
    })
}

/// `key=value` lines by `[section]` of one file of `render node-vip` output (the text under
/// its `# /path` header line up to the next header).
fn ini_file(all: &str, path: &str) -> Vec<(String, String, String)> {
    let start = all
        .find(&format!("# {path}"))
        .unwrap_or_else(|| panic!("no {path} in:\n{all}"));
    let mut section = String::new();
    let mut out = Vec::new();
    for line in all[start..].lines().skip(1) {
        if line.starts_with("# /") {
            break;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            if !line.starts_with('#') {
                out.push((section.clone(), k.to_string(), v.to_string()));
            }
        }
    }
    out
}

fn ini_get<'a>(f: &'a [(String, String, String)], section: &str, key: &str) -> &'a str {
    f.iter()
        .find(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v.as_str())
        .unwrap_or_else(|| panic!("no [{section}] {key} in {f:?}"))
}

#[test]
fn node_vip_output_makes_a_node_take_vip_traffic_without_answering_arp() {
    let Some(mut seg) = segment(&[("nd", "198.18.0.11/24"), ("cl", "198.18.0.100/24")]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let shared = tmp.path().join("shared");
    let webroot = shared.join("webroot/.well-known/acme-challenge");
    std::fs::create_dir_all(&webroot).unwrap();
    std::fs::write(webroot.join(TOKEN), BODY).unwrap();
    let config = tmp.path().join("vipcert.toml");
    std::fs::write(&config, config_text(&shared, "")).unwrap();
    seg.host_mut("nd").set_etc("198.18.0.11", "");
    let (nd, cl) = (seg.host("nd"), seg.host("cl"));
    let _serve = Proc::spawn(
        nd.cmd(BIN)
            .arg("--config")
            .arg(&config)
            .args(["--node", "n1.ha.test", "serve"])
            .env("NO_COLOR", "1"),
        &tmp.path().join("serve.log"),
    );
    wait_until("serve on the node", Duration::from_secs(30), || {
        cl.sh("curl -sf -o /dev/null --max-time 1 http://198.18.0.11/.well-known/vipcert/health")
            .is_ok()
    });
    assert!(
        arp_answers(cl, "198.18.0.11"),
        "the node's own address must answer ARP"
    );

    // The check can fail: the VIP on lo without the ARP settings is answered (Linux answers
    // ARP for any local address by default); that is what DR must prevent.
    nd.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
    assert!(
        arp_answers(cl, VIP),
        "control: a bare VIP on lo should answer ARP"
    );
    nd.ip(&["addr", "del", &format!("{VIP}/32"), "dev", "lo"]);

    // Apply what `render node-vip` prints: the sysctl.d file, then the `ip` lines.
    let sysctl = render(nd, &config, &["node-vip", "--format", "sysctl"]);
    let file = tmp.path().join("90-vipcert-dr.conf");
    std::fs::write(&file, &sysctl).unwrap();
    nd.sh(&format!("sysctl -q -p {}", file.display())).unwrap();
    let lines = render(nd, &config, &["node-vip", "--format", "ip"]);
    for line in lines
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        nd.sh(line).unwrap();
    }
    assert!(nd.holds(VIP), "{lines}");
    assert!(
        arp_silent(cl, VIP),
        "the node answered ARP for the VIP after:\n{sysctl}\n{lines}"
    );
    assert!(
        arp_answers(cl, "198.18.0.11"),
        "the node's own address stopped answering ARP"
    );

    // A DR director sends VIP traffic to the node's MAC: the node accepts and answers it.
    let mac = nd.mac("eth0");
    cl.ip(&[
        "neigh",
        "replace",
        VIP,
        "lladdr",
        &mac,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    let got = cl
        .sh(&format!(
            "curl -sf --max-time 2 http://{VIP}/.well-known/acme-challenge/{TOKEN}"
        ))
        .unwrap_or_else(|e| panic!("the node refused traffic for the VIP: {e}"));
    assert_eq!(got, BODY);

    // networkd and NetworkManager cannot run in a namespace: check their files' content.
    let all = render(nd, &config, &["node-vip"]);
    let netdev = ini_file(&all, "/etc/systemd/network/50-vipcert-vip.netdev");
    let network = ini_file(&all, "/etc/systemd/network/50-vipcert-vip.network");
    let nm = ini_file(
        &all,
        "/etc/NetworkManager/system-connections/vipcert-vip.nmconnection",
    );
    let link = ini_get(&netdev, "NetDev", "Name");
    assert_eq!(ini_get(&netdev, "NetDev", "Kind"), "dummy");
    assert_eq!(ini_get(&network, "Match", "Name"), link);
    assert_eq!(ini_get(&network, "Network", "Address"), format!("{VIP}/32"));
    assert_eq!(ini_get(&nm, "connection", "type"), "dummy");
    assert_eq!(ini_get(&nm, "connection", "interface-name"), link);
    assert_eq!(ini_get(&nm, "ipv4", "method"), "manual");
    assert_eq!(ini_get(&nm, "ipv4", "address1"), format!("{VIP}/32"));
    assert!(all.contains("systemctl enable arptables"), "{all}");
    assert!(
        all.contains("net.ipv4.conf.all.arp_ignore = 1\nnet.ipv4.conf.all.arp_announce = 2\n"),
        "{all}"
    );
}

/// Every `render keepalived` variant passes `keepalived -t` on a host where its interface
/// exists (a namespace with eth0), and a broken copy does not.
#[test]
fn every_rendered_keepalived_variant_passes_keepalived_t() {
    let Some(seg) = segment(&[("lb1", "198.18.0.1/24")]) else {
        return;
    };
    let lb = seg.host("lb1");
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("vipcert.toml");
    let conf = tmp.path().join("keepalived.conf");
    let vrrp =
        "mode = \"vrrp\"\nunicast_peers = [\"198.18.0.1\", \"198.18.0.2\", \"198.18.0.3\"]\n";
    let mail = "notification_email = [\"grid-ops@example.org\", \"oncall@example.org\"]\nnotification_email_from = \"keepalived@example.org\"\nsmtp_server = \"198.18.0.25:25\"\n";
    for (keys, flags, want) in [
        ("", &[][..], "virtual_server"),
        (
            "lvs_method = \"NAT\"\nstate = \"BACKUP\"\n",
            &[][..],
            "lvs_method NAT",
        ),
        (
            mail,
            &["--state", "BACKUP", "--priority", "50"][..],
            "smtp_alert",
        ),
        (vrrp, &[][..], "state MASTER"),
        (
            &format!("{vrrp}preempt = false\n{mail}"),
            &[][..],
            "nopreempt",
        ),
        (vrrp, &["--unicast-src-ip", "198.18.0.3"][..], "priority 80"),
        (
            "mode = \"vrrp\"\n",
            &["--state", "BACKUP"][..],
            "track_script",
        ),
    ] {
        std::fs::write(&config, config_text(&tmp.path().join("shared"), keys)).unwrap();
        let mut args = vec!["keepalived"];
        args.extend_from_slice(flags);
        let text = render(lb, &config, &args);
        assert!(
            text.contains(want),
            "{keys} {flags:?}: no {want:?} in\n{text}"
        );
        std::fs::write(&conf, &text).unwrap();
        keepalived_t(lb, &conf)
            .unwrap_or_else(|e| panic!("keepalived -t refused ({keys} {flags:?}): {e}\n{text}"));
        let broken = text.replace("virtual_router_id", "virtual_routr_id");
        std::fs::write(&conf, broken).unwrap();
        assert!(
            keepalived_t(lb, &conf).is_err(),
            "keepalived -t accepted a broken file"
        );
    }
}
