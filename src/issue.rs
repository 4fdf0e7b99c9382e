//! The issue flow: lease → preflight → per CA group (`[acme]` with its fallbacks, then each
//! `[[acme.ca]]` whose lineages are due): account → its profile checked against the CA's offer
//! → one order per lineage (concurrently, each CA in turn: place → solvers present → their
//! barrier → pre_validation → set ready → poll → post_validation → finalize → solvers clean
//! up) → verify → publish → clean up → release.
//!
//! In a dry run (`Mode::DryRun`) the last step is verify → discard: nothing is written to
//! store/ or state/.
//!
//! Owns the order of those steps (the CA's, `acme`'s, around the solvers', `solve`'s, and
//! the validation hooks), what happens on each failure path (nothing published, what the
//! solvers placed removed, lease released), and its outcome
//! per lineage (`IssueOutcome`). It does not decide *whether* a lineage is due (`renew` passes
//! `only`), does not record failed attempts nor install (`pipeline` does both after this
//! flow), and does not speak ACME (`acme::PlacedOrder`'s steps do).

use std::fmt;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use futures_util::future::join_all;
use instant_acme::{Account, CertificateIdentifier};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::lease::{Holder, Lease, LeaseError, Timing};
use crate::plan::{Lineage, Plan};
use crate::progress::Progress;
use crate::store::{fmt_time, format_version, now, Meta, Store};

/// What `vipcert issue` (or `renew`, for the lineages due) asks of the issue flow.
pub struct IssueOptions {
    /// Order even if `current` already holds a certificate for the planned names.
    pub force: bool,
    /// This node's hostname (lease holder, meta.issued_by).
    pub node: String,
    /// Restrict to these lineages, each with an optional ARI `replaces` identifier.
    pub only: Option<Vec<(String, Option<CertificateIdentifier<'static>>)>>,
    /// Order a lineage only if, once the lease is held, store/<lineage>/current still is this
    /// version (`renew`: another node may have renewed between the due decision and the lease).
    pub if_current: Option<Vec<(String, Option<u32>)>>,
    /// What becomes of what the CA issued: published, or verified and discarded.
    pub mode: Mode,
}

/// What the flow does with a certificate the CA issued, once it passes verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Publish it as the lineage's next version (and record the success in state/).
    Publish,
    /// A dry run (`--dry-run`): discard it. The lease, preflight, the order with its real
    /// validation and the verification run as for `Publish`; store/ and state/ are not
    /// written. The config is the staging one (`Config::staging`).
    DryRun,
}

/// What happened to one lineage.
#[derive(Debug)]
pub enum LineageResult {
    /// Published as this version.
    Published {
        /// The new version number in store/<lineage>/.
        version: u32,
        /// The certificate's serial, lower-case hex.
        serial: String,
        /// notAfter, unix seconds.
        not_after: i64,
        /// What failed after `current` flipped (e.g. recording the success in state/): said,
        /// never a failure, since the certificate is published.
        warnings: Vec<String>,
    },
    /// A dry run: issued, passed verification, and discarded.
    Verified {
        /// The certificate's serial, lower-case hex.
        serial: String,
        /// notAfter, unix seconds.
        not_after: i64,
    },
    /// `current` already matches the plan and `--force` was not given.
    Skipped {
        /// The current version, which already holds the planned names.
        version: u32,
    },
    /// The order or publish failed, and why. Shared: a failure of the whole run (preflight,
    /// no CA reachable) is every lineage's.
    Failed(Arc<anyhow::Error>),
}

/// What one `issue` run did.
#[derive(Debug)]
pub enum IssueOutcome {
    /// The lease was ours: the result per lineage.
    Done(Vec<(String, LineageResult)>),
    /// Another node holds the lease.
    InProgress(Holder),
}

impl IssueOutcome {
    /// Nothing failed (another node holding the lease is not a failure).
    pub fn ok(&self) -> bool {
        match self {
            IssueOutcome::Done(v) => v
                .iter()
                .all(|(_, r)| !matches!(r, LineageResult::Failed(_))),
            IssueOutcome::InProgress(_) => true,
        }
    }
}

