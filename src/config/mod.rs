//! The operator's TOML file: parse (`raw`, serde with `deny_unknown_fields`), then validate
//! each section with its own `from_raw` into `Config`, whose fields cannot hold a bad state.
//!
//! This module owns reading the file, the top-level keys (`virtual_hostname`, `virtual_ip`,
//! `shared_dir`, `layout`), the order sections are checked in, and `ConfigError` — every
//! "this file is wrong" message names the file, line and key. Each section's rules live in
//! its own module; shared value parsers in `values`. It does not decide which names go in which
//! certificate: that is `plan` (whose limits are checked here so that every command fails
//! alike).

mod acme;
mod balancer;
mod check;
mod install;
mod keepalived;
mod node;
pub mod raw;
mod renew;
mod serve;
mod values;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use toml::Spanned;

pub use acme::{Acme, KeyType, LETSENCRYPT, LETSENCRYPT_STAGING};
pub use balancer::{Balancer, HealthCheck, Scheduler, Service, HEALTH_PATH};
pub use check::{Check, Probe, Sni};
pub use install::{Copy, Install};
pub use keepalived::{Keepalived, KeepalivedMode, LvsMethod, VrrpState};
pub use node::Node;
use raw::RawConfig;
pub use renew::{Preflight, Renew};
pub use serve::{Serve, WatchMode};
pub use values::{check_hostname, parse_duration, FileMode};

pub const DEFAULT_PATH: &str = "/etc/vipcert/vipcert.toml";
/// Largest config file we read; a real one is a few KiB.
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Let's Encrypt copies the CSR's CN only up to 64 characters.
pub const MAX_CN_LEN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One certificate, CN = virtual hostname, installed on every node.
    Shared,
    /// One certificate per node, CN = node hostname.
    PerHost,
}

const LAYOUTS: &[(&str, Layout)] = &[("shared", Layout::Shared), ("per-host", Layout::PerHost)];

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

/// The file being validated: what every section's `from_raw` needs to name a line.
struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    /// A `ConfigError` for `key` at the line holding `span` (0..0: the first line, for keys
    /// whose place serde does not keep).
    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        msg: impl Into<String>,
    ) -> anyhow::Result<T> {
        Err(ConfigError {
            file: self.path.display().to_string(),
            line: line_of(self.text, span.start),
            key: key.to_string(),
            msg: msg.into(),
        }
        .into())
    }
}

/// 1-based line of byte `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
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
            let line = e.span().map_or(0, |s| line_of(text, s.start));
            anyhow::anyhow!("{}:{line}: {}", path.display(), e.message())
        })?;
        let cx = Ctx { path, text };
        Config::validate(&cx, raw)
    }

    /// The top-level keys, then each section, always in this order: the first wrong value met
    /// is the one reported.
    fn validate(cx: &Ctx, raw: RawConfig) -> anyhow::Result<Config> {
        let virtual_hostname = values::hostname(cx, "virtual_hostname", &raw.virtual_hostname)?;
        let virtual_ip = values::ip(cx, "virtual_ip", &raw.virtual_ip)?;
        let shared_dir = absolute_dir(cx, "shared_dir", &raw.shared_dir)?;
        let layout = values::one_of(cx, "layout", &raw.layout, LAYOUTS)?;
        let acme = Acme::from_raw(&raw.acme, cx)?;
        let nodes = node::from_raw(&raw.nodes, &virtual_hostname, virtual_ip, cx)?;
        let serve = Serve::from_raw(&raw.serve, cx)?;
        let install = Install::from_raw(&raw.install, layout, cx)?;
        let preflight = Preflight::from_raw(&raw.preflight, cx)?;
        let renew = Renew::from_raw(&raw.renew, cx)?;
        let check = Check::from_raw(&raw.check, &serve, cx)?;
        let balancer = Balancer::from_raw(&raw.balancer, virtual_ip, &serve, cx)?;
        let cfg = Config {
            path: cx.path.to_path_buf(),
            virtual_hostname,
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

/// The shared directory is reached from every node: a relative path would mean a different
/// place on each.
fn absolute_dir(cx: &Ctx, key: &str, v: &Spanned<PathBuf>) -> anyhow::Result<PathBuf> {
    if !v.get_ref().is_absolute() {
        return cx.err(v.span(), key, "must be an absolute path");
    }
    Ok(v.get_ref().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const GOOD: &str = r#"
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

    pub(super) fn parse(s: &str) -> anyhow::Result<Config> {
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
}
