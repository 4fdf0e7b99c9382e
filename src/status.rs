//! The status document of the node server (`/.well-known/vipcert/status`): the wire format
//! `check --fleet` reads. Public data only: certificate facts, file metadata and whether a key
//! belongs to its certificate, never key material.
//!
//! Owns the types and nothing else: the node server (`serve`) builds and serves them, the
//! drift checker (`drift`) observes local files into them and judges them (the verdicts are
//! `verify`'s). Both depend on this module; `drift` never imports `serve`.

use serde::{Deserialize, Serialize};

use crate::cert::CertInfo;
use crate::verify::Verdict;

/// What `/.well-known/vipcert/status` returns. Public data only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Status {
    pub(crate) node: String,
    pub(crate) lineages: Vec<InstalledLineage>,
    /// Every install target of every lineage, as `check --fleet` evaluates them (file
    /// metadata, certificate facts, whether the key matches; never key material).
    #[serde(default)]
    pub(crate) targets: Vec<Observation>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct InstalledLineage {
    pub(crate) lineage: String,
    /// Installed certificate path on the node.
    pub(crate) path: String,
    /// None when the installed certificate cannot be read or parsed; `error` says why.
    pub(crate) sha256: Option<String>,
    pub(crate) serial: Option<String>,
    #[serde(default, deserialize_with = "crate::unixtime::clamped_opt")]
    pub(crate) not_after: Option<i64>,
    pub(crate) cn: Option<String>,
    pub(crate) names: Vec<String>,
    pub(crate) error: Option<String>,
}

/// One installed file as seen on its node. `missing` and `error` are mutually exclusive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct FileFacts {
    pub(crate) path: String,
    pub(crate) missing: bool,
    /// Why it could not be read (not a regular file, permission, I/O).
    pub(crate) error: Option<String>,
    pub(crate) mode: Option<u32>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    /// Names of uid and gid on the node, when it knows them.
    pub(crate) owner: Option<String>,
    pub(crate) group: Option<String>,
    /// The file's modification time by its node's clock, unix seconds: when install wrote it
    /// (with `[install] mode = "links"`, the versioned copy the link resolves to), shown by
    /// `vipcert status --fleet` as when the node installed it. Absent from older nodes.
    #[serde(default, deserialize_with = "crate::unixtime::clamped_opt")]
    pub(crate) modified: Option<i64>,
}

impl FileFacts {
    pub(crate) fn readable(&self) -> bool {
        !self.missing && self.error.is_none()
    }
}

/// What one install target of one lineage holds on a node. Public data only: the key file is
/// described by its metadata and whether it belongs to the certificate, never by its content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Observation {
    pub(crate) lineage: String,
    pub(crate) cert: FileFacts,
    pub(crate) key: FileFacts,
    /// The first certificate of the cert file.
    pub(crate) leaf: Option<CertInfo>,
    pub(crate) cert_error: Option<String>,
    /// SHA-256 of each certificate after the leaf in the cert file.
    #[serde(default)]
    pub(crate) chain: Vec<String>,
    pub(crate) key_error: Option<String>,
    pub(crate) key_matches: Option<bool>,
    /// The verification policy's file steps (PEM, key, key match, chain, root) as the node
    /// computed them: the fleet checker cannot, it never sees the key nor the node's chain.
    #[serde(default)]
    pub(crate) verdicts: Vec<Verdict>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `modified` is an addition: a document from an older node has none (unknown), and a
    /// time no clock shows is clamped like every other time read from elsewhere.
    #[test]
    fn file_facts_read_with_and_without_a_modification_time() {
        let old: FileFacts = serde_json::from_str(r#"{"path": "/c.pem", "missing": false, "error": null, "mode": 420, "uid": 0, "gid": 0, "owner": "root", "group": "root"}"#).unwrap();
        assert_eq!(old.modified, None);
        let new: FileFacts =
            serde_json::from_str(r#"{"path": "/c.pem", "missing": false, "modified": 1e300}"#)
                .unwrap();
        assert_eq!(new.modified, Some(crate::unixtime::MAX));
        let back: FileFacts = serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
        assert_eq!(back, new);
    }
}
