//! The node server (`vipcert serve`): HTTP-01 challenge files from the shared webroot, a
//! health route for the balancer, and a public status route for `check --fleet`.
//!
//! Owns the routes, their security rules (token pattern, directory-relative no-follow open,
//! single-link files, 4 KiB cap, exactly one Host), the status cache, the connection limits
//! (header size and count, read timeouts, the connection budget in `budget`) and what SIGHUP
//! does to a running server (`hangup_loop`). It does
//! not define the status document (`status`), write challenge files (`acme`) or install
//! anything (`install`).
//!
//! Nothing on this port may make the challenge route wait: challenge files are read directly
//! (one small no-follow read, cheaper than a hop to a blocking pool), and the status document
//! is served from bytes refreshed at most once a second on its own thread.

mod budget;
mod host;
mod rations;
mod token;

pub use budget::ConnectionLimits;
use rations::{OwnRoute, Rations, Verdict};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::{Either, Full};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cert::{leaf_info, MAX_PEM_BYTES};
use crate::config::Config;
use crate::plan::Plan;
use crate::safefs::Dir;
use crate::status::{InstalledLineage, Status};
use crate::store::{valid_token, Store, MAX_TOKEN_FILE, STALE_CHALLENGE};

/// How often the status document is rebuilt (and at most how stale it is).
pub(crate) const STATUS_REFRESH: Duration = Duration::from_secs(1);
/// How often the health verdict is taken again.
const HEALTH_REFRESH: Duration = Duration::from_secs(1);
/// A health verdict older than this means the check itself hangs (a hard NFS mount that
/// stopped answering): the route then says 503, as the share is of no use either.
const HEALTH_STALE: Duration = Duration::from_secs(5);
/// A connection that sends no complete request header within this time is closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound on any one connection's life (the CA and probes need milliseconds).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(600);

/// Everything the routes need; cheap to clone.
#[derive(Clone)]
pub struct NodeServer {
    inner: Arc<Inner>,
}

struct Inner {
    webroot: token::Webroot,
    shared_dir: PathBuf,
    /// Builds the status document (reads installed files): only `refresh_status` calls it.
    observe: Box<dyn Fn() -> Status + Send + Sync>,
    /// The last status document, serialized: what the status route answers.
    status: RwLock<Bytes>,
    /// The last health verdict and when it was taken: what the health route answers.
    health: RwLock<(std::time::Instant, bool)>,
}

impl NodeServer {
    /// `observe` builds the status document (it reads installed files); it runs once here
    /// and then on every `refresh_status`, never per request.
    pub(crate) fn new(
        webroot: PathBuf,
        shared_dir: PathBuf,
        observe: impl Fn() -> Status + Send + Sync + 'static,
    ) -> Self {
        let s = NodeServer {
            inner: Arc::new(Inner {
                webroot: token::Webroot::new(webroot, &shared_dir),
                shared_dir,
                observe: Box::new(observe),
                status: RwLock::new(Bytes::new()),
                health: RwLock::new((std::time::Instant::now(), false)),
            }),
        };
        s.refresh_status();
        s.refresh_health();
        s
    }

    /// The server of `node`: webroot and health from the shared directory, status from the
    /// main install target of each lineage the node installs (under `root`).
    pub fn for_node(cfg: &Config, plan: &Plan, node: &str, root: &Path) -> Self {
        let store = Store::new(&cfg.shared_dir);
        let targets = crate::plan::targets(cfg, root);
        let target = targets[0].clone();
        let lineages: Vec<String> = plan.for_node(node).map(|l| l.name.clone()).collect();
        let node_name = node.to_string();
        let cfg = cfg.clone();
        NodeServer::new(store.webroot_path(), cfg.shared_dir.clone(), move || {
            let mut st = installed_status(&node_name, &lineages, &target.cert);
            // The policy's roots and chains as of now: ca_roots and current may have changed.
            let trust = crate::drift::Trust::load(&cfg, &store, &lineages).unwrap_or_else(|e| {
                tracing::warn!(error = %format!("{e:#}"), "status: judging chains against Mozilla's roots only");
                crate::drift::Trust {
                    anchors: crate::verify::Anchors::new(None).expect("no PEM to parse"),
                    chains: vec![],
                }
            });
            st.targets = crate::drift::observe_node(&lineages, &targets, &trust);
            st
        })
    }

