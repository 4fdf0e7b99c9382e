//! The operator's TOML file: parse (`raw`, serde with `deny_unknown_fields`), then validate
//! each section with its own `from_raw` into `Config`, whose fields cannot hold a bad state.
//!
//! This module owns reading the file, the top-level keys (`virtual_hostname`, `virtual_ip`,
//! `shared_dir`, `layout`) and the order sections are checked in. Each section's rules live in
//! its own module; shared value parsers in `values`; the `layout` type in `layout`; how an
//! error names file, line and key (`ConfigError`, `Ctx`, `Source`) in `ctx`. The files below
//! import each other as siblings (`ctx`, `raw`, `values`, and a section another's default
//! depends on), never this module. It also refuses a cluster whose certificates a CA would
//! not issue as planned (a CN over 64 characters, over 100 names), under the key that causes
//! it, and keepalived's IPVS setup whose nodes are of another address family than the VIP. It
//! does not decide which names go in which certificate: that is `plan`, which builds on a
//! `Config` and is never imported from here. What only the host can tell (files, users) is
//! `hostcheck`'s, which names lines through a [`Source`].

mod acme;
mod balancer;
mod challenge;
mod check;
mod ctx;
mod hooks;
mod install;
mod keepalived;
mod layout;
mod node;
mod notify;
pub(crate) mod raw;
mod renew;
mod serve;
mod values;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use acme::Acme;
pub(crate) use acme::Eab;
pub(crate) use acme::KeyType;
pub(crate) use balancer::{Balancer, HealthCheck, Scheduler, Service};
pub use challenge::{Challenge, ChallengeKind, DnsConfig, DnsMethod, TsigAlg};
pub(crate) use check::{FleetCheck, Sni, TlsProbe};
use ctx::{parse_raw, Ctx};
pub(crate) use ctx::{ConfigError, Source};
pub(crate) use hooks::Hooks;
pub use install::Install;
pub(crate) use install::{InstallCopy, InstallMode};
pub use keepalived::VrrpState;
pub(crate) use keepalived::{Keepalived, KeepalivedMode, LvsMethod};
pub use layout::Layout;
use layout::LAYOUTS;
pub use node::Node;
pub(crate) use notify::Notify;
use raw::RawConfig;
pub(crate) use renew::{Preflight, Renew};
pub use serve::{Serve, WatchMode};
pub(crate) use serve::{
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, DEFAULT_MONITOR_RATE,
    DEFAULT_MONITOR_WAIT,
};
use values::PathKind;
pub(crate) use values::{check_hostname, check_mailto, parse_duration};

pub(crate) const DEFAULT_PATH: &str = "/etc/vipcert/vipcert.toml";
/// Largest config file we read; a real one is a few KiB.
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Let's Encrypt copies the CSR's CN only up to 64 characters.
pub(crate) const MAX_CN_LEN: usize = 64;
/// Let's Encrypt's limit on names in one certificate (classic profile).
pub(crate) const MAX_NAMES: usize = 100;

/// The validated configuration file: every section parsed and checked (see docs/config.md).
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) path: PathBuf,
    pub(crate) virtual_hostname: String,
    pub(crate) virtual_ip: IpAddr,
    /// The shared directory (NFS) holding webroot, accounts, store, state and locks.
    pub shared_dir: PathBuf,
    pub(crate) layout: Layout,
    /// `[acme]`: CA directory, account, key type.
    pub acme: Acme,
    pub(crate) nodes: Vec<Node>,
    /// `[serve]`: the node server.
    pub serve: Serve,
    /// `[install]`: where and how each node installs its certificate and key.
    pub install: Install,
    pub(crate) preflight: Preflight,
    pub(crate) renew: Renew,
    pub(crate) check: FleetCheck,
    pub(crate) balancer: Balancer,
    pub(crate) notify: Notify,
    /// `[hooks]`: commands around each order's validation.
    pub(crate) hooks: Hooks,
    /// `[challenge]`: how the CA validates names (`challenge_for` tells a name's method).
    pub challenge: Challenge,
}

impl Config {
    /// The method that proves `name`: its node's `challenge` when it is a node's own name and
    /// that node has one, else `[challenge] type` (always, for the virtual hostname).
    pub fn challenge_for(&self, name: &str) -> ChallengeKind {
        self.node(name)
            .and_then(|n| n.challenge)
            .unwrap_or(self.challenge.kind)
    }

