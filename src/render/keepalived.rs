//! keepalived.conf for the balancer hosts, in one of two modes: `ipvs` (keepalived balances
//! with IPVS: a vrrp_instance plus one virtual_server per service, the OSG guide's setup) or
//! `vrrp` (keepalived only moves the VIP between hosts running `vipcert balance`, with a track
//! script on the balancer's admin endpoint). One file serves every host: the caller's [`Role`]
//! picks state, priority and this host's address among the unicast peers.
//!
//! Not here: the nodes' side (`node`), reading interfaces beyond [`local_among`].

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::bail;

use crate::config::{
    Config, HealthCheck, Keepalived, KeepalivedMode, LvsMethod, Scheduler, VrrpState,
};
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

/// This host's part in the VRRP group, from `render keepalived` flags; None: from the file,
/// else from this host's position in unicast_peers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Role {
    pub state: Option<VrrpState>,
    pub priority: Option<u8>,
    /// This host's address among unicast_peers; None: the caller found none given.
    pub unicast_src_ip: Option<IpAddr>,
}

/// The addresses among `peers` that this host holds. The kernel picks a local destination's
/// own address as the source of a connected UDP socket (nothing is sent), which holds where
/// a bind test would not: balancer hosts often set ip_nonlocal_bind for the VIP.
pub fn local_among(peers: &[IpAddr]) -> Vec<IpAddr> {
    let is_local = |ip: IpAddr| {
        let any: SocketAddr = if ip.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        UdpSocket::bind(any)
            .and_then(|s| {
                s.connect(SocketAddr::new(ip, 9))?;
                s.local_addr()
            })
            .is_ok_and(|a| a.ip() == ip)
    };
    peers.iter().copied().filter(|ip| is_local(*ip)).collect()
}

/// The VRRP settings of this host, resolved: flags first, then the file, then the position
/// in unicast_peers (the first is MASTER at 100, each next one BACKUP 10 lower).
#[derive(Debug, PartialEq, Eq)]
struct Resolved {
    state: VrrpState,
    priority: u8,
    src: Option<IpAddr>,
    peers: Vec<IpAddr>,
}

fn resolve(k: &Keepalived, role: &Role, local: &[IpAddr]) -> anyhow::Result<Resolved> {
    let mut src = role.unicast_src_ip;
    if !k.unicast_peers.is_empty() && src.is_none() {
        src = match local {
            [one] => Some(*one),
            [] => bail!(
                "none of [balancer.keepalived] unicast_peers ({}) is an address of this host; \
                 run `render keepalived` on the balancer host itself, or pass --unicast-src-ip",
                list(&k.unicast_peers)
            ),
            many => bail!(
                "this host holds several of [balancer.keepalived] unicast_peers ({}); pass \
                 --unicast-src-ip with the one VRRP should use",
                list(many)
            ),
        };
    }
    let index = src.and_then(|s| k.unicast_peers.iter().position(|p| *p == s));
    if let (Some(s), None, false) = (src, index, k.unicast_peers.is_empty()) {
        bail!(
            "--unicast-src-ip {s} is not one of [balancer.keepalived] unicast_peers ({}); add it \
             there so that the other hosts send it their adverts",
            list(&k.unicast_peers)
        );
    }
    let state = role.state.or(k.state).unwrap_or(match index {
        Some(i) if i > 0 => VrrpState::Backup,
        _ => VrrpState::Master,
    });
    let priority = role
        .priority
        .or(k.priority)
        .unwrap_or(match (index, state) {
            (Some(i), _) => 100u8.saturating_sub(10 * i.min(9) as u8),
            (None, VrrpState::Master) => 100,
            (None, VrrpState::Backup) => 90,
        });
    // A host never lists itself: it would send its adverts to itself.
    let peers = k
        .unicast_peers
        .iter()
        .copied()
        .filter(|p| Some(*p) != src)
        .collect();
    Ok(Resolved {
        state,
        priority,
        src,
        peers,
    })
}

