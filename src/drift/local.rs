//! What one node holds, read from its own installed files: `Observation` (public facts only:
//! the key file is described by its metadata and whether it belongs to the certificate,
//! never by its content, plus the verification policy's verdicts on the files), and the
//! node's user and group names. Local `check` evaluates observations directly; the node
//! server sends the same observations in its status.
//!
//! It does not judge the facts (`drift` evaluates them) nor fetch them from other nodes
//! (`fleet`).

use std::path::Path;

use crate::cert::{self, MAX_PEM_BYTES};
use crate::config::Config;
use crate::plan::Target;
use crate::safefs::{Dir, ReadError};
pub(crate) use crate::status::{FileFacts, Observation};
use crate::store::Store;
use crate::verify::{self, Anchors, Failure, Named, Step};

/// /etc/passwd and /etc/group are read up to this size to name owners.
const MAX_IDS_BYTES: u64 = 4 << 20;

/// What judging installed bytes needs beyond them: the trusted roots, and per lineage the
/// intermediates of the store's current version, for cert files that hold the leaf only
/// (install.fullchain = false).
#[derive(Debug, Clone)]
pub(crate) struct Trust {
    /// The roots of `[acme]` (its `ca_roots`): every lineage's but those in `named`.
    pub(crate) anchors: Anchors,
    /// The roots of each lineage that orders from a `[[acme.ca]]` (its `ca_roots`).
    pub(crate) named: Vec<(String, Anchors)>,
    pub(crate) chains: Vec<(String, Vec<u8>)>,
}

impl Trust {
    /// The roots of `[acme] ca_roots` and of each lineage's named CA (an error names the
    /// file), and the store's chain.pem of each of `lineages` when installed cert files hold
    /// the leaf only.
    pub(crate) fn load(cfg: &Config, store: &Store, lineages: &[String]) -> anyhow::Result<Trust> {
        let anchors = Anchors::load(cfg.acme.ca_roots.as_deref())?;
        let mut named = Vec::new();
        for l in lineages.iter().filter(|l| cfg.lineage_ca(l).is_some()) {
            named.push((l.clone(), Anchors::of_lineage(cfg, l)?));
        }
        let chains = if cfg.install.fullchain {
            vec![]
        } else {
            lineages
                .iter()
                .filter_map(|l| {
                    let n = store.current(l).ok()??;
                    Some((l.clone(), store.read(l, n).ok()?.chain_pem))
                })
                .collect()
        };
        Ok(Trust {
            anchors,
            named,
            chains,
        })
    }

    /// The roots that verify `lineage`'s certificates.
    pub(crate) fn anchors_of(&self, lineage: &str) -> &Anchors {
        self.named
            .iter()
            .find(|(l, _)| l == lineage)
            .map_or(&self.anchors, |(_, a)| a)
    }

    fn chain_of(&self, lineage: &str) -> Option<&[u8]> {
        self.chains
            .iter()
            .find(|(l, _)| l == lineage)
            .map(|(_, c)| c.as_slice())
    }
}

/// Facts from the bytes of a cert file and a key file (None: not readable), and the
/// verification policy's file steps on them.
pub(crate) fn observe_bytes(
    lineage: &str,
    cert: FileFacts,
    cert_pem: Option<&[u8]>,
    key: FileFacts,
    key_pem: Option<&[u8]>,
    trust: &Trust,
) -> Observation {
    let mut o = Observation {
        lineage: lineage.to_string(),
        cert,
        key,
        leaf: None,
        cert_error: None,
        chain: vec![],
        key_error: None,
        key_matches: None,
        verdicts: vec![],
    };
    let Some(cert_pem) = cert_pem else {
        return o;
    };
    let files = verify::Files {
        served: Named {
            file: &o.cert.path,
            bytes: cert_pem,
        },
        parts: None,
        intermediates: trust.chain_of(lineage).map(|bytes| Named {
            file: "the store's chain.pem",
            bytes,
        }),
        key: key_pem.map(|bytes| Named {
            file: &o.key.path,
            bytes,
        }),
    };
    let v = verify::check_files(&files, trust.anchors_of(lineage));
    // The wire fields older checkers read, derived from the verdicts.
    for verdict in &v.verdicts {
        match (verdict.step, &verdict.failure) {
            (Step::Pem, Some(Failure::Pem { why, .. })) => o.cert_error = Some(why.clone()),
            (Step::Key, Some(Failure::Key { why, .. })) => o.key_error = Some(why.clone()),
            (Step::Key, Some(f)) => o.key_error = Some(f.to_string()),
            (Step::KeyMatch, f) => o.key_matches = Some(f.is_none()),
            _ => {}
        }
    }
    o.leaf = v.leaf;
    if o.leaf.is_some() {
        o.chain = cert::pem_certs(cert_pem)
            .map(|d| d[1..].iter().map(|d| cert::sha256_hex(d)).collect())
            .unwrap_or_default();
    }
    o.verdicts = v.verdicts;
    o
}

