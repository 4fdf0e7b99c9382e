//! This node's clock against the shared filesystem's and the CA's, for `check` and
//! `preflight`. The issuer lease trusts no clock (`lease`), but certificate validity (5
//! minutes of allowance for notBefore), ARI windows, backoff times and every time shown to
//! people read this node's clock, so a skew is said, naming the source: a warning above 30 s,
//! critical above 5 minutes.
//!
//! Owns the two readings (the mtime of a file just written in `locks/`; the `Date` of the
//! CA's directory answer) and their judgement (`level`, pure). It decides nothing else:
//! `check` turns a reading into a finding, `preflight` into a line.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use anyhow::Context;

use crate::config::Config;
use crate::store::Store;

/// A skew above this many seconds is a warning.
const WARN_SKEW: u64 = 30;
/// A skew above this many seconds is critical: notBefore's allowance is 5 minutes.
const CRIT_SKEW: u64 = 300;

/// How bad a skew is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SkewLevel {
    /// Within 30 s.
    Ok,
    /// More than 30 s.
    Warning,
    /// More than 5 minutes.
    Critical,
}

/// The judgement of a skew of `secs` seconds, either way.
pub(crate) fn level(secs: i64) -> SkewLevel {
    match secs.unsigned_abs() {
        s if s > CRIT_SKEW => SkewLevel::Critical,
        s if s > WARN_SKEW => SkewLevel::Warning,
        _ => SkewLevel::Ok,
    }
}

/// What this node's clock was compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TimeSource {
    /// The shared directory's filesystem (on NFS, the file server's clock).
    SharedFs,
    /// The CA at this directory URL.
    Ca(String),
}

/// One comparison: this node's clock minus the source's, in whole seconds, or why there is
/// none.
#[derive(Debug, Clone)]
pub struct Reading {
    pub(crate) source: TimeSource,
    pub(crate) skew: Result<i64, String>,
}

impl Reading {
    /// The judgement; None when nothing could be compared.
    pub fn level(&self) -> Option<SkewLevel> {
        self.skew.as_ref().ok().map(|s| level(*s))
    }

    /// One sentence for people: how far off, against what, and what to do about it.
    pub fn describe(&self) -> String {
        let what = match &self.source {
            TimeSource::SharedFs => {
                "the shared filesystem (the mtime of a file just written in locks/)".to_string()
            }
            TimeSource::Ca(url) => format!("the CA {url} (the Date of its directory answer)"),
        };
        let secs = match &self.skew {
            Err(e) => return format!("this node's clock was not compared with {what}: {e}"),
            Ok(s) => *s,
        };
        let mut d = match secs {
            0 => format!("this node's clock agrees with {what}"),
            s if s > 0 => format!("this node's clock is {s} s ahead of {what}"),
            s => format!("this node's clock is {} s behind {what}", s.unsigned_abs()),
        };
        if level(secs) > SkewLevel::Ok {
            let fix = match self.source {
                TimeSource::SharedFs => {
                    "fix the clock that is wrong, this node's or the file server's (chrony or ntpd)"
                }
                TimeSource::Ca(_) => "fix this node's clock (chrony or ntpd)",
            };
            let _ = write!(d, "; {fix}: certificate validity, ARI windows, backoff and the times shown all read it");
        }
        d
    }
}

/// `ours - theirs` in seconds, rounded.
fn skew(ours: SystemTime, theirs: SystemTime) -> i64 {
    let secs =
        |d: Duration| (d.as_millis().saturating_add(500) / 1000).min(i64::MAX as u128) as i64;
    match ours.duration_since(theirs) {
        Ok(d) => secs(d),
        Err(e) => -secs(e.duration()),
    }
}

/// This node's clock against the shared filesystem's.
pub(crate) fn shared_fs(store: &Store) -> Reading {
    Reading {
        source: TimeSource::SharedFs,
        skew: store
            .locks()
            .and_then(|d| d.now().context("cannot write a file in locks/"))
            .map(|t| skew(SystemTime::now(), t))
            .map_err(|e| format!("{e:#}")),
    }
}