    /// The challenge types that may answer for `name`, preferred first: its type, and for
    /// dns-persist-01 with `[challenge.dns]` configured also dns-01, for an authorization that
    /// does not offer dns-persist-01 (a CA that has not enabled it yet).
    pub(crate) fn challenge_choices(&self, name: &str) -> Vec<ChallengeKind> {
        match self.challenge_for(name) {
            ChallengeKind::DnsPersist01 if self.challenge.dns.is_some() => {
                vec![ChallengeKind::DnsPersist01, ChallengeKind::Dns01]
            }
            k => vec![k],
        }
    }

    /// Every CA to try, in order: `[acme]`, then each `[[acme.fallback]]`, each as a whole
    /// config whose `[acme]` names that CA (so the account and order code needs no variant).
    pub(crate) fn issuers(&self) -> Vec<Config> {
        let mut v = vec![self.clone()];
        for i in &self.acme.fallback {
            let mut c = self.clone();
            c.acme = self.acme.with_issuer(i);
            v.push(c);
        }
        v
    }

    /// This config with the named CA `ca` (a lineage's, `plan::Lineage::ca`) as its `[acme]`
    /// (`Acme::for_ca`): a named CA's lineage orders, verifies and revokes there; every other
    /// lineage (None) at `[acme]` itself, whose `issuers()` add the fallbacks.
    pub(crate) fn for_ca(&self, ca: Option<&str>) -> Config {
        Config {
            acme: self.acme.for_ca(ca),
            ..self.clone()
        }
    }

    /// This config with the configured CA at `directory` (a version's `meta.ca`: the CA that
    /// issued it) as its `[acme]`: the CA of a lineage on `ca` (its named CA, or `[acme]` and
    /// its fallbacks) first, then any other configured CA; None when no configured CA has
    /// that directory.
    pub(crate) fn at_directory(&self, ca: Option<&str>, directory: &str) -> Option<Config> {
        let mut all = self.for_ca(ca).issuers();
        all.extend(self.issuers());
        all.extend(self.acme.cas.iter().map(|c| self.for_ca(Some(&c.name))));
        all.into_iter().find(|c| c.acme.directory == directory)
    }

    /// This config with the `[[acme.ca]]` named `name` as its `[acme]` (`account --ca`); an
    /// error lists the named CAs when there is none of that name.
    pub fn with_named_ca(&self, name: &str) -> anyhow::Result<Config> {
        if self.acme.cas.iter().any(|c| c.name == name) {
            return Ok(self.for_ca(Some(name)));
        }
        let known: Vec<&str> = self.acme.cas.iter().map(|c| c.name.as_str()).collect();
        anyhow::bail!(
            "{} has no [[acme.ca]] named {name:?}; its named CAs: {}",
            self.path.display(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )
    }

    /// The `[[acme.ca]]` the lineage named `lineage` orders from: in the per-host layout a
    /// lineage is named for its node, whose `ca` it is; None (`[acme]`) for every other.
    pub(crate) fn lineage_ca(&self, lineage: &str) -> Option<&str> {
        match self.layout {
            Layout::PerHost => self.node(lineage).and_then(|n| n.ca.as_deref()),
            Layout::Shared => None,
        }
    }

    /// This config with the staging CA of a dry run as its only CA (`Acme::staging`): what
    /// `--dry-run` orders with. An error says which key to set.
    pub(crate) fn staging(&self) -> anyhow::Result<Config> {
        Ok(Config {
            acme: self.acme.staging()?,
            ..self.clone()
        })
    }

    /// Read and validate the file at `path` (every command, and the balancer's SIGHUP reload).
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        Config::parse(path, &read_bounded(path)?)
    }

    /// `load`, keeping the file's text and keys with their places: for checks made outside
    /// this module that must name file:line:key too (`hostcheck`).
    pub(crate) fn load_source(path: &Path) -> anyhow::Result<(Config, Source)> {
        let text = read_bounded(path)?;
        let raw = parse_raw(path, &text)?;
        let cfg = Config::validate(&Ctx::new(path, &text), &raw)?;
        Ok((cfg, Source::new(path, text, raw)))
    }

