//! The balancer's metrics page — its families as a table, written by `crate::metrics` — and
//! the admin listener that serves it at `/metrics` (bound here; served, bounded, by
//! `crate::scrape`).
//!
//! Owns the balancer's metric names and labels (docs/balancer.md lists them), not the format
//! (`crate::metrics`). It reads the counters kept by `pool`; it changes nothing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use super::pool::{Backend, Pool};
use crate::metrics::{Exposition, Family};

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

/// Serve `GET /metrics` on `listener` until `stop` (bounded: `crate::scrape`).
pub(crate) async fn serve_admin(
    listener: tokio::net::TcpListener,
    pools: Vec<Arc<Pool>>,
    process: Arc<Process>,
    stop: CancellationToken,
) {
    crate::scrape::serve(listener, move || render(&pools, &process), stop).await
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
