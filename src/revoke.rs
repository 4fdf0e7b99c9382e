//! `vipcert revoke <LINEAGE> [--version NNNN] [--reason R] [--reissue]`: revoke one stored
//! version at the CA, mark it in the store so nothing installs or rolls back to it, and
//! optionally order its replacement (new key) at once.
//!
//! Owns the order of those steps and their report (`RevokeReport`). It does not speak ACME
//! (`acme::revoke`), lay out the store (`store::mark_revoked`), refuse revoked versions at
//! install time (`install::verified_version`) nor order and install the replacement (the
//! issuing pipeline, `pipeline::run`).

use std::fmt;
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};

use crate::acme::Revocation;
use crate::config::Config;
use crate::issue::IssueOptions;
use crate::lease::Lease;
use crate::pipeline::{PipelineOptions, PipelineReport, WhenStopped};
use crate::plan::Plan;
use crate::store::{format_version, now, Revoked, Store};

/// The RFC 5280 reasons an operator gives (the others are the CA's own business).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `unspecified`: no reason given.
    Unspecified,
    /// `keyCompromise`: the private key leaked (or may have).
    KeyCompromise,
    /// `superseded`: replaced by a newer certificate.
    Superseded,
    /// `cessationOfOperation`: the service or host is gone.
    CessationOfOperation,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Unspecified => "unspecified",
            Reason::KeyCompromise => "keyCompromise",
            Reason::Superseded => "superseded",
            Reason::CessationOfOperation => "cessationOfOperation",
        }
    }

    fn to_acme(self) -> instant_acme::RevocationReason {
        use instant_acme::RevocationReason as R;
        match self {
            Reason::Unspecified => R::Unspecified,
            Reason::KeyCompromise => R::KeyCompromise,
            Reason::Superseded => R::Superseded,
            Reason::CessationOfOperation => R::CessationOfOperation,
        }
    }
}

/// What `vipcert revoke` was asked.
pub struct RevokeOptions {
    /// The lineage (store/<lineage>).
    pub lineage: String,
    /// Default: the current version.
    pub version: Option<u32>,
    /// The RFC 5280 reason sent to the CA.
    pub reason: Reason,
    /// Order a new certificate (new key) for the lineage right after, and install it here.
    pub reissue: bool,
    /// This node (lease holder, `revoked.json` `by`).
    pub node: String,
    /// Prefix for install paths (`reissue`).
    pub root: PathBuf,
}

/// What happened to the version at the CA and in the store.
#[derive(Debug)]
pub(crate) enum RevokeOutcome {
    /// Already marked revoked in the store: nothing sent to the CA.
    AlreadyMarked(Revoked),
    /// Revoked at the CA and marked in the store.
    Revoked {
        /// The CA's directory URL.
        ca: String,
        /// The reason sent.
        reason: Reason,
        /// The CA said it was revoked already.
        ca_said_already: bool,
    },
}

/// After the revocation.
pub enum AfterRevoke {
    /// No reissue asked; whether the revoked version is the lineage's current one.
    Kept {
        /// The revoked version is `current`: nodes keep it until a new one is issued.
        current_revoked: bool,
    },
    /// `--reissue`: the issuing pipeline's run (order, failure records, install here).
    Reissued(Box<PipelineReport>),
}

/// What one `vipcert revoke` did.
pub struct RevokeReport {
    /// The lineage.
    pub lineage: String,
    /// The version revoked.
    pub version: u32,
    /// At the CA and in the store.
    pub(crate) revocation: RevokeOutcome,
    /// The replacement, or what not replacing it means.
    pub after: AfterRevoke,
}

impl RevokeReport {
    /// Whether everything asked for was done; the reissue's install error, if it could not
    /// run, as the command's error (printed after the rest).
    pub fn into_ok(self) -> Result<bool> {
        match self.after {
            AfterRevoke::Kept { .. } => Ok(true),
            AfterRevoke::Reissued(run) => (*run).into_ok(),
        }
    }
}

impl fmt::Display for RevokeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = format!("store/{}/{}", self.lineage, format_version(self.version));
        match &self.revocation {
            RevokeOutcome::AlreadyMarked(r) => writeln!(f, "{dir}: already marked {r}")?,
            RevokeOutcome::Revoked {
                ca,
                reason,
                ca_said_already,
            } => writeln!(
                f,
                "{dir}: revoked at {ca} ({}){}; marked in {dir}/{}: nothing installs or rolls back to it",
                reason.as_str(),
                if *ca_said_already {
                    " — the CA says it was already revoked"
                } else {
                    ""
                },
                crate::store::REVOKED
            )?,
        }
        match &self.after {
            AfterRevoke::Kept {
                current_revoked: true,
            } => writeln!(
                f,
                "{}: the current version is revoked; nodes keep what they have installed until a new one is issued: run `vipcert issue --force` (or revoke with --reissue)",
                self.lineage
            ),
            AfterRevoke::Kept { .. } => Ok(()),
            AfterRevoke::Reissued(run) => write!(f, "{run}"),
        }
    }
}

/// Revoke a stored version at the CA (RFC 8555 §7.6) under the issuer lease, mark it revoked
/// in the store, and reissue when asked.
pub async fn run(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    opts: &RevokeOptions,
) -> Result<RevokeReport> {
    let l = plan.named_lineage(&opts.lineage)?;
    let n = match opts.version {
        Some(n) => n,
        None => store
            .current(&l.name)?
            .ok_or_else(|| anyhow!("store/{} has no current version to revoke", l.name))?,
    };
    let revocation = revoke(cfg, store, &l.name, n, opts).await?;
    let after = if opts.reissue {
        AfterRevoke::Reissued(Box::new(reissue(cfg, plan, store, &l.name, opts).await?))
    } else {
        AfterRevoke::Kept {
            current_revoked: store.current(&l.name)? == Some(n),
        }
    };
    Ok(RevokeReport {
        lineage: l.name.clone(),
        version: n,
        revocation,
        after,
    })
}

