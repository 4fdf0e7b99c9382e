//! `[balancer]` and `[[balancer.service]]`: the layer-4 balancer on the VIP, its services
//! (default: http on 80, gridftp on 2811) and their health checks.
//!
//! Owns the validated `Balancer`, `Service`, `Scheduler` and `HealthCheck`. `[balancer.keepalived]`
//! is `keepalived`'s; running the balancer is `crate::balancer`'s.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::ctx::Ctx;
use super::keepalived::Keepalived;
use super::raw::{RawBalancer, RawService};
use super::serve::Serve;
use super::values::{
    duration, ip, is_short_name, millis, number, one_of, optional, secs, socket_addr,
};

/// The node server's health route, checked by the balancer's default http service.
pub(crate) const HEALTH_PATH: &str = "/.well-known/vipcert/health";

/// How the balancer picks a node for a new connection (IPVS names in `render`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheduler {
    /// Weighted least connections: fewest active connections per unit of weight.
    Wlc,
    /// Weighted round robin.
    Rr,
    /// Source hash: the same client address goes to the same node while it is up.
    Sh,
}

/// The names `[balancer] scheduler` accepts (the test holds them to `as_str`).
const SCHEDULERS: &[(&str, Scheduler)] = &[
    ("wlc", Scheduler::Wlc),
    ("rr", Scheduler::Rr),
    ("sh", Scheduler::Sh),
];

impl Scheduler {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scheduler::Wlc => "wlc",
            Scheduler::Rr => "rr",
            Scheduler::Sh => "sh",
        }
    }
}

/// A balancer health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HealthCheck {
    /// The TCP connect succeeds.
    Tcp,
    /// The node's first bytes start with this prefix (GridFTP greets "220").
    Banner(String),
    /// `GET <path>` answers 2xx.
    Http(String),
}

/// `check = ...` before its `expect` is looked at.
#[derive(Clone, Copy)]
enum CheckKind {
    Tcp,
    Banner,
    Http,
}

const CHECK_KINDS: &[(&str, CheckKind)] = &[
    ("tcp", CheckKind::Tcp),
    ("banner", CheckKind::Banner),
    ("http", CheckKind::Http),
];

impl HealthCheck {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            HealthCheck::Tcp => "tcp",
            HealthCheck::Banner(_) => "banner",
            HealthCheck::Http(_) => "http",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Service {
    pub(crate) name: String,
    pub(crate) port: u16,
    pub(crate) backend_port: u16,
    pub(crate) check: HealthCheck,
    pub(crate) idle_timeout: Duration,
    /// TCP keepalive idle time on both legs; None: off.
    pub(crate) tcp_keepalive: Option<Duration>,
    /// Most clients proxied at once; more are closed at accept (each proxied client holds
    /// two descriptors), so a flood on one service cannot take another's descriptors.
    pub(crate) max_connections: u64,
}

/// Per-service default of `max_connections`: 10,000 clients are 20,000 descriptors, so the
/// two default services fit a 65,536 open-file limit with room to spare.
pub(crate) const DEFAULT_SERVICE_MAX_CONNECTIONS: u64 = 10_000;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Balancer {
    pub(crate) listen_address: IpAddr,
    pub(crate) scheduler: Scheduler,
    pub(crate) delay_loop: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) rise: u32,
    pub(crate) fall: u32,
    pub(crate) admin_listen: SocketAddr,
    /// Proxy worker threads, resolved (≥ 1).
    pub(crate) threads: usize,
    pub(crate) drain_timeout: Duration,
    pub(crate) services: Vec<Service>,
    pub(crate) keepalived: Keepalived,
}

/// Most proxy threads `balancer.threads` may ask for (0: one per CPU, up to this).
const MAX_THREADS: usize = 256;

impl Balancer {
    /// The balancer listens on the VIP by default and forwards http to the node server.
    pub(super) fn from_raw(
        b: &RawBalancer,
        virtual_ip: IpAddr,
        serve: &Serve,
        cx: &Ctx,
    ) -> anyhow::Result<Balancer> {
        let checks = |v, key, default| number(cx, key, v, default, 1..=100, " consecutive checks");
        Ok(Balancer {
            listen_address: optional(&b.listen_address, virtual_ip, |s| {
                ip(cx, "balancer.listen_address", s)
            })?,
            scheduler: optional(&b.scheduler, Scheduler::Wlc, |s| {
                one_of(cx, "balancer.scheduler", s, SCHEDULERS)
            })?,
            delay_loop: duration(
                cx,
                "balancer.delay_loop",
                &b.delay_loop,
                secs(10),
                millis(100)..=secs(3600),
            )?,
            connect_timeout: duration(
                cx,
                "balancer.connect_timeout",
                &b.connect_timeout,
                secs(3),
                millis(100)..=secs(300),
            )?,
            rise: checks(&b.rise, "balancer.rise", 2)?,
            fall: checks(&b.fall, "balancer.fall", 3)?,
            admin_listen: optional(
                &b.admin_listen,
                SocketAddr::from(([127, 0, 0, 1], 9811)),
                |s| socket_addr(cx, "balancer.admin_listen", s),
            )?,
            threads: match number(cx, "balancer.threads", &b.threads, 0, 0..=MAX_THREADS, "")? {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS)),
                n => n,
            },
            drain_timeout: duration(
                cx,
                "balancer.drain_timeout",
                &b.drain_timeout,
                secs(60),
                secs(0)..=secs(3600),
            )?,
            services: services(b, serve, cx)?,
            keepalived: Keepalived::from_raw(&b.keepalived, virtual_ip, cx)?,
        })
    }
}

