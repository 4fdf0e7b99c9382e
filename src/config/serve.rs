//! `[serve]`: where the node server listens and how often `serve --watch` polls the store.
//!
//! Owns the validated `Serve`. It does not serve anything: that is `challenge`.

use std::net::SocketAddr;
use std::time::Duration;

use super::raw::RawServe;
use super::values::{duration, millis, secs, socket_addr};
use super::Ctx;

/// Addresses `[serve] listen` may list (one per interface is already generous).
const MAX_LISTEN: usize = 16;

#[derive(Debug, Clone)]
pub struct Serve {
    pub listen: Vec<SocketAddr>,
    pub watch_interval: Duration,
}

impl Serve {
    pub(super) fn from_raw(raw: &RawServe, cx: &Ctx) -> anyhow::Result<Serve> {
        let listen = match &raw.listen {
            // Port 80: where the CA sends HTTP-01 requests.
            None => vec![SocketAddr::from(([0, 0, 0, 0], 80))],
            Some(v) if v.get_ref().is_empty() || v.get_ref().len() > MAX_LISTEN => {
                return cx.err(
                    v.span(),
                    "serve.listen",
                    format!("list 1 to {MAX_LISTEN} ip:port addresses; the CA needs port 80"),
                )
            }
            Some(v) => v
                .get_ref()
                .iter()
                .map(|s| socket_addr(cx, "serve.listen", s))
                .collect::<anyhow::Result<_>>()?,
        };
        Ok(Serve {
            listen,
            watch_interval: duration(
                cx,
                "serve.watch_interval",
                &raw.watch_interval,
                secs(30),
                // Zero would spin; past an hour a new certificate waits too long to install.
                millis(100)..=secs(3600),
            )?,
        })
    }

    /// The first listen port: what the balancer and `check` reach a node's server on.
    pub(super) fn first_port(&self) -> u16 {
        self.listen.first().map_or(80, |a| a.port())
    }
}
