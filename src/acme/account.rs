//! The ACME account: created once and shared through the store (`accounts/`), found again by
//! its key, External Account Binding, the directory's `Date` for clock checks, and revocation.
//!
//! It does not decide when an account is made (`issue` does, after preflight) nor keep the
//! store's files (`store`).

use std::time::SystemTime;

use anyhow::{anyhow, bail, Context, Result};
use instant_acme::{Account, AccountCredentials, NewAccount};

use super::client::http_client;
use super::error::{
    acme_err, describe_problem, error_chain, problem_kind, resend_on_bad_nonce, AcmeError,
};
use crate::config::Config;
use crate::store::Store;

fn builder(cfg: &Config) -> Result<instant_acme::AccountBuilder> {
    Ok(Account::builder_with_http(http_client(&cfg.acme)?))
}

pub(crate) fn read_credentials(cfg: &Config, store: &Store) -> Result<Option<AccountCredentials>> {
    let host = cfg.acme.account_dir();
    let Some(json) = store.read_account(&host)? else {
        return Ok(None);
    };
    let creds = serde_json::from_slice(&json).with_context(|| {
        format!(
            "{} is not valid account credentials; move it aside and `vipcert issue` creates a new account",
            store.account_path(&host).display()
        )
    })?;
    Ok(Some(creds))
}

/// The stored account, without asking the CA whether it still knows it (only the directory is
/// fetched): enough for ARI, which needs no account. None when there is no account file.
pub(crate) async fn load_account(cfg: &Config, store: &Store) -> Result<Option<Account>> {
    let Some(creds) = read_credentials(cfg, store)? else {
        return Ok(None);
    };
    let ca = &cfg.acme.directory;
    let acc = builder(cfg)?
        .from_credentials(creds)
        .await
        .map_err(acme_err(ca, "reading its directory".into()))?;
    Ok(Some(acc))
}

/// Ask the CA for the account that holds the stored key (RFC 8555 §7.3.1 onlyReturnExisting).
/// An account the CA does not know, or one that is deactivated, is `AccountDoesNotExist`.
pub(crate) async fn find_by_key(
    cfg: &Config,
    creds: &AccountCredentials,
) -> Result<(Account, AccountCredentials), AcmeError> {
    let ca = cfg.acme.directory.as_str();
    let what = "looking up the account by its key";
    let der = creds.private_key().clone_key();
    // Checked once here for its own error; each re-send below needs a builder of its own.
    builder(cfg).map_err(|e| AcmeError::Other {
        ca: ca.to_string(),
        what: what.to_string(),
        detail: format!("{e:#}"),
    })?;
    let from_key = || async {
        let key = instant_acme::Key::from_pkcs8_der(der.clone_key())?;
        let b = builder(cfg).map_err(|e| instant_acme::Error::Other(e.into()))?;
        b.from_key(
            (key, rustls_pki_types::PrivateKeyDer::Pkcs8(der.clone_key())),
            ca.to_string(),
        )
        .await
    };
    match resend_on_bad_nonce!(from_key().await) {
        Ok(x) => Ok(x),
        // Pebble and Boulder answer `unauthorized` for a deactivated account's key.
        Err(instant_acme::Error::Api(p))
            if matches!(problem_kind(&p), "accountDoesNotExist" | "unauthorized") =>
        {
            Err(AcmeError::AccountDoesNotExist {
                ca: ca.to_string(),
                what: what.to_string(),
                detail: describe_problem(&p),
            })
        }
        Err(e) => Err(AcmeError::from_acme(ca, what, e)),
    }
}

/// The account to order with: the stored one if the CA still knows it (looked up by its key),
/// else a new one (the old file is moved aside and the change logged), else — no file yet — a
/// new one, saved exclusively so that every node shares one.
pub async fn account(cfg: &Config, store: &Store) -> Result<Account> {
    if let Some(acc) = existing_account(cfg, store).await? {
        return Ok(acc);
    }
    let host = cfg.acme.account_dir();
    if let Some(aside) = store.retire_account(&host)? {
        tracing::warn!(
            ca = %cfg.acme.directory,
            old = %aside.display(),
            "the CA no longer knows the account in {}; creating a new account",
            store.account_path(&host).display()
        );
    }
    create_account(cfg, store).await
}

