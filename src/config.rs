//! The operator's TOML file: parse (`RawConfig`, serde with `deny_unknown_fields`), then
//! validate into `Config`, whose fields cannot hold a bad state.
//!
//! Owns key names, defaults and every "this file is wrong" message (naming the file, line and
//! key). It does not decide which names go in which certificate: that is `plan`.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub const DEFAULT_PATH: &str = "/etc/vipcert/vipcert.toml";
/// Largest config file we read; a real one is a few KiB.
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Let's Encrypt copies the CSR's CN only up to 64 characters.
pub const MAX_CN_LEN: usize = 64;
/// The node server's health route, checked by the balancer's default http service.
pub const HEALTH_PATH: &str = "/.well-known/vipcert/health";

// ---------------------------------------------------------------------------------------------
// Raw: exactly what the file says.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub virtual_hostname: Spanned<String>,
    pub virtual_ip: Spanned<String>,
    pub shared_dir: Spanned<PathBuf>,
    pub layout: Spanned<String>,
    #[serde(default)]
    pub acme: RawAcme,
    #[serde(default, rename = "node")]
    pub nodes: Vec<Spanned<RawNode>>,
    #[serde(default)]
    pub serve: RawServe,
    #[serde(default)]
    pub install: RawInstall,
    #[serde(default)]
    pub preflight: RawPreflight,
    #[serde(default)]
    pub renew: RawRenew,
    #[serde(default)]
    pub check: RawCheck,
    #[serde(default)]
    pub balancer: RawBalancer,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcme {
    pub directory: Option<Spanned<String>>,
    pub contact: Option<Vec<String>>,
    pub ca_roots: Option<PathBuf>,
    pub key_type: Option<Spanned<String>>,
    pub http_port: Option<u16>,
    /// Seconds to wait for the order to become ready / the certificate to be issued.
    pub timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub hostname: Spanned<String>,
    pub address: Spanned<String>,
    pub weight: Option<u32>,
    /// The node uses its host certificate as a TLS client (XRootD third-party copy).
    #[serde(default)]
    pub needs_client_auth: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServe {
    pub listen: Option<Vec<Spanned<String>>>,
    /// How often `serve --watch` polls store/*/current.
    pub watch_interval: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInstall {
    pub root: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub cert_mode: Option<Spanned<String>>,
    pub key_mode: Option<Spanned<String>>,
    pub owner: Option<String>,
    pub group: Option<String>,
    /// Commands run (via /bin/sh -c) after a changed pair is in place, e.g. a service reload.
    #[serde(default)]
    pub reload: Vec<String>,
    /// Commands run after `reload`, with RENEWED_LINEAGE etc. in the environment.
    #[serde(default)]
    pub deploy_hook: Vec<String>,
    /// Extra copies, e.g. the XRootD pair owned by xrootd.
    #[serde(default, rename = "copy")]
    pub copies: Vec<RawCopy>,
    /// Versions kept in the store per lineage.
    pub keep_versions: Option<u32>,
    /// Install the leaf followed by the intermediates (true, default) or the leaf alone.
    pub fullchain: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCopy {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub cert_mode: Option<Spanned<String>>,
    pub key_mode: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPreflight {
    /// A DNS server (ip:port) to resolve names with instead of the system resolver; labs point
    /// this at pebble-challtestsrv.
    pub resolver: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    /// Skip probing through DNS (nodes are still probed directly).
    #[serde(default)]
    pub skip_dns: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRenew {
    /// How long the issuer lease lasts without a refresh.
    pub lease_ttl: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    /// Port of every node's `vipcert serve` status route (default: [serve] listen's first port).
    pub status_port: Option<u16>,
    /// Per request (status) and per TLS probe.
    pub timeout: Option<Spanned<String>>,
    /// TLS endpoints `check --fleet` connects to on every node's address.
    #[serde(default, rename = "probe")]
    pub probes: Vec<Spanned<RawProbe>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBalancer {
    pub listen_address: Option<Spanned<String>>,
    pub scheduler: Option<Spanned<String>>,
    pub delay_loop: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub rise: Option<Spanned<u32>>,
    pub fall: Option<Spanned<u32>>,
    pub admin_listen: Option<Spanned<String>>,
    /// Proxy worker threads (0: one per CPU).
    pub threads: Option<usize>,
    /// How long SIGTERM waits for established connections before exiting.
    pub drain_timeout: Option<Spanned<String>>,
    #[serde(default, rename = "service")]
    pub services: Vec<Spanned<RawService>>,
    #[serde(default)]
    pub keepalived: RawKeepalived,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    pub port: Spanned<u16>,
    /// "node" (default: the node's hostname), "virtual" (the virtual hostname) or a name.
    pub sni: Option<Spanned<String>>,
    /// Label in reports (default: the port).
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub name: Spanned<String>,
    pub port: Spanned<u16>,
    pub backend_port: Option<u16>,
    pub check: Option<Spanned<String>>,
    pub expect: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    /// TCP keepalive idle time on both legs ("0s": off).
    pub tcp_keepalive: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeepalived {
    pub interface: Option<String>,
    pub virtual_router_id: Option<Spanned<u32>>,
    pub priority: Option<Spanned<u32>>,
    pub state: Option<Spanned<String>>,
    pub lvs_method: Option<Spanned<String>>,
}

// ---------------------------------------------------------------------------------------------
// Validated.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One certificate, CN = virtual hostname, installed on every node.
    Shared,
    /// One certificate per node, CN = node hostname.
    PerHost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Rsa2048,
    Rsa3072,
    Rsa4096,
    EcdsaP256,
    EcdsaP384,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Rsa2048 => "rsa2048",
            KeyType::Rsa3072 => "rsa3072",
            KeyType::Rsa4096 => "rsa4096",
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
        }
    }
    fn parse(s: &str) -> Option<KeyType> {
        Some(match s {
            "rsa2048" => KeyType::Rsa2048,
            "rsa3072" => KeyType::Rsa3072,
            "rsa4096" => KeyType::Rsa4096,
            "ecdsa-p256" => KeyType::EcdsaP256,
            "ecdsa-p384" => KeyType::EcdsaP384,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub hostname: String,
    pub address: IpAddr,
    pub weight: u32,
    pub needs_client_auth: bool,
}

#[derive(Debug, Clone)]
pub struct Acme {
    pub directory: String,
    pub contact: Vec<String>,
    pub ca_roots: Option<PathBuf>,
    pub key_type: KeyType,
    pub http_port: u16,
    pub timeout: Duration,
}

impl Acme {
    /// Host part of the directory URL: names the account directory in the store.
    pub fn ca_host(&self) -> String {
        let rest = self
            .directory
            .split_once("://")
            .map(|x| x.1)
            .unwrap_or(&self.directory);
        let hostport = rest.split('/').next().unwrap_or(rest);
        hostport.replace(':', "_")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode(pub u32);

#[derive(Debug, Clone)]
pub struct Copy {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub owner: String,
    pub group: String,
    pub cert_mode: FileMode,
    pub key_mode: FileMode,
}

#[derive(Debug, Clone)]
pub struct Install {
    pub root: PathBuf,
    /// The main pair; paths are as configured (absolute), `root` is applied by `plan`.
    pub main: Copy,
    pub extra: Vec<Copy>,
    pub reload: Vec<String>,
    pub deploy_hook: Vec<String>,
    pub keep_versions: u32,
    /// The certificate file holds the leaf then the chain (true) or the leaf alone.
    pub fullchain: bool,
}

#[derive(Debug, Clone)]
pub struct Serve {
    pub listen: Vec<SocketAddr>,
    pub watch_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct Preflight {
    pub resolver: Option<SocketAddr>,
    pub timeout: Duration,
    pub skip_dns: bool,
}

#[derive(Debug, Clone)]
pub struct Renew {
    pub lease_ttl: Duration,
}

/// The server name a probe sends in its TLS ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sni {
    /// The probed node's own hostname.
    Node,
    /// The virtual hostname.
    Virtual,
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub name: String,
    pub port: u16,
    pub sni: Sni,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub status_port: u16,
    pub timeout: Duration,
    pub probes: Vec<Probe>,
}

/// How the balancer picks a node for a new connection (IPVS names in `render`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    /// Weighted least connections: fewest active connections per unit of weight.
    Wlc,
    /// Weighted round robin.
    Rr,
    /// Source hash: the same client address goes to the same node while it is up.
    Sh,
}

impl Scheduler {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheduler::Wlc => "wlc",
            Scheduler::Rr => "rr",
            Scheduler::Sh => "sh",
        }
    }
}

/// A balancer health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheck {
    /// The TCP connect succeeds.
    Tcp,
    /// The node's first bytes start with this prefix (GridFTP greets "220").
    Banner(String),
    /// `GET <path>` answers 2xx.
    Http(String),
}

impl HealthCheck {
    pub fn kind(&self) -> &'static str {
        match self {
            HealthCheck::Tcp => "tcp",
            HealthCheck::Banner(_) => "banner",
            HealthCheck::Http(_) => "http",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub port: u16,
    pub backend_port: u16,
    pub check: HealthCheck,
    pub idle_timeout: Duration,
    /// TCP keepalive idle time on both legs; None: off.
    pub tcp_keepalive: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VrrpState {
    Master,
    Backup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LvsMethod {
    /// Direct routing: nodes answer clients themselves (VIP on each node, arptables).
    Dr,
    /// The balancer rewrites addresses both ways (nodes route back through it).
    Nat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keepalived {
    pub interface: String,
    pub virtual_router_id: u8,
    pub priority: u8,
    pub state: VrrpState,
    pub lvs_method: LvsMethod,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Balancer {
    pub listen_address: IpAddr,
    pub scheduler: Scheduler,
    pub delay_loop: Duration,
    pub connect_timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub admin_listen: SocketAddr,
    /// Proxy worker threads, resolved (≥ 1).
    pub threads: usize,
    pub drain_timeout: Duration,
    pub services: Vec<Service>,
    pub keepalived: Keepalived,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub virtual_hostname: String,
    pub virtual_ip: IpAddr,
    pub shared_dir: PathBuf,
    pub layout: Layout,
    pub acme: Acme,
    pub nodes: Vec<Node>,
    pub serve: Serve,
    pub install: Install,
    pub preflight: Preflight,
    pub renew: Renew,
    pub check: Check,
    pub balancer: Balancer,
}

/// A config error that points at a place in the file.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {key}: {msg}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub key: String,
    pub msg: String,
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        msg: impl Into<String>,
    ) -> anyhow::Result<T> {
        let line = self.text[..span.start.min(self.text.len())]
            .matches('\n')
            .count()
            + 1;
        Err(ConfigError {
            file: self.path.display().to_string(),
            line,
            key: key.to_string(),
            msg: msg.into(),
        }
        .into())
    }
    fn duration(
        &self,
        v: &Option<Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> anyhow::Result<Duration> {
        match v {
            None => Ok(default),
            Some(s) => parse_duration(s.get_ref()).or_else(|e| self.err(s.span(), key, e)),
        }
    }
    fn mode(
        &self,
        v: &Option<Spanned<String>>,
        key: &str,
        default: u32,
    ) -> anyhow::Result<FileMode> {
        match v {
            None => Ok(FileMode(default)),
            Some(s) => match u32::from_str_radix(s.get_ref().trim_start_matches("0o"), 8) {
                Ok(m) if m <= 0o7777 => Ok(FileMode(m)),
                _ => self.err(
                    s.span(),
                    key,
                    format!("{:?} is not an octal file mode like \"0644\"", s.get_ref()),
                ),
            },
        }
    }
}

/// "10s", "2h", "1m30s", "500ms".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like \"10s\" or \"2h\": {e}"))
}

/// RFC 1123 host name check: letters, digits, hyphens; labels 1–63; total ≤ 253; at least one dot.
pub fn check_hostname(name: &str) -> Result<(), String> {
    if name.len() > 253 {
        return Err(format!("{name:?} is longer than 253 characters"));
    }
    if !name.contains('.') {
        return Err(format!(
            "{name:?} is not a fully qualified host name (no dot)"
        ));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "{name:?} is not a valid host name (label {label:?})"
            ));
        }
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("{name:?} must be lower case"));
    }
    Ok(())
}

impl Config {
    /// Read and validate the file at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        use anyhow::Context;
        use std::io::Read;
        let f = std::fs::File::open(path).with_context(|| {
            format!(
                "cannot open config {} (set --config or VIPCERT_CONFIG)",
                path.display()
            )
        })?;
        let mut text = String::new();
        f.take(MAX_CONFIG_BYTES)
            .read_to_string(&mut text)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        Config::parse(path, &text)
    }

    /// Validate `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> anyhow::Result<Config> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(0);
            anyhow::anyhow!("{}:{line}: {}", path.display(), e.message())
        })?;
        let cx = Ctx { path, text };
        Config::validate(&cx, raw)
    }

    fn validate(cx: &Ctx, raw: RawConfig) -> anyhow::Result<Config> {
        let vh = raw.virtual_hostname.get_ref().to_string();
        if let Err(m) = check_hostname(&vh) {
            return cx.err(raw.virtual_hostname.span(), "virtual_hostname", m);
        }
        let virtual_ip: IpAddr = match raw.virtual_ip.get_ref().parse() {
            Ok(ip) => ip,
            Err(_) => {
                return cx.err(
                    raw.virtual_ip.span(),
                    "virtual_ip",
                    format!("{:?} is not an IP address", raw.virtual_ip.get_ref()),
                )
            }
        };
        let shared_dir = raw.shared_dir.get_ref().clone();
        if !shared_dir.is_absolute() {
            return cx.err(
                raw.shared_dir.span(),
                "shared_dir",
                "must be an absolute path",
            );
        }
        let layout = match raw.layout.get_ref().as_str() {
            "shared" => Layout::Shared,
            "per-host" => Layout::PerHost,
            other => {
                return cx.err(
                    raw.layout.span(),
                    "layout",
                    format!("{other:?} is not \"shared\" or \"per-host\""),
                )
            }
        };

        // [acme]
        let a = &raw.acme;
        let directory = match &a.directory {
            None => LETSENCRYPT.to_string(),
            Some(d) => match d.get_ref().as_str() {
                "letsencrypt" => LETSENCRYPT.to_string(),
                "letsencrypt-staging" => LETSENCRYPT_STAGING.to_string(),
                u if u.starts_with("https://") => u.to_string(),
                u => {
                    return cx.err(
                        d.span(),
                        "acme.directory",
                        format!(
                        "{u:?} is not \"letsencrypt\", \"letsencrypt-staging\" or an https:// URL"
                    ),
                    )
                }
            },
        };
        let key_type = match &a.key_type {
            None => KeyType::Rsa2048,
            Some(k) => match KeyType::parse(k.get_ref()) {
                Some(k) => k,
                None => {
                    return cx.err(
                        k.span(),
                        "acme.key_type",
                        format!(
                            "{:?} is not one of rsa2048, rsa3072, rsa4096, ecdsa-p256, ecdsa-p384",
                            k.get_ref()
                        ),
                    )
                }
            },
        };
        let contact = a.contact.clone().unwrap_or_default();
        for c in &contact {
            if !c.starts_with("mailto:") {
                return cx.err(
                    0..0,
                    "acme.contact",
                    format!("{c:?} must start with \"mailto:\""),
                );
            }
        }
        let acme = Acme {
            directory,
            contact,
            ca_roots: a.ca_roots.clone(),
            key_type,
            http_port: a.http_port.unwrap_or(80),
            timeout: cx.duration(&a.timeout, "acme.timeout", Duration::from_secs(90))?,
        };

        // [[node]]
        if raw.nodes.is_empty() {
            return cx.err(
                0..0,
                "node",
                "no [[node]] entries: list every transfer node behind the VIP",
            );
        }
        let mut nodes = Vec::new();
        let mut seen_names = HashSet::new();
        let mut seen_addrs = HashSet::new();
        for n in &raw.nodes {
            let r = n.get_ref();
            let h = r.hostname.get_ref().to_string();
            if let Err(m) = check_hostname(&h) {
                return cx.err(r.hostname.span(), "node.hostname", m);
            }
            if h == vh {
                return cx.err(
                    r.hostname.span(),
                    "node.hostname",
                    format!("{h:?} is the virtual hostname; a node needs its own name"),
                );
            }
            if !seen_names.insert(h.clone()) {
                return cx.err(
                    r.hostname.span(),
                    "node.hostname",
                    format!("node {h:?} is listed twice"),
                );
            }
            let address: IpAddr = match r.address.get_ref().parse() {
                Ok(ip) => ip,
                Err(_) => {
                    return cx.err(
                        r.address.span(),
                        "node.address",
                        format!("{:?} is not an IP address", r.address.get_ref()),
                    )
                }
            };
            if address == virtual_ip {
                return cx.err(
                    r.address.span(),
                    "node.address",
                    format!("{address} is the virtual_ip; a node needs its own address"),
                );
            }
            if address.is_unspecified() {
                return cx.err(
                    r.address.span(),
                    "node.address",
                    format!("{address} is not a node's address"),
                );
            }
            if !seen_addrs.insert(address) {
                return cx.err(
                    r.address.span(),
                    "node.address",
                    format!("address {address} is used by two nodes"),
                );
            }
            nodes.push(Node {
                hostname: h,
                address,
                weight: r.weight.unwrap_or(1),
                needs_client_auth: r.needs_client_auth,
            });
        }

        // [serve]
        let listen = match &raw.serve.listen {
            None => vec![SocketAddr::from(([0, 0, 0, 0], 80))],
            Some(v) => {
                let mut out = Vec::new();
                for s in v {
                    match s.get_ref().parse() {
                        Ok(a) => out.push(a),
                        Err(_) => {
                            return cx.err(
                                s.span(),
                                "serve.listen",
                                format!("{:?} is not an ip:port address", s.get_ref()),
                            )
                        }
                    }
                }
                out
            }
        };
        let serve = Serve {
            listen,
            watch_interval: cx.duration(
                &raw.serve.watch_interval,
                "serve.watch_interval",
                Duration::from_secs(30),
            )?,
        };

        // [install]
        let i = &raw.install;
        let (def_cert, def_key) = match layout {
            Layout::Shared => (
                "/etc/grid-security/gridftp/gridftp-hostcert.pem",
                "/etc/grid-security/gridftp/gridftp-hostkey.pem",
            ),
            Layout::PerHost => (
                "/etc/grid-security/hostcert.pem",
                "/etc/grid-security/hostkey.pem",
            ),
        };
        let cert_mode = cx.mode(&i.cert_mode, "install.cert_mode", 0o644)?;
        let key_mode = cx.mode(&i.key_mode, "install.key_mode", 0o400)?;
        let owner = i.owner.clone().unwrap_or_else(|| "root".into());
        let group = i.group.clone().unwrap_or_else(|| "root".into());
        let main = Copy {
            cert: i.cert.clone().unwrap_or_else(|| def_cert.into()),
            key: i.key.clone().unwrap_or_else(|| def_key.into()),
            owner: owner.clone(),
            group: group.clone(),
            cert_mode,
            key_mode,
        };
        let mut extra = Vec::new();
        for c in &i.copies {
            extra.push(Copy {
                cert: c.cert.clone(),
                key: c.key.clone(),
                owner: c.owner.clone().unwrap_or_else(|| owner.clone()),
                group: c.group.clone().unwrap_or_else(|| group.clone()),
                cert_mode: cx.mode(&c.cert_mode, "install.copy.cert_mode", cert_mode.0)?,
                key_mode: cx.mode(&c.key_mode, "install.copy.key_mode", key_mode.0)?,
            });
        }
        for c in std::iter::once(&main).chain(&extra) {
            for p in [&c.cert, &c.key] {
                if !p.is_absolute() || p.file_name().is_none() {
                    return cx.err(
                        0..0,
                        "install",
                        format!("{} must be an absolute file path", p.display()),
                    );
                }
            }
            if c.key_mode.0 & 0o077 != 0 {
                return cx.err(
                    0..0,
                    "install.key_mode",
                    format!(
                        "{:o} lets group or others read the private key {}; use 0400 or 0600",
                        c.key_mode.0,
                        c.key.display()
                    ),
                );
            }
        }
        let root = i.root.clone().unwrap_or_else(|| "/".into());
        let install = Install {
            root,
            main,
            extra,
            reload: i.reload.clone(),
            deploy_hook: i.deploy_hook.clone(),
            keep_versions: i.keep_versions.unwrap_or(5).max(1),
            fullchain: i.fullchain.unwrap_or(true),
        };

        // [preflight]
        let resolver = match &raw.preflight.resolver {
            None => None,
            Some(s) => match s.get_ref().parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    return cx.err(
                        s.span(),
                        "preflight.resolver",
                        format!("{:?} is not an ip:port address", s.get_ref()),
                    )
                }
            },
        };
        let preflight = Preflight {
            resolver,
            timeout: cx.duration(
                &raw.preflight.timeout,
                "preflight.timeout",
                Duration::from_secs(5),
            )?,
            skip_dns: raw.preflight.skip_dns,
        };
        let renew = Renew {
            lease_ttl: cx.duration(
                &raw.renew.lease_ttl,
                "renew.lease_ttl",
                Duration::from_secs(600),
            )?,
        };

        // [check]
        let c = &raw.check;
        let mut probes = Vec::new();
        for p in &c.probes {
            let r = p.get_ref();
            let port = *r.port.get_ref();
            if port == 0 {
                return cx.err(r.port.span(), "check.probe.port", "0 is not a port");
            }
            let sni = match r.sni.as_ref().map(|s| (s, s.get_ref().as_str())) {
                None | Some((_, "node")) => Sni::Node,
                Some((_, "virtual")) => Sni::Virtual,
                Some((s, name)) => match check_hostname(name) {
                    Ok(()) => Sni::Name(name.to_string()),
                    Err(m) => {
                        return cx.err(
                            s.span(),
                            "check.probe.sni",
                            format!("{m}; use \"node\", \"virtual\" or a host name"),
                        )
                    }
                },
            };
            let name = r.name.clone().unwrap_or_else(|| port.to_string());
            if probes.iter().any(|q: &Probe| q.name == name) {
                return cx.err(
                    p.span(),
                    "check.probe.name",
                    format!("two probes are named {name:?}; give each a distinct name"),
                );
            }
            probes.push(Probe { name, port, sni });
        }
        let check = Check {
            status_port: c
                .status_port
                .unwrap_or_else(|| serve.listen.first().map(|a| a.port()).unwrap_or(80)),
            timeout: cx.duration(&c.timeout, "check.timeout", Duration::from_secs(3))?,
            probes,
        };
        let balancer = validate_balancer(cx, &raw.balancer, virtual_ip, &serve)?;

        let cfg = Config {
            path: cx.path.to_path_buf(),
            virtual_hostname: vh,
            virtual_ip,
            shared_dir,
            layout,
            acme,
            nodes,
            serve,
            install,
            preflight,
            renew,
            check,
            balancer,
        };
        // Name-count and CN-length limits live in the plan; refuse here so `config check` and
        // every command fail the same way, naming the key.
        if let Err(e) = crate::plan::Plan::new(&cfg) {
            return cx.err(raw.virtual_hostname.span(), "node", e.to_string());
        }
        Ok(cfg)
    }

    /// The node this process runs as: `--node NAME`, else the machine's host name (full, then
    /// short form matched against each node's first label).
    pub fn this_node(&self, name: Option<&str>) -> anyhow::Result<&Node> {
        let wanted = match name {
            Some(n) => n.to_string(),
            None => rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned(),
        };
        if let Some(n) = self.nodes.iter().find(|n| n.hostname == wanted) {
            return Ok(n);
        }
        if name.is_none() {
            let short = wanted.split('.').next().unwrap_or(&wanted);
            let hits: Vec<_> = self
                .nodes
                .iter()
                .filter(|n| n.hostname.split('.').next() == Some(short))
                .collect();
            if hits.len() == 1 {
                return Ok(hits[0]);
            }
        }
        anyhow::bail!(
            "this machine is {wanted:?}, which is not a [[node]] in {}; pass --node with one of: {}",
            self.path.display(),
            self.nodes.iter().map(|n| n.hostname.as_str()).collect::<Vec<_>>().join(", ")
        )
    }

    pub fn node(&self, hostname: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.hostname == hostname)
    }
}

