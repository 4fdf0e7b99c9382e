//! `[renew]` and `[preflight]`: the issuing run's lease and its pre-CA probes.
//!
//! Owns the validated `Renew` and `Preflight`. It does not decide when to renew (`renew`) nor
//! probe anything (`preflight`).

use std::net::SocketAddr;
use std::time::Duration;

use super::ctx::Ctx;
use super::raw::{RawPreflight, RawRenew};
use super::values::{duration, millis, optional, secs, socket_addr};

#[derive(Debug, Clone)]
pub(crate) struct Renew {
    /// The longest the issuer may hold the lease in one run.
    pub(crate) lease_ttl: Duration,
    /// How often the holder refreshes the lease; 3 missed refreshes make it dead.
    pub(crate) lease_refresh: Duration,
}

/// Bounds of `lease_ttl`: a zero lease protects nothing, and a day is longer than any order
/// (larger values would also overflow the lease file's clock arithmetic). Short leases are
/// allowed for labs and tests.
const LEASE_TTL: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(24 * 3600);
const LEASE_REFRESH: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(60);

/// A holder refreshes its lease at least this many times within `lease_ttl`: another host
/// takes a lease over once it has seen it unrefreshed for three refresh intervals, so a ttl
/// shorter than that would end a live holder's lease between two of its refreshes.
const REFRESHES_PER_TTL: u32 = 3;

impl Renew {
    pub(super) fn from_raw(raw: &RawRenew, cx: &Ctx) -> anyhow::Result<Renew> {
        let lease_ttl = duration(
            cx,
            "renew.lease_ttl",
            &raw.lease_ttl,
            Duration::from_secs(600),
            LEASE_TTL,
        )?;
        let lease_refresh = duration(
            cx,
            "renew.lease_refresh",
            &raw.lease_refresh,
            Duration::from_secs(10),
            LEASE_REFRESH,
        )?;
        if lease_refresh * REFRESHES_PER_TTL > lease_ttl {
            // Named at the key the admin wrote (both: the refresh); the defaults agree.
            let (key, at) = match (&raw.lease_refresh, &raw.lease_ttl) {
                (Some(r), _) => ("renew.lease_refresh", r.span()),
                (None, Some(t)) => ("renew.lease_ttl", t.span()),
                (None, None) => ("renew", 0..0),
            };
            let show = humantime::format_duration;
            return cx.err(
                at,
                key,
                format!(
                    "lease_refresh {} does not fit three times in lease_ttl {}: the holder must refresh the lease three times within lease_ttl (lease_refresh × 3 ≤ lease_ttl), or another node takes it over while the holder still works; shorten lease_refresh or lengthen lease_ttl",
                    show(lease_refresh),
                    show(lease_ttl)
                ),
            );
        }
        Ok(Renew {
            lease_ttl,
            lease_refresh,
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Preflight {
    pub(crate) resolver: Option<SocketAddr>,
    pub(crate) timeout: Duration,
    pub(crate) skip_dns: bool,
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
                secs(5),
                millis(100)..=secs(300),
            )?,
            skip_dns: raw.skip_dns,
        })
    }
}