    /// Validate `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> anyhow::Result<Config> {
        let raw = parse_raw(path, text)?;
        Config::validate(&Ctx::new(path, text), &raw)
    }

    /// The top-level keys, then each section, always in this order: the first wrong value met
    /// is the one reported.
    fn validate(cx: &Ctx, raw: &RawConfig) -> anyhow::Result<Config> {
        let virtual_hostname = values::hostname(cx, "virtual_hostname", &raw.virtual_hostname)?;
        let virtual_ip = values::host_ip(cx, "virtual_ip", &raw.virtual_ip)?;
        let shared_dir = values::abs_path(cx, "shared_dir", &raw.shared_dir, PathKind::Dir)?;
        let layout = values::one_of(cx, "layout", &raw.layout, LAYOUTS)?;
        let acme = Acme::from_raw(&raw.acme, cx)?;
        let around = node::Around {
            vh: &virtual_hostname,
            vip: virtual_ip,
            layout,
            cas: &acme.cas,
        };
        let nodes = node::from_raw(&raw.nodes, &around, cx)?;
        ca_limits(cx, raw, layout)?;
        let serve = Serve::from_raw(&raw.serve, cx)?;
        let install = Install::from_raw(&raw.install, layout, cx)?;
        let preflight = Preflight::from_raw(&raw.preflight, cx)?;
        let renew = Renew::from_raw(&raw.renew, cx)?;
        let check = FleetCheck::from_raw(&raw.check, &serve, cx)?;
        let balancer = Balancer::from_raw(&raw.balancer, virtual_ip, &serve, cx)?;
        same_family(cx, raw, virtual_ip, &balancer)?;
        let notify = Notify::from_raw(&raw.notify, cx)?;
        let hooks = Hooks::from_raw(&raw.hooks, cx)?;
        let overrides: Vec<_> = raw
            .nodes
            .iter()
            .zip(&nodes)
            .filter_map(|(r, n)| Some((n.challenge?, r.get_ref().challenge.as_ref()?.span())))
            .collect();
        let challenge = Challenge::from_raw(&raw.challenge, &overrides, cx)?;
        Ok(Config {
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
            notify,
            hooks,
            challenge,
        })
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

    /// What `config check` warns about: values that work but will not do what the file says
    /// they are for; each says why and what to do.
    pub fn warnings(&self) -> Vec<String> {
        let lets_encrypt = [acme::LETSENCRYPT, acme::LETSENCRYPT_STAGING];
        if !lets_encrypt.contains(&self.acme.directory.as_str()) {
            return Vec::new();
        }
        self.nodes
            .iter()
            .filter(|n| n.needs_client_auth)
            .map(|n| {
                format!(
                    "{} has needs_client_auth = true, but Let's Encrypt stopped issuing clientAuth on 2026-02-11: `vipcert check` will warn (eku) about its certificate until it comes from a CA that still issues clientAuth (an IGTF CA, which XRootD third-party copy needs: set [acme] directory and eab_kid/eab_hmac_key_file), or until you set needs_client_auth = false",
                    n.hostname
                )
            })
            .collect()
    }

    pub(crate) fn node(&self, hostname: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.hostname == hostname)
    }
}

/// The whole file, or an error naming it: a regular file of at most `MAX_CONFIG_BYTES`, never
/// cut short. Opened non-blocking so that a FIFO or a device cannot hang the caller, and
/// checked with fstat on the open descriptor (not the path, which could change in between).
fn read_bounded(path: &Path) -> anyhow::Result<String> {
    use anyhow::Context;
    use rustix::fs::{FileType, Mode, OFlags};
    use std::io::Read;
    let name = path.display();
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open config {name} (set --config or VIPCERT_CONFIG)"))?;
    let st = rustix::fs::fstat(&fd).with_context(|| format!("cannot stat config {name}"))?;
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::RegularFile {
        anyhow::bail!("config {name} is not a regular file (it is a {kind:?}); point --config at the TOML file");
    }
    let too_big = || {
        anyhow::anyhow!("config {name} is larger than the 1 MiB limit; a vipcert config is a few KiB: is this the right file?")
    };
    if st.st_size as u64 > MAX_CONFIG_BYTES {
        return Err(too_big());
    }
    // One byte past the limit tells a file that grew since fstat from one that fits.
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read config {name}"))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "config {name} is not UTF-8 text (byte {} is not)",
            e.utf8_error().valid_up_to()
        )
    })
}