    /// Observe the installed files again and replace the served status document. Blocking
    /// (file reads, key parsing): the refresher thread of `spawn_status_refresher` calls it
    /// once a second, so a new install shows within a second.
    pub(crate) fn refresh_status(&self) {
        let doc = (self.inner.observe)();
        let body = serde_json::to_vec(&doc).expect("status serializes");
        *self.inner.status.write().unwrap_or_else(|e| e.into_inner()) = Bytes::from(body);
    }

    /// Take the health verdict again: the shared directory lists and the webroot opens (a
    /// share that is mounted but lost its webroot cannot answer a challenge either).
    /// Blocking, on a hung NFS mount for as long as it hangs.
    fn refresh_health(&self) {
        let ok = Dir::open(&self.inner.shared_dir)
            .and_then(|d| d.list())
            .is_ok()
            && self.inner.webroot.open().is_ok();
        // Came back: the share answers (a verdict of "unreadable" is an answer too).
        self.inner.webroot.share_answered();
        *self.inner.health.write().unwrap_or_else(|e| e.into_inner()) =
            (std::time::Instant::now(), ok);
    }

    /// Refresh the status document every `STATUS_REFRESH` and the health verdict every
    /// `HEALTH_REFRESH`, each on a thread of its own (so that work never queues in a pool
    /// the routes use, and a status observation stuck on a file never holds up health),
    /// until `shutdown`.
    pub fn spawn_status_refresher(&self, shutdown: CancellationToken) -> std::io::Result<()> {
        let every = |name: &str, period: Duration, work: fn(&NodeServer)| {
            let (s, shutdown) = (self.clone(), shutdown.clone());
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    while !shutdown.is_cancelled() {
                        std::thread::sleep(period);
                        work(&s);
                    }
                })
                .map(drop)
        };
        every("vipcert-status", STATUS_REFRESH, NodeServer::refresh_status)?;
        every("vipcert-health", HEALTH_REFRESH, NodeServer::refresh_health)
    }

    /// The node server's routes: HTTP-01 tokens, challenge batches, health and status.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/.well-known/acme-challenge/{token}", get(challenge))
            .route("/.well-known/vipcert/challenges/{tokens}", get(challenges))
            .route("/.well-known/vipcert/health", get(health))
            .route("/.well-known/vipcert/status", get(status))
            .fallback(|| async { StatusCode::NOT_FOUND })
            .with_state(self.clone())
    }
}

/// Facts of the certificate installed at `cert_path` for each lineage.
pub(crate) fn installed_status(node: &str, lineages: &[String], cert_path: &Path) -> Status {
    let lineages = lineages
        .iter()
        .map(|l| {
            let mut e = InstalledLineage {
                lineage: l.clone(),
                path: cert_path.display().to_string(),
                sha256: None,
                serial: None,
                not_after: None,
                cn: None,
                names: vec![],
                error: None,
            };
            let read = cert_path
                .parent()
                .zip(cert_path.file_name())
                .ok_or_else(|| "not a file path".to_string())
                .and_then(|(dir, name)| {
                    Dir::open(dir)
                        .map_err(|e| e.to_string())?
                        .read(&name.to_string_lossy(), MAX_PEM_BYTES)
                        .map_err(|e| e.to_string())
                })
                .and_then(|pem| leaf_info(&pem).map_err(|e| e.to_string()));
            match read {
                Ok(info) => {
                    e.sha256 = Some(info.sha256);
                    e.serial = Some(info.serial);
                    e.not_after = Some(info.not_after);
                    e.cn = info.cn;
                    e.names = info.sans;
                }
                Err(msg) => e.error = Some(msg),
            }
            e
        })
        .collect();
    Status {
        node: node.to_string(),
        lineages,
        targets: vec![],
    }
}

