//! `vipcert init`: the first configuration file, from a few facts given as flags.
//!
//! Owns turning those facts into TOML text (pure), proving that text with the real parser and
//! plan (`Config::parse`, `Plan::new`) before anything touches the disk, and writing it
//! without ever replacing an admin's file by accident. It does not own the keys' meaning or
//! validation (`config`) nor printing the plan (`plan::render`).

use std::fmt::Write as _;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::config::{check_hostname, Config, ConfigError, Layout};
use crate::plan::Plan;
use crate::safefs::{self, Dir};

/// Mode of the written file: the config holds no secret (the EAB key lives in its own file)
/// and every user may run `vipcert check`.
pub(crate) const FILE_MODE: u32 = 0o644;
/// Mode of a parent directory created for it.
pub(crate) const DIR_MODE: u32 = 0o755;

/// One `--node NAME=ADDRESS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub(crate) hostname: String,
    pub(crate) address: IpAddr,
}

/// clap value parser for `--node`: `dtn1.example.org=192.0.2.11`.
pub fn parse_node_spec(s: &str) -> Result<NodeSpec, String> {
    let (name, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=ADDRESS (e.g. dtn1.example.org=192.0.2.11)"))?;
    check_hostname(name)?;
    let address = addr
        .parse()
        .map_err(|_| format!("{addr:?} (the address of {name}) is not an IP address"))?;
    Ok(NodeSpec {
        hostname: name.to_string(),
        address,
    })
}

/// clap value parser for `--node`: `parse_node_spec`, keeping the text.
pub(crate) fn check_node_spec(s: &str) -> Result<String, String> {
    parse_node_spec(s).map(|_| s.to_string())
}

/// clap value parser for `--virtual-hostname`.
pub(crate) fn parse_hostname(s: &str) -> Result<String, String> {
    check_hostname(s).map(|()| s.to_string())
}

/// clap value parser for `--contact`: an e-mail address, with or without `mailto:`.
pub(crate) fn parse_contact(s: &str) -> Result<String, String> {
    // The config's own rule, so init never writes a contact that `config check` refuses.
    let c = format!("mailto:{}", s.strip_prefix("mailto:").unwrap_or(s));
    match crate::config::check_mailto(&c) {
        Ok(()) => Ok(c),
        Err(_) => Err(format!(
            "{s:?} is not an e-mail address like grid-admin@example.org"
        )),
    }
}

/// What `init` is asked to write.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Where to write the config file.
    pub path: PathBuf,
    /// The name clients use.
    pub virtual_hostname: String,
    /// The VIP.
    pub virtual_ip: IpAddr,
    /// The directory every node mounts.
    pub shared_dir: PathBuf,
    /// One certificate for the cluster, or one per node.
    pub layout: Layout,
    /// `mailto:` URLs.
    pub contacts: Vec<String>,
    /// The `[[node]]` entries, in order.
    pub nodes: Vec<NodeSpec>,
    /// Use Let's Encrypt's staging CA.
    pub staging: bool,
    /// Replace an existing file.
    pub force: bool,
}

/// What `init` did.
#[derive(Debug)]
pub struct Written {
    /// The written config, parsed and validated.
    pub config: Config,
    /// Its plan.
    pub plan: Plan,
    /// An existing file was replaced (`--force`).
    pub replaced: bool,
}

