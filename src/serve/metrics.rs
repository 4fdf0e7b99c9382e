//! The node server's metrics page — its families as a table, written by `crate::metrics` —
//! served on `[serve] metrics_listen` by `crate::scrape`, never on the public port.
//!
//! Owns the node server's metric names and labels (docs/monitoring.md lists them), not the
//! format (`crate::metrics`). It reads the counters (`counters`), the health verdict
//! (`routes::Health`) and the status document (`cache`); it changes nothing, and a scrape
//! costs the challenge route nothing: no lock it takes, no file read.

use super::budget::Refusal;
use super::cache::NodeServer;
use super::counters::{Batch, Challenge, Rationed};
use super::rations::OwnRoute;
use super::routes::Health;
use crate::install::watch::WatchRun;
use crate::metrics::{Exposition, Family};

const BUILD_INFO: Family = Family::gauge(
    "vipcert_build_info",
    "Always 1; the version label is the running vipcert's",
);
const CHALLENGES: Family = Family::counter(
    "vipcert_serve_challenge_requests_total",
    "HTTP-01 challenge requests by answer: result=\"served\" (200), \"not_found\" (404), \"unavailable\" (503: the webroot cannot be read or the share hangs)",
);
const BATCHES: Family = Family::counter(
    "vipcert_serve_batch_requests_total",
    "Readiness-barrier batch requests by answer: result=\"answered\" (200), \"bad_request\" (400), \"unavailable\" (503)",
);
const REFUSED: Family = Family::counter(
    "vipcert_serve_connections_refused_total",
    "New connections closed at once: reason=\"per_address\" (max_connections_per_address), \"full\" (max_connections, none idle)",
);
const EVICTED: Family = Family::counter(
    "vipcert_serve_connections_evicted_total",
    "Idle connections closed to make room for a new one (max_connections)",
);
const RATIONED: Family = Family::counter(
    "vipcert_serve_rationed_requests_total",
    "Requests to an own route over their address's share of monitor_rate: outcome=\"parked\" (answered at their turn), \"refused\" (connection closed)",
);
const HEALTHY: Family = Family::gauge(
    "vipcert_serve_healthy",
    "1 when the health route answers 200 (the shared directory lists and the webroot opens), else 0",
);
const WATCH: Family = Family::counter(
    "vipcert_serve_watch_installs_total",
    "Install runs of serve --watch: result=\"ok\", \"refused\" (a lineage refused or half-installed, or a hook failed), \"failed\" (could not run)",
);
const EXPIRATION: Family = Family::gauge(
    "vipcert_serve_certificate_expiration_timestamp_seconds",
    "notAfter of the certificate installed at each install target (as the status route reports it), unix seconds",
);

const ROUTES: [(OwnRoute, &str); 3] = [
    (OwnRoute::Status, "status"),
    (OwnRoute::Batch, "batch"),
    (OwnRoute::Other, "other"),
];

