//! `vipcert revoke <LINEAGE> [--version NNNN] [--reason R] [--reissue]`: revoke one stored
//! version at the CA, mark it in the store so nothing installs or rolls back to it, and
//! optionally order its replacement (new key) at once.
//!
//! Owns the order of those steps and their report. It does not speak ACME (`acme::revoke`),
//! lay out the store (`store::mark_revoked`), refuse revoked versions at install time
//! (`install::verified_version`) nor order (`issue::run`).

use std::fmt::Write as _;

use anyhow::{anyhow, Context, Result};

use crate::acme::Revocation;
use crate::config::Config;
use crate::lease::Lease;
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
pub struct Options {
    /// The lineage (store/<lineage>).
    pub lineage: String,
    /// Default: the current version.
    pub version: Option<u32>,
    /// The RFC 5280 reason sent to the CA.
    pub reason: Reason,
    /// Order a new certificate (new key) for the lineage right after.
    pub reissue: bool,
    /// This node (lease holder, `revoked.json` `by`).
    pub node: String,
}

/// Lines to print and whether everything asked for was done.
pub struct Report {
    /// Lines to print.
    pub text: String,
    /// Everything asked for was done.
    pub ok: bool,
}

/// Revoke a stored version at the CA (RFC 8555 §7.6) under the issuer lease, mark it revoked
/// in the store, and reissue when asked.
pub async fn run(cfg: &Config, plan: &Plan, store: &Store, opts: &Options) -> Result<Report> {
    let l = plan.named_lineage(&opts.lineage)?;
    let n = match opts.version {
        Some(n) => n,
        None => store
            .current(&l.name)?
            .ok_or_else(|| anyhow!("store/{} has no current version to revoke", l.name))?,
    };
    let v = store.read(&l.name, n)?;
    let dir = format!("store/{}/{}", l.name, format_version(n));
    let der = crate::cert::pem_certs(&v.cert_pem)
        .map_err(|e| anyhow!("{dir}/cert.pem: {e}"))?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("{dir}/cert.pem holds no certificate"))?;
    let mut text = String::new();

    // Revoking and marking under the lease: an issue on another node must not publish in
    // between and leave the revoked version current unnoticed.
    if let Some(r) = store.revoked(&l.name, n)? {
        let _ = writeln!(text, "{dir}: already marked {r}");
    } else {
        store.init()?;
        let lease = Lease::acquire_now(store, &opts.node, crate::lease::Timing::of(&cfg.renew))?;
        let res = revoke_and_mark(cfg, store, &l.name, n, &der, opts).await;
        lease.release_or_log();
        let said = res?;
        let _ = writeln!(
            text,
            "{dir}: revoked at {} ({}){}; marked in {dir}/{}: nothing installs or rolls back to it",
            cfg.acme.directory,
            opts.reason.as_str(),
            if said == Revocation::AlreadyRevoked {
                " — the CA says it was already revoked"
            } else {
                ""
            },
            crate::store::REVOKED
        );
    }

    if !opts.reissue {
        if store.current(&l.name)? == Some(n) {
            let _ = writeln!(
                text,
                "{}: the current version is revoked; nodes keep what they have installed until a new one is issued: run `vipcert issue --force` (or revoke with --reissue)",
                l.name
            );
        }
        return Ok(Report { text, ok: true });
    }
    let iopts = crate::issue::Options {
        force: true,
        node: opts.node.clone(),
        only: Some(vec![(l.name.clone(), None)]),
        if_current: None,
    };
    let out = crate::issue::run(cfg, plan, store, &iopts).await?;
    text.push_str(&out.summary());
    // A failed reissue leaves a revoked certificate current: counted like renew's failures,
    // so `[notify] on_failure` hears of it and the renewal timer backs off as usual.
    text.push_str(&crate::renew::record_failures(cfg, plan, store, &opts.node, &out).await?);
    Ok(Report { text, ok: out.ok() })
}

async fn revoke_and_mark(
    cfg: &Config,
    store: &Store,
    lineage: &str,
    n: u32,
    der: &[u8],
    opts: &Options,
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
