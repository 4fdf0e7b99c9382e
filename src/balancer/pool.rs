//! The live state of one balanced service: its settings and backends (one per node), their
//! counters and health, shared by every proxy thread and the checkers; and how a reloaded
//! config is merged into it without touching established connections.
//!
//! Owns the counters and the pick (scheduler over a snapshot). It does not move bytes
//! (`proxy`) or run checks (`health`).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use super::rise_fall::HealthState;
use super::scheduler::{self, Candidate, RoundRobin};
use crate::config::{Config, Node, Scheduler, Service};

/// One node as a backend of one service.
#[derive(Debug)]
pub(crate) struct Backend {
    /// The node's hostname (metrics label).
    pub(crate) node: String,
    pub(crate) addr: SocketAddr,
    pub(crate) key: u64,
    pub(crate) weight: AtomicU32,
    pub(crate) up: AtomicBool,
    pub(crate) health: Mutex<HealthState>,
    /// Wakes the checker now (a proxy connect failed, or the backend was retired).
    pub(crate) kick: Notify,
    /// Removed from the config by a reload: its checker stops; open connections continue.
    pub(crate) retired: AtomicBool,
    pub(crate) active: AtomicU64,
    /// Connections proxied to it (successful connects).
    pub(crate) total: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    /// Bytes client -> node.
    pub(crate) bytes_in: ShardedCounter,
    /// Bytes node -> client.
    pub(crate) bytes_out: ShardedCounter,
}

impl Backend {
    pub(crate) fn new(node: &Node, port: u16) -> Backend {
        let addr = SocketAddr::new(node.address, port);
        Backend {
            node: node.hostname.clone(),
            addr,
            key: scheduler::backend_key(&node.hostname, &addr),
            weight: AtomicU32::new(node.weight),
            up: AtomicBool::new(true),
            health: Mutex::new(HealthState::default()),
            kick: Notify::new(),
            retired: AtomicBool::new(false),
            active: AtomicU64::new(0),
            total: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            bytes_in: ShardedCounter::default(),
            bytes_out: ShardedCounter::default(),
        }
    }
}

/// Cache-line slots of a [`ShardedCounter`]: proxy workers past this many share slots
/// (still exact, as every add is atomic).
const SHARDS: usize = 16;

thread_local! {
    /// This thread's slot in every [`ShardedCounter`] (`set_shard`; 0 for other threads).
    static SHARD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Use slot `worker % SHARDS` for this thread's adds (called once by each proxy worker).
pub(crate) fn set_shard(worker: usize) {
    SHARD.with(|s| s.set(worker % SHARDS));
}

/// One slot on its own cache line (128 bytes: adjacent-line prefetch pairs 64-byte lines).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot(AtomicU64);

/// A counter that proxy workers add to per chunk of bytes moved: each worker adds to its
/// own slot and a reader (metrics) sums them. With one shared atomic, every keep-alive
/// request moved the counter's cache line between the workers' CPUs: in `perf annotate`
/// of the byte pump the instruction after that `lock add` held a tenth of the pump's
/// samples. That is 0.4 % of the proxy's time on 2 cores, and grows with the workers.
#[derive(Debug, Default)]
pub(crate) struct ShardedCounter([Slot; SHARDS]);

impl ShardedCounter {
    pub(crate) fn add(&self, n: u64) {
        let i = SHARD.with(|s| s.get());
        self.0[i].0.fetch_add(n, Ordering::Relaxed);
    }

    /// The total over all slots.
    pub(crate) fn get(&self) -> u64 {
        self.0
            .iter()
            .fold(0u64, |t, s| t.wrapping_add(s.0.load(Ordering::Relaxed)))
    }
}

/// What a reload may change for a service, read once per new connection or check.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) service: Service,
    pub(crate) scheduler: Scheduler,
    pub(crate) connect_timeout: Duration,
    pub(crate) delay_loop: Duration,
    pub(crate) rise: u32,
    pub(crate) fall: u32,
}

