//! `[serve]`: where the node server listens, how many connections it holds, how
//! `serve --watch` notices a new version (which watcher, how often the poll watcher scans the
//! store), and where its metrics page listens (never on the public port).
//!
//! Owns the validated `Serve`. It does not serve anything: that is `serve`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use toml::Spanned;

use super::ctx::Ctx;
use super::raw::RawServe;
use super::values::{duration, host_ip, millis, number, one_of, optional, secs, socket_addr};

/// Addresses `[serve] listen` may list (one per interface is already generous).
const MAX_LISTEN: usize = 16;
/// Balancer addresses `[serve] proxy_addresses` may list (a VRRP group is a handful of hosts).
const MAX_PROXIES: usize = 16;

/// `[serve]`: the node server's addresses and how `serve --watch` notices a new `current`.
#[derive(Debug, Clone)]
pub struct Serve {
    /// Addresses `vipcert serve` listens on.
    pub listen: Vec<SocketAddr>,
    /// inotify, polling, or chosen by filesystem.
    pub watch: WatchMode,
    /// The poll watcher's scan interval.
    pub watch_interval: Duration,
    /// Most connections held at once, and from one client address.
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_address: usize,
    /// Addresses the per-address cap does not apply to: the hosts running `vipcert balance`
    /// in front of this node, whose connections carry every client of the VIP.
    pub(crate) proxy_addresses: Vec<IpAddr>,
    /// Requests per second each own route (status, challenge batches, unknown paths)
    /// answers, shared fairly between client addresses; never the challenge or health route.
    pub(crate) monitor_rate: u32,
    /// Longest such a request is parked waiting for its turn.
    pub(crate) monitor_wait: Duration,
    /// Where the Prometheus `/metrics` page listens; None: no metrics listener.
    pub(crate) metrics_listen: Option<SocketAddr>,
}

/// 16,384 in all: a few tens of MB at most; a CA and `check --fleet` need a handful.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 16_384;
/// 256 per address: a CA validates from a few addresses with a few connections each; one
/// attacking address gets no more than this.
pub(crate) const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 256;

/// 100 a second per own route: `check --fleet` and the readiness barrier need a few;
/// answered at full rate, a flood of them delays the CA (issue 9).
pub(crate) const DEFAULT_MONITOR_RATE: u32 = 100;
/// A request parked longer than this is refused (its connection closed): a client that
/// asks far more often than its share only ever sees its turn move further away.
pub(crate) const DEFAULT_MONITOR_WAIT: Duration = Duration::from_secs(10);

/// `max_connections` (64..=1,000,000) and `max_connections_per_address` (1..=max).
fn limits(raw: &RawServe, cx: &Ctx) -> anyhow::Result<(usize, usize)> {
    let max = number(
        cx,
        "serve.max_connections",
        &raw.max_connections,
        DEFAULT_MAX_CONNECTIONS,
        64..=1_000_000,
        " connections",
    )?;
    let per = number(
        cx,
        "serve.max_connections_per_address",
        &raw.max_connections_per_address,
        DEFAULT_MAX_CONNECTIONS_PER_ADDRESS.min(max),
        1..=max,
        " connections (at most serve.max_connections)",
    )?;
    Ok((max, per))
}

/// `metrics_listen`: an `ip:port` on another port than every `listen` address and never port
/// 80. The page tells counts and expiry dates to whoever asks: it belongs on an address the
/// Prometheus server reaches, not on the port the CA (and the internet) is sent to.
fn metrics_listen(
    cx: &Ctx,
    v: &Spanned<String>,
    listen: &[SocketAddr],
) -> anyhow::Result<Option<SocketAddr>> {
    let key = "serve.metrics_listen";
    let a = socket_addr(cx, key, v)?;
    let why = if a.port() == 80 {
        format!("{a}: port 80 is the public port the CA validates HTTP-01 on; give the metrics page a port of its own, e.g. \"127.0.0.1:9812\" or \"0.0.0.0:9812\"")
    } else if let Some(l) = listen.iter().find(|l| l.port() == a.port()) {
        format!("{a}: port {} is [serve] listen's ({l}), the public port; give the metrics page a port of its own, e.g. 9812", a.port())
    } else {
        return Ok(Some(a));
    };
    cx.err(v.span(), key, why)
}

/// `proxy_addresses`: at most `MAX_PROXIES` host addresses.
fn proxies(cx: &Ctx, v: &Spanned<Vec<Spanned<String>>>) -> anyhow::Result<Vec<IpAddr>> {
    if v.get_ref().len() > MAX_PROXIES {
        let why = format!("list at most {MAX_PROXIES} balancer addresses");
        return cx.err(v.span(), "serve.proxy_addresses", why);
    }
    let each = |s| host_ip(cx, "serve.proxy_addresses", s);
    v.get_ref().iter().map(each).collect()
}

/// `[serve] watch`: how `serve --watch` notices a new `current`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WatchMode {
    /// inotify where the store is on a local filesystem, polling where it is on a network,
    /// cluster or FUSE filesystem (by the `statfs` magic number).
    #[default]
    Auto,
    /// inotify, whatever the filesystem (sees only this host's writes).
    Inotify,
    /// Scan every `[serve] watch_interval`.
    Poll,
}

