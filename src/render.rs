//! Text emitters for the same cluster definition: keepalived.conf (VRRP + IPVS virtual
//! servers), the DR-mode arptables lines for each node (from the OSG "Load Balancing GridFTP"
//! guide) and the GridFTP sysconfig export lines. Pure functions of a `Config`.
//!
//! It writes nothing and runs nothing: `vipcert render …` prints, the operator installs.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::bail;

use crate::config::{Config, HealthCheck, LvsMethod, Scheduler, VrrpState};

/// The IPVS scheduler with the same meaning: vipcert's `rr` honours weights, so it is `wrr`.
pub fn ipvs_sched(s: Scheduler) -> &'static str {
    match s {
        Scheduler::Wlc => "wlc",
        Scheduler::Rr => "wrr",
        Scheduler::Sh => "sh",
    }
}

/// keepalived timers here are whole seconds (rounded up, at least 1).
fn secs(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).max(1) as u64
}

/// keepalived.conf: one vrrp_instance owning the VIP and one virtual_server per service with
/// a real_server per node. DR mode cannot change ports, so a service whose backend_port
/// differs from its port needs lvs_method = "NAT".
pub fn keepalived(cfg: &Config) -> anyhow::Result<String> {
    let b = &cfg.balancer;
    let k = &b.keepalived;
    if k.lvs_method == LvsMethod::Dr {
        if let Some(s) = b.services.iter().find(|s| s.port != s.backend_port) {
            bail!(
                "service {:?} maps port {} to backend_port {}: IPVS direct routing (DR) cannot \
                 change ports; set [balancer.keepalived] lvs_method = \"NAT\" or make the ports equal",
                s.name,
                s.port,
                s.backend_port
            );
        }
    }
    let vip = b.listen_address;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# keepalived.conf for {} ({vip}), rendered by `vipcert render keepalived`\n\
         # from {}. Check with: keepalived -t -f /etc/keepalived/keepalived.conf",
        cfg.virtual_hostname,
        cfg.path.display()
    );
    let _ = writeln!(
        o,
        "\nglobal_defs {{\n    router_id vipcert_{}\n}}\n",
        k.virtual_router_id
    );
    let state = match k.state {
        VrrpState::Master => "MASTER",
        VrrpState::Backup => "BACKUP",
    };
    let _ = writeln!(
        o,
        "vrrp_instance VI_vipcert {{\n    state {state}\n    interface {}\n    virtual_router_id {}\n    priority {}\n    advert_int 1\n    virtual_ipaddress {{\n        {vip}\n    }}\n}}",
        k.interface, k.virtual_router_id, k.priority
    );
    let method = match k.lvs_method {
        LvsMethod::Dr => "DR",
        LvsMethod::Nat => "NAT",
    };
    for s in &b.services {
        let _ = writeln!(
            o,
            "\n# service {:?}: vipcert check {}",
            s.name,
            match &s.check {
                HealthCheck::Tcp => "tcp".to_string(),
                HealthCheck::Banner(p) =>
                    format!("banner {p:?} (keepalived has no banner check: TCP_CHECK)"),
                HealthCheck::Http(p) => format!("http {p}"),
            }
        );
        let _ = writeln!(
            o,
            "virtual_server {vip} {} {{\n    delay_loop {}\n    lvs_sched {}\n    lvs_method {method}\n    protocol TCP",
            s.port,
            secs(b.delay_loop),
            ipvs_sched(b.scheduler)
        );
        for n in &cfg.nodes {
            let _ = writeln!(
                o,
                "\n    # {}\n    real_server {} {} {{\n        weight {}",
                n.hostname, n.address, s.backend_port, n.weight
            );
            let common = format!(
                "            connect_timeout {}\n            connect_port {}\n            retry {}\n            delay_before_retry 1",
                secs(b.connect_timeout),
                s.backend_port,
                b.fall.saturating_sub(1)
            );
            match &s.check {
                HealthCheck::Http(path) => {
                    let _ = writeln!(
                        o,
                        "        HTTP_GET {{\n            url {{\n                path {path}\n                status_code 200-299\n            }}\n{common}\n        }}"
                    );
                }
                _ => {
                    let _ = writeln!(o, "        TCP_CHECK {{\n{common}\n        }}");
                }
            }
            let _ = writeln!(o, "    }}");
        }
        let _ = writeln!(o, "}}");
    }
    Ok(o)
}