/// The node's user and group databases, to name owners the way `ls -l` does.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ids {
    passwd: String,
    group: String,
}

impl Ids {
    pub(crate) fn load() -> Ids {
        let read = |name: &str| {
            Dir::open(Path::new("/etc"))
                .ok()
                .and_then(|d| d.read(name, MAX_IDS_BYTES).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        Ids {
            passwd: read("passwd"),
            group: read("group"),
        }
    }
    pub(crate) fn user(&self, uid: u32) -> Option<String> {
        name_of(&self.passwd, uid)
    }
    pub(crate) fn group(&self, gid: u32) -> Option<String> {
        name_of(&self.group, gid)
    }
}

/// The name with numeric id `id` in an /etc/passwd- or /etc/group-format text.
pub(crate) fn name_of(db: &str, id: u32) -> Option<String> {
    crate::install::id_entries(db)
        .find(|&(name, i)| i == id && !name.is_empty())
        .map(|(name, _)| name.to_string())
}

/// Read one installed file without following a symlink in its last component.
fn read_installed(path: &Path, ids: &Ids) -> (FileFacts, Option<Vec<u8>>) {
    let mut f = FileFacts {
        path: path.display().to_string(),
        ..FileFacts::default()
    };
    let Some((dir, name)) = crate::safefs::split_path(path) else {
        f.error = Some("not a file path".into());
        return (f, None);
    };
    let name = std::borrow::Cow::Borrowed(name);
    let dir = match Dir::open(dir) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            f.missing = true;
            return (f, None);
        }
        Err(e) => {
            f.error = Some(format!("cannot open {}: {e}", dir.display()));
            return (f, None);
        }
    };
    // `[install] mode = "links"`: the target is our link into a versioned directory; read the
    // file it resolves to (no link followed on the way). A foreign symlink is reported.
    let (dir, name) = match crate::install::links::resolve(&dir, &name) {
        Ok(Some((vd, file))) => (vd, file.into()),
        Ok(None) => (dir, name),
        Err(e) => {
            f.error = Some(format!("{e:#}"));
            return (f, None);
        }
    };
    let bytes = match dir.read(&name, MAX_PEM_BYTES) {
        Ok(b) => b,
        Err(ReadError::NotFound) => {
            f.missing = true;
            return (f, None);
        }
        Err(e) => {
            f.error = Some(e.to_string());
            return (f, None);
        }
    };
    if let Ok(st) = dir.stat(&name) {
        f.mode = Some(st.st_mode & 0o7777);
        f.uid = Some(st.st_uid);
        f.gid = Some(st.st_gid);
        f.owner = ids.user(st.st_uid);
        f.group = ids.group(st.st_gid);
        f.modified = Some(crate::unixtime::clamp(st.st_mtime));
    }
    (f, Some(bytes))
}

/// Read the cert and key of one target of `lineage`.
pub(crate) fn observe(lineage: &str, target: &Target, ids: &Ids, trust: &Trust) -> Observation {
    let (cf, cb) = read_installed(&target.cert, ids);
    let (kf, kb) = read_installed(&target.key, ids);
    observe_bytes(lineage, cf, cb.as_deref(), kf, kb.as_deref(), trust)
}

/// Every target of every lineage `node` installs, under `root`, in plan then target order.
/// The node server sends this in its status; local `check` evaluates it directly.
pub(crate) fn observe_node(
    lineages: &[String],
    targets: &[Target],
    trust: &Trust,
) -> Vec<Observation> {
    let ids = Ids::load();
    lineages
        .iter()
        .flat_map(|l| targets.iter().map(|t| observe(l, t, &ids, trust)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_names() {
        let db = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
        assert_eq!(name_of(db, 0).as_deref(), Some("root"));
        assert_eq!(name_of(db, 65534).as_deref(), Some("nobody"));
        assert_eq!(name_of(db, 7), None);
        assert_eq!(name_of("garbage", 0), None);
    }
}