/// Every lineage of `names` failed with the same `e` (the run stopped before any order).
pub(crate) fn all_failed(
    names: impl IntoIterator<Item = String>,
    e: anyhow::Error,
) -> Vec<(String, LineageResult)> {
    let e = Arc::new(e);
    names
        .into_iter()
        .map(|n| (n, LineageResult::Failed(e.clone())))
        .collect()
}

impl fmt::Display for IssueOutcome {
    /// What happened, for the terminal: a line per lineage.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = match self {
            IssueOutcome::InProgress(h) => {
                return writeln!(
                    f,
                    "renewal in progress on {} (pid {}); nothing to do here",
                    crate::escape::escape(&h.node),
                    h.pid
                );
            }
            IssueOutcome::Done(v) => v,
        };
        for (l, r) in v {
            match r {
                LineageResult::Published {
                    version,
                    serial,
                    not_after,
                    warnings,
                } => writeln!(
                    f,
                    "{l}: issued version {} (serial {serial}, valid until {}){}",
                    format_version(*version),
                    fmt_time(*not_after),
                    warning_lines(l, warnings)
                )?,
                LineageResult::Verified { serial, not_after } => {
                    writeln!(f, "{l}: {}", verified_words(serial, *not_after))?
                }
                LineageResult::Skipped { version } => writeln!(
                    f,
                    "{l}: already issued (version {}); use --force to order again",
                    format_version(*version)
                )?,
                LineageResult::Failed(e) => writeln!(f, "{l}: FAILED: {e:#}")?,
            }
        }
        Ok(())
    }
}

/// What a dry run says of a lineage whose certificate passed verification.
pub(crate) fn verified_words(serial: &str, not_after: i64) -> String {
    format!(
        "dry run: issued by the staging CA and verified (serial {serial}, valid until {}), then discarded",
        fmt_time(not_after)
    )
}

/// The warnings of a published lineage, each on a line of its own after the success line.
pub(crate) fn warning_lines(lineage: &str, warnings: &[String]) -> String {
    warnings
        .iter()
        .map(|w| format!("\n{lineage}: warning: {w}"))
        .collect()
}

/// Does `current` already hold a certificate for exactly the planned names, good to install?
fn already_issued(cfg: &Config, store: &Store, l: &Lineage) -> Option<u32> {
    match crate::install::verified_pair(cfg, store, l) {
        Ok(p) => p.map(|p| p.version),
        // An unreadable or wrong current version is replaced by a new one.
        Err(e) => {
            tracing::warn!(lineage = %l.name, error = %format!("{e:#}"), "current version unusable; ordering anew");
            None
        }
    }
}

/// Run the flow. Per-lineage failures are reported in the outcome; errors that stop the whole
/// flow before any order (config, lease I/O, preflight, account) are returned as `Err`.
pub async fn run(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    opts: &IssueOptions,
) -> Result<IssueOutcome> {
    store.init()?;
    let mut lease = match take_lease(cfg, store, &opts.node).await? {
        Ok(l) => l,
        Err(h) => return Ok(IssueOutcome::InProgress(h)),
    };
    // A killed run's challenge and probe files: swept before this run writes its own.
    if let Err(e) = store.sweep_webroot(crate::store::STALE_CHALLENGE, crate::store::valid_token) {
        tracing::warn!(error = %format!("{e:#}"), "cannot sweep the webroot");
    }
    // And its TXT records, once for all of this run's orders.
    if let Err(e) = crate::solve::dns01::sweep(cfg, store).await {
        tracing::warn!(error = %format!("{e:#}"), "cannot sweep the DNS-01 ledger");
    }
    let res = run_locked(cfg, plan, store, opts, &mut lease).await;
    lease.release_or_log();
    res
}

