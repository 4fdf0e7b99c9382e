//! `[renew]` and `[preflight]`: the issuing run's lease and its pre-CA probes.
//!
//! Owns the validated `Renew` and `Preflight`. It does not decide when to renew (`renew`) nor
//! probe anything (`preflight`).

use std::net::SocketAddr;
use std::time::Duration;

use super::raw::{RawPreflight, RawRenew};
use super::values::{duration, optional, socket_addr};
use super::Ctx;

#[derive(Debug, Clone)]
pub struct Renew {
    pub lease_ttl: Duration,
}

impl Renew {
    pub(super) fn from_raw(raw: &RawRenew, cx: &Ctx) -> anyhow::Result<Renew> {
        Ok(Renew {
            lease_ttl: duration(
                cx,
                "renew.lease_ttl",
                &raw.lease_ttl,
                Duration::from_secs(600),
                ..,
            )?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Preflight {
    pub resolver: Option<SocketAddr>,
    pub timeout: Duration,
    pub skip_dns: bool,
}

impl Preflight {
    pub(super) fn from_raw(raw: &RawPreflight, cx: &Ctx) -> anyhow::Result<Preflight> {
        let resolver = optional(&raw.resolver, None, |s| {
            socket_addr(cx, "preflight.resolver", s).map(Some)
        })?;
        Ok(Preflight {
            resolver,
            timeout: duration(
                cx,
                "preflight.timeout",
                &raw.timeout,
                Duration::from_secs(5),
                ..,
            )?,
            skip_dns: raw.skip_dns,
        })
    }
}
