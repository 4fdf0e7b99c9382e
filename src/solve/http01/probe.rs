//! HTTP-01 probes: fetch files from the shared webroot through every path a CA or client might
//! take (each name through DNS, the VIP and each node directly), with the outcome classes
//! (DNS, refused, timeout, 404, wrong body), their hints, and the table of failures.
//!
//! Owns the probe HTTP client (one keep-alive connection per endpoint, the node server's
//! batch route when it has one) and DNS resolution as the CA will do it (the system resolver
//! or `[preflight] resolver`). It does not write the files (`http01` does) nor decide when to
//! probe (preflight, the readiness barrier).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use http_body_util::{BodyExt, Empty, Limited};
use tokio::net::TcpStream;

use crate::config::Config;
use crate::plan::Plan;

/// How a probe reached the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Via {
    /// The name resolved through DNS to this address (None: it did not resolve).
    Dns(Option<IpAddr>),
    /// A node's own address.
    Node(String, IpAddr),
    /// The virtual IP.
    Vip(IpAddr),
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Via::Dns(Some(ip)) => write!(f, "DNS -> {ip}"),
            Via::Dns(None) => write!(f, "DNS"),
            Via::Node(n, ip) => write!(f, "node {n} ({ip})"),
            Via::Vip(ip) => write!(f, "VIP ({ip})"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProbeOutcome {
    Ok,
    Dns(String),
    Refused,
    Timeout,
    NotFound,
    Status(u16),
    WrongBody,
    Error(String),
}

impl ProbeOutcome {
    pub(crate) fn is_ok(&self) -> bool {
        *self == ProbeOutcome::Ok
    }
    /// What the operator should look at.
    pub(crate) fn hint(&self) -> &'static str {
        match self {
            ProbeOutcome::Ok => "",
            ProbeOutcome::Dns(_) => "the name does not resolve: add an A record pointing at the VIP (or the node)",
            ProbeOutcome::Refused => "nothing listens there: start `vipcert serve` (or the balancer) on that address and http_port",
            ProbeOutcome::Timeout => "no answer in time: check firewalls and that the address is up",
            ProbeOutcome::NotFound => "the server does not see the shared webroot: check the NFS mount and shared_dir",
            ProbeOutcome::Status(_) => "an unexpected HTTP status: is another web server on that port?",
            ProbeOutcome::WrongBody => "served the wrong content: another web server or a stale webroot answers there",
            ProbeOutcome::Error(_) => "",
        }
    }
}

impl std::fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeOutcome::Ok => write!(f, "ok"),
            ProbeOutcome::Dns(e) => write!(f, "DNS: {e}"),
            ProbeOutcome::Refused => write!(f, "connection refused"),
            ProbeOutcome::Timeout => write!(f, "timeout"),
            ProbeOutcome::NotFound => write!(f, "404 not found"),
            ProbeOutcome::Status(s) => write!(f, "HTTP {s}"),
            ProbeOutcome::WrongBody => write!(f, "wrong body"),
            ProbeOutcome::Error(e) => write!(f, "{e}"),
        }
    }
}

/// One HTTP-01 probe: a name fetched through one path (DNS, VIP or a node's address).
#[derive(Debug, Clone)]
pub struct HttpProbe {
    /// The Host the request carried (the name under test).
    pub(crate) name: String,
    pub(crate) via: Via,
    pub(crate) outcome: ProbeOutcome,
}

impl HttpProbe {
    /// What the operator should look at, for this path.
    pub(crate) fn hint(&self) -> &'static str {
        match (&self.via, &self.outcome) {
            // Nodes answer directly; an address from DNS that does not is usually a stale record.
            (Via::Dns(Some(_)), ProbeOutcome::Refused | ProbeOutcome::Timeout) => {
                "the name resolves to an address where no node server answers: point its A/AAAA records at the VIP (or the node), or start `vipcert serve` there"
            }
            (_, o) => o.hint(),
        }
    }
}