/// The OSG guide's DR-mode ARP rules: each node holds the VIP but must neither answer ARP
/// for it nor announce it. With `only`, just that node's lines.
pub fn arptables(cfg: &Config, only: Option<&str>) -> anyhow::Result<String> {
    let vip = cfg.virtual_ip;
    let nodes: Vec<_> = match only {
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
    };
    if vip.is_ipv6() {
        bail!("arptables is IPv4 only; for an IPv6 VIP ({vip}) set the nodes' neighbour discovery instead");
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# DR mode: run on each node (after `ip addr add {vip}/32 dev <NETWORK-INTERFACE>`),\n# then persist with `arptables-save > /etc/sysconfig/arptables`."
    );
    for n in nodes {
        let _ = writeln!(
            o,
            "\n# on {} ({})\narptables -F\narptables -A IN -d {vip} -j DROP\narptables -A OUT -s {vip} -j mangle --mangle-ip-s {}\narptables-save > /etc/sysconfig/arptables",
            n.hostname, n.address, n.address
        );
    }
    Ok(o)
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

    fn cfg(extra: &str) -> Config {
        Config::parse(
            Path::new("/etc/vipcert/vipcert.toml"),
            &format!("{BASE}{extra}"),
        )
        .unwrap()
    }

    #[test]
    fn keepalived_has_vrrp_and_one_virtual_server_per_service() {
        let t = keepalived(&cfg("")).unwrap();
        assert!(t.contains("vrrp_instance VI_vipcert {\n    state MASTER\n    interface eth0\n    virtual_router_id 51\n    priority 100\n"), "{t}");
        assert!(
            t.contains("virtual_ipaddress {\n        192.0.2.10\n    }"),
            "{t}"
        );
        assert!(t.contains("virtual_server 192.0.2.10 2811 {\n    delay_loop 10\n    lvs_sched wlc\n    lvs_method DR\n    protocol TCP"), "{t}");
        assert!(t.contains("virtual_server 192.0.2.10 80 {"), "{t}");
        assert!(t.contains("real_server 192.0.2.12 2811 {\n        weight 3\n        TCP_CHECK {\n            connect_timeout 3\n            connect_port 2811\n"), "{t}");
        assert!(
            t.contains(
                "HTTP_GET {\n            url {\n                path /.well-known/vipcert/health"
            ),
            "{t}"
        );
        assert_eq!(t.matches("real_server ").count(), 4);
    }

    #[test]
    fn keepalived_maps_settings_and_refuses_dr_port_mapping() {
        let c = cfg(
            "[balancer]\nscheduler = \"rr\"\ndelay_loop = \"1500ms\"\n[balancer.keepalived]\nstate = \"backup\"\ninterface = \"bond0\"\nvirtual_router_id = 7\nlvs_method = \"NAT\"\n[[balancer.service]]\nname = \"web\"\nport = 80\nbackend_port = 8080\ncheck = \"tcp\"\n",
        );
        let t = keepalived(&c).unwrap();
        assert!(
            t.contains(
                "state BACKUP\n    interface bond0\n    virtual_router_id 7\n    priority 90"
            ),
            "{t}"
        );
        assert!(t.contains("lvs_sched wrr\n    lvs_method NAT"), "{t}");
        assert!(t.contains("delay_loop 2\n"), "{t}");
        assert!(t.contains("real_server 192.0.2.11 8080 {"), "{t}");
        let dr = cfg("[[balancer.service]]\nname = \"web\"\nport = 80\nbackend_port = 8080\n");
        let e = keepalived(&dr).unwrap_err().to_string();
        assert!(e.contains("lvs_method = \"NAT\""), "{e}");
    }

    #[test]
    fn arptables_lines_per_node_as_in_the_osg_guide() {
        let t = arptables(&cfg(""), None).unwrap();
        assert!(t.contains("# on dtn1.example.org (192.0.2.11)\narptables -F\narptables -A IN -d 192.0.2.10 -j DROP\narptables -A OUT -s 192.0.2.10 -j mangle --mangle-ip-s 192.0.2.11\n"), "{t}");
        assert!(t.contains("--mangle-ip-s 192.0.2.12"), "{t}");
        let one = arptables(&cfg(""), Some("dtn2.example.org")).unwrap();
        assert!(!one.contains("192.0.2.11"), "{one}");
        assert!(arptables(&cfg(""), Some("nope.example.org")).is_err());
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
