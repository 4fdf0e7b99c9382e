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
pub(crate) struct RawConfig {
    pub(crate) virtual_hostname: Spanned<String>,
    pub(crate) virtual_ip: Spanned<String>,
    pub(crate) shared_dir: Spanned<PathBuf>,
    pub(crate) layout: Spanned<String>,
    #[serde(default)]
    pub(crate) acme: RawAcme,
    #[serde(default, rename = "node")]
    pub(crate) nodes: Vec<Spanned<RawNode>>,
    #[serde(default)]
    pub(crate) serve: RawServe,
    #[serde(default)]
    pub(crate) install: RawInstall,
    #[serde(default)]
    pub(crate) preflight: RawPreflight,
    #[serde(default)]
    pub(crate) renew: RawRenew,
    #[serde(default)]
    pub(crate) check: RawCheck,
    #[serde(default)]
    pub(crate) balancer: RawBalancer,
    #[serde(default)]
    pub(crate) notify: RawNotify,
    #[serde(default)]
    pub(crate) hooks: RawHooks,
    #[serde(default)]
    pub(crate) challenge: RawChallenge,
}

/// `[challenge]`: the validation method, and `[challenge.dns]` how TXT records are placed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawChallenge {
    /// "http-01" (default), "dns-01" or "dns-persist-01".
    #[serde(rename = "type")]
    pub(crate) kind: Option<Spanned<String>>,
    pub(crate) dns: Option<Spanned<RawDns>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDns {
    /// "rfc2136" or "exec".
    pub(crate) method: Option<Spanned<String>>,
    /// ip:port of the zone's primary (rfc2136).
    pub(crate) server: Option<Spanned<String>>,
    pub(crate) tsig_key_name: Option<Spanned<String>>,
    pub(crate) tsig_algorithm: Option<Spanned<String>>,
    /// The root-only file holding the TSIG secret (never the secret in the config).
    pub(crate) tsig_secret_file: Option<Spanned<PathBuf>>,
    /// The zone updated; found by SOA lookup when absent.
    pub(crate) zone: Option<Spanned<String>>,
    /// `program present|cleanup <fqdn> <value>` (exec).
    pub(crate) program: Option<Spanned<PathBuf>>,
    /// Bound of the wait until every authoritative server serves every TXT value.
    pub(crate) propagation_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHooks {
    /// Shell command run once per order before the CA is told to validate.
    pub(crate) pre_validation: Option<Spanned<String>>,
    /// Shell command run once per order after validation, whatever its outcome.
    pub(crate) post_validation: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNotify {
    /// Programs run when a lineage's renewal fails.
    #[serde(default)]
    pub(crate) on_failure: Vec<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAcme {
    pub(crate) directory: Option<Spanned<String>>,
    pub(crate) contact: Option<Vec<Spanned<String>>>,
    pub(crate) ca_roots: Option<Spanned<PathBuf>>,
    pub(crate) key_type: Option<Spanned<String>>,
    pub(crate) http_port: Option<Spanned<u16>>,
    /// Seconds to wait for the order to become ready / the certificate to be issued.
    pub(crate) timeout: Option<Spanned<String>>,
    /// The deadline of one HTTP request to the CA: connect, headers and body.
    pub(crate) request_timeout: Option<Spanned<String>>,
    /// External Account Binding key identifier (RFC 8555 §7.3.4), from the CA.
    pub(crate) eab_kid: Option<Spanned<String>>,
    /// File holding the EAB HMAC key, base64url (never the key itself in the config).
    pub(crate) eab_hmac_key_file: Option<Spanned<PathBuf>>,
    /// ACME profile name sent in new-order (the directory's meta.profiles must offer it).
    pub(crate) profile: Option<Spanned<String>>,
    /// `[[acme.fallback]]`: CAs tried in order when the one before cannot be reached, fails
    /// (5xx) or rate-limits.
    #[serde(default)]
    pub(crate) fallback: Vec<Spanned<RawFallback>>,
    /// The CA's staging (test) directory, where `--dry-run` orders.
    pub(crate) staging_directory: Option<Spanned<String>>,
    /// The staging CA's roots (PEM), for its HTTPS and its chains in a dry run.
    pub(crate) staging_ca_roots: Option<Spanned<PathBuf>>,
    /// Refuse a profile known to give certificates without a subject CN (default true).
    pub(crate) require_cn: Option<Spanned<bool>>,
    /// `[[acme.ca]]`: named CAs a per-host node's lineage may order from (`[[node]] ca`).
    #[serde(default, rename = "ca")]
    pub(crate) cas: Vec<Spanned<RawNamedCa>>,
}

/// One `[[acme.ca]]` entry: a name, the per-CA keys of `[acme]`, and the CA's roots.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNamedCa {
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) directory: Option<Spanned<String>>,
    pub(crate) contact: Option<Vec<Spanned<String>>>,
    pub(crate) eab_kid: Option<Spanned<String>>,
    pub(crate) eab_hmac_key_file: Option<Spanned<PathBuf>>,
    pub(crate) profile: Option<Spanned<String>>,
    pub(crate) ca_roots: Option<Spanned<PathBuf>>,
    /// Where a dry run orders this CA's lineages.
    pub(crate) staging_directory: Option<Spanned<String>>,
    pub(crate) staging_ca_roots: Option<Spanned<PathBuf>>,
}

/// One `[[acme.fallback]]` entry: the per-CA keys of `[acme]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFallback {
    pub(crate) directory: Option<Spanned<String>>,
    pub(crate) contact: Option<Vec<Spanned<String>>>,
    pub(crate) eab_kid: Option<Spanned<String>>,
    pub(crate) eab_hmac_key_file: Option<Spanned<PathBuf>>,
    pub(crate) profile: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNode {
    pub(crate) hostname: Spanned<String>,
    pub(crate) address: Spanned<String>,
    pub(crate) weight: Option<Spanned<u32>>,
    /// The node uses its host certificate as a TLS client (XRootD third-party copy).
    #[serde(default)]
    pub(crate) needs_client_auth: bool,
    /// This node's own name validated by another method than `[challenge] type`.
    pub(crate) challenge: Option<Spanned<String>>,
    /// The `[[acme.ca]]` this node's lineage orders from (per-host layout; default `[acme]`).
    pub(crate) ca: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServe {
    pub(crate) listen: Option<Spanned<Vec<Spanned<String>>>>,
    /// "auto", "inotify" or "poll": how `serve --watch` notices a new store/*/current.
    pub(crate) watch: Option<Spanned<String>>,
    /// How often the poll watcher of `serve --watch` scans the store.
    pub(crate) watch_interval: Option<Spanned<String>>,
    /// Most connections the node server holds at once.
    pub(crate) max_connections: Option<Spanned<usize>>,
    /// Most connections the node server holds from one client address.
    pub(crate) max_connections_per_address: Option<Spanned<usize>>,
    /// Balancer addresses exempt from `max_connections_per_address`.
    pub(crate) proxy_addresses: Option<Spanned<Vec<Spanned<String>>>>,
    /// Requests per second each of the node server's own routes answers.
    pub(crate) monitor_rate: Option<Spanned<u32>>,
    /// Longest an own-route request is parked before it is answered.
    pub(crate) monitor_wait: Option<Spanned<String>>,
    /// `ip:port` of the node server's Prometheus `/metrics` listener (off when absent).
    pub(crate) metrics_listen: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInstall {
    pub(crate) root: Option<PathBuf>,
    pub(crate) cert: Option<Spanned<PathBuf>>,
    pub(crate) key: Option<Spanned<PathBuf>>,
    pub(crate) cert_mode: Option<Spanned<String>>,
    pub(crate) key_mode: Option<Spanned<String>>,
    /// A user name (looked up in /etc/passwd when installing) or a uid.
    pub(crate) owner: Option<Spanned<String>>,
    /// A group name (/etc/group) or a gid.
    pub(crate) group: Option<Spanned<String>>,
    /// Commands run (via /bin/sh -c) after a changed pair is in place, e.g. a service reload.
    #[serde(default)]
    pub(crate) reload: Vec<String>,
    /// Commands run after `reload`, with RENEWED_LINEAGE etc. in the environment.
    #[serde(default)]
    pub(crate) deploy_hook: Vec<String>,
    /// Extra copies, e.g. the XRootD pair owned by xrootd.
    #[serde(default, rename = "copy")]
    pub(crate) copies: Vec<RawCopy>,
    /// Versions kept in the store per lineage.
    pub(crate) keep_versions: Option<Spanned<u32>>,
    /// Install the leaf followed by the intermediates (true, default) or the leaf alone.
    pub(crate) fullchain: Option<bool>,
    /// "files" (default): targets are regular files; "links": symlinks into versioned
    /// directories, switched together by one rename.
    pub(crate) mode: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCopy {
    pub(crate) cert: Spanned<PathBuf>,
    pub(crate) key: Spanned<PathBuf>,
    pub(crate) owner: Option<Spanned<String>>,
    pub(crate) group: Option<Spanned<String>>,
    pub(crate) cert_mode: Option<Spanned<String>>,
    pub(crate) key_mode: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPreflight {
    /// A DNS server (ip:port) to resolve names with instead of the system resolver; labs point
    /// this at pebble-challtestsrv.
    pub(crate) resolver: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<String>>,
    /// Skip probing through DNS (nodes are still probed directly).
    #[serde(default)]
    pub(crate) skip_dns: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRenew {
    /// How long the issuer lease lasts without a refresh.
    pub(crate) lease_ttl: Option<Spanned<String>>,
    /// How often the lease holder refreshes it; a holder silent for 3 of these is dead.
    pub(crate) lease_refresh: Option<Spanned<String>>,
    /// The node_exporter textfile `issue` and `renew` write (off when absent).
    pub(crate) metrics_file: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCheck {
    /// Port of every node's `vipcert serve` status route (default: [serve] listen's first port).
    pub(crate) status_port: Option<Spanned<u16>>,
    /// Per request (status) and per TLS probe.
    pub(crate) timeout: Option<Spanned<String>>,
    /// TLS endpoints `check --fleet` connects to on every node's address.
    #[serde(default, rename = "probe")]
    pub(crate) probes: Vec<Spanned<RawProbe>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBalancer {
    pub(crate) listen_address: Option<Spanned<String>>,
    pub(crate) scheduler: Option<Spanned<String>>,
    pub(crate) delay_loop: Option<Spanned<String>>,
    pub(crate) connect_timeout: Option<Spanned<String>>,
    pub(crate) rise: Option<Spanned<u32>>,
    pub(crate) fall: Option<Spanned<u32>>,
    pub(crate) admin_listen: Option<Spanned<String>>,
    /// Proxy worker threads (0: one per CPU).
    pub(crate) threads: Option<Spanned<usize>>,
    /// How long SIGTERM waits for established connections before exiting.
    pub(crate) drain_timeout: Option<Spanned<String>>,
    #[serde(default, rename = "service")]
    pub(crate) services: Vec<Spanned<RawService>>,
    #[serde(default)]
    pub(crate) keepalived: RawKeepalived,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProbe {
    pub(crate) port: Spanned<u16>,
    /// "node" (default: the node's hostname), "virtual" (the virtual hostname) or a name.
    pub(crate) sni: Option<Spanned<String>>,
    /// Label in reports (default: the port).
    pub(crate) name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub(crate) name: Spanned<String>,
    pub(crate) port: Spanned<u16>,
    pub(crate) backend_port: Option<Spanned<u16>>,
    pub(crate) check: Option<Spanned<String>>,
    pub(crate) expect: Option<Spanned<String>>,
    pub(crate) idle_timeout: Option<Spanned<String>>,
    /// TCP keepalive idle time on both legs ("0s": off).
    pub(crate) tcp_keepalive: Option<Spanned<String>>,
    /// Most clients of this service proxied at once.
    pub(crate) max_connections: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKeepalived {
    /// "ipvs" (keepalived balances) or "vrrp" (VIP failover for `vipcert balance`).
    pub(crate) mode: Option<Spanned<String>>,
    pub(crate) preempt: Option<bool>,
    /// Every balancer host's own address (render leaves out the host it runs on).
    pub(crate) unicast_peers: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) notification_email: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) notification_email_from: Option<Spanned<String>>,
    /// "host" or "host:port".
    pub(crate) smtp_server: Option<Spanned<String>>,
    pub(crate) interface: Option<String>,
    pub(crate) virtual_router_id: Option<Spanned<u32>>,
    pub(crate) priority: Option<Spanned<u32>>,
    pub(crate) state: Option<Spanned<String>>,
    pub(crate) lvs_method: Option<Spanned<String>>,
}
