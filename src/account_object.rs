//! RFC 8555 §7.3 and §6.3: the account object as the CA holds it (status, contacts), fetched by
//! a POST-as-GET to the account URL. instant-acme drops every account body, so `account show`
//! had nothing to show the contacts from.
//!
//! Owns that one signed request: the JWS (ES256, the account URL as `kid`, a nonce from the
//! CA's `newNonce`), its re-send on `badNonce`, and a bounded read of each answer. The HTTP
//! client is `acme::http_client`'s (CA roots, status and Retry-After of error answers); the
//! key and URL are the stored credentials'; errors are worded by `acme::AcmeError`.

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use instant_acme::{AccountCredentials, BodyWrapper, BytesResponse, HttpClient};
use serde::Deserialize;

use crate::acme::AcmeError;
use crate::config::Config;

/// Largest answer read from the CA here (a directory or an account object is ~1 KiB).
const MAX_BODY: usize = 64 * 1024;
/// Re-sends after a `badNonce` answer (RFC 8555 §6.5: the CA did nothing with the request).
const BAD_NONCE_RESENDS: u32 = 5;
/// Contacts shown at most (a CA stores a handful; more is not an answer to trust whole).
const MAX_CONTACTS: usize = 32;

/// What the CA holds about the account.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct AccountObject {
    /// "valid", "deactivated" or "revoked".
    pub(crate) status: String,
    /// Contact URLs ("mailto:…"), as the CA holds them; none when absent.
    #[serde(default)]
    pub(crate) contact: Vec<String>,
}

/// Fetch the account object of `creds` from the CA of `cfg`, within `[acme] timeout`.
pub(crate) async fn fetch(cfg: &Config, creds: &AccountCredentials) -> Result<AccountObject> {
    let ca = cfg.acme.directory.as_str();
    tokio::time::timeout(cfg.acme.timeout, fetch_now(cfg, creds))
        .await
        .map_err(|_| {
            anyhow!(
                "the CA {ca} did not answer within {} (reading the account object; [acme] timeout)",
                humantime::format_duration(cfg.acme.timeout)
            )
        })?
}

async fn fetch_now(cfg: &Config, creds: &AccountCredentials) -> Result<AccountObject> {
    let ca = cfg.acme.directory.as_str();
    let url = crate::acme::id_url(creds).context("the stored credentials have no account URL")?;
    let key = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        creds.private_key().secret_pkcs8_der(),
    )
    .map_err(|e| anyhow!("the stored account key is not an ECDSA P-256 key: {e}"))?;
    let http = crate::acme::http_client(&cfg.acme)?;
    let dir = json(&*http, ca, Method::GET, ca, "reading its directory").await?;
    let new_nonce = dir["newNonce"]
        .as_str()
        .with_context(|| format!("the directory of the CA {ca} names no newNonce URL"))?;
    let (_, rsp) = send(&*http, ca, Method::HEAD, new_nonce, None, "getting a nonce").await?;
    let mut nonce = replay_nonce(&rsp)?;
    for _ in 0..=BAD_NONCE_RESENDS {
        let body = jws(&key, &url, &nonce)?;
        let what = "reading the account object";
        let (status, rsp) = send(&*http, ca, Method::POST, &url, Some(body), what).await?;
        let next = replay_nonce(&rsp);
        let bytes = read(rsp, ca, what).await?;
        if status.is_success() {
            let mut obj: AccountObject = serde_json::from_slice(&bytes)
                .with_context(|| format!("the CA {ca} sent an account object that is not one"))?;
            obj.contact.truncate(MAX_CONTACTS);
            return Ok(obj);
        }
        let problem: Option<instant_acme::Problem> = serde_json::from_slice(&bytes).ok();
        match problem {
            Some(p)
                if p.r#type
                    .as_deref()
                    .is_some_and(|t| t.ends_with(":badNonce")) =>
            {
                nonce = next?;
            }
            Some(p) => {
                return Err(AcmeError::from_acme(ca, what, instant_acme::Error::Api(p)).into())
            }
            None => bail!("the CA {ca} answered HTTP {status} ({what}) without a problem document"),
        }
    }
    bail!(
        "the CA {ca} refused {} nonces in a row (reading the account object)",
        BAD_NONCE_RESENDS + 1
    )
}

