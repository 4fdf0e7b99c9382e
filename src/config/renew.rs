//! `[renew]` and `[preflight]`: the issuing run's lease, the textfile it leaves for
//! node_exporter, and its pre-CA probes.
//!
//! Owns the validated `Renew` and `Preflight`. It does not decide when to renew (`renew`),
//! write the textfile (`textfile`) nor probe anything (`preflight`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::ctx::Ctx;
use super::raw::{RawPreflight, RawRenew};
use super::values::{abs_path, duration, millis, optional, secs, socket_addr, PathKind};

#[derive(Debug, Clone)]
pub(crate) struct Renew {
    /// The longest the issuer may hold the lease in one run.
    pub(crate) lease_ttl: Duration,
    /// How often the holder refreshes the lease; 3 missed refreshes make it dead.
    pub(crate) lease_refresh: Duration,
    /// The node_exporter textfile every issuing run writes; None: none.
    pub(crate) metrics_file: Option<PathBuf>,
}

/// `metrics_file`: an absolute file path whose name ends in `.prom`, the only files
/// node_exporter's textfile collector reads (a file it never reads would look like a
/// working setup with no data).
fn metrics_file(cx: &Ctx, v: &Spanned<PathBuf>) -> anyhow::Result<Option<PathBuf>> {
    let key = "renew.metrics_file";
    let p = abs_path(cx, key, v, PathKind::File)?;
    let name = p.file_name().map(|n| n.to_string_lossy());
    match name {
        Some(n) if n.len() > ".prom".len() && n.ends_with(".prom") => Ok(Some(p)),
        _ => cx.err(
            v.span(),
            key,
            format!(
                "{p:?} does not end in \".prom\": node_exporter's textfile collector reads only *.prom files; e.g. \"/var/lib/prometheus/node-exporter/vipcert.prom\""
            ),
        ),
    }
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
            metrics_file: optional(&raw.metrics_file, None, |v| metrics_file(cx, v))?,
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

#[cfg(test)]
mod tests {
    use super::super::tests::{parse, GOOD};

    /// Off unless set; an absolute path of a `*.prom` file, as node_exporter reads them.
    #[test]
    fn metrics_file_is_an_absolute_prom_file() {
        assert_eq!(parse(GOOD).unwrap().renew.metrics_file, None);
        let with = |v: &str| format!("{GOOD}[renew]\nmetrics_file = {v}\n");
        let path = "/var/lib/prometheus/node-exporter/vipcert.prom";
        let got = parse(&with(&format!("\"{path}\""))).unwrap();
        assert_eq!(got.renew.metrics_file, Some(path.into()));
        for (bad, says) in [
            ("\"vipcert.prom\"", "not an absolute path"),
            (
                "\"/var/lib/prometheus/node-exporter/vipcert.txt\"",
                "*.prom",
            ),
            ("\"/var/lib/prometheus/node-exporter/.prom\"", "*.prom"),
            (
                "\"/var/lib/prometheus/node-exporter/\"",
                "names a directory",
            ),
            ("\"/var/lib/../tmp/vipcert.prom\"", "\"..\""),
        ] {
            let e = format!("{:#}", parse(&with(bad)).unwrap_err());
            assert!(
                e.contains("renew.metrics_file") && e.contains(says),
                "{bad}: {e}"
            );
        }
    }
}