fn text(code: StatusCode, body: Vec<u8>) -> Response {
    let mut r = (code, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// The prefix of the challenge route; what follows is the token.
const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

async fn challenge(State(s): State<NodeServer>, UrlPath(token): UrlPath<String>) -> Response {
    if !valid_token(&token) {
        return StatusCode::NOT_FOUND.into_response();
    }
    token_response(&s, &token).await.into_response()
}

/// The answer for a valid `token`, read where `token::place` says: in place (a ~90-byte
/// no-follow read costs less than the hop to the blocking pool, and a pool shared with
/// slower work is what made this route wait, issue 9), on the pool when that could stall
/// the server on a share that hangs, or not at all (503) when it hangs.
async fn token_response(s: &NodeServer, token: &str) -> http::Response<Full<Bytes>> {
    let now = std::time::Instant::now();
    let (place, in_place) = s.inner.webroot.place(now);
    match place {
        token::Place::Here => {
            let r = token::respond_at(&s.inner.webroot, token, now);
            drop(in_place);
            r
        }
        token::Place::Pool => {
            let (s, token) = (s.clone(), token.to_string());
            token::from_pool(move || token::respond(&s.inner.webroot, &token))
                .await
                .unwrap_or_else(token::unavailable)
        }
        token::Place::Hung => token::unavailable(),
    }
}

/// Most tokens in one `/.well-known/vipcert/challenges/` request (a certificate has at most
/// 100 names).
pub(crate) const MAX_BATCH_TOKENS: usize = 100;

/// `/.well-known/vipcert/challenges/{t1,t2,...}`: the readiness barrier's batch check. One
/// line per token, in order: `+<content>` when the file is served, `-` when not. Same rules
/// as the challenge route (token pattern, no-follow open, size cap).
async fn challenges(State(s): State<NodeServer>, UrlPath(tokens): UrlPath<String>) -> Response {
    let tokens: Vec<String> = tokens.split(',').map(str::to_string).collect();
    if tokens.len() > MAX_BATCH_TOKENS || !tokens.iter().all(|t| valid_token(t)) {
        return StatusCode::BAD_REQUEST.into_response();
    }
    // Same gate as the challenge route: never wait on a share that hangs.
    if s.inner.webroot.place(std::time::Instant::now()).0 == token::Place::Hung {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let server = s.clone();
    let read = move || -> std::io::Result<Vec<u8>> {
        let dir = s.inner.webroot.open()?;
        let mut out = Vec::new();
        for t in &tokens {
            match dir.read_served(t, MAX_TOKEN_FILE) {
                Ok(body) if !body.contains(&b'\n') => {
                    out.push(b'+');
                    out.extend_from_slice(&body);
                }
                _ => out.push(b'-'),
            }
            out.push(b'\n');
        }
        Ok(out)
    };
    match token::from_pool(read).await {
        Some(Ok(body)) => text(StatusCode::OK, body),
        Some(Err(e)) => {
            server.inner.webroot.warn_unreadable(&e);
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// The health verdict of at most a second ago: never rationed (the balancer's checks share
/// their address with every client it proxies) and so never a file-system call per request.
async fn health(State(s): State<NodeServer>) -> Response {
    let (at, ok) = *s.inner.health.read().unwrap_or_else(|e| e.into_inner());
    let age = at.elapsed();
    if age > HEALTH_STALE {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the shared directory check has not come back for {} s (a hung NFS mount?)\n",
                age.as_secs()
            )
            .into_bytes(),
        )
    } else if ok {
        text(StatusCode::OK, b"ok\n".to_vec())
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            b"shared directory or webroot unreadable\n".to_vec(),
        )
    }
}

async fn status(State(s): State<NodeServer>) -> Response {
    let body = s
        .inner
        .status
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// How often `serve` sweeps the webroot.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// `serve`'s sweeper: remove stale challenge/probe files now and every minute until shutdown.
pub async fn sweep_loop(store: Store, shutdown: CancellationToken) {
    loop {
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.sweep_webroot(STALE_CHALLENGE, valid_token))
            .await
        {
            Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "cannot sweep the webroot"),
            Err(e) => tracing::warn!(error = %e, "webroot sweep task failed"),
            Ok(Ok(_)) => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
        }
    }
}

/// `serve` on SIGHUP (`systemctl reload vipcert-serve`): take the status and health verdicts
/// again at once, and say whether `config` is still the file `serve` started with (`started`,
/// its bytes then). `serve` does not reload its configuration — listeners, limits and this
/// node's lineages are fixed at start — so a changed file is named as needing a restart. The
/// default action of SIGHUP, exiting with 129 and no word, never happens once this runs.
pub async fn hangup_loop(
    mut hup: tokio::signal::unix::Signal,
    server: NodeServer,
    config: PathBuf,
    started: Vec<u8>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = hup.recv() => if got.is_none() { return },
        }
        let (s, path) = (server.clone(), config.clone());
        let now = tokio::task::spawn_blocking(move || {
            s.refresh_status();
            s.refresh_health();
            std::fs::read(&path).map(|b| {
                let valid = Config::load(&path).map(drop);
                (b, valid)
            })
        })
        .await;
        let path = config.display();
        match now {
            Ok(Ok((b, _))) if b == started => {
                tracing::info!("SIGHUP: status and health taken again; {path} is unchanged")
            }
            Ok(Ok((_, Ok(())))) => tracing::warn!(
                "SIGHUP: status and health taken again; {path} changed since serve started, and serve does not reload its configuration: restart it to apply the change (systemctl restart vipcert-serve)"
            ),
            Ok(Ok((_, Err(e)))) => tracing::warn!(
                "SIGHUP: status and health taken again; {path} changed since serve started and is not valid, so serve goes on as it started: fix the file before restarting: {e:#}"
            ),
            Ok(Err(e)) => tracing::warn!(
                "SIGHUP: status and health taken again; cannot read {path} to compare: {e}"
            ),
            Err(e) => tracing::warn!("SIGHUP: the refresh task failed: {e}"),
        }
    }
}

