//! Health checks of one backend: the three checks (`tcp`, `banner`, `http`) and the
//! per-backend checker task that runs them every `delay_loop` and feeds the results to the
//! backend's `rise_fall` state.
//!
//! Owns when a backend is checked and what counts as a good answer; the up/down rule itself
//! is `rise_fall` (pure, shared with `pool`). It does not pick backends (`scheduler`) or proxy
//! bytes (`proxy`); the proxy reports failed connects here as passive failures.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::pool::{Backend, Pool};
use super::rise_fall::fast_interval;
use crate::config::HealthCheck;

/// Largest banner or status line read by a check.
const MAX_CHECK_READ: usize = 1024;

/// Why a check did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CheckError {
    /// The backend failed it (refused, timed out, wrong answer).
    Failed(String),
    /// This process could not open a socket (EMFILE, ENFILE...): the balancer's own
    /// condition, which says nothing about the backend.
    OutOfDescriptors(String),
}

impl CheckError {
    /// Whether the message says `s` (the unit tests match on it).
    #[cfg(test)]
    fn contains(&self, s: &str) -> bool {
        match self {
            CheckError::Failed(m) | CheckError::OutOfDescriptors(m) => m.contains(s),
        }
    }
}

/// Run one check against `addr`; the whole check (connect, exchange) is bounded by `timeout`.
pub(crate) async fn check(
    kind: &HealthCheck,
    addr: SocketAddr,
    host: &str,
    timeout: Duration,
) -> Result<(), CheckError> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    };
    let sock = match sock {
        Ok(s) => s,
        Err(e) if super::proxy::is_fd_exhaustion(&e) => {
            return Err(CheckError::OutOfDescriptors(format!("socket: {e}")))
        }
        Err(e) => return Err(CheckError::Failed(format!("socket: {e}"))),
    };
    match tokio::time::timeout(timeout, check_inner(sock, kind, addr, host)).await {
        Ok(r) => r.map_err(CheckError::Failed),
        Err(_) => Err(CheckError::Failed(format!("no answer within {timeout:?}"))),
    }
}

async fn check_inner(
    sock: tokio::net::TcpSocket,
    kind: &HealthCheck,
    addr: SocketAddr,
    host: &str,
) -> Result<(), String> {
    let mut s = sock
        .connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_nodelay(true);
    match kind {
        HealthCheck::Tcp => Ok(()),
        HealthCheck::Banner(prefix) => {
            let got = read_until(&mut s, prefix.len(), b'\n').await?;
            // Polite to GridFTP: say goodbye instead of vanishing mid-greeting.
            let _ = s.write_all(b"QUIT\r\n").await;
            if got.starts_with(prefix.as_bytes()) {
                Ok(())
            } else {
                Err(format!(
                    "banner {:?} does not start with {prefix:?}",
                    String::from_utf8_lossy(&got)
                ))
            }
        }
        HealthCheck::Http(path) => {
            let req = format!(
                "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: vipcert-balancer\r\nConnection: close\r\n\r\n"
            );
            s.write_all(req.as_bytes())
                .await
                .map_err(|e| format!("send: {e}"))?;
            let line = read_until(&mut s, MAX_CHECK_READ, b'\n').await?;
            let status = parse_status(&line).ok_or_else(|| {
                format!("not an HTTP answer: {:?}", String::from_utf8_lossy(&line))
            })?;
            if (200..300).contains(&status) {
                Ok(())
            } else {
                Err(format!("GET {path} answered {status}"))
            }
        }
    }
}

