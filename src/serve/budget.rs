//! The node server's connection budget: at most `max_connections` open connections, at most
//! `max_connections_per_address` from one client address, and when the global budget is
//! short, the connection that has been idle longest is closed to make room (oldest first),
//! so that a flood of idle sockets cannot lock out the CA's validation requests.
//! Connections from `proxy_addresses` (the balancers in front of the node, which hold every
//! VIP client's connection under their own address) count toward `max_connections` only.
//!
//! Owns `ConnectionLimits` (the `[serve]` keys, fitted into the open-file limit), the
//! counting and the eviction order; the connection loop (`conn`) says when a connection is
//! busy (a request is being answered) or idle, and closes it when evicted.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::rations::MonitorLimits;

/// Limits of the node server: connection caps (`[serve] max_connections`,
/// `max_connections_per_address`, and the `proxy_addresses` the latter does not apply to),
/// and the request-rate budget of its own routes (`monitor_rate`, `monitor_wait`; kept by
/// `rations`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_address: usize,
    pub(crate) proxy_addresses: Vec<IpAddr>,
    pub(crate) monitor: MonitorLimits,
}

impl ConnectionLimits {
    /// The `[serve]` keys.
    pub fn of(serve: &crate::config::Serve) -> Self {
        ConnectionLimits {
            max_connections: serve.max_connections,
            max_connections_per_address: serve.max_connections_per_address,
            proxy_addresses: serve
                .proxy_addresses
                .iter()
                .map(IpAddr::to_canonical)
                .collect(),
            monitor: MonitorLimits {
                rate: serve.monitor_rate,
                wait: serve.monitor_wait,
                ..MonitorLimits::default()
            },
        }
    }
}

/// Descriptors `serve` keeps beside its connections: listeners, the watcher, the files it
/// reads (challenge files, the installed pair, the store), logs.
pub const FD_RESERVE: u64 = 256;

impl ConnectionLimits {
    /// These limits within an open-file limit of `nofile`: `max_connections` is lowered to
    /// leave [`FD_RESERVE`] descriptors (and `max_connections_per_address` to at most that).
    /// A budget above the descriptors there are never evicts anyone: `accept` fails first,
    /// and new clients (the CA among them) wait in the backlog until idle sockets time out.
    /// Returns the limits and whether they were lowered.
    pub fn within_nofile(mut self, nofile: u64) -> (Self, bool) {
        let room = usize::try_from(nofile.saturating_sub(FD_RESERVE))
            .unwrap_or(usize::MAX)
            .max(16);
        if self.max_connections <= room {
            return (self, false);
        }
        self.max_connections = room;
        self.max_connections_per_address = self.max_connections_per_address.min(room);
        (self, true)
    }

    /// The global cap in force.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        use crate::config::{DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_ADDRESS};
        ConnectionLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            proxy_addresses: Vec::new(),
            monitor: MonitorLimits::default(),
        }
    }
}

/// The client a connection from `ip` is counted (and its own routes rationed) as: an IPv4
/// address also when it reaches an IPv6 listener as `::ffff:a.b.c.d` (a dual-stack
/// `[::]:80`), an IPv6 address as its /64. A /64 is what one subscriber gets, as one IPv4
/// address is one NAT: counted address by address, one host with its 2^64 addresses would
/// make `max_connections_per_address` no cap at all.
pub(super) fn client_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 64))),
        v4 => v4,
    }
}

/// Why `Budget::admit` closed a new connection at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Its client address holds `max_connections_per_address` already.
    PerAddress,
    /// `max_connections` are held and every one of them is busy.
    Full,
}

pub(super) struct Budget {
    limits: ConnectionLimits,
    /// The server's shutdown: every eviction token is its child, so that a connection
    /// waits on one token for both.
    shutdown: CancellationToken,
    state: Mutex<Book>,
}

#[derive(Default)]
struct Book {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
    /// Idle connections by the moment they became idle (a sequence number from 1): the
    /// first entry is the one idle longest. Arc'd: cloning a CancellationToken takes a lock,
    /// and a connection is re-filed on every request.
    idle: BTreeMap<u64, Arc<CancellationToken>>,
    seq: u64,
    /// Most connections held since memory was last given back.
    peak: usize,
}

