//! `vipcert status`: the renewal machinery at a glance. Per lineage its CA, profile and
//! account; the current version (serial, names, validity, share of the lifetime left); when
//! it renews and why (`renew`'s own decision from what the store holds: the cached ARI window
//! or the lifetime rule); the backoff (failures in a row, next attempt, last error); the last
//! success; revoked versions; with `--fleet`, each node's installed version and when it was
//! installed. Then the issuer lease and the timer's next run. As a table, or JSON (`--json`,
//! schema in docs/monitoring.md).
//!
//! Read only: nothing is written, the CA is asked nothing, keys are never read. The parts:
//! the report's types (`report`), the shared directory's reads (`gather`), the nodes' status
//! routes (`nodes`), systemd (`timer`) and the text (`text`); they import each other as
//! siblings, never this file.

mod gather;
mod nodes;
mod report;
mod text;
mod timer;

pub use report::StatusReport;

use anyhow::Result;

use crate::config::Config;
use crate::plan::Plan;
use crate::store::Store;

/// What `vipcert status` was asked.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatusOptions {
    /// Ask every node's status route what it has installed.
    pub fleet: bool,
}

/// Gather the report: the store (off the reactor: NFS reads can block), the nodes (with
/// `fleet`) and the timer, at once.
pub async fn run(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    opts: StatusOptions,
) -> Result<StatusReport> {
    store.require_root()?;
    let now = crate::store::now();
    let read = {
        let (cfg, plan, store) = (cfg.clone(), plan.clone(), store.clone());
        tokio::task::spawn_blocking(move || {
            let lineages: Vec<gather::Gathered> = plan
                .lineages
                .iter()
                .map(|l| gather::lineage(&cfg, &store, l, now, opts.fleet))
                .collect();
            (lineages, gather::lease(&store))
        })
    };
    let asked = async {
        if opts.fleet {
            Some(nodes::ask(cfg).await)
        } else {
            None
        }
    };
    let (read, answers, timer) = tokio::join!(read, asked, timer::next_run());
    let (gathered, lease) = read?;
    let lineages = gathered
        .into_iter()
        .map(|g| {
            let mut s = g.status;
            s.nodes = answers.as_ref().map(|a| {
                let v = nodes::Versions {
                    lineage: &s.lineage,
                    leaves: &g.versions,
                    current: g.current,
                };
                nodes::installs(plan, a, &v)
            });
            s
        })
        .collect();
    Ok(StatusReport {
        schema: report::SCHEMA,
        generated_at: now,
        fleet: opts.fleet,
        lineages,
        lease,
        timer,
    })
}

impl StatusReport {
    /// The table people read.
    pub fn text(&self) -> String {
        text::render(self)
    }

    /// The JSON document (schema 1, docs/monitoring.md), with a final newline.
    pub fn json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("the report serializes");
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::report::*;
    use super::*;

    const T: i64 = 1_800_000_000;

    /// A lineage with every field set; `ari` as given.
    fn lineage(ari: Ari, error: &str) -> LineageStatus {
        LineageStatus {
            lineage: "v.example.org".into(),
            names: vec!["v.example.org".into()],
            ca: CaView {
                directory: "https://ca/dir".into(),
                issued_by: Some("https://ca/dir".into()),
                profile: Some(String::new()),
                issued_profile: Some(String::new()),
            },
            account: AccountView {
                file: "/srv/vipcert/accounts/ca/account.json".into(),
                url: Some("https://ca/acct/1".into()),
                error: None,
            },
            current: Some(Current {
                version: 3,
                serial: "0a".into(),
                cn: Some("v.example.org".into()),
                names: vec!["v.example.org".into()],
                not_before: T - 86400,
                not_after: T + 89 * 86400,
                lifetime_left: 0.98,
                issued_at: T - 86400,
                issued_by: "dtn1".into(),
            }),
            current_error: None,
            renewal: Renewal {
                verdict: Verdict::NotDue,
                rule: Some(Rule::AriWindow),
                at: Some(T + 60 * 86400),
                window_end: Some(T + 61 * 86400),
                reason: "not due".into(),
            },
            ari,
            backoff: Backoff {
                failures: 2,
                next_attempt: Some(T + 600),
                last_attempt: Some(T),
                last_error: Some(error.into()),
            },
            last_success: Some(T - 86400),
            state_error: None,
            revoked: vec![RevokedVersion {
                version: 2,
                reason: Some("keyCompromise".into()),
                revoked_at: Some(T - 3600),
                by: Some("dtn1".into()),
                error: None,
            }],
            nodes: Some(vec![NodeInstall {
                node: "dtn1".into(),
                version: Some(3),
                current: true,
                serial: Some("0a".into()),
                installed_at: Some(T - 86000),
                error: None,
            }]),
        }
    }

