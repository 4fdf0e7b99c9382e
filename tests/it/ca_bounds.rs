//! A CA that misbehaves on the wire: a small HTTPS server inside the test (rustls, raw HTTP/1.1
//! bytes, so it can send what no real CA would) that never answers, sends an endless chunked
//! body, announces a 4 GiB body, sends one byte a second, or redirects to another host. Pebble
//! can do none of this; the rest is real: `vipcert issue` as a child process, preflight against
//! real `vipcert serve` node servers, then the directory GET, the first request to the CA.
//! Each test holds `issue` to `[acme] request_timeout` (2 s here) plus slack from the CA's
//! first connection, to an error that names the CA and what it did, to a small peak RSS, and
//! to nothing published.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::common::net::Block;
use crate::common::pki::{Ca, Spec};
use crate::common::site::{fast_tempdir, Site, VIP};
use crate::common::{wait_listening, Proc};

/// `[acme] request_timeout` in these tests.
const DEADLINE: Duration = Duration::from_secs(2);
/// What `issue` may take past the deadline, counted from the CA's first connection: the
/// process's exit on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(3);
/// A run still going after this is hung (before the fix, it never ended).
const HUNG: Duration = Duration::from_secs(30);
/// A peak RSS above this is a body being buffered (`vipcert issue` itself needs ~20 MiB).
const RSS_LIMIT_KIB: u64 = 128 * 1024;
/// The size cap of one answer (docs/config.md, `[acme] request_timeout`).
const CAP: u64 = 1024 * 1024;

/// What the hostile CA does once it has read a request head.
#[derive(Clone, Copy)]
enum Hostile {
    /// Keeps the connection open and says nothing.
    Silent,
    /// 200, chunked, 64 KiB chunks of JSON whitespace for ever.
    Endless,
    /// 200 with Content-Length 4 GiB, then zeros for ever.
    HugeLength,
    /// 200 with Content-Length 100000, then one byte a second.
    Slowloris,
    /// 302 to the same path at this address (another host).
    Redirect(SocketAddr),
}

/// What a test server saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    /// Body bytes the kernel accepted, over every connection.
    body_bytes: AtomicU64,
    first_connection: Mutex<Option<Instant>>,
}

/// A test server on its own runtime thread; stops (dropping every connection) when dropped.
struct Server {
    seen: Arc<Seen>,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A server on `ip` (port chosen by the kernel): with `hostile`, the hostile CA over TLS
/// (certificate from `ca`); without, a plain listener that only counts connections (the
/// "other host" of a redirect).
fn start(ip: &str, ca: &Ca, hostile: Option<Hostile>) -> Server {
    let acceptor = tokio_rustls::TlsAcceptor::from(ca.leaf(&Spec::names(&[ip])).server_config());
    let listener = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let s2 = seen.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    a = listener.accept() => {
                        let Ok((tcp, _)) = a else { continue };
                        s2.connections.fetch_add(1, Ordering::SeqCst);
                        s2.first_connection.lock().unwrap().get_or_insert_with(Instant::now);
                        let Some(h) = hostile else { continue };
                        let (acceptor, seen) = (acceptor.clone(), s2.clone());
                        tokio::spawn(async move {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                answer(tls, h, &seen).await;
                            }
                        });
                    }
                }
            }
        });
    });
    Server {
        seen,
        addr,
        stop: Some(stop),
        thread: Some(thread),
    }
}

/// Read one request head, then misbehave as `h` says.
async fn answer(mut s: impl AsyncRead + AsyncWrite + Unpin, h: Hostile, seen: &Seen) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let path = String::from_utf8_lossy(&head)
        .split(' ')
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let count = |n: usize| {
        seen.body_bytes.fetch_add(n as u64, Ordering::SeqCst);
    };
    match h {
        Hostile::Silent => std::future::pending::<()>().await,
        Hostile::Endless => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
            while s.write_all(chunk.as_bytes()).await.is_ok() {
                count(0x10000);
            }
        }
        Hostile::HugeLength => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4294967296\r\n\r\n";
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let zeros = vec![b' '; 0x10000];
            while s.write_all(&zeros).await.is_ok() {
                count(zeros.len());
            }
        }
        Hostile::Slowloris => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n";
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            loop {
                if s.write_all(b" ").await.is_err() || s.flush().await.is_err() {
                    return;
                }
                count(1);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        Hostile::Redirect(to) => {
            let head = format!(
                "HTTP/1.1 302 Found\r\nLocation: https://{to}{path}\r\nContent-Length: 0\r\n\r\n"
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.flush().await;
            std::future::pending::<()>().await
        }
    }
}

/// A site whose CA is `ca_url` (trusting `ca`'s root), with `vipcert serve` on the VIP (.10)
/// and the three nodes (.11-.13) of `block`, so that preflight passes; nothing published.
fn site(block: Block, ca_url: &str, ca: &Ca) -> (Site, Vec<Proc>, tempfile::TempDir) {
    let dir = fast_tempdir();
    let roots = dir.path().join("hostile-ca.pem");
    std::fs::write(&roots, ca.root_pem()).unwrap();
    let port = 5002;
    let rest = format!(
        "[acme]\ndirectory = \"{ca_url}\"\nca_roots = \"{}\"\nhttp_port = {port}\nkey_type = \"ecdsa-p256\"\nrequest_timeout = \"{}s\"\n[preflight]\nskip_dns = true\ntimeout = \"2s\"\n",
        roots.display(),
        DEADLINE.as_secs()
    );
    let site = Site::new(&block.net(), "shared", "", &rest);
    let mut serves = vec![];
    for (i, last) in [(0, 10), (0, 11), (1, 12), (2, 13)] {
        let addr = block.addr(last, port);
        serves.push(Proc::new(
            site.cmd(i, &["serve", "--listen", &addr.to_string()])
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
            format!("serve {addr}"),
        ));
        wait_listening(addr, "vipcert serve");
    }
    (site, serves, dir)
}

