//! What a node behind an IPVS direct-routing (DR) director needs, from the OSG "Load
//! Balancing GridFTP" guide: the VIP held locally (now with `ip`, persistently for
//! systemd-networkd or NetworkManager), the kernel's ARP settings that keep the node from
//! answering ARP for the VIP, or the guide's arptables lines instead; and the GridFTP
//! sysconfig export lines. Pure functions of a `Config`.
//!
//! Not here: the director's keepalived.conf (`keepalived`), running or writing anything.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use anyhow::bail;

use crate::config::{Config, Node};

/// The dummy interface the persistent files create to hold the VIP. The runtime lines put the
/// VIP on `lo` instead (the OSG guide's `ip addr add`, and what a kernel without the dummy
/// driver can do); with the ARP settings both behave the same: the node accepts traffic for
/// the VIP and never answers ARP for it.
pub const VIP_LINK: &str = "vipcert0";
/// Where the persistent files go (printed as headers above each file).
pub const NETWORKD_NETDEV: &str = "/etc/systemd/network/50-vipcert-vip.netdev";
pub const NETWORKD_NETWORK: &str = "/etc/systemd/network/50-vipcert-vip.network";
pub const NM_KEYFILE: &str = "/etc/NetworkManager/system-connections/vipcert-vip.nmconnection";
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/90-vipcert-dr.conf";

/// Which part of a DR node's setup `render node-vip` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeVipFormat {
    /// `ip` lines that hold the VIP on `lo` now (lost on reboot).
    Ip,
    /// systemd-networkd `.netdev` + `.network` (Debian, Ubuntu servers).
    Networkd,
    /// A NetworkManager keyfile and the equivalent `nmcli` line (EL8/EL9, Fedora).
    Nm,
    /// The sysctl.d file with arp_ignore=1 / arp_announce=2 (the kernel's way, no arptables).
    Sysctl,
    /// The OSG guide's arptables lines per node, saved, and the service enabled.
    Arptables,
    /// All of the above, in the order an admin applies them.
    All,
}

/// The node-side DR setup in `format`. `only`: just that node's arptables lines.
pub fn node_vip(cfg: &Config, format: NodeVipFormat, only: Option<&str>) -> anyhow::Result<String> {
    let vip = match cfg.virtual_ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => bail!(
            "virtual_ip {v6} is IPv6: `render node-vip` covers IPv4 DR nodes (ARP); for IPv6 put \
             the VIP on lo as {v6}/128 with nodad and keep the nodes from answering neighbour \
             solicitations for it"
        ),
    };
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# DR node setup for {} ({vip}), rendered by `vipcert render node-vip`.\n\
         # Every node holds the VIP so that it accepts what the director forwards, and must\n\
         # never answer ARP for it (else clients reach a node instead of the director).",
        cfg.virtual_hostname
    );
    let all = format == NodeVipFormat::All;
    if all || format == NodeVipFormat::Ip {
        o.push('\n');
        o.push_str(&ip_lines(vip));
    }
    if all || format == NodeVipFormat::Sysctl {
        o.push('\n');
        o.push_str(&sysctl_file());
    }
    if all || format == NodeVipFormat::Networkd {
        o.push('\n');
        o.push_str(&networkd_files(vip));
    }
    if all || format == NodeVipFormat::Nm {
        o.push('\n');
        o.push_str(&nm_keyfile(vip));
    }
    if all || format == NodeVipFormat::Arptables {
        o.push('\n');
        o.push_str(&arptables_lines(vip, &select(cfg, only)?, true));
    }
    Ok(o)
}

/// The VIP on `lo` as a /32 now: it makes the node accept packets for the VIP; the ARP
/// settings (sysctl or arptables) must be in place first or at once.
fn ip_lines(vip: Ipv4Addr) -> String {
    format!(
        "# Now (until reboot): the VIP on lo, host route only.\n\
         sysctl -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2\n\
         ip addr add {vip}/32 dev lo\n"
    )
}