/// `[balancer]`, its services (defaults: http on 80, gridftp on 2811) and `[balancer.keepalived]`.
fn validate_balancer(
    cx: &Ctx,
    b: &RawBalancer,
    virtual_ip: IpAddr,
    serve: &Serve,
) -> anyhow::Result<Balancer> {
    let listen_address = match &b.listen_address {
        None => virtual_ip,
        Some(s) => match s.get_ref().parse() {
            Ok(ip) => ip,
            Err(_) => {
                return cx.err(
                    s.span(),
                    "balancer.listen_address",
                    format!("{:?} is not an IP address", s.get_ref()),
                )
            }
        },
    };
    let scheduler = match &b.scheduler {
        None => Scheduler::Wlc,
        Some(s) => match s.get_ref().as_str() {
            "wlc" => Scheduler::Wlc,
            "rr" => Scheduler::Rr,
            "sh" => Scheduler::Sh,
            other => {
                return cx.err(
                    s.span(),
                    "balancer.scheduler",
                    format!("{other:?} is not one of wlc, rr, sh"),
                )
            }
        },
    };
    let delay_loop = cx.duration(
        &b.delay_loop,
        "balancer.delay_loop",
        Duration::from_secs(10),
    )?;
    let connect_timeout = cx.duration(
        &b.connect_timeout,
        "balancer.connect_timeout",
        Duration::from_secs(3),
    )?;
    for (v, key) in [
        (&b.delay_loop, "balancer.delay_loop"),
        (&b.connect_timeout, "balancer.connect_timeout"),
    ] {
        if let Some(s) = v {
            if parse_duration(s.get_ref()).is_ok_and(|d| d.is_zero()) {
                return cx.err(s.span(), key, "must be longer than 0s");
            }
        }
    }
    let threshold = |v: &Option<Spanned<u32>>, key: &str, default: u32| match v {
        None => Ok(default),
        Some(n) if (1..=100).contains(n.get_ref()) => Ok(*n.get_ref()),
        Some(n) => cx.err(
            n.span(),
            key,
            "must be between 1 and 100 consecutive checks",
        ),
    };
    let rise = threshold(&b.rise, "balancer.rise", 2)?;
    let fall = threshold(&b.fall, "balancer.fall", 3)?;
    let admin_listen = match &b.admin_listen {
        None => SocketAddr::from(([127, 0, 0, 1], 9811)),
        Some(s) => match s.get_ref().parse() {
            Ok(a) => a,
            Err(_) => {
                return cx.err(
                    s.span(),
                    "balancer.admin_listen",
                    format!("{:?} is not an ip:port address", s.get_ref()),
                )
            }
        },
    };
    let threads = match b.threads {
        None | Some(0) => std::thread::available_parallelism().map_or(1, |n| n.get()),
        Some(n) => n.min(256),
    };
    let drain_timeout = cx.duration(
        &b.drain_timeout,
        "balancer.drain_timeout",
        Duration::from_secs(60),
    )?;

    let mut services = Vec::new();
    if b.services.is_empty() {
        // Port 80 lets the CA validate the virtual hostname on any node; 2811 is the GridFTP
        // control channel, which idles through whole transfers.
        let serve_port = serve.listen.first().map_or(80, |a| a.port());
        services.push(Service {
            name: "http".into(),
            port: 80,
            backend_port: serve_port,
            check: HealthCheck::Http(HEALTH_PATH.into()),
            idle_timeout: Duration::from_secs(300),
            tcp_keepalive: None,
        });
        services.push(Service {
            name: "gridftp".into(),
            port: 2811,
            backend_port: 2811,
            check: HealthCheck::Banner("220".into()),
            idle_timeout: Duration::from_secs(7200),
            tcp_keepalive: Some(Duration::from_secs(60)),
        });
    }
    let mut names = HashSet::new();
    let mut ports = HashSet::new();
    for s in &b.services {
        let span = s.span();
        let r = s.get_ref();
        let name = r.name.get_ref().clone();
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
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
        let expect = r.expect.as_ref().map(|e| e.get_ref().clone());
        let check = match r.check.as_ref().map(|c| c.get_ref().as_str()) {
            None | Some("tcp") => {
                if let Some(e) = &r.expect {
                    return cx.err(
                        e.span(),
                        "balancer.service.expect",
                        "a tcp check expects nothing; use check = \"banner\" or \"http\"",
                    );
                }
                HealthCheck::Tcp
            }
            Some("banner") => match expect {
                Some(e) if !e.is_empty() && e.len() <= 512 => HealthCheck::Banner(e),
                _ => {
                    return cx.err(
                        span,
                        "balancer.service.expect",
                        "check = \"banner\" needs expect = the greeting prefix (1-512 bytes), e.g. \"220\"",
                    )
                }
            },
            Some("http") => {
                let p = expect.unwrap_or_else(|| HEALTH_PATH.into());
                if !p.starts_with('/') || p.len() > 1024 || p.bytes().any(|c| c <= b' ' || c == 0x7f) {
                    return cx.err(
                        span,
                        "balancer.service.expect",
                        format!("{p:?} is not an http path like \"/.well-known/vipcert/health\""),
                    );
                }
                HealthCheck::Http(p)
            }
            Some(other) => {
                return cx.err(
                    r.check.as_ref().map_or(span, |c| c.span()),
                    "balancer.service.check",
                    format!("{other:?} is not one of tcp, banner, http"),
                )
            }
        };
        let idle_default = if port == 2811 { 7200 } else { 300 };
        let idle_timeout = cx.duration(
            &r.idle_timeout,
            "balancer.service.idle_timeout",
            Duration::from_secs(idle_default),
        )?;
        if idle_timeout.is_zero() {
            return cx.err(
                r.idle_timeout.as_ref().map_or(span, |d| d.span()),
                "balancer.service.idle_timeout",
                "must be longer than 0s",
            );
        }
        let ka_default = if port == 2811 { 60 } else { 0 };
        let ka = cx.duration(
            &r.tcp_keepalive,
            "balancer.service.tcp_keepalive",
            Duration::from_secs(ka_default),
        )?;
        services.push(Service {
            name,
            port,
            backend_port: r.backend_port.unwrap_or(port),
            check,
            idle_timeout,
            tcp_keepalive: (!ka.is_zero()).then_some(ka.max(Duration::from_secs(1))),
        });
    }

    let k = &b.keepalived;
    let byte = |v: &Option<Spanned<u32>>, key: &str, default: u8, lo: u32, hi: u32| match v {
        None => Ok(default),
        Some(n) if (lo..=hi).contains(n.get_ref()) => Ok(*n.get_ref() as u8),
        Some(n) => cx.err(n.span(), key, format!("must be between {lo} and {hi}")),
    };
    let state = match k
        .state
        .as_ref()
        .map(|s| (s, s.get_ref().to_ascii_uppercase()))
    {
        None => VrrpState::Master,
        Some((_, s)) if s == "MASTER" => VrrpState::Master,
        Some((_, s)) if s == "BACKUP" => VrrpState::Backup,
        Some((s, _)) => {
            return cx.err(
                s.span(),
                "balancer.keepalived.state",
                format!("{:?} is not MASTER or BACKUP", s.get_ref()),
            )
        }
    };
    let lvs_method = match k
        .lvs_method
        .as_ref()
        .map(|s| (s, s.get_ref().to_ascii_uppercase()))
    {
        None => LvsMethod::Dr,
        Some((_, s)) if s == "DR" => LvsMethod::Dr,
        Some((_, s)) if s == "NAT" => LvsMethod::Nat,
        Some((s, _)) => {
            return cx.err(
                s.span(),
                "balancer.keepalived.lvs_method",
                format!("{:?} is not DR or NAT", s.get_ref()),
            )
        }
    };
    let interface = k.interface.clone().unwrap_or_else(|| "eth0".into());
    if interface.is_empty()
        || interface.len() > 15
        || !interface
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.@".contains(&c))
    {
        return cx.err(
            0..0,
            "balancer.keepalived.interface",
            format!("{interface:?} is not a network interface name"),
        );
    }
    let keepalived = Keepalived {
        interface,
        virtual_router_id: byte(
            &k.virtual_router_id,
            "balancer.keepalived.virtual_router_id",
            51,
            1,
            255,
        )?,
        priority: byte(
            &k.priority,
            "balancer.keepalived.priority",
            state_priority(state),
            1,
            254,
        )?,
        state,
        lvs_method,
    };
    Ok(Balancer {
        listen_address,
        scheduler,
        delay_loop,
        connect_timeout,
        rise,
        fall,
        admin_listen,
        threads,
        drain_timeout,
        services,
        keepalived,
    })
}

