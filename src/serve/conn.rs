//! The node server's connections: listening sockets, the accept loops under the connection
//! budget, and one HTTP/1.1 connection per socket, each request of which passes the Host
//! rule and the own routes' rations before the fast path or the router answers it.
//!
//! Owns the listeners, the per-connection limits (header timeout, header size and count,
//! lifetime), what an idle connection costs (its task only, no buffer until its first
//! byte), the challenge route's fast path past the router, and the drain at shutdown. The
//! counting and eviction is `budget`'s, the turns `rations`', the Host rule `host`'s, the
//! answers `routes`'.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderValue, StatusCode};
use axum::Router;
use bytes::Bytes;
use http_body_util::{Either, Full};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::budget::{Budget, ConnectionLimits, Ticket};
use super::cache::NodeServer;
use super::counters::Rationed;
use super::host;
use super::rations::{OwnRoute, Rations, Turn};
use super::routes;

/// A connection that sends no complete request header within this time is closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound on any one connection's life (the CA and probes need milliseconds).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(600);

/// Bind every address; fails naming the address (and the usual fix for port 80).
pub(super) async fn bind(addrs: &[SocketAddr]) -> anyhow::Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for a in addrs {
        let sock = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        sock.set_reuseaddr(true)?;
        // Let a node server start before a lab's or VRRP's address exists.
        let _ = rustix::net::sockopt::set_ip_freebind(&sock, true);
        sock.bind(*a).map_err(|e| {
            let hint = if a.port() < 1024 && e.kind() == std::io::ErrorKind::PermissionDenied {
                " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
            } else {
                ""
            };
            anyhow::anyhow!("cannot listen on {a}: {e}{hint}")
        })?;
        out.push(sock.listen(4096)?);
    }
    Ok(out)
}

/// Serve `server`'s routes on `listeners` until `shutdown` is cancelled, then give open
/// connections a moment to finish. Holds many idle connections cheaply (an idle socket gets
/// no buffer until it sends something); `limits` bounds them globally and per client address.
pub(super) async fn serve(
    listeners: Vec<TcpListener>,
    server: &NodeServer,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    server.webroot().set_workers(workers);
    let shared = Arc::new(Shared {
        fast: server.clone(),
        router: routes::router(server),
        rations: Rations::new(limits.monitor),
    });
    let budget = Budget::new(limits, &shutdown);
    for l in listeners {
        tracker.spawn(accept_loop(
            l,
            shared.clone(),
            budget.clone(),
            tracker.clone(),
            shutdown.clone(),
        ));
    }
    let trim = tokio::spawn(trim_after_floods(budget));
    tracker.close();
    shutdown.cancelled().await;
    trim.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
}

/// Accept on `listener` until `shutdown`; every connection `budget` admits is served on a
/// task of `tracker`'s (which the drain at shutdown waits for).
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    budget: Arc<Budget>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Over budget: closed at once, so the client sees a reset rather than a hang.
        let ticket = match budget.admit(peer.ip()) {
            Ok(t) => t,
            Err(r) => {
                shared.fast.counters().refused(r);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shutdown = shutdown.clone();
        tracker.spawn(serve_connection(stream, shared.clone(), ticket, shutdown));
    }
}

/// Freed connection memory goes back to the system once a flood is over (checked every
/// second, until aborted).
async fn trim_after_floods(budget: Arc<Budget>) {
    let mut t = tokio::time::interval(Duration::from_secs(1));
    loop {
        t.tick().await;
        if budget.flood_ended() {
            let _ = tokio::task::spawn_blocking(crate::limits::release_free_memory).await;
        }
    }
}

/// What every connection of `serve` uses.
struct Shared {
    /// For the challenge route's fast path.
    fast: NodeServer,
    /// Every other request.
    router: Router,
    rations: Rations,
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    shared: Arc<Shared>,
    ticket: Arc<Ticket>,
    shutdown: CancellationToken,
) {
    // Wait for the first byte before hyper allocates its 8 KiB read buffer: an idle socket
    // then costs its task and nothing more. `peek`, not `readable`: readiness can be a
    // false positive on a fresh socket (measured: every idle socket got a buffer).
    let mut first = [0u8; 1];
    tokio::select! {
        r = stream.peek(&mut first) => if !matches!(r, Ok(n) if n > 0) { return },
        _ = tokio::time::sleep(HEADER_TIMEOUT) => return,
        // Evicted, or shutting down (the eviction token is the shutdown token's child).
        _ = ticket.evicted() => {
            if !shutdown.is_cancelled() {
                shared.fast.counters().evicted();
            }
            return;
        }
    }
    // Boxed: the task of a connection that never sends a byte stays this small.
    Box::pin(serve_http(stream, shared, ticket, shutdown)).await
}