/// Bind every address; fails naming the address (and the usual fix for port 80).
pub async fn bind(addrs: &[SocketAddr]) -> anyhow::Result<Vec<TcpListener>> {
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

/// Serve `router` on `listeners` until `shutdown` is cancelled, then give open connections a
/// moment to finish. Holds many idle connections cheaply (an idle socket gets no buffer
/// until it sends something); `limits` bounds them globally and per client address.
pub async fn run(
    listeners: Vec<TcpListener>,
    server: &NodeServer,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    server.inner.webroot.set_workers(workers);
    let shared = Arc::new(Shared {
        fast: server.clone(),
        router: server.router(),
        rations: Rations::new(limits.monitor),
    });
    let budget = budget::Budget::new(limits, &shutdown);
    for l in listeners {
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        let budget = budget.clone();
        let t2 = tracker.clone();
        tracker.spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    r = l.accept() => match r {
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
                let Some(ticket) = budget.admit(peer.ip()) else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let shutdown = shutdown.clone();
                t2.spawn(serve_connection(stream, shared.clone(), ticket, shutdown));
            }
        });
    }
    // Freed connection memory goes back to the system once a flood is over.
    let trim = tokio::spawn(async move {
        let mut t = tokio::time::interval(Duration::from_secs(1));
        loop {
            t.tick().await;
            if budget.flood_ended() {
                let _ = tokio::task::spawn_blocking(crate::limits::release_free_memory).await;
            }
        }
    });
    tracker.close();
    shutdown.cancelled().await;
    trim.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
}

