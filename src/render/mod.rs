//! Text emitters for the same cluster definition, for the parts vipcert does not run itself:
//! the director's keepalived.conf (`keepalived`: IPVS virtual servers, or VRRP only in front
//! of `vipcert balance`), and what each DR node needs (`node`: the VIP on the node, the ARP
//! settings or arptables lines, the GridFTP sysconfig lines). Pure functions of a `Config`
//! and the role the caller gives.
//!
//! It writes nothing and runs nothing: `vipcert render …` prints, the operator installs.

mod keepalived;
mod node;

pub use keepalived::{ipvs_sched, keepalived, local_among, Role, TRACK_SCRIPT};
pub use node::{arptables, gridftp_sysconfig, node_vip, NodeVipFormat};

#[cfg(test)]
pub(crate) mod tests {
    use crate::config::Config;
    use std::path::Path;

    const BASE: &str = r#"
virtual_hostname = "gridftp.example.org"
virtual_ip = "192.0.2.10"
shared_dir = "/mnt/nfsshare/vipcert"
layout = "shared"
[[node]]
hostname = "dtn1.example.org"
address = "192.0.2.11"
[[node]]
hostname = "dtn2.example.org"
address = "192.0.2.12"
weight = 3
"#;

    /// The two-node example config with `extra` appended.
    pub fn cfg(extra: &str) -> Config {
        Config::parse(
            Path::new("/etc/vipcert/vipcert.toml"),
            &format!("{BASE}{extra}"),
        )
        .unwrap()
    }
}
