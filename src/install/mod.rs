//! `vipcert install`: put the store's current pair of each lineage of this node at every
//! install target, with the configured owner, group and mode, crash-safely, then run the
//! reload commands and deploy hooks once; and `serve --watch`, which runs that install each
//! time `current` moves.
//!
//! Owns the target-side rules docs/operations.md states ("`vipcert install`", "The
//! verification policy", "The intent journal, and crashes", "Hooks"): verify the store version
//! before touching anything; reach every target directory from the install root without
//! following a symlink and refuse, before any write, targets that cannot be replaced; write
//! files under a temporary name with their final mode and owner and rename them in cert before
//! key (files mode), or switch one directory link per pair (links mode); an intent journal next
//! to the targets so an interrupted run is completed (files and hooks) by the next one; a
//! report that says exactly which targets changed when a run fails part way; hooks only after
//! the pair is in place and verified, and only when something changed. It does not decide
//! which version is current (`store`, `renew`, `rollback`).
//!
//! One file per step or part, each saying what it owns:
//! - `flow`      — `run`: every lineage through verify → journal → place, then the hooks
//! - `pair`      — verify: the store version read and checked by THE policy (`verify`)
//! - `journal`   — the intent journal and the per-host installer lock
//! - `slots`     — the targets opened (no-follow) and checked before any write
//! - `place`     — compare, write (files mode) or switch (links mode), read back
//! - `links`     — `[install] mode = "links"`: targets as symlinks into versioned directories
//! - `hooks`     — reload commands and deploy hooks, and their typed failures
//! - `owners`    — owner and group names to ids (/etc/passwd, /etc/group)
//! - `report`    — what a run did (`InstallReport`), for people and for the exit status
//! - `failpoint` — `VIPCERT_TEST_CRASH_AFTER`: the crash test's kill switch
//! - `watch`     — `serve --watch`: notice a new `current` (inotify or polling), run `flow::run`
//!
//! This file only declares and re-exports: the files import each other, never their parent
//! (`watch` → `flow` → the steps; the steps → `pair`, `slots`, `failpoint`; `slots` → `links`;
//! `report` → `hooks`).

mod failpoint;
mod flow;
mod hooks;
mod journal;
pub(crate) mod links;
mod owners;
mod pair;
mod place;
mod report;
mod slots;
pub mod watch;

pub use flow::run;
pub(crate) use owners::{gid_of, id_entries, uid_of};
pub(crate) use pair::{verified_pair, verified_version};
pub use report::InstallReport;