const WATCH_MODES: &[(&str, WatchMode)] = &[
    ("auto", WatchMode::Auto),
    ("inotify", WatchMode::Inotify),
    ("poll", WatchMode::Poll),
];

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
        let (max_connections, max_connections_per_address) = limits(raw, cx)?;
        let proxy_addresses = optional(&raw.proxy_addresses, vec![], |v| proxies(cx, v))?;
        let metrics_listen = optional(&raw.metrics_listen, None, |v| {
            metrics_listen(cx, v, &listen)
        })?;
        Ok(Serve {
            monitor_rate: number(
                cx,
                "serve.monitor_rate",
                &raw.monitor_rate,
                DEFAULT_MONITOR_RATE,
                1..=1_000_000,
                " requests per second",
            )?,
            monitor_wait: duration(
                cx,
                "serve.monitor_wait",
                &raw.monitor_wait,
                DEFAULT_MONITOR_WAIT,
                // At least a moment (else every request over its share is refused); at most
                // a minute, past any monitoring client's timeout.
                millis(100)..=secs(60),
            )?,
            listen,
            watch: optional(&raw.watch, WatchMode::Auto, |w| {
                one_of(cx, "serve.watch", w, WATCH_MODES)
            })?,
            watch_interval: duration(
                cx,
                "serve.watch_interval",
                &raw.watch_interval,
                secs(30),
                // The poll watcher rescans the store at this pace: zero would spin, and a
                // node more than an hour behind its peers is not watching any more.
                millis(100)..=secs(3600),
            )?,
            max_connections,
            max_connections_per_address,
            proxy_addresses,
            metrics_listen,
        })
    }

    /// The first listen port: what the balancer and `check` reach a node's server on.
    pub(super) fn first_port(&self) -> u16 {
        self.listen.first().map_or(80, |a| a.port())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{parse, GOOD};
    use super::WatchMode;
    use std::time::Duration;

    #[test]
    fn watch_mode_is_auto_unless_forced_and_typos_are_named() {
        assert_eq!(parse(GOOD).unwrap().serve.watch, WatchMode::Auto);
        for (v, want) in [("inotify", WatchMode::Inotify), ("poll", WatchMode::Poll)] {
            let c = GOOD.replace("[serve]\n", &format!("[serve]\nwatch = \"{v}\"\n"));
            assert_eq!(parse(&c).unwrap().serve.watch, want);
        }
        let c = GOOD.replace("[serve]\n", "[serve]\nwatch = \"polling\"\n");
        let e = format!("{:#}", parse(&c).unwrap_err());
        assert!(
            e.contains("serve.watch") && e.contains("auto, inotify, poll"),
            "{e}"
        );
    }

    #[test]
    fn monitor_budget_defaults_and_bounds() {
        let s = parse(GOOD).unwrap().serve;
        assert_eq!(
            (s.monitor_rate, s.monitor_wait),
            (100, Duration::from_secs(10))
        );
        let c = GOOD.replace(
            "[serve]\n",
            "[serve]\nmonitor_rate = 5\nmonitor_wait = \"2s\"\n",
        );
        let s = parse(&c).unwrap().serve;
        assert_eq!(
            (s.monitor_rate, s.monitor_wait),
            (5, Duration::from_secs(2))
        );
        for (bad, key) in [
            ("monitor_rate = 0", "serve.monitor_rate"),
            ("monitor_wait = \"0s\"", "serve.monitor_wait"),
            ("monitor_wait = \"2m\"", "serve.monitor_wait"),
        ] {
            let c = GOOD.replace("[serve]\n", &format!("[serve]\n{bad}\n"));
            let e = format!("{:#}", parse(&c).unwrap_err());
            assert!(e.contains(key), "{bad}: {e}");
        }
    }

    /// Off unless set; never the public port (80, or any port `listen` names).
    #[test]
    fn metrics_listen_is_off_by_default_and_never_the_public_port() {
        assert_eq!(parse(GOOD).unwrap().serve.metrics_listen, None);
        let with = |v: &str| GOOD.replace("listen = [\"0.0.0.0:80\"]\n", &format!("{v}\n"));
        let s = parse(&with("metrics_listen = \"127.0.0.1:9812\""))
            .unwrap()
            .serve;
        assert_eq!(s.metrics_listen, Some("127.0.0.1:9812".parse().unwrap()));
        for (bad, says) in [
            (
                "metrics_listen = \"0.0.0.0:80\"",
                "port 80 is the public port",
            ),
            (
                "listen = [\"0.0.0.0:80\"]\nmetrics_listen = \"0.0.0.0:80\"",
                "port 80 is the public port",
            ),
            (
                "metrics_listen = \"127.0.0.1:80\"",
                "port 80 is the public port",
            ),
            (
                "listen = [\"192.0.2.11:8080\"]\nmetrics_listen = \"127.0.0.1:8080\"",
                "port 8080 is [serve] listen's (192.0.2.11:8080)",
            ),
            ("metrics_listen = \"127.0.0.1:0\"", "port 0"),
            ("metrics_listen = \"localhost:9812\"", "ip:port"),
        ] {
            let e = format!("{:#}", parse(&with(bad)).unwrap_err());
            assert!(
                e.contains("serve.metrics_listen") && e.contains(says),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn proxy_addresses_are_host_addresses() {
        assert!(parse(GOOD).unwrap().serve.proxy_addresses.is_empty());
        let c = GOOD.replace(
            "[serve]\n",
            "[serve]\nproxy_addresses = [\"192.0.2.5\", \"2001:db8::5\"]\n",
        );
        let got = parse(&c).unwrap().serve.proxy_addresses;
        assert_eq!(
            got,
            [
                "192.0.2.5".parse::<std::net::IpAddr>().unwrap(),
                "2001:db8::5".parse().unwrap()
            ]
        );
        for bad in ["\"0.0.0.0\"", "\"dtn1\""] {
            let c = GOOD.replace(
                "[serve]\n",
                &format!("[serve]\nproxy_addresses = [{bad}]\n"),
            );
            let e = format!("{:#}", parse(&c).unwrap_err());
            assert!(e.contains("serve.proxy_addresses"), "{e}");
        }
    }
}
