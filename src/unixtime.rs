//! Unix times that come from outside this process — the shared directory (state, meta.json,
//! revoked.json, the lease), another node's status document, the CA — and the one way to
//! print them.
//!
//! Owns the sane range ([`MIN`]..=[`MAX`]: 1970-01-01 to 9999-12-31, what RFC 3339 writes with
//! four-digit years), the clamp into it at parse time ([`UnixTime`]'s deserializer, and
//! [`clamped`]/[`clamped_opt`] for fields kept as `i64`), and the total formatter
//! [`rfc3339`]. A file that says "year 10000" or `i64::MIN` is read as the nearest end of the
//! range: it never makes a message fail or a difference of two times overflow. Whether such
//! a time is *credible* for a decision (a backoff further ahead than vipcert ever waits) is
//! the caller's policy (`retry`).

use serde::{Deserialize, Deserializer, Serialize};

/// 1970-01-01T00:00:00Z: nothing vipcert records lies before it.
pub const MIN: i64 = 0;
/// 9999-12-31T23:59:59Z: the last second RFC 3339 (and an X.509 GeneralizedTime) can write.
pub const MAX: i64 = 253_402_300_799;

/// `t` moved into [`MIN`]..=[`MAX`].
pub fn clamp(t: i64) -> i64 {
    t.clamp(MIN, MAX)
}

/// `t` as RFC 3339 UTC seconds ("2026-05-01T10:00:00Z"), for messages. Total: a time outside
/// the range prints as the nearest end of it.
pub fn rfc3339(t: i64) -> String {
    let secs = clamp(t) as u64;
    // Cannot fail inside the range (humantime refuses only years past 9999); the fallback
    // keeps the function total whatever a future humantime does.
    let mut s = String::new();
    match std::fmt::write(
        &mut s,
        format_args!(
            "{}",
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)
            )
        ),
    ) {
        Ok(()) => s,
        Err(_) => format!("@{secs} (unix seconds)"),
    }
}

/// A unix time (seconds) inside the sane range: every way to make one clamps, so a value of
/// this type always formats and subtracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
#[serde(transparent)]
pub struct UnixTime(i64);

impl UnixTime {
    /// `t`, clamped into the range.
    pub fn new(t: i64) -> UnixTime {
        UnixTime(clamp(t))
    }

    /// Unix seconds.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl From<i64> for UnixTime {
    fn from(t: i64) -> UnixTime {
        UnixTime::new(t)
    }
}

impl std::fmt::Display for UnixTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&rfc3339(self.0))
    }
}

/// Any JSON number, clamped: integers beyond i64 (or u64) and floats (serde_json reads an
/// integer too long for u64 as one) become the nearest end of the range; NaN is refused.
struct Clamping;

impl serde::de::Visitor<'_> for Clamping {
    type Value = UnixTime;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a unix time in seconds")
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<UnixTime, E> {
        Ok(UnixTime::new(v))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<UnixTime, E> {
        Ok(UnixTime::new(i64::try_from(v).unwrap_or(i64::MAX)))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<UnixTime, E> {
        if v.is_nan() {
            return Err(E::custom("a unix time cannot be NaN"));
        }
        // `as` saturates (±inf included); the clamp does the rest.
        Ok(UnixTime::new(v as i64))
    }
}

impl<'de> Deserialize<'de> for UnixTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<UnixTime, D::Error> {
        d.deserialize_any(Clamping)
    }
}

/// `#[serde(deserialize_with = "crate::unixtime::clamped")]` for a time kept as `i64`.
pub fn clamped<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    UnixTime::deserialize(d).map(UnixTime::get)
}

/// `#[serde(default, deserialize_with = "crate::unixtime::clamped_opt")]` for an optional one.
pub fn clamped_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(Option::<UnixTime>::deserialize(d)?.map(UnixTime::get))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The edges of i64 and the first second of year 10000.
    pub(crate) const EXTREMES: [i64; 5] = [i64::MIN, -1, 253_402_300_800, i64::MAX, MAX];

    #[test]
    fn every_time_formats() {
        for t in EXTREMES {
            let s = rfc3339(t);
            assert!(s.len() == 20 && s.ends_with('Z'), "{t}: {s}");
            assert_eq!(UnixTime::new(t).to_string(), s);
        }
        assert_eq!(rfc3339(i64::MIN), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(253_402_300_800), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(1_800_000_000), "2027-01-15T08:00:00Z");
    }

    #[test]
    fn parsing_clamps_any_number() {
        let t = |json: &str| serde_json::from_str::<UnixTime>(json).map(UnixTime::get);
        assert_eq!(t("1800000000").unwrap(), 1_800_000_000);
        assert_eq!(t("253402300800").unwrap(), MAX);
        assert_eq!(t("9223372036854775807").unwrap(), MAX);
        assert_eq!(t("18446744073709551615").unwrap(), MAX);
        assert_eq!(t("1000000000000000000000000000000").unwrap(), MAX);
        assert_eq!(t("1e300").unwrap(), MAX);
        assert_eq!(t("-9223372036854775808").unwrap(), MIN);
        assert_eq!(t("-1e300").unwrap(), MIN);
        assert_eq!(t("1.5").unwrap(), 1);
        assert!(t("\"soon\"").is_err());
        assert!(t("null").is_err());
        // Written back as a plain number.
        assert_eq!(
            serde_json::to_string(&UnixTime::new(i64::MAX)).unwrap(),
            MAX.to_string()
        );

        #[derive(serde::Deserialize)]
        struct S {
            #[serde(deserialize_with = "clamped")]
            a: i64,
            #[serde(default, deserialize_with = "clamped_opt")]
            b: Option<i64>,
            #[serde(default, deserialize_with = "clamped_opt")]
            c: Option<i64>,
        }
        let s: S = serde_json::from_str(r#"{"a": -5, "b": 1e30}"#).unwrap();
        assert_eq!((s.a, s.b, s.c), (MIN, Some(MAX), None));
        let s: S = serde_json::from_str(r#"{"a": 7, "b": null}"#).unwrap();
        assert_eq!((s.a, s.b), (7, None));
    }
}
