//! The request-rate budget of the node server's own routes (`/.well-known/vipcert/status`,
//! the `challenges/` batch route, and every unknown path): each gets
//! `[serve] monitor_rate` requests a second, shared fairly between the client addresses asking
//! for it. A request over its address's share is *parked* — its connection's task sleeps until
//! its turn, and a sleeping task is never polled, so it costs no CPU — and a request whose
//! turn is more than `monitor_wait` away is parked for a while and its connection closed.
//!
//! Why: these routes need a few requests a second (balancer health checks, `check --fleet`,
//! the readiness barrier), but answered at full rate, thousands of keep-alive connections
//! asking for them keep tokio's run queue full, and a CA's challenge fetch waits behind them
//! (issue 9: p99 0.9 s under 5,000 status connections). The challenge route
//! (`/.well-known/acme-challenge/`) is never rationed: it is what the CA needs.
//!
//! Fair share: with N addresses asking for a route in the last moments, each gets one request
//! per N / rate seconds (its own "next turn" moves on by that much per request). An address
//! that asks rarely (`check --fleet`) finds its turn in the past and is answered at once
//! however hard others hammer; the total stays near `rate`. An address may run up to
//! [`MONITOR_BURST`] ahead of its share in one go: the readiness barrier of an `issue` asks
//! every node about every lineage at once (30 requests from one address for 30 lineages),
//! and must not wait for turns 10 ms apart.
//!
//! Not rationed: the challenge route (what the CA needs) and `health`. The balancer's health
//! checks come from the balancer's address, which is also the address of every client it
//! proxies: rationed, a health flood sent through the VIP would park the checks past their
//! timeout and take every node out of the balancer. `health` is answered from a verdict
//! refreshed once a second on a thread of its own instead, as cheap as a challenge file.
//!
//! Owns the bookkeeping and the turns it gives only (pure, given the time); the connection loop
//! (`conn`) asks for each request's turn and sleeps or closes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often addresses whose turn has passed are forgotten (the map is bounded by the
/// addresses that asked within `monitor_wait` plus this).
const FORGET_EVERY: Duration = Duration::from_millis(100);

/// The node server's own routes, each with its own budget (a status flood does not delay
/// the balancer's health checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OwnRoute {
    Status,
    Batch,
    /// Anything that is neither the challenge route nor one of the above (answered 404).
    Other,
}

impl OwnRoute {
    const ALL: usize = 3;

    /// The rationed route `path` belongs to; None for the challenge and health routes,
    /// never rationed.
    pub(super) fn of(path: &str) -> Option<OwnRoute> {
        if path.starts_with("/.well-known/acme-challenge/") {
            return None;
        }
        Some(match path.strip_prefix("/.well-known/vipcert/") {
            Some("health") => return None,
            Some("status") => OwnRoute::Status,
            Some(p) if p.starts_with("challenges/") => OwnRoute::Batch,
            _ => OwnRoute::Other,
        })
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What to do with one request to an own route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Turn {
    /// Within the address's share: answer now.
    Now,
    /// Its turn comes after this long: sleep, then answer.
    Wait(Duration),
    /// Its turn is further away than `monitor_wait`: sleep this long (so that a client that
    /// reconnects at once cannot spin the server), then close the connection unanswered.
    Refuse(Duration),
}

/// `[serve] monitor_rate` and `monitor_wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MonitorLimits {
    /// Requests per second per own route, over all client addresses.
    pub(crate) rate: u32,
    /// Longest a request is parked before its turn; further away and it is refused.
    pub(crate) wait: Duration,
    /// How far an address may run ahead of its share in one go ([`MONITOR_BURST`]).
    pub(crate) burst: Duration,
}

/// An address's burst: one second of its share (the whole `monitor_rate` when it is the only
/// one asking).
pub(crate) const MONITOR_BURST: Duration = Duration::from_secs(1);

impl Default for MonitorLimits {
    fn default() -> Self {
        use crate::config::{DEFAULT_MONITOR_RATE, DEFAULT_MONITOR_WAIT};
        MonitorLimits {
            rate: DEFAULT_MONITOR_RATE,
            wait: DEFAULT_MONITOR_WAIT,
            burst: MONITOR_BURST,
        }
    }
}

pub(super) struct Rations {
    limits: MonitorLimits,
    routes: [Mutex<Share>; OwnRoute::ALL],
}

/// One route's turns: when each address that asked lately may next be answered.
struct Share {
    next_turn: HashMap<IpAddr, Instant>,
    forgotten_at: Option<Instant>,
}

impl Rations {
    pub(super) fn new(limits: MonitorLimits) -> Rations {
        Rations {
            limits,
            routes: std::array::from_fn(|_| {
                Mutex::new(Share {
                    next_turn: HashMap::new(),
                    forgotten_at: None,
                })
            }),
        }
    }

