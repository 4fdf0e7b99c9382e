//! Findings from the network side of `check --fleet`: whether a node's status route answered
//! (and as the right node), and what a TLS probe of a node's endpoint served compared with the
//! store.
//!
//! Plain functions of what was fetched: fetching is `fleet`'s.

use std::net::SocketAddr;

use super::finding::{finding, Check, Finding, Severity};
use super::policy::short;
use super::store_view::StoreView;
use crate::cert::CertInfo;
use crate::config::{Node, TlsProbe};
use crate::plan::Lineage;
use crate::status::Status;

/// Per lineage of `node`: whether its status route answered, and as this node.
pub(crate) fn status_findings(
    node: &Node,
    lineages: &[&Lineage],
    status: &Result<Status, String>,
    addr: SocketAddr,
) -> Vec<Finding> {
    let n = Some(node.hostname.as_str());
    let target = format!("http://{addr}/.well-known/vipcert/status");
    lineages
        .iter()
        .map(|l| match status {
            Err(e) => finding(
                n,
                &l.name,
                Check::Status,
                Severity::Unknown,
                Some(&target),
                format!("cannot tell what the node holds: {e} (is `vipcert serve` running there?)"),
            ),
            Ok(s) if s.node != node.hostname => finding(
                n,
                &l.name,
                Check::Status,
                Severity::Critical,
                Some(&target),
                format!(
                    "{addr} answers as node {:?}: check the node's address and its `serve --node`",
                    s.node
                ),
            ),
            Ok(_) => finding(
                n,
                &l.name,
                Check::Status,
                Severity::Ok,
                Some(&target),
                "node server answered",
            ),
        })
        .collect()
}

/// The finding for one TLS probe of one node: the served leaf against the store.
pub(crate) fn probe_finding(
    node: &Node,
    probe: &TlsProbe,
    endpoint: &str,
    served: &Result<CertInfo, String>,
    node_views: &[&StoreView],
    all_views: &[StoreView],
) -> Finding {
    let n = Some(node.hostname.as_str());
    let lineage = node_views.first().map(|v| v.lineage.as_str()).unwrap_or("");
    let f = |l: &str, sev, d: String| finding(n, l, Check::Probe, sev, Some(endpoint), d);
    match served {
        Err(e) => f(
            lineage,
            Severity::Unknown,
            format!("probe {}: {e}", probe.name),
        ),
        Ok(leaf) => {
            let (about, sev, d) = judge_served(&probe.name, leaf, node_views, all_views);
            f(about.unwrap_or(lineage), sev, d)
        }
    }
}

/// What the leaf probe `name` served is, against the store: the node's current certificate
/// (ok), an older version of one of the node's lineages (warning), another lineage's, or
/// none the store knows (critical). With the lineage the finding is about, when it is not the
/// node's first.
fn judge_served<'v>(
    name: &str,
    leaf: &CertInfo,
    views: &[&'v StoreView],
    all_views: &[StoreView],
) -> (Option<&'v str>, Severity, String) {
    for v in views {
        if let Some(cur) = v.current().filter(|c| c.leaf.sha256 == leaf.sha256) {
            let d = format!(
                "probe {name} serves version {:04} (store current)",
                cur.number
            );
            return (Some(&v.lineage), Severity::Ok, d);
        }
    }
    for v in views {
        if let (Some(old), Some(cur)) = (v.version_of(&leaf.sha256), v.current()) {
            let d = format!(
                "probe {name} serves version {:04}, store current is {:04}: reload the service",
                old.number, cur.number
            );
            return (Some(&v.lineage), Severity::Warning, d);
        }
    }
    // Another lineage's certificate (per-host: a neighbour's pair copied by hand).
    for v in all_views {
        if let Some(other) = v.version_of(&leaf.sha256) {
            let d = format!(
                "probe {name} serves the certificate of lineage {} (version {:04}), not this node's",
                v.lineage, other.number
            );
            return (None, Severity::Critical, d);
        }
    }
    let d = format!(
        "probe {name} serves a certificate that is not in the store: CN {:?}, serial {}, sha256 {}…",
        leaf.cn.as_deref().unwrap_or(""),
        leaf.serial,
        short(&leaf.sha256)
    );
    (None, Severity::Critical, d)
}

#[cfg(test)]
mod tests {
    use super::super::policy::tests::{leaf, node, view, SANS};
    use super::*;
    use crate::config::Sni;

    #[test]
    fn probe_compares_with_store() {
        let (n, v) = (node(false), view());
        let p = TlsProbe {
            name: "xrootd".into(),
            port: 1094,
            sni: Sni::Node,
        };
        let ok = probe_finding(&n, &p, "e", &Ok(leaf("aa", &SANS, 0, 1)), &[&v], &[]);
        assert_eq!(ok.severity, Severity::Ok);
        let old = probe_finding(&n, &p, "e", &Ok(leaf("bb", &SANS, 0, 1)), &[&v], &[]);
        assert_eq!(old.severity, Severity::Warning);
        let other = probe_finding(&n, &p, "e", &Ok(leaf("zz", &SANS, 0, 1)), &[&v], &[]);
        assert_eq!(other.severity, Severity::Critical);
        let down = probe_finding(&n, &p, "e", &Err("refused".into()), &[&v], &[]);
        assert_eq!(down.severity, Severity::Unknown);
    }
}