/// Every probe of a preflight run.
#[derive(Debug, Clone, Default)]
pub struct ProbeReport {
    pub(crate) probes: Vec<HttpProbe>,
}

impl ProbeReport {
    /// No probe was made (no name uses http-01).
    pub fn is_empty(&self) -> bool {
        self.probes.is_empty()
    }
    /// Every probe succeeded.
    pub fn ok(&self) -> bool {
        self.probes.iter().all(|p| p.outcome.is_ok())
    }
    /// The probes that failed.
    pub fn failures(&self) -> impl Iterator<Item = &HttpProbe> {
        self.probes.iter().filter(|p| !p.outcome.is_ok())
    }
    /// A table of every probe (or only failures), aligned, with a hint per failure.
    pub fn table(&self, only_failures: bool) -> String {
        let rows: Vec<&HttpProbe> = self
            .probes
            .iter()
            .filter(|p| !only_failures || !p.outcome.is_ok())
            .collect();
        let w_name = rows.iter().map(|p| p.name.len()).max().unwrap_or(4).max(4);
        let vias: Vec<String> = rows.iter().map(|p| p.via.to_string()).collect();
        let w_via = vias.iter().map(|v| v.len()).max().unwrap_or(3).max(3);
        let mut s = String::new();
        let _ = writeln!(s, "{:<w_name$}  {:<w_via$}  RESULT", "NAME", "VIA");
        for (p, via) in rows.iter().zip(&vias) {
            let _ = write!(s, "{:<w_name$}  {:<w_via$}  {}", p.name, via, p.outcome);
            if !p.hint().is_empty() {
                let _ = write!(s, "  — {}", p.hint());
            }
            s.push('\n');
        }
        s
    }
}

/// Resolves names the way the CA will: the configured DNS server, else the system resolver.
pub(crate) enum Resolver {
    System,
    Server(Box<hickory_resolver::TokioResolver>),
}

impl Resolver {
    pub(crate) fn new(cfg: &Config) -> Resolver {
        match cfg.preflight.resolver {
            None => Resolver::System,
            Some(addr) => {
                use hickory_resolver::config::{
                    NameServerConfigGroup, ResolverConfig, ResolverOpts,
                };
                let group = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
                let mut opts = ResolverOpts::default();
                opts.cache_size = 0;
                opts.timeout = cfg.preflight.timeout;
                opts.attempts = 1;
                // Like the CA (which tries IPv6 first), look at both families: an AAAA record
                // pointing somewhere else must show up here, not at the CA.
                opts.ip_strategy = hickory_resolver::config::LookupIpStrategy::Ipv4AndIpv6;
                let r = hickory_resolver::Resolver::builder_with_config(
                    ResolverConfig::from_parts(None, vec![], group),
                    hickory_resolver::name_server::TokioConnectionProvider::default(),
                )
                .with_options(opts)
                .build();
                Resolver::Server(Box::new(r))
            }
        }
    }

    pub(crate) async fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        let ips: Vec<IpAddr> = match self {
            Resolver::System => tokio::net::lookup_host((name, 0))
                .await
                .map_err(|e| e.to_string())?
                .map(|a| a.ip())
                .collect(),
            Resolver::Server(r) => r
                .lookup_ip(name)
                .await
                .map_err(|e| e.to_string())?
                .iter()
                .collect(),
        };
        let mut ips = ips;
        ips.sort();
        ips.dedup();
        if ips.is_empty() {
            return Err("no addresses".into());
        }
        Ok(ips)
    }
}

