//! The resolved plan: which certificates (lineages) exist, the names in each in their order
//! (CN first), and which node installs each one where. Pure functions of a `Config`.
//!
//! It does not touch the network or the filesystem; `config check` prints it, `acme` orders
//! it, `install` and `drift` compare against it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::{Config, InstallCopy, Layout, MAX_CN_LEN, MAX_NAMES};

/// One certificate lineage: its versions live under `store/<name>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lineage {
    /// Store directory name: the CN.
    pub(crate) name: String,
    /// Names in CSR order; `names[0]` is the CN.
    pub names: Vec<String>,
    /// Hostnames of the nodes that install this certificate.
    pub(crate) nodes: Vec<String>,
    /// The `[[acme.ca]]` it orders from (a per-host node's `ca`); None: `[acme]`.
    pub(crate) ca: Option<String>,
}

impl Lineage {
    pub(crate) fn cn(&self) -> &str {
        &self.names[0]
    }
    /// The names as a sorted set, for comparison with an issued certificate (the CA decides
    /// SAN order: Let's Encrypt sorts them).
    pub(crate) fn name_set(&self) -> std::collections::BTreeSet<String> {
        self.names.iter().cloned().collect()
    }
}

/// Where one cert+key pair goes on a node, with `install.root` already applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Certificate (fullchain) path, `[install] root` applied.
    pub cert: PathBuf,
    /// Private key path, `[install] root` applied.
    pub key: PathBuf,
    pub(crate) owner: String,
    pub(crate) group: String,
    /// Mode of the certificate file.
    pub cert_mode: u32,
    /// Mode of the key file.
    pub key_mode: u32,
}

/// The resolved plan: which lineages exist, their names in order, which nodes install them.
#[derive(Debug, Clone)]
pub struct Plan {
    pub(crate) lineages: Vec<Lineage>,
}

/// Why the config cannot make a plan a CA would issue.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("lineage {lineage} would have {count} names; a Let's Encrypt certificate holds at most {MAX_NAMES}: use layout = \"per-host\" or split the cluster")]
    /// A lineage has more names than a Let's Encrypt certificate holds.
    TooManyNames {
        /// The lineage.
        lineage: String,
        /// How many names it would have.
        count: usize,
    },
    #[error("{name:?} is {len} characters; Let's Encrypt drops a CN longer than {MAX_CN_LEN}, and GSI matches on the CN")]
    /// A CN name longer than Let's Encrypt copies into the certificate.
    CnTooLong {
        /// The name.
        name: String,
        /// Its length in characters.
        len: usize,
    },
}

impl Plan {
    /// The plan for `cfg`, refused when a lineage breaks a Let's Encrypt limit.
    pub fn new(cfg: &Config) -> Result<Plan, PlanError> {
        let vh = &cfg.virtual_hostname;
        let lineages = match cfg.layout {
            Layout::Shared => {
                let mut names = vec![vh.clone()];
                names.extend(cfg.nodes.iter().map(|n| n.hostname.clone()));
                vec![Lineage {
                    name: vh.clone(),
                    names,
                    nodes: cfg.nodes.iter().map(|n| n.hostname.clone()).collect(),
                    ca: None,
                }]
            }
            Layout::PerHost => cfg
                .nodes
                .iter()
                .map(|n| Lineage {
                    name: n.hostname.clone(),
                    names: vec![n.hostname.clone(), vh.clone()],
                    nodes: vec![n.hostname.clone()],
                    ca: n.ca.clone(),
                })
                .collect(),
        };
        for l in &lineages {
            if l.names.len() > MAX_NAMES {
                return Err(PlanError::TooManyNames {
                    lineage: l.name.clone(),
                    count: l.names.len(),
                });
            }
            if l.cn().len() > MAX_CN_LEN {
                return Err(PlanError::CnTooLong {
                    name: l.cn().to_string(),
                    len: l.cn().len(),
                });
            }
        }
        Ok(Plan { lineages })
    }

