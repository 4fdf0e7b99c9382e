//! The store as the checker sees it: for one lineage, the current version, the other kept
//! versions (to name the version a stale node still holds) and the renewal state, each read
//! error kept as data so it becomes a finding.
//!
//! It does not write the store (`crate::store`) nor judge what it read (`drift`).

use crate::cert::{self, CertInfo, Problem};
use crate::store::{State, Store};

#[derive(Debug, Clone, PartialEq)]
pub struct StoreVersion {
    pub number: u32,
    pub leaf: CertInfo,
    /// SHA-256 of each certificate in chain.pem.
    pub chain: Vec<String>,
    /// Why this version must not be held: its revocation mark (or why the mark is unreadable).
    pub revoked: Option<String>,
    /// Directory URL of the CA that issued it (meta.json `ca`).
    pub ca: String,
}

#[derive(Debug, Clone)]
pub struct StoreView {
    pub lineage: String,
    /// Err: why current could not be read.
    pub current: Result<Option<StoreVersion>, String>,
    /// The other kept versions (to name the version a stale node still holds).
    pub others: Vec<StoreVersion>,
    pub state: Result<State, String>,
}

impl StoreView {
    pub(super) fn current(&self) -> Option<&StoreVersion> {
        self.current.as_ref().ok().and_then(|c| c.as_ref())
    }
    /// The kept version whose leaf has this SHA-256.
    pub(super) fn version_of(&self, sha256: &str) -> Option<&StoreVersion> {
        self.current()
            .into_iter()
            .chain(&self.others)
            .find(|v| v.leaf.sha256 == sha256)
    }
}

fn store_version(store: &Store, lineage: &str, n: u32) -> Result<StoreVersion, String> {
    let v = store.read(lineage, n).map_err(|e| format!("{e:#}"))?;
    let leaf = cert::leaf_info(&v.cert_pem)
        .map_err(|e| format!("store/{lineage}/{:04}/cert.pem: {e}", n))?;
    let chain = match cert::pem_certs(&v.chain_pem) {
        Ok(d) => d.iter().map(|d| cert::sha256_hex(d)).collect(),
        Err(Problem::NoCertificate) => vec![],
        Err(e) => return Err(format!("store/{lineage}/{:04}/chain.pem: {e}", n)),
    };
    let revoked = match store.revoked(lineage, n) {
        Ok(r) => r.map(|r| r.to_string()),
        Err(e) => Some(format!("{e:#}")),
    };
    Ok(StoreVersion {
        number: n,
        leaf,
        chain,
        revoked,
        ca: v.meta.ca.clone(),
    })
}

/// Read what the store says about `lineage` (current, other versions, renewal state).
pub fn read_store(store: &Store, lineage: &str) -> StoreView {
    let current = match store.current(lineage) {
        Err(e) => Err(format!("{e:#}")),
        Ok(None) => Ok(None),
        Ok(Some(n)) => store_version(store, lineage, n).map(Some),
    };
    let cur_n = current
        .as_ref()
        .ok()
        .and_then(|c| c.as_ref())
        .map(|v| v.number);
    let others = store
        .versions(lineage)
        .unwrap_or_default()
        .into_iter()
        .filter(|&n| Some(n) != cur_n)
        .filter_map(|n| store_version(store, lineage, n).ok())
        .collect();
    StoreView {
        lineage: lineage.to_string(),
        current,
        others,
        state: store.read_state(lineage).map_err(|e| format!("{e:#}")),
    }
}
