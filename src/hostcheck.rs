//! `config check` on a node: what only this machine can tell about a config that parses —
//! `[acme] ca_roots` (and `staging_ca_roots`) reads as trusted roots, each `eab_hmac_key_file` is a secret vipcert
//! accepts, and the install owners and groups exist here. Each is asked of the code that uses
//! the value later (`verify::Anchors::load`, `acme::eab_key`, `install::uid_of`/`gid_of`), so
//! what passes here passes there; each failure names the file, line and key like every config
//! error. A machine that is not a `[[node]]` (a balancer or monitoring host) uses none of
//! these, so nothing is checked there, and it says so.
//!
//! It does not parse or validate the file (`config`), nor print the plan (`plan`).

use std::fmt;
use std::path::Path;

use anyhow::Result;
use toml::Spanned;

use crate::config::{Config, Eab, Source};

/// Whether the host checks ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostChecks {
    /// Every check passed on this machine.
    Passed {
        /// The `[[node]]` this machine is.
        node: String,
    },
    /// This machine is not a `[[node]]`: nothing was checked.
    NotANode {
        /// Its host name.
        machine: String,
    },
}

impl fmt::Display for HostChecks {
    /// One line for `config check`, aligned with the plan's.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostChecks::Passed { node } => write!(
                f,
                "host       checked on this host as {node}: ca_roots, EAB key files, install owners and groups"
            ),
            HostChecks::NotANode { machine } => write!(
                f,
                "host       not checked: this machine ({machine}) is not a [[node]]; run `vipcert config check` on a node (or pass --node NAME) to check ca_roots, EAB key files and install owners there"
            ),
        }
    }
}

/// Load the config at `path` and, when this machine is a node (`node`: `--node`, else its
/// host name), check what only it can tell. Err: the first failure, as a config error; also
/// when `node` is given and names no `[[node]]`.
pub fn run(path: &Path, node: Option<&str>) -> Result<HostChecks> {
    let (cfg, src) = Config::load_source(path)?;
    let me = match cfg.this_node(node) {
        Ok(n) => n.hostname.clone(),
        Err(e) if node.is_some() => return Err(e),
        Err(_) => {
            let machine = rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned();
            return Ok(HostChecks::NotANode { machine });
        }
    };
    ca_roots(&src)?;
    eab_keys(&src)?;
    owners(&src)?;
    Ok(HostChecks::Passed { node: me })
}

/// `[acme] ca_roots` and `staging_ca_roots`, and each `[[acme.ca]] ca_roots`, read as
/// `issue`, `install`, `check` and a dry run read them.
fn ca_roots(src: &Source) -> Result<()> {
    let a = &src.raw.acme;
    let named = a.cas.iter().map(|c| ("ca.ca_roots", &c.get_ref().ca_roots));
    let keys = [
        ("ca_roots", &a.ca_roots),
        ("staging_ca_roots", &a.staging_ca_roots),
    ]
    .into_iter()
    .chain(named);
    for (key, p) in keys {
        let Some(p) = p else { continue };
        if let Err(e) = crate::verify::Anchors::load_as(Some(p.get_ref()), &format!("acme.{key}")) {
            return src.err(
                p.span(),
                &format!("acme.{key}"),
                format!(
                    "{e:#}; put the CA's root certificates there (one PEM file), or remove {key}"
                ),
            );
        }
    }
    Ok(())
}

/// Each `eab_hmac_key_file` (`[acme]`, then every fallback and named CA), read as account
/// creation reads it.
fn eab_keys(src: &Source) -> Result<()> {
    let a = &src.raw.acme;
    let fallbacks = a.fallback.iter().map(|f| {
        (
            "acme.fallback",
            &f.get_ref().eab_kid,
            &f.get_ref().eab_hmac_key_file,
        )
    });
    let named = a.cas.iter().map(|c| {
        (
            "acme.ca",
            &c.get_ref().eab_kid,
            &c.get_ref().eab_hmac_key_file,
        )
    });
    let all = std::iter::once(("acme", &a.eab_kid, &a.eab_hmac_key_file))
        .chain(fallbacks)
        .chain(named);
    for (section, kid, file) in all {
        let (Some(kid), Some(file)) = (kid, file) else {
            continue;
        };
        let eab = Eab {
            kid: kid.get_ref().clone(),
            hmac_key_file: file.get_ref().clone(),
        };
        if let Err(e) = crate::acme::eab_key(&eab) {
            return src.err(
                file.span(),
                &format!("{section}.eab_hmac_key_file"),
                format!("{e:#}"),
            );
        }
    }
    Ok(())
}

/// Each install owner and group given by name, looked up as `install` looks it up.
fn owners(src: &Source) -> Result<()> {
    let i = &src.raw.install;
    let mut keys: Vec<(&str, &Option<Spanned<String>>, bool)> = vec![
        ("install.owner", &i.owner, true),
        ("install.group", &i.group, false),
    ];
    for c in &i.copies {
        keys.push(("install.copy.owner", &c.owner, true));
        keys.push(("install.copy.group", &c.group, false));
    }
    for (key, v, user) in keys {
        let Some(v) = v else {
            continue;
        };
        let found = if user {
            crate::install::uid_of(v.get_ref())
        } else {
            crate::install::gid_of(v.get_ref())
        };
        if let Err(e) = found {
            return src.err(v.span(), key, format!("{e:#}"));
        }
    }
    Ok(())
}
