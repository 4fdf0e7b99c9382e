//! Network namespaces a test makes for itself (needs root): named `vipcert-ha-<pid>-<tag>` so
//! that test runs of several worktrees never collide, joined by veth pairs to a bridge in a
//! "switch" namespace, with addresses that exist only inside them. Nothing is added to the
//! namespace the test runs in; every namespace and /etc/netns/<name> entry is removed when
//! its guard drops (and leftovers of dead test processes at the next start).
//!
//! Not here: what runs inside (the failover test), process guards (`Proc`, parent module).

use std::path::PathBuf;
use std::process::{Command, Output};

/// The prefix of every namespace this harness makes; `<pid>-` follows.
const PREFIX: &str = "vipcert-ha-";

/// Held while /etc/netns entries are made or removed: a test removing the (then empty)
/// /etc/netns must not race another test that is filling its own entry.
static ETC: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One named network namespace; deleted (with its /etc/netns entry) on drop.
pub struct Netns {
    pub name: String,
    etc: Option<PathBuf>,
}

fn ip(args: &[&str]) -> Result<Output, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Set when a test created /etc/netns itself, so that only then is it removed again.
static MADE_ETC_NETNS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Remove namespaces (and /etc/netns entries) left by test processes that no longer run.
fn sweep_dead() {
    let Ok(out) = ip(&["netns", "list"]) else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "delete", name]);
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{name}"));
        }
    }
}

impl Netns {
    /// Make `vipcert-ha-<pid>-<n>-<tag>` with lo up. Err when namespaces cannot be made here
    /// (not root, no CAP_SYS_ADMIN): the caller skips with that message.
    pub fn new(tag: &str) -> Result<Netns, String> {
        sweep_dead();
        // Tests of one binary run in parallel threads of one process: a counter keeps apart.
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}-{tag}", std::process::id());
        ip(&["netns", "add", &name])?;
        let ns = Netns { name, etc: None };
        ns.ip(&["link", "set", "lo", "up"]);
        Ok(ns)
    }

    /// `ip -n <name> args…`; panics with ip's message on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        match ip(&a) {
            Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
            Err(e) => panic!("{e}"),
        }
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`).
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Run `sh -c line` inside; Ok(stdout) on exit 0.
    pub fn sh(&self, line: &str) -> Result<String, String> {
        let out = self
            .cmd("sh")
            .args(["-c", line])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{line}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// /etc/netns/<name>/hosts and resolv.conf, which `ip netns exec` mounts over /etc's:
    /// the names of the lab, the machine's host name on `me` (GridFTP looks its own name up),
    /// and a resolver that fails at once (no DNS is reachable inside).
    pub fn set_etc(&mut self, me: &str, hosts: &str) {
        let uname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let _g = ETC.lock().unwrap_or_else(|e| e.into_inner());
        let dir = PathBuf::from(format!("/etc/netns/{}", self.name));
        if !std::path::Path::new("/etc/netns").exists() {
            MADE_ETC_NETNS.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        std::fs::create_dir_all(&dir).unwrap();
        self.etc = Some(dir.clone());
        std::fs::write(
            dir.join("hosts"),
            format!("127.0.0.1 localhost\n{me} {}\n{hosts}", uname.trim()),
        )
        .unwrap();
        std::fs::write(
            dir.join("resolv.conf"),
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        )
        .unwrap();
    }

    /// Whether `addr` (an IP) is on one of this namespace's interfaces.
    pub fn holds(&self, addr: &str) -> bool {
        self.ip(&["-o", "addr", "show"])
            .split_whitespace()
            .any(|w| w.split('/').next() == Some(addr))
    }

    /// The MAC address of `dev`.
    pub fn mac(&self, dev: &str) -> String {
        let out = self.ip(&["-o", "link", "show", dev]);
        let mut w = out.split_whitespace();
        w.find(|x| *x == "link/ether");
        w.next().expect("link/ether").to_string()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "delete", &self.name]);
        if let Some(d) = self.etc.take() {
            let _g = ETC.lock().unwrap_or_else(|e| e.into_inner());
            let _ = std::fs::remove_dir_all(d);
            // /etc/netns itself goes only if a test made it (and nothing else uses it now): the
            // machine's own, even empty, is not the tests' to remove.
            if MADE_ETC_NETNS.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::remove_dir("/etc/netns");
            }
        }
    }
}

/// A layer-2 segment: a bridge in its own namespace, and hosts joined to it by veth pairs
/// (`eth0` inside each host). Drop order: hosts, then the switch (fields in that order).
pub struct Segment {
    pub hosts: Vec<(String, Netns)>,
    pub switch: Netns,
}

impl Segment {
    /// A switch and one namespace per `(tag, cidr)`, the address on its `eth0`.
    pub fn new(hosts: &[(&str, &str)]) -> Result<Segment, String> {
        let switch = Netns::new("sw")?;
        switch.ip(&["link", "add", "br0", "type", "bridge"]);
        switch.ip(&["link", "set", "br0", "up"]);
        let mut seg = Segment {
            hosts: Vec::new(),
            switch,
        };
        for (tag, cidr) in hosts {
            let h = Netns::new(tag)?;
            let port = format!("p-{tag}");
            seg.switch.ip(&[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &h.name,
            ]);
            seg.switch
                .ip(&["link", "set", &port, "master", "br0", "up"]);
            h.ip(&["addr", "add", cidr, "dev", "eth0"]);
            h.ip(&["link", "set", "eth0", "up"]);
            seg.hosts.push((tag.to_string(), h));
        }
        Ok(seg)
    }

    pub fn host(&self, tag: &str) -> &Netns {
        &self
            .hosts
            .iter()
            .find(|(t, _)| t == tag)
            .expect("no such host")
            .1
    }

    pub fn host_mut(&mut self, tag: &str) -> &mut Netns {
        &mut self
            .hosts
            .iter_mut()
            .find(|(t, _)| t == tag)
            .expect("no such host")
            .1
    }
}