/// arp_ignore=1: answer ARP only for addresses on the interface the request came in on (the
/// VIP is on lo or the dummy link, never on the wire's interface). arp_announce=2: never use
/// the VIP as the source of our own ARP requests. `all` counts together with each interface
/// (the kernel takes the larger value), so these two lines cover every interface.
fn sysctl_file() -> String {
    format!(
        "# {SYSCTL_FILE}  (apply: sysctl --system)\n\
         net.ipv4.conf.all.arp_ignore = 1\n\
         net.ipv4.conf.all.arp_announce = 2\n"
    )
}

fn networkd_files(vip: Ipv4Addr) -> String {
    format!(
        "# {NETWORKD_NETDEV}\n\
         [NetDev]\n\
         Name={VIP_LINK}\n\
         Kind=dummy\n\
         \n\
         # {NETWORKD_NETWORK}  (apply: networkctl reload)\n\
         [Match]\n\
         Name={VIP_LINK}\n\
         \n\
         [Network]\n\
         Address={vip}/32\n"
    )
}

/// NetworkManager ignores a keyfile that is not root-owned 0600.
fn nm_keyfile(vip: Ipv4Addr) -> String {
    format!(
        "# {NM_KEYFILE}\n\
         # (root-owned, mode 0600; apply: nmcli connection reload && nmcli connection up vipcert-vip)\n\
         # or instead in one line:\n\
         # nmcli connection add type dummy ifname {VIP_LINK} con-name vipcert-vip ipv4.method manual ipv4.addresses {vip}/32 ipv6.method disabled\n\
         [connection]\n\
         id=vipcert-vip\n\
         type=dummy\n\
         interface-name={VIP_LINK}\n\
         autoconnect=true\n\
         \n\
         [ipv4]\n\
         method=manual\n\
         address1={vip}/32\n\
         \n\
         [ipv6]\n\
         method=disabled\n"
    )
}