/// The issuer lease, or the node that holds it; an error names the lease file and what to do.
async fn take_lease(cfg: &Config, store: &Store, node: &str) -> Result<Result<Lease, Holder>> {
    // Watching a lease held elsewhere blocks for up to three refresh intervals.
    let (s, node, timing) = (store.clone(), node.to_string(), Timing::of(&cfg.renew));
    let acquired = tokio::task::spawn_blocking(move || Lease::acquire(&s, &node, timing))
        .await
        .context("the lease task")?;
    match acquired {
        Ok(l) => Ok(Ok(l)),
        Err(LeaseError::Held(h)) => Ok(Err(*h)),
        Err(LeaseError::Other(e)) => {
            let file = store.locks_path().join(crate::lease::LEASE);
            let advice = e
                .chain()
                .find_map(|c| c.downcast_ref::<std::io::Error>())
                .and_then(crate::fs_error::advice)
                .map(|a| format!(" — {a}"))
                .unwrap_or_default();
            bail!(
                "cannot take the issuer lease {}: {e:#}{advice}",
                file.display()
            );
        }
    }
}

/// The flow once the lease is held: pick the lineages, order them, publish.
async fn run_locked(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    opts: &IssueOptions,
    lease: &mut Lease,
) -> Result<IssueOutcome> {
    let mut results: Vec<(String, LineageResult)> = Vec::new();
    let mut todo: Vec<Todo> = Vec::new();
    for l in &plan.lineages {
        match pick(cfg, store, opts, l)? {
            Pick::Order(replaces) => todo.push((l, replaces)),
            Pick::Done(r) => results.push((l.name.clone(), r)),
            Pick::NotAsked => {}
        }
    }
    if todo.is_empty() {
        return Ok(IssueOutcome::Done(results));
    }
    let names: Vec<String> = todo.iter().map(|(l, _)| l.name.clone()).collect();
    match order_all(cfg, plan, store, opts, lease, todo).await {
        Ok(v) => results.extend(v),
        // Preflight failed, the lease was lost, or no CA could be reached: every lineage this
        // run was to order failed, with the same error (each records it and tells the hook).
        Err(e) => results.extend(all_failed(names, e)),
    }
    Ok(IssueOutcome::Done(results))
}