/// The stored account as the CA knows it, found by its key; None when there is no stored
/// account or the CA no longer knows it (then [`account`] creates one). Never creates: `issue`
/// runs this beside preflight, and a new account waits until preflight has passed.
pub(crate) async fn existing_account(cfg: &Config, store: &Store) -> Result<Option<Account>> {
    let host = cfg.acme.account_dir();
    let Some(creds) = read_credentials(cfg, store)? else {
        return Ok(None);
    };
    match find_by_key(cfg, &creds).await {
        Ok((acc, found)) => {
            if id_url(&found) != id_url(&creds) {
                // The CA moved the account URL: keep the file current.
                store.replace_account(&host, &serde_json::to_vec_pretty(&found)?)?;
            }
            Ok(Some(acc))
        }
        Err(AcmeError::AccountDoesNotExist { detail, .. }) => {
            tracing::debug!(ca = %cfg.acme.directory, "account lookup: {detail}");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

async fn create_account(cfg: &Config, store: &Store) -> Result<Account> {
    let host = cfg.acme.account_dir();
    let ca = &cfg.acme.directory;
    let contact: Vec<&str> = cfg.acme.contact.iter().map(String::as_str).collect();
    let eab = cfg.acme.eab.as_ref().map(eab_key).transpose()?;
    let what = match &cfg.acme.eab {
        Some(e) => format!(
            "creating an account with External Account Binding, key id {:?} and the HMAC key in {}; if the CA refuses, check both against what the CA gave",
            e.kid,
            e.hmac_key_file.display()
        ),
        None => "creating an account".into(),
    };
    let new_account = NewAccount {
        contact: &contact,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, creds) = resend_on_bad_nonce!(
        builder(cfg)?
            .create(&new_account, ca.clone(), eab.as_ref())
            .await
    )
    .map_err(acme_err(ca, what))?;
    if store.save_account(&host, &serde_json::to_vec_pretty(&creds)?)? {
        tracing::info!(ca = %ca, "created ACME account {}", account.id());
        Ok(account)
    } else {
        // Lost a creation race: use the saved account so every node shares one.
        let creds = read_credentials(cfg, store)?
            .ok_or_else(|| anyhow!("the account file vanished while it was being created"))?;
        Ok(find_by_key(cfg, &creds).await?.0)
    }
}

/// The External Account Binding key: read from its file, which must be a regular file (not a
/// symlink) readable by its owner only, owned by root (or the user running vipcert), at most
/// 4 KiB (`secret_file`), holding one base64url HMAC key of at least 128 bits. The key is never logged.
pub(crate) fn eab_key(eab: &crate::config::Eab) -> Result<instant_acme::ExternalAccountKey> {
    let path = &eab.hmac_key_file;
    let name = || format!("acme.eab_hmac_key_file {}", path.display());
    let text = crate::secret_file::read(path, &name)?;
    let key = decode_hmac_key(&text, &name)?;
    Ok(instant_acme::ExternalAccountKey::new(eab.kid.clone(), &key))
}

/// One base64url HMAC key of at least 128 bits (padding and surrounding blanks allowed).
fn decode_hmac_key(text: &str, name: &dyn Fn() -> String) -> Result<Vec<u8>> {
    use base64::Engine as _;

    let b64 = text.trim().trim_end_matches('=');
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| {
            anyhow!(
                "{} does not hold a base64url HMAC key (letters, digits, '-' and '_' only)",
                name()
            )
        })?;
    if key.len() < 16 {
        bail!(
            "{} holds a key of {} bytes; the CA's HMAC keys are at least 16",
            name(),
            key.len()
        );
    }
    Ok(key)
}

/// The account URL inside stored credentials (instant-acme keeps the field private; its
/// serialized form has it as `id`).
pub(crate) fn id_url(creds: &AccountCredentials) -> Option<String> {
    serde_json::to_value(creds)
        .ok()?
        .get("id")?
        .as_str()
        .map(str::to_string)
}

/// The `Date` header of the CA's directory answer (RFC 9110 §6.6.1): how `check` and
/// `preflight` see this node's clock against the CA's. Reads no body; the caller bounds the
/// wait.
pub(crate) async fn directory_date(cfg: &Config) -> Result<SystemTime> {
    let req = axum::http::Request::get(cfg.acme.directory.as_str())
        .body(instant_acme::BodyWrapper::default())
        .context("the directory URL")?;
    let rsp = http_client(&cfg.acme)?
        .request(req)
        .await
        .map_err(|e| anyhow!("{}", error_chain(&e)))?;
    let date = rsp
        .parts
        .headers
        .get(axum::http::header::DATE)
        .context("its answer has no Date header")?;
    date.to_str()
        .ok()
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .with_context(|| format!("its Date header {date:?} is not an HTTP date"))
}

/// Largest directory object read whole (Let's Encrypt's is about 1 KiB).
const MAX_DIRECTORY: usize = 64 * 1024;

/// The CA's directory object (RFC 8555 §7.1.1), whole, at most [`MAX_DIRECTORY`] (within the
/// client's per-request deadline): instant-acme keeps its `meta` (`caaIdentities`) to itself.
pub(crate) async fn directory(cfg: &Config) -> Result<serde_json::Value> {
    let ca = cfg.acme.directory.as_str();
    let what = "reading its directory";
    let req = axum::http::Request::get(ca)
        .body(instant_acme::BodyWrapper::default())
        .context("the directory URL")?;
    let mut rsp = http_client(&cfg.acme)?
        .request(req)
        .await
        .map_err(|e| AcmeError::from_acme(ca, what, e))?;
    let status = rsp.parts.status;
    let body = rsp.body.into_bytes().await;
    let body = body.map_err(|e| anyhow!("the CA {ca} broke off its answer ({what}): {e}"))?;
    if !status.is_success() || body.len() > MAX_DIRECTORY {
        bail!(
            "the CA {ca} answered HTTP {status} with {} bytes ({what}): not a directory",
            body.len()
        );
    }
    serde_json::from_slice(&body)
        .with_context(|| format!("the CA {ca} sent a directory that is not JSON"))
}

/// What the CA said to a revocation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Revocation {
    Revoked,
    /// `alreadyRevoked`: the CA had revoked it before (an earlier, interrupted run).
    AlreadyRevoked,
}

/// Revoke the certificate `der` (RFC 8555 §7.6) with the account, giving RFC 5280 `reason`.
pub(crate) async fn revoke(
    cfg: &Config,
    account: &Account,
    der: &[u8],
    reason: instant_acme::RevocationReason,
) -> Result<Revocation, AcmeError> {
    let cert = rustls_pki_types::CertificateDer::from(der);
    let req = instant_acme::RevocationRequest {
        certificate: &cert,
        reason: Some(reason),
    };
    match resend_on_bad_nonce!(account.revoke(&req).await) {
        Ok(()) => Ok(Revocation::Revoked),
        Err(instant_acme::Error::Api(p)) if problem_kind(&p) == "alreadyRevoked" => {
            Ok(Revocation::AlreadyRevoked)
        }
        Err(e) => Err(AcmeError::from_acme(
            &cfg.acme.directory,
            "revoking the certificate",
            e,
        )),
    }
}