/// A keep-alive HTTP/1.1 connection to one endpoint, for many small GETs in a row.
struct Conn {
    addr: SocketAddr,
    sender: Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        Conn { addr, sender: None }
    }

    async fn connect(&mut self) -> Result<(), ProbeOutcome> {
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::ConnectionRefused => ProbeOutcome::Refused,
                _ => ProbeOutcome::Error(format!("connect: {e}")),
            })?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| ProbeOutcome::Error(format!("http: {e}")))?;
        tokio::spawn(conn);
        self.sender = Some(sender);
        Ok(())
    }

    /// GET `path` with `Host: host`: (status, body ≤ 4 KiB).
    async fn get(&mut self, host: &str, path: &str) -> Result<(u16, Bytes), ProbeOutcome> {
        self.get_limited(host, path, 4096).await
    }

    async fn get_limited(
        &mut self,
        host: &str,
        path: &str,
        limit: usize,
    ) -> Result<(u16, Bytes), ProbeOutcome> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.connect().await?;
        }
        let sender = self.sender.as_mut().expect("connected above");
        sender
            .ready()
            .await
            .map_err(|e| ProbeOutcome::Error(format!("http: {e}")))?;
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, host)
            .header(
                hyper::header::USER_AGENT,
                concat!("vipcert/", env!("CARGO_PKG_VERSION"), " preflight"),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| ProbeOutcome::Error(e.to_string()))?;
        let rsp = sender.send_request(req).await.map_err(|e| {
            self.sender = None;
            ProbeOutcome::Error(format!("http: {e}"))
        })?;
        let status = rsp.status().as_u16();
        let body = Limited::new(rsp.into_body(), limit)
            .collect()
            .await
            .map_err(|e| ProbeOutcome::Error(format!("body: {e}")))?
            .to_bytes();
        Ok((status, body))
    }
}

fn classify(r: Result<(u16, Bytes), ProbeOutcome>, want: &str) -> ProbeOutcome {
    match r {
        Ok((200, body)) if body.as_ref() == want.as_bytes() => ProbeOutcome::Ok,
        Ok((200, _)) => ProbeOutcome::WrongBody,
        Ok((404, _)) => ProbeOutcome::NotFound,
        Ok((s, _)) => ProbeOutcome::Status(s),
        Err(o) => o,
    }
}

/// Fetch every file from one endpoint over one keep-alive connection, each GET bounded by
/// `timeout`. Outcomes are in `files` order.
async fn probe_endpoint(
    addr: SocketAddr,
    name: &str,
    files: &[(String, String)],
    timeout: Duration,
) -> Vec<ProbeOutcome> {
    let mut conn = Conn::new(addr);
    let mut out = Vec::with_capacity(files.len());
    for (token, want) in files {
        let path = format!("/.well-known/acme-challenge/{token}");
        let r = match tokio::time::timeout(timeout, conn.get(name, &path)).await {
            Ok(r) => r,
            Err(_) => {
                conn.sender = None;
                Err(ProbeOutcome::Timeout)
            }
        };
        // An endpoint that cannot be reached fails the same way for every file: do not
        // wait out the timeout once per file.
        let unreachable = matches!(r, Err(ProbeOutcome::Refused | ProbeOutcome::Timeout));
        out.push(classify(r, want));
        if unreachable {
            let last = out.last().cloned().expect("just pushed");
            out.resize(files.len(), last);
            break;
        }
    }
    out
}

/// Like `probe_endpoint`, in one request: the node server's batch route answers for every
/// file at once. Falls back to one GET per file when the server has no batch route (404).
async fn probe_endpoint_batch(
    addr: SocketAddr,
    name: &str,
    files: &[(String, String)],
    timeout: Duration,
) -> Vec<ProbeOutcome> {
    let tokens: Vec<&str> = files.iter().map(|(t, _)| t.as_str()).collect();
    let path = format!("/.well-known/vipcert/challenges/{}", tokens.join(","));
    let mut conn = Conn::new(addr);
    let limit = files.len() * (crate::store::MAX_TOKEN_FILE as usize + 2);
    let r = match tokio::time::timeout(timeout, conn.get_limited(name, &path, limit)).await {
        Ok(r) => r,
        Err(_) => Err(ProbeOutcome::Timeout),
    };
    match r {
        Ok((200, body)) => {
            let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
            files
                .iter()
                .enumerate()
                .map(|(i, (_, want))| match lines.get(i) {
                    Some(l) if l.first() == Some(&b'+') && &l[1..] == want.as_bytes() => {
                        ProbeOutcome::Ok
                    }
                    Some(l) if l.first() == Some(&b'+') => ProbeOutcome::WrongBody,
                    _ => ProbeOutcome::NotFound,
                })
                .collect()
        }
        Ok((404, _)) => probe_endpoint(addr, name, files, timeout).await,
        Ok((s, _)) => vec![ProbeOutcome::Status(s); files.len()],
        Err(o) => vec![o; files.len()],
    }
}