/// One admitted connection; dropping it gives its place back.
pub(super) struct Ticket {
    budget: Arc<Budget>,
    ip: IpAddr,
    evict: Arc<CancellationToken>,
    /// Its key in `Book::idle` while idle, 0 while busy. Only the connection's own task
    /// changes it (and `drop`), always with the budget locked.
    idle_key: AtomicU64,
}

impl Budget {
    pub(super) fn new(limits: ConnectionLimits, shutdown: &CancellationToken) -> Arc<Budget> {
        Arc::new(Budget {
            limits,
            shutdown: shutdown.clone(),
            state: Mutex::new(Book::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Book> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a new connection from `ip`, idle until its first request; refused when
    /// `ip` is at its cap, or the budget is full and no connection is idle.
    pub(super) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Arc<Ticket>, Refusal> {
        // A balancer's address carries every client of the VIP: capping it as one client
        // would let 256 idle sockets through the VIP lock out the CA and the health checks.
        let proxy = self.limits.proxy_addresses.contains(&peer.to_canonical());
        let ip = client_of(peer);
        let mut st = self.lock();
        let from_ip = st.per_address.get(&ip).copied().unwrap_or(0);
        if from_ip >= self.limits.max_connections_per_address && !proxy {
            tracing::debug!(client = %ip, "connection refused: per-address limit");
            return Err(Refusal::PerAddress);
        }
        if st.total >= self.limits.max_connections {
            // The evicted connection gives its place back when its task ends, a moment
            // from now; until then the total is one over.
            match st.idle.pop_first() {
                Some((_, oldest)) => oldest.cancel(),
                None => {
                    tracing::debug!(client = %ip, "connection refused: every connection is busy");
                    return Err(Refusal::Full);
                }
            }
        }
        st.total += 1;
        st.peak = st.peak.max(st.total);
        *st.per_address.entry(ip).or_default() += 1;
        let evict = Arc::new(self.shutdown.child_token());
        st.seq += 1;
        let key = st.seq;
        st.idle.insert(key, evict.clone());
        Ok(Arc::new(Ticket {
            budget: self.clone(),
            ip,
            evict,
            idle_key: AtomicU64::new(key),
        }))
    }
}

impl Budget {
    /// True once after a flood has mostly gone (at least 1,024 connections held, now a
    /// quarter of that or fewer): the moment to give freed memory back to the system.
    pub(super) fn flood_ended(&self) -> bool {
        let mut st = self.lock();
        if st.peak >= 1024 && st.total * 4 <= st.peak {
            st.peak = st.total;
            return true;
        }
        false
    }
}

impl Ticket {
    /// A request is being answered: not a candidate for eviction.
    pub(super) fn busy(&self) {
        let mut st = self.budget.lock();
        let k = self.idle_key.swap(0, Ordering::Relaxed);
        if k != 0 {
            st.idle.remove(&k);
        }
    }

    /// Waiting for the next request: the newest idle connection.
    pub(super) fn idle(&self) {
        if self.evict.is_cancelled() {
            return;
        }
        let mut st = self.budget.lock();
        st.seq += 1;
        let k = st.seq;
        st.idle.insert(k, self.evict.clone());
        let old = self.idle_key.swap(k, Ordering::Relaxed);
        if old != 0 {
            st.idle.remove(&old);
        }
    }

    /// The client, as [`client_of`] names it.
    pub(super) fn ip(&self) -> IpAddr {
        self.ip
    }

    /// Completes when the budget needs this connection's place, or the server shuts down.
    pub(super) fn evicted(&self) -> WaitForCancellationFuture<'_> {
        self.evict.cancelled()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut st = self.budget.lock();
        let k = *self.idle_key.get_mut();
        if k != 0 {
            st.idle.remove(&k);
        }
        st.total -= 1;
        if let Some(n) = st.per_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                st.per_address.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_leave_room_for_the_servers_own_descriptors() {
        let l = ConnectionLimits::default();
        assert_eq!(l.clone().within_nofile(1 << 20), (l.clone(), false));
        let (low, lowered) = l.clone().within_nofile(1024);
        assert!(lowered);
        assert_eq!(low.max_connections, 1024 - FD_RESERVE as usize);
        assert_eq!(low.max_connections_per_address, 256);
        let (tiny, _) = l.within_nofile(100);
        assert_eq!(
            (tiny.max_connections, tiny.max_connections_per_address),
            (16, 16)
        );
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_address_cap_and_release() {
        let b = Budget::new(
            ConnectionLimits {
                max_connections: 10,
                max_connections_per_address: 2,
                proxy_addresses: vec![ip("10.0.0.9")],
                monitor: MonitorLimits::default(),
            },
            &CancellationToken::new(),
        );
        let t1 = b.admit(ip("10.0.0.1")).unwrap();
        let _t2 = b.admit(ip("10.0.0.1")).unwrap();
        assert!(b.admit(ip("10.0.0.1")).is_err(), "third from one address");
        assert_eq!(b.admit(ip("10.0.0.1")).err(), Some(Refusal::PerAddress));
        assert!(b.admit(ip("10.0.0.2")).is_ok(), "another address");
        drop(t1);
        assert!(b.admit(ip("10.0.0.1")).is_ok(), "place given back");
        // A proxy's connections are held to the global budget only.
        let held: Vec<_> = (0..4).map(|_| b.admit(ip("10.0.0.9"))).collect();
        assert!(held.iter().all(|t| t.is_ok()), "proxy capped as one client");
    }

    /// An IPv4 client reaching a dual-stack listener is the same client (and the same
    /// proxy) as over IPv4; the addresses of one IPv6 /64 are one client.
    #[test]
    fn clients_are_ipv4_addresses_and_ipv6_64s() {
        assert_eq!(client_of(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(client_of(ip("10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(client_of(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_ne!(
            client_of(ip("2001:db8:1:2::1")),
            client_of(ip("2001:db8:1:3::1"))
        );
        let b = Budget::new(
            ConnectionLimits {
                max_connections: 100,
                max_connections_per_address: 2,
                proxy_addresses: vec![ip("10.0.0.9"), ip("2001:db8:9::9")],
                monitor: MonitorLimits::default(),
            },
            &CancellationToken::new(),
        );
        let _v4 = b.admit(ip("10.0.0.1")).unwrap();
        let _mapped = b.admit(ip("::ffff:10.0.0.1")).unwrap();
        assert!(
            b.admit(ip("10.0.0.1")).is_err(),
            "one client over IPv4 and mapped"
        );
        let _a = b.admit(ip("2001:db8::1")).unwrap();
        let _b = b.admit(ip("2001:db8::2")).unwrap();
        assert!(b.admit(ip("2001:db8::3")).is_err(), "one /64 is one client");
        assert!(b.admit(ip("2001:db8:0:1::1")).is_ok(), "another /64");
        let held: Vec<_> = (0..4)
            .flat_map(|_| [b.admit(ip("::ffff:10.0.0.9")), b.admit(ip("2001:db8:9::9"))])
            .collect();
        assert!(
            held.iter().all(|t| t.is_ok()),
            "proxies, however they arrive"
        );
    }

    #[test]
    fn full_budget_evicts_the_oldest_idle_and_never_a_busy_one() {
        let b = Budget::new(
            ConnectionLimits {
                max_connections: 3,
                max_connections_per_address: 10,
                proxy_addresses: Vec::new(),
                monitor: MonitorLimits::default(),
            },
            &CancellationToken::new(),
        );
        let a = b.admit(ip("10.0.0.1")).unwrap();
        let c = b.admit(ip("10.0.0.1")).unwrap();
        let d = b.admit(ip("10.0.0.1")).unwrap();
        a.busy();
        // `c` went idle before `d`; `d` then served a request and is idle again (newest).
        d.busy();
        d.idle();
        let _e = b.admit(ip("10.0.0.2")).unwrap();
        assert!(!a.evict.is_cancelled(), "busy connection kept");
        assert!(c.evict.is_cancelled(), "oldest idle evicted");
        assert!(!d.evict.is_cancelled());
        drop(c);
        d.busy();
        // Full again, and nothing idle but the new one.
        let f = b.admit(ip("10.0.0.3")).unwrap();
        // Full once more: the idle newcomer `f` makes room, the busy ones never do.
        let g = b.admit(ip("10.0.0.4")).unwrap();
        assert!(f.evict.is_cancelled(), "the only idle connection evicted");
        assert!(
            !a.evict.is_cancelled() && !d.evict.is_cancelled(),
            "busy ones kept"
        );
        // Full with every connection busy: the newcomer is the one refused.
        g.busy();
        drop(f);
        assert_eq!(b.admit(ip("10.0.0.5")).err(), Some(Refusal::Full));
    }
}
