//! The small HTTP listener a Prometheus server scrapes: `GET /metrics` answered with a page
//! in the text format (`crate::metrics`), bounded so that a flood or a slowloris on the port
//! takes nothing from the daemon's real work. The balancer's `[balancer] admin_listen` and
//! the node server's `[serve] metrics_listen` are two of these.
//!
//! Owns the bounds (a few connections at once, the oldest closed for a new one; one request
//! per connection; a deadline; a request head of at most 16 KiB) and the route. It does not
//! bind the socket (each daemon binds its own, as its other listeners) nor write the page:
//! the caller's `page` does, once per request.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::header;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::metrics::CONTENT_TYPE;

/// Most scrape connections open at once: a new one past this closes the oldest.
const MAX_CONNECTIONS: usize = 16;

/// How long one connection may take to send its request and be answered. One request per
/// connection: a scraper (Prometheus, keepalived's curl) asks once a second at most.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// The connections open now, oldest first: (id, what closes it).
type Open = Arc<Mutex<VecDeque<(u64, CancellationToken)>>>;

/// Serve `GET /metrics` on `listener` until `stop`, each answer the text `page` writes then.
/// Bounded: at most [`MAX_CONNECTIONS`] at once, the oldest closed for a new one; each
/// connection gets one request and [`CONNECTION_TIMEOUT`]; requests over 16 KiB are refused.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    page: impl Fn() -> String + Clone + Send + Sync + 'static,
    stop: CancellationToken,
) {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let body = page();
            async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], body) }
        }),
    );
    let open: Open = Arc::default();
    let mut next_id = 0u64;
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "metrics listener: accept failed, retrying in 100 ms");
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
                _ = tokio::time::sleep(CONNECTION_TIMEOUT) => {}
            }
            lock(&open).retain(|(i, _)| *i != id);
        });
    }
}

fn lock(open: &Open) -> std::sync::MutexGuard<'_, VecDeque<(u64, CancellationToken)>> {
    open.lock().unwrap_or_else(|p| p.into_inner())
}

/// Count connection `id` in; at [`MAX_CONNECTIONS`], close the oldest first.
fn admit(open: &Open, id: u64, gone: CancellationToken) {
    let mut q = lock(open);
    while q.len() >= MAX_CONNECTIONS {
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// The page is written per request, in the format's content type; nothing else is
    /// served; the oldest of too many open connections is closed for a new one.
    #[tokio::test]
    async fn serves_the_page_fresh_and_only_at_metrics() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let m = n.clone();
        let page = move || {
            let v = m.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("x_scrapes {v}\n")
        };
        let stop = CancellationToken::new();
        tokio::spawn(serve(l, page, stop.clone()));
        let first = get(addr, "/metrics").await;
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        assert!(
            first.contains("content-type: text/plain; version=0.0.4"),
            "{first}"
        );
        assert!(first.ends_with("x_scrapes 0\n"), "{first}");
        assert!(get(addr, "/metrics").await.ends_with("x_scrapes 1\n"));
        assert!(get(addr, "/").await.starts_with("HTTP/1.1 404"));
        let open: Open = Arc::default();
        let tokens: Vec<_> = (0..=MAX_CONNECTIONS as u64)
            .map(|i| {
                let t = CancellationToken::new();
                admit(&open, i, t.clone());
                t
            })
            .collect();
        assert!(tokens[0].is_cancelled() && !tokens[1].is_cancelled());
        assert_eq!(lock(&open).len(), MAX_CONNECTIONS);
        stop.cancel();
    }
}
