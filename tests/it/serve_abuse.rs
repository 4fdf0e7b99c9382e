//! `vipcert serve` under abuse, as an attacker on port 80 would try it (issue 9): a status
//! flood must not slow the challenge route, half-closed clients get their answer, Host is
//! exactly one, hard links are not served, and idle floods neither lock other clients out
//! nor cost more than a few KB each.
//!
//! Addresses: one `Block` per test (node on .11, the VIP .10 in configs only, clients from
//! .101).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::net::Block;
use crate::common::{connect_from, connect_from_port, many_fds, poll_until, raw_http};
use crate::serve::Node;

const TOKEN: &str = "abuse_Token-1";
const KEYAUTH: &str = "abuse_Token-1.thumbprint";

/// A node server (see `serve::start_with`) with a real certificate installed under its root
/// (so that a status document costs what it costs in production: parse the cert, match the
/// key) and one challenge file.
fn start(block: Block, serve_extra: &str) -> Node {
    start_nofile(block, serve_extra, None)
}

/// `start`, with the server's open-file limit set to `nofile` when given.
fn start_nofile(block: Block, serve_extra: &str, nofile: Option<u64>) -> Node {
    let n = crate::serve::start_with_nofile(block, serve_extra, nofile, |dir| {
        let gs = dir.join("root/etc/grid-security/gridftp");
        std::fs::create_dir_all(&gs).unwrap();
        let ca = crate::common::pki::Ca::new("abuse");
        let leaf = ca.leaf(&crate::common::pki::Spec::names(&[
            "gridftp.example.org",
            "dtn1.example.org",
        ]));
        std::fs::write(gs.join("gridftp-hostcert.pem"), leaf.fullchain()).unwrap();
        std::fs::write(gs.join("gridftp-hostkey.pem"), &leaf.key_pem).unwrap();
    });
    std::fs::write(n.webroot().join(TOKEN), KEYAUTH).unwrap();
    n
}

trait NodeExt {
    fn webroot(&self) -> PathBuf;
    fn rss_kb(&self) -> u64;
}

impl NodeExt for Node {
    fn webroot(&self) -> PathBuf {
        self.shared.join("webroot/.well-known/acme-challenge")
    }

    /// Resident memory of the server process, from /proc.
    fn rss_kb(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.proc.child.id())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }
}

