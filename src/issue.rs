//! The issue flow of DESIGN.md: lease → preflight → account → one order per lineage
//! (concurrently) → verify → publish → clean up → release.
//!
//! Owns the order of those steps and what happens on each failure path (nothing published,
//! challenge files removed, lease released). It does not decide *whether* a lineage is due
//! (`renew` passes `only`) and does not install (`install`).

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use futures_util::future::join_all;

use crate::config::Config;
use crate::lease::{Holder, Lease, LeaseError, Timing};
use crate::plan::{Lineage, Plan};
use crate::progress::Progress;
use crate::store::{fmt_time, now, Meta, Store};

/// What `vipcert issue` (or `renew`, for the lineages due) asks of the issue flow.
pub struct Options {
    /// Order even if `current` already holds a certificate for the planned names.
    pub force: bool,
    /// This node's hostname (lease holder, meta.issued_by).
    pub node: String,
    /// Restrict to these lineages, each with an optional ARI `replaces` identifier.
    pub only: Option<Vec<(String, Option<instant_acme::CertificateIdentifier<'static>>)>>,
    /// Order a lineage only if, once the lease is held, store/<lineage>/current still is this
    /// version (`renew`: another node may have renewed between the due decision and the lease).
    pub if_current: Option<Vec<(String, Option<u32>)>>,
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
pub enum Outcome {
    /// The lease was ours: the result per lineage.
    Done(Vec<(String, LineageResult)>),
    /// Another node holds the lease.
    InProgress(Holder),
}

impl Outcome {
    /// Nothing failed (another node holding the lease is not a failure).
    pub fn ok(&self) -> bool {
        match self {
            Outcome::Done(v) => v
                .iter()
                .all(|(_, r)| !matches!(r, LineageResult::Failed(_))),
            Outcome::InProgress(_) => true,
        }
    }

    /// What happened, for the terminal.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        match self {
            Outcome::InProgress(h) => {
                let _ = writeln!(
                    s,
                    "renewal in progress on {} (pid {}); nothing to do here",
                    crate::escape::escape(&h.node),
                    h.pid
                );
            }
            Outcome::Done(v) => {
                for (l, r) in v {
                    let _ = match r {
                        LineageResult::Published {
                            version,
                            serial,
                            not_after,
                            warnings,
                        } => writeln!(
                            s,
                            "{l}: issued version {} (serial {serial}, valid until {}){}",
                            crate::store::format_version(*version),
                            fmt_time(*not_after),
                            warning_lines(l, warnings)
                        ),
                        LineageResult::Skipped { version } => writeln!(
                            s,
                            "{l}: already issued (version {}); use --force to order again",
                            crate::store::format_version(*version)
                        ),
                        LineageResult::Failed(e) => writeln!(s, "{l}: FAILED: {e:#}"),
                    };
                }
            }
        }
        s
    }
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
pub async fn run(cfg: &Config, plan: &Plan, store: &Store, opts: &Options) -> Result<Outcome> {
    store.init()?;
    // Watching a lease held elsewhere blocks for up to three refresh intervals.
    let (s, node, timing) = (store.clone(), opts.node.clone(), Timing::of(&cfg.renew));
    let acquired = tokio::task::spawn_blocking(move || Lease::acquire(&s, &node, timing))
        .await
        .context("the lease task")?;
    let mut lease = match acquired {
        Ok(l) => l,
        Err(LeaseError::Held(h)) => return Ok(Outcome::InProgress(*h)),
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
    };
    // A killed run's challenge and probe files: swept before this run writes its own.
    if let Err(e) = store.sweep_webroot(
        crate::challenge::STALE_CHALLENGE,
        crate::challenge::valid_token,
    ) {
        tracing::warn!(error = %format!("{e:#}"), "cannot sweep the webroot");
    }
    let res = run_locked(cfg, plan, store, opts, &mut lease).await;
    lease.release_or_log();
    res
}

async fn run_locked(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    opts: &Options,
    lease: &mut Lease,
) -> Result<Outcome> {
    // Which lineages to order.
    let mut results: Vec<(String, LineageResult)> = Vec::new();
    let mut todo: Vec<(
        &Lineage,
        Option<instant_acme::CertificateIdentifier<'static>>,
    )> = Vec::new();
    for l in &plan.lineages {
        let replaces = match &opts.only {
            Some(only) => match only.iter().find(|(n, _)| *n == l.name) {
                Some((_, r)) => r.clone(),
                None => continue,
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
                results.push((
                    l.name.clone(),
                    LineageResult::Skipped {
                        version: now_current.unwrap_or(0),
                    },
                ));
                continue;
            }
        }
        if !opts.force && opts.only.is_none() {
            if let Some(v) = already_issued(cfg, store, l) {
                results.push((l.name.clone(), LineageResult::Skipped { version: v }));
                continue;
            }
        }
        // A store with no version number left would refuse the certificate after the CA
        // issued it: refuse before ordering.
        if let Err(e) = store.next_version(&l.name) {
            results.push((l.name.clone(), LineageResult::Failed(Arc::new(e))));
            continue;
        }
        todo.push((l, replaces));
    }
    if todo.is_empty() {
        return Ok(Outcome::Done(results));
    }

    let names: Vec<String> = todo.iter().map(|(l, _)| l.name.clone()).collect();
    match order_all(cfg, plan, store, opts, lease, todo).await {
        Ok(v) => results.extend(v),
        // Preflight failed, the lease was lost, or no CA could be reached: every lineage this
        // run was to order failed, with the same error (each records it and tells the hook).
        Err(e) => {
            let e = Arc::new(e);
            results.extend(
                names
                    .into_iter()
                    .map(|n| (n, LineageResult::Failed(e.clone()))),
            );
        }
    }
    Ok(Outcome::Done(results))
}

/// The lineage being ordered, and the certificate it replaces (ARI `replaces`).
type Todo<'a> = (
    &'a Lineage,
    Option<instant_acme::CertificateIdentifier<'static>>,
);