/// The flattened JWS of a POST-as-GET (empty payload) to `url` signed with `key`.
fn jws(key: &aws_lc_rs::signature::EcdsaKeyPair, url: &str, nonce: &str) -> Result<Vec<u8>> {
    let protected = serde_json::json!({"alg": "ES256", "kid": url, "nonce": nonce, "url": url});
    let protected = B64.encode(serde_json::to_vec(&protected)?);
    let input = format!("{protected}.");
    let sig = key
        .sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes())
        .map_err(|_| anyhow!("cannot sign with the account key"))?;
    let body = serde_json::json!({"protected": protected, "payload": "", "signature": B64.encode(sig.as_ref())});
    Ok(serde_json::to_vec(&body)?)
}

/// Send one request; the HTTP status and the answer (error answers instant-acme's way: a 429
/// or 5xx comes back as `AcmeError`, through `acme::http_client`'s wrapper).
async fn send(
    http: &dyn HttpClient,
    ca: &str,
    method: Method,
    url: &str,
    body: Option<Vec<u8>>,
    what: &str,
) -> Result<(StatusCode, BytesResponse)> {
    let mut req = Request::builder()
        .method(method)
        .uri(url)
        .header("user-agent", concat!("vipcert/", env!("CARGO_PKG_VERSION")));
    if body.is_some() {
        req = req.header("content-type", "application/jose+json");
    }
    let req = req
        .body(body.map(BodyWrapper::from).unwrap_or_default())
        .with_context(|| format!("cannot build a request to {url}"))?;
    let rsp = http
        .request(req)
        .await
        .map_err(|e| AcmeError::from_acme(ca, what, e))?;
    Ok((rsp.parts.status, rsp))
}

/// `send` without a body, then the answer as JSON; a non-2xx answer is an error.
async fn json(
    http: &dyn HttpClient,
    ca: &str,
    method: Method,
    url: &str,
    what: &str,
) -> Result<serde_json::Value> {
    let (status, rsp) = send(http, ca, method, url, None, what).await?;
    let bytes = read(rsp, ca, what).await?;
    if !status.is_success() {
        bail!("the CA {ca} answered HTTP {status} ({what})");
    }
    serde_json::from_slice(&bytes)
        .with_context(|| format!("the CA {ca} sent something that is not JSON ({what})"))
}

/// The answer's body, refused beyond `MAX_BODY`.
async fn read(mut rsp: BytesResponse, ca: &str, what: &str) -> Result<Bytes> {
    let b = rsp
        .body
        .into_bytes()
        .await
        .map_err(|e| anyhow!("the CA {ca} broke off its answer ({what}): {e}"))?;
    if b.len() > MAX_BODY {
        bail!(
            "the CA {ca} sent {} bytes ({what}); at most {MAX_BODY} are read",
            b.len()
        );
    }
    Ok(b)
}

fn replay_nonce(rsp: &BytesResponse) -> Result<String> {
    rsp.parts
        .headers
        .get("replay-nonce")
        .and_then(|v| v.to_str().ok())
        .filter(|n| !n.is_empty() && n.len() <= 256)
        .map(str::to_string)
        .context("the CA's answer carries no usable Replay-Nonce")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JWS verifies with the key's public half over exactly `protected + "." + ""`, and
    /// its header names the account, the nonce and the URL.
    #[test]
    fn post_as_get_is_a_valid_es256_jws() {
        use aws_lc_rs::signature::{
            EcdsaKeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
            ECDSA_P256_SHA256_FIXED_SIGNING,
        };
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let url = "https://ca.example/acct/1";
        let body: serde_json::Value =
            serde_json::from_slice(&jws(&key, url, "n0nce").unwrap()).unwrap();
        let protected = body["protected"].as_str().unwrap();
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(protected).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], url);
        assert_eq!(header["url"], url);
        assert_eq!(header["nonce"], "n0nce");
        assert_eq!(body["payload"], "");
        let sig = B64.decode(body["signature"].as_str().unwrap()).unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public_key().as_ref())
            .verify(format!("{protected}.").as_bytes(), &sig)
            .expect("signature verifies");
    }
}
