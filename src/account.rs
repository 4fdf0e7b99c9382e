//! `vipcert account show | update | rollover | deactivate`: the ACME account's life after
//! `issue` created it.
//!
//! Owns the order of steps of each subcommand (lease, ask the CA, save or move the account
//! file) and their report. It does not speak ACME itself (`acme`: lookup by key, the HTTP
//! client, error classification) nor lay out the shared directory (`store`).

use std::fmt::Write as _;

use anyhow::{bail, Result};

use crate::acme::{find_by_key, AcmeError};
use crate::config::Config;
use crate::escape::escape;
use crate::lease::Lease;
use crate::store::Store;

/// What to do with the account.
pub enum Action {
    /// Print the CA, the account URL, the key thumbprint, whether the CA knows it and the
    /// contacts it holds.
    Show,
    /// Replace the account's contact addresses at the CA (RFC 8555 §7.3.2).
    Update {
        /// "mailto:" addresses.
        contact: Vec<String>,
    },
    /// Replace the account key (RFC 8555 §7.3.5) and save it.
    Rollover,
    /// Deactivate the account at the CA (RFC 8555 §7.3.6) and move its file aside.
    Deactivate,
}

/// Lines to print and whether the command succeeded.
pub struct Report {
    /// Lines to print.
    pub text: String,
    /// Nothing failed.
    pub ok: bool,
}

/// Run `action` as `node` (the lease holder's name for the changing actions).
pub async fn run(cfg: &Config, store: &Store, node: &str, action: Action) -> Result<Report> {
    if let Action::Update { contact } = &action {
        // Refused before anything is sent or locked.
        for c in contact {
            if let Err(why) = crate::config::check_mailto(c) {
                bail!("--contact {why}");
            }
        }
    }
    if let Action::Show = action {
        return show(cfg, store).await;
    }
    store.init()?;
    // An order in flight signs with the account key: never change it under one.
    let lease = Lease::acquire_now(store, node, crate::lease::Timing::of(&cfg.renew))?;
    let res = change(cfg, store, action).await;
    lease.release_or_log();
    res
}

async fn show(cfg: &Config, store: &Store) -> Result<Report> {
    let host = cfg.acme.ca_host();
    let path = store.account_path(&host);
    let mut text = String::new();
    let _ = writeln!(text, "CA:      {}", cfg.acme.directory);
    let _ = writeln!(text, "file:    {}", path.display());
    let Some(creds) = crate::acme::read_credentials(cfg, store)? else {
        let _ = writeln!(
            text,
            "no account for this CA yet; `vipcert issue` creates one"
        );
        return Ok(Report { text, ok: false });
    };
    match find_by_key(cfg, &creds).await {
        Ok((acc, found)) => {
            let _ = writeln!(text, "account: {}", escape(acc.id()));
            let _ = writeln!(text, "key:     {} (JWK thumbprint)", acc.key_thumbprint());
            // The CA's own view: what `account update --contact` changed.
            let ok = match crate::account_object::fetch(cfg, &found).await {
                Ok(obj) => {
                    let _ = writeln!(
                        text,
                        "status:  {} (the CA knows this account)",
                        escape(&obj.status)
                    );
                    let _ = writeln!(text, "contact: {}", contacts(&obj.contact));
                    true
                }
                Err(e) => {
                    let _ = writeln!(text, "status:  the CA knows this account");
                    let _ = writeln!(text, "contact: unknown: {e:#}");
                    false
                }
            };
            Ok(Report { text, ok })
        }
        Err(AcmeError::AccountDoesNotExist { detail, .. }) => {
            let _ = writeln!(
                text,
                "account: {}",
                crate::acme::id_url(&creds).unwrap_or_default()
            );
            let _ = writeln!(
                text,
                "status:  the CA does not know this account ({detail}); the next `vipcert issue` or `renew` creates a new one"
            );
            Ok(Report { text, ok: false })
        }
        Err(e) => Err(e.into()),
    }
}

/// The contacts as one line, escaped (they are the CA's text): "none" when there are none.
fn contacts(c: &[String]) -> String {
    if c.is_empty() {
        return "none (the CA has no address to warn before expiry or of problems)".into();
    }
    c.iter().map(|x| escape(x)).collect::<Vec<_>>().join(", ")
}

async fn change(cfg: &Config, store: &Store, action: Action) -> Result<Report> {
    let host = cfg.acme.ca_host();
    let ca = cfg.acme.directory.as_str();
    let Some(creds) = crate::acme::read_credentials(cfg, store)? else {
        bail!(
            "no account for the CA {ca} in {}; `vipcert issue` creates one",
            store.account_path(&host).display()
        );
    };
    let (mut acc, _) = find_by_key(cfg, &creds).await?;

    let mut text = String::new();
    match action {
        Action::Show => unreachable!("handled without the lease"),
        Action::Update { contact } => {
            let c: Vec<&str> = contact.iter().map(String::as_str).collect();
            crate::acme::resend_on_bad_nonce!(acc.update_contacts(&c).await)
                .map_err(crate::acme::acme_err(ca, "updating the contacts".into()))?;
            let _ = writeln!(
                text,
                "account {}: contacts are now {}\nalso set [acme] contact in the config: new accounts use it",
                acc.id(),
                contact.join(", ")
            );
        }
        Action::Rollover => {
            let old = acc.key_thumbprint().to_string();
            let new = crate::acme::resend_on_bad_nonce!(acc.update_key().await).map_err(
                crate::acme::acme_err(ca, "rolling the account key over".into()),
            )?;
            // The CA already accepts only the new key: save it before anything else can fail.
            store.replace_account(&host, &serde_json::to_vec_pretty(&new)?)?;
            let _ = writeln!(
                text,
                "account {}: key rolled over ({old} -> {}); saved in {}",
                acc.id(),
                acc.key_thumbprint(),
                store.account_path(&host).display()
            );
        }
        Action::Deactivate => {
            let id = acc.id().to_string();
            // Not re-sent on `badNonce` beyond instant-acme's own re-sends: `deactivate`
            // consumes the account. Running the command again is safe.
            acc.deactivate()
                .await
                .map_err(crate::acme::acme_err(ca, "deactivating the account".into()))?;
            let aside = store.retire_account(&host)?;
            tracing::info!(ca, account = %id, "account deactivated");
            let _ = writeln!(
                text,
                "account {id} deactivated at {ca}; its file moved to {}; the next `vipcert issue` or `renew` creates a new account",
                aside.map(|p| p.display().to_string()).unwrap_or_default()
            );
        }
    }
    Ok(Report { text, ok: true })
}