/// Preflight, then order every lineage of `todo` (each CA in turn) and publish what was issued.
/// An error here is one for the whole run.
async fn order_all(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    opts: &Options,
    lease: &mut Lease,
    todo: Vec<Todo<'_>>,
) -> Result<Vec<(String, LineageResult)>> {
    let mut results = Vec::new();
    // Keys first (RSA takes 50–150 ms of CPU, and aws-lc seeds its RNG on first use): they
    // are generated while preflight and the CA work, and dropped if nothing is ordered.
    let kt = cfg.acme.key_type;
    let keygens: Vec<_> = todo
        .iter()
        .map(|_| tokio::task::spawn_blocking(move || crate::acme::generate_key(kt)))
        .collect();

    // Preflight: the CA hears nothing unless every name answers through every path. Loading
    // an existing account only reads the CA's directory, so it overlaps with preflight;
    // creating one waits until preflight has passed.
    let have_account = store.read_account(&cfg.acme.ca_host())?.is_some();
    let (report, mut loaded) = if have_account {
        let (r, a) = tokio::join!(
            crate::preflight::run(cfg, plan, store),
            crate::acme::existing_account(cfg, store)
        );
        // An account the CA forgot is re-created below, after preflight, like a new one.
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
    lease.refresh()?;
    let entries: Vec<(String, String)> = todo
        .iter()
        .flat_map(|(l, _)| l.names.iter().map(|n| (l.name.clone(), n.clone())))
        .collect();
    let progress = Progress::new(&entries);

    // Each CA in turn ([acme], then [[acme.fallback]]): a lineage moves on to the next one only
    // when this one could not be reached, failed (5xx) or rate-limited us; a validation
    // failure would fail there too, so it stays.
    let issuers = cfg.issuers();
    let mut pending: Vec<_> = todo
        .iter()
        .zip(keygens)
        .map(|((l, r), k)| (*l, r.clone(), k))
        .collect();
    let mut finished = Vec::new();
    for (i, icfg) in issuers.iter().enumerate() {
        if pending.is_empty() {
            break;
        }
        let last = i + 1 == issuers.len();
        // The account loaded beside preflight is [acme]'s, the first issuer's.
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
            Err(e) => return Err(e),
        };
        let orders = pending.drain(..).map(|(l, replaces, key)| {
            let account = &account;
            let progress = &progress;
            let req = crate::acme::OrderRequest {
                lineage: l,
                replaces,
                key,
            };
            async move {
                (
                    l,
                    order_one(icfg, plan, store, account, req, progress).await,
                )
            }
        });
        for (l, r) in join_all(orders).await {
            match r {
                Err(e) if !last && falls_through(&e) => {
                    tracing::warn!(lineage = %l.name, error = %format!("{e:#}"), "trying the next CA ([[acme.fallback]])");
                    // `replaces` names a certificate of the CA before; a new key for the retry.
                    let key = tokio::task::spawn_blocking(move || crate::acme::generate_key(kt));
                    pending.push((l, None, key));
                }
                r => finished.push((l, icfg, r)),
            }
        }
        lease.refresh()?;
    }

    lease.refresh().context("before publishing")?;
    for (l, icfg, r) in finished {
        let res = match r.and_then(|issued| publish(icfg, store, l, issued, &opts.node, lease)) {
            Ok((version, info, warnings)) => {
                for n in &l.names {
                    let msg = format!("issued, version {}", crate::store::format_version(version));
                    progress.finish(&l.name, n, true, &msg);
                }
                LineageResult::Published {
                    version,
                    serial: info.serial,
                    not_after: info.not_after,
                    warnings,
                }
            }
            Err(e) => {
                for n in &l.names {
                    progress.finish(&l.name, n, false, "failed");
                }
                LineageResult::Failed(Arc::new(e))
            }
        };
        results.push((l.name.clone(), res));
    }
    drop(progress);
    Ok(results)
}

