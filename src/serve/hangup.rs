//! What SIGHUP (`systemctl reload vipcert-serve`) does to a running `serve`: take the status
//! document and the health verdict again at once, and say whether the configuration file
//! still is the one `serve` started with.
//!
//! Owns the loop and what it logs. It does not reload anything: listeners, limits and this
//! node's lineages are fixed at start (`serve::run`), so a changed file is named as needing a
//! restart.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use super::cache::NodeServer;
use crate::config::Config;

/// `serve` on SIGHUP (`systemctl reload vipcert-serve`): take the status and health verdicts
/// again at once, and say whether `config` is still the file `serve` started with (`started`,
/// its bytes then). `serve` does not reload its configuration — listeners, limits and this
/// node's lineages are fixed at start — so a changed file is named as needing a restart. The
/// default action of SIGHUP, exiting with 129 and no word, never happens once this runs.
pub(super) async fn hangup_loop(
    mut hup: tokio::signal::unix::Signal,
    server: NodeServer,
    config: PathBuf,
    started: Vec<u8>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = hup.recv() => if got.is_none() { return },
        }
        let (s, path) = (server.clone(), config.clone());
        let now = tokio::task::spawn_blocking(move || {
            s.refresh_status();
            s.refresh_health();
            std::fs::read(&path).map(|b| {
                let valid = Config::load(&path).map(drop);
                (b, valid)
            })
        })
        .await;
        let path = config.display();
        match now {
            Ok(Ok((b, _))) if b == started => {
                tracing::info!("SIGHUP: status and health taken again; {path} is unchanged")
            }
            Ok(Ok((_, Ok(())))) => tracing::warn!(
                "SIGHUP: status and health taken again; {path} changed since serve started, and serve does not reload its configuration: restart it to apply the change (systemctl restart vipcert-serve)"
            ),
            Ok(Ok((_, Err(e)))) => tracing::warn!(
                "SIGHUP: status and health taken again; {path} changed since serve started and is not valid, so serve goes on as it started: fix the file before restarting: {e:#}"
            ),
            Ok(Err(e)) => tracing::warn!(
                "SIGHUP: status and health taken again; cannot read {path} to compare: {e}"
            ),
            Err(e) => tracing::warn!("SIGHUP: the refresh task failed: {e}"),
        }
    }
}