/// What `pick` makes of one planned lineage.
enum Pick {
    /// Order it, with this ARI `replaces`.
    Order(Option<CertificateIdentifier<'static>>),
    /// Not ordered, with this result (skipped, or refused before ordering).
    Done(LineageResult),
    /// Not among the lineages asked for.
    NotAsked,
}

/// Whether lineage `l` is to be ordered in this run, now that the lease is held.
fn pick(cfg: &Config, store: &Store, opts: &IssueOptions, l: &Lineage) -> Result<Pick> {
    let replaces = match &opts.only {
        Some(only) => match only.iter().find(|(n, _)| *n == l.name) {
            Some((_, r)) => r.clone(),
            None => return Ok(Pick::NotAsked),
        },
        None => None,
    };
    if let Some((_, want)) = opts
        .if_current
        .as_ref()
        .and_then(|v| v.iter().find(|(n, _)| *n == l.name))
    {
        let now_current = store.current(&l.name)?;
        if now_current != *want {
            let version = now_current.unwrap_or(0);
            return Ok(Pick::Done(LineageResult::Skipped { version }));
        }
    }
    if !opts.force && opts.only.is_none() {
        if let Some(version) = already_issued(cfg, store, l) {
            return Ok(Pick::Done(LineageResult::Skipped { version }));
        }
    }
    // A store with no version number left would refuse the certificate after the CA issued
    // it: refuse before ordering.
    if let Err(e) = store.next_version(&l.name) {
        return Ok(Pick::Done(LineageResult::Failed(Arc::new(e))));
    }
    Ok(Pick::Order(replaces))
}

/// The lineage being ordered, and the certificate it replaces (ARI `replaces`).
type Todo<'a> = (&'a Lineage, Option<CertificateIdentifier<'static>>);
/// The new private key, being generated while preflight and the CA work.
type KeyGen = JoinHandle<Result<rcgen::KeyPair>>;
/// A lineage still to be ordered: its `replaces` and its key.
type Pending<'a> = (&'a Lineage, Option<CertificateIdentifier<'static>>, KeyGen);
/// A lineage the CAs are done with: the issuer that answered last, and what it issued.
type Finished<'a> = (&'a Lineage, &'a Config, Result<crate::acme::Finalized>);

/// What the CAs of one group did: the lineages they finished, and, when no CA of the group
/// could be used at all (its account, its profile), that error and the lineages left.
struct AtCas<'a> {
    finished: Vec<Finished<'a>>,
    failed: Option<(anyhow::Error, Vec<&'a Lineage>)>,
}

/// `pending` by the CA each lineage orders from (`Lineage::ca`): `[acme]`'s group first,
/// then the named CAs' in name order.
fn by_ca(pending: Vec<Pending<'_>>) -> Vec<(Option<&str>, Vec<Pending<'_>>)> {
    let mut groups: Vec<(Option<&str>, Vec<Pending>)> = Vec::new();
    for p in pending {
        let ca = p.0.ca.as_deref();
        match groups.iter_mut().find(|(c, _)| *c == ca) {
            Some((_, g)) => g.push(p),
            None => groups.push((ca, vec![p])),
        }
    }
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    groups
}

/// Preflight, then order every lineage of `todo` (each CA in turn) and publish what was issued.
/// An error here is one for the whole run.
async fn order_all(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    opts: &IssueOptions,
    lease: &mut Lease,
    todo: Vec<Todo<'_>>,
) -> Result<Vec<(String, LineageResult)>> {
    let (todo, unstaged) = unstaged(cfg, todo);
    // Keys first (RSA takes 50–150 ms of CPU, and aws-lc seeds its RNG on first use): they
    // are generated while preflight and the CA work, and dropped if nothing is ordered.
    let pending: Vec<Pending> = todo
        .into_iter()
        .map(|(l, r)| (l, r, new_key(cfg)))
        .collect();
    let on_acme = pending.iter().any(|(l, _, _)| l.ca.is_none());
    let mut loaded = preflight(cfg, plan, store, on_acme).await?;
    lease.refresh()?;
    let entries: Vec<(String, String)> = pending
        .iter()
        .flat_map(|(l, _, _)| l.names.iter().map(|n| (l.name.clone(), n.clone())))
        .collect();
    let progress = Progress::new(&entries);
    let groups = by_ca(pending);
    // Each group's CAs: `[acme]` and its fallbacks, or one named CA (no fallback).
    let chains: Vec<Vec<Config>> = groups
        .iter()
        .map(|(ca, _)| cfg.for_ca(*ca).issuers())
        .collect();
    let (mut finished, mut failed) = (Vec::new(), Vec::new());
    // One group after the other: they share the lease, refreshed between CAs.
    for ((ca, group), issuers) in groups.into_iter().zip(&chains) {
        let acc = if ca.is_none() { loaded.take() } else { None };
        let at = order_at_each_ca(issuers, plan, store, lease, group, acc, &progress).await?;
        finished.extend(at.finished);
        if let Some((e, left)) = at.failed {
            for l in &left {
                for n in &l.names {
                    progress.finish(&l.name, n, false, "failed");
                }
            }
            failed.extend(all_failed(left.iter().map(|l| l.name.clone()), e));
        }
    }
    lease.refresh().context("before publishing")?;
    let mut results: Vec<(String, LineageResult)> = finished
        .into_iter()
        .map(|f| settle_one(opts, store, lease, &progress, f))
        .collect();
    results.extend(failed);
    results.extend(unstaged);
    drop(progress);
    Ok(results)
}

/// In a dry run, the lineages of a named CA that has no staging CA configured fail at once,
/// saying what to set: ordering them at `[acme]`'s staging would test another CA.
fn unstaged<'a>(
    cfg: &Config,
    todo: Vec<Todo<'a>>,
) -> (Vec<Todo<'a>>, Vec<(String, LineageResult)>) {
    let why = |l: &Lineage| {
        let ca = l.ca.as_deref()?;
        cfg.acme
            .unstaged
            .iter()
            .find(|(n, _)| n == ca)
            .map(|(_, w)| w.clone())
    };
    let (mut kept, mut refused) = (Vec::new(), Vec::new());
    for t in todo {
        match why(t.0) {
            Some(w) => refused.push((
                t.0.name.clone(),
                LineageResult::Failed(Arc::new(anyhow::anyhow!(w))),
            )),
            None => kept.push(t),
        }
    }
    (kept, refused)
}