/// Version `n` of `lineage` revoked at the CA that issued it (its `meta.ca`, which must still
/// be configured) and marked, or the mark it already has.
async fn revoke(
    cfg: &Config,
    store: &Store,
    lineage: &str,
    n: u32,
    opts: &RevokeOptions,
) -> Result<RevokeOutcome> {
    let v = store.read(lineage, n)?;
    let dir = format!("store/{lineage}/{}", format_version(n));
    let der = crate::cert::pem_certs(&v.cert_pem)
        .map_err(|e| anyhow!("{dir}/cert.pem: {e}"))?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("{dir}/cert.pem holds no certificate"))?;
    if let Some(r) = store.revoked(lineage, n)? {
        return Ok(RevokeOutcome::AlreadyMarked(r));
    }
    // RFC 8555 §7.6: the CA that issued it revokes it, with our account there.
    let icfg = cfg
        .at_directory(cfg.lineage_ca(lineage), &v.meta.ca)
        .ok_or_else(|| {
            anyhow!(
                "{dir} was issued by the CA at {}, which this config no longer lists; only that CA can revoke it: list it again ([[acme.fallback]] or [[acme.ca]]; its account is still under accounts/ in the shared directory) and run this again",
                crate::escape::escape(&v.meta.ca)
            )
        })?;
    // Revoking and marking under the lease: an issue on another node must not publish in
    // between and leave the revoked version current unnoticed.
    store.init()?;
    let lease = Lease::acquire_now(store, &opts.node, crate::lease::Timing::of(&cfg.renew))?;
    let res = revoke_and_mark(&icfg, store, lineage, n, &der, opts).await;
    lease.release_or_log();
    Ok(RevokeOutcome::Revoked {
        ca: icfg.acme.directory.clone(),
        reason: opts.reason,
        ca_said_already: res? == Revocation::AlreadyRevoked,
    })
}

/// `--reissue`: a new certificate (new key) through the issuing pipeline. A failed reissue
/// leaves a revoked certificate current: counted like renew's failures, so `[notify]
/// on_failure` hears of it and the renewal timer backs off as usual.
async fn reissue(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    lineage: &str,
    opts: &RevokeOptions,
) -> Result<PipelineReport> {
    let p = PipelineOptions {
        issue: Some(IssueOptions {
            force: true,
            node: opts.node.clone(),
            only: Some(vec![(lineage.to_string(), None)]),
            if_current: None,
            mode: crate::issue::Mode::Publish,
        }),
        when_stopped: WhenStopped::Return,
        node: opts.node.clone(),
        root: opts.root.clone(),
    };
    crate::pipeline::run(cfg, plan, store, &p).await
}

async fn revoke_and_mark(
    cfg: &Config,
    store: &Store,
    lineage: &str,
    n: u32,
    der: &[u8],
    opts: &RevokeOptions,
) -> Result<Revocation> {
    let account = crate::acme::account(cfg, store).await?;
    let said = crate::acme::revoke(cfg, &account, der, opts.reason.to_acme()).await?;
    store
        .mark_revoked(
            lineage,
            n,
            &Revoked {
                reason: opts.reason.as_str().to_string(),
                revoked_at: now(),
                by: opts.node.clone(),
            },
        )
        .context("the CA revoked it, but the store mark failed: run the same command again")?;
    tracing::info!(
        lineage,
        version = n,
        reason = opts.reason.as_str(),
        "revoked"
    );
    Ok(said)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(revocation: RevokeOutcome, after: AfterRevoke) -> RevokeReport {
        RevokeReport {
            lineage: "v.example.org".into(),
            version: 1,
            revocation,
            after,
        }
    }

    /// The report's words (tests/it and operators read them): what happened at the CA and in
    /// the store, then what not reissuing means.
    #[test]
    fn the_report_says_what_was_revoked_and_what_it_means() {
        let revoked = RevokeOutcome::Revoked {
            ca: "https://ca.example.org/dir".into(),
            reason: Reason::KeyCompromise,
            ca_said_already: true,
        };
        let current = AfterRevoke::Kept {
            current_revoked: true,
        };
        assert_eq!(
            report(revoked, current).to_string(),
            "store/v.example.org/0001: revoked at https://ca.example.org/dir (keyCompromise) — the CA says it was already revoked; marked in store/v.example.org/0001/revoked.json: nothing installs or rolls back to it\n\
             v.example.org: the current version is revoked; nodes keep what they have installed until a new one is issued: run `vipcert issue --force` (or revoke with --reissue)\n"
        );
        let marked = RevokeOutcome::AlreadyMarked(Revoked {
            reason: "superseded".into(),
            revoked_at: 1_800_000_000,
            by: "dtn1.example.org".into(),
        });
        let old = AfterRevoke::Kept {
            current_revoked: false,
        };
        let rep = report(marked, old);
        assert_eq!(
            rep.to_string(),
            "store/v.example.org/0001: already marked revoked (superseded) at 2027-01-15T08:00:00Z by dtn1.example.org\n"
        );
        assert!(rep.into_ok().unwrap());
    }
}
