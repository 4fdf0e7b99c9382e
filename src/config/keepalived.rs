//! `[balancer.keepalived]`: the VRRP instance that moves the VIP between balancer hosts
//! (`mode = "vrrp"` beside `vipcert balance`, or `"ipvs"` where keepalived balances), its
//! unicast peers, mail alerts, and the LVS forwarding method.
//!
//! Owns the validated `Keepalived`, `KeepalivedMode`, `VrrpState` and `LvsMethod`. It does not
//! write keepalived.conf, nor pick a host's role: that is `render`.

use std::net::IpAddr;

use toml::Spanned;

use super::ctx::Ctx;
use super::raw::RawKeepalived;
use super::values::{check_hostname, ip, is_short_name, number, one_of, one_of_any_case, optional};

/// A VRRP instance's initial state (keepalived `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VrrpState {
    /// `MASTER`: holds the VIP unless a peer with a higher priority is up.
    Master,
    /// `BACKUP`: takes the VIP when no MASTER advertises.
    Backup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeepalivedMode {
    /// keepalived balances with IPVS (a virtual_server per service); VRRP moves the VIP.
    Ipvs,
    /// keepalived only moves the VIP between hosts running `vipcert balance`.
    Vrrp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LvsMethod {
    /// Direct routing: nodes answer clients themselves (VIP on each node, arptables).
    Dr,
    /// The balancer rewrites addresses both ways (nodes route back through it).
    Nat,
}

/// An SMTP relay keepalived sends its alerts through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SmtpServer {
    /// A host name or an IP address.
    pub(crate) host: String,
    pub(crate) port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keepalived {
    pub(crate) mode: KeepalivedMode,
    pub(crate) interface: String,
    pub(crate) virtual_router_id: u8,
    /// None: `render keepalived` picks it (flag, else the host's place in unicast_peers).
    pub(crate) priority: Option<u8>,
    /// None: as `priority`.
    pub(crate) state: Option<VrrpState>,
    /// false: `nopreempt` (a host that returns does not take the VIP back).
    pub(crate) preempt: bool,
    pub(crate) lvs_method: LvsMethod,
    /// Every balancer host's VRRP address, in order of preference; one IP version.
    pub(crate) unicast_peers: Vec<IpAddr>,
    /// Plain addresses (checked: nothing that could end a keepalived block).
    pub(crate) notification_email: Vec<String>,
    pub(crate) notification_email_from: Option<String>,
    /// Set whenever notification_email is.
    pub(crate) smtp_server: Option<SmtpServer>,
}

const STATES: &[(&str, VrrpState)] =
    &[("MASTER", VrrpState::Master), ("BACKUP", VrrpState::Backup)];
const MODES: &[(&str, KeepalivedMode)] = &[
    ("ipvs", KeepalivedMode::Ipvs),
    ("vrrp", KeepalivedMode::Vrrp),
];
const LVS_METHODS: &[(&str, LvsMethod)] = &[("DR", LvsMethod::Dr), ("NAT", LvsMethod::Nat)];

/// More balancer hosts than this is a typo, not a site (each sends every other an advert a second).
const MAX_PEERS: usize = 16;
const MAX_EMAILS: usize = 16;

impl Keepalived {
    pub(super) fn from_raw(
        k: &RawKeepalived,
        virtual_ip: IpAddr,
        cx: &Ctx,
    ) -> anyhow::Result<Keepalived> {
        let state = match &k.state {
            None => None,
            Some(s) => Some(one_of_any_case(cx, "balancer.keepalived.state", s, STATES)?),
        };
        let mode = optional(&k.mode, KeepalivedMode::Ipvs, |s| {
            one_of(cx, "balancer.keepalived.mode", s, MODES)
        })?;
        let lvs_method = optional(&k.lvs_method, LvsMethod::Dr, |s| {
            one_of_any_case(cx, "balancer.keepalived.lvs_method", s, LVS_METHODS)
        })?;
        let interface = k.interface.clone().unwrap_or_else(|| "eth0".into());
        // Linux caps interface names at 15 bytes (IFNAMSIZ - 1).
        if !is_short_name(&interface, 15, b"-_.@") {
            return cx.err(
                0..0,
                "balancer.keepalived.interface",
                format!("{interface:?} is not a network interface name"),
            );
        }
        // VRRP ids and priorities are one byte; priority 255 means "owns the address".
        let virtual_router_id = number(
            cx,
            "balancer.keepalived.virtual_router_id",
            &k.virtual_router_id,
            51,
            1..=255,
            "",
        )? as u8;
        let priority = match &k.priority {
            None => None,
            p => Some(number(cx, "balancer.keepalived.priority", p, 100, 1..=254, "")? as u8),
        };
        let (notification_email, smtp_server) = mail(k, cx)?;
        Ok(Keepalived {
            mode,
            interface,
            virtual_router_id,
            priority,
            state,
            preempt: k.preempt.unwrap_or(true),
            lvs_method,
            unicast_peers: peers(k, virtual_ip, cx)?,
            notification_email,
            notification_email_from: match &k.notification_email_from {
                None => None,
                Some(e) => Some(email(cx, "balancer.keepalived.notification_email_from", e)?),
            },
            smtp_server,
        })
    }
}

fn peers(k: &RawKeepalived, virtual_ip: IpAddr, cx: &Ctx) -> anyhow::Result<Vec<IpAddr>> {
    const KEY: &str = "balancer.keepalived.unicast_peers";
    let Some(list) = &k.unicast_peers else {
        return Ok(Vec::new());
    };
    if list.get_ref().len() > MAX_PEERS {
        return cx.err(
            list.span(),
            KEY,
            format!("at most {MAX_PEERS} balancer hosts"),
        );
    }
    let mut out: Vec<IpAddr> = Vec::new();
    for p in list.get_ref() {
        let a = ip(cx, KEY, p)?;
        let why = if a == virtual_ip {
            Some(format!(
                "{a} is the virtual_ip; list each balancer host's own address"
            ))
        } else if out.contains(&a) {
            Some(format!("{a} is listed twice"))
        } else if a.is_ipv4() != virtual_ip.is_ipv4() {
            // keepalived: "address family must match VRRP instance" - and it drops the VIP.
            Some(format!(
                "{a}: VRRP peers must all be IPv4 or all IPv6, as the virtual_ip ({virtual_ip}) is; keepalived ignores the VIP of an instance whose peers are of another family"
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return cx.err(p.span(), KEY, why);
        }
        out.push(a);
    }
    Ok(out)
}

fn mail(k: &RawKeepalived, cx: &Ctx) -> anyhow::Result<(Vec<String>, Option<SmtpServer>)> {
    const KEY: &str = "balancer.keepalived.notification_email";
    let mut emails = Vec::new();
    if let Some(list) = &k.notification_email {
        if list.get_ref().len() > MAX_EMAILS {
            return cx.err(list.span(), KEY, format!("at most {MAX_EMAILS} addresses"));
        }
        for e in list.get_ref() {
            emails.push(email(cx, KEY, e)?);
        }
    }
    let smtp = match &k.smtp_server {
        None => None,
        Some(s) => match parse_smtp_server(s.get_ref()) {
            Ok(v) => Some(v),
            Err(m) => return cx.err(s.span(), "balancer.keepalived.smtp_server", m),
        },
    };
    if let (Some(list), None) = (&k.notification_email, &smtp) {
        if !emails.is_empty() {
            return cx.err(
                list.span(),
                KEY,
                "needs smtp_server: keepalived sends its alerts itself".to_string(),
            );
        }
    }
    Ok((emails, smtp))
}

/// local@domain with nothing keepalived would read as syntax (spaces, quotes, braces, '#').
fn email(cx: &Ctx, key: &str, v: &Spanned<String>) -> anyhow::Result<String> {
    let e = v.get_ref();
    let ok = e.len() <= 254
        && e.split_once('@').is_some_and(|(local, domain)| {
            is_short_name(local, 64, b".+-_=%")
                && check_hostname(&domain.to_ascii_lowercase()).is_ok()
        });
    if ok {
        Ok(e.clone())
    } else {
        cx.err(
            v.span(),
            key,
            format!("{e:?} is not an e-mail address (local@domain)"),
        )
    }
}

/// "host", "host:port", "ip", "ip:port" or "[v6]:port"; port 25 when absent.
pub(crate) fn parse_smtp_server(s: &str) -> Result<SmtpServer, String> {
    let bad = || format!("{s:?} is not a host, host:port or ip:port");
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SmtpServer {
            host: ip.to_string(),
            port: 25,
        });
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Ok(SmtpServer {
            host: sa.ip().to_string(),
            port: sa.port(),
        });
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
        None => (s, 25),
    };
    if port == 0 || check_hostname(host).is_err() {
        return Err(bad());
    }
    Ok(SmtpServer {
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::*;

    const BASE: &str = "virtual_hostname = \"gridftp.example.org\"\nvirtual_ip = \"192.0.2.10\"\nshared_dir = \"/mnt/nfsshare/vipcert\"\nlayout = \"shared\"\n[[node]]\nhostname = \"dtn1.example.org\"\naddress = \"192.0.2.11\"\n[balancer.keepalived]\n";

    fn k(extra: &str) -> anyhow::Result<Keepalived> {
        parse(&format!("{BASE}{extra}")).map(|c| c.balancer.keepalived)
    }

    #[test]
    fn defaults_are_the_osg_ipvs_setup_with_roles_left_to_render() {
        let d = k("").unwrap();
        assert_eq!(d.mode, KeepalivedMode::Ipvs);
        assert_eq!((d.state, d.priority, d.preempt), (None, None, true));
        assert!(d.unicast_peers.is_empty() && d.notification_email.is_empty());
    }

    #[test]
    fn vrrp_peers_and_mail_parse() {
        let v = k("mode = \"vrrp\"\npreempt = false\nunicast_peers = [\"192.0.2.1\", \"192.0.2.2\"]\nnotification_email = [\"grid-ops@example.org\"]\nnotification_email_from = \"lb@example.org\"\nsmtp_server = \"mail.example.org\"\nstate = \"backup\"\npriority = 50\n").unwrap();
        assert_eq!(v.mode, KeepalivedMode::Vrrp);
        assert!(!v.preempt);
        assert_eq!(
            v.unicast_peers,
            vec![
                "192.0.2.1".parse::<IpAddr>().unwrap(),
                "192.0.2.2".parse().unwrap()
            ]
        );
        assert_eq!(
            v.smtp_server,
            Some(SmtpServer {
                host: "mail.example.org".into(),
                port: 25
            })
        );
        assert_eq!((v.state, v.priority), (Some(VrrpState::Backup), Some(50)));
        assert_eq!(
            parse_smtp_server("[2001:db8::25]:587").unwrap(),
            SmtpServer {
                host: "2001:db8::25".into(),
                port: 587
            }
        );
        assert_eq!(parse_smtp_server("192.0.2.25:2525").unwrap().port, 2525);
    }

    #[test]
    fn bad_values_name_the_key_and_say_why() {
        for (extra, want) in [
            (
                "mode = \"lvs\"",
                "balancer.keepalived.mode: \"lvs\" is not ipvs or vrrp",
            ),
            ("unicast_peers = [\"192.0.2.10\"]", "is the virtual_ip"),
            (
                "unicast_peers = [\"192.0.2.1\", \"192.0.2.1\"]",
                "listed twice",
            ),
            (
                "unicast_peers = [\"192.0.2.1\", \"2001:db8::1\"]",
                "must all be IPv4 or all IPv6",
            ),
            ("unicast_peers = [\"lb1\"]", "is not an IP address"),
            (
                "notification_email = [\"ops@example.org\"]",
                "needs smtp_server",
            ),
            (
                "notification_email = [\"ops@example.org }\"]\nsmtp_server = \"m.example.org\"",
                "is not an e-mail address",
            ),
            (
                "notification_email_from = \"nobody\"",
                "is not an e-mail address",
            ),
            (
                "smtp_server = \"mail.example.org:0\"",
                "balancer.keepalived.smtp_server",
            ),
            (
                "smtp_server = \"mail server\"",
                "balancer.keepalived.smtp_server",
            ),
            ("priority = 255", "balancer.keepalived.priority"),
        ] {
            let e = format!("{:#}", k(extra).unwrap_err());
            assert!(e.contains(want), "{extra}: {e}");
        }
    }
}