/// A key of the configured type, generated on a blocking thread.
fn new_key(cfg: &Config) -> KeyGen {
    let kt = cfg.acme.key_type;
    tokio::task::spawn_blocking(move || crate::acme::generate_key(kt))
}

/// Preflight: the CA hears nothing unless every name answers through every path. Loading an
/// existing account only reads the CA's directory, so it overlaps with preflight; creating
/// one waits until preflight has passed. Returns `[acme]`'s account loaded on the way, if any
/// (only when a lineage of this run, `on_acme`, orders there).
async fn preflight(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    on_acme: bool,
) -> Result<Option<Result<Account>>> {
    let have_account = on_acme && store.read_account(&cfg.acme.account_dir())?.is_some();
    let (report, loaded) = if have_account {
        let (r, a) = tokio::join!(
            crate::preflight::run(cfg, plan, store),
            crate::acme::existing_account(cfg, store)
        );
        // An account the CA forgot is re-created after preflight, like a new one.
        (r?, a.transpose())
    } else {
        (crate::preflight::run(cfg, plan, store).await?, None)
    };
    if !report.ok() {
        bail!(
            "preflight failed; nothing was sent to the CA (this protects Let's Encrypt's 5 failed validations per name per hour):\n{}",
            report.table(true)
        );
    }
    Ok(loaded)
}

/// Each CA of a group in turn ([acme], then [[acme.fallback]]; a named CA alone): a lineage
/// moves on to the next one only when this one could not be reached, failed (5xx) or
/// rate-limited us; a validation failure would fail there too, so it stays. Before any order
/// at a CA, its configured profile is checked against the CA's offer. `loaded`: [acme]'s
/// account, if loaded beside preflight. An error here (the lease) is one for the whole run.
async fn order_at_each_ca<'a>(
    issuers: &'a [Config],
    plan: &Plan,
    store: &Store,
    lease: &mut Lease,
    mut pending: Vec<Pending<'a>>,
    mut loaded: Option<Result<Account>>,
    progress: &Progress,
) -> Result<AtCas<'a>> {
    let mut finished = Vec::new();
    for (i, icfg) in issuers.iter().enumerate() {
        if pending.is_empty() {
            break;
        }
        let last = i + 1 == issuers.len();
        let account = match loaded.take() {
            Some(a) => a,
            None => crate::acme::account(icfg, store).await,
        };
        let account = match account {
            Ok(a) => a,
            Err(e) if !last && falls_through(&e) => {
                tracing::warn!(error = %format!("{e:#}"), "trying the next CA ([[acme.fallback]])");
                continue;
            }
            Err(e) => return Ok(AtCas::left(finished, e, pending)),
        };
        if let Err(e) = crate::acme::offered_profile(icfg, &account) {
            return Ok(AtCas::left(finished, e, pending));
        }
        let (done, again) = order_at(icfg, plan, store, &account, pending, progress, last).await;
        finished.extend(done);
        pending = again;
        lease.refresh()?;
    }
    Ok(AtCas {
        finished,
        failed: None,
    })
}

impl<'a> AtCas<'a> {
    /// `finished`, and the lineages of `pending` failed with `e`.
    fn left(finished: Vec<Finished<'a>>, e: anyhow::Error, pending: Vec<Pending<'a>>) -> Self {
        let left = pending.into_iter().map(|(l, _, _)| l).collect();
        AtCas {
            finished,
            failed: Some((e, left)),
        }
    }
}