/// The page `/metrics` serves; `watch`: whether `serve --watch` runs (its family is written
/// only then).
pub(super) fn render(s: &NodeServer, watch: bool) -> String {
    let mut page = Exposition::default();
    page.family(&BUILD_INFO)
        .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1);
    let c = s.counters();
    let mut f = page.family(&CHALLENGES);
    for (k, l) in Challenge::ALL
        .into_iter()
        .zip(["served", "not_found", "unavailable"])
    {
        f.sample(&[("result", l)], c.challenges(k));
    }
    let mut f = page.family(&BATCHES);
    for (k, l) in Batch::ALL
        .into_iter()
        .zip(["answered", "bad_request", "unavailable"])
    {
        f.sample(&[("result", l)], c.batches(k));
    }
    let mut f = page.family(&REFUSED);
    for (r, l) in [
        (Refusal::PerAddress, "per_address"),
        (Refusal::Full, "full"),
    ] {
        f.sample(&[("reason", l)], c.refusals(r));
    }
    page.family(&EVICTED).sample(&[], c.evictions());
    let mut f = page.family(&RATIONED);
    for (route, r) in ROUTES {
        for (what, o) in Rationed::ALL.into_iter().zip(["parked", "refused"]) {
            f.sample(&[("route", r), ("outcome", o)], c.rations(route, what));
        }
    }
    let healthy = Health::of(s) == Health::Ok;
    page.family(&HEALTHY).sample(&[], u8::from(healthy));
    if watch {
        let mut f = page.family(&WATCH);
        for (r, l) in [
            (WatchRun::Ok, "ok"),
            (WatchRun::Refused, "refused"),
            (WatchRun::Failed, "failed"),
        ] {
            f.sample(&[("result", l)], c.watch_runs(r));
        }
    }
    let doc = s.status_doc();
    let mut f = page.family(&EXPIRATION);
    for t in &doc.targets {
        if let Some(leaf) = &t.leaf {
            f.sample(
                &[("lineage", &t.lineage), ("path", &t.cert.path)],
                leaf.not_after,
            );
        }
    }
    page.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::CertInfo;
    use crate::status::{FileFacts, Observation, Status};

    fn target(lineage: &str, path: &str, not_after: Option<i64>) -> Observation {
        Observation {
            lineage: lineage.into(),
            cert: FileFacts {
                path: path.into(),
                ..FileFacts::default()
            },
            key: FileFacts::default(),
            leaf: not_after.map(|not_after| CertInfo::valid_between("01", 0, not_after)),
            cert_error: None,
            chain: vec![],
            key_error: None,
            key_matches: None,
            verdicts: vec![],
        }
    }

    /// Every family, counted as the routes count, with the targets whose certificate read;
    /// `promtool check metrics` accepts the same page (tests/it/metrics.rs).
    #[test]
    fn the_page_names_each_count_and_each_installed_target() {
        let t = tempfile::tempdir().unwrap();
        let web = t.path().join("webroot");
        std::fs::create_dir(&web).unwrap();
        let s = NodeServer::new(web, t.path().to_path_buf(), || Status {
            node: "dtn1.example.org".into(),
            lineages: vec![],
            targets: vec![
                target(
                    "dtn1.example.org",
                    "/etc/grid-security/hostcert.pem",
                    Some(1_800_000_000),
                ),
                target(
                    "dtn1.example.org",
                    "/etc/grid-security/xrd/xrdcert.pem",
                    None,
                ),
            ],
        });
        s.counters().challenge(Challenge::Served);
        s.counters().refused(Refusal::Full);
        s.counters().rationed(OwnRoute::Batch, Rationed::Parked);
        let page = render(&s, false);
        let version = env!("CARGO_PKG_VERSION");
        for line in [
            format!("vipcert_build_info{{version=\"{version}\"}} 1"),
            "vipcert_serve_challenge_requests_total{result=\"served\"} 1".into(),
            "vipcert_serve_challenge_requests_total{result=\"unavailable\"} 0".into(),
            "vipcert_serve_batch_requests_total{result=\"bad_request\"} 0".into(),
            "vipcert_serve_connections_refused_total{reason=\"full\"} 1".into(),
            "vipcert_serve_connections_evicted_total 0".into(),
            "vipcert_serve_rationed_requests_total{route=\"batch\",outcome=\"parked\"} 1".into(),
            "vipcert_serve_healthy 1".into(),
            "vipcert_serve_certificate_expiration_timestamp_seconds{lineage=\"dtn1.example.org\",path=\"/etc/grid-security/hostcert.pem\"} 1800000000".into(),
        ] {
            assert!(page.lines().any(|l| l == line), "{line}\n{page}");
        }
        assert!(!page.contains("xrdcert.pem"), "{page}");
        assert!(!page.contains("vipcert_serve_watch"), "{page}");
        s.counters().watch_run(WatchRun::Refused);
        let page = render(&s, true);
        assert!(page.contains("vipcert_serve_watch_installs_total{result=\"refused\"} 1\n"));
        // The health route's verdict, as of now.
        std::fs::remove_dir(t.path().join("webroot")).unwrap();
        s.refresh_health();
        assert!(render(&s, false).contains("vipcert_serve_healthy 0\n"));
    }
}