fn list(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The track script's check: the balancer's admin endpoint answers (the proxy and its
/// metrics share the process). An unspecified admin address is asked on loopback.
fn admin_url(admin: SocketAddr) -> String {
    let ip = match admin.ip() {
        IpAddr::V4(v) if v.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/metrics", SocketAddr::new(ip, admin.port()))
}

/// The name of the vrrp_script that watches `vipcert balance`.
pub const TRACK_SCRIPT: &str = "chk_vipcert_balance";

/// keepalived.conf for this host (see the module doc). In `ipvs` mode DR cannot change
/// ports, so a service whose backend_port differs from its port needs lvs_method = "NAT".
pub fn keepalived(cfg: &Config, role: &Role) -> anyhow::Result<String> {
    let k = &cfg.balancer.keepalived;
    let local = match role.unicast_src_ip {
        None if !k.unicast_peers.is_empty() => local_among(&k.unicast_peers),
        _ => Vec::new(),
    };
    keepalived_for(cfg, &resolve(k, role, &local)?)
}

fn keepalived_for(cfg: &Config, r: &Resolved) -> anyhow::Result<String> {
    let b = &cfg.balancer;
    let k = &b.keepalived;
    if k.mode == KeepalivedMode::Ipvs && k.lvs_method == LvsMethod::Dr {
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
         # from {}; mode {}. Check with: keepalived -t -f /etc/keepalived/keepalived.conf",
        cfg.virtual_hostname,
        cfg.path.display(),
        match k.mode {
            KeepalivedMode::Ipvs => "ipvs (keepalived balances with IPVS)",
            KeepalivedMode::Vrrp => "vrrp (VIP failover for `vipcert balance`)",
        }
    );
    global_defs(&mut o, k);
    if k.mode == KeepalivedMode::Vrrp {
        // keepalived runs scripts only as a non-root user under enable_script_security;
        // curl answers within the 1 s interval or counts as a failure. Two failures in a row
        // (2 s) take the VIP away: one slow answer must not move it, since moving it breaks
        // every connection through this balancer.
        let _ = writeln!(
            o,
            "# The VIP leaves this host when its `vipcert balance` stops answering on\n\
             # [balancer] admin_listen ({}).\n\
             vrrp_script {TRACK_SCRIPT} {{\n    script \"/usr/bin/curl -sf -o /dev/null --max-time 1 {}\"\n    interval 1\n    timeout 2\n    fall 2\n    rise 1\n}}\n",
            b.admin_listen,
            admin_url(b.admin_listen)
        );
    }
    vrrp_instance(&mut o, cfg, r);
    if k.mode == KeepalivedMode::Ipvs {
        virtual_servers(&mut o, cfg);
    }
    Ok(o)
}

fn global_defs(o: &mut String, k: &Keepalived) {
    let _ = writeln!(
        o,
        "\nglobal_defs {{\n    router_id vipcert_{}",
        k.virtual_router_id
    );
    if !k.notification_email.is_empty() {
        let _ = writeln!(o, "    notification_email {{");
        for e in &k.notification_email {
            let _ = writeln!(o, "        {e}");
        }
        let _ = writeln!(o, "    }}");
    }
    if let Some(f) = &k.notification_email_from {
        let _ = writeln!(o, "    notification_email_from {f}");
    }
    if let Some(m) = &k.smtp_server {
        let _ = writeln!(
            o,
            "    smtp_server {} {}\n    smtp_connect_timeout 30",
            m.host, m.port
        );
    }
    // After a split (a master cut off from the segment comes back), two masters meet: the
    // lower one answers the higher one's advert, and the higher one then re-sends gratuitous
    // ARP, so clients that learnt the lower one's MAC move back at once, not when their ARP
    // entry expires (measured: 8 s without these two lines).
    let _ = writeln!(
        o,
        "    vrrp_higher_prio_send_advert\n    vrrp_garp_lower_prio_repeat 5"
    );
    if k.mode == KeepalivedMode::Vrrp {
        let _ = writeln!(o, "    enable_script_security\n    script_user nobody");
    }
    let _ = writeln!(o, "}}\n");
}

fn vrrp_instance(o: &mut String, cfg: &Config, r: &Resolved) {
    let k = &cfg.balancer.keepalived;
    let vip = cfg.balancer.listen_address;
    // nopreempt works only when every host starts as BACKUP: the highest priority then
    // takes the VIP at start, and keeps it until it fails.
    let state = match (k.preempt, r.state) {
        (true, VrrpState::Master) => "MASTER",
        _ => "BACKUP",
    };
    let _ = writeln!(
        o,
        "vrrp_instance VI_vipcert {{\n    state {state}\n    interface {}\n    virtual_router_id {}\n    priority {}\n    advert_int 1",
        k.interface, k.virtual_router_id, r.priority
    );
    if !k.preempt {
        let _ = writeln!(o, "    nopreempt");
    }
    if let Some(src) = r.src {
        let _ = writeln!(o, "    unicast_src_ip {src}\n    unicast_peer {{");
        for p in &r.peers {
            let _ = writeln!(o, "        {p}");
        }
        let _ = writeln!(o, "    }}");
    }
    let plen = if vip.is_ipv4() { 32 } else { 128 };
    let _ = writeln!(o, "    virtual_ipaddress {{\n        {vip}/{plen}\n    }}");
    if k.mode == KeepalivedMode::Vrrp {
        let _ = writeln!(o, "    track_script {{\n        {TRACK_SCRIPT}\n    }}");
    }
    if !k.notification_email.is_empty() {
        let _ = writeln!(o, "    smtp_alert");
    }
    let _ = writeln!(o, "}}");
}

/// One IPVS virtual_server per service, a real_server per node.
fn virtual_servers(o: &mut String, cfg: &Config) {
    let b = &cfg.balancer;
    let k = &b.keepalived;
    let vip = b.listen_address;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::tests::cfg;

    #[test]
    fn keepalived_has_vrrp_and_one_virtual_server_per_service() {
        let t = keepalived(&cfg(""), &Role::default()).unwrap();
        assert!(t.contains("vrrp_instance VI_vipcert {\n    state MASTER\n    interface eth0\n    virtual_router_id 51\n    priority 100\n"), "{t}");
        assert!(
            t.contains("virtual_ipaddress {\n        192.0.2.10/32\n    }"),
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
        let t = keepalived(&c, &Role::default()).unwrap();
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
        let e = keepalived(&dr, &Role::default()).unwrap_err().to_string();
        assert!(e.contains("lvs_method = \"NAT\""), "{e}");
    }

    const VRRP: &str = "[balancer.keepalived]\nmode = \"vrrp\"\nunicast_peers = [\"192.0.2.1\", \"192.0.2.2\", \"192.0.2.3\"]\n";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_file_every_host_role_from_position_flags_or_file() {
        let c = cfg(VRRP);
        let k = &c.balancer.keepalived;
        let none = Role::default();
        let r = resolve(k, &none, &[ip("192.0.2.1")]).unwrap();
        assert_eq!(
            (r.state, r.priority, r.src),
            (VrrpState::Master, 100, Some(ip("192.0.2.1")))
        );
        assert_eq!(r.peers, vec![ip("192.0.2.2"), ip("192.0.2.3")]);
        let r = resolve(k, &none, &[ip("192.0.2.3")]).unwrap();
        assert_eq!((r.state, r.priority), (VrrpState::Backup, 80));
        assert_eq!(r.peers, vec![ip("192.0.2.1"), ip("192.0.2.2")]);
        // Flags win over the position; --unicast-src-ip over the interfaces.
        let flags = Role {
            state: Some(VrrpState::Backup),
            priority: Some(42),
            unicast_src_ip: Some(ip("192.0.2.2")),
        };
        let r = resolve(k, &flags, &[]).unwrap();
        assert_eq!(
            (r.state, r.priority, r.src),
            (VrrpState::Backup, 42, Some(ip("192.0.2.2")))
        );
        assert!(!r.peers.contains(&ip("192.0.2.2")));
        // The file's state/priority win over the position, lose to flags.
        let f = cfg(&format!("{VRRP}state = \"BACKUP\"\npriority = 7\n"));
        let r = resolve(&f.balancer.keepalived, &none, &[ip("192.0.2.1")]).unwrap();
        assert_eq!((r.state, r.priority), (VrrpState::Backup, 7));
        // No peer is here, several are, or the flag names a stranger: a clear refusal.
        let e = resolve(k, &none, &[]).unwrap_err().to_string();
        assert!(e.contains("--unicast-src-ip"), "{e}");
        let e = resolve(k, &none, &[ip("192.0.2.1"), ip("192.0.2.2")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("several"), "{e}");
        let stranger = Role {
            unicast_src_ip: Some(ip("192.0.2.99")),
            ..Role::default()
        };
        let e = resolve(k, &stranger, &[]).unwrap_err().to_string();
        assert!(e.contains("not one of"), "{e}");
    }

    #[test]
    fn vrrp_mode_tracks_the_balancer_and_has_no_virtual_server() {
        let heal = "    vrrp_higher_prio_send_advert\n    vrrp_garp_lower_prio_repeat 5\n";
        assert!(keepalived(&cfg(""), &Role::default())
            .unwrap()
            .contains(heal));
        let c = cfg(&format!(
            "{VRRP}preempt = false\nnotification_email = [\"grid-ops@example.org\"]\nnotification_email_from = \"lb@example.org\"\nsmtp_server = \"mail.example.org:2525\"\n"
        ));
        let role = Role {
            unicast_src_ip: Some(ip("192.0.2.2")),
            ..Role::default()
        };
        let t = keepalived(&c, &role).unwrap();
        assert!(!t.contains("virtual_server"), "{t}");
        assert!(t.contains("    notification_email {\n        grid-ops@example.org\n    }\n    notification_email_from lb@example.org\n    smtp_server mail.example.org 2525\n"), "{t}");
        assert!(
            t.contains("    enable_script_security\n    script_user nobody\n"),
            "{t}"
        );
        assert!(t.contains(&format!("vrrp_script {TRACK_SCRIPT} {{\n    script \"/usr/bin/curl -sf -o /dev/null --max-time 1 http://127.0.0.1:9811/metrics\"\n    interval 1\n")), "{t}");
        // nopreempt needs every host to start BACKUP, even the first.
        assert!(t.contains("    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    priority 90\n    advert_int 1\n    nopreempt\n    unicast_src_ip 192.0.2.2\n    unicast_peer {\n        192.0.2.1\n        192.0.2.3\n    }\n"), "{t}");
        assert!(
            t.contains(&format!(
                "    track_script {{\n        {TRACK_SCRIPT}\n    }}\n    smtp_alert\n}}"
            )),
            "{t}"
        );
        let first = Role {
            unicast_src_ip: Some(ip("192.0.2.1")),
            ..Role::default()
        };
        let t = keepalived(&c, &first).unwrap();
        assert!(
            t.contains("    state BACKUP\n") && t.contains("    priority 100\n"),
            "{t}"
        );
        // An unspecified admin address is asked on loopback.
        assert_eq!(
            admin_url("0.0.0.0:9811".parse().unwrap()),
            "http://127.0.0.1:9811/metrics"
        );
        assert_eq!(
            admin_url("[::]:9811".parse().unwrap()),
            "http://[::1]:9811/metrics"
        );
    }

    #[test]
    fn local_peers_are_found_by_the_kernels_source_choice() {
        let lo = ip("127.0.0.1");
        // 192.0.2.0/24 is documentation space: no host holds it on purpose.
        assert_eq!(local_among(&[lo, ip("192.0.2.254")]), vec![lo]);
    }

    #[test]
    fn ipvs_mode_without_peers_keeps_the_osg_shape() {
        let t = keepalived(
            &cfg(""),
            &Role {
                state: Some(VrrpState::Backup),
                ..Role::default()
            },
        )
        .unwrap();
        assert!(
            t.contains("state BACKUP\n") && t.contains("priority 90\n"),
            "{t}"
        );
        assert!(
            !t.contains("unicast") && !t.contains("vrrp_script") && !t.contains("nopreempt"),
            "{t}"
        );
        assert!(!t.contains("enable_script_security"), "{t}");
    }
}