/// The CA limits that depend on the layout, reported under the key that breaks them: the CN
/// is the virtual hostname (shared) or each node's hostname (per-host), and in the shared
/// layout every `[[node]]` adds one name.
fn ca_limits(cx: &Ctx, raw: &RawConfig, layout: Layout) -> anyhow::Result<()> {
    let too_long = |name: &str| {
        format!(
            "{name:?} is {} characters; Let's Encrypt drops a CN longer than {MAX_CN_LEN}, and GSI matches on the CN: use a shorter name (a CNAME is fine)",
            name.len()
        )
    };
    match layout {
        Layout::Shared => {
            let vh = &raw.virtual_hostname;
            if vh.get_ref().len() > MAX_CN_LEN {
                return cx.err(vh.span(), "virtual_hostname", too_long(vh.get_ref()));
            }
            // The virtual hostname, then one name per node.
            if let Some(n) = raw.nodes.get(MAX_NAMES - 1) {
                let count = raw.nodes.len() + 1;
                return cx.err(
                    n.get_ref().hostname.span(),
                    "node",
                    format!("lineage {} would have {count} names; a Let's Encrypt certificate holds at most {MAX_NAMES}: use layout = \"per-host\" or split the cluster", vh.get_ref()),
                );
            }
        }
        Layout::PerHost => {
            if let Some(h) = raw
                .nodes
                .iter()
                .map(|n| &n.get_ref().hostname)
                .find(|h| h.get_ref().len() > MAX_CN_LEN)
            {
                return cx.err(h.span(), "node.hostname", too_long(h.get_ref()));
            }
        }
    }
    Ok(())
}

