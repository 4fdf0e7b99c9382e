//! The installer's crash failpoint: `VIPCERT_TEST_CRASH_AFTER=N` makes the process SIGKILL
//! itself right after its N-th filesystem step of an install (journal write, temp create,
//! chown, rename, directory fsync, verification, each hook, journal removal, each step of a
//! links-mode switch). It exists so the crash-safety test can stop the installer at every
//! instant; it is read from the environment only, never from the config, and does nothing
//! when unset.
//!
//! Owns the step counter and the kill. It does not decide what a step is: each installer file
//! calls `step` right after each of its own writes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Environment variable of the crash failpoint (see the module documentation).
pub(crate) const CRASH_ENV: &str = "VIPCERT_TEST_CRASH_AFTER";

static STEPS: AtomicU64 = AtomicU64::new(0);

/// Count one filesystem step; die by SIGKILL when the failpoint says so.
pub(super) fn step(what: &str) {
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    let limit = *LIMIT.get_or_init(|| std::env::var(CRASH_ENV).ok()?.parse().ok());
    let n = STEPS.fetch_add(1, Ordering::SeqCst) + 1;
    if limit == Some(n) {
        eprintln!("{CRASH_ENV}: killing myself after step {n} ({what})");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        std::process::abort();
    }
}
