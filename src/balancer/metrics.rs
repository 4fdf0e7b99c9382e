//! The balancer's metrics page — its families as a table, written by `crate::metrics` — and
//! the admin listener that serves it at `/metrics` (bounded: a few connections at once, one
//! request each, a deadline).
//!
//! Owns the balancer's metric names and labels (docs/balancer.md lists them), not the format
//! (`crate::metrics`). It reads the counters kept by `pool`; it changes nothing.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::http::header;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use super::pool::{Backend, Pool};
use crate::metrics::{Exposition, Family, CONTENT_TYPE};

/// Process-wide counters that belong to no service.
#[derive(Debug, Default)]
pub(crate) struct Process {
    pub(crate) reloads: AtomicU64,
    pub(crate) reload_errors: AtomicU64,
}

/// A per-backend counter or gauge: which family, and how to read it off a backend.
type PerBackend = (Family, fn(&Backend) -> u64);

/// The families with one sample per (service, backend), in the order they are written.
const PER_BACKEND: [PerBackend; 7] = [
    (
        Family::gauge(
            "vipcert_balancer_backend_up",
            "1 when the backend passes its health checks",
        ),
        |b| b.up.load(Ordering::Relaxed) as u64,
    ),
    (
        Family::gauge(
            "vipcert_balancer_backend_weight",
            "Configured weight (0: draining)",
        ),
        |b| b.weight.load(Ordering::Relaxed) as u64,
    ),
    (
        Family::gauge(
            "vipcert_balancer_connections_active",
            "Client connections open to the backend now",
        ),
        |b| b.active.load(Ordering::Relaxed),
    ),
    (
        Family::counter(
            "vipcert_balancer_connections_total",
            "Client connections proxied to the backend",
        ),
        |b| b.total.load(Ordering::Relaxed),
    ),
    (
        Family::counter(
            "vipcert_balancer_connect_failures_total",
            "Connects to the backend that failed (the client was retried elsewhere)",
        ),
        |b| b.connect_failures.load(Ordering::Relaxed),
    ),
    (
        Family::counter(
            "vipcert_balancer_bytes_in_total",
            "Bytes from clients to the backend",
        ),
        |b| b.bytes_in.get(),
    ),
    (
        Family::counter(
            "vipcert_balancer_bytes_out_total",
            "Bytes from the backend to clients",
        ),
        |b| b.bytes_out.get(),
    ),
];

const BACKEND_INFO: Family = Family::gauge(
    "vipcert_balancer_backend_info",
    "Always 1; labels name the backend's address",
);
const REFUSED: Family = Family::counter(
    "vipcert_balancer_refused_total",
    "Clients closed by the balancer's own limits: reason=\"limit\" (the service's max_connections), \"descriptors\" (out of file descriptors)",
);
const REJECTED: Family = Family::counter(
    "vipcert_balancer_rejected_total",
    "Clients closed because no backend was usable",
);
const RELOADS: Family = Family::counter(
    "vipcert_balancer_reloads_total",
    "Configuration reloads applied (SIGHUP)",
);
const RELOAD_ERRORS: Family = Family::counter(
    "vipcert_balancer_reload_errors_total",
    "Reloads refused because the file was invalid",
);

/// The page `/metrics` serves.
pub(crate) fn render(pools: &[Arc<Pool>], process: &Process) -> String {
    let mut page = Exposition::default();
    let lists: Vec<_> = pools.iter().map(|p| (p, p.backends())).collect();
    let backends = || {
        lists
            .iter()
            .flat_map(|(p, list)| list.iter().map(move |b| (p, b)))
    };
    for (family, get) in &PER_BACKEND {
        let mut f = page.family(family);
        for (p, b) in backends() {
            f.sample(&[("service", &p.name), ("backend", &b.node)], get(b));
        }
    }
    let mut f = page.family(&BACKEND_INFO);
    for (p, b) in backends() {
        let address = b.addr.to_string();
        let labels = [
            ("service", &*p.name),
            ("backend", &b.node),
            ("address", &address),
        ];
        f.sample(&labels, 1);
    }
    let mut f = page.family(&REFUSED);
    for p in pools {
        for (reason, n) in [
            ("limit", &p.refused_limit),
            ("descriptors", &p.refused_descriptors),
        ] {
            let labels = [("service", &*p.name), ("reason", reason)];
            f.sample(&labels, n.load(Ordering::Relaxed));
        }
    }
    let mut f = page.family(&REJECTED);
    for p in pools {
        f.sample(&[("service", &p.name)], p.rejected.load(Ordering::Relaxed));
    }
    page.family(&RELOADS)
        .sample(&[], process.reloads.load(Ordering::Relaxed));
    page.family(&RELOAD_ERRORS)
        .sample(&[], process.reload_errors.load(Ordering::Relaxed));
    page.finish()
}