/// What every connection of `run` uses.
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
    ticket: Arc<budget::Ticket>,
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
        _ = ticket.evicted() => return,
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
async fn take_turn(rations: &Rations, path: &str, ticket: &budget::Ticket) -> Result<(), Refused> {
    let Some(route) = OwnRoute::of(path) else {
        return Ok(());
    };
    match rations.reserve(route, ticket.ip(), std::time::Instant::now()) {
        Verdict::Now => Ok(()),
        Verdict::Wait(d) => {
            tokio::time::sleep(d).await;
            Ok(())
        }
        Verdict::Refuse(d) => {
            tracing::debug!(client = %ticket.ip(), ?route, "request refused: over the route's budget");
            tokio::time::sleep(d).await;
            Err(Refused)
        }
    }
}

/// A response of the fast path (`Left`) or of the router (`Right`).
type Answer = hyper::Response<Either<Full<Bytes>, axum::body::Body>>;

/// The token of a `GET /.well-known/acme-challenge/<token>` whose token is valid as it
/// stands: such a request is answered without the router (it is the route the CA needs,
/// and the router's matching, extraction and boxing were a third of its cost). Anything
/// else, including a token the router would percent-decode first, goes to the router.
fn fast_token<B>(req: &hyper::Request<B>) -> Option<&str> {
    if req.method() != http::Method::GET {
        return None;
    }
    let token = req.uri().path().strip_prefix(CHALLENGE_PREFIX)?;
    valid_token(token).then_some(token)
}

/// One request: the Host rule, the own routes' turn, then the fast path or the router.
async fn answer(
    shared: &Shared,
    ticket: &budget::Ticket,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<Answer, Refused> {
    let host = host::check(&req);
    if let Some(token) = fast_token(&req).filter(|_| host.is_ok()) {
        ticket.busy();
        let r = token_response(&shared.fast, token).await.map(Either::Left);
        ticket.idle();
        return Ok(r);
    }
    // Parked here, before `busy`: a parked task is not polled (no CPU) and its connection
    // stays evictable.
    take_turn(&shared.rations, req.uri().path(), ticket).await?;
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
            let mut r = text(StatusCode::BAD_REQUEST, e.message().to_vec());
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
    ticket: Arc<budget::Ticket>,
    shutdown: CancellationToken,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
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
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Health answers its last verdict, and 503 once that verdict is older than
    /// HEALTH_STALE: the check hangs (a dead hard NFS mount), so the share is of no use.
    #[tokio::test]
    async fn health_is_503_when_its_check_has_not_come_back() {
        let t = tempfile::tempdir().unwrap();
        let web = t.path().join("webroot");
        std::fs::create_dir(&web).unwrap();
        let server = NodeServer::new(web, t.path().to_path_buf(), || Status {
            node: "n".into(),
            lineages: vec![],
            targets: vec![],
        });
        assert_eq!(health(State(server.clone())).await.status(), StatusCode::OK);
        let long_ago = std::time::Instant::now()
            .checked_sub(HEALTH_STALE + Duration::from_secs(1))
            .unwrap();
        server.inner.health.write().unwrap().0 = long_ago;
        let r = health(State(server.clone())).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        // The next verdict (the refresher's) brings it back.
        server.refresh_health();
        assert_eq!(health(State(server)).await.status(), StatusCode::OK);
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// An idle connection's whole cost is its task: keep that future small.
    #[tokio::test]
    async fn idle_connection_task_is_small() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _c = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (s, peer) = l.accept().await.unwrap();
        let b = budget::Budget::new(ConnectionLimits::default(), &CancellationToken::new());
        let t = b.admit(peer.ip()).unwrap();
        let web = std::env::temp_dir();
        let server = NodeServer::new(web.clone(), web, || Status {
            node: "n".into(),
            lineages: vec![],
            targets: vec![],
        });
        let shared = Arc::new(Shared {
            router: server.router(),
            fast: server,
            rations: Rations::new(rations::MonitorLimits::default()),
        });
        let f = serve_connection(s, shared, t, CancellationToken::new());
        let size = std::mem::size_of_val(&f);
        eprintln!("serve_connection future: {size} bytes");
        assert!(size <= 1024, "{size}");
    }
}
