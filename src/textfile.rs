//! The node_exporter textfile an issuing run leaves when `[renew] metrics_file` is set: when
//! the run ended on this node and whether it succeeded, and per lineage what the shared
//! directory says after it — the last success, the failures in a row, the next attempt of a
//! backoff, the current certificate's notAfter and when renew renews it.
//!
//! Owns the file's families (docs/monitoring.md lists them) and writing it: a temporary file
//! in the same directory, renamed over the old one (node_exporter reads only `*.prom`, so it
//! never reads half a file), mode 0644. The real issuing pipeline (`pipeline::run`: `issue`,
//! `renew`, `revoke --reissue`) calls [`after_run`] once at its end; a dry run never does. A
//! file that cannot be written is a warning, never the run's failure: the run is about the
//! certificates. It decides nothing: the next renewal is renew's schedule (`renew::renews_at`)
//! and everything else is read from the store.

use std::path::Path;

use crate::cert::CertInfo;
use crate::config::Config;
use crate::metrics::{Exposition, Family};
use crate::plan::Plan;
use crate::schedule::RenewsAt;
use crate::store::{State, Store};

const LAST_RUN: Family = Family::gauge(
    "vipcert_renew_last_run_timestamp_seconds",
    "When an issuing run (issue, renew, revoke --reissue) last ended on this node, unix seconds",
);
const LAST_RUN_SUCCESS: Family = Family::gauge(
    "vipcert_renew_last_run_success",
    "1 when that run's orders and this node's install succeeded, else 0",
);
const LAST_SUCCESS: Family = Family::gauge(
    "vipcert_renew_last_success_timestamp_seconds",
    "When the lineage was last issued or renewed (by any node), unix seconds",
);
const FAILURES: Family = Family::gauge(
    "vipcert_renew_consecutive_failures",
    "Failed attempts at the lineage since its last success (state/<lineage>.json)",
);
const NEXT_ATTEMPT: Family = Family::gauge(
    "vipcert_renew_next_attempt_timestamp_seconds",
    "Backing off after a failure: renew tries the lineage again from this moment (the backoff or the CA's Retry-After), unix seconds",
);
const EXPIRATION: Family = Family::gauge(
    "vipcert_certificate_expiration_timestamp_seconds",
    "notAfter of store/<lineage>/current, unix seconds",
);
const RENEWAL: Family = Family::gauge(
    "vipcert_certificate_renewal_timestamp_seconds",
    "When renew renews store/<lineage>/current by itself (the start of the CA's ARI window, else the lifetime rule's moment), unix seconds",
);

/// What the store says about one lineage after a run (each part None when it cannot be read).
struct Lineage<'a> {
    name: &'a str,
    state: Option<State>,
    leaf: Option<CertInfo>,
}

/// At the end of an issuing run that ended at `at` (unix seconds), successful or not (`ok`):
/// write `[renew] metrics_file`, if set. A failure is logged as a warning and nothing more.
pub(crate) fn after_run(cfg: &Config, plan: &Plan, store: &Store, at: i64, ok: bool) {
    let Some(path) = &cfg.renew.metrics_file else {
        return;
    };
    let lineages: Vec<Lineage> = plan.lineages.iter().map(|l| read(store, &l.name)).collect();
    if let Err(e) = write(path, &render(&lineages, at, ok)) {
        tracing::warn!(
            file = %path.display(),
            "cannot write [renew] metrics_file: {e}; the run itself is not affected (does node_exporter's textfile directory exist, and may this user write it?)"
        );
    }
}

/// Lineage `name` as the store holds it; what cannot be read is left out of the file (the run
/// has said why).
fn read<'a>(store: &Store, name: &'a str) -> Lineage<'a> {
    let state = store
        .read_state(name)
        .map_err(|e| tracing::debug!(lineage = name, "metrics_file: state unreadable: {e:#}"))
        .ok();
    let leaf = crate::schedule::current_leaf(store, name)
        .map_err(|e| tracing::debug!(lineage = name, "metrics_file: current unreadable: {e:#}"))
        .ok()
        .flatten()
        .map(|(_, leaf)| leaf);
    Lineage { name, state, leaf }
}

/// The file's text.
fn render(lineages: &[Lineage], at: i64, ok: bool) -> String {
    let mut page = Exposition::default();
    page.family(&LAST_RUN).sample(&[], at);
    page.family(&LAST_RUN_SUCCESS).sample(&[], u8::from(ok));
    type Get = fn(&Lineage) -> Option<i64>;
    let per_lineage: [(&Family, Get); 5] = [
        (&LAST_SUCCESS, |l| {
            l.state.as_ref()?.last_success.map(|t| t.get())
        }),
        (&FAILURES, |l| {
            l.state.as_ref().map(|s| i64::from(s.failures))
        }),
        (&NEXT_ATTEMPT, |l| {
            l.state.as_ref()?.next_attempt.map(|t| t.get())
        }),
        (&EXPIRATION, |l| l.leaf.as_ref().map(|c| c.not_after)),
        (&RENEWAL, |l| {
            let c = l.leaf.as_ref()?;
            let st = l.state.clone().unwrap_or_default();
            Some(renewal_time(c, &st))
        }),
    ];
    for (family, get) in per_lineage {
        let mut f = page.family(family);
        for l in lineages {
            if let Some(v) = get(l) {
                f.sample(&[("lineage", l.name)], v);
            }
        }
    }
    page.finish()
}

/// When `renew` renews certificate `c` by itself, by its own schedule (`renew::renews_at`):
/// the start of the CA's window cached in `st` — at the latest notAfter, as `decide` renews an
/// expired certificate whatever a window says — else the lifetime rule's moment.
fn renewal_time(c: &CertInfo, st: &State) -> i64 {
    match crate::schedule::renews_at(c, st) {
        RenewsAt::Ari { start, .. } => start.min(c.not_after),
        RenewsAt::Lifetime { from, .. } => from,
    }
}

