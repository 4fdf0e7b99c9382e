//! Prometheus text exposition of the balancer's counters, and the admin listener that serves
//! it at `/metrics`.
//!
//! Owns metric names and labels (docs/balancer.md lists them). It reads the counters kept by
//! `pool`; it changes nothing.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use axum::http::header;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use super::pool::Pool;

/// Process-wide counters that belong to no service.
#[derive(Debug, Default)]
pub(crate) struct Process {
    pub(crate) reloads: AtomicU64,
    pub(crate) reload_errors: AtomicU64,
}

/// Escape a label value (backslash, quote, newline).
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The text exposition format, version 0.0.4.
pub(crate) fn render(pools: &[Arc<Pool>], process: &Process) -> String {
    let mut out = String::new();
    type Get = fn(&super::pool::Backend) -> u64;
    let per_backend: [(&str, &str, &str, Get); 8] = [
        (
            "vipcert_balancer_backend_up",
            "gauge",
            "1 when the backend passes its health checks",
            |b| b.up.load(Ordering::Relaxed) as u64,
        ),
        (
            "vipcert_balancer_backend_weight",
            "gauge",
            "Configured weight (0: draining)",
            |b| b.weight.load(Ordering::Relaxed) as u64,
        ),
        (
            "vipcert_balancer_connections_active",
            "gauge",
            "Client connections open to the backend now",
            |b| b.active.load(Ordering::Relaxed),
        ),
        (
            "vipcert_balancer_connections_total",
            "counter",
            "Client connections proxied to the backend",
            |b| b.total.load(Ordering::Relaxed),
        ),
        (
            "vipcert_balancer_connect_failures_total",
            "counter",
            "Connects to the backend that failed (the client was retried elsewhere)",
            |b| b.connect_failures.load(Ordering::Relaxed),
        ),
        (
            "vipcert_balancer_bytes_in_total",
            "counter",
            "Bytes from clients to the backend",
            |b| b.bytes_in.get(),
        ),
        (
            "vipcert_balancer_bytes_out_total",
            "counter",
            "Bytes from the backend to clients",
            |b| b.bytes_out.get(),
        ),
        (
            "vipcert_balancer_backend_info",
            "gauge",
            "Always 1; labels name the backend's address",
            |_| 1,
        ),
    ];
    let lists: Vec<_> = pools.iter().map(|p| (p, p.backends())).collect();
    for (name, kind, help, get) in per_backend {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (p, list) in &lists {
            for b in list.iter() {
                let extra = if name.ends_with("_info") {
                    format!(",address=\"{}\"", b.addr)
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "{name}{{service=\"{}\",backend=\"{}\"{extra}}} {}",
                    esc(&p.name),
                    esc(&b.node),
                    get(b)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP vipcert_balancer_refused_total Clients closed by the balancer's own limits: reason=\"limit\" (the service's max_connections), \"descriptors\" (out of file descriptors)\n# TYPE vipcert_balancer_refused_total counter"
    );
    for p in pools {
        for (reason, n) in [
            ("limit", &p.refused_limit),
            ("descriptors", &p.refused_descriptors),
        ] {
            let _ = writeln!(
                out,
                "vipcert_balancer_refused_total{{service=\"{}\",reason=\"{reason}\"}} {}",
                esc(&p.name),
                n.load(Ordering::Relaxed)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP vipcert_balancer_rejected_total Clients closed because no backend was usable\n# TYPE vipcert_balancer_rejected_total counter"
    );
    for p in pools {
        let _ = writeln!(
            out,
            "vipcert_balancer_rejected_total{{service=\"{}\"}} {}",
            esc(&p.name),
            p.rejected.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP vipcert_balancer_reloads_total Configuration reloads applied (SIGHUP)\n# TYPE vipcert_balancer_reloads_total counter\nvipcert_balancer_reloads_total {}",
        process.reloads.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP vipcert_balancer_reload_errors_total Reloads refused because the file was invalid\n# TYPE vipcert_balancer_reload_errors_total counter\nvipcert_balancer_reload_errors_total {}",
        process.reload_errors.load(Ordering::Relaxed)
    );
    out
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

/// Serve `GET /metrics` on `listener` until `stop`.
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
            async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body) }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .context("admin listener")?;
    Ok(())
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
        assert_eq!(esc("a\"b\\c"), "a\\\"b\\\\c");
    }
}