    /// Lineages that `node` installs.
    pub(crate) fn for_node<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Lineage> + 'a {
        self.lineages
            .iter()
            .filter(move |l| l.nodes.iter().any(|n| n == node))
    }

    /// The lineage named `name` (the virtual hostname, or a node hostname for per-host).
    pub fn lineage(&self, name: &str) -> Option<&Lineage> {
        self.lineages.iter().find(|l| l.name == name)
    }

    /// The lineage an operator named on the command line, or an error listing the real ones.
    pub(crate) fn named_lineage(&self, name: &str) -> anyhow::Result<&Lineage> {
        self.lineage(name).ok_or_else(|| {
            anyhow::anyhow!(
                "{name:?} is not a lineage of this config; lineages: {}",
                self.lineages
                    .iter()
                    .map(|l| l.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }

    /// Every distinct name across all lineages, in first-seen order.
    pub(crate) fn all_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for l in &self.lineages {
            for n in &l.names {
                if !out.contains(n) {
                    out.push(n.clone());
                }
            }
        }
        out
    }
}

/// The install targets of a node (the main pair, then extra copies), under `root`.
pub fn targets(cfg: &Config, root: &Path) -> Vec<Target> {
    std::iter::once(&cfg.install.main)
        .chain(&cfg.install.extra)
        .map(|c: &InstallCopy| Target {
            cert: under(root, &c.cert),
            key: under(root, &c.key),
            owner: c.owner.clone(),
            group: c.group.clone(),
            cert_mode: c.cert_mode.0,
            key_mode: c.key_mode.0,
        })
        .collect()
}

/// `root` joined with an absolute `path` (`/` + `/etc/x` = `/etc/x`).
pub(crate) fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Which challenge proves each name, and how DNS records are placed.
fn render_challenges(s: &mut String, cfg: &Config) {
    use crate::config::DnsMethod;
    let c = &cfg.challenge;
    let _ = writeln!(
        s,
        "challenge  {} (the virtual hostname and every node without its own)",
        c.kind.as_str()
    );
    if let Some(d) = &c.dns {
        let how = match &d.method {
            DnsMethod::Rfc2136 {
                server,
                tsig_key_name,
                tsig_algorithm,
                ..
            } => {
                format!(
                    "rfc2136 to {server}, TSIG key {tsig_key_name} ({})",
                    tsig_algorithm.as_str()
                )
            }
            DnsMethod::Exec { program } => format!("exec {}", program.display()),
        };
        let zone = d.zone.as_deref().unwrap_or("found by SOA lookup");
        let _ = writeln!(
            s,
            "  dns      {how}; zone {zone}; propagation bound {}",
            humantime::format_duration(d.propagation_timeout)
        );
    }
    let w = cfg
        .nodes
        .iter()
        .map(|n| n.hostname.len())
        .max()
        .unwrap_or(0)
        .max(cfg.virtual_hostname.len());
    let _ = writeln!(
        s,
        "  {:<w$}  {}",
        cfg.virtual_hostname,
        cfg.challenge_for(&cfg.virtual_hostname).as_str()
    );
    for n in &cfg.nodes {
        let own = if n.challenge.is_some() {
            "  ([[node]] challenge)"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "  {:<w$}  {}{own}",
            n.hostname,
            cfg.challenge_for(&n.hostname).as_str()
        );
    }
}

/// Which CA lineage `l` orders from, with its profile and what it falls back to.
fn ca_line(cfg: &Config, l: &Lineage) -> String {
    let acme = cfg.acme.for_ca(l.ca.as_deref());
    let profile = acme
        .profile
        .as_deref()
        .map(|p| format!(", profile {p:?}"))
        .unwrap_or_default();
    let then = if l.ca.is_some() {
        ", no fallback".to_string()
    } else if acme.fallback.is_empty() {
        String::new()
    } else {
        let f: Vec<&str> = acme.fallback.iter().map(|f| f.directory.as_str()).collect();
        format!(", then [[acme.fallback]] {}", f.join(", "))
    };
    format!("{}{profile}{then}", acme.describe())
}

/// The human-readable plan printed by `vipcert config check`.
pub fn render(cfg: &Config, plan: &Plan) -> String {
    let mut s = String::new();
    let layout = match cfg.layout {
        Layout::Shared => "shared (one certificate for every node)",
        Layout::PerHost => "per-host (one certificate per node)",
    };
    let _ = writeln!(s, "config     {}", cfg.path.display());
    let _ = writeln!(s, "layout     {layout}");
    let _ = writeln!(
        s,
        "virtual    {} ({})",
        cfg.virtual_hostname, cfg.virtual_ip
    );
    let _ = writeln!(s, "shared dir {}", cfg.shared_dir.display());
    // The port matters only where a name answers http-01.
    let http = plan
        .all_names()
        .iter()
        .any(|n| cfg.challenge_for(n) == crate::config::ChallengeKind::Http01);
    let port = match http {
        true => format!("HTTP-01 on port {}, ", cfg.acme.http_port),
        false => String::new(),
    };
    let _ = writeln!(
        s,
        "CA         {} ({port}key {})",
        cfg.acme.directory,
        cfg.acme.key_type.as_str()
    );
    let _ = writeln!(s, "nodes      {}", cfg.nodes.len());
    for n in &cfg.nodes {
        let _ = writeln!(s, "  {} {}", n.hostname, n.address);
    }
    render_challenges(&mut s, cfg);
    let targets = targets(cfg, &cfg.install.root);
    for l in &plan.lineages {
        render_lineage(&mut s, cfg, l, &targets);
    }
    s
}

/// One lineage of `render`: its CN, CA, names in order and where it is installed.
fn render_lineage(s: &mut String, cfg: &Config, l: &Lineage, targets: &[Target]) {
    let _ = writeln!(s, "\nlineage {}  ({} names)", l.name, l.names.len());
    let _ = writeln!(s, "  CN   {}", l.cn());
    let _ = writeln!(s, "  CA   {}", ca_line(cfg, l));
    for (i, n) in l.names.iter().enumerate() {
        let _ = writeln!(s, "  SAN{:<2} {n}", i + 1);
    }
    let _ = writeln!(s, "  installed on {}:", l.nodes.join(", "));
    if cfg.install.mode == crate::config::InstallMode::Links {
        let _ = writeln!(
            s,
            "    (mode \"links\": each path is a symlink into <dir>/.vipcert/{}/current/)",
            l.name
        );
    }
    for t in targets {
        let _ = writeln!(
            s,
            "    cert {} ({:04o} {}:{})",
            t.cert.display(),
            t.cert_mode,
            t.owner,
            t.group
        );
        let _ = writeln!(
            s,
            "    key  {} ({:04o} {}:{})",
            t.key.display(),
            t.key_mode,
            t.owner,
            t.group
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(layout: &str, n: usize) -> Config {
        let mut s = format!(
            "virtual_hostname = \"gridftp.example.org\"\nvirtual_ip = \"192.0.2.10\"\nshared_dir = \"/srv/v\"\nlayout = \"{layout}\"\n"
        );
        for i in 1..=n {
            s.push_str(&format!(
                "[[node]]\nhostname = \"dtn{i}.example.org\"\naddress = \"192.0.2.{}\"\n",
                10 + i
            ));
        }
        Config::parse(Path::new("t.toml"), &s).unwrap()
    }

    /// `config check` names the HTTP-01 port only where a name answers http-01.
    #[test]
    fn render_names_the_http_port_only_for_http_01() {
        let base = "virtual_hostname = \"gridftp.example.org\"\nvirtual_ip = \"192.0.2.10\"\nshared_dir = \"/srv/v\"\nlayout = \"per-host\"\n[[node]]\nhostname = \"dtn1.example.org\"\naddress = \"192.0.2.11\"\n";
        let dns = "[challenge]\ntype = \"dns-01\"\n[challenge.dns]\nmethod = \"exec\"\nprogram = \"/usr/local/bin/dns-hook\"\n";
        let text = |t: &str| {
            let c = Config::parse(Path::new("t.toml"), t).unwrap();
            render(&c, &Plan::new(&c).unwrap())
        };
        assert!(text(base).contains("(HTTP-01 on port 80, key rsa2048)"));
        let all_dns = text(&format!("{base}{dns}"));
        assert!(all_dns.contains("CA         https://"), "{all_dns}");
        assert!(!all_dns.contains("HTTP-01 on port"), "{all_dns}");
    }

    #[test]
    fn shared_layout_is_one_lineage_vip_first() {
        let c = cfg("shared", 3);
        let p = Plan::new(&c).unwrap();
        assert_eq!(p.lineages.len(), 1);
        let l = &p.lineages[0];
        assert_eq!(l.cn(), "gridftp.example.org");
        assert_eq!(
            l.names,
            [
                "gridftp.example.org",
                "dtn1.example.org",
                "dtn2.example.org",
                "dtn3.example.org"
            ]
        );
        assert_eq!(l.nodes.len(), 3);
        assert_eq!(p.for_node("dtn2.example.org").count(), 1);
    }

    #[test]
    fn per_host_layout_is_one_lineage_per_node_node_first() {
        let c = cfg("per-host", 3);
        let p = Plan::new(&c).unwrap();
        assert_eq!(p.lineages.len(), 3);
        let l = p.for_node("dtn2.example.org").collect::<Vec<_>>();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].names, ["dtn2.example.org", "gridftp.example.org"]);
        assert_eq!(l[0].nodes, ["dtn2.example.org"]);
        assert_eq!(p.all_names().len(), 4);
    }

    #[test]
    fn targets_apply_root() {
        let c = cfg("per-host", 1);
        let t = targets(&c, Path::new("/lab/n1"));
        assert_eq!(
            t[0].cert,
            PathBuf::from("/lab/n1/etc/grid-security/hostcert.pem")
        );
        assert_eq!(t[0].key_mode, 0o400);
    }

    #[test]
    fn long_cn_is_refused() {
        let long = format!("{}.example.org", "a".repeat(60));
        let s = format!(
            "virtual_hostname = \"{long}\"\nvirtual_ip = \"192.0.2.10\"\nshared_dir = \"/srv/v\"\nlayout = \"shared\"\n[[node]]\nhostname = \"a.example.org\"\naddress = \"192.0.2.2\"\n"
        );
        let e = format!("{:#}", Config::parse(Path::new("t.toml"), &s).unwrap_err());
        assert!(e.contains("longer than 64"), "{e}");
    }
}