    /// Reports that between them hold every variant of every tagged field.
    fn samples() -> Vec<StatusReport> {
        let report = |lease, timer| StatusReport {
            schema: report::SCHEMA,
            generated_at: T,
            fleet: true,
            lineages: vec![
                lineage(
                    Ari::Window {
                        start: T + 60 * 86400,
                        end: T + 61 * 86400,
                        fetched_at: Some(T - 60),
                        ask_again_after: Some(T + 21600),
                    },
                    "boom",
                ),
                lineage(
                    Ari::NotOffered {
                        checked_at: T,
                        ask_again_after: T + 86400,
                    },
                    "boom",
                ),
                lineage(Ari::NotAsked, "boom"),
            ],
            lease,
            timer,
        };
        vec![
            report(LeaseState::Free, TimerNext::At { at: T + 3600 }),
            report(
                LeaseState::Held {
                    node: "dtn1".into(),
                    host: "dtn1".into(),
                    pid: 42,
                    acquired_at: T,
                    expires_at: T + 30,
                },
                TimerNext::Said { text: "Fri".into() },
            ),
            report(
                LeaseState::Unreadable { error: "x".into() },
                TimerNext::Unknown { why: "x".into() },
            ),
        ]
    }

    /// The paths of every value that is not an object, `[]` for an array's elements.
    fn leaf_paths(v: &serde_json::Value, at: &str, out: &mut std::collections::BTreeSet<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let p = if at.is_empty() {
                        k.clone()
                    } else {
                        format!("{at}.{k}")
                    };
                    leaf_paths(v, &p, out);
                }
            }
            serde_json::Value::Array(a) if a.first().is_some_and(|e| e.is_object()) => {
                for e in a {
                    leaf_paths(e, &format!("{at}[]"), out);
                }
            }
            _ => {
                out.insert(at.to_string());
            }
        }
    }

    /// The field column of docs/monitoring.md's `vipcert status --json` table: "`a.b`, `.c`"
    /// is a.b and a.c.
    fn documented() -> std::collections::BTreeSet<String> {
        let doc = include_str!("../../docs/monitoring.md");
        let start = doc
            .find("### JSON (`vipcert status --json`), schema 1")
            .expect("the section");
        let section = &doc[start..];
        let section = &section[..section[4..].find("\n#").map_or(section.len(), |e| e + 4)];
        let mut out = std::collections::BTreeSet::new();
        for line in section.lines().filter(|l| l.starts_with("| `")) {
            let cell = line.split(" | ").next().unwrap().trim_start_matches("| ");
            let mut first = String::new();
            for name in cell.split(", ").map(|n| n.trim_matches('`')) {
                if let Some(rest) = name.strip_prefix('.') {
                    let base = first.rsplit_once('.').map_or("", |(b, _)| b);
                    out.insert(format!("{base}.{rest}"));
                } else {
                    first = name.to_string();
                    out.insert(first.clone());
                }
            }
        }
        out
    }

    /// Every field `--json` writes is in the documented table, and every documented field
    /// (but the containers) is written by one of the variants.
    #[test]
    fn every_json_field_is_documented_and_every_documented_field_exists() {
        let mut written = std::collections::BTreeSet::new();
        for r in samples() {
            let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
            leaf_paths(&v, "", &mut written);
        }
        let docs = documented();
        let undocumented: Vec<_> = written.difference(&docs).collect();
        assert!(
            undocumented.is_empty(),
            "not in docs/monitoring.md: {undocumented:?}"
        );
        // `lineages[]`, `lineages[].current`: rows for an object or an array of objects.
        let containers = |d: &&String| {
            let d = d.trim_end_matches("[]");
            written
                .iter()
                .any(|w| w.starts_with(&format!("{d}.")) || w.starts_with(&format!("{d}[]")))
        };
        let stale: Vec<_> = docs
            .difference(&written)
            .filter(|d| !containers(d))
            .collect();
        assert!(stale.is_empty(), "documented but never written: {stale:?}");
    }

    /// Text from shared files and other nodes cannot add a line of its own.
    #[test]
    fn the_table_escapes_what_it_did_not_write() {
        let mut r = samples().remove(1);
        r.lineages[0].backoff.last_error = Some("boom\nOK: all fine\u{1b}[32m".into());
        r.lineages[0].nodes.as_mut().unwrap()[0].node = "dtn1\nOK: node".into();
        if let LeaseState::Held { node, .. } = &mut r.lease {
            *node = "evil\rOK".into();
        }
        let t = r.text();
        assert!(!t.lines().any(|l| l.starts_with("OK")), "{t}");
        assert!(
            t.contains("  last error     boom\\nOK: all fine\\u{1b}[32m\n"),
            "{t}"
        );
        assert!(t.contains("held by evil\\rOK (host dtn1, pid 42)"), "{t}");
        assert!(!t.contains('\u{1b}'), "{t}");
    }
}