/// The listed services, or the defaults when none is listed.
fn services(b: &RawBalancer, serve: &Serve, cx: &Ctx) -> anyhow::Result<Vec<Service>> {
    if b.services.is_empty() {
        return Ok(default_services(serve));
    }
    let mut names = HashSet::new();
    let mut ports = HashSet::new();
    let mut services = Vec::new();
    for s in &b.services {
        let r = s.get_ref();
        let name = r.name.get_ref().clone();
        if !is_short_name(&name, 64, b"-_") {
            return cx.err(
                r.name.span(),
                "balancer.service.name",
                format!("{name:?} must be 1-64 letters, digits, '-' or '_' (it labels metrics)"),
            );
        }
        if !names.insert(name.clone()) {
            return cx.err(
                r.name.span(),
                "balancer.service.name",
                format!("service {name:?} is listed twice"),
            );
        }
        let port = *r.port.get_ref();
        if port == 0 || !ports.insert(port) {
            return cx.err(
                r.port.span(),
                "balancer.service.port",
                format!("port {port} is 0 or used by two services"),
            );
        }
        services.push(Service::from_raw(r, name, s.span(), cx)?);
    }
    Ok(services)
}

/// Port 80 lets the CA validate the virtual hostname on any node; 2811 is the GridFTP control
/// channel, which idles through whole transfers.
fn default_services(serve: &Serve) -> Vec<Service> {
    vec![
        Service {
            name: "http".into(),
            port: 80,
            backend_port: serve.first_port(),
            check: HealthCheck::Http(HEALTH_PATH.into()),
            idle_timeout: Duration::from_secs(300),
            tcp_keepalive: None,
            max_connections: DEFAULT_SERVICE_MAX_CONNECTIONS,
        },
        Service {
            name: "gridftp".into(),
            port: 2811,
            backend_port: 2811,
            check: HealthCheck::Banner("220".into()),
            idle_timeout: Duration::from_secs(7200),
            tcp_keepalive: Some(Duration::from_secs(60)),
            max_connections: DEFAULT_SERVICE_MAX_CONNECTIONS,
        },
    ]
}

impl Service {
    /// One listed service whose `name` and port are already checked; `span` is its table's.
    fn from_raw(
        r: &RawService,
        name: String,
        span: std::ops::Range<usize>,
        cx: &Ctx,
    ) -> anyhow::Result<Service> {
        let port = *r.port.get_ref();
        let check = health_check(r, span, cx)?;
        // GridFTP's control channel idles through whole transfers, so it gets long idle
        // timeouts and keepalives by default.
        let gridftp = port == 2811;
        let idle_default = Duration::from_secs(if gridftp { 7200 } else { 300 });
        let ka_default = Duration::from_secs(if gridftp { 60 } else { 0 });
        let idle_timeout = duration(
            cx,
            "balancer.service.idle_timeout",
            &r.idle_timeout,
            idle_default,
            secs(1)..=secs(7 * 86400),
        )?;
        // The kernel's TCP_KEEPIDLE stops at 32767 s.
        let ka = duration(
            cx,
            "balancer.service.tcp_keepalive",
            &r.tcp_keepalive,
            ka_default,
            secs(0)..=secs(32767),
        )?;
        Ok(Service {
            name,
            port,
            backend_port: super::values::port(
                cx,
                "balancer.service.backend_port",
                &r.backend_port,
                port,
            )?,
            check,
            idle_timeout,
            // "0s" is off; the kernel counts keepalive idle time in whole seconds.
            tcp_keepalive: (!ka.is_zero()).then_some(ka.max(Duration::from_secs(1))),
            max_connections: number(
                cx,
                "balancer.service.max_connections",
                &r.max_connections,
                DEFAULT_SERVICE_MAX_CONNECTIONS,
                1..=10_000_000,
                " connections",
            )?,
        })
    }
}

