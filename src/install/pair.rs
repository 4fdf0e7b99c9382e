//! The verify step: the pair a lineage's store version holds, read and passed through THE
//! verification policy (`verify`) before anything at a target is touched.
//!
//! Owns `Pair` (the verified bytes to install) and the one function install, rollback and
//! `issue` ask "may this version be installed?" through. It does not decide which version is
//! current (`store`, `renew`, `rollback`) and writes nothing.

use anyhow::{bail, Result};

use crate::config::Config;
use crate::plan::Lineage;
use crate::store::{now, Store};
use crate::verify;

/// The verified bytes to install for one lineage.
#[derive(Debug, Clone)]
pub(crate) struct Pair {
    pub(crate) lineage: String,
    pub(crate) version: u32,
    /// fullchain.pem (install.fullchain = true) or cert.pem.
    pub(crate) cert: Vec<u8>,
    pub(crate) key: Vec<u8>,
    pub(crate) names: Vec<String>,
    pub(crate) serial: String,
}

/// Read `current` of `l` and verify it (see `verified_version`); None before the first issue.
pub(crate) fn verified_pair(cfg: &Config, store: &Store, l: &Lineage) -> Result<Option<Pair>> {
    match store.current(&l.name)? {
        None => Ok(None),
        Some(n) => verified_version(cfg, store, l, n).map(Some),
    }
}

/// Read version `n` of `l` and verify it with THE verification policy (`verify`): a version
/// with any critical failure is refused, with the failure (naming the file) and what to do.
/// Rollback and `issue` ask the same question through this one function.
pub(crate) fn verified_version(cfg: &Config, store: &Store, l: &Lineage, n: u32) -> Result<Pair> {
    let v = store.read(&l.name, n)?;
    let anchors = verify::Anchors::of_lineage(cfg, &l.name)?;
    let revoked = store.revoked(&l.name, n)?.is_some();
    let want = verify::expect_for(cfg, l, revoked, now());
    let verdicts = verify::check_version(&v, &anchors, &want);
    if let Some(f) = verdicts.refusal() {
        bail!("{f}; this version is refused: issue a new certificate (`vipcert renew --force`) or roll back (`vipcert rollback`)");
    }
    let info = verdicts
        .leaf
        .expect("a version without a critical failure parsed");
    Ok(Pair {
        lineage: l.name.clone(),
        version: n,
        cert: if cfg.install.fullchain {
            v.fullchain_pem
        } else {
            v.cert_pem
        },
        key: v.key_pem,
        names: l.names.clone(),
        serial: info.serial,
    })
}
