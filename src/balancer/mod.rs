//! `vipcert balance`: the embedded layer-4 balancer on the VIP: one listener per
//! `[[balancer.service]]`, health-checked backends (one per `[[node]]`), SIGHUP reload,
//! SIGTERM drain, Prometheus metrics on `admin_listen`.
//!
//! Runtime layout (measured, see docs/balancer.md): `threads` proxy workers, each a
//! single-threaded tokio runtime with its own SO_REUSEPORT listener per service, so a
//! connection lives on one thread with no cross-thread wake-ups; the control runtime on the
//! main thread runs health checks, the admin listener and signals. Backends' counters are
//! shared atomics, so `wlc` sees every thread's connections.
//!
//! Files: `scheduler` (pure picks), `rise_fall` (pure up/down rule), `health` (checks),
//! `pool` (live state and reload merge), `proxy` (sockets and byte pump), `metrics`
//! (the balancer's metric families, admin listener; the text format is `crate::metrics`).
//! It does not render keepalived configs (`render`).

pub(crate) mod health;
pub(crate) mod metrics;
pub(crate) mod pool;
pub(crate) mod proxy;
pub(crate) mod rise_fall;
pub(crate) mod scheduler;

use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context as _;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use metrics::Process;
use pool::Pool;

/// A listening socket of one proxy worker, and the service it serves.
type Listener = (OwnedFd, Arc<Pool>);

/// Run the balancer until SIGTERM/SIGINT and the drain that follows. `threads` overrides
/// `[balancer] threads`.
pub fn run(config_path: &Path, threads: Option<usize>) -> anyhow::Result<()> {
    let cfg = Config::load(config_path)?;
    // Each proxied connection holds two descriptors.
    let nofile = crate::limits::raise_nofile();
    let b = &cfg.balancer;
    let threads = threads.unwrap_or(b.threads).clamp(1, 256);
    let pools: Vec<Arc<Pool>> = b
        .services
        .iter()
        .map(|s| Arc::new(Pool::new(&cfg, s)))
        .collect();
    let per_worker = bind_listeners(b.listen_address, &pools, threads)?;
    log_services(b.listen_address, &pools);
    let fds = descriptor_budget(nofile, &pools, threads);

    // `stop`: no new connections. `hard`: close what is left (drain timeout).
    let stop = CancellationToken::new();
    let hard = CancellationToken::new();
    let workers = start_workers(per_worker, &fds, &stop, &hard)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the control runtime")?;
    let r = rt.block_on(control(
        cfg,
        config_path,
        pools,
        fds,
        stop.clone(),
        hard.clone(),
        workers,
    ));
    stop.cancel();
    hard.cancel();
    r
}

/// Every worker's listener for every service, all bound before anything starts: a port in
/// use fails the start.
fn bind_listeners(
    address: IpAddr,
    pools: &[Arc<Pool>],
    threads: usize,
) -> anyhow::Result<Vec<Vec<Listener>>> {
    let mut per_worker = Vec::new();
    for _ in 0..threads {
        let mut v = Vec::new();
        for p in pools {
            let addr = SocketAddr::new(address, p.port);
            let ka = p.settings().service.tcp_keepalive;
            let fd = proxy::listen(addr, threads > 1, ka).with_context(|| {
                format!(
                    "cannot listen on {addr} for service {:?} (another process on the port? \
                     ports below 1024 need root or CAP_NET_BIND_SERVICE)",
                    p.name
                )
            })?;
            v.push((fd, p.clone()));
        }
        per_worker.push(v);
    }
    Ok(per_worker)
}

fn log_services(address: IpAddr, pools: &[Arc<Pool>]) {
    for p in pools {
        let s = p.settings();
        tracing::info!(
            service = %p.name,
            listen = %SocketAddr::new(address, p.port),
            backends = %p.backends().iter().map(|x| format!("{}={}", x.node, x.addr)).collect::<Vec<_>>().join(","),
            scheduler = s.scheduler.as_str(),
            check = s.service.check.kind(),
            "balancing"
        );
    }
}