/// Order every lineage of `pending` at the CA of `icfg`, concurrently: what this CA finished,
/// and what goes on to the next one (unless it is the `last`).
async fn order_at<'a>(
    icfg: &'a Config,
    plan: &Plan,
    store: &Store,
    account: &Account,
    pending: Vec<Pending<'a>>,
    progress: &Progress,
    last: bool,
) -> (Vec<Finished<'a>>, Vec<Pending<'a>>) {
    let orders = pending.into_iter().map(|(l, replaces, key)| {
        let req = crate::acme::OrderRequest {
            lineage: l,
            replaces,
            key,
        };
        async move {
            let r = order_one(icfg, plan, store, account, req, progress).await;
            (l, r)
        }
    });
    let (mut finished, mut again) = (Vec::new(), Vec::new());
    for (l, r) in join_all(orders).await {
        match r {
            Err(e) if !last && falls_through(&e) => {
                tracing::warn!(lineage = %l.name, error = %format!("{e:#}"), "trying the next CA ([[acme.fallback]])");
                // `replaces` names a certificate of the CA before; a new key for the retry.
                again.push((l, None, new_key(icfg)));
            }
            r => finished.push((l, icfg, r)),
        }
    }
    (finished, again)
}

/// Publish what a CA issued for one lineage, or in a dry run verify and discard it (or pass
/// its failure on), and say so per name.
fn settle_one(
    opts: &IssueOptions,
    store: &Store,
    lease: &Lease,
    progress: &Progress,
    (l, icfg, r): Finished<'_>,
) -> (String, LineageResult) {
    let settled =
        r.and_then(|issued| match opts.mode {
            Mode::Publish => publish(icfg, store, l, issued, &opts.node, lease).map(
                |(version, info, warnings)| LineageResult::Published {
                    version,
                    serial: info.serial,
                    not_after: info.not_after,
                    warnings,
                },
            ),
            Mode::DryRun => discard(icfg, l, issued),
        });
    let (ok, msg) = match &settled {
        Ok(LineageResult::Published { version, .. }) => (
            true,
            format!("issued, version {}", format_version(*version)),
        ),
        Ok(_) => (true, "issued and verified; discarded (dry run)".to_string()),
        Err(_) => (false, "failed".to_string()),
    };
    for n in &l.names {
        progress.finish(&l.name, n, ok, &msg);
    }
    let res = settled.unwrap_or_else(|e| LineageResult::Failed(Arc::new(e)));
    (l.name.clone(), res)
}

/// A dry run's end: the issued pair verified as `publish` would, then dropped (the key never
/// leaves memory).
fn discard(cfg: &Config, l: &Lineage, issued: crate::acme::Finalized) -> Result<LineageResult> {
    let roots = cfg
        .acme
        .ca_roots
        .as_deref()
        .unwrap_or(std::path::Path::new(""));
    let info = verify_issued(cfg, l, &issued).with_context(|| {
        format!(
            "verified against the staging roots ([acme] staging_ca_roots {})",
            roots.display()
        )
    })?;
    Ok(LineageResult::Verified {
        serial: info.serial,
        not_after: info.not_after,
    })
}

/// Whether a failure sends the lineage on to the next configured CA.
fn falls_through(e: &anyhow::Error) -> bool {
    crate::acme::AcmeError::find(e).is_some_and(|a| a.falls_through())
}

/// One order, driven: the CA's steps (`acme::PlacedOrder`) around the solvers' (`solve`:
/// answers placed, then their barrier) and the validation hooks. What the solvers placed is
/// removed on every path; on success while the CA finalizes (that waits on the disk, NFS or
/// DNS), and still before returning.
async fn order_one(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    account: &instant_acme::Account,
    req: crate::acme::OrderRequest<'_>,
    progress: &Progress,
) -> Result<crate::acme::Finalized> {
    let (l, names) = (req.lineage.name.as_str(), &req.lineage.names);
    let mut order = crate::acme::PlacedOrder::place(cfg, account, req, progress).await?;
    let mut challenges = order.challenges(|n| cfg.challenge_choices(n)).await?;
    // The CA's order of authorizations is its own; hooks and logs see the planned one.
    challenges.sort_by_key(|c| names.iter().position(|n| *n == c.name));
    let presented = crate::solve::present(cfg, store, l, &challenges, progress).await?;
    if let Err(e) = validate(cfg, plan, l, &mut order, &presented, &challenges).await {
        presented.cleanup().await;
        return Err(e);
    }
    let (res, ()) = tokio::join!(order.finalize(), presented.cleanup());
    res
}