/// This node's clock against the CA's (`[acme] directory`), waiting at most `timeout`.
pub(crate) async fn ca(cfg: &Config, timeout: Duration) -> Reading {
    let skew = match tokio::time::timeout(timeout, crate::acme::directory_date(cfg)).await {
        Ok(Ok(date)) => Ok(skew(SystemTime::now(), date)),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        )),
    };
    Reading {
        source: TimeSource::Ca(cfg.acme.directory.clone()),
        skew,
    }
}

/// Both readings, the shared filesystem's first.
pub async fn readings(cfg: &Config, store: &Store, timeout: Duration) -> Vec<Reading> {
    let s = store.clone();
    let fs = tokio::task::spawn_blocking(move || shared_fs(&s))
        .await
        .unwrap_or_else(|e| Reading {
            source: TimeSource::SharedFs,
            skew: Err(e.to_string()),
        });
    vec![fs, ca(cfg, timeout).await]
}

/// `vipcert preflight`'s clock lines (the CA waited for `[preflight] timeout`), and whether
/// a skew is critical: a node more than 5 minutes off would see a new certificate as not yet
/// valid, or long expired ARI windows.
pub async fn preflight_lines(cfg: &Config, store: &Store) -> (String, bool) {
    let mut out = String::new();
    let mut critical = false;
    for r in readings(cfg, store, cfg.preflight.timeout).await {
        let tag = match r.level() {
            None => "clock ?",
            Some(SkewLevel::Ok) => "clock ok",
            Some(SkewLevel::Warning) => "clock WARNING",
            Some(SkewLevel::Critical) => "clock CRITICAL",
        };
        critical |= r.level() == Some(SkewLevel::Critical);
        let _ = writeln!(out, "{tag}: {}", r.describe());
    }
    (out, critical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn thirty_seconds_warn_and_five_minutes_are_critical_either_way() {
        for (secs, want) in [
            (0, SkewLevel::Ok),
            (30, SkewLevel::Ok),
            (-30, SkewLevel::Ok),
            (31, SkewLevel::Warning),
            (-31, SkewLevel::Warning),
            (300, SkewLevel::Warning),
            (301, SkewLevel::Critical),
            (-600, SkewLevel::Critical),
            (i64::MIN, SkewLevel::Critical),
            (i64::MAX, SkewLevel::Critical),
        ] {
            assert_eq!(level(secs), want, "{secs}");
        }
    }

    #[test]
    fn skew_is_ours_minus_theirs() {
        let t = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(skew(t + Duration::from_secs(600), t), 600);
        assert_eq!(skew(t, t + Duration::from_secs(600)), -600);
        assert_eq!(skew(t, t), 0);
        assert_eq!(skew(t, t + Duration::from_millis(599_600)), -600);
    }

    #[test]
    fn descriptions_name_the_source_and_the_direction() {
        let r = |source, skew| Reading { source, skew };
        let d = r(TimeSource::SharedFs, Ok(600)).describe();
        assert!(
            d.starts_with("this node's clock is 600 s ahead of the shared filesystem"),
            "{d}"
        );
        assert!(d.contains("file server"), "{d}");
        let d = r(TimeSource::Ca("https://ca.test/dir".into()), Ok(-45)).describe();
        assert!(
            d.starts_with("this node's clock is 45 s behind the CA https://ca.test/dir"),
            "{d}"
        );
        assert!(d.contains("fix this node's clock"), "{d}");
        let d = r(TimeSource::SharedFs, Ok(2)).describe();
        assert!(
            d.ends_with("in locks/)"),
            "no advice when within bounds: {d}"
        );
        let none = r(TimeSource::SharedFs, Err("Read-only file system".into()));
        assert_eq!(none.level(), None);
        assert!(
            none.describe().contains("not compared"),
            "{}",
            none.describe()
        );
    }

    #[test]
    fn the_shared_filesystem_reads_as_this_hosts_clock_when_local() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::new(t.path());
        s.init().unwrap();
        let r = shared_fs(&s);
        assert!(r.skew.as_ref().is_ok_and(|s| s.abs() <= 1), "{r:?}");
        assert!(
            s.locks().unwrap().list().unwrap().is_empty(),
            "probe removed"
        );
    }
}
