//! The `rise`/`fall` state machine of one backend (keepalived's and HAProxy's rule): pure,
//! no I/O and no clocks. `pool` holds one per backend; `health` feeds it check results.
//!
//! Owns when a run of results changes a backend's state. It does not run checks (`health`)
//! or pick backends (`scheduler`).

use std::time::Duration;

/// Consecutive-result state: a backend goes down after `fall` failures in a row and comes
/// back after `rise` successes in a row. Starts up (like keepalived and HAProxy), so a fresh
/// balancer serves at once; the first checks run immediately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HealthState {
    pub(crate) up: bool,
    /// Consecutive results that disagree with `up`.
    pub(crate) streak: u32,
}

impl Default for HealthState {
    fn default() -> Self {
        HealthState {
            up: true,
            streak: 0,
        }
    }
}

impl HealthState {
    /// Record one result; returns the new state when it changed.
    pub(crate) fn observe(&mut self, ok: bool, rise: u32, fall: u32) -> Option<bool> {
        if ok == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.up { fall } else { rise };
        if self.streak >= needed.max(1) {
            self.up = ok;
            self.streak = 0;
            return Some(ok);
        }
        None
    }

    /// A change is under way: check again soon rather than after a whole `delay_loop`.
    pub(crate) fn unsettled(&self) -> bool {
        self.streak > 0
    }
}

/// The interval while a change is under way (HAProxy's `fastinter`).
pub(crate) fn fast_interval(delay_loop: Duration) -> Duration {
    delay_loop.min(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falls_after_fall_failures_in_a_row() {
        let mut h = HealthState::default();
        assert_eq!(h.observe(false, 2, 3), None);
        assert_eq!(h.observe(false, 2, 3), None);
        assert_eq!(h.observe(true, 2, 3), None); // streak broken
        assert!(!h.unsettled());
        assert_eq!(h.observe(false, 2, 3), None);
        assert!(h.unsettled());
        assert_eq!(h.observe(false, 2, 3), None);
        assert_eq!(h.observe(false, 2, 3), Some(false));
        assert!(!h.up);
    }

    #[test]
    fn rises_after_rise_successes_in_a_row() {
        let mut h = HealthState {
            up: false,
            streak: 0,
        };
        assert_eq!(h.observe(true, 2, 3), None);
        assert_eq!(h.observe(false, 2, 3), None);
        assert_eq!(h.observe(true, 2, 3), None);
        assert_eq!(h.observe(true, 2, 3), Some(true));
        assert_eq!(h.observe(true, 2, 3), None);
        // rise = 1 comes back at once.
        let mut h = HealthState {
            up: false,
            streak: 0,
        };
        assert_eq!(h.observe(true, 1, 1), Some(true));
    }
}