/// A TOML string literal (quoted and escaped).
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The file's text. Only the keys the flags set, plus commented pointers to the ones an admin
/// usually edits next; every other key keeps its documented default.
pub(crate) fn render(o: &InitOptions) -> String {
    let mut s = String::new();
    let layout = match o.layout {
        Layout::Shared => "shared",
        Layout::PerHost => "per-host",
    };
    let _ = writeln!(s, "# vipcert configuration, written by `vipcert init`.");
    let _ = writeln!(
        s,
        "# The same file belongs on every node. Every key: man vipcert.toml (docs/config.md)."
    );
    let _ = writeln!(s, "# Check after each edit: vipcert config check");
    let _ = writeln!(s, "virtual_hostname = {}", quote(&o.virtual_hostname));
    let _ = writeln!(s, "virtual_ip = {}", quote(&o.virtual_ip.to_string()));
    let _ = writeln!(s, "shared_dir = {}", quote(&o.shared_dir.to_string_lossy()));
    let _ = writeln!(s, "layout = {}", quote(layout));
    let _ = writeln!(s, "\n[acme]");
    if o.staging {
        let _ = writeln!(
            s,
            "# Staging: untrusted test certificates. Remove this line for real ones."
        );
        let _ = writeln!(s, "directory = \"letsencrypt-staging\"");
        // Staging chains end at roots no trust store has: the verification policy refuses
        // them (install, issue) until the staging roots are in ca_roots.
        let _ = writeln!(
            s,
            "# Staging chains end at Let's Encrypt's staging roots, which no trust store has:\n\
             # put them (https://letsencrypt.org/docs/staging-environment/) in one PEM file and\n\
             # name it here, or every staging certificate is refused.\n\
             # ca_roots = \"/etc/vipcert/letsencrypt-staging-roots.pem\""
        );
    } else {
        let _ = writeln!(s, "directory = \"letsencrypt\"");
    }
    let contacts: Vec<String> = o.contacts.iter().map(|c| quote(c)).collect();
    let _ = writeln!(s, "contact = [{}]", contacts.join(", "));
    for n in &o.nodes {
        let _ = writeln!(s, "\n[[node]]");
        let _ = writeln!(s, "hostname = {}", quote(&n.hostname));
        let _ = writeln!(s, "address = {}", quote(&n.address.to_string()));
    }
    let _ = writeln!(s, "\n[install]");
    let _ = writeln!(
        s,
        "# Commands run after a new certificate is installed, e.g.:"
    );
    let _ = writeln!(
        s,
        "# reload = [\"systemctl try-reload-or-restart globus-gridftp-server\"]"
    );
    s
}

/// Validate, then write `o.path` (temp + rename, mode 0644; parent created 0755). Nothing is
/// written when the flags do not make a valid configuration or the file exists without
/// `force`.
pub fn run(o: &InitOptions) -> Result<Written> {
    let text = render(o);
    let invalid = |e: anyhow::Error| {
        // A ConfigError points at a line of a file that does not exist yet: name the flag.
        let what = match e.downcast_ref::<ConfigError>() {
            Some(c) => format!("{}: {} ({})", c.key, c.msg, flag_for(&c.key)),
            None => format!("{e:#}"),
        };
        anyhow::anyhow!(
            "these flags do not make a valid configuration (nothing was written): {what}"
        )
    };
    let config = Config::parse(&o.path, &text).map_err(invalid)?;
    let plan = Plan::new(&config).map_err(|e| invalid(e.into()))?;
    let replaced = write(&o.path, text.as_bytes(), o.force)?;
    Ok(Written {
        config,
        plan,
        replaced,
    })
}

/// The flag that sets a config key (for error messages).
fn flag_for(key: &str) -> &'static str {
    match key.split('.').next().unwrap_or(key) {
        "virtual_hostname" => "--virtual-hostname",
        "virtual_ip" => "--virtual-ip",
        "shared_dir" => "--shared-dir",
        "layout" => "--layout",
        "node" => "--node",
        "acme" => "--contact / --staging",
        _ => "the flags",
    }
}

