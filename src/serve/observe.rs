//! This node's status document as the status route serves it: the certificate installed at
//! the main target of each lineage the node installs, and `drift`'s observation of every
//! install target, judged against the policy's roots and chains as they are now.
//!
//! Owns what goes into the document; the document's wire format is `status`'s, and when it is
//! taken (once a second, on its own thread) is `cache`'s. Blocking: it reads installed files
//! and parses keys, and runs only on the refresher thread.

use std::path::Path;

use crate::cert::{leaf_info, MAX_PEM_BYTES};
use crate::config::Config;
use crate::plan::Plan;
use crate::safefs::Dir;
use crate::status::{InstalledLineage, Status};
use crate::store::Store;

/// What builds the status document of `node` (installing under `root`) each time it is called.
pub(super) fn node_status(
    cfg: &Config,
    plan: &Plan,
    node: &str,
    root: &Path,
) -> impl Fn() -> Status + Send + Sync + 'static {
    let store = Store::new(&cfg.shared_dir);
    let targets = crate::plan::targets(cfg, root);
    let target = targets[0].clone();
    let lineages: Vec<String> = plan.for_node(node).map(|l| l.name.clone()).collect();
    let node_name = node.to_string();
    let cfg = cfg.clone();
    move || {
        let mut st = installed_status(&node_name, &lineages, &target.cert);
        // The policy's roots and chains as of now: ca_roots and current may have changed.
        let trust = crate::drift::Trust::load(&cfg, &store, &lineages).unwrap_or_else(|e| {
            tracing::warn!(error = %format!("{e:#}"), "status: judging chains against Mozilla's roots only");
            crate::drift::Trust {
                anchors: crate::verify::Anchors::new(None).expect("no PEM to parse"),
                named: vec![],
                chains: vec![],
            }
        });
        st.targets = crate::drift::observe_node(&lineages, &targets, &trust);
        st
    }
}

/// Facts of the certificate installed at `cert_path` for each lineage.
fn installed_status(node: &str, lineages: &[String], cert_path: &Path) -> Status {
    let lineages = lineages
        .iter()
        .map(|l| {
            let mut e = InstalledLineage {
                lineage: l.clone(),
                path: cert_path.display().to_string(),
                sha256: None,
                serial: None,
                not_after: None,
                cn: None,
                names: vec![],
                error: None,
            };
            let read = cert_path
                .parent()
                .zip(cert_path.file_name())
                .ok_or_else(|| "not a file path".to_string())
                .and_then(|(dir, name)| {
                    Dir::open(dir)
                        .map_err(|e| e.to_string())?
                        .read(&name.to_string_lossy(), MAX_PEM_BYTES)
                        .map_err(|e| e.to_string())
                })
                .and_then(|pem| leaf_info(&pem).map_err(|e| e.to_string()));
            match read {
                Ok(info) => {
                    e.sha256 = Some(info.sha256);
                    e.serial = Some(info.serial);
                    e.not_after = Some(info.not_after);
                    e.cn = info.cn;
                    e.names = info.sans;
                }
                Err(msg) => e.error = Some(msg),
            }
            e
        })
        .collect();
    Status {
        node: node.to_string(),
        lineages,
        targets: vec![],
    }
}
