//! The node server (`vipcert serve`): HTTP-01 challenge files from the shared webroot, a
//! health route for the balancer and a public status route for `check --fleet`, and what
//! runs beside them on every node: the webroot sweeper, the status and health refreshers,
//! SIGHUP, `serve --watch`'s installer, and the metrics page on `[serve] metrics_listen`.
//!
//! `run` owns a running server from start to shutdown: the open-file limit and the
//! connection limits that fit in it, the first look at the shared directory, the listeners,
//! the tasks and threads, and the drain. Each file is named for what it owns:
//! - `routes`  — the four routes and their answers; which requests skip the router
//! - `conn`    — listeners, accept loops, one HTTP/1.1 connection per socket (header size,
//!   count and timeout, lifetime), the challenge route's fast path, the drain at shutdown
//! - `budget`  — the connection budget: how many, how many per address, who is evicted
//! - `rations` — the request rate of the own routes (status, batch check, unknown paths)
//! - `host`    — the Host rule: which requests are a 400
//! - `token`   — reading a challenge file: the webroot descriptor cache (directory-relative,
//!   no-follow, single-link, size-capped reads) and where a read is done when the share hangs
//! - `cache`   — `NodeServer`: the status document and health verdict held in memory
//! - `counters` — what the server counts (relaxed atomics), for the metrics page
//! - `metrics` — the metrics page: the server's families, served by `crate::scrape`
//! - `observe` — what this node's status document says
//! - `sweep`   — removing stale challenge and probe files
//! - `hangup`  — what SIGHUP does
//!
//! It does not define the status document (`status`), write challenge files (the http-01
//! solver's `WebrootFile` does, for challenges and preflight's probes), say what a
//! challenge file is (its name pattern, size cap and age of staleness are the store's) or
//! install anything (`install`; `--watch` runs `install::watch`).
//!
//! Nothing on this port may make the challenge route wait: challenge files are read directly
//! (one small no-follow read, cheaper than a hop to a blocking pool), and the status document
//! is served from bytes refreshed at most once a second on its own thread.

mod budget;
mod cache;
mod conn;
mod counters;
mod hangup;
mod host;
mod metrics;
mod observe;
mod rations;
mod routes;
mod sweep;
mod token;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::plan::Plan;
use crate::store::Store;
use budget::ConnectionLimits;
use cache::NodeServer;

/// What `vipcert serve` is asked to do, beyond what the configuration says.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// This node's hostname, as the configuration names it: which lineages it reports on and
    /// installs.
    pub node: String,
    /// Prefix of every install path (`--root`, else `[install] root`).
    pub root: PathBuf,
    /// The addresses to listen on; empty: `[serve] listen`.
    pub listen: Vec<SocketAddr>,
    /// Also install every new `current` as it appears (`--watch`).
    pub watch: bool,
    /// The file `cfg` was loaded from: SIGHUP says whether it changed since the start.
    pub config_file: PathBuf,
}

/// Run this node's server until `shutdown` is cancelled (SIGINT, SIGTERM), then let open
/// connections finish for a moment and the installer (`--watch`) end its run. Fails only at
/// start: a signal handler, a listener or the refresher threads that cannot be set up.
pub async fn run(cfg: &Config, opts: ServeOptions, shutdown: CancellationToken) -> Result<()> {
    // Handled first: SIGHUP's default action would end the server without a word.
    let hup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
    let started = std::fs::read(&opts.config_file).unwrap_or_default();
    let plan = Plan::new(cfg)?;
    let store = Store::new(&cfg.shared_dir);
    let listen = if opts.listen.is_empty() {
        cfg.serve.listen.clone()
    } else {
        opts.listen.clone()
    };
    let limits = connection_limits(cfg);
    // The node server starts without its share (health answers 503 until it is mounted) and
    // never creates shared_dir itself.
    if let Err(e) = store.init() {
        tracing::warn!(error = %format!("{e:#}"), "shared directory not ready");
    }
    tokio::spawn(sweep::sweep_loop(store.clone(), shutdown.clone()));
    let listeners = conn::bind(&listen).await?;
    let server = NodeServer::for_node(cfg, &plan, &opts.node, &opts.root);
    server
        .spawn_status_refresher(shutdown.clone())
        .context("cannot start the status refresher thread")?;
    tokio::spawn(hangup::hangup_loop(
        hup,
        server.clone(),
        opts.config_file.clone(),
        started,
        shutdown.clone(),
    ));
    tracing::info!(node = %opts.node, listen = ?listen, webroot = %store.webroot_path().display(), "serving");
    if let Some(addr) = cfg.serve.metrics_listen {
        spawn_metrics(addr, &server, opts.watch, shutdown.clone()).await?;
    }
    let watcher = opts
        .watch
        .then(|| spawn_watch(cfg, plan, &opts, &server, shutdown.clone()));
    conn::serve(listeners, &server, limits, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(w) = watcher {
        let _ = w.await;
    }
    Ok(())
}

/// `[serve]`'s connection limits, lowered to fit the open-file limit (raised first as far as
/// the hard limit allows), with a warning when they had to be.
fn connection_limits(cfg: &Config) -> ConnectionLimits {
    let nofile = crate::limits::raise_nofile();
    let (limits, lowered) = ConnectionLimits::of(&cfg.serve).within_nofile(nofile);
    if lowered {
        tracing::warn!(
            open_file_limit = nofile,
            max_connections = limits.max_connections(),
            "[serve] max_connections lowered to fit the open-file limit; raise LimitNOFILE (or the hard `ulimit -n`) to hold more"
        );
    }
    limits
}

/// The metrics page on `addr` (`[serve] metrics_listen`), on a task of its own until
/// `shutdown`; fails when `addr` cannot be bound.
async fn spawn_metrics(
    addr: SocketAddr,
    server: &NodeServer,
    watch: bool,
    shutdown: CancellationToken,
) -> Result<()> {
    let listener = conn::bind(&[addr])
        .await
        .context("[serve] metrics_listen")?
        .remove(0);
    tracing::info!(metrics = %addr, "metrics at http://{addr}/metrics");
    let server = server.clone();
    let page = move || metrics::render(&server, watch);
    tokio::spawn(crate::scrape::serve(listener, page, shutdown));
    Ok(())
}

/// `serve --watch`: install every new `current` of this node's lineages, on a task of its own
/// until `shutdown`; each install run is counted in `server`'s counters.
fn spawn_watch(
    cfg: &Config,
    plan: Plan,
    opts: &ServeOptions,
    server: &NodeServer,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let counted = server.clone();
    let o = crate::install::watch::WatchOptions {
        node: opts.node.clone(),
        root: opts.root.clone(),
        mode: cfg.serve.watch,
        interval: cfg.serve.watch_interval,
        on_install: Some(std::sync::Arc::new(move |run| {
            counted.counters().watch_run(run)
        })),
    };
    tokio::spawn(crate::install::watch::run(cfg.clone(), plan, o, shutdown))
}
