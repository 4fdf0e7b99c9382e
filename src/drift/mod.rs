//! The drift checker (`vipcert check`): does every node hold the right, current, safe
//! certificate? Findings {node, lineage, check, severity, detail} in a fixed order, modelled
//! on cert-manager's policy chain, the four outputs monitoring reads (text, JSON, Nagios,
//! Prometheus textfile) and the fleet page for people (HTML).
//!
//! Owns the `CheckOptions` of a run and `run` (local or fleet, then render). The parts: the
//! `CheckReport` (`report`), the finding vocabulary (`finding`), the policy chain, one step
//! per check, and the store's and the lease's findings (`policy`, whose certificate checks are
//! THE verification policy, `crate::verify`), the network findings (`remote`), a node's files
//! (`local`), the store (`store_view`), the fleet requests (`fleet`) and the renderings
//! (`output`; the HTML page: `html`). The parts import each other as siblings, never this
//! file. It does not install or repair anything (`install`), and it never reads or sends key
//! material: only "does the key belong to the certificate" leaves a node.
//!
//! Drift is data, not an error: a missing file or an unreachable node is a finding; only a
//! broken config or an unreadable shared directory root is an error.

mod finding;
mod fleet;
mod html;
mod local;
mod output;
mod policy;
mod remote;
mod report;
mod store_view;

pub(crate) use fleet::fetch_status;
pub(crate) use local::{observe_node, Trust};
pub use output::failed;
pub(crate) use policy::parse_threshold;
pub use report::Format;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use crate::config::{Config, Node};
use crate::plan::{Lineage, Plan};
use crate::store::Store;
use fleet::check_fleet;
use local::{observe, Ids};
use output::{exit_code, json, nagios, prometheus, text};
use policy::{clock_finding, lease_finding, store_findings, target_findings, Expected, Thresholds};
use report::{new_report, schedule, store_summary, CheckMode, CheckReport};
use store_view::read_stores;

/// What `vipcert check` was asked (main.rs builds it from the command line).
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Every node over the network instead of this node's files.
    pub fleet: bool,
    /// How to print the report.
    pub format: Format,
    /// Warn when less than this is left before notAfter (default: a third of the lifetime).
    pub warn: Option<Duration>,
    /// Critical when less than this is left (default: a sixth of the lifetime).
    pub crit: Option<Duration>,
    /// Prefix of the installed paths checked locally (default: [install] root).
    pub root: Option<PathBuf>,
    /// This node's name (default: the host name).
    pub node: Option<String>,
}

/// `vipcert check`: the report (this node's files, or every node with `fleet`) and its
/// rendering in `opts.format`, with the exit code.
pub async fn run(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    opts: &CheckOptions,
) -> Result<(String, u8)> {
    if let (Some(w), Some(c)) = (opts.warn, opts.crit) {
        anyhow::ensure!(
            c <= w,
            "--crit ({c:?}) must not be longer than --warn ({w:?})"
        );
    }
    let th = Thresholds {
        warn: opts.warn,
        crit: opts.crit,
    };
    let now = crate::store::now();
    let mut report = if opts.fleet {
        check_fleet(cfg, plan, store, th, now).await?
    } else {
        let node = cfg.this_node(opts.node.as_deref())?.clone();
        let root = opts
            .root
            .clone()
            .unwrap_or_else(|| cfg.install.root.clone());
        let (cfg2, plan2, store2) = (cfg.clone(), plan.clone(), store.clone());
        tokio::task::spawn_blocking(move || {
            check_local(&cfg2, &plan2, &store2, &node, &root, th, now)
        })
        .await??
    };
    let node = cfg.this_node(opts.node.as_deref()).ok();
    add_clock_findings(cfg, store, node, &mut report).await;
    Ok((
        render(&report, opts.format),
        exit_code(&report, opts.format),
    ))
}

/// This node's clock, whichever nodes were checked; in the fixed order, after the store's.
async fn add_clock_findings(cfg: &Config, store: &Store, node: Option<&Node>, r: &mut CheckReport) {
    let clock: Vec<_> = crate::clock::readings(cfg, store, cfg.check.timeout)
        .await
        .iter()
        .filter_map(|c| clock_finding(node.map(|n| n.hostname.as_str()), c))
        .collect();
    let at = r
        .findings
        .iter()
        .position(|f| f.check > finding::Check::Clock)
        .unwrap_or(r.findings.len());
    r.findings.splice(at..at, clock);
}

/// The report in `format`; text is coloured on a terminal unless NO_COLOR is set.
fn render(report: &CheckReport, format: Format) -> String {
    let color = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none();
    match format {
        Format::Text => text(report, color),
        Format::Json => json(report),
        Format::Nagios => nagios(report),
        Format::Prometheus => prometheus(report, true),
        Format::Html => html::page(report),
    }
}

/// Check this node's installed files (`check` without `--fleet`).
fn check_local(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    node: &Node,
    root: &Path,
    th: Thresholds,
    now: i64,
) -> anyhow::Result<CheckReport> {
    let mut r = new_report(CheckMode::Local, th, now);
    let targets = crate::plan::targets(cfg, root);
    let ids = Ids::load();
    let lineages: Vec<&Lineage> = plan.for_node(&node.hostname).collect();
    let names: Vec<String> = lineages.iter().map(|l| l.name.clone()).collect();
    let trust = Trust::load(cfg, store, &names)?;
    let views = read_stores(cfg, store, &trust, &lineages, now);
    for v in &views {
        r.findings.extend(store_findings(v, now));
        r.store.push(store_summary(v));
        r.schedules.push(schedule(v, now));
    }
    r.findings
        .extend(lease_finding(store, crate::lease::Timing::of(&cfg.renew)));
    for (l, v) in lineages.iter().zip(&views) {
        for t in &targets {
            let obs = observe(&l.name, t, &ids, &trust);
            let want = Expected {
                node,
                lineage: l,
                target: t,
                fullchain: cfg.install.fullchain,
                require_cn: cfg.acme.require_cn,
            };
            r.findings.extend(target_findings(&want, &obs, v, &th, now));
            r.add_installed(&node.hostname, &obs);
        }
    }
    Ok(r)
}