fn select<'a>(cfg: &'a Config, only: Option<&str>) -> anyhow::Result<Vec<&'a Node>> {
    Ok(match only {
        None => cfg.nodes.iter().collect(),
        Some(n) => match cfg.node(n) {
            Some(x) => vec![x],
            None => bail!(
                "--node {n:?} is not a [[node]] in {}; one of: {}",
                cfg.path.display(),
                cfg.nodes
                    .iter()
                    .map(|n| n.hostname.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    })
}

/// The OSG guide's ARP rules for each node; with `enable`, the line that restores them at boot.
fn arptables_lines(vip: Ipv4Addr, nodes: &[&Node], enable: bool) -> String {
    let mut o = String::from(
        "# Instead of the sysctl file (the OSG guide's way): run on each node, after the VIP is\n\
         # on the node, then persist with arptables-save.\n",
    );
    for n in nodes {
        let _ = writeln!(
            o,
            "\n# on {} ({})\narptables -F\narptables -A IN -d {vip} -j DROP\narptables -A OUT -s {vip} -j mangle --mangle-ip-s {}\narptables-save > /etc/sysconfig/arptables",
            n.hostname, n.address, n.address
        );
        if enable {
            let _ = writeln!(o, "systemctl enable arptables");
        }
    }
    o
}

/// The OSG guide's DR-mode ARP rules: each node holds the VIP but must neither answer ARP
/// for it nor announce it. With `only`, just that node's lines.
pub fn arptables(cfg: &Config, only: Option<&str>) -> anyhow::Result<String> {
    let IpAddr::V4(vip) = cfg.virtual_ip else {
        bail!(
            "arptables is IPv4 only; for an IPv6 VIP ({}) set the nodes' neighbour discovery instead",
            cfg.virtual_ip
        );
    };
    Ok(arptables_lines(vip, &select(cfg, only)?, false))
}

/// The lines for /etc/sysconfig/globus-gridftp-server: where GridFTP finds the installed
/// pair (the `[install]` cert and key, under `[install] root`).
pub fn gridftp_sysconfig(cfg: &Config) -> String {
    let m = &cfg.install.main;
    let root = &cfg.install.root;
    format!(
        "export X509_USER_CERT={}\nexport X509_USER_KEY={}\n",
        crate::plan::under(root, &m.cert).display(),
        crate::plan::under(root, &m.key).display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::tests::cfg;

    #[test]
    fn arptables_lines_per_node_as_in_the_osg_guide() {
        let t = arptables(&cfg(""), None).unwrap();
        assert!(t.contains("# on dtn1.example.org (192.0.2.11)\narptables -F\narptables -A IN -d 192.0.2.10 -j DROP\narptables -A OUT -s 192.0.2.10 -j mangle --mangle-ip-s 192.0.2.11\n"), "{t}");
        assert!(t.contains("--mangle-ip-s 192.0.2.12"), "{t}");
        assert!(!t.contains("systemctl"), "{t}");
        let one = arptables(&cfg(""), Some("dtn2.example.org")).unwrap();
        assert!(!one.contains("192.0.2.11"), "{one}");
        assert!(arptables(&cfg(""), Some("nope.example.org")).is_err());
    }

    #[test]
    fn node_vip_formats() {
        let c = cfg("");
        let ip = node_vip(&c, NodeVipFormat::Ip, None).unwrap();
        assert!(ip.contains("\nip addr add 192.0.2.10/32 dev lo\n"), "{ip}");
        assert!(!ip.contains("[NetDev]"), "{ip}");
        let s = node_vip(&c, NodeVipFormat::Sysctl, None).unwrap();
        assert!(s.contains(&format!("# {SYSCTL_FILE}")), "{s}");
        assert!(
            s.contains("net.ipv4.conf.all.arp_ignore = 1\nnet.ipv4.conf.all.arp_announce = 2\n"),
            "{s}"
        );
        let n = node_vip(&c, NodeVipFormat::Networkd, None).unwrap();
        assert!(n.contains("[NetDev]\nName=vipcert0\nKind=dummy\n"), "{n}");
        assert!(
            n.contains("[Match]\nName=vipcert0\n\n[Network]\nAddress=192.0.2.10/32\n"),
            "{n}"
        );
        let m = node_vip(&c, NodeVipFormat::Nm, None).unwrap();
        assert!(m.contains("type=dummy\ninterface-name=vipcert0\n"), "{m}");
        assert!(
            m.contains("[ipv4]\nmethod=manual\naddress1=192.0.2.10/32\n"),
            "{m}"
        );
        let a = node_vip(&c, NodeVipFormat::Arptables, Some("dtn1.example.org")).unwrap();
        assert!(a.contains("--mangle-ip-s 192.0.2.11\narptables-save > /etc/sysconfig/arptables\nsystemctl enable arptables\n"), "{a}");
        assert!(!a.contains("192.0.2.12"), "{a}");
        let all = node_vip(&c, NodeVipFormat::All, None).unwrap();
        for part in [&ip, &s, &n, &m] {
            let body = part.split_once("\n\n").unwrap().1;
            assert!(all.contains(body), "{all}");
        }
        assert_eq!(
            all.matches("systemctl enable arptables").count(),
            2,
            "{all}"
        );
    }

    #[test]
    fn node_vip_refuses_ipv6_and_unknown_nodes() {
        let c = cfg("");
        assert!(node_vip(&c, NodeVipFormat::All, Some("nope")).is_err());
        let mut v6 = c.clone();
        v6.virtual_ip = "2001:db8::10".parse().unwrap();
        let e = node_vip(&v6, NodeVipFormat::Sysctl, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("IPv6"), "{e}");
    }

    #[test]
    fn sysconfig_exports_the_install_paths() {
        assert_eq!(
            gridftp_sysconfig(&cfg("")),
            "export X509_USER_CERT=/etc/grid-security/gridftp/gridftp-hostcert.pem\nexport X509_USER_KEY=/etc/grid-security/gridftp/gridftp-hostkey.pem\n"
        );
        let c = cfg("[install]\ncert = \"/etc/grid-security/hostcert.pem\"\nkey = \"/etc/grid-security/hostkey.pem\"\n");
        assert!(gridftp_sysconfig(&c).contains("X509_USER_KEY=/etc/grid-security/hostkey.pem"));
    }
}
