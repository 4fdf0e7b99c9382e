//! The `Raw*` structs: exactly what the TOML file says, as serde reads it.
//!
//! Owns key names and their types (and, through `deny_unknown_fields`, the refusal of a
//! misspelt key). It does not check values or fill in defaults: each section's `from_raw` does.
//! Values that can be wrong are `Spanned` so that a message can name their line.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

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
    #[serde(default)]
    pub notify: RawNotify,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    /// Programs run when a lineage's renewal fails.
    #[serde(default)]
    pub on_failure: Vec<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcme {
    pub directory: Option<Spanned<String>>,
    pub contact: Option<Vec<Spanned<String>>>,
    pub ca_roots: Option<PathBuf>,
    pub key_type: Option<Spanned<String>>,
    pub http_port: Option<Spanned<u16>>,
    /// Seconds to wait for the order to become ready / the certificate to be issued.
    pub timeout: Option<Spanned<String>>,
    /// External Account Binding key identifier (RFC 8555 §7.3.4), from the CA.
    pub eab_kid: Option<Spanned<String>>,
    /// File holding the EAB HMAC key, base64url (never the key itself in the config).
    pub eab_hmac_key_file: Option<Spanned<PathBuf>>,
    /// ACME profile name sent in new-order (the directory's meta.profiles must offer it).
    pub profile: Option<Spanned<String>>,
    /// `[[acme.fallback]]`: CAs tried in order when the one before cannot be reached, fails
    /// (5xx) or rate-limits.
    #[serde(default)]
    pub fallback: Vec<Spanned<RawFallback>>,
}

/// One `[[acme.fallback]]` entry: the per-CA keys of `[acme]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFallback {
    pub directory: Option<Spanned<String>>,
    pub contact: Option<Vec<Spanned<String>>>,
    pub eab_kid: Option<Spanned<String>>,
    pub eab_hmac_key_file: Option<Spanned<PathBuf>>,
    pub profile: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub hostname: Spanned<String>,
    pub address: Spanned<String>,
    pub weight: Option<Spanned<u32>>,
    /// The node uses its host certificate as a TLS client (XRootD third-party copy).
    #[serde(default)]
    pub needs_client_auth: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServe {
    pub listen: Option<Spanned<Vec<Spanned<String>>>>,
    /// "auto", "inotify" or "poll": how `serve --watch` notices a new store/*/current.
    pub watch: Option<Spanned<String>>,
    /// How often the poll watcher of `serve --watch` scans the store.
    pub watch_interval: Option<Spanned<String>>,
    /// Most connections the node server holds at once.
    pub max_connections: Option<Spanned<usize>>,
    /// Most connections the node server holds from one client address.
    pub max_connections_per_address: Option<Spanned<usize>>,
    /// Balancer addresses exempt from `max_connections_per_address`.
    pub proxy_addresses: Option<Spanned<Vec<Spanned<String>>>>,
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
    pub keep_versions: Option<Spanned<u32>>,
    /// Install the leaf followed by the intermediates (true, default) or the leaf alone.
    pub fullchain: Option<bool>,
    /// "files" (default): targets are regular files; "links": symlinks into versioned
    /// directories, switched together by one rename.
    pub mode: Option<Spanned<String>>,
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
    /// How often the lease holder refreshes it; a holder silent for 3 of these is dead.
    pub lease_refresh: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    /// Port of every node's `vipcert serve` status route (default: [serve] listen's first port).
    pub status_port: Option<Spanned<u16>>,
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
    pub threads: Option<Spanned<usize>>,
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
    pub backend_port: Option<Spanned<u16>>,
    pub check: Option<Spanned<String>>,
    pub expect: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    /// TCP keepalive idle time on both legs ("0s": off).
    pub tcp_keepalive: Option<Spanned<String>>,
    /// Most clients of this service proxied at once.
    pub max_connections: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeepalived {
    /// "ipvs" (keepalived balances) or "vrrp" (VIP failover for `vipcert balance`).
    pub mode: Option<Spanned<String>>,
    pub preempt: Option<bool>,
    /// Every balancer host's own address (render leaves out the host it runs on).
    pub unicast_peers: Option<Spanned<Vec<Spanned<String>>>>,
    pub notification_email: Option<Spanned<Vec<Spanned<String>>>>,
    pub notification_email_from: Option<Spanned<String>>,
    /// "host" or "host:port".
    pub smtp_server: Option<Spanned<String>>,
    pub interface: Option<String>,
    pub virtual_router_id: Option<Spanned<u32>>,
    pub priority: Option<Spanned<u32>>,
    pub state: Option<Spanned<String>>,
    pub lvs_method: Option<Spanned<String>>,
}
