//! When to try again, bounded: the CA's Retry-After (a rate limit, a failing CA, renewalInfo)
//! is capped at a third of the current certificate's remaining lifetime — a day when there is
//! none — so no answer can push the next attempt past what the certificate outlives; and a
//! recorded next attempt further ahead than vipcert ever waits is not credible, so a state
//! file written wrongly (or by a hostile hand) cannot stop renewal.
//!
//! Pure functions of unix seconds. `renew` applies them where it records and where it decides;
//! `drift` reports a wait that is not credible. The backoff schedule itself is `renew`'s.

/// One day, in seconds.
pub(crate) const DAY: i64 = 86_400;

/// The longest step of `attempts::backoff`: a recorded wait may be this long whatever the CA said.
pub(crate) const LONGEST_BACKOFF: i64 = DAY;

/// What a next attempt may lie beyond the longest wait and still be credible: the node that
/// recorded it may run ahead of this one (`check` calls 5 minutes of skew critical).
const CLOCK_SLACK: i64 = 3600;

/// The longest wait a CA's Retry-After may impose at `now`: a third of what remains of the
/// certificate valid until `not_after`; a day when there is none (or it has expired).
pub(crate) fn cap(now: i64, not_after: Option<i64>) -> i64 {
    match not_after {
        Some(end) if end > now => end.saturating_sub(now) / 3,
        _ => DAY,
    }
}

/// When to come back, for a CA that said `asked` (unix seconds) at `now`: never later than
/// [`cap`] allows.
pub(crate) fn retry_at(now: i64, asked: i64, not_after: Option<i64>) -> i64 {
    asked.min(now.saturating_add(cap(now, not_after)))
}

/// Whether a next attempt `until`, read from the shared state at `now`, is one vipcert could
/// have recorded: no later than the longest backoff step or the Retry-After cap (whichever is
/// longer) from now, plus clock slack. A wait recorded earlier only shrinks as time passes, so
/// a genuine one always passes.
pub(crate) fn credible(until: i64, now: i64, not_after: Option<i64>) -> bool {
    let longest = LONGEST_BACKOFF.max(cap(now, not_after));
    until <= now.saturating_add(longest).saturating_add(CLOCK_SLACK)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn cap_is_a_third_of_what_remains_or_a_day() {
        assert_eq!(cap(NOW, Some(NOW + 30 * DAY)), 10 * DAY);
        assert_eq!(cap(NOW, Some(NOW + 6 * 3600)), 2 * 3600);
        assert_eq!(cap(NOW, None), DAY);
        // Expired: no certificate to outlive; the CA's wait up to a day.
        assert_eq!(cap(NOW, Some(NOW - 1)), DAY);
        assert_eq!(cap(NOW, Some(i64::MAX)), (i64::MAX - NOW) / 3);
        assert_eq!(cap(i64::MIN, Some(i64::MAX)), i64::MAX / 3);
    }

    #[test]
    fn retry_after_is_capped_in_every_form() {
        let end = Some(NOW + 30 * DAY);
        // A modest ask is kept; year 9999 or an i64::MAX is a third of the 30 days left.
        assert_eq!(retry_at(NOW, NOW + 3600, end), NOW + 3600);
        assert_eq!(retry_at(NOW, 253_402_300_799, end), NOW + 10 * DAY);
        assert_eq!(retry_at(NOW, i64::MAX, end), NOW + 10 * DAY);
        assert_eq!(retry_at(NOW, i64::MAX, None), NOW + DAY);
        assert_eq!(retry_at(i64::MAX, i64::MAX, None), i64::MAX);
    }

    #[test]
    fn only_a_wait_vipcert_could_record_is_credible() {
        let end = Some(NOW + 30 * DAY);
        assert!(credible(NOW + 10 * DAY, NOW, end));
        assert!(credible(NOW + 10 * DAY + 3600, NOW, end));
        assert!(!credible(NOW + 10 * DAY + 3601, NOW, end));
        assert!(!credible(253_402_300_799, NOW, end));
        // Without a certificate, or short of a day's remaining third: the day of backoff.
        assert!(credible(NOW + DAY, NOW, None));
        assert!(!credible(NOW + 2 * DAY, NOW, Some(NOW + 3 * DAY)));
        // A genuine wait, read later, stays credible (the bound only grows with now).
        let recorded = retry_at(NOW, i64::MAX, end);
        assert!((0..=10 * DAY)
            .step_by(600)
            .all(|dt| credible(recorded, NOW + dt, end) || NOW + dt > recorded));
        assert!(credible(i64::MAX, i64::MAX, None));
    }
}
