//! What the node server counts for its metrics page: challenge and batch requests by their
//! answer, connections refused or evicted by the connection budget, requests parked or
//! refused by the rations, and `serve --watch`'s install runs by how they ended.
//!
//! Owns the counters and the kinds they count by. Every count is one relaxed atomic add, no
//! lock and no ordering with anything else: the challenge route pays nothing it would notice,
//! and a scrape reads each counter on its own (a page is a moment's sum, not a snapshot). It
//! does not decide anything it counts (`routes`, `budget`, `rations`, `install::watch` do) nor
//! write the page (`metrics`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::budget::Refusal;
use super::rations::OwnRoute;
use crate::install::watch::WatchRun;

/// How the challenge route answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Challenge {
    /// 200: the file's content.
    Served,
    /// 404: no such servable file (or not a token).
    NotFound,
    /// 503: the webroot cannot be read, or the share hangs.
    Unavailable,
}

impl Challenge {
    pub(super) const ALL: [Challenge; 3] = [
        Challenge::Served,
        Challenge::NotFound,
        Challenge::Unavailable,
    ];
}

/// How the readiness barrier's batch route answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Batch {
    /// 200: a line per token.
    Answered,
    /// 400: more than 100 tokens, or one that is not a token.
    BadRequest,
    /// 503: the webroot cannot be read, or the share hangs.
    Unavailable,
}

impl Batch {
    pub(super) const ALL: [Batch; 3] = [Batch::Answered, Batch::BadRequest, Batch::Unavailable];
}

/// What the rations did with a request to an own route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rationed {
    /// Parked until its turn, then answered.
    Parked,
    /// Its turn was too far away: parked a while, then its connection closed.
    Refused,
}

impl Rationed {
    pub(super) const ALL: [Rationed; 2] = [Rationed::Parked, Rationed::Refused];
}

/// A group of counters on a cache line of its own: the challenge route's are added to by
/// every worker thread, and must not share a line with anything else that moves.
#[repr(align(64))]
struct Line<const N: usize>([AtomicU64; N]);

impl<const N: usize> Default for Line<N> {
    fn default() -> Self {
        Line(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// The node server's counters; one per server, shared by its connections.
#[derive(Default)]
pub(super) struct Counters {
    challenge: Line<3>,
    batch: Line<3>,
    /// Refusals by `Refusal`, then evictions.
    budget: Line<3>,
    /// By own route (`OwnRoute as usize`), then `Rationed`.
    rationed: Line<6>,
    /// By `WatchRun`.
    watch: Line<3>,
}

fn add(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

impl Counters {
    pub(super) fn challenge(&self, c: Challenge) {
        add(&self.challenge.0[c as usize]);
    }

    pub(super) fn batch(&self, b: Batch) {
        add(&self.batch.0[b as usize]);
    }

    /// A new connection closed at once by the budget.
    pub(super) fn refused(&self, r: Refusal) {
        add(&self.budget.0[r as usize]);
    }

    /// An idle connection closed to make room for a new one.
    pub(super) fn evicted(&self) {
        add(&self.budget.0[2]);
    }

    pub(super) fn rationed(&self, route: OwnRoute, what: Rationed) {
        add(&self.rationed.0[route as usize * 2 + what as usize]);
    }

    /// One install run of `serve --watch`.
    pub(super) fn watch_run(&self, r: WatchRun) {
        add(&self.watch.0[r as usize]);
    }

    pub(super) fn challenges(&self, c: Challenge) -> u64 {
        self.challenge.0[c as usize].load(Relaxed)
    }

    pub(super) fn batches(&self, b: Batch) -> u64 {
        self.batch.0[b as usize].load(Relaxed)
    }

    pub(super) fn refusals(&self, r: Refusal) -> u64 {
        self.budget.0[r as usize].load(Relaxed)
    }

    pub(super) fn evictions(&self) -> u64 {
        self.budget.0[2].load(Relaxed)
    }

    pub(super) fn rations(&self, route: OwnRoute, what: Rationed) -> u64 {
        self.rationed.0[route as usize * 2 + what as usize].load(Relaxed)
    }

    pub(super) fn watch_runs(&self, r: WatchRun) -> u64 {
        self.watch.0[r as usize].load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind counts in its own slot (the indexes are the enums' discriminants).
    #[test]
    fn each_kind_has_its_own_counter() {
        let c = Counters::default();
        c.challenge(Challenge::Served);
        c.challenge(Challenge::Served);
        c.challenge(Challenge::Unavailable);
        c.batch(Batch::BadRequest);
        c.refused(Refusal::PerAddress);
        c.evicted();
        c.rationed(OwnRoute::Other, Rationed::Refused);
        c.rationed(OwnRoute::Status, Rationed::Parked);
        c.watch_run(WatchRun::Failed);
        assert_eq!(
            Challenge::ALL.map(|k| c.challenges(k)),
            [2, 0, 1],
            "served, not found, unavailable"
        );
        assert_eq!(Batch::ALL.map(|k| c.batches(k)), [0, 1, 0]);
        assert_eq!(
            (c.refusals(Refusal::PerAddress), c.refusals(Refusal::Full)),
            (1, 0)
        );
        assert_eq!(c.evictions(), 1);
        assert_eq!(c.rations(OwnRoute::Other, Rationed::Refused), 1);
        assert_eq!(c.rations(OwnRoute::Status, Rationed::Parked), 1);
        assert_eq!(c.rations(OwnRoute::Batch, Rationed::Parked), 0);
        assert_eq!(c.rations(OwnRoute::Other, Rationed::Parked), 0);
        assert_eq!(
            [WatchRun::Ok, WatchRun::Refused, WatchRun::Failed].map(|r| c.watch_runs(r)),
            [0, 0, 1]
        );
        assert_eq!(std::mem::align_of::<Line<3>>(), 64);
    }
}
