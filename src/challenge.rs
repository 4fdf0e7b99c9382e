//! The node server (`vipcert serve`): HTTP-01 challenge files from the shared webroot, a
//! health route for the balancer, and a public status route for `check --fleet`.
//!
//! Owns the routes, their security rules (token pattern, directory-relative no-follow open,
//! 4 KiB cap) and the connection limits (header size and count, read timeouts, connection
//! cap). It does not write challenge files (`acme`) or install anything (`install`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cert::{leaf_info, MAX_PEM_BYTES};
use crate::config::Config;
use crate::plan::Plan;
use crate::safefs::{Dir, ReadError};
use crate::store::Store;

/// Largest challenge file served (a key authorization is ~90 bytes).
pub const MAX_TOKEN_FILE: u64 = 4096;
/// Most connections held at once; beyond this, new connections wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 16_384;
/// A connection that sends no complete request header within this time is closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound on any one connection's life (the CA and probes need milliseconds).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(600);

/// `^[A-Za-z0-9_-]{1,128}$`: the base64url alphabet of RFC 8555 tokens.
pub fn valid_token(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What `/.well-known/vipcert/status` returns. Public data only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub node: String,
    pub lineages: Vec<InstalledLineage>,
    /// Every install target of every lineage, as `check --fleet` evaluates them (file
    /// metadata, certificate facts, whether the key matches; never key material).
    #[serde(default)]
    pub targets: Vec<crate::drift::Observation>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstalledLineage {
    pub lineage: String,
    /// Installed certificate path on the node.
    pub path: String,
    /// None when the installed certificate cannot be read or parsed; `error` says why.
    pub sha256: Option<String>,
    pub serial: Option<String>,
    pub not_after: Option<i64>,
    pub cn: Option<String>,
    pub names: Vec<String>,
    pub error: Option<String>,
}

/// Everything the routes need; cheap to clone.
#[derive(Clone)]
pub struct NodeServer {
    inner: Arc<Inner>,
}

struct Inner {
    webroot: PathBuf,
    shared_dir: PathBuf,
    status: Box<dyn Fn() -> Status + Send + Sync>,
}

impl NodeServer {
    /// `status` computes the status document on demand (it reads installed files).
    pub fn new(
        webroot: PathBuf,
        shared_dir: PathBuf,
        status: impl Fn() -> Status + Send + Sync + 'static,
    ) -> Self {
        NodeServer {
            inner: Arc::new(Inner {
                webroot,
                shared_dir,
                status: Box::new(status),
            }),
        }
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
pub fn installed_status(node: &str, lineages: &[String], cert_path: &Path) -> Status {
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

async fn challenge(State(s): State<NodeServer>, UrlPath(token): UrlPath<String>) -> Response {
    if !valid_token(&token) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let webroot = s.inner.webroot.clone();
    // NFS reads can block: keep them off the reactor threads.
    let res = tokio::task::spawn_blocking(move || {
        Dir::open(&webroot)
            .map_err(ReadError::from)
            .and_then(|d| d.read(&token, MAX_TOKEN_FILE))
    })
    .await;
    match res {
        Ok(Ok(body)) => text(StatusCode::OK, body),
        Ok(Err(ReadError::NotFound | ReadError::NotRegular | ReadError::TooLarge { .. })) => {
            StatusCode::NOT_FOUND.into_response()
        }
        Ok(Err(ReadError::Io(e))) => {
            tracing::warn!(error = %e, "cannot read the webroot");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Most tokens in one `/.well-known/vipcert/challenges/` request (a certificate has at most
/// 100 names).
pub const MAX_BATCH_TOKENS: usize = 100;

/// `/.well-known/vipcert/challenges/{t1,t2,...}`: the readiness barrier's batch check. One
/// line per token, in order: `+<content>` when the file is served, `-` when not. Same rules
/// as the challenge route (token pattern, no-follow open, size cap).
async fn challenges(State(s): State<NodeServer>, UrlPath(tokens): UrlPath<String>) -> Response {
    let tokens: Vec<String> = tokens.split(',').map(str::to_string).collect();
    if tokens.len() > MAX_BATCH_TOKENS || !tokens.iter().all(|t| valid_token(t)) {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let webroot = s.inner.webroot.clone();
    let res = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let dir = Dir::open(&webroot)?;
        let mut out = Vec::new();
        for t in &tokens {
            match dir.read(t, MAX_TOKEN_FILE) {
                Ok(body) if !body.contains(&b'\n') => {
                    out.push(b'+');
                    out.extend_from_slice(&body);
                }
                _ => out.push(b'-'),
            }
            out.push(b'\n');
        }
        Ok(out)
    })
    .await;
    match res {
        Ok(Ok(body)) => text(StatusCode::OK, body),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the webroot");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn health(State(s): State<NodeServer>) -> Response {
    let (dir, web) = (s.inner.shared_dir.clone(), s.inner.webroot.clone());
    // Both: a share that is mounted but lost its webroot cannot answer a challenge either.
    let ok = tokio::task::spawn_blocking(move || {
        Dir::open(&dir).and_then(|d| d.list()).is_ok() && Dir::open(&web).is_ok()
    })
    .await
    .unwrap_or(false);
    if ok {
        text(StatusCode::OK, b"ok\n".to_vec())
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            b"shared directory or webroot unreadable\n".to_vec(),
        )
    }
}

async fn status(State(s): State<NodeServer>) -> Response {
    let s2 = s.clone();
    match tokio::task::spawn_blocking(move || (s2.inner.status)()).await {
        Ok(st) => axum::Json(st).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Challenge and probe files older than this are a killed run's leftovers (an order's
/// challenges live for at most a few minutes).
pub const STALE_CHALLENGE: Duration = Duration::from_secs(600);
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
/// moment to finish. Holds many idle connections cheaply; each connection is bounded.
pub async fn run(listeners: Vec<TcpListener>, router: Router, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    for l in listeners {
        let router = router.clone();
        let shutdown = shutdown.clone();
        let limit = limit.clone();
        let t2 = tracker.clone();
        tracker.spawn(async move {
            loop {
                let permit = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    p = limit.clone().acquire_owned() => p.expect("semaphore never closed"),
                };
                let (stream, _peer) = tokio::select! {
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
                let _ = stream.set_nodelay(true);
                let router = router.clone();
                let shutdown = shutdown.clone();
                t2.spawn(async move {
                    serve_connection(stream, router, shutdown).await;
                    drop(permit);
                });
            }
        });
    }
    tracker.close();
    shutdown.cancelled().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    router: Router,
    shutdown: CancellationToken,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let svc = hyper_util::service::TowerToHyperService::new(router);
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_headers(64)
        .max_buf_size(16 * 1024)
        .keep_alive(true);
    let conn = b.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = tokio::time::sleep(CONNECTION_LIFETIME) => {}
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_pattern() {
        assert!(valid_token("abc-DEF_123"));
        assert!(valid_token(&"a".repeat(128)));
        assert!(!valid_token(&"a".repeat(129)));
        for bad in [
            "",
            "..",
            "a/b",
            "a.b",
            "%2e",
            "a b",
            "/etc/passwd",
            ".hidden",
        ] {
            assert!(!valid_token(bad), "{bad}");
        }
    }
}