    fn share(&self, r: OwnRoute) -> MutexGuard<'_, Share> {
        self.routes[r.index()]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The turn of a request for `route` from `ip` arriving at `now`; a `Now` or `Wait`
    /// takes the turn.
    pub(super) fn reserve(&self, route: OwnRoute, ip: IpAddr, now: Instant) -> Turn {
        let MonitorLimits { rate, wait, burst } = self.limits;
        let mut sh = self.share(route);
        if sh
            .forgotten_at
            .is_none_or(|t| now.duration_since(t) >= FORGET_EVERY)
        {
            // Kept while any of the turn is still banked: forgetting an address at `now`
            // would hand it a fresh burst every FORGET_EVERY.
            let floor = now.checked_sub(burst).unwrap_or(now);
            sh.next_turn.retain(|_, t| *t > floor);
            sh.forgotten_at = Some(now);
        }
        let known = sh.next_turn.get(&ip).copied();
        let askers = sh.next_turn.len() + usize::from(known.is_none());
        // A turn may lie up to `burst` in the past: that much of its share is banked.
        let floor = now.checked_sub(burst).unwrap_or(now);
        let turn = known.map_or(floor, |t| t.max(floor));
        let until = turn.saturating_duration_since(now);
        if until > wait {
            return Turn::Refuse(park_before_close(wait, ip, now));
        }
        // Each of the `askers` addresses gets rate/askers requests a second.
        let interval = Duration::from_secs_f64(askers as f64 / f64::from(rate.max(1)));
        sh.next_turn.insert(ip, turn + interval);
        if until.is_zero() {
            Turn::Now
        } else {
            Turn::Wait(until)
        }
    }
}

/// Between half of `wait` and all of it, spread by address and time: refused connections
/// that arrived together (a flood's first burst) are not all closed, and reconnected, at
/// the same instant.
fn park_before_close(wait: Duration, ip: IpAddr, now: Instant) -> Duration {
    use std::hash::BuildHasher;
    let h = std::collections::hash_map::RandomState::new().hash_one((ip, now));
    let half = wait / 2;
    half + half.mul_f64((h % 1024) as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn rations(rate: u32, wait_ms: u64) -> Rations {
        Rations::new(MonitorLimits {
            rate,
            wait: Duration::from_millis(wait_ms),
            burst: Duration::ZERO,
        })
    }

    /// The readiness barrier's round for 30 lineages: 30 batch requests from one address
    /// at once are all answered at once; a flood from that address still gets the rate.
    #[test]
    fn one_address_may_burst_a_second_of_its_share() {
        let r = Rations::new(MonitorLimits::default());
        let t0 = Instant::now() + Duration::from_secs(5);
        let a = ip("10.0.6.1");
        for i in 0..30 {
            assert_eq!(r.reserve(OwnRoute::Batch, a, t0), Turn::Now, "{i}");
        }
        // The next round, 20 ms later: still within the banked second.
        let t1 = t0 + Duration::from_millis(20);
        for i in 0..30 {
            assert_eq!(r.reserve(OwnRoute::Batch, a, t1), Turn::Now, "{i}");
        }
        // Hammering: the banked second runs out, then turns come at the rate.
        let mut now_answers = 60;
        while r.reserve(OwnRoute::Batch, a, t1) == Turn::Now {
            now_answers += 1;
        }
        assert!((90..=110).contains(&now_answers), "{now_answers}");
    }

    /// Forgetting an address must not bank it a new burst: hammering for 2 s gets about
    /// the rate plus one burst, not a burst every `FORGET_EVERY`.
    #[test]
    fn a_burst_is_banked_once_not_at_every_forgetting() {
        let r = Rations::new(MonitorLimits::default());
        let t0 = Instant::now() + Duration::from_secs(5);
        let a = ip("10.0.7.1");
        let mut answered = 0;
        // Bursts of 100 every 100 ms (as often as forgetting runs) for 2 s.
        for step in 0..20u64 {
            let now = t0 + Duration::from_millis(100 * step);
            for _ in 0..100 {
                match r.reserve(OwnRoute::Status, a, now) {
                    Turn::Now => answered += 1,
                    Turn::Wait(d) if now + d < t0 + Duration::from_secs(2) => answered += 1,
                    _ => {}
                }
            }
        }
        // 2 s at 100/s plus a 1 s burst: about 300.
        assert!((250..=330).contains(&answered), "{answered}");
    }

    #[test]
    fn routes_are_classified_and_the_challenge_route_is_never_rationed() {
        assert_eq!(OwnRoute::of("/.well-known/acme-challenge/abc"), None);
        assert_eq!(OwnRoute::of("/.well-known/acme-challenge/"), None);
        let own = |p| OwnRoute::of(p).unwrap();
        assert_eq!(OwnRoute::of("/.well-known/vipcert/health"), None);
        assert_eq!(own("/.well-known/vipcert/status"), OwnRoute::Status);
        assert_eq!(own("/.well-known/vipcert/challenges/a,b"), OwnRoute::Batch);
        for p in [
            "/",
            "/.well-known/vipcert/statusx",
            "/.well-known/acme-challenge",
        ] {
            assert_eq!(own(p), OwnRoute::Other, "{p}");
        }
    }

    #[test]
    fn one_address_gets_the_rate_then_waits_then_is_refused() {
        // 10/s, park at most 250 ms: one at once, then turns 100 ms apart.
        let r = rations(10, 250);
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        assert_eq!(r.reserve(OwnRoute::Status, a, t0), Turn::Now);
        assert_eq!(
            r.reserve(OwnRoute::Status, a, t0),
            Turn::Wait(Duration::from_millis(100))
        );
        assert_eq!(
            r.reserve(OwnRoute::Status, a, t0),
            Turn::Wait(Duration::from_millis(200))
        );
        match r.reserve(OwnRoute::Status, a, t0) {
            Turn::Refuse(d) => assert!(
                d >= Duration::from_millis(125) && d <= Duration::from_millis(250),
                "{d:?}"
            ),
            v => panic!("{v:?}"),
        }
        // A refusal takes no turn: once the queue has moved on there is room again.
        let later = t0 + Duration::from_millis(150);
        assert_eq!(
            r.reserve(OwnRoute::Status, a, later),
            Turn::Wait(Duration::from_millis(150))
        );
        // Every route has its own budget.
        assert_eq!(r.reserve(OwnRoute::Batch, a, t0), Turn::Now);
    }

    #[test]
    fn a_quiet_address_is_answered_at_once_beside_hammering_ones() {
        let r = rations(100, 10_000);
        let t0 = Instant::now();
        // 25 addresses hammer: each ends with its next turn seconds away.
        for i in 0..25u8 {
            let a = IpAddr::from([10, 0, 1, i]);
            for _ in 0..200 {
                r.reserve(OwnRoute::Status, a, t0);
            }
        }
        let hammer = IpAddr::from([10, 0, 1, 24]);
        assert!(matches!(
            r.reserve(OwnRoute::Status, hammer, t0),
            Turn::Refuse(_)
        ));
        // A monitor asking once a second is never parked.
        let monitor = ip("10.0.2.1");
        for s in 0..5 {
            let t = t0 + Duration::from_secs(s);
            assert_eq!(r.reserve(OwnRoute::Status, monitor, t), Turn::Now, "{s}");
        }
    }

    #[test]
    fn the_total_stays_near_the_rate_however_many_addresses_hammer() {
        let r = rations(100, 2_000);
        let t0 = Instant::now();
        let mut answered = 0;
        // 50 addresses, each asking every 10 ms for 2 s: what is answered within those 2 s?
        for step in 0..200u32 {
            let now = t0 + Duration::from_millis(10 * u64::from(step));
            for i in 0..50u8 {
                match r.reserve(OwnRoute::Status, IpAddr::from([10, 0, 3, i]), now) {
                    Turn::Now => answered += 1,
                    Turn::Wait(d) if now + d < t0 + Duration::from_secs(2) => answered += 1,
                    _ => {}
                }
            }
        }
        assert!(
            (150..=260).contains(&answered),
            "{answered} in 2 s at 100/s"
        );
    }

    #[test]
    fn addresses_that_stopped_asking_are_forgotten() {
        let r = rations(10, 1_000);
        let t0 = Instant::now();
        for i in 0..100u8 {
            r.reserve(OwnRoute::Batch, IpAddr::from([10, 0, 4, i]), t0);
        }
        let later = t0 + Duration::from_secs(20);
        r.reserve(OwnRoute::Batch, ip("10.0.5.1"), later);
        assert_eq!(r.share(OwnRoute::Batch).next_turn.len(), 1);
    }
}
