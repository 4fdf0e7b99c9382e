//! What one node holds, read from its own installed files: `Observation` (public facts only:
//! the key file is described by its metadata and whether it belongs to the certificate,
//! never by its content), the node's user and group names, and `check_local`, which
//! evaluates them on this node. The node server sends the same observations in its status.
//!
//! It does not judge the facts (`drift` evaluates them) nor fetch them from other nodes
//! (`fleet`).

use std::path::Path;

use super::{
    new_report, read_store, store_findings, store_summary, target_findings, Expected, Report,
    StoreView, Thresholds,
};
use crate::cert::{self, Problem, MAX_PEM_BYTES};
use crate::config::{Config, Node};
use crate::plan::{Lineage, Plan, Target};
use crate::safefs::{Dir, ReadError};
use crate::status::{FileFacts, Observation};
use crate::store::Store;

/// /etc/passwd and /etc/group are read up to this size to name owners.
const MAX_IDS_BYTES: u64 = 4 << 20;

/// Facts from the bytes of a cert file and a key file (None: not readable).
pub fn observe_bytes(
    lineage: &str,
    cert: FileFacts,
    cert_pem: Option<&[u8]>,
    key: FileFacts,
    key_pem: Option<&[u8]>,
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
    };
    let Some(cert_pem) = cert_pem else {
        return o;
    };
    match cert::pem_certs(cert_pem).and_then(|ders| {
        let leaf = cert::info_from_der(&ders[0])?;
        Ok((
            leaf,
            ders[1..].iter().map(|d| cert::sha256_hex(d)).collect(),
        ))
    }) {
        Ok((leaf, chain)) => {
            o.leaf = Some(leaf);
            o.chain = chain;
        }
        Err(e) => {
            o.cert_error = Some(e.to_string());
            return o;
        }
    }
    if let Some(key_pem) = key_pem {
        match cert::key_matches(cert_pem, key_pem) {
            Ok(()) => o.key_matches = Some(true),
            Err(Problem::KeyMismatch) => o.key_matches = Some(false),
            Err(e) => o.key_error = Some(e.to_string()),
        }
    }
    o
}

/// The node's user and group databases, to name owners the way `ls -l` does.
#[derive(Debug, Clone, Default)]
pub struct Ids {
    passwd: String,
    group: String,
}

impl Ids {
    pub fn load() -> Ids {
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
    pub fn user(&self, uid: u32) -> Option<String> {
        name_of(&self.passwd, uid)
    }
    pub fn group(&self, gid: u32) -> Option<String> {
        name_of(&self.group, gid)
    }
}

/// The name with numeric id `id` in an /etc/passwd- or /etc/group-format text.
pub fn name_of(db: &str, id: u32) -> Option<String> {
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
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        f.error = Some("not a file path".into());
        return (f, None);
    };
    let name = name.to_string_lossy();
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
    }
    (f, Some(bytes))
}

/// Read the cert and key of one target of `lineage`.
pub fn observe(lineage: &str, target: &Target, ids: &Ids) -> Observation {
    let (cf, cb) = read_installed(&target.cert, ids);
    let (kf, kb) = read_installed(&target.key, ids);
    observe_bytes(lineage, cf, cb.as_deref(), kf, kb.as_deref())
}

/// Every target of every lineage `node` installs, under `root`, in plan then target order.
/// The node server sends this in its status; local `check` evaluates it directly.
pub fn observe_node(lineages: &[String], targets: &[Target]) -> Vec<Observation> {
    let ids = Ids::load();
    lineages
        .iter()
        .flat_map(|l| targets.iter().map(|t| observe(l, t, &ids)))
        .collect()
}

/// Check this node's installed files (`check` without `--fleet`).
pub fn check_local(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    node: &Node,
    root: &Path,
    th: Thresholds,
    now: i64,
) -> Report {
    let mut r = new_report("local", th, now);
    let targets = crate::plan::targets(cfg, root);
    let ids = Ids::load();
    let lineages: Vec<&Lineage> = plan.for_node(&node.hostname).collect();
    let views: Vec<StoreView> = lineages
        .iter()
        .map(|l| read_store(store, &l.name))
        .collect();
    for v in &views {
        r.findings.extend(store_findings(v, now));
        r.store.push(store_summary(v));
    }
    for (l, v) in lineages.iter().zip(&views) {
        for t in &targets {
            let obs = observe(&l.name, t, &ids);
            let want = Expected {
                node,
                lineage: l,
                target: t,
                fullchain: cfg.install.fullchain,
            };
            r.findings.extend(target_findings(&want, &obs, v, &th, now));
            r.add_installed(&node.hostname, &obs);
        }
    }
    r
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
