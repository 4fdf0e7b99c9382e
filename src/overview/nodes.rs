//! `vipcert status --fleet`: what each node has installed for each of its lineages, from its
//! status route (the request `check --fleet` makes, each bounded by `[check] timeout`, all at
//! once), named by store version through the leaf's SHA-256, with when the node installed it.
//!
//! Owns that matching; it does not judge the install (`check` does) and asks no node for
//! anything but its status document.

use std::net::SocketAddr;

use crate::config::Config;
use crate::plan::Plan;
use crate::status::{Observation, Status};

use super::report::NodeInstall;

/// A node's hostname and its status document, or why there is none.
pub(crate) type Answer = (String, Result<Status, String>);

/// Every node's status, in config order.
pub(crate) async fn ask(cfg: &Config) -> Vec<Answer> {
    futures_util::future::join_all(cfg.nodes.iter().map(|n| {
        let addr = SocketAddr::new(n.address, cfg.check.status_port);
        let host = n.hostname.clone();
        async move {
            let st = crate::drift::fetch_status(addr, &host, cfg.check.timeout).await;
            (host, st)
        }
    }))
    .await
}

/// The store's view of one lineage, to name what a node holds.
pub(crate) struct Versions<'a> {
    /// The lineage.
    pub(crate) lineage: &'a str,
    /// (version, SHA-256 of its leaf) of each kept version.
    pub(crate) leaves: &'a [(u32, String)],
    /// The version `current` points at.
    pub(crate) current: Option<u32>,
}

/// What each node that installs `v.lineage` (per `plan`) holds for it, in config order.
pub(crate) fn installs(plan: &Plan, answers: &[Answer], v: &Versions<'_>) -> Vec<NodeInstall> {
    answers
        .iter()
        .filter(|(node, _)| plan.for_node(node).any(|l| l.name == v.lineage))
        .map(|(node, answer)| match answer {
            Err(e) => failed(node, e.clone()),
            Ok(st) if st.node != *node => failed(
                node,
                format!("its address answers as {:?}, not as this node", st.node),
            ),
            Ok(st) => install_of(node, st, v),
        })
        .collect()
}

fn failed(node: &str, error: String) -> NodeInstall {
    NodeInstall {
        node: node.to_string(),
        version: None,
        current: false,
        serial: None,
        installed_at: None,
        error: Some(error),
    }
}

/// What `st` says node `node` holds for `v.lineage`: its main install target (the first
/// observation), else the older per-lineage entry (no install time).
fn install_of(node: &str, st: &Status, v: &Versions<'_>) -> NodeInstall {
    let found = match st.targets.iter().find(|o| o.lineage == v.lineage) {
        Some(o) => from_observation(o),
        None => match st.lineages.iter().find(|e| e.lineage == v.lineage) {
            Some(e) => match (&e.sha256, &e.error) {
                (Some(sha), _) => Ok((sha.clone(), e.serial.clone(), None)),
                (None, err) => Err(err.clone().unwrap_or_else(|| "no certificate".into())),
            },
            None => Err("the node reports nothing for this lineage".into()),
        },
    };
    match found {
        Err(e) => failed(node, e),
        Ok((sha, serial, installed_at)) => {
            let version = v.leaves.iter().find(|(_, s)| *s == sha).map(|(n, _)| *n);
            NodeInstall {
                node: node.to_string(),
                version,
                current: version.is_some() && version == v.current,
                serial,
                installed_at,
                error: None,
            }
        }
    }
}

/// (leaf SHA-256, serial, when installed) of the observed cert file, or why there is none.
fn from_observation(o: &Observation) -> Result<(String, Option<String>, Option<i64>), String> {
    if o.cert.missing {
        return Err(format!("no certificate at {}", o.cert.path));
    }
    if let Some(e) = o.cert.error.as_ref().or(o.cert_error.as_ref()) {
        return Err(format!("{}: {e}", o.cert.path));
    }
    let leaf = o
        .leaf
        .as_ref()
        .ok_or_else(|| format!("{}: no certificate read", o.cert.path))?;
    Ok((
        leaf.sha256.clone(),
        Some(leaf.serial.clone()),
        o.cert.modified,
    ))
}
