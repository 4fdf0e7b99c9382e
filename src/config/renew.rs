//! `[renew]` and `[preflight]`: the issuing run's lease and its pre-CA probes.
//!
//! Owns the validated `Renew` and `Preflight`. It does not decide when to renew (`renew`) nor
//! probe anything (`preflight`).

use std::net::SocketAddr;
use std::time::Duration;

use super::raw::{RawPreflight, RawRenew};
use super::values::{duration, millis, optional, secs, socket_addr};
use super::Ctx;

#[derive(Debug, Clone)]
pub struct Renew {
    /// The longest the issuer may hold the lease in one run.
    pub lease_ttl: Duration,
    /// How often the holder refreshes the lease; 3 missed refreshes make it dead.
    pub lease_refresh: Duration,
}

/// Bounds of `lease_ttl`: a zero lease protects nothing, and a day is longer than any order
/// (larger values would also overflow the lease file's clock arithmetic). Short leases are
/// allowed for labs and tests.
const LEASE_TTL: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(24 * 3600);
const LEASE_REFRESH: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(60);

impl Renew {
    pub(super) fn from_raw(raw: &RawRenew, cx: &Ctx) -> anyhow::Result<Renew> {
        Ok(Renew {
            lease_ttl: duration(
                cx,
                "renew.lease_ttl",
                &raw.lease_ttl,
                Duration::from_secs(600),
                LEASE_TTL,
            )?,
            lease_refresh: duration(
                cx,
                "renew.lease_refresh",
                &raw.lease_refresh,
                Duration::from_secs(10),
                LEASE_REFRESH,
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
                secs(5),
                millis(100)..=secs(300),
            )?,
            skip_dns: raw.skip_dns,
        })
    }
}