/// keepalived's usual priorities: the master outranks every backup.
fn state_priority(s: VrrpState) -> u8 {
    match s {
        VrrpState::Master => 100,
        VrrpState::Backup => 90,
    }
}

pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
virtual_hostname = "gridftp.example.org"
virtual_ip = "192.0.2.10"
shared_dir = "/mnt/nfsshare/vipcert"
layout = "shared"
[acme]
directory = "letsencrypt"
contact = ["mailto:grid-admin@example.org"]
key_type = "rsa2048"
http_port = 80
[[node]]
hostname = "dtn1.example.org"
address = "192.0.2.11"
[[node]]
hostname = "dtn2.example.org"
address = "192.0.2.12"
[serve]
listen = ["0.0.0.0:80"]
[install]
root = "/"
"#;

    fn parse(s: &str) -> anyhow::Result<Config> {
        Config::parse(Path::new("/etc/vipcert/vipcert.toml"), s)
    }

    #[test]
    fn good_config_validates_with_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.layout, Layout::Shared);
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(c.acme.directory, LETSENCRYPT);
        assert_eq!(c.acme.ca_host(), "acme-v02.api.letsencrypt.org");
        assert_eq!(c.install.main.key_mode, FileMode(0o400));
        assert_eq!(
            c.install.main.cert,
            PathBuf::from("/etc/grid-security/gridftp/gridftp-hostcert.pem")
        );
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let bad = GOOD.replace("http_port = 80", "http_prot = 80");
        let e = format!("{:#}", parse(&bad).unwrap_err());
        assert!(e.contains("/etc/vipcert/vipcert.toml:10"), "{e}");
        assert!(e.contains("http_prot"), "{e}");
    }

    #[test]
    fn duplicate_node_is_refused_with_line() {
        let bad = GOOD.replace("dtn2.example.org", "dtn1.example.org");
        let e = format!("{:#}", parse(&bad).unwrap_err());
        assert!(
            e.contains(":15: node.hostname: node \"dtn1.example.org\" is listed twice"),
            "{e}"
        );
    }

    #[test]
    fn node_named_like_vip_and_bad_address_are_refused() {
        let e = format!(
            "{:#}",
            parse(&GOOD.replace("dtn2.example.org", "gridftp.example.org")).unwrap_err()
        );
        assert!(e.contains("is the virtual hostname"), "{e}");
        let e = format!(
            "{:#}",
            parse(&GOOD.replace("192.0.2.12", "192.0.2.300")).unwrap_err()
        );
        assert!(e.contains(":16: node.address"), "{e}");
        let e = format!(
            "{:#}",
            parse(&GOOD.replace("192.0.2.12", "192.0.2.10")).unwrap_err()
        );
        assert!(e.contains("is the virtual_ip"), "{e}");
    }

    #[test]
    fn too_many_names_is_refused() {
        let mut s = GOOD.to_string();
        for i in 3..=100 {
            s.push_str(&format!(
                "[[node]]\nhostname = \"dtn{i}.example.org\"\naddress = \"10.0.{}.{}\"\n",
                i / 200,
                i % 200 + 1
            ));
        }
        let e = format!("{:#}", parse(&s).unwrap_err());
        assert!(e.contains("101 names"), "{e}");
    }

    #[test]
    fn check_section_defaults_and_probes() {
        let c = parse(&GOOD.replace("0.0.0.0:80", "0.0.0.0:8080")).unwrap();
        assert_eq!(c.check.status_port, 8080);
        assert_eq!(c.check.timeout, Duration::from_secs(3));
        assert!(c.check.probes.is_empty());
        let s = format!(
            "{GOOD}[check]\ntimeout = \"500ms\"\n[[check.probe]]\nport = 1094\n[[check.probe]]\nport = 443\nsni = \"virtual\"\nname = \"webdav\"\n[[check.probe]]\nport = 8443\nsni = \"x.example.org\"\n"
        );
        let c = parse(&s).unwrap();
        assert_eq!(c.check.timeout, Duration::from_millis(500));
        assert_eq!(
            c.check.probes,
            vec![
                Probe {
                    name: "1094".into(),
                    port: 1094,
                    sni: Sni::Node
                },
                Probe {
                    name: "webdav".into(),
                    port: 443,
                    sni: Sni::Virtual
                },
                Probe {
                    name: "8443".into(),
                    port: 8443,
                    sni: Sni::Name("x.example.org".into())
                },
            ]
        );
        let bad = format!("{GOOD}[check]\n[[check.probe]]\nport = 1094\nsni = \"not a name\"\n");
        let e = format!("{:#}", parse(&bad).unwrap_err());
        assert!(e.contains(":24: check.probe.sni"), "{e}");
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

    #[test]
    fn durations_and_modes_parse() {
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("soon").is_err());
        let bad = GOOD.replace("root = \"/\"", "root = \"/\"\nkey_mode = \"0644\"");
        assert!(format!("{:#}", parse(&bad).unwrap_err()).contains("lets group or others read"));
    }
}