/// Whether a failure sends the lineage on to the next configured CA.
fn falls_through(e: &anyhow::Error) -> bool {
    crate::acme::AcmeError::find(e).is_some_and(|a| a.falls_through())
}

/// One order, driven: the CA's steps (`acme::PlacedOrder`) around the http-01 ones (the
/// challenge files in the shared webroot and the readiness barrier, `preflight`). Challenge
/// files are removed on every path; on success, while the CA finalizes (that waits on the
/// disk or NFS), and still before returning.
async fn order_one(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    account: &instant_acme::Account,
    req: crate::acme::OrderRequest<'_>,
    progress: &Progress,
) -> Result<crate::acme::Issued> {
    let l = req.lineage.name.as_str();
    let mut order = crate::acme::PlacedOrder::place(cfg, account, req, progress).await?;
    let challenges = order.http01_challenges().await?;
    let mut files = Vec::with_capacity(challenges.len());
    for c in &challenges {
        files.push(crate::preflight::WebrootFile::create(
            store,
            &c.token,
            &c.key_authorization,
        )?);
        let step = "challenge file written; waiting for every node to serve it";
        progress.step(l, &c.name, step);
    }
    let served: Vec<(String, String)> = challenges
        .into_iter()
        .map(|c| (c.token, c.key_authorization))
        .collect();
    crate::preflight::barrier(cfg, plan, l, &served).await?;
    order.set_ready().await?;
    order.poll_ready().await?;
    let cleanup = tokio::task::spawn_blocking(move || drop(files));
    let res = order.finalize().await;
    let _ = cleanup.await;
    res
}

/// Verify the issued pair against the plan, then publish it as a new version (fenced by the
/// lease). Nothing is written if verification fails. Once published, what fails after (the
/// state record) comes back as warnings: the run has succeeded.
fn publish(
    cfg: &Config,
    store: &Store,
    l: &Lineage,
    issued: crate::acme::Issued,
    node: &str,
    lease: &Lease,
) -> Result<(u32, crate::cert::CertInfo, Vec<String>)> {
    // THE verification policy, on exactly what will be published, before anything is written.
    let anchors = crate::verify::Anchors::load(cfg.acme.ca_roots.as_deref())?;
    let fullchain = format!("{}{}", issued.cert_pem, issued.chain_pem);
    let files = crate::verify::Files {
        served: crate::verify::Named {
            file: "the issued fullchain",
            bytes: fullchain.as_bytes(),
        },
        parts: Some((
            crate::verify::Named {
                file: "the issued certificate",
                bytes: issued.cert_pem.as_bytes(),
            },
            crate::verify::Named {
                file: "the issued chain",
                bytes: issued.chain_pem.as_bytes(),
            },
        )),
        intermediates: None,
        key: Some(crate::verify::Named {
            file: "the new key",
            bytes: issued.key_pem.as_bytes(),
        }),
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
    let warnings = record_success(cfg, store, &l.name, version)
        .err()
        .into_iter();
    Ok((version, info, warnings.collect()))
}

/// Record in state/<lineage>.json that `version` was published: failures reset, the issuing
/// CA. The error, if any, says what `check` and `renew` will see instead.
fn record_success(cfg: &Config, store: &Store, lineage: &str, version: u32) -> Result<(), String> {
    // An unreadable record is replaced: this success is the news it would have held.
    let mut st = store.read_state(lineage).unwrap_or_default();
    st.last_attempt = Some(now().into());
    st.last_success = Some(now().into());
    st.ca = Some(cfg.acme.directory.clone());
    st.failures = 0;
    st.last_error = None;
    st.next_attempt = None;
    store.write_state(lineage, &st).map_err(|e| {
        format!(
            "version {} is published and current, but the success was not recorded: {e:#}; until a later run records one, `check` and `renew` see the state as it was",
            crate::store::format_version(version)
        )
    })
}
