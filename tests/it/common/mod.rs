//! Test support of the integration-test binary (tests/it): the process guard [`Proc`], waits
//! ([`wait_listening`], [`wait_for`], [`poll_until`], [`next_second_after`]), the lock of the
//! socket-hungry tests ([`many_fds`], and [`quiet`] for the timed ones), a raw HTTP client
//! and an Output's [`text`]. One copy each; the parts that own more live beside it:
//! - `net`: the one table of loopback address blocks, one /24 per test that binds or names one;
//! - `pebble`: a real Pebble CA + challtestsrv and a loopback Lab of `vipcert serve` nodes;
//! - `pki`: the rcgen root → intermediate → leaf builder;
//! - `site`: a config + real shared store + per-node roots, without an ACME CA;
//! - `bind`: a real BIND `named` (primary with a TSIG key, secondaries) as a test's DNS;
//! - `balancer`: `vipcert balance` as a child, echo backends and clients;
//! - `netns`: network namespaces and a bridged segment made by the test (root only);
//! - `nfs`: per-node caching bindfs views of one shared directory.
//!
//! Not here: anything a single test module needs alone.

pub mod balancer;
pub mod bind;
pub mod https_stub;
pub mod net;
pub mod netns;
pub mod nfs;
pub mod pebble;
pub mod pki;
pub mod site;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const BIN: &str = env!("CARGO_BIN_EXE_vipcert");

/// How long a wait for a process to come up may take before the test fails. Generous: a
/// loaded 2-core CI machine starts pebble or globus-gridftp-server slowly.
pub const START_BOUND: Duration = Duration::from_secs(30);

/// A child process killed (and reaped) when dropped, so a failing test leaves nothing behind.
pub struct Proc {
    pub child: Child,
    pub name: String,
    /// Where its stdout and stderr go, when [`Proc::spawn`] started it.
    pub log: Option<PathBuf>,
}

impl Proc {
    /// Guard an already spawned child.
    pub fn new(child: Child, name: impl Into<String>) -> Proc {
        Proc {
            child,
            name: name.into(),
            log: None,
        }
    }

    /// Spawn `cmd` (its stdio as the caller set it) and guard it as `name`, not waiting for
    /// anything: several servers can then start at once, each waited for after.
    pub fn start(cmd: &mut Command, name: &str) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc::new(child, name)
    }

    /// Spawn `cmd` with stdin closed and stdout + stderr into `log`.
    pub fn spawn(cmd: &mut Command, log: &Path) -> Proc {
        let f = std::fs::File::create(log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc {
            child,
            name: cmd.get_program().to_string_lossy().into_owned(),
            log: Some(log.to_path_buf()),
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Send signal `sig` (a name such as "HUP") with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {} failed", self.name);
    }

    /// The log so far ("" when there is none).
    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|l| std::fs::read_to_string(l).ok())
            .unwrap_or_default()
    }

    /// Wait (bounded) for the process to exit; its status.
    pub fn wait_exit(&mut self, bound: Duration) -> Option<ExitStatus> {
        let t = Instant::now();
        while t.elapsed() < bound {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawn `cmd` (its stdio as the caller set it), guard it as `name`, and return once it
/// accepts connections at `addr`: the start of every server a test talks to.
pub fn start_listening(cmd: &mut Command, addr: SocketAddr, name: &str) -> Proc {
    let p = Proc::start(cmd, name);
    wait_listening(addr, name);
    p
}

/// `vipcert serve` as `node` of `site` on `addr`, installing under the node's root (output
/// discarded), listening when this returns.
pub fn serve_node(site: &site::Site, node: &str, addr: SocketAddr) -> Proc {
    start_listening(
        Command::new(BIN)
            .arg("--config")
            .arg(&site.config)
            .args([
                "serve",
                "--node",
                node,
                "--listen",
                &addr.to_string(),
                "--root",
            ])
            .arg(site.root_of(node))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        addr,
        &format!("serve {node}"),
    )
}

/// The floods' lock: written by [`many_fds`], read by [`quiet`].
static FLOODS: RwLock<()> = RwLock::new(());

/// Held by each test that keeps thousands of sockets open in this process (the balancer's
/// 8,000 connections, the node server's 5,000 idle ones): every test shares one RLIMIT_NOFILE
/// now, and the hard limit may be 20,000, less than both together. Poison is ignored: a failed
/// holder has closed its sockets by the time the next one gets the lock.
pub fn many_fds() -> RwLockWriteGuard<'static, ()> {
    FLOODS.write().unwrap_or_else(|e| e.into_inner())
}

/// Held by the failover tests and the hung-share test, so that their timed gaps never run
/// beside a [`many_fds`] flood. Shared: they may run beside each other (each in namespaces of its own, waiting on
/// keepalived's timers, not on the CPU).
pub fn quiet() -> RwLockReadGuard<'static, ()> {
    FLOODS.read().unwrap_or_else(|e| e.into_inner())
}

