//! `[serve]`: where the node server listens and how often `serve --watch` polls the store.
//!
//! Owns the validated `Serve`. It does not serve anything: that is `challenge`.

use std::net::SocketAddr;
use std::time::Duration;

use super::raw::RawServe;
use super::values::{duration, socket_addr};
use super::Ctx;

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
            Some(v) => v
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
                Duration::from_secs(30),
                ..,
            )?,
        })
    }

    /// The first listen port: what the balancer and `check` reach a node's server on.
    pub(super) fn first_port(&self) -> u16 {
        self.listen.first().map_or(80, |a| a.port())
    }
}