/// Every (name, address) pair the CA or a client might use: each name through DNS, and the
/// VIP and each node directly. The node/VIP probes carry the virtual hostname as Host.
pub(crate) async fn endpoints(
    cfg: &Config,
    plan: &Plan,
    resolver: &Resolver,
    dns: bool,
) -> Vec<(String, Via, Result<SocketAddr, String>)> {
    let port = cfg.acme.http_port;
    let mut out = Vec::new();
    let http = |n: &str| cfg.challenge_for(n) == crate::config::ChallengeKind::Http01;
    if dns && !cfg.preflight.skip_dns {
        let names: Vec<String> = plan.all_names().into_iter().filter(|n| http(n)).collect();
        let lookups = join_all(names.iter().map(|n| resolver.lookup(n))).await;
        for (name, r) in names.into_iter().zip(lookups) {
            match r {
                Ok(ips) => {
                    for ip in ips {
                        out.push((
                            name.clone(),
                            Via::Dns(Some(ip)),
                            Ok(SocketAddr::new(ip, port)),
                        ));
                    }
                }
                Err(e) => out.push((name.clone(), Via::Dns(None), Err(e))),
            }
        }
    }
    // Names validated by DNS need no HTTP path; every node serves the VIP's name.
    let vip = http(&cfg.virtual_hostname);
    if vip {
        out.push((
            cfg.virtual_hostname.clone(),
            Via::Vip(cfg.virtual_ip),
            Ok(SocketAddr::new(cfg.virtual_ip, port)),
        ));
    }
    for n in cfg.nodes.iter().filter(|n| vip || http(&n.hostname)) {
        out.push((
            n.hostname.clone(),
            Via::Node(n.hostname.clone(), n.address),
            Ok(SocketAddr::new(n.address, port)),
        ));
    }
    out
}

/// Probe every endpoint for every (token, body) file: endpoints concurrently, the files of
/// one endpoint over one connection. `dns` adds the through-DNS endpoints.
pub(crate) async fn probe(
    cfg: &Config,
    plan: &Plan,
    resolver: &Resolver,
    files: &[(String, String)],
    dns: bool,
) -> ProbeReport {
    let eps = endpoints(cfg, plan, resolver, dns).await;
    let timeout = cfg.preflight.timeout;
    let tasks = eps.iter().map(|(name, via, addr)| async move {
        let outcomes = match addr {
            Err(e) => vec![ProbeOutcome::Dns(e.clone()); files.len()],
            // The barrier: one request per endpoint.
            Ok(a) if !dns => probe_endpoint_batch(*a, name, files, timeout).await,
            Ok(a) => probe_endpoint(*a, name, files, timeout).await,
        };
        outcomes
            .into_iter()
            .map(|outcome| HttpProbe {
                name: name.clone(),
                via: via.clone(),
                outcome,
            })
            .collect::<Vec<_>>()
    });
    ProbeReport {
        probes: join_all(tasks).await.into_iter().flatten().collect(),
    }
}

/// A random token-shaped name for probe files.
pub(crate) fn random_token(prefix: &str) -> String {
    format!("{prefix}{}", crate::random::hex(12))
}
