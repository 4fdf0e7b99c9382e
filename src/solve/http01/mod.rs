//! The http-01 solver: challenge files in the shared webroot (`WebrootFile`, removed on every
//! path), the readiness barrier (every node and the VIP serve every file before the CA is
//! told to validate), and HTTP-01 preflight (a probe file fetched through every path).
//!
//! Owns those files and waits; the probing itself is `probe`'s. It does not speak ACME
//! (`acme` hands out the challenges) nor sweep files a killed run left (`serve`'s sweeper).

mod probe;

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::config::Config;
use crate::plan::Plan;
use crate::progress::Progress;
use crate::store::Store;

use probe::{probe, random_token, Resolver};
pub use probe::{HttpProbe, ProbeReport};

/// Removes a file from the webroot when dropped (also on error paths and panics).
pub(crate) struct WebrootFile {
    dir: crate::safefs::Dir,
    name: String,
}

impl WebrootFile {
    pub(crate) fn create(store: &Store, name: &str, body: &str) -> Result<WebrootFile> {
        let dir = store.webroot()?;
        dir.replace_volatile(name, body.as_bytes(), 0o644)
            .map_err(crate::fs_error::at(
                "write",
                &store.webroot_path().join(name),
            ))?;
        Ok(WebrootFile {
            dir,
            name: name.to_string(),
        })
    }
}

impl Drop for WebrootFile {
    fn drop(&mut self) {
        let _ = self.dir.remove(&self.name);
    }
}

/// The challenge files of one order, each removed when this is dropped.
pub(crate) struct Presented {
    files: Vec<WebrootFile>,
    /// (token, key authorization) of each file: what the barrier fetches.
    served: Vec<(String, String)>,
}

/// Write each `(name, token, key authorization)` challenge of `lineage` into the shared
/// webroot. A file written before a failure is removed with it.
pub(crate) fn present(
    store: &Store,
    lineage: &str,
    challenges: &[(String, String, String)],
    progress: &Progress,
) -> Result<Presented> {
    let mut out = Presented {
        files: Vec::with_capacity(challenges.len()),
        served: Vec::with_capacity(challenges.len()),
    };
    for (name, token, key_authorization) in challenges {
        out.files
            .push(WebrootFile::create(store, token, key_authorization)?);
        out.served.push((token.clone(), key_authorization.clone()));
        let step = "challenge file written; waiting for every node to serve it";
        progress.step(lineage, name, step);
    }
    Ok(out)
}

impl Presented {
    /// The readiness barrier over these files (`barrier`).
    pub(crate) async fn barrier(&self, cfg: &Config, plan: &Plan, lineage: &str) -> Result<()> {
        barrier(cfg, plan, lineage, &self.served).await
    }

    /// Remove the files (on the disk or NFS: a blocking thread).
    pub(crate) async fn cleanup(self) {
        let files = self.files;
        let _ = tokio::task::spawn_blocking(move || drop(files)).await;
    }
}

/// HTTP-01 preflight (`vipcert preflight`): write a probe file, fetch it through every path,
/// remove it.
pub(crate) async fn preflight(cfg: &Config, plan: &Plan, store: &Store) -> Result<ProbeReport> {
    store.init()?;
    let http = crate::config::ChallengeKind::Http01;
    if !plan
        .all_names()
        .iter()
        .any(|n| cfg.challenge_for(n) == http)
    {
        return Ok(ProbeReport::default());
    }
    let token = random_token("vipcert-probe-");
    let body = random_token("");
    let _file = WebrootFile::create(store, &token, &body)?;
    let resolver = Resolver::new(cfg);
    Ok(probe(cfg, plan, &resolver, &[(token, body)], true).await)
}

/// How long the readiness barrier of one order waits for every node before the order fails
/// (and the CA was not asked to validate).
const BARRIER_DEADLINE: Duration = Duration::from_secs(90);

/// The readiness barrier of one order (`issue` runs it between writing the challenge files
/// and `set_ready`): every `(token, key authorization)` file of `lineage` served by every node
/// and the VIP within [`BARRIER_DEADLINE`], or an error with the table of what is not.
async fn barrier(
    cfg: &Config,
    plan: &Plan,
    lineage: &str,
    files: &[(String, String)],
) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    match wait_served(cfg, plan, files, BARRIER_DEADLINE).await {
        // How long the slowest node's cache hid a file: what NFS tuning is judged by.
        Ok(waited) => {
            tracing::info!(
                lineage = %lineage,
                waited_ms = waited.as_millis() as u64,
                "readiness barrier: every node serves every challenge file"
            );
            Ok(())
        }
        Err(report) => anyhow::bail!(
            "not every node serves the challenge files of {lineage} after {} s; the CA was not asked to validate.\n{}",
            BARRIER_DEADLINE.as_secs(),
            report.table(true)
        ),
    }
}

/// Wait until every endpoint serves every challenge file (NFS attribute caches can hide a new
/// file for up to a minute). Returns how long that took, or the last report on timeout.
async fn wait_served(
    cfg: &Config,
    plan: &Plan,
    files: &[(String, String)],
    deadline: Duration,
) -> Result<Duration, ProbeReport> {
    let resolver = Resolver::new(cfg);
    let start = Instant::now();
    let mut delay = Duration::from_millis(20);
    loop {
        let report = probe(cfg, plan, &resolver, files, false).await;
        if report.ok() {
            return Ok(start.elapsed());
        }
        if start.elapsed() + delay > deadline {
            return Err(report);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}
