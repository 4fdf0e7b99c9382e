//! `[[node]]`: the transfer nodes behind the VIP, each with its own name and address.
//!
//! Owns the validated `Node` and the rules that keep nodes apart from each other and from the
//! virtual hostname/IP, and that a node's `ca` names a `[[acme.ca]]` in the per-host layout. It does not pick the node this process runs as (`Config::this_node`)
//! nor which names go in which certificate (`plan`).

use std::collections::HashSet;
use std::net::IpAddr;

use toml::Spanned;

use super::acme::NamedCa;
use super::challenge::{ChallengeKind, TYPES};
use super::ctx::Ctx;
use super::layout::Layout;
use super::raw::RawNode;
use super::values::{host_ip, hostname, number, one_of, optional};

/// One `[[node]]`: a transfer node behind the VIP.
#[derive(Debug, Clone)]
pub struct Node {
    /// The node's own hostname (its lineage name in the per-host layout).
    pub hostname: String,
    pub(crate) address: IpAddr,
    pub(crate) weight: u32,
    pub(crate) needs_client_auth: bool,
    /// `challenge`: this node's own name's method, when not `[challenge] type`.
    pub(crate) challenge: Option<ChallengeKind>,
    /// The `[[acme.ca]]` its lineage orders from (per-host layout); None: `[acme]`.
    pub(crate) ca: Option<String>,
}

/// What `from_raw` checks each node against besides the other nodes.
pub(super) struct Around<'a> {
    /// The virtual hostname and IP, which no node may reuse.
    pub(super) vh: &'a str,
    pub(super) vip: IpAddr,
    pub(super) layout: Layout,
    /// `[[acme.ca]]`: the names `ca` may give.
    pub(super) cas: &'a [NamedCa],
}

/// Every node, in file order.
pub(super) fn from_raw(
    raw: &[Spanned<RawNode>],
    around: &Around,
    cx: &Ctx,
) -> anyhow::Result<Vec<Node>> {
    let (vh, vip) = (around.vh, around.vip);
    if raw.is_empty() {
        return cx.err(
            0..0,
            "node",
            "no [[node]] entries: list every transfer node behind the VIP",
        );
    }
    let mut names = HashSet::new();
    let mut addrs = HashSet::new();
    let mut nodes = Vec::new();
    for n in raw {
        let r = n.get_ref();
        nodes.push(Node {
            hostname: node_hostname(r, vh, &mut names, cx)?,
            address: node_address(r, vip, &mut addrs, cx)?,
            // keepalived's real_server weight range; 0 drains.
            weight: number(cx, "node.weight", &r.weight, 1, 0..=65535, "")?,
            needs_client_auth: r.needs_client_auth,
            challenge: optional(&r.challenge, None, |v| {
                one_of(cx, "node.challenge", v, TYPES).map(Some)
            })?,
            ca: node_ca(r, around, cx)?,
        });
    }
    Ok(nodes)
}

fn node_hostname(
    r: &RawNode,
    vh: &str,
    seen: &mut HashSet<String>,
    cx: &Ctx,
) -> anyhow::Result<String> {
    let h = hostname(cx, "node.hostname", &r.hostname)?;
    if h == vh {
        return cx.err(
            r.hostname.span(),
            "node.hostname",
            format!("{h:?} is the virtual hostname; a node needs its own name"),
        );
    }
    if !seen.insert(h.clone()) {
        return cx.err(
            r.hostname.span(),
            "node.hostname",
            format!("node {h:?} is listed twice"),
        );
    }
    Ok(h)
}

/// `ca`: the name of a `[[acme.ca]]`, in the per-host layout only (the shared layout has one
/// certificate, the VIP's, from `[acme]`).
fn node_ca(r: &RawNode, around: &Around, cx: &Ctx) -> anyhow::Result<Option<String>> {
    let Some(c) = &r.ca else {
        return Ok(None);
    };
    let name = c.get_ref();
    if around.layout == Layout::Shared {
        return cx.err(
            c.span(),
            "node.ca",
            "layout = \"shared\" has one certificate for the whole cluster, from [acme]: a CA per node needs layout = \"per-host\"",
        );
    }
    if !around.cas.iter().any(|n| n.name == *name) {
        let known: Vec<&str> = around.cas.iter().map(|n| n.name.as_str()).collect();
        let known = if known.is_empty() {
            "there is none".to_string()
        } else {
            format!("the named CAs are: {}", known.join(", "))
        };
        return cx.err(
            c.span(),
            "node.ca",
            format!("no [[acme.ca]] is named {name:?} ({known}): add one with that name, or fix the name"),
        );
    }
    Ok(Some(name.clone()))
}

fn node_address(
    r: &RawNode,
    vip: IpAddr,
    seen: &mut HashSet<IpAddr>,
    cx: &Ctx,
) -> anyhow::Result<IpAddr> {
    let address = host_ip(cx, "node.address", &r.address)?;
    let problem = if address == vip {
        format!("{address} is the virtual_ip; a node needs its own address")
    } else if !seen.insert(address) {
        format!("address {address} is used by two nodes")
    } else {
        return Ok(address);
    };
    cx.err(r.address.span(), "node.address", problem)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{parse, GOOD};

    #[test]
    fn duplicate_node_is_refused_with_line() {
        let bad = GOOD.replace("dtn2.example.org", "dtn1.example.org");
        let e = format!("{:#}", parse(&bad).unwrap_err());
        assert!(
            e.contains(":15: node.hostname: node \"dtn1.example.org\" is listed twice"),
            "{e}"
        );
    }

    #[test]
    fn node_named_like_vip_and_bad_address_are_refused() {
        let e = format!(
            "{:#}",
            parse(&GOOD.replace("dtn2.example.org", "gridftp.example.org")).unwrap_err()
        );
        assert!(e.contains("is the virtual hostname"), "{e}");
        let e = format!(
            "{:#}",
            parse(&GOOD.replace("192.0.2.12", "192.0.2.300")).unwrap_err()
        );
        assert!(e.contains(":16: node.address"), "{e}");
        let e = format!(
            "{:#}",
            parse(&GOOD.replace("192.0.2.12", "192.0.2.10")).unwrap_err()
        );
        assert!(e.contains("is the virtual_ip"), "{e}");
    }
}