/// The descriptors proxied clients may take out of the `nofile` limit, shared out between the
/// services. Descriptors for health checks, the admin listener and reloads are kept aside;
/// new backends added by SIGHUP share the reserve's spare.
fn descriptor_budget(nofile: u64, pools: &[Arc<Pool>], threads: usize) -> Arc<proxy::FdBudget> {
    let checked: usize = pools.iter().map(|p| p.backends().len()).sum();
    let reserve = proxy::FdBudget::reserve(checked);
    let fds = Arc::new(proxy::FdBudget::new(nofile, reserve));
    tracing::info!(
        threads,
        open_files = nofile,
        reserved = reserve,
        max_clients = fds.clients(),
        "proxy workers"
    );
    share_descriptors(pools, &fds);
    fds
}

/// One thread per worker, each with its own single-threaded runtime serving its listeners.
fn start_workers(
    per_worker: Vec<Vec<Listener>>,
    fds: &Arc<proxy::FdBudget>,
    stop: &CancellationToken,
    hard: &CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut workers = Vec::new();
    for (w, listeners) in per_worker.into_iter().enumerate() {
        let (stop, hard, fds) = (stop.clone(), hard.clone(), fds.clone());
        let h = std::thread::Builder::new()
            .name(format!("vipcert-proxy-{w}"))
            .spawn(move || {
                pool::set_shard(w);
                // Signals are the control runtime's: no signal or process driver here.
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .enable_time()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(worker(listeners, fds, stop, hard));
            })
            .context("cannot start a proxy thread")?;
        workers.push(h);
    }
    Ok(workers)
}

async fn worker(
    listeners: Vec<Listener>,
    fds: Arc<proxy::FdBudget>,
    stop: CancellationToken,
    hard: CancellationToken,
) {
    // A heartbeat keeps a timer at most 1 s away, so that the connect and idle timers that
    // every connection arms never land earliest and never make tokio wake the reactor with
    // an eventfd write (measured: half a syscall per connection).
    let heartbeat = tokio::spawn(async {
        let mut t = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            t.tick().await;
        }
    });
    let tracker = TaskTracker::new();
    let mut accepts = Vec::new();
    let all: Arc<Vec<Arc<Pool>>> = Arc::new(listeners.iter().map(|(_, p)| p.clone()).collect());
    for (fd, pool) in listeners {
        let name = pool.name.clone();
        let t = tokio::spawn(proxy::accept_loop(
            fd,
            pool,
            all.clone(),
            fds.clone(),
            stop.clone(),
            tracker.clone(),
        ));
        accepts.push((name, t));
    }
    for (name, t) in accepts {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(service = %name, error = %e, "listener failed"),
            Err(e) => tracing::error!(service = %name, error = %e, "listener task failed"),
        }
    }
    // Listeners are closed now; established connections run on.
    tracker.close();
    tokio::select! {
        _ = tracker.wait() => {}
        _ = hard.cancelled() => {}
    }
    heartbeat.abort();
}

/// Give each service its share of the descriptor budget (`proxy::shares`), and say so when
/// the open-file limit is below what the services' `max_connections` add up to.
fn share_descriptors(pools: &[Arc<Pool>], fds: &proxy::FdBudget) {
    let wanted: Vec<u64> = pools
        .iter()
        .map(|p| p.settings().service.max_connections)
        .collect();
    let shares = fds.shares(&wanted);
    for (p, &share) in pools.iter().zip(&shares) {
        p.share.store(share, Ordering::Relaxed);
    }
    let sum: u64 = wanted.iter().sum();
    if sum > fds.clients() {
        let split = pools
            .iter()
            .zip(&shares)
            .map(|(p, s)| format!("{}={s}", p.name))
            .collect::<Vec<_>>()
            .join(",");
        tracing::warn!(
            services_max_connections = sum,
            max_clients = fds.clients(),
            shares = %split,
            "the open-file limit allows fewer clients than the services' max_connections \
             add up to (2 descriptors each), so each service is sure of its share only \
             (a flood on one cannot take another's): raise LimitNOFILE, or lower max_connections"
        );
    }
}

fn active_connections(pools: &[Arc<Pool>]) -> u64 {
    pools
        .iter()
        .flat_map(|p| {
            p.backends()
                .iter()
                .map(|b| b.active.load(Ordering::Relaxed))
                .collect::<Vec<_>>()
        })
        .sum()
}