/// The solvers' barrier, `[hooks] pre_validation`, the CA told every challenge is ready and
/// polled until it has validated them, then `post_validation` (whenever `pre_validation` ran).
/// Hooks run only when the CA has something to validate (not for reused authorizations).
async fn validate(
    cfg: &Config,
    plan: &Plan,
    l: &str,
    order: &mut crate::acme::PlacedOrder<'_>,
    presented: &crate::solve::Presented,
    challenges: &[crate::acme::Challenge],
) -> Result<()> {
    presented.barrier(cfg, plan, l).await?;
    let ca = cfg.acme.directory.as_str();
    let hooked = !challenges.is_empty();
    let validated = async {
        if hooked {
            crate::validation_hook::pre(&cfg.hooks, l, ca, challenges).await?;
        }
        order.set_ready().await?;
        order.poll_ready().await
    }
    .await;
    if hooked {
        crate::validation_hook::post(&cfg.hooks, l, ca, challenges, validated.is_ok()).await;
    }
    validated
}

/// Verify the issued pair against the plan, then publish it as a new version (fenced by the
/// lease). Nothing is written if verification fails. Once published, what fails after (the
/// state record) comes back as warnings: the run has succeeded.
fn publish(
    cfg: &Config,
    store: &Store,
    l: &Lineage,
    issued: crate::acme::Finalized,
    node: &str,
    lease: &Lease,
) -> Result<(u32, crate::cert::CertInfo, Vec<String>)> {
    let info = verify_issued(cfg, l, &issued)?;
    let meta = Meta {
        lineage: l.name.clone(),
        version: 0,
        names: l.names.clone(),
        key_type: info.key_type.clone(),
        issued_at: now(),
        issued_by: node.to_string(),
        ca: cfg.acme.directory.clone(),
        order_url: Some(issued.order_url.clone()),
        profile: Some(cfg.acme.profile.clone().unwrap_or_default()),
        leaf: info.clone(),
    };
    let files = crate::store::Issued {
        cert_pem: issued.cert_pem,
        chain_pem: issued.chain_pem,
        key_pem: issued.key_pem,
    };
    let version = store.publish(&l.name, &files, meta, cfg.install.keep_versions, || {
        lease.verify()
    })?;
    let warnings = crate::attempts::record_success(cfg, store, &l.name, version)
        .err()
        .into_iter();
    Ok((version, info, warnings.collect()))
}

/// THE verification policy, on exactly what will be published, before anything is written:
/// the leaf's facts, or why the issued pair is refused.
fn verify_issued(
    cfg: &Config,
    l: &Lineage,
    issued: &crate::acme::Finalized,
) -> Result<crate::cert::CertInfo> {
    let anchors = crate::verify::Anchors::load(cfg.acme.ca_roots.as_deref())?;
    let fullchain = format!("{}{}", issued.cert_pem, issued.chain_pem);
    let files = crate::verify::Files {
        served: named("the issued fullchain", &fullchain),
        parts: Some((
            named("the issued certificate", &issued.cert_pem),
            named("the issued chain", &issued.chain_pem),
        )),
        intermediates: None,
        key: Some(named("the new key", &issued.key_pem)),
    };
    let want = crate::verify::expect_for(cfg, l, false, now());
    let verdicts = crate::verify::check(&files, &anchors, &want);
    if let Some(f) = verdicts.refusal() {
        bail!(
            "the certificate the CA issued for {} fails verification: {f}; not published",
            l.name
        );
    }
    let info = verdicts.leaf.expect("no critical failure: the leaf parsed");
    if info.key_type != cfg.acme.key_type.as_str() {
        bail!(
            "issued key type {} is not the configured {}; not published",
            info.key_type,
            cfg.acme.key_type.as_str()
        );
    }
    Ok(info)
}

/// A file `verify` names in what it says, and its bytes.
fn named<'a>(file: &'a str, bytes: &'a str) -> crate::verify::Named<'a> {
    crate::verify::Named {
        file,
        bytes: bytes.as_bytes(),
    }
}
