//! The store as the checker sees it: for one lineage, the current version, the other kept
//! versions (to name the version a stale node still holds) and the renewal state, each read
//! error kept as data so it becomes a finding.
//!
//! The current version is passed through THE verification policy here, where its bytes
//! are at hand; the verdict is kept as data for `policy` to report. It does not write the
//! store (`crate::store`) nor report on what it read (`policy`).

use crate::cert::{self, CertInfo, Problem};
use crate::config::Config;
use crate::plan::Lineage;
use crate::store::{State, Store};
use crate::verify::{self, Anchors, Expect, Failure};

use super::local::Trust;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoreVersion {
    pub(crate) number: u32,
    pub(crate) leaf: CertInfo,
    /// SHA-256 of each certificate in chain.pem.
    pub(crate) chain: Vec<String>,
    /// Current version only: why install refuses it (the first critical failure of the
    /// verification policy).
    pub(crate) refusal: Option<Failure>,
    /// Marked revoked in the store (or the mark is unreadable): nothing installs or rolls
    /// back to it.
    pub(crate) revoked: bool,
    /// Directory URL of the CA that issued it (meta.json `ca`).
    pub(crate) ca: String,
}

#[derive(Debug, Clone)]
pub(crate) struct StoreView {
    pub(crate) lineage: String,
    /// Err: why current could not be read.
    pub(crate) current: Result<Option<StoreVersion>, String>,
    /// The other kept versions (to name the version a stale node still holds).
    pub(crate) others: Vec<StoreVersion>,
    pub(crate) state: Result<State, String>,
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

/// Read version `n`; with `policy`, verify it as install would.
fn store_version(
    store: &Store,
    lineage: &str,
    n: u32,
    policy: Option<(&Anchors, &Expect)>,
) -> Result<StoreVersion, String> {
    let v = store.read(lineage, n).map_err(|e| format!("{e:#}"))?;
    // An unreadable mark counts as revoked: never "not revoked" by accident.
    let revoked = !matches!(store.revoked(lineage, n), Ok(None));
    let refusal = policy.and_then(|(a, want)| {
        let want = Expect { revoked, ..*want };
        verify::check_version(&v, a, &want).refusal().cloned()
    });
    let leaf = cert::leaf_info(&v.cert_pem)
        .map_err(|e| format!("store/{lineage}/{:04}/cert.pem: {e}", n))?;
    let chain = match cert::pem_certs(&v.chain_pem) {
        Ok(d) => d.iter().map(|d| cert::sha256_hex(d)).collect(),
        Err(Problem::NoCertificate) => vec![],
        Err(e) => return Err(format!("store/{lineage}/{:04}/chain.pem: {e}", n)),
    };
    Ok(StoreVersion {
        number: n,
        leaf,
        chain,
        refusal,
        revoked,
        ca: v.meta.ca.clone(),
    })
}

/// Read what the store says about `want.lineage` (current, verified against `anchors` and
/// `want`; other versions; renewal state).
pub(crate) fn read_store(store: &Store, anchors: &Anchors, want: &Expect) -> StoreView {
    let lineage = want.lineage.name.as_str();
    let current = match store.current(lineage) {
        Err(e) => Err(format!("{e:#}")),
        Ok(None) => Ok(None),
        Ok(Some(n)) => store_version(store, lineage, n, Some((anchors, want))).map(Some),
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
        .filter_map(|n| store_version(store, lineage, n, None).ok())
        .collect();
    StoreView {
        lineage: lineage.to_string(),
        current,
        others,
        state: store.read_state(lineage).map_err(|e| format!("{e:#}")),
    }
}

/// `read_store` of each of `lineages`, each current version verified as `install` verifies it
/// with `cfg`, against the roots of its CA (`trust`).
pub(crate) fn read_stores(
    cfg: &Config,
    store: &Store,
    trust: &Trust,
    lineages: &[&Lineage],
    now: i64,
) -> Vec<StoreView> {
    lineages
        .iter()
        .map(|l| {
            let want = verify::expect_for(cfg, l, false, now);
            read_store(store, trust.anchors_of(&l.name), &want)
        })
        .collect()
}
