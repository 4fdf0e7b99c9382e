//! `vipcert serve` as a user and an attacker see it: challenge files are served, nothing else
//! from the filesystem is, and thousands of idle connections do not stop it answering.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::net::Block;
use crate::common::{connect_from, many_fds, raw_http, start_listening, Proc, BIN};

/// A running node server and its temp dir (config, shared dir, install root).
pub(crate) struct Node {
    pub tmp: tempfile::TempDir,
    pub shared: std::path::PathBuf,
    pub addr: SocketAddr,
    pub proc: Proc,
}

/// A node server on .11 of `block` (the VIP, .10, only in its config), port 8080.
fn start(block: Block) -> Node {
    start_with(block, "", |_| {})
}

/// As `start`, with `serve_extra` lines in its `[serve]` table and `prepare` run on the
/// temp dir before the server starts (e.g. to install a certificate under `root/`).
pub(crate) fn start_with(
    block: Block,
    serve_extra: &str,
    prepare: impl FnOnce(&std::path::Path),
) -> Node {
    start_with_nofile(block, serve_extra, None, prepare)
}

/// `start_with`, the server's open-file limit (soft and hard) set to `nofile` when given, as
/// a unit's `LimitNOFILE` would (through util-linux `prlimit`).
pub(crate) fn start_with_nofile(
    block: Block,
    serve_extra: &str,
    nofile: Option<u64>,
    prepare: impl FnOnce(&std::path::Path),
) -> Node {
    start_full(
        block,
        SocketAddr::new(block.ip(11), 8080),
        serve_extra,
        nofile,
        prepare,
    )
}

/// A node server listening on `listen` (in `block`, possibly as an IPv4-mapped IPv6 address),
/// otherwise as `start_with`.
pub(crate) fn start_listening_at(block: Block, listen: SocketAddr, serve_extra: &str) -> Node {
    start_full(block, listen, serve_extra, None, |_| {})
}

/// A node server on .11 of `block`, port 8080, whose `shared_dir` is `shared` (made by the
/// caller, e.g. a FUSE view; it must outlive the node).
pub(crate) fn start_sharing(block: Block, shared: &std::path::Path) -> Node {
    start_in(
        block,
        SocketAddr::new(block.ip(11), 8080),
        Some(shared.to_path_buf()),
        "",
        None,
        |_| {},
    )
}

fn start_full(
    block: Block,
    addr: SocketAddr,
    serve_extra: &str,
    nofile: Option<u64>,
    prepare: impl FnOnce(&std::path::Path),
) -> Node {
    start_in(block, addr, None, serve_extra, nofile, prepare)
}

/// `start_full` with `shared_dir` at `shared` when given, else `<tmp>/shared`.
fn start_in(
    block: Block,
    addr: SocketAddr,
    shared: Option<std::path::PathBuf>,
    serve_extra: &str,
    nofile: Option<u64>,
    prepare: impl FnOnce(&std::path::Path),
) -> Node {
    let tmp = tempfile::tempdir().unwrap();
    let shared = shared.unwrap_or_else(|| tmp.path().join("shared"));
    std::fs::create_dir_all(&shared).unwrap();
    let (vip, ip) = (block.ip(10), block.ip(11));
    let cfg = tmp.path().join("vipcert.toml");
    std::fs::write(
        &cfg,
        format!(
            "virtual_hostname = \"gridftp.example.org\"\nvirtual_ip = \"{vip}\"\nshared_dir = \"{}\"\nlayout = \"shared\"\n[[node]]\nhostname = \"dtn1.example.org\"\naddress = \"{ip}\"\n[install]\nroot = \"{}\"\n[serve]\n{serve_extra}\n",
            shared.display(),
            tmp.path().join("root").display()
        ),
    )
    .unwrap();
    prepare(tmp.path());
    let mut cmd = match nofile {
        None => Command::new(BIN),
        Some(n) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={n}:{n}")).arg("--").arg(BIN);
            c
        }
    };
    let p = start_listening(
        cmd.args([
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--node",
            "dtn1.example.org",
            "--listen",
            &addr.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null()),
        addr,
        "vipcert serve",
    );
    Node {
        tmp,
        shared,
        addr,
        proc: p,
    }
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let rsp = raw_http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: gridftp.example.org\r\nConnection: close\r\n\r\n"),
    );
    let code = rsp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = rsp
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (code, body)
}

