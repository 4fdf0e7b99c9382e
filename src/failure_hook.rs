//! `[notify] on_failure`: run the operator's programs when a lineage's failure count rises,
//! with what failed in their environment, each bounded in time and its output logged.
//!
//! Owns the hook environment (`env`, pure) and running the programs. It does not decide what
//! a failure is or when to retry (`attempts` counts it and schedules the next attempt), and
//! never fails the run it reports on: a broken notifier is logged, and the renewal's own exit
//! status still says what happened.

use crate::config::Notify;
use crate::store::fmt_time;

/// One failed attempt at a lineage, as the programs see it.
pub(crate) struct RenewalFailure<'a> {
    pub(crate) lineage: &'a str,
    /// The lineage's names, CN first.
    pub(crate) names: &'a [String],
    pub(crate) error: &'a str,
    /// Consecutive failures, this one included.
    pub(crate) failures: u32,
    /// Unix seconds of the next automatic attempt.
    pub(crate) next_attempt: i64,
    pub(crate) node: &'a str,
    /// The ACME directory URL.
    pub(crate) ca: &'a str,
}

/// The programs' environment: certbot's names for the lineage and its names, then ours.
pub(crate) fn env(f: &RenewalFailure) -> Vec<(&'static str, String)> {
    let domains = f.names.join(" ");
    vec![
        ("RENEWED_LINEAGE", f.lineage.to_string()),
        ("RENEWED_DOMAINS", domains.clone()),
        ("VIPCERT_EVENT", "renewal-failed".to_string()),
        ("VIPCERT_LINEAGE", f.lineage.to_string()),
        ("VIPCERT_DOMAINS", domains),
        ("VIPCERT_ERROR", f.error.to_string()),
        ("VIPCERT_FAILURES", f.failures.to_string()),
        ("VIPCERT_NEXT_ATTEMPT", fmt_time(f.next_attempt)),
        ("VIPCERT_NEXT_ATTEMPT_UNIX", f.next_attempt.to_string()),
        ("VIPCERT_NODE", f.node.to_string()),
        ("VIPCERT_CA", f.ca.to_string()),
    ]
}

/// Run every `on_failure` program once, one after the other; problems are logged only.
pub(crate) async fn on_failure(cfg: &Notify, f: &RenewalFailure<'_>) {
    let env = env(f);
    for prog in &cfg.on_failure {
        match crate::program::run(prog, &[], &env, cfg.timeout).await {
            Ok(out) => {
                tracing::info!(program = %prog.display(), lineage = f.lineage, output = %out, "notify on_failure ran")
            }
            Err(e) => {
                tracing::warn!(program = %prog.display(), lineage = f.lineage, "notify on_failure FAILED: {e}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_names_the_failure() {
        let names = vec!["v.example.org".to_string(), "a.example.org".to_string()];
        let f = RenewalFailure {
            lineage: "v.example.org",
            names: &names,
            error: "the CA said no",
            failures: 3,
            next_attempt: 0,
            node: "a.example.org",
            ca: "https://ca.example/dir",
        };
        let e = env(&f);
        let get = |k: &str| e.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("RENEWED_DOMAINS"), Some("v.example.org a.example.org"));
        assert_eq!(get("VIPCERT_FAILURES"), Some("3"));
        assert_eq!(get("VIPCERT_NEXT_ATTEMPT"), Some("1970-01-01T00:00:00Z"));
        assert_eq!(get("VIPCERT_ERROR"), Some("the CA said no"));
    }
}
