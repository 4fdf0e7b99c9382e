//! The one integration-test binary (`cargo test --test it`): one module per area, all sharing
//! `common` (compiled once). Its tests are threads of one process, run in parallel (two per
//! core under scripts/test: they mostly wait): whatever one test binds, sets or raises is seen
//! by the others. So addresses come from the one table in `common::net`, environment goes to
//! child `Command`s (never `std::env::set_var`), tests that hold thousands of sockets take
//! `common::many_fds` before they open them, tests timed in seconds that must not run beside
//! those take `common::quiet`, and a test that keeps the CPU busy for its own sake runs at a
//! lower priority (`common::background`).

mod common;

mod acme_ca;
mod balancer;
mod balancer_fds;
mod bounds;
mod ca_bounds;
mod clock_skew;
mod cluster;
mod config;
mod dns01;
mod drift;
mod dry_run;
mod examples;
mod failover;
mod first_steps;
mod fleet_page;
mod gridftp;
mod init;
mod install;
mod install_crash;
mod issue;
mod lease;
mod lifecycle;
mod metrics;
mod named_ca;
mod nfs;
mod notify;
mod outcomes;
mod pair;
mod persist;
mod render;
mod renew_stub;
mod serve;
mod serve_abuse;
mod soak;
mod stale;
mod status;
mod systemd;
mod verify;
mod watch;
mod xrootd;