fn webroot(n: &Node) -> std::path::PathBuf {
    n.shared.join("webroot/.well-known/acme-challenge")
}

/// The challenge route keeps the webroot's directory open between requests (issue 9): a
/// webroot replaced under it (renamed away and made again, as a remount does) must be served
/// at once, and the old directory's files never again.
#[test]
fn a_replaced_webroot_is_served_at_once() {
    let n = start(Block::ServeWebrootSwap);
    let wr = webroot(&n);
    std::fs::write(wr.join("old_Token"), "old_Token.thumbprint").unwrap();
    assert_eq!(
        get(n.addr, "/.well-known/acme-challenge/old_Token"),
        (200, "old_Token.thumbprint".into())
    );
    std::fs::rename(&wr, n.shared.join("webroot/gone")).unwrap();
    std::fs::create_dir(&wr).unwrap();
    std::fs::write(wr.join("new_Token"), "new_Token.thumbprint").unwrap();
    assert_eq!(
        get(n.addr, "/.well-known/acme-challenge/new_Token"),
        (200, "new_Token.thumbprint".into()),
        "a token in the new webroot, asked for right after the swap"
    );
    assert_eq!(get(n.addr, "/.well-known/acme-challenge/old_Token").0, 404);
}

#[test]
fn serves_tokens_and_nothing_else() {
    let n = start(Block::ServeTokens);
    let wr = webroot(&n);
    std::fs::write(wr.join("good_Token-123"), "good_Token-123.thumbprint").unwrap();
    // Secrets outside the webroot that a traversal would reach.
    std::fs::write(n.shared.join("webroot/secret"), "SECRET-OUTSIDE").unwrap();
    std::fs::write(
        n.shared.join("webroot/.well-known/secret"),
        "SECRET-OUTSIDE",
    )
    .unwrap();
    std::os::unix::fs::symlink("/etc/passwd", wr.join("linktoken")).unwrap();
    std::os::unix::fs::symlink(n.shared.join("webroot/secret"), wr.join("linktoken2")).unwrap();
    std::fs::write(wr.join("bigtoken"), vec![b'x'; 5000]).unwrap();
    std::fs::create_dir(wr.join("dirtoken")).unwrap();

    let (code, body) = get(n.addr, "/.well-known/acme-challenge/good_Token-123");
    assert_eq!((code, body.as_str()), (200, "good_Token-123.thumbprint"));

    let attacks = [
        "/.well-known/acme-challenge/../secret",
        "/.well-known/acme-challenge/..%2fsecret",
        "/.well-known/acme-challenge/%2e%2e/secret",
        "/.well-known/acme-challenge/%2e%2e%2fsecret",
        "/.well-known/acme-challenge/%2e%2e%2f%2e%2e%2fsecret",
        "/.well-known/acme-challenge/..%5csecret",
        "/.well-known/acme-challenge//etc/passwd",
        "/.well-known/acme-challenge/%2fetc%2fpasswd",
        "/.well-known/acme-challenge/linktoken",
        "/.well-known/acme-challenge/linktoken2",
        "/.well-known/acme-challenge/bigtoken",
        "/.well-known/acme-challenge/dirtoken",
        "/.well-known/acme-challenge/good_Token-123.",
        "/.well-known/acme-challenge/good%20Token",
        "/.well-known/acme-challenge/",
        "/.well-known/secret",
        "/webroot/secret",
        "/etc/passwd",
        "//etc/passwd",
        "/../../etc/passwd",
        "/.well-known/acme-challenge/.hidden",
    ];
    for a in attacks {
        let (code, body) = get(n.addr, a);
        assert!(code == 404 || code == 400, "{a}: HTTP {code}");
        assert!(
            !body.contains("SECRET-OUTSIDE") && !body.contains("root:"),
            "{a} leaked: {body}"
        );
    }
    let long = format!("/.well-known/acme-challenge/{}", "a".repeat(129));
    std::fs::write(wr.join("a".repeat(129).as_str()), "LONG").unwrap();
    assert_eq!(get(n.addr, &long).0, 404, "oversized token");
    let ok128 = "b".repeat(128);
    std::fs::write(wr.join(&ok128), "ok").unwrap();
    assert_eq!(
        get(n.addr, &format!("/.well-known/acme-challenge/{ok128}")),
        (200, "ok".to_string())
    );
    // Only GET/HEAD.
    let rsp = raw_http(
        n.addr,
        "POST /.well-known/acme-challenge/good_Token-123 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(rsp.starts_with("HTTP/1.1 405"), "{rsp}");
}

#[test]
fn health_and_status_are_public_and_bounded() {
    let n = start(Block::ServeHealth);
    assert_eq!(get(n.addr, "/.well-known/vipcert/health").0, 200);
    let (code, body) = get(n.addr, "/.well-known/vipcert/status");
    assert_eq!(code, 200);
    let st: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(st["node"], "dtn1.example.org");
    assert_eq!(st["lineages"][0]["lineage"], "gridftp.example.org");
    assert!(
        st["lineages"][0]["error"].as_str().is_some(),
        "nothing installed yet: {body}"
    );
    // Oversized headers are refused, not buffered without bound.
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let rsp = raw_http(n.addr, &big);
    assert!(
        rsp.is_empty() || rsp.starts_with("HTTP/1.1 431") || rsp.starts_with("HTTP/1.1 400"),
        "{rsp}"
    );
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let rsp = raw_http(
        n.addr,
        &format!("GET / HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n"),
    );
    assert!(
        rsp.is_empty() || rsp.starts_with("HTTP/1.1 431") || rsp.starts_with("HTTP/1.1 400"),
        "{rsp}"
    );
}

#[test]
fn holds_5000_idle_connections_and_stays_responsive() {
    // 5,000 sockets in this process, which the balancer's capacity test shares: one at a time.
    let _fds = many_fds();
    // Raise only (soft to hard): another test may have raised it already, and lowering it
    // under that test would take its sockets away.
    vipcert::limits::raise_nofile();
    let n = start(Block::ServeIdle);
    std::fs::write(webroot(&n).join("tok"), "tok.ka").unwrap();
    let mut idle = Vec::with_capacity(5000);
    for i in 0..5000 {
        // From 20 addresses: one address gets [serve] max_connections_per_address (256).
        match connect_from(Block::ServeIdle.ip(101 + (i / 250) as u8), n.addr) {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connection {i} failed: {e}"),
        }
    }
    // Half of them send a partial request and stall (slowloris).
    for s in idle.iter_mut().step_by(2) {
        s.write_all(b"GET /.well-known/acme-challenge/tok HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
    }
    for _ in 0..20 {
        assert_eq!(
            get(n.addr, "/.well-known/acme-challenge/tok"),
            (200, "tok.ka".to_string())
        );
    }
    // The idle connections are still open (not dropped to make room): finishing one's
    // request gets an answer.
    let s = &mut idle[0];
    s.write_all(b"Connection: close\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut rsp = String::new();
    s.read_to_string(&mut rsp).unwrap();
    assert!(rsp.starts_with("HTTP/1.1 200"), "{rsp}");
    drop(idle);
}

#[test]
fn batch_route_answers_each_token_with_the_same_rules() {
    let n = start(Block::ServeBatch);
    let wr = webroot(&n);
    std::fs::write(wr.join("t1"), "t1.ka").unwrap();
    std::fs::write(wr.join("t3"), "t3.ka").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", wr.join("t4")).unwrap();
    std::fs::write(wr.join("t5"), vec![b'x'; 5000]).unwrap();
    let (code, body) = get(n.addr, "/.well-known/vipcert/challenges/t1,t2,t3,t4,t5");
    assert_eq!(code, 200);
    assert_eq!(
        body, "+t1.ka\n-\n+t3.ka\n-\n-\n",
        "found, missing, found, symlink, oversized"
    );
    for bad in ["t1,..", "t1,%2e%2e", "t1,a%2fb", "t1,,t3", "t1,.hidden"] {
        let (code, body) = get(n.addr, &format!("/.well-known/vipcert/challenges/{bad}"));
        assert_eq!(code, 400, "{bad}: {body}");
    }
    let many: Vec<String> = (0..101).map(|i| format!("t{i}")).collect();
    assert_eq!(
        get(
            n.addr,
            &format!("/.well-known/vipcert/challenges/{}", many.join(","))
        )
        .0,
        400
    );
}