/// Read until `stop` is seen, `want` bytes are in, EOF, or `MAX_CHECK_READ`.
async fn read_until(s: &mut TcpStream, want: usize, stop: u8) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; MAX_CHECK_READ];
    let mut n = 0;
    while n < want.max(1) && n < MAX_CHECK_READ && !buf[..n].contains(&stop) {
        match s.read(&mut buf[n..]).await {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    if n == 0 {
        return Err("closed without a word".into());
    }
    buf.truncate(n);
    Ok(buf)
}

/// `HTTP/1.x NNN ...` -> NNN.
pub(crate) fn parse_status(line: &[u8]) -> Option<u16> {
    let s = std::str::from_utf8(line).ok()?;
    let mut parts = s.split_ascii_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

/// Record a result for `b` and log a change of state.
pub(crate) fn record(pool: &Pool, b: &Backend, ok: bool, why: &str, rise: u32, fall: u32) -> bool {
    let mut h = b.health.lock().unwrap_or_else(|p| p.into_inner());
    let changed = h.observe(ok, rise, fall);
    if let Some(up) = changed {
        b.up.store(up, Ordering::Relaxed);
        if up {
            tracing::info!(service = %pool.name, backend = %b.node, address = %b.addr, "backend UP after {rise} good check(s)");
        } else {
            tracing::warn!(service = %pool.name, backend = %b.node, address = %b.addr, reason = %why, "backend DOWN after {fall} failure(s)");
        }
    }
    h.unsettled()
}

/// Check `b` every `delay_loop` until it is retired by a reload or `stop` fires. A failed
/// connect reported by the proxy triggers a check at once; while a change is under way
/// (some failures, fewer than `fall`; or some successes, fewer than `rise`) checks run every
/// `fast_interval`. So a dead node leaves rotation about `fall - 1` seconds after the first
/// client hits it, or after `delay_loop + connect_timeout + fall - 1` s with no traffic.
pub(crate) async fn run_checker(
    pool: Arc<Pool>,
    b: Arc<Backend>,
    host: String,
    stop: CancellationToken,
) {
    loop {
        if b.retired.load(Ordering::Relaxed) {
            return;
        }
        let s = pool.settings();
        let result = check(&s.service.check, b.addr, &host, s.connect_timeout).await;
        let unsettled = match &result {
            Ok(()) => record(&pool, &b, true, "", s.rise, s.fall),
            Err(CheckError::Failed(why)) => {
                tracing::debug!(service = %pool.name, backend = %b.node, error = %why, "check failed");
                record(&pool, &b, false, why, s.rise, s.fall)
            }
            Err(CheckError::OutOfDescriptors(why)) => {
                // Not the backend's failure: its state stays as it is; check again soon.
                tracing::warn!(service = %pool.name, backend = %b.node, error = %why, "out of file descriptors: health check skipped, backend state unchanged");
                true
            }
        };
        if unsettled {
            // Already checking fast; kicks from failed connects add nothing.
            tokio::select! {
                _ = tokio::time::sleep(fast_interval(s.delay_loop)) => {}
                _ = stop.cancelled() => return,
            }
        } else {
            tokio::select! {
                _ = tokio::time::sleep(s.delay_loop) => {}
                _ = b.kick.notified() => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_parses() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            parse_status(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b"HTTP/1.1 20\r\n"), None);
    }

    #[tokio::test]
    async fn checks_against_real_sockets() {
        use tokio::net::TcpListener;
        let l = TcpListener::bind("127.0.1.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for answer in [
                &b"220 hello\r\n"[..],
                b"HTTP/1.0 200 OK\r\n\r\n",
                b"HTTP/1.0 404 Not Found\r\n\r\n",
                b"500 nope\r\n",
            ] {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 256];
                if answer.starts_with(b"HTTP") {
                    let _ = s.read(&mut buf).await;
                }
                s.write_all(answer).await.unwrap();
            }
        });
        let t = Duration::from_secs(5);
        let banner = HealthCheck::Banner("220".into());
        let http = HealthCheck::Http("/h".into());
        assert_eq!(check(&banner, addr, "x", t).await, Ok(()));
        assert_eq!(check(&http, addr, "x", t).await, Ok(()));
        assert!(check(&http, addr, "x", t)
            .await
            .unwrap_err()
            .contains("404"));
        assert!(check(&banner, addr, "x", t).await.is_err());
        server.await.unwrap();
        // Nothing listens there any more.
        assert!(check(&HealthCheck::Tcp, addr, "x", t).await.is_err());
    }
}