/// keepalived in IPVS mode (the default) balances the VIP over the nodes, and drops every
/// real server whose address family differs from its virtual server's ("Address family of
/// virtual server and real server don't match - skipping real server"): the nodes must share
/// the VIP's family. `vipcert balance` (mode "vrrp") proxies across families.
fn same_family(cx: &Ctx, raw: &RawConfig, vip: IpAddr, b: &Balancer) -> anyhow::Result<()> {
    if b.keepalived.mode != KeepalivedMode::Ipvs {
        return Ok(());
    }
    let other = raw.nodes.iter().map(|n| &n.get_ref().address).find(|a| {
        a.get_ref()
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_ipv4() != vip.is_ipv4())
    });
    match other {
        None => Ok(()),
        Some(a) => cx.err(
            a.span(),
            "node.address",
            format!(
                "{} is not of the virtual_ip's family ({vip}): keepalived (balancer.keepalived mode \"ipvs\", the default) drops real servers of another family; give every node an address of the VIP's family, or balance with `vipcert balance` (mode = \"vrrp\")",
                a.get_ref()
            ),
        ),
    }
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
    fn acme_eab_profile_and_fallbacks() {
        let with =
            |acme: &str| GOOD.replacen("http_port = 80\n", &format!("http_port = 80\n{acme}\n"), 1);
        let c = parse(&with(
            "profile = \"classic\"\neab_kid = \"kid-1\"\neab_hmac_key_file = \"/etc/vipcert/eab.key\"\n[[acme.fallback]]\ndirectory = \"https://acme.example.org/dir\"\nprofile = \"x\"",
        ))
        .unwrap();
        assert_eq!(c.acme.profile.as_deref(), Some("classic"));
        assert_eq!(c.acme.eab.as_ref().unwrap().kid, "kid-1");
        let cfgs = c.issuers();
        assert_eq!(cfgs.len(), 2);
        assert_eq!(cfgs[1].acme.directory, "https://acme.example.org/dir");
        assert_eq!(cfgs[1].acme.profile.as_deref(), Some("x"));
        assert_eq!(cfgs[1].acme.eab, None);
        // The fallback inherits the contact, and keeps the shared keys.
        assert_eq!(cfgs[1].acme.contact, c.acme.contact);
        assert_eq!(cfgs[1].acme.key_type, c.acme.key_type);
        // The profile each configured CA orders with; None for a CA not configured.
        assert_eq!(c.acme.profile_at(&c.acme.directory), Some("classic"));
        assert_eq!(c.acme.profile_at("https://acme.example.org/dir"), Some("x"));
        assert_eq!(c.acme.profile_at("https://gone.example.org/dir"), None);

        for (bad, key) in [
            ("eab_kid = \"k\"", "acme.eab_kid"),
            ("eab_hmac_key_file = \"/k\"", "acme.eab_hmac_key_file"),
            (
                "eab_kid = \"a b\"\neab_hmac_key_file = \"/k\"",
                "acme.eab_kid",
            ),
            (
                "eab_kid = \"k\"\neab_hmac_key_file = \"k\"",
                "acme.eab_hmac_key_file",
            ),
            ("profile = \"a/b\"", "acme.profile"),
            ("request_timeout = \"0s\"", "acme.request_timeout"),
            ("request_timeout = \"6m\"", "acme.request_timeout"),
            ("[[acme.fallback]]\ncontact = []", "acme.fallback.directory"),
            (
                "[[acme.fallback]]\ndirectory = \"letsencrypt\"",
                "acme.fallback",
            ),
        ] {
            let e = format!("{:#}", parse(&with(bad)).unwrap_err());
            assert!(e.contains(key), "{bad}: {e}");
        }
    }

    /// `staging_directory`: Let's Encrypt's staging for Let's Encrypt, none for another CA
    /// unless given, never a CA that issues real certificates; `staging()` is that CA alone,
    /// trusted through `staging_ca_roots`, with its account apart, or an error naming the key
    /// to set.
    #[test]
    fn staging_directory_and_the_dry_run_config() {
        let with =
            |acme: &str| GOOD.replacen("http_port = 80\n", &format!("http_port = 80\n{acme}\n"), 1);
        let le = parse(GOOD).unwrap();
        assert_eq!(
            le.acme.staging_directory.as_deref(),
            Some(acme::LETSENCRYPT_STAGING)
        );
        let e = format!("{:#}", le.staging().unwrap_err());
        assert!(e.contains("set [acme] staging_ca_roots"), "{e}");
        assert!(
            e.contains("letsencrypt.org/docs/staging-environment"),
            "{e}"
        );

        let private = |extra: &str| {
            with(&format!(
                "{extra}\n[[acme.fallback]]\ndirectory = \"https://b.example.org/dir\"\neab_kid = \"k\"\neab_hmac_key_file = \"/etc/vipcert/eab.key\""
            ))
            .replacen("\"letsencrypt\"", "\"https://ca.example.org/dir\"", 1)
        };
        let c = parse(&private("")).unwrap();
        assert_eq!(c.acme.staging_directory, None);
        let e = format!("{:#}", c.staging().unwrap_err());
        assert!(e.contains("set [acme] staging_directory"), "{e}");
        assert!(e.contains("https://ca.example.org/dir"), "{e}");

        let c = parse(&private(
            "profile = \"classic\"\nca_roots = \"/etc/vipcert/roots.pem\"\nstaging_directory = \"https://ca.example.org/staging\"\nstaging_ca_roots = \"/etc/vipcert/staging-roots.pem\"",
        ))
        .unwrap();
        let s = c.staging().unwrap();
        assert_eq!(s.acme.directory, "https://ca.example.org/staging");
        assert_eq!(
            s.acme.ca_roots.as_deref(),
            Some(Path::new("/etc/vipcert/staging-roots.pem"))
        );
        assert_eq!(s.issuers().len(), 1, "no fallback in a dry run");
        assert_eq!(s.acme.eab, None);
        assert_eq!(s.acme.profile.as_deref(), Some("classic"));
        assert_eq!(s.acme.contact, c.acme.contact);
        // The same host as the real CA, yet another account directory.
        assert_eq!(c.acme.account_dir(), "ca.example.org");
        assert_eq!(s.acme.account_dir(), "staging/ca.example.org");

        for bad in [
            "staging_directory = \"http://ca.example.org/staging\"",
            "staging_directory = \"letsencrypt\"",
            "staging_directory = \"https://ca.example.org/dir\"",
            "staging_directory = \"https://b.example.org/dir\"",
            "staging_ca_roots = \"roots.pem\"",
        ] {
            let e = format!("{:#}", parse(&private(bad)).unwrap_err());
            let key = bad.split(' ').next().unwrap();
            assert!(e.contains(&format!("acme.{key}")), "{bad}: {e}");
        }
    }

    #[test]
    fn good_config_validates_with_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.layout, Layout::Shared);
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(c.acme.directory, acme::LETSENCRYPT);
        assert_eq!(c.acme.ca_host(), "acme-v02.api.letsencrypt.org");
        assert_eq!(c.acme.request_timeout, std::time::Duration::from_secs(30));
        assert_eq!(c.install.main.key_mode, values::FileMode(0o400));
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
