//! `[balancer.keepalived]`: the VRRP instance that moves the VIP between balancers, and the
//! LVS forwarding method.
//!
//! Owns the validated `Keepalived`, `VrrpState` and `LvsMethod`. It does not write
//! keepalived.conf: that is `render`.

use toml::Spanned;

use super::raw::RawKeepalived;
use super::values::{is_short_name, number, one_of_any_case, optional};
use super::Ctx;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VrrpState {
    Master,
    Backup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LvsMethod {
    /// Direct routing: nodes answer clients themselves (VIP on each node, arptables).
    Dr,
    /// The balancer rewrites addresses both ways (nodes route back through it).
    Nat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keepalived {
    pub interface: String,
    pub virtual_router_id: u8,
    pub priority: u8,
    pub state: VrrpState,
    pub lvs_method: LvsMethod,
}

const STATES: &[(&str, VrrpState)] =
    &[("MASTER", VrrpState::Master), ("BACKUP", VrrpState::Backup)];
const LVS_METHODS: &[(&str, LvsMethod)] = &[("DR", LvsMethod::Dr), ("NAT", LvsMethod::Nat)];

impl Keepalived {
    pub(super) fn from_raw(k: &RawKeepalived, cx: &Ctx) -> anyhow::Result<Keepalived> {
        let state = optional(&k.state, VrrpState::Master, |s| {
            one_of_any_case(cx, "balancer.keepalived.state", s, STATES)
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
        let byte = |v: &Option<Spanned<u32>>, key: &str, default: u8, hi: u32| {
            number(cx, key, v, u32::from(default), 1..=hi, "").map(|n| n as u8)
        };
        Ok(Keepalived {
            interface,
            virtual_router_id: byte(
                &k.virtual_router_id,
                "balancer.keepalived.virtual_router_id",
                51,
                255,
            )?,
            priority: byte(
                &k.priority,
                "balancer.keepalived.priority",
                state_priority(state),
                254,
            )?,
            state,
            lvs_method,
        })
    }
}

/// keepalived's usual priorities: the master outranks every backup.
fn state_priority(s: VrrpState) -> u8 {
    match s {
        VrrpState::Master => 100,
        VrrpState::Backup => 90,
    }
}
