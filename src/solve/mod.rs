//! The solvers: what answers each challenge of an order, by type (http-01: files in the
//! shared webroot; dns-01 and dns-persist-01 join here), the barrier that waits until every
//! path the CA may take sees the answer, and the clean-up after.
//!
//! Owns splitting one order's challenges between the solvers and running each one's steps.
//! It does not speak ACME (`acme` hands out the typed challenges and is told "ready" by
//! `issue`) nor decide which type answers for a name (`config`'s `[challenge]`).

pub(crate) mod dns01;
pub(crate) mod http01;
pub(crate) mod persist;

use anyhow::Result;

use crate::acme::{Answer, Challenge};
use crate::config::Config;
use crate::plan::Plan;
use crate::progress::Progress;
use crate::store::Store;

/// What the solvers placed for one order: removed by `cleanup` (and, for files, when dropped).
pub(crate) struct Presented {
    http: Option<http01::Presented>,
    dns: Option<dns01::Presented>,
}

/// Place every challenge's answer of one order of `lineage`. What one solver placed before
/// another failed is removed before the error returns.
pub(crate) async fn present(
    cfg: &Config,
    store: &Store,
    lineage: &str,
    challenges: &[Challenge],
    progress: &Progress,
) -> Result<Presented> {
    let mut files = Vec::new();
    let mut txts = Vec::new();
    for c in challenges {
        match &c.answer {
            Answer::Http01 {
                token,
                key_authorization,
            } => files.push((c.name.clone(), token.clone(), key_authorization.clone())),
            Answer::Dns01 { txt } => txts.push((c.name.clone(), txt.clone())),
            // The persistent record answers (preflight saw it on every authoritative server):
            // nothing to place, only "ready" to tell the CA.
            Answer::DnsPersist01 => {}
        }
    }
    let http = if files.is_empty() {
        None
    } else {
        Some(http01::present(store, lineage, &files, progress)?)
    };
    // On a dns-01 failure the files above are removed as `http` drops.
    let dns = if txts.is_empty() {
        None
    } else {
        Some(dns01::present(cfg, store, lineage, &txts, progress).await?)
    };
    Ok(Presented { http, dns })
}

impl Presented {
    /// Every solver's barrier: returns once every path the CA may take sees every answer, or
    /// with a table of what does not.
    pub(crate) async fn barrier(&self, cfg: &Config, plan: &Plan, lineage: &str) -> Result<()> {
        let http = async {
            match &self.http {
                Some(h) => h.barrier(cfg, plan, lineage).await,
                None => Ok(()),
            }
        };
        let dns = async {
            match &self.dns {
                Some(d) => d.barrier(lineage).await,
                None => Ok(()),
            }
        };
        let (h, d) = tokio::join!(http, dns);
        h.and(d)
    }

    /// Remove what was placed. Never fails the order: what cannot be removed now is swept by
    /// a later run.
    pub(crate) async fn cleanup(self) {
        let http = async {
            if let Some(h) = self.http {
                h.cleanup().await;
            }
        };
        let dns = async {
            if let Some(d) = self.dns {
                d.cleanup().await;
            }
        };
        tokio::join!(http, dns);
    }
}