/// Replace the file at `path` with `text`: a temporary file in its directory, renamed over
/// it. The directory is node_exporter's (its package makes it): never created here.
fn write(path: &Path, text: &str) -> std::io::Result<()> {
    let (dir, name) =
        crate::safefs::split_path(path).ok_or_else(|| std::io::Error::other("not a file path"))?;
    crate::safefs::Dir::open(dir)?.replace(name, text.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unixtime::UnixTime;

    const DAY: i64 = 86400;

    fn leaf(not_before: i64, days: i64) -> CertInfo {
        CertInfo::valid_between("0a", not_before, not_before + days * DAY)
    }

    const T0: i64 = 1_800_000_000;

    /// A renewed lineage, one backing off with an ARI window cached for its certificate, and
    /// one the store knows nothing of.
    fn three_lineages() -> [Lineage<'static>; 3] {
        let ok = State {
            last_success: Some(UnixTime::new(T0)),
            ..State::default()
        };
        let backing_off = State {
            failures: 3,
            next_attempt: Some(UnixTime::new(T0 + 6000)),
            last_success: Some(UnixTime::new(T0 - 60 * DAY)),
            ari_serial: Some("0a".into()),
            ari_start: Some(UnixTime::new(T0 - DAY)),
            ari_end: Some(UnixTime::new(T0 + DAY)),
            ..State::default()
        };
        [
            Lineage {
                name: "a.example.org",
                state: Some(ok),
                leaf: Some(leaf(T0, 90)),
            },
            Lineage {
                name: "b.example.org",
                state: Some(backing_off),
                leaf: Some(leaf(T0 - 60 * DAY, 90)),
            },
            Lineage {
                name: "c\"new\"",
                state: None,
                leaf: None,
            },
        ]
    }

    /// Each family holds what the store says of each lineage, nothing for what it lacks.
    #[test]
    fn each_lineage_says_what_the_store_holds() {
        let (t0, lineages) = (T0, three_lineages());
        let text = render(&lineages, t0 + 5, false);
        let want = [
            "vipcert_renew_last_run_timestamp_seconds 1800000005".to_string(),
            "vipcert_renew_last_run_success 0".into(),
            format!(
                "vipcert_renew_last_success_timestamp_seconds{{lineage=\"a.example.org\"}} {t0}"
            ),
            "vipcert_renew_consecutive_failures{lineage=\"a.example.org\"} 0".into(),
            "vipcert_renew_consecutive_failures{lineage=\"b.example.org\"} 3".into(),
            format!(
                "vipcert_renew_next_attempt_timestamp_seconds{{lineage=\"b.example.org\"}} {}",
                t0 + 6000
            ),
            format!(
                "vipcert_certificate_expiration_timestamp_seconds{{lineage=\"a.example.org\"}} {}",
                t0 + 90 * DAY
            ),
            // The lifetime rule: a third of 90 days before notAfter.
            format!(
                "vipcert_certificate_renewal_timestamp_seconds{{lineage=\"a.example.org\"}} {}",
                t0 + 60 * DAY
            ),
            // The cached ARI window of this very certificate: its start.
            format!(
                "vipcert_certificate_renewal_timestamp_seconds{{lineage=\"b.example.org\"}} {}",
                t0 - DAY
            ),
        ];
        for line in want {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
        assert_eq!(
            text.matches("next_attempt_timestamp_seconds{").count(),
            1,
            "{text}"
        );
        assert!(
            !text.contains("c\\\"new"),
            "nothing known, nothing written: {text}"
        );
    }

    /// The renewal time is the first moment renew's `decide` says "due" (no plan change, no
    /// jitter, no backoff): the lifetime rule's, a cached window's start, or notAfter when a
    /// window starts after it; a window cached for another certificate is not this one's.
    #[test]
    fn the_renewal_time_is_when_decide_first_says_due() {
        let window = |serial: &str, start: i64| State {
            ari_serial: Some(serial.into()),
            ari_start: Some(UnixTime::new(start)),
            ari_end: Some(UnixTime::new(start + 2 * DAY)),
            ..State::default()
        };
        let (c, short) = (leaf(0, 90), leaf(0, 6));
        for (c, st, at) in [
            (&c, State::default(), 60 * DAY),
            (&short, State::default(), 3 * DAY),
            (&c, window("0a", 10 * DAY), 10 * DAY),
            (&c, window("0b", 10 * DAY), 60 * DAY),
            (&c, window("0a", 95 * DAY), 90 * DAY),
        ] {
            assert_eq!(renewal_time(c, &st), at);
            let w = crate::schedule::cached_window(Some(c), &st);
            let due = |t| crate::schedule::decide(t, Some(c), &st, None, w, false, 0.0);
            assert!(matches!(due(at), crate::schedule::Due::Yes { .. }), "{at}");
            assert!(matches!(due(at - 1), crate::schedule::Due::No(_)), "{at}");
        }
    }

    /// Written whole under its name, mode 0644, over the old file; a missing directory is an
    /// error for the caller to log, and nothing is created.
    #[test]
    fn written_atomically_with_mode_0644() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("vipcert-renew.prom");
        std::fs::write(&path, "old").unwrap();
        write(&path, "x 1\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x 1\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o644);
        let names: Vec<_> = std::fs::read_dir(t.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
        let gone = t.path().join("missing").join("vipcert-renew.prom");
        assert!(write(&gone, "x 1\n").is_err());
        assert!(!t.path().join("missing").exists());
    }
}
