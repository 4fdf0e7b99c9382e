//! `serve`'s webroot sweeper: challenge and probe files a killed `issue` or `preflight` left
//! behind are removed within a minute of going stale, so that the webroot holds no answer
//! forever.
//!
//! Owns only the loop and its period; what is stale and which files are ours (the token
//! pattern) are the store's (`STALE_CHALLENGE`, `valid_token`, `Store::sweep_webroot`).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::{valid_token, Store, STALE_CHALLENGE};

/// How often `serve` sweeps the webroot.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// `serve`'s sweeper: remove stale challenge/probe files now and every minute until shutdown.
pub(super) async fn sweep_loop(store: Store, shutdown: CancellationToken) {
    loop {
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.sweep_webroot(STALE_CHALLENGE, valid_token))
            .await
        {
            Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "cannot sweep the webroot"),
            Err(e) => tracing::warn!(error = %e, "webroot sweep task failed"),
            Ok(Ok(_)) => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
        }
    }
}