/// The admin listener (bound at start, so a port in use fails the start).
pub(crate) fn bind_admin(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    // Same socket setup as the service listeners (IP_FREEBIND: admin_listen may be on the VIP).
    let fd = super::proxy::listen(addr, false, None)
        .with_context(|| format!("cannot listen on balancer.admin_listen {addr}"))?;
    let l = tokio::net::TcpListener::from_std(std::net::TcpListener::from(fd))
        .with_context(|| format!("cannot listen on balancer.admin_listen {addr}"))?;
    tracing::info!(admin = %addr, "metrics at http://{addr}/metrics");
    Ok(l)
}

/// Most admin connections open at once: a new one past this closes the oldest. Taken from
/// the descriptors kept aside beside the proxied clients (`proxy::FdBudget::reserve`), so a
/// flood of admin connections cannot take the health checks' descriptors or the clients'.
const ADMIN_MAX_CONNECTIONS: usize = 16;

/// How long one admin connection may take to send its request and be answered. One request
/// per connection: a scraper (Prometheus, keepalived's curl) asks once a second at most.
const ADMIN_CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// The admin connections open now, oldest first: (id, what closes it).
type Open = Arc<Mutex<VecDeque<(u64, CancellationToken)>>>;

/// Serve `GET /metrics` on `listener` until `stop`. Bounded (a slowloris or a flood on the
/// admin port must not take what the data path and the checks need): at most
/// [`ADMIN_MAX_CONNECTIONS`] at once, the oldest closed for a new one; each connection gets
/// one request and [`ADMIN_CONNECTION_TIMEOUT`]; requests over 16 KiB are refused.
pub(crate) async fn serve_admin(
    listener: tokio::net::TcpListener,
    pools: Vec<Arc<Pool>>,
    process: Arc<Process>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let body = render(&pools, &process);
            async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], body) }
        }),
    );
    let open: Open = Arc::default();
    let mut next_id = 0u64;
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "admin listener: accept failed, retrying in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (id, gone) = (next_id, stop.child_token());
        next_id += 1;
        admit(&open, id, gone.clone());
        let (app, open) = (app.clone(), open.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = serve_one(stream, app) => {}
                _ = gone.cancelled() => {}
                _ = tokio::time::sleep(ADMIN_CONNECTION_TIMEOUT) => {}
            }
            lock(&open).retain(|(i, _)| *i != id);
        });
    }
}

fn lock(open: &Open) -> std::sync::MutexGuard<'_, VecDeque<(u64, CancellationToken)>> {
    open.lock().unwrap_or_else(|p| p.into_inner())
}

/// Count connection `id` in; at [`ADMIN_MAX_CONNECTIONS`], close the oldest first.
fn admit(open: &Open, id: u64, gone: CancellationToken) {
    let mut q = lock(open);
    while q.len() >= ADMIN_MAX_CONNECTIONS {
        if let Some((_, oldest)) = q.pop_front() {
            oldest.cancel();
        }
    }
    q.push_back((id, gone));
}

/// One request on `stream`, answered by `app`, then closed.
async fn serve_one(stream: tokio::net::TcpStream, app: Router) {
    let svc = hyper_util::service::TowerToHyperService::new(app);
    let mut b = hyper::server::conn::http1::Builder::new();
    b.keep_alive(false)
        .max_buf_size(16 * 1024)
        .max_headers(32)
        .half_close(true);
    let _ = b
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn renders_one_line_per_backend_and_escapes() {
        let cfg = crate::config::Config::parse(
            Path::new("/x.toml"),
            r#"
virtual_hostname = "vip.example.org"
virtual_ip = "192.0.2.10"
shared_dir = "/srv/vipcert"
layout = "shared"
[[node]]
hostname = "dtn1.example.org"
address = "192.0.2.11"
[[node]]
hostname = "dtn2.example.org"
address = "192.0.2.12"
weight = 0
"#,
        )
        .unwrap();
        let pools: Vec<_> = cfg
            .balancer
            .services
            .iter()
            .map(|s| Arc::new(Pool::new(&cfg, s)))
            .collect();
        pools[1].backends()[0].bytes_out.add(1234);
        let text = render(&pools, &Process::default());
        assert!(text.contains(
            "vipcert_balancer_backend_weight{service=\"http\",backend=\"dtn2.example.org\"} 0"
        ));
        assert!(text.contains(
            "vipcert_balancer_bytes_out_total{service=\"gridftp\",backend=\"dtn1.example.org\"} 1234"
        ));
        assert!(text.contains("address=\"192.0.2.12:2811\""));
        assert!(text.ends_with("vipcert_balancer_reload_errors_total 0\n"));
        assert_eq!(crate::metrics::label_value("a\"b\\c"), "a\\\"b\\\\c");
    }
}