/// `check` and the `expect` that goes with it (tcp: none; banner: a prefix; http: a path).
fn health_check(
    r: &RawService,
    span: std::ops::Range<usize>,
    cx: &Ctx,
) -> anyhow::Result<HealthCheck> {
    let kind = optional(&r.check, CheckKind::Tcp, |c| {
        one_of(cx, "balancer.service.check", c, CHECK_KINDS)
    })?;
    match (kind, &r.expect) {
        (CheckKind::Tcp, None) => Ok(HealthCheck::Tcp),
        (CheckKind::Tcp, Some(e)) => cx.err(
            e.span(),
            "balancer.service.expect",
            "a tcp check expects nothing; use check = \"banner\" or \"http\"",
        ),
        (CheckKind::Banner, Some(e)) if !e.get_ref().is_empty() && e.get_ref().len() <= 512 => {
            Ok(HealthCheck::Banner(e.get_ref().clone()))
        }
        (CheckKind::Banner, _) => cx.err(
            span,
            "balancer.service.expect",
            "check = \"banner\" needs expect = the greeting prefix (1-512 bytes), e.g. \"220\"",
        ),
        (CheckKind::Http, expect) => {
            let p = expect
                .as_ref()
                .map_or(HEALTH_PATH, |e| e.get_ref())
                .to_string();
            if !p.starts_with('/') || p.len() > 1024 || p.bytes().any(|c| c <= b' ' || c == 0x7f) {
                return cx.err(
                    span,
                    "balancer.service.expect",
                    format!("{p:?} is not an http path like \"/.well-known/vipcert/health\""),
                );
            }
            Ok(HealthCheck::Http(p))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::keepalived::LvsMethod;
    use super::super::tests::{parse, GOOD};
    use super::*;

    #[test]
    fn scheduler_names_read_back_as_written() {
        for (name, s) in SCHEDULERS {
            assert_eq!(s.as_str(), *name);
        }
    }

    #[test]
    fn balancer_defaults_follow_the_serve_port_and_the_vip() {
        let c = parse(&GOOD.replace("0.0.0.0:80", "0.0.0.0:8081")).unwrap();
        let b = &c.balancer;
        assert_eq!(b.listen_address, c.virtual_ip);
        assert_eq!(b.scheduler, Scheduler::Wlc);
        assert_eq!((b.rise, b.fall), (2, 3));
        assert_eq!(b.delay_loop, Duration::from_secs(10));
        assert_eq!(b.connect_timeout, Duration::from_secs(3));
        assert_eq!(b.admin_listen, "127.0.0.1:9811".parse().unwrap());
        assert_eq!(b.services.len(), 2);
        let (http, gridftp) = (&b.services[0], &b.services[1]);
        assert_eq!((http.port, http.backend_port), (80, 8081));
        assert_eq!(http.check, HealthCheck::Http(HEALTH_PATH.into()));
        assert_eq!(http.tcp_keepalive, None);
        assert_eq!((gridftp.port, gridftp.backend_port), (2811, 2811));
        assert_eq!(gridftp.check, HealthCheck::Banner("220".into()));
        assert_eq!(gridftp.idle_timeout, Duration::from_secs(7200));
        assert_eq!(gridftp.tcp_keepalive, Some(Duration::from_secs(60)));
        assert_eq!(b.keepalived.lvs_method, LvsMethod::Dr);
    }

    #[test]
    fn balancer_services_parse_and_errors_name_the_line() {
        let svc = "[balancer]\nscheduler = \"sh\"\n[[balancer.service]]\nname = \"ftp\"\nport = 2811\ncheck = \"banner\"\nexpect = \"220\"\nidle_timeout = \"1h\"\ntcp_keepalive = \"0s\"\n";
        let c = parse(&format!("{GOOD}{svc}")).unwrap();
        let s = &c.balancer.services;
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].backend_port, 2811);
        assert_eq!(s[0].tcp_keepalive, None);
        assert_eq!(c.balancer.scheduler, Scheduler::Sh);
        let line_of =
            |text: &str, needle: &str| text[..text.find(needle).unwrap()].matches('\n').count() + 1;
        for (bad, needle, msg) in [
            (
                svc.replace("\"sh\"", "\"lc\""),
                "\"lc\"",
                "balancer.scheduler: \"lc\" is not one of wlc, rr, sh",
            ),
            (
                svc.replace("expect = \"220\"\n", ""),
                "[[balancer.service]]",
                "needs expect",
            ),
            (
                svc.replace("\"banner\"", "\"icmp\""),
                "\"icmp\"",
                "balancer.service.check",
            ),
            (
                svc.replace("\"1h\"", "\"soon\""),
                "\"soon\"",
                "balancer.service.idle_timeout",
            ),
            (
                format!("{svc}[[balancer.service]]\nname = \"b\"\nport = 2811\n"),
                "port = 2811\n\n",
                "used by two services",
            ),
        ] {
            let text = format!("{GOOD}{bad}");
            let e = format!("{:#}", parse(&text).unwrap_err());
            let want_line = if needle.ends_with("\n\n") {
                text.rfind("port = 2811")
                    .map(|i| text[..i].matches('\n').count() + 1)
                    .unwrap()
            } else {
                line_of(&text, needle)
            };
            assert!(
                e.contains(&format!("vipcert.toml:{want_line}:")),
                "{e} (want line {want_line})"
            );
            assert!(e.contains(msg), "{e}");
        }
        let e = format!(
            "{:#}",
            parse(&format!("{GOOD}[balancer]\nfall = 0\n")).unwrap_err()
        );
        assert!(
            e.contains("balancer.fall: must be between 1 and 100"),
            "{e}"
        );
    }
}