/// A request to an own route refused by `rations`: hyper closes the connection unanswered.
#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("over the monitoring routes' budget")
    }
}

impl std::error::Error for Refused {}

/// Wait for the turn `rations` gives this request, if it is for an own route (never the
/// challenge route). The connection stays idle meanwhile, so the connection budget may
/// still close it to make room; Err when the request is refused.
async fn take_turn(shared: &Shared, path: &str, ticket: &Ticket) -> Result<(), Refused> {
    let Some(route) = OwnRoute::of(path) else {
        return Ok(());
    };
    let counters = shared.fast.counters();
    match shared.rations.reserve(route, ticket.ip(), Instant::now()) {
        Turn::Now => Ok(()),
        Turn::Wait(d) => {
            counters.rationed(route, Rationed::Parked);
            tokio::time::sleep(d).await;
            Ok(())
        }
        Turn::Refuse(d) => {
            counters.rationed(route, Rationed::Refused);
            tracing::debug!(client = %ticket.ip(), ?route, "request refused: over the route's budget");
            tokio::time::sleep(d).await;
            Err(Refused)
        }
    }
}

/// A response of the fast path (`Left`) or of the router (`Right`).
type Answer = hyper::Response<Either<Full<Bytes>, axum::body::Body>>;

/// One request: the Host rule, the own routes' turn, then the fast path or the router.
async fn answer(
    shared: &Shared,
    ticket: &Ticket,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<Answer, Refused> {
    let host = host::check(&req);
    if let Some(token) = routes::fast_token(&req).filter(|_| host.is_ok()) {
        ticket.busy();
        let r = routes::token_response(&shared.fast, token)
            .await
            .map(Either::Left);
        ticket.idle();
        return Ok(r);
    }
    // Parked here, before `busy`: a parked task is not polled (no CPU) and its connection
    // stays evictable.
    take_turn(shared, req.uri().path(), ticket).await?;
    ticket.busy();
    let r = match host {
        Ok(()) => {
            use hyper::service::Service as _;
            let svc = hyper_util::service::TowerToHyperService::new(shared.router.clone());
            match svc.call(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            }
        }
        // Closed after the answer, as nginx does: what follows a malformed request on the
        // same connection is not trusted either.
        Err(e) => {
            let mut r = routes::text(StatusCode::BAD_REQUEST, e.message().to_vec());
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
    };
    ticket.idle();
    Ok(r.map(Either::Right))
}

async fn serve_http(
    stream: tokio::net::TcpStream,
    shared: Arc<Shared>,
    ticket: Arc<Ticket>,
    shutdown: CancellationToken,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let server = shared.fast.clone();
    let svc_ticket = ticket.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let ticket = svc_ticket.clone();
        let shared = shared.clone();
        async move { answer(&shared, &ticket, req).await }
    });
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_headers(64)
        .max_buf_size(16 * 1024)
        // Head and a ~90-byte body copied into one buffer and sent with one write(2): cheaper
        // than writev(2) of two pieces for answers this small (measured with bench-serve).
        .writev(false)
        // A client that sends its request and then shuts down its write side (as some
        // probes and `nc -N` do) still gets the answer.
        .half_close(true)
        .keep_alive(true);
    let conn = b.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = tokio::time::sleep(CONNECTION_LIFETIME) => {}
        // One branch for eviction and shutdown (the eviction token is the shutdown token's
        // child): every branch is polled each time the connection wakes, once per request.
        _ = ticket.evicted() => if shutdown.is_cancelled() {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        } else {
            server.counters().evicted();
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::rations::MonitorLimits;
    use crate::status::Status;

    /// An idle connection's whole cost is its task: keep that future small.
    #[tokio::test]
    async fn idle_connection_task_is_small() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _c = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (s, peer) = l.accept().await.unwrap();
        let b = Budget::new(ConnectionLimits::default(), &CancellationToken::new());
        let t = b.admit(peer.ip()).unwrap();
        let web = std::env::temp_dir();
        let server = NodeServer::new(web.clone(), web, || Status {
            node: "n".into(),
            lineages: vec![],
            targets: vec![],
        });
        let shared = Arc::new(Shared {
            router: routes::router(&server),
            fast: server,
            rations: Rations::new(MonitorLimits::default()),
        });
        let f = serve_connection(s, shared, t, CancellationToken::new());
        let size = std::mem::size_of_val(&f);
        eprintln!("serve_connection future: {size} bytes");
        assert!(size <= 1024, "{size}");
    }
}