impl Settings {
    pub(crate) fn from_config(cfg: &Config, s: &Service) -> Settings {
        let b = &cfg.balancer;
        Settings {
            service: s.clone(),
            scheduler: b.scheduler,
            connect_timeout: b.connect_timeout,
            delay_loop: b.delay_loop,
            rise: b.rise,
            fall: b.fall,
        }
    }
}

pub(crate) struct Pool {
    pub(crate) name: String,
    /// The listener's port (fixed for the life of the process).
    pub(crate) port: u16,
    settings: RwLock<Arc<Settings>>,
    backends: RwLock<Arc<Vec<Arc<Backend>>>>,
    rr: Mutex<RoundRobin>,
    /// wlc tie rotation.
    tie: AtomicUsize,
    /// Clients closed because no backend was usable.
    pub(crate) rejected: AtomicU64,
    last_reject_log: AtomicU64,
    /// Clients proxied now (connecting or connected), against `max_connections`.
    pub(crate) clients: AtomicU64,
    /// Clients closed at accept because the service had `max_connections` clients.
    pub(crate) refused_limit: AtomicU64,
    /// This service's share of the descriptor budget (`proxy::shares`), kept from the
    /// other services' floods.
    pub(crate) share: AtomicU64,
    /// Clients closed because this process was out of descriptors.
    pub(crate) refused_descriptors: AtomicU64,
    last_refuse_log: AtomicU64,
}

impl Pool {
    pub(crate) fn new(cfg: &Config, s: &Service) -> Pool {
        let backends = cfg
            .nodes
            .iter()
            .map(|n| Arc::new(Backend::new(n, s.backend_port)))
            .collect();
        Pool {
            name: s.name.clone(),
            port: s.port,
            settings: RwLock::new(Arc::new(Settings::from_config(cfg, s))),
            backends: RwLock::new(Arc::new(backends)),
            rr: Mutex::new(RoundRobin::default()),
            tie: AtomicUsize::new(0),
            rejected: AtomicU64::new(0),
            last_reject_log: AtomicU64::new(0),
            clients: AtomicU64::new(0),
            refused_limit: AtomicU64::new(0),
            share: AtomicU64::new(s.max_connections),
            refused_descriptors: AtomicU64::new(0),
            last_refuse_log: AtomicU64::new(0),
        }
    }