/// This thread's CPU priority lowered to nice 10 until dropped; threads and processes it
/// starts meanwhile inherit it (Linux keeps a nice value per thread, copied at clone). For a
/// test that keeps the CPU busy for its own sake (the pair reader loop: an installer started
/// again and again, a reader spinning beside it), so that the test beside it, timed in
/// milliseconds, gets a core first when both want one. What the test does and asserts is
/// unchanged: only who waits for the CPU.
pub struct Background(i32);

pub fn background() -> Background {
    let was = rustix::process::getpriority_process(None).unwrap_or(0);
    let _ = rustix::process::setpriority_process(None, 10);
    Background(was)
}

impl Drop for Background {
    fn drop(&mut self) {
        // As root (the suite's tests run as root) a thread may raise its priority again.
        let _ = rustix::process::setpriority_process(None, self.0);
    }
}

/// A blocking TCP connection to `to` from the local address `from` (127/8 is all local), so
/// that a test can be many clients. Close-on-exec, as std's and tokio's sockets are: a process
/// another test starts meanwhile must not inherit a flood's thousands of sockets (it would
/// start with its open-file limit nearly used up, and keep them open after the test closed
/// them).
pub fn connect_from(from: std::net::IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    connect_from_port(SocketAddr::new(from, 0), to)
}

/// As [`connect_from`], from the port `from` names (0: the kernel picks one). For floods of
/// tens of thousands of sockets from one address: the kernel looks for a free port for
/// `bind(addr, 0)` in the even half of the ephemeral range first, and once about 14,000 of
/// those are taken each bind scans them all (2,500 more sockets took 7-22 s).
pub fn connect_from_port(from: SocketAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let family = if to.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    rustix::net::bind(&fd, &from)?;
    rustix::net::connect(&fd, &to)?;
    Ok(TcpStream::from(fd))
}

/// Wait until something accepts TCP connections at `addr` (bounded by [`START_BOUND`]).
pub fn wait_listening(addr: SocketAddr, what: &str) {
    let start = Instant::now();
    while start.elapsed() < START_BOUND {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not start listening on {addr} within {START_BOUND:?}");
}

/// Poll `f` every 10 ms until it holds (at most 30 s).
pub fn wait_for(mut f: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out: {what}");
}

/// Bounded polling in place of a fixed sleep: `f` every 20 ms until its value is `settled`
/// (returned at once), or, once `deadline` has passed, the value of one last call: what a test
/// that slept until `deadline` would have seen. The caller asserts on it as before.
pub fn poll_until<T>(
    deadline: Instant,
    mut f: impl FnMut() -> T,
    settled: impl Fn(&T) -> bool,
) -> T {
    loop {
        let last = Instant::now() >= deadline;
        let v = f();
        if last || settled(&v) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sleep until the wall clock is in a later whole second than `t`, and 20 ms into it (a file
/// system stamps with a coarser clock): a file changed from then on has a later modification
/// time in whole seconds than one changed before `t`. For watchers that compare whole
/// seconds, where a test slept 1.1 s after its last change.
pub fn next_second_after(t: SystemTime) {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let target = UNIX_EPOCH + Duration::from_secs(secs + 1) + Duration::from_millis(20);
    while let Ok(left) = target.duration_since(SystemTime::now()) {
        std::thread::sleep(left);
    }
}

/// Fail early, with the package to install, when a test's external program is missing.
pub fn need(bin: &str, package: &str) {
    assert!(
        Path::new(bin).exists(),
        "{bin} is missing: install the Debian package (apt-get install -y {package}); .ci/run does this"
    );
}

/// Send a raw HTTP request and read the whole response (Connection: close).
pub fn raw_http(addr: SocketAddr, req: &str) -> String {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Text of an Output's stdout+stderr.
/// Run `cmd` to its end with stdout and stderr captured, killed after `bound`: Ok on exit 0,
/// else its status and output (for clients like globus-url-copy that may hang).
pub fn run_bounded(cmd: &mut Command, bound: Duration) -> Result<(), String> {
    let name = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return if status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{name}: {status}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ))
            };
        }
        if t.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{name} hung for {bound:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
