//! Which backend gets a new connection: `wlc`, `rr` (weighted round robin) and `sh` (source
//! hash) over the backends of one service. Pure functions of a snapshot; no I/O, no clocks.
//!
//! Owns the selection rules and the meaning of weights (0 drains: never picked). It does not
//! decide whether a backend is up (`health`) or hold the live counters (`pool`).

use std::net::IpAddr;

/// What the scheduler sees of one backend at the moment of a pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) weight: u32,
    /// Connections open to it now (all threads).
    pub(crate) active: u64,
    /// Up, not drained by weight 0, not already tried for this client.
    pub(crate) eligible: bool,
    /// Stable identity for `sh` (hash of node name and address).
    pub(crate) key: u64,
}

impl Candidate {
    fn usable(&self) -> bool {
        self.eligible && self.weight > 0
    }
}

/// Weighted least connections (IPVS `wlc`): the usable backend with the fewest active
/// connections per unit of weight. Ties go to the first one at or after `start` (the caller
/// rotates `start`, so that short sequential connections spread instead of all landing on
/// the first node).
pub(crate) fn wlc(n: usize, c: impl Fn(usize) -> Candidate, start: usize) -> Option<usize> {
    let mut best: Option<(usize, Candidate)> = None;
    for k in 0..n {
        let i = (start + k) % n;
        let x = c(i);
        if !x.usable() {
            continue;
        }
        best = match best {
            // x better than b  <=>  x.active / x.weight < b.active / b.weight
            Some((_, b))
                if (x.active as u128) * (b.weight as u128)
                    >= (b.active as u128) * (x.weight as u128) =>
            {
                best
            }
            _ => Some((i, x)),
        };
    }
    best.map(|(i, _)| i)
}

/// Smooth weighted round robin (the nginx algorithm): over any window of `sum(weights)` picks
/// each usable backend is chosen exactly `weight` times, interleaved rather than in runs.
#[derive(Debug, Default, Clone)]
pub(crate) struct RoundRobin {
    current: Vec<i64>,
}

impl RoundRobin {
    pub(crate) fn pick(&mut self, n: usize, c: impl Fn(usize) -> Candidate) -> Option<usize> {
        if self.current.len() != n {
            self.current = vec![0; n];
        }
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for i in 0..n {
            let x = c(i);
            if !x.usable() {
                continue;
            }
            self.current[i] += x.weight as i64;
            total += x.weight as i64;
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        if let Some(b) = best {
            self.current[b] -= total;
        }
        best
    }

    /// Forget the rotation (the backend list changed).
    pub(crate) fn reset(&mut self) {
        self.current.clear();
    }
}

/// Source hash by weighted rendezvous hashing: each usable backend scores
/// `weight / -ln(u)` with `u` a hash of (client address, backend key) in (0,1); the highest
/// score wins. A client keeps its backend while that backend stays usable, and when one
/// leaves only its own clients move.
pub(crate) fn sh(n: usize, c: impl Fn(usize) -> Candidate, client: IpAddr) -> Option<usize> {
    let ch = hash_ip(client);
    let mut best: Option<(usize, f64)> = None;
    for i in 0..n {
        let x = c(i);
        if !x.usable() {
            continue;
        }
        let h = mix(ch ^ mix(x.key));
        // 53 random bits -> u in (0, 1), never 0 or 1.
        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let score = x.weight as f64 / -u.ln();
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

/// A stable 64-bit identity for a backend (FNV-1a, then mixed): the same across restarts and
/// builds, so `sh` keeps clients on their nodes across a restart.
pub(crate) fn backend_key(node: &str, addr: &std::net::SocketAddr) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes().chain(addr.to_string().bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

fn hash_ip(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v) => mix(u32::from(v) as u64 ^ 0x4444_0000_0000_0000),
        IpAddr::V6(v) => {
            let x = u128::from(v);
            mix(mix(x as u64) ^ (x >> 64) as u64)
        }
    }
}

/// splitmix64's finaliser: every input bit moves every output bit.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(w: &[u32]) -> Vec<Candidate> {
        w.iter()
            .enumerate()
            .map(|(i, &weight)| Candidate {
                weight,
                active: 0,
                eligible: true,
                key: backend_key(&format!("n{i}"), &"127.0.0.1:1".parse().unwrap()),
            })
            .collect()
    }