/// The control runtime: health checks, the admin listener, SIGHUP reloads until SIGTERM or
/// SIGINT, then the drain.
async fn control(
    cfg: Config,
    path: &Path,
    pools: Vec<Arc<Pool>>,
    fds: Arc<proxy::FdBudget>,
    stop: CancellationToken,
    hard: CancellationToken,
    workers: Vec<JoinHandle<()>>,
) -> anyhow::Result<()> {
    // Handlers first: a SIGHUP before them would kill the process.
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;

    let process = Arc::new(Process::default());
    let checks_stop = CancellationToken::new();
    start_checks(&cfg, &pools, &process, &checks_stop)?;
    loop {
        tokio::select! {
            _ = hup.recv() => reload(path, &cfg, &pools, &fds, &process, &checks_stop),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    drain(&cfg, &pools, &mut term, &mut int, &stop, &hard, workers).await;
    checks_stop.cancel();
    tracing::info!("stopped");
    Ok(())
}

/// A health checker per backend, and the admin listener; all stop with `checks_stop`.
fn start_checks(
    cfg: &Config,
    pools: &[Arc<Pool>],
    process: &Arc<Process>,
    checks_stop: &CancellationToken,
) -> anyhow::Result<()> {
    for p in pools {
        for b in p.backends().iter() {
            tokio::spawn(health::run_checker(
                p.clone(),
                b.clone(),
                cfg.virtual_hostname.clone(),
                checks_stop.clone(),
            ));
        }
    }
    let admin = metrics::bind_admin(cfg.balancer.admin_listen)?;
    tokio::spawn(metrics::serve_admin(
        admin,
        pools.to_vec(),
        process.clone(),
        checks_stop.clone(),
    ));
    Ok(())
}

/// Close the listeners (`stop`) and wait for the workers' open connections to end, until
/// the drain timeout or a second SIGTERM/SIGINT; then close what is left (`hard`).
async fn drain(
    cfg: &Config,
    pools: &[Arc<Pool>],
    term: &mut Signal,
    int: &mut Signal,
    stop: &CancellationToken,
    hard: &CancellationToken,
    workers: Vec<JoinHandle<()>>,
) {
    tracing::info!(
        open = active_connections(pools),
        drain_timeout = ?cfg.balancer.drain_timeout,
        "stopping: listeners closed, draining open connections"
    );
    stop.cancel();
    let mut joins = tokio::task::spawn_blocking(move || {
        for w in workers {
            let _ = w.join();
        }
    });
    tokio::select! {
        _ = &mut joins => {}
        _ = tokio::time::sleep(cfg.balancer.drain_timeout) => {
            tracing::warn!(open = active_connections(pools), "drain timeout: closing the remaining connections");
        }
        _ = term.recv() => tracing::warn!("second SIGTERM: closing the remaining connections"),
        _ = int.recv() => tracing::warn!("second SIGINT: closing the remaining connections"),
    }
    hard.cancel();
    if !joins.is_finished() {
        let _ = joins.await;
    }
}

/// SIGHUP: re-read the file; new weights, nodes and settings apply to new connections, open
/// ones are untouched. An invalid file is refused and the running config stays.
fn reload(
    path: &Path,
    running: &Config,
    pools: &[Arc<Pool>],
    fds: &proxy::FdBudget,
    process: &Process,
    checks_stop: &CancellationToken,
) {
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            process.reload_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!("reload refused, the running configuration stays: {e:#}");
            return;
        }
    };
    let (old, new) = (&running.balancer, &cfg.balancer);
    if old.listen_address != new.listen_address
        || old.admin_listen != new.admin_listen
        || old.threads != new.threads
    {
        tracing::warn!("listen_address, admin_listen and threads change only on restart");
    }
    for s in &new.services {
        match pools.iter().find(|p| p.name == s.name && p.port == s.port) {
            Some(p) => {
                for b in p.apply(&cfg, s) {
                    tracing::info!(service = %p.name, backend = %b.node, address = %b.addr, "backend added");
                    tokio::spawn(health::run_checker(
                        p.clone(),
                        b,
                        cfg.virtual_hostname.clone(),
                        checks_stop.clone(),
                    ));
                }
            }
            None => {
                tracing::warn!(service = %s.name, port = s.port, "new service: its listener starts on restart")
            }
        }
    }
    for p in pools {
        if !new
            .services
            .iter()
            .any(|s| s.name == p.name && s.port == p.port)
        {
            tracing::warn!(service = %p.name, port = p.port, "service removed from the file: still served until restart");
        }
    }
    // A changed max_connections changes the shares.
    share_descriptors(pools, fds);
    process.reloads.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        path = %path.display(),
        nodes = cfg.nodes.len(),
        "reloaded: new connections use the new weights and nodes"
    );
}