fn code(rsp: &str) -> u16 {
    rsp.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// One challenge GET on a new connection, timed from connect to the last byte.
fn timed_challenge(from: IpAddr, node: SocketAddr) -> (Duration, String) {
    let t = Instant::now();
    let mut s = connect_from(from, node).unwrap();
    let connected = t.elapsed();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(
        format!("GET /.well-known/acme-challenge/{TOKEN} HTTP/1.1\r\nHost: gridftp.example.org\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    if t.elapsed() > Duration::from_millis(10) {
        eprintln!(
            "slow fetch: connect {connected:?}, answer {:?}",
            t.elapsed()
        );
    }
    (t.elapsed(), out)
}

/// Read one HTTP response (Content-Length framed) from `s`; false when the peer closed.
pub(crate) async fn read_response(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> bool {
    use tokio::io::AsyncReadExt;
    buf.clear();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return true;
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// One keep-alive flood connection from `from`: asks for the status as soon as the last one
/// is answered, and reconnects when the server closes it (as an attacker would). `hammering`
/// counts flood connections open with a request sent.
async fn hammer_status(
    from: IpAddr,
    node: SocketAddr,
    hammering: std::sync::Arc<std::sync::atomic::AtomicI64>,
    answered: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: tokio_util::sync::CancellationToken,
) {
    use std::sync::atomic::Ordering::Relaxed;
    use tokio::io::AsyncWriteExt;
    let mut buf = Vec::with_capacity(8192);
    while !stop.is_cancelled() {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(from, 0)).unwrap();
        let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_secs(5), sock.connect(node)).await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        hammering.fetch_add(1, Relaxed);
        loop {
            if s.write_all(b"GET /.well-known/vipcert/status HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .is_err()
            {
                break;
            }
            tokio::select! {
                r = read_response(&mut s, &mut buf) => if !r { break },
                _ = stop.cancelled() => break,
            }
            answered.fetch_add(1, Relaxed);
        }
        hammering.fetch_sub(1, Relaxed);
    }
}

/// One status GET from `from` on a new connection (what `check --fleet` does), timed.
fn timed_status(from: IpAddr, node: SocketAddr) -> (Duration, String) {
    let t = Instant::now();
    let mut s = connect_from(from, node).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(
        b"GET /.well-known/vipcert/status HTTP/1.1\r\nHost: dtn1.example.org\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    (t.elapsed(), out)
}

/// Issue 9 item 1. The node server's own routes are rationed (`[serve] monitor_rate`): the
/// flood's requests over their share are parked, not answered at full rate, so thousands
/// of status connections never stand in the run queue ahead of the CA's challenge fetch.
/// The flood is therefore measured by what it does (connections open with a request
/// outstanding), not by how much the server answers it.
#[test]
fn challenge_p99_under_10ms_while_5000_connections_hammer_status() {
    use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
    use std::sync::Arc;
    let _fds = many_fds();
    vipcert::limits::raise_nofile();
    let b = Block::ServeStatusFlood;
    let n = start(b, "");
    let node = n.addr;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let hammering = Arc::new(AtomicI64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    // 5,100 connections from 25 addresses (204 each: under the per-address cap, as a
    // distributed flood would be), each asking for the status as fast as it is answered;
    // 100 over 5,000 so that a connection the server just closed and its client is
    // reconnecting does not take the flood under 5,000.
    const FLOOD: u32 = 5_100;
    rt.block_on(async {
        for i in 0..FLOOD {
            let from = b.ip(101 + (i / 204) as u8);
            let (h, a, stop) = (hammering.clone(), answered.clone(), stop.clone());
            tokio::spawn(hammer_status(from, node, h, a, stop));
        }
        let t = Instant::now();
        while hammering.load(Relaxed) < i64::from(FLOOD) && t.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert_eq!(
        hammering.load(Relaxed),
        i64::from(FLOOD),
        "flood connections established"
    );
    std::thread::sleep(Duration::from_secs(1));
    let before = answered.load(Relaxed);
    let t0 = Instant::now();
    let mut lat = Vec::new();
    let mut least_hammering = i64::MAX;
    let mut status_worst = Duration::ZERO;
    // A monitor (`check --fleet`) asks for the status from its own address once a second,
    // less often than its fair share (1 in 0.26 s here): beside the flood it is answered
    // at once each time.
    let monitor = |status_worst: &mut Duration| {
        let (d, rsp) = timed_status(b.ip(3), node);
        assert!(
            rsp.starts_with("HTTP/1.1 200") && rsp.contains("\"node\""),
            "status for a monitor during the flood: {rsp}"
        );
        *status_worst = (*status_worst).max(d);
    };
    monitor(&mut status_worst);
    for _ in 0..200 {
        let (d, rsp) = timed_challenge(b.ip(2), node);
        assert!(
            rsp.starts_with("HTTP/1.1 200") && rsp.ends_with(KEYAUTH),
            "{rsp}"
        );
        lat.push(d);
        least_hammering = least_hammering.min(hammering.load(Relaxed));
        if t0.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    let flood_answered = answered.load(Relaxed) - before;
    let secs = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1).saturating_sub(t0.elapsed()));
    monitor(&mut status_worst);
    least_hammering = least_hammering.min(hammering.load(Relaxed));
    stop.cancel();
    rt.shutdown_timeout(Duration::from_secs(2));
    lat.sort();
    let p99 = lat[lat.len() * 99 / 100 - 1];
    let p50 = lat[lat.len() / 2];
    eprintln!(
        "challenge fetches: {} p50 {p50:?} p99 {p99:?} in {secs:.1} s; flood connections with a \
         request outstanding: at least {least_hammering}; flood answers meanwhile: \
         {flood_answered} ({:.0}/s); slowest monitor status: {status_worst:?}",
        lat.len(),
        flood_answered as f64 / secs
    );
    assert_eq!(lat.len(), 200, "200 challenge fetches within 60 s");
    assert!(
        least_hammering >= 5_000,
        "the flood was real: at least 5,000 connections asking throughout, saw {least_hammering}"
    );
    assert!(
        status_worst < Duration::from_millis(100),
        "a monitor's status took {status_worst:?} during the flood"
    );
    assert!(
        p99 < Duration::from_millis(10),
        "challenge p99 {p99:?} (p50 {p50:?}) under a 5,000-connection status flood"
    );
}

#[test]
fn half_closed_clients_get_their_answer() {
    let n = start(Block::ServeHalfClose, "");
    for i in 0..20 {
        let mut s = TcpStream::connect_timeout(&n.addr, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(
            format!("GET /.well-known/acme-challenge/{TOKEN} HTTP/1.1\r\nHost: gridftp.example.org\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(
            out.starts_with("HTTP/1.1 200") && out.ends_with(KEYAUTH),
            "attempt {i}: half-closed client got {out:?}"
        );
    }
}

#[test]
fn http11_needs_exactly_one_host() {
    let n = start(Block::ServeHost, "");
    let path = format!("/.well-known/acme-challenge/{TOKEN}");
    let none = raw_http(
        n.addr,
        &format!("GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(code(&none), 400, "no Host: {none}");
    let two = raw_http(
        n.addr,
        &format!("GET {path} HTTP/1.1\r\nHost: a.example.org\r\nHost: b.example.org\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(code(&two), 400, "two Host: {two}");
    assert!(!two.contains(KEYAUTH));
    let one = raw_http(
        n.addr,
        &format!("GET {path} HTTP/1.1\r\nHost: gridftp.example.org\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(code(&one), 200, "{one}");
    // HTTP/1.0 has no Host requirement (old probes), but two are still refused.
    let old = raw_http(n.addr, &format!("GET {path} HTTP/1.0\r\n\r\n"));
    assert_eq!(code(&old), 200, "{old}");
    let old2 = raw_http(
        n.addr,
        &format!("GET {path} HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"),
    );
    assert_eq!(code(&old2), 400, "{old2}");
}

#[test]
fn hard_links_are_not_served() {
    let n = start(Block::ServeHardLink, "");
    // A secret on the same filesystem, outside the webroot, hard-linked into it.
    let secret = n.tmp.path().join("shadow");
    std::fs::write(&secret, "root:SECRET-HASH:19000::::::\n").unwrap();
    std::fs::hard_link(&secret, n.webroot().join("linked")).unwrap();
    let rsp = raw_http(
        n.addr,
        "GET /.well-known/acme-challenge/linked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code(&rsp), 404, "{rsp}");
    assert!(!rsp.contains("SECRET"), "{rsp}");
    let rsp = raw_http(
        n.addr,
        &format!("GET /.well-known/vipcert/challenges/{TOKEN},linked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    );
    assert!(
        rsp.ends_with(&format!("+{KEYAUTH}\n-\n")),
        "batch route: {rsp}"
    );
    // Once the extra link is gone the file is an ordinary single-link file again.
    std::fs::remove_file(&secret).unwrap();
    let rsp = raw_http(
        n.addr,
        "GET /.well-known/acme-challenge/linked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code(&rsp), 200, "{rsp}");
}

#[test]
fn idle_flood_from_one_address_does_not_lock_out_another() {
    let _fds = many_fds();
    vipcert::limits::raise_nofile();
    let b = Block::ServeIdleFlood;
    // The lab's setting: 16,384 descriptors, all of which one address could fill before the
    // per-address cap (accept then failed and new clients waited for idle ones to time out).
    let n = start_nofile(b, "", Some(16_384));
    let from = b.ip(101);
    let mut idle = Vec::with_capacity(16_500);
    // Each from a port of its own, counted up from 32,768 past any still in use (see
    // `connect_from_port`: the kernel's own choice slows down past about 14,000).
    let mut port = 32_768;
    for i in 0..16_500 {
        loop {
            match connect_from_port(SocketAddr::new(from, port), n.addr) {
                Ok(s) => break idle.push(s),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => port += 1,
                Err(e) => panic!("idle connection {i} (from port {port}): {e}"),
            }
        }
        port += 1;
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let (d, rsp) = timed_challenge(b.ip(102), n.addr);
        assert!(rsp.ends_with(KEYAUTH), "{rsp}");
        worst = worst.max(d);
    }
    eprintln!("slowest of 20 fetches beside 16,500 idle sockets from one address: {worst:?}");
    assert!(worst < Duration::from_millis(100), "{worst:?}");
    drop(idle);
}

/// A unit's LimitNOFILE below `max_connections` (here 2,048 against the default 16,384):
/// idle sockets from many addresses, each under its per-address cap, use up every
/// descriptor unless the budget fits the limit. Then `accept` fails, no idle connection is
/// ever evicted, and a new client (the CA) waits in the backlog until the idle ones time out.
#[test]
fn idle_flood_beyond_the_open_file_limit_does_not_lock_out_another_client() {
    let _fds = many_fds();
    vipcert::limits::raise_nofile();
    let b = Block::ServeIdleNofile;
    let n = start_nofile(b, "", Some(2048));
    // 2,400 idle sockets from 12 addresses, 200 each.
    let mut idle = Vec::with_capacity(2400);
    for i in 0..2400u32 {
        match connect_from(b.ip(101 + (i / 200) as u8), n.addr) {
            Ok(s) => idle.push(s),
            Err(e) => panic!("idle connection {i}: {e}"),
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let (d, rsp) = timed_challenge(b.ip(120), n.addr);
        assert!(rsp.ends_with(KEYAUTH), "{rsp}");
        worst = worst.max(d);
    }
    eprintln!("slowest of 20 fetches beside 2,400 idle sockets, open-file limit 2,048: {worst:?}");
    assert!(worst < Duration::from_millis(100), "{worst:?}");
    drop(idle);
}

#[test]
fn idle_connections_cost_at_most_4kb_and_are_given_back() {
    let _fds = many_fds();
    vipcert::limits::raise_nofile();
    let b = Block::ServeIdleMemory;
    let n = start(b, "");
    // Warm up: the first requests allocate the runtime's and hyper's one-time state.
    for _ in 0..50 {
        timed_challenge(b.ip(2), n.addr);
    }
    std::thread::sleep(Duration::from_millis(300));
    let base = n.rss_kb();
    // 16,000 idle sockets from 80 addresses (200 each, under the per-address cap).
    let mut idle = Vec::with_capacity(16_000);
    for i in 0..16_000u32 {
        let from = b.ip(101 + (i / 200) as u8);
        idle.push(connect_from(from, n.addr).unwrap());
    }
    std::thread::sleep(Duration::from_secs(1));
    let held = n.rss_kb();
    // They are held, not dropped: the last one still gets an answer.
    let s = idle.last_mut().unwrap();
    s.write_all(
        format!("GET /.well-known/acme-challenge/{TOKEN} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.ends_with(KEYAUTH), "{out}");
    drop(idle);
    // The server trims its heap once a second after the flood is over; on a loaded 2-core
    // machine closing 16,000 connections can take a few seconds, so wait up to 10 s.
    let given_back =
        |after: u64| after.saturating_sub(base) * 4 <= held.saturating_sub(base).max(4096);
    let closed = std::time::Instant::now();
    let mut after = n.rss_kb();
    while !given_back(after) && closed.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(250));
        after = n.rss_kb();
    }
    let per_conn = (held.saturating_sub(base)) * 1024 / 16_000;
    eprintln!(
        "RSS {base} kB → {held} kB with 16,000 idle ({per_conn} B each) → {after} kB {:?} after close",
        closed.elapsed()
    );
    assert!(per_conn <= 4096, "{per_conn} bytes per idle connection");
    assert!(
        given_back(after),
        "memory not given back within 10 s: {base} → {held} → {after} kB"
    );
}

/// The server closed `s`: end of stream or a reset within 5 s. A read that times out means the
/// connection is still open.
fn closed_by_server(s: &mut std::net::TcpStream) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset};
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    match s.read(&mut [0u8; 1]) {
        Ok(0) => true,
        Err(e) => matches!(e.kind(), ConnectionReset | ConnectionAborted),
        Ok(_) => false,
    }
}

#[test]
fn a_full_budget_closes_the_oldest_idle_connection_for_a_new_client() {
    let b = Block::ServeBudget;
    let n = start(b, "max_connections = 64\nmax_connections_per_address = 64");
    let mut idle = Vec::new();
    for _ in 0..64 {
        idle.push(connect_from(b.ip(101), n.addr).unwrap());
        // Admission order is idle order: keep it deterministic.
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(300));
    // One more from the same address is over its cap: closed at once.
    let mut over = connect_from(b.ip(101), n.addr).unwrap();
    over.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(
        closed_by_server(&mut over),
        "65th connection from one address is closed"
    );
    // A client from another address is answered: the oldest idle connection made room.
    let (d, rsp) = timed_challenge(b.ip(102), n.addr);
    assert!(rsp.ends_with(KEYAUTH), "{rsp}");
    assert!(d < Duration::from_millis(100), "{d:?}");
    idle[0]
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(
        closed_by_server(&mut idle[0]),
        "the oldest idle connection was closed"
    );
    // The newest idle one is still served.
    let last = idle.last_mut().unwrap();
    last.write_all(
        format!("GET /.well-known/acme-challenge/{TOKEN} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    last.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = String::new();
    let _ = last.read_to_string(&mut out);
    assert!(out.ends_with(KEYAUTH), "{out}");
}

/// `[serve] monitor_rate` / `monitor_wait`: an address asking for the status faster than its
/// share waits its turn, and past `monitor_wait` its connection is closed unanswered; the
/// same address's health check (another route) and another address's status request (its
/// own share) are answered at once meanwhile, and the challenge route is never held back.
/// The balancer's health checks share their address with every client it proxies: a
/// health flood through the VIP must not park them past their timeout (that would take
/// every node out of the balancer). Health is never rationed: 500 requests on one
/// keep-alive connection from one address, at a monitor_rate of 1, are all answered at once.
#[test]
fn health_is_never_parked_however_often_one_address_asks() {
    let b = Block::ServeHealthFlood;
    let n = start(b, "monitor_rate = 1\nmonitor_wait = \"400ms\"");
    let mut s = connect_from(b.ip(101), n.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = "GET /.well-known/vipcert/health HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut reader = std::io::BufReader::new(s.try_clone().unwrap());
    let t = Instant::now();
    let mut worst = Duration::ZERO;
    for i in 0..500 {
        let one = Instant::now();
        s.write_all(req.as_bytes()).unwrap();
        // Status line, headers, then the 3-byte body "ok\n".
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        assert!(line.starts_with("HTTP/1.1 200"), "request {i}: {line:?}");
        loop {
            line.clear();
            std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
            if line == "\r\n" {
                break;
            }
        }
        let mut body = [0u8; 3];
        reader.read_exact(&mut body).unwrap();
        assert_eq!(&body, b"ok\n");
        worst = worst.max(one.elapsed());
    }
    eprintln!(
        "500 health checks on one connection: {:?}, slowest {worst:?}",
        t.elapsed()
    );
    assert!(worst < Duration::from_millis(200), "{worst:?}");
}

#[test]
fn a_request_over_its_share_is_parked_then_closed_and_nobody_else_waits() {
    let b = Block::ServeRations;
    let n = start(b, "monitor_rate = 1\nmonitor_wait = \"400ms\"");
    let ask = |from: IpAddr, path: &str| {
        let mut s = connect_from(from, n.addr).unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
        s
    };
    let answer = |mut s: TcpStream| {
        let t = Instant::now();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        (t.elapsed(), out)
    };
    let status = "/.well-known/vipcert/status";
    // 1/s for one address, with a second of it banked (MONITOR_BURST): two at once; the
    // next one's turn is 1 s away, past the 400 ms bound: held 200-400 ms, then closed
    // without an answer.
    for _ in 0..2 {
        let (d, first) = answer(ask(b.ip(101), status));
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        assert!(d < Duration::from_millis(200), "{d:?}");
    }
    let over = ask(b.ip(101), status);
    let sent = Instant::now();
    // Meanwhile nobody else waits.
    for (from, path) in [
        (b.ip(101), "/.well-known/vipcert/health".to_string()),
        (b.ip(102), status.to_string()),
        (b.ip(101), format!("/.well-known/acme-challenge/{TOKEN}")),
        (b.ip(101), format!("/.well-known/acme-challenge/{TOKEN}")),
    ] {
        let (d, rsp) = answer(ask(from, &path));
        assert!(rsp.starts_with("HTTP/1.1 200"), "{path} from {from}: {rsp}");
        assert!(
            d < Duration::from_millis(200),
            "{path} from {from} took {d:?}"
        );
    }
    let (_, rsp) = answer(over);
    let held = sent.elapsed();
    assert_eq!(rsp, "", "over its share: closed unanswered");
    assert!(
        held >= Duration::from_millis(200) && held < Duration::from_secs(2),
        "held {held:?} before being closed (half to all of monitor_wait)"
    );
    // A second later the address's turn has come again.
    std::thread::sleep(Duration::from_millis(1100));
    let (_, again) = answer(ask(b.ip(101), status));
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
}

/// RFC 9112 section 3.2: a Host field with an invalid value is a 400, like a missing or
/// repeated one; the same rule for the authority of an absolute-form target. Which values
/// are invalid is nginx's rule (empty once the port and a trailing dot are gone, `..`, `/`,
/// a control character or space); everything nginx serves is served (port, trailing dot,
/// upper case, IPv6 literal), so no CA or probe that nginx answers is refused.
#[test]
fn an_invalid_host_is_400_as_in_nginx() {
    let n = start(Block::AtkHost, "");
    let path = format!("/.well-known/acme-challenge/{TOKEN}");
    let get = |target: &str, host: &str, version: &str| {
        raw_http(
            n.addr,
            &format!("GET {target} HTTP/{version}\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
    };
    for host in [
        "gridftp.example.org",
        "gridftp.example.org:80",
        "gridftp.example.org.",
        "GRIDFTP.EXAMPLE.ORG",
        "[::1]:80",
        "127.0.0.1",
        "a_b.example.org",
    ] {
        let rsp = get(&path, host, "1.1");
        assert_eq!(code(&rsp), 200, "Host: {host}: {rsp}");
        assert!(rsp.ends_with(KEYAUTH), "Host: {host}: {rsp}");
    }
    for host in ["", ":80", ".", "a/b", "a..b", "..", "a b", "a\tb", "[a..b]"] {
        for version in ["1.1", "1.0"] {
            let rsp = get(&path, host, version);
            assert_eq!(code(&rsp), 400, "HTTP/{version} Host: {host:?}: {rsp}");
            assert!(!rsp.contains(KEYAUTH), "{rsp}");
        }
    }
    // The authority of an absolute-form target is held to the same rule; the Host field
    // beside it still has to be valid.
    let abs = |authority: &str| format!("http://{authority}{path}");
    assert_eq!(code(&get(&abs("gridftp.example.org"), "x", "1.1")), 200);
    assert_eq!(code(&get(&abs("a..b"), "x", "1.1")), 400);
    assert_eq!(code(&get(&abs("gridftp.example.org"), "a/b", "1.1")), 400);
    // The other routes answer alike.
    let rsp = get("/.well-known/vipcert/health", "a/b", "1.1");
    assert_eq!(code(&rsp), 400, "{rsp}");
}

/// The webroot is `<shared_dir>/webroot/.well-known/acme-challenge`; a symlink planted at
/// any of those components (by anyone who can write the share) would serve files from
/// wherever it points on the node. Every component below `shared_dir` is opened without
/// following links: a symlinked one answers 503 (the webroot cannot be used), never the
/// linked file, on the challenge and batch routes alike, and health says the webroot is
/// unusable.
#[test]
fn a_symlinked_directory_above_the_webroot_is_not_followed() {
    let n = start(Block::AtkWebrootLink, "");
    // Node-local directories shaped like the parts of the webroot they would replace.
    let local = n.tmp.path().join("node-local");
    for dir in ["wk/acme-challenge", "web/.well-known/acme-challenge"] {
        std::fs::create_dir_all(local.join(dir)).unwrap();
        std::fs::write(local.join(dir).join(TOKEN), "NODE-LOCAL").unwrap();
    }
    let req = |path: &str| {
        raw_http(
            n.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
    };
    let token = format!("/.well-known/acme-challenge/{TOKEN}");
    assert_eq!(code(&req(&token)), 200);
    for (component, target) in [
        (n.shared.join("webroot/.well-known"), local.join("wk")),
        (n.shared.join("webroot"), local.join("web")),
    ] {
        let aside = n.tmp.path().join("aside");
        std::fs::rename(&component, &aside).unwrap();
        std::os::unix::fs::symlink(&target, &component).unwrap();
        let linked = Instant::now();
        // The cached descriptor of the real webroot lives for at most a second: asked until
        // the link is seen (an answer with the linked file stops the wait too, and fails), by
        // the moment the test used to ask (1.2 s).
        let seen = |rsp: &String| code(rsp) == 503 || rsp.contains("NODE-LOCAL");
        let by = linked + Duration::from_millis(1200);
        let what = format!("{} a symlink", component.display());
        let rsp = poll_until(by, || req(&token), seen);
        assert!(!rsp.contains("NODE-LOCAL"), "{what}: {rsp}");
        assert_eq!(code(&rsp), 503, "{what}: {rsp}");
        let rsp = poll_until(
            by,
            || req(&format!("/.well-known/vipcert/challenges/{TOKEN}")),
            seen,
        );
        assert!(!rsp.contains("NODE-LOCAL"), "{what}, batch route: {rsp}");
        assert_eq!(code(&rsp), 503, "{what}, batch route: {rsp}");
        // Health's verdict is taken once a second: by 2.4 s, as before.
        let rsp = poll_until(
            linked + Duration::from_millis(2400),
            || req("/.well-known/vipcert/health"),
            |rsp| code(rsp) == 503,
        );
        assert_eq!(code(&rsp), 503, "{what}, health: {rsp}");
        std::fs::remove_file(&component).unwrap();
        std::fs::rename(&aside, &component).unwrap();
        let rsp = req(&token);
        assert!(rsp.ends_with(KEYAUTH), "restored: {rsp}");
    }
}

/// A node listening on an IPv6 socket (`listen = ["[::]:80"]`, which takes IPv4 too) sees an
/// IPv4 client as `::ffff:a.b.c.d`. `proxy_addresses` and the per-address cap must know it
/// by its IPv4 address all the same: the balancer listed in `proxy_addresses` is held to the
/// global budget only (capped as one client, it would let a few idle sockets through the VIP
/// lock out the CA), and any other IPv4 client to `max_connections_per_address`.
#[test]
fn a_dual_stack_listener_knows_ipv4_clients_by_their_ipv4_address() {
    let b = Block::AtkDualStack;
    let listen: SocketAddr = format!("[::ffff:{}]:8080", b.ip(11)).parse().unwrap();
    let n = crate::serve::start_listening_at(
        b,
        listen,
        &format!(
            "proxy_addresses = [\"{}\"]\nmax_connections_per_address = 4",
            b.ip(101)
        ),
    );
    std::fs::write(n.webroot().join(TOKEN), KEYAUTH).unwrap();
    let node = SocketAddr::new(b.ip(11), 8080);
    let mut proxied: Vec<_> = (0..10)
        .map(|_| connect_from(b.ip(101), node).unwrap())
        .collect();
    let mut other: Vec<_> = (0..10)
        .map(|_| connect_from(b.ip(102), node).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let answered = |conns: &mut Vec<TcpStream>| {
        conns
            .iter_mut()
            .map(|s| {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let req = format!(
                    "GET /.well-known/acme-challenge/{TOKEN} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                );
                let mut out = String::new();
                s.write_all(req.as_bytes()).is_ok()
                    && s.read_to_string(&mut out).is_ok()
                    && out.ends_with(KEYAUTH)
            })
            .filter(|&ok| ok)
            .count()
    };
    assert_eq!(answered(&mut proxied), 10, "the balancer's connections");
    assert_eq!(answered(&mut other), 4, "another client's, capped at 4");
}

/// A FUSE view (bindfs, in the foreground so that its process is ours) of a directory, that
/// can be made to hang as a hard NFS mount whose server stopped answering does: every call
/// on it blocks while its daemon is stopped (SIGSTOP). Dropped: resumed, unmounted, ended.
struct HangingShare {
    path: PathBuf,
    daemon: std::process::Child,
}

impl HangingShare {
    fn mount(disk: &std::path::Path, path: &std::path::Path) -> HangingShare {
        std::fs::create_dir_all(path).unwrap();
        crate::common::need("/usr/bin/bindfs", "bindfs");
        let daemon = std::process::Command::new("/usr/bin/bindfs")
            .arg("-f")
            .arg(disk)
            .arg(path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cannot run bindfs");
        let share = HangingShare {
            path: path.to_path_buf(),
            daemon,
        };
        crate::common::wait_for(
            || crate::common::nfs::is_mount_point(path),
            "the bindfs view is mounted",
        );
        share
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.daemon.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} bindfs");
    }
}

impl Drop for HangingShare {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = std::process::Command::new("fusermount")
            .arg("-u")
            .arg(&self.path)
            .status();
        if crate::common::nfs::is_mount_point(&self.path) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.path)
                .status();
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// GET `path` on a new connection, with a bound on the whole answer: (status, time taken),
/// status 0 when nothing came within `bound`.
fn get_within(node: SocketAddr, path: &str, bound: Duration) -> (u16, Duration) {
    let t = Instant::now();
    let Ok(mut s) = TcpStream::connect_timeout(&node, bound) else {
        return (0, t.elapsed());
    };
    s.set_read_timeout(Some(bound)).unwrap();
    let _ = s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    (code(&out), t.elapsed())
}

/// The shared directory is NFS; a hard mount whose server stops answering blocks every call
/// on it. Challenge requests arriving then must not take the whole server with them: health
/// says 503 once its check has not come back for 5 s (what the balancer and monitoring rely
/// on), the status document is served from memory, and the challenge route itself answers
/// 503 instead of hanging; when the share answers again, so does the server. Before: a read
/// in place per request blocked a worker thread each, and 4 token requests on 2 workers left
/// nothing answered until the share came back.
#[test]
fn a_share_that_hangs_does_not_stop_the_server_answering() {
    // Its answers are timed to the second: never beside a flood of thousands of connections
    // (it once missed health's 503 window beside the soak's floods, 4 test threads on 2 cores).
    let _quiet = crate::common::quiet();
    let b = Block::AtkHungShare;
    let disk = tempfile::tempdir().unwrap();
    let views = tempfile::tempdir().unwrap();
    let share = HangingShare::mount(disk.path(), &views.path().join("shared"));
    let n = crate::serve::start_sharing(b, &share.path);
    std::fs::write(n.webroot().join(TOKEN), KEYAUTH).unwrap();
    let token = format!("/.well-known/acme-challenge/{TOKEN}");
    let second = Duration::from_secs(1);
    assert_eq!(get_within(n.addr, &token, second).0, 200);

    share.signal("-STOP");
    // Wait until the health check itself hangs (it runs every second), then send more token
    // requests than there are worker threads, on connections of their own.
    std::thread::sleep(Duration::from_millis(1500));
    let stuck: Vec<_> = (0..8)
        .map(|_| {
            let addr = n.addr;
            let token = token.clone();
            std::thread::spawn(move || get_within(addr, &token, Duration::from_secs(20)))
        })
        .collect();
    // Health is 503 once its check has not come back for 5 s: asked until it says so, by the
    // moment the test used to ask (6 s after these requests).
    let (health, took) = poll_until(
        Instant::now() + Duration::from_secs(6),
        || get_within(n.addr, "/.well-known/vipcert/health", second),
        |(code, _)| *code == 503,
    );
    assert_eq!(
        health, 503,
        "health with the share hanging (after {took:?})"
    );
    let (status, took) = get_within(n.addr, "/.well-known/vipcert/status", second);
    assert_eq!(
        status, 200,
        "status with the share hanging (after {took:?})"
    );
    let (code, took) = get_within(n.addr, &token, second);
    assert_eq!(
        code, 503,
        "a challenge with the share hanging (after {took:?})"
    );

    share.signal("-CONT");
    for t in stuck {
        let (code, took) = t.join().unwrap();
        assert!(
            code == 200 || code == 503,
            "a request sent while the share hung got {code} after {took:?}"
        );
    }
    crate::common::wait_for(
        || get_within(n.addr, &token, second).0 == 200,
        "the token is served again",
    );
    crate::common::wait_for(
        || get_within(n.addr, "/.well-known/vipcert/health", second).0 == 200,
        "health is 200 again",
    );
    drop(n);
    drop(share);
}