/// How one `vipcert issue` ended.
struct Outcome {
    /// Exit code, or why it was killed (hung, or its memory grew past the limit).
    code: Result<Option<i32>, String>,
    ended: Instant,
    peak_rss_kib: u64,
    output: String,
}

/// The peak RSS (VmHWM) of a running process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `vipcert issue` as node 0, watched: killed once it runs for [`HUNG`] or its peak RSS
/// passes [`RSS_LIMIT_KIB`] (a CA's body buffered whole would take the machine's memory).
fn issue(site: &Site) -> Outcome {
    let log = site.dir.join("issue.log");
    let f = std::fs::File::create(&log).unwrap();
    let mut child = site
        .cmd(0, &["issue"])
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut peak = 0;
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Ok(s.code());
        }
        peak = peak.max(peak_rss_kib(child.id()).unwrap_or(0));
        let killed = if start.elapsed() > HUNG {
            format!("still running after {HUNG:?}")
        } else if peak > RSS_LIMIT_KIB {
            format!(
                "peak RSS {} MiB, over {} MiB",
                peak / 1024,
                RSS_LIMIT_KIB / 1024
            )
        } else {
            String::new()
        };
        if !killed.is_empty() {
            let _ = child.kill();
            let _ = child.wait();
            break Err(killed);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Outcome {
        code,
        ended: Instant::now(),
        peak_rss_kib: peak,
        output: std::fs::read_to_string(&log).unwrap_or_default(),
    }
}

/// `issue` against a CA on .1 of `block` that behaves as `h`: it ends in time, with exit 1,
/// small, having published nothing, and saying `said` about the CA. Returns the CA's server
/// (what it saw) and the output.
fn issue_against(block: Block, h: Hostile, said: &str) -> (Server, String) {
    let ca = Ca::new("hostile CA");
    let server = start(block.host(1), &ca, Some(h));
    let url = format!("https://{}/dir", server.addr);
    let (site, _serves, _dir) = site(block, &url, &ca);
    let out = issue(&site);
    let msg = &out.output;
    let first = server.seen.first_connection.lock().unwrap().take();
    let code = out
        .code
        .unwrap_or_else(|why| panic!("vipcert issue was killed: {why}:\n{msg}"));
    assert_eq!(code, Some(1), "{msg}");
    let first = first.expect("the CA was never asked anything");
    let took = out.ended.duration_since(first);
    assert!(
        took < DEADLINE + SLACK,
        "issue ended {took:?} after the CA's first connection (deadline {DEADLINE:?}):\n{msg}"
    );
    assert!(
        msg.contains(&format!("the CA {url} ")),
        "names the CA: {msg}"
    );
    assert!(msg.contains(said), "says {said:?}: {msg}");
    assert!(
        out.peak_rss_kib < RSS_LIMIT_KIB,
        "peak RSS {} KiB",
        out.peak_rss_kib
    );
    assert_eq!(site.store.current(VIP).unwrap(), None, "nothing published");
    assert!(site.store.versions(VIP).unwrap().is_empty(), "no version");
    (server, out.output)
}

#[test]
fn a_ca_that_never_answers_is_given_up_at_the_deadline() {
    issue_against(Block::CaSilent, Hostile::Silent, "did not answer within 2s");
}

#[test]
fn a_ca_that_sends_one_byte_a_second_is_given_up_at_the_deadline() {
    // Headers at once, then the body a byte a second: the deadline covers the body too.
    issue_against(
        Block::CaSlowloris,
        Hostile::Slowloris,
        "did not answer within 2s",
    );
}

#[test]
fn an_endless_body_is_read_no_further_than_the_cap() {
    let (server, _) = issue_against(Block::CaEndless, Hostile::Endless, "sent more than 1 MiB");
    // What the CA could write: the cap, one read of the client, and the two socket buffers.
    let sent = server.seen.body_bytes.load(Ordering::SeqCst);
    assert!(
        sent < CAP + 32 * 1024 * 1024,
        "the CA wrote {} MiB before the client let go",
        sent / (1024 * 1024)
    );
}

#[test]
fn an_announced_4_gib_body_is_refused_unread() {
    let (server, _) = issue_against(
        Block::CaHugeLength,
        Hostile::HugeLength,
        "announced 4294967296 bytes, more than 1 MiB",
    );
    let sent = server.seen.body_bytes.load(Ordering::SeqCst);
    assert!(
        sent < 32 * 1024 * 1024,
        "the CA wrote {} MiB before the client let go",
        sent / (1024 * 1024)
    );
}

#[test]
fn a_redirect_to_another_host_is_not_followed() {
    let block = Block::CaRedirect;
    let ca = Ca::new("redirect target");
    let other = start(block.host(2), &ca, None);
    let (_, msg) = issue_against(
        block,
        Hostile::Redirect(other.addr),
        &format!("redirected to https://{}/dir with HTTP 302", other.addr),
    );
    assert!(msg.contains("follows no redirects"), "{msg}");
    assert_eq!(
        other.seen.connections.load(Ordering::SeqCst),
        0,
        "the other host was contacted"
    );
}