/// Returns whether an existing file was replaced.
fn write(path: &Path, data: &[u8], force: bool) -> Result<bool> {
    let (parent, name) = split(path)?;
    let dir = create_dirs(parent)?;
    let exists = dir
        .exists(name)
        .with_context(|| format!("cannot look at {}", path.display()))?;
    if exists && !force {
        bail!(
            "{} already exists; not replacing it (check it with `vipcert config check`, or \
             run init again with --force to overwrite it)",
            path.display()
        );
    }
    if force {
        dir.replace(name, data, FILE_MODE)
            .with_context(|| format!("cannot write {}", path.display()))?;
        return Ok(exists);
    }
    // Without --force, publish with link(2): it fails if another writer created the file
    // since we looked, so an admin's file is never replaced even in that race.
    let tmp = safefs::temp_name(name);
    dir.create_new(&tmp, data, FILE_MODE)
        .with_context(|| format!("cannot write in {}", parent.display()))?;
    let linked = dir.link(&tmp, name);
    let _ = dir.remove(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => bail!(
            "{} appeared while init ran; not replacing it (use --force to overwrite it)",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot write {}", path.display())),
    }
    dir.sync()
        .with_context(|| format!("cannot sync {}", parent.display()))?;
    Ok(false)
}

/// Open `dir`, creating it and missing parents with mode 0755 whatever the umask (services
/// running as other users, e.g. the balancer's dynamic user, read the config through them).
fn create_dirs(dir: &Path) -> Result<Dir> {
    Dir::create_all(dir, DIR_MODE)
        .with_context(|| format!("cannot create or open directory {}", dir.display()))
}

fn split(path: &Path) -> Result<(&Path, &str)> {
    crate::safefs::split_path(path).with_context(|| format!("{}: not a file name", path.display()))
}

/// Where the file must be for the services: the units read the default path (or
/// `VIPCERT_CONFIG`), whatever `--config` init was given.
fn where_to_put(cfg: &Config) -> String {
    let (path, shared) = (cfg.path.display(), cfg.shared_dir.display());
    if cfg.path == Path::new(crate::config::DEFAULT_PATH) {
        return format!("Put this file at {path} on every node, and mount {shared} on every node.");
    }
    // What the units' sandbox hides from them (PrivateTmp=yes, ProtectHome=yes).
    let hidden = if ["/tmp", "/var/tmp"].iter().any(|d| cfg.path.starts_with(d)) {
        " (outside /tmp: PrivateTmp gives each unit its own)"
    } else if ["/home", "/root", "/run/user"]
        .iter()
        .any(|d| cfg.path.starts_with(d))
    {
        " (outside /home and /root: ProtectHome hides them from the units)"
    } else {
        ""
    };
    format!(
        "Put this file on every node at {default}, where the systemd units and every vipcert \
         command read it (this one is at {path}), and mount {shared} on every node. To keep it \
         elsewhere{hidden}, give each unit a drop-in (`systemctl edit \
         vipcert-serve.service`, and vipcert-renew.service, vipcert-balance.service) with\n     \
         [Service]\n     Environment=VIPCERT_CONFIG={path}\n     and set \
         VIPCERT_CONFIG={path} (or --config) for the commands you run by hand.",
        default = crate::config::DEFAULT_PATH,
    )
}

/// What to do after `init`, for this configuration.
pub fn next_steps(cfg: &Config) -> String {
    let mut s = String::from("\nNext steps:\n");
    let mut step = 0;
    let mut add = |s: &mut String, text: String| {
        step += 1;
        let _ = writeln!(s, "  {step}. {text}");
    };
    add(&mut s, where_to_put(cfg));
    if cfg.acme.directory.contains("staging") && cfg.acme.ca_roots.is_none() {
        add(
            &mut s,
            "Staging: save Let's Encrypt's staging roots in one PEM file and set `ca_roots` in \
             [acme] (see the comment there); without them every staging certificate is refused."
                .to_string(),
        );
    }
    if cfg.shared_dir != Path::new("/srv/vipcert") {
        add(
            &mut s,
            format!(
                "Let the services write there: `systemctl edit vipcert-serve.service` and \
                 `systemctl edit vipcert-renew.service`, each with\n     [Service]\n     \
                 ReadWritePaths={}",
                cfg.shared_dir.display()
            ),
        );
    }
    add(
        &mut s,
        "On every node: `systemctl enable --now vipcert-serve.service vipcert-renew.timer`."
            .to_string(),
    );
    add(
        &mut s,
        format!(
            "On the host that owns {}: `systemctl enable --now vipcert-balance.service` \
             (or `vipcert render keepalived` for keepalived/IPVS).",
            cfg.virtual_ip
        ),
    );
    add(
        &mut s,
        "`vipcert preflight`: every name must answer HTTP-01 before a CA is asked.".to_string(),
    );
    add(
        &mut s,
        "`vipcert issue` on any one node; every node installs the result.".to_string(),
    );
    add(
        &mut s,
        "`vipcert check --fleet` in your monitoring (see man vipcert-check).".to_string(),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> InitOptions {
        InitOptions {
            path: PathBuf::from("/etc/vipcert/vipcert.toml"),
            virtual_hostname: "gridftp.example.org".into(),
            virtual_ip: "192.0.2.10".parse().unwrap(),
            shared_dir: PathBuf::from("/srv/vipcert"),
            layout: Layout::Shared,
            contacts: vec!["mailto:a@example.org".into()],
            nodes: vec![
                parse_node_spec("dtn1.example.org=192.0.2.11").unwrap(),
                parse_node_spec("dtn2.example.org=192.0.2.12").unwrap(),
            ],
            staging: true,
            force: false,
        }
    }

    #[test]
    fn staging_says_its_roots_are_needed() {
        let o = opts();
        let text = render(&o);
        assert!(text.contains("# ca_roots = "), "{text}");
        let cfg = Config::parse(&o.path, &text).unwrap();
        assert!(next_steps(&cfg).contains("staging roots"));
        let prod = InitOptions {
            staging: false,
            ..opts()
        };
        let cfg = Config::parse(&prod.path, &render(&prod)).unwrap();
        assert!(!next_steps(&cfg).contains("staging roots"));
    }

    #[test]
    fn rendered_text_parses_to_the_flags() {
        let o = opts();
        let cfg = Config::parse(&o.path, &render(&o)).unwrap();
        assert_eq!(cfg.virtual_hostname, "gridftp.example.org");
        assert_eq!(cfg.nodes.len(), 2);
        assert_eq!(cfg.nodes[1].hostname, "dtn2.example.org");
        assert_eq!(cfg.acme.contact, vec!["mailto:a@example.org".to_string()]);
        assert!(
            cfg.acme.directory.contains("staging"),
            "{}",
            cfg.acme.directory
        );
    }

    #[test]
    fn quoting_survives_odd_paths() {
        let mut o = opts();
        o.shared_dir = PathBuf::from("/srv/a \"b\"\\c");
        let cfg = Config::parse(&o.path, &render(&o)).unwrap();
        assert_eq!(cfg.shared_dir, PathBuf::from("/srv/a \"b\"\\c"));
    }

    #[test]
    fn node_specs() {
        assert_eq!(
            parse_node_spec("dtn1.example.org=2001:db8::1")
                .unwrap()
                .address,
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        assert!(parse_node_spec("dtn1.example.org").is_err());
        assert!(parse_node_spec("DTN1.example.org=192.0.2.1").is_err());
        let e = parse_node_spec("dtn1.example.org=192.0.2").unwrap_err();
        assert!(e.contains("dtn1.example.org"), "{e}");
    }

    #[test]
    fn contacts() {
        assert_eq!(
            parse_contact("a@example.org").unwrap(),
            "mailto:a@example.org"
        );
        assert_eq!(
            parse_contact("mailto:a@example.org").unwrap(),
            "mailto:a@example.org"
        );
        for bad in [
            "",
            "a",
            "@example.org",
            "a@b",
            "a b@example.org",
            "a@b@example.org",
        ] {
            assert!(parse_contact(bad).is_err(), "{bad:?}");
        }
    }
}