    pub(crate) fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn backends(&self) -> Arc<Vec<Arc<Backend>>> {
        self.backends
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Pick a backend for a new connection from `client`, skipping the indexes in `tried`.
    pub(crate) fn pick(
        &self,
        list: &[Arc<Backend>],
        sched: Scheduler,
        client: Option<IpAddr>,
        tried: &[usize],
    ) -> Option<usize> {
        let cand = |i: usize| {
            let b = &list[i];
            Candidate {
                weight: b.weight.load(Ordering::Relaxed),
                active: b.active.load(Ordering::Relaxed),
                eligible: b.up.load(Ordering::Relaxed) && !tried.contains(&i),
                key: b.key,
            }
        };
        let n = list.len();
        match (sched, client) {
            (Scheduler::Sh, Some(ip)) => scheduler::sh(n, cand, ip),
            (Scheduler::Rr, _) => self
                .rr
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pick(n, cand),
            _ => scheduler::wlc(n, cand, self.tie.fetch_add(1, Ordering::Relaxed)),
        }
    }

    /// Count a client closed for the balancer's own limits (at most one log line a second).
    pub(crate) fn refuse(&self, out_of_descriptors: bool) {
        let (counter, why) = if out_of_descriptors {
            (
                &self.refused_descriptors,
                "out of file descriptors (the backends are not blamed)",
            )
        } else {
            (
                &self.refused_limit,
                "the service has max_connections clients",
            )
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if first_this_second(&self.last_refuse_log) {
            tracing::warn!(service = %self.name, "client closed: {why}");
        }
    }

    /// Count a client turned away because no backend is up; log at most once a second.
    pub(crate) fn reject(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        if first_this_second(&self.last_reject_log) {
            tracing::warn!(service = %self.name, "no backend is up (or all have weight 0): client closed");
        }
    }

    /// Apply a reloaded config: new settings; backends kept (with their counters, health and
    /// open connections) when node name and address are unchanged, weights updated, new
    /// nodes added, removed ones retired. Returns the added backends (they need checkers).
    pub(crate) fn apply(&self, cfg: &Config, s: &Service) -> Vec<Arc<Backend>> {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Settings::from_config(cfg, s));
        let old = self.backends();
        let (list, added, retired) = merge(&old, &cfg.nodes, s.backend_port);
        for b in &retired {
            b.retired.store(true, Ordering::Relaxed);
            b.kick.notify_one();
        }
        *self.backends.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(list);
        self.rr.lock().unwrap_or_else(|p| p.into_inner()).reset();
        added
    }
}

type Merged = (Vec<Arc<Backend>>, Vec<Arc<Backend>>, Vec<Arc<Backend>>);

/// New backend list for `nodes` reusing matching entries of `old`: (list, added, retired).
pub(crate) fn merge(old: &[Arc<Backend>], nodes: &[Node], port: u16) -> Merged {
    let mut list = Vec::with_capacity(nodes.len());
    let mut added = Vec::new();
    for n in nodes {
        let addr = SocketAddr::new(n.address, port);
        match old.iter().find(|b| b.node == n.hostname && b.addr == addr) {
            Some(b) => {
                b.weight.store(n.weight, Ordering::Relaxed);
                list.push(b.clone());
            }
            None => {
                let b = Arc::new(Backend::new(n, port));
                added.push(b.clone());
                list.push(b);
            }
        }
    }
    let retired = old
        .iter()
        .filter(|b| !list.iter().any(|x| Arc::ptr_eq(x, b)))
        .cloned()
        .collect();
    (list, added, retired)
}

/// Whether this is the first call in the current wall-clock second for `last` (which holds
/// the second of the previous call): rate-limits a log line without a lock.
fn first_this_second(last: &AtomicU64) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    last.swap(now, Ordering::Relaxed) != now
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adds from many threads, in their own slots or sharing one, all count.
    #[test]
    fn sharded_counter_sums_every_threads_adds() {
        let c = Arc::new(ShardedCounter::default());
        let threads: Vec<_> = (0..SHARDS + 3)
            .map(|w| {
                let c = c.clone();
                std::thread::spawn(move || {
                    set_shard(w);
                    for _ in 0..1000 {
                        c.add(3);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        c.add(1);
        assert_eq!(c.get(), (SHARDS as u64 + 3) * 3000 + 1);
    }

    fn node(h: &str, a: &str, weight: u32) -> Node {
        Node {
            hostname: h.into(),
            address: a.parse().unwrap(),
            weight,
            needs_client_auth: false,
            challenge: None,
            ca: None,
        }
    }

    #[test]
    fn merge_keeps_counters_updates_weights_adds_and_retires() {
        let old: Vec<Arc<Backend>> = [
            node("a.x.org", "10.0.0.1", 1),
            node("b.x.org", "10.0.0.2", 1),
        ]
        .iter()
        .map(|n| Arc::new(Backend::new(n, 80)))
        .collect();
        old[0].active.store(7, Ordering::Relaxed);
        let nodes = [
            node("a.x.org", "10.0.0.1", 0),
            node("c.x.org", "10.0.0.3", 2),
        ];
        let (list, added, retired) = merge(&old, &nodes, 80);
        assert_eq!(list.len(), 2);
        assert!(Arc::ptr_eq(&list[0], &old[0]));
        assert_eq!(list[0].active.load(Ordering::Relaxed), 7);
        assert_eq!(list[0].weight.load(Ordering::Relaxed), 0);
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].node, "c.x.org");
        assert_eq!(added[0].weight.load(Ordering::Relaxed), 2);
        assert_eq!(retired.len(), 1);
        assert_eq!(retired[0].node, "b.x.org");
        // Byte counters survive the merge too.
        old[0].bytes_in.add(5);
        assert_eq!(list[0].bytes_in.get(), 5);
        // A node whose address changed is a new backend.
        let (_, added, retired) = merge(&list, &[node("a.x.org", "10.0.0.9", 1)], 80);
        assert_eq!((added.len(), retired.len()), (1, 2));
    }
}