    #[test]
    fn wlc_prefers_fewest_connections_per_weight() {
        let mut c = cands(&[1, 2]);
        c[0].active = 3;
        c[1].active = 5; // 2.5 per weight < 3
        assert_eq!(wlc(2, |i| c[i], 0), Some(1));
        c[1].active = 6; // 3 == 3: tie goes to the first at/after start
        assert_eq!(wlc(2, |i| c[i], 0), Some(0));
        assert_eq!(wlc(2, |i| c[i], 1), Some(1));
    }

    #[test]
    fn wlc_fills_in_weight_proportion() {
        let mut c = cands(&[1, 2, 3]);
        for k in 0..60 {
            let i = wlc(3, |i| c[i], k).unwrap();
            c[i].active += 1;
        }
        assert_eq!(
            c.iter().map(|x| x.active).collect::<Vec<_>>(),
            vec![10, 20, 30]
        );
    }

    #[test]
    fn zero_weight_and_ineligible_are_never_picked() {
        let mut c = cands(&[0, 1, 1]);
        c[2].eligible = false;
        for k in 0..10 {
            assert_eq!(wlc(3, |i| c[i], k), Some(1));
        }
        let mut rr = RoundRobin::default();
        for _ in 0..10 {
            assert_eq!(rr.pick(3, |i| c[i]), Some(1));
        }
        for ip in 0..50u32 {
            assert_eq!(sh(3, |i| c[i], IpAddr::from(ip.to_be_bytes())), Some(1));
        }
        c[1].eligible = false;
        assert_eq!(wlc(3, |i| c[i], 0), None);
        assert_eq!(rr.pick(3, |i| c[i]), None);
        assert_eq!(sh(3, |i| c[i], "127.0.0.1".parse().unwrap()), None);
    }

    #[test]
    fn rr_is_exact_and_interleaved() {
        let c = cands(&[1, 2, 3]);
        let mut rr = RoundRobin::default();
        let picks: Vec<usize> = (0..6).map(|_| rr.pick(3, |i| c[i]).unwrap()).collect();
        let mut counts = [0; 3];
        for &p in &picks {
            counts[p] += 1;
        }
        assert_eq!(counts, [1, 2, 3]);
        // Smooth: the heaviest never gets all its picks in one run.
        assert_ne!(&picks[..3], &[2, 2, 2]);
        let c = cands(&[1, 1]);
        let mut rr = RoundRobin::default();
        let picks: Vec<usize> = (0..4).map(|_| rr.pick(2, |i| c[i]).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 0, 1]);
    }

    #[test]
    fn sh_is_sticky_and_moves_only_the_lost_nodes_clients() {
        let mut c = cands(&[1, 1, 1]);
        let ips: Vec<IpAddr> = (1..=200u8).map(|i| IpAddr::from([10, 0, 0, i])).collect();
        let before: Vec<usize> = ips.iter().map(|&ip| sh(3, |i| c[i], ip).unwrap()).collect();
        let again: Vec<usize> = ips.iter().map(|&ip| sh(3, |i| c[i], ip).unwrap()).collect();
        assert_eq!(before, again);
        let mut counts = [0; 3];
        for &b in &before {
            counts[b] += 1;
        }
        assert!(counts.iter().all(|&n| n > 30), "{counts:?}");
        c[1].eligible = false;
        for (k, &ip) in ips.iter().enumerate() {
            let now = sh(3, |i| c[i], ip).unwrap();
            if before[k] != 1 {
                assert_eq!(now, before[k], "client {ip} moved off a healthy node");
            } else {
                assert_ne!(now, 1);
            }
        }
    }

    #[test]
    fn sh_respects_weights() {
        let c = cands(&[1, 3]);
        let mut counts = [0; 2];
        for i in 0..4000u32 {
            counts[sh(2, |k| c[k], IpAddr::from((0x0a00_0000 + i).to_be_bytes())).unwrap()] += 1;
        }
        // Expect about 1000 / 3000.
        assert!((800..1200).contains(&counts[0]), "{counts:?}");
    }
}
