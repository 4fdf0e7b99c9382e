//! RFC 8555 on instant-acme: the HTTP client, the account (created once, shared through the
//! store), and one order from new-order to downloaded chain, with our own CSR.
//!
//! Owns the account → order → authorization → challenge → finalize sequence, the key and CSR
//! (rcgen, explicit CN, names in planned order) and the wording of CA errors. It does not
//! take the lease, run preflight or publish: `issue` does, around `Order::run`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};

use crate::config::{Config, KeyType};
use crate::plan::{Lineage, Plan};
use crate::preflight::WebrootFile;
use crate::progress::Progress;
use crate::store::Store;

/// An HTTPS client for the ACME server with TCP_NODELAY (instant-acme's default client stalls
/// ~40 ms per request on Nagle + delayed ACK), trusting the Mozilla roots plus `ca_roots`.
pub fn http_client(ca_roots: Option<&Path>) -> Result<Box<dyn instant_acme::HttpClient>> {
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::client::legacy::Client;
    use rustls_pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_roots {
        let mut n = 0;
        for c in rustls_pki_types::CertificateDer::pem_file_iter(path)
            .with_context(|| format!("cannot read acme.ca_roots {}", path.display()))?
        {
            let c = c.with_context(|| {
                format!(
                    "acme.ca_roots {} holds a bad PEM certificate",
                    path.display()
                )
            })?;
            roots.add(c).with_context(|| {
                format!("acme.ca_roots {}: certificate refused", path.display())
            })?;
            n += 1;
        }
        if n == 0 {
            bail!("acme.ca_roots {} holds no PEM certificate", path.display());
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS setup")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    let client: Client<_, instant_acme::BodyWrapper<bytes::Bytes>> =
        Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
    Ok(Box::new(NoteRetryAfter(Box::new(client))))
}

/// instant-acme drops the Retry-After header of an error answer (e.g. HTTP 429
/// `rateLimited`); this wrapper appends it to the problem's detail as
/// ` (retry after <RFC 3339 time>)`, so operators see it and `renew` can schedule from it
/// (`retry_after_in`).
struct NoteRetryAfter(Box<dyn instant_acme::HttpClient>);

impl instant_acme::HttpClient for NoteRetryAfter {
    fn request(
        &self,
        req: axum::http::Request<instant_acme::BodyWrapper<bytes::Bytes>>,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<instant_acme::BytesResponse, instant_acme::Error>,
                > + Send,
        >,
    > {
        let fut = self.0.request(req);
        Box::pin(async move {
            let mut rsp = fut.await?;
            let status = rsp.parts.status;
            if !(status.is_client_error() || status.is_server_error()) {
                return Ok(rsp);
            }
            let Some(at) = rsp
                .parts
                .headers
                .get(axum::http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()))
            else {
                return Ok(rsp);
            };
            let body = rsp
                .body
                .into_bytes()
                .await
                .map_err(instant_acme::Error::Other)?;
            Ok(instant_acme::BytesResponse {
                parts: rsp.parts,
                body: Box::new(note_detail(&body, at)),
            })
        })
    }
}

/// RFC 9110 Retry-After: delay-seconds or an HTTP-date.
pub fn parse_retry_after(v: &str, now: std::time::SystemTime) -> Option<std::time::SystemTime> {
    let v = v.trim();
    match v.parse::<u64>() {
        Ok(secs) => Some(now + Duration::from_secs(secs)),
        Err(_) => httpdate::parse_http_date(v).ok(),
    }
}

const RETRY_NOTE: &str = " (retry after ";

/// Append the retry time to the `detail` of a JSON problem document (unchanged if not JSON).
fn note_detail(body: &[u8], at: std::time::SystemTime) -> bytes::Bytes {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return bytes::Bytes::copy_from_slice(body);
    };
    let Some(obj) = v.as_object_mut() else {
        return bytes::Bytes::copy_from_slice(body);
    };
    let when = humantime::format_rfc3339_seconds(at);
    let detail = obj
        .get("detail")
        .and_then(|d| d.as_str())
        .unwrap_or("")
        .to_string();
    obj.insert(
        "detail".into(),
        serde_json::Value::String(format!("{detail}{RETRY_NOTE}{when})")),
    );
    serde_json::to_vec(&v)
        .map(bytes::Bytes::from)
        .unwrap_or_else(|_| bytes::Bytes::copy_from_slice(body))
}

/// The retry time `NoteRetryAfter` put into an error message, as unix seconds.
pub fn retry_after_in(msg: &str) -> Option<i64> {
    let i = msg.rfind(RETRY_NOTE)? + RETRY_NOTE.len();
    let end = msg[i..].find(')')? + i;
    let t = humantime::parse_rfc3339(&msg[i..end]).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64)
}

/// Explain an instant-acme error for an operator: the CA's problem type and detail, and
/// what to do for the usual ones.
pub fn describe(e: &instant_acme::Error) -> String {
    match e {
        instant_acme::Error::Api(p) => {
            let kind = p
                .r#type
                .as_deref()
                .unwrap_or("")
                .rsplit(':')
                .next()
                .unwrap_or("");
            let mut s = format!(
                "the CA said: {}",
                p.detail.as_deref().unwrap_or("(no detail)")
            );
            if !kind.is_empty() {
                s.push_str(&format!(" [{kind}]"));
            }
            for sp in &p.subproblems {
                s.push_str(&format!("; {sp}"));
            }
            let hint = match kind {
                "rateLimited" => " — a Let's Encrypt rate limit: wait for the time the CA gives; `vipcert renew` backs off by itself",
                "unauthorized" | "incorrectResponse" | "connection" | "dns" => {
                    " — the CA could not fetch the challenge: run `vipcert preflight` and check DNS, the VIP and acme.http_port"
                }
                "badNonce" => " — retry",
                "rejectedIdentifier" => " — the CA will not issue for this name",
                _ => "",
            };
            s.push_str(hint);
            s
        }
        instant_acme::Error::Timeout(_) => {
            "timed out waiting for the CA (raise acme.timeout?)".into()
        }
        other => {
            // hyper's errors hide the useful part ("connection refused") in their sources.
            let mut s = format!("cannot reach the CA: {other}");
            let mut src = std::error::Error::source(other);
            while let Some(e) = src {
                s.push_str(&format!(": {e}"));
                src = e.source();
            }
            s
        }
    }
}

fn acme_err(what: &str) -> impl Fn(instant_acme::Error) -> anyhow::Error + '_ {
    move |e| anyhow!("{what}: {}", describe(&e))
}

/// Load the account for this CA from the shared store, or create and save it (exclusively:
/// if another node created one at the same time, use theirs).
pub async fn account(cfg: &Config, store: &Store) -> Result<Account> {
    let ca_host = cfg.acme.ca_host();
    let builder = || -> Result<_> {
        Ok(Account::builder_with_http(http_client(
            cfg.acme.ca_roots.as_deref(),
        )?))
    };
    if let Some(json) = store.read_account(&ca_host)? {
        let creds: AccountCredentials = serde_json::from_slice(&json).with_context(|| {
            format!(
                "{} is not valid account credentials",
                store.account_path(&ca_host).display()
            )
        })?;
        return builder()?.from_credentials(creds).await.map_err(|e| {
            anyhow!(
                "cannot load the ACME account from {}: {}",
                store.account_path(&ca_host).display(),
                describe(&e)
            )
        });
    }
    let contact: Vec<&str> = cfg.acme.contact.iter().map(String::as_str).collect();
    let (account, creds) = builder()?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            cfg.acme.directory.clone(),
            None,
        )
        .await
        .map_err(|e| {
            anyhow!(
                "cannot create an ACME account at {}: {}",
                cfg.acme.directory,
                describe(&e)
            )
        })?;
    if store.save_account(&ca_host, &serde_json::to_vec_pretty(&creds)?)? {
        tracing::info!(ca = %ca_host, "created ACME account {}", account.id());
        Ok(account)
    } else {
        // Lost a creation race: use the saved account so every node shares one.
        Box::pin(self::account(cfg, store)).await
    }
}

/// A fresh private key of `kt`.
pub fn generate_key(kt: KeyType) -> Result<rcgen::KeyPair> {
    use rcgen::{RsaKeySize, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256};
    let k = match kt {
        KeyType::Rsa2048 => rcgen::KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048),
        KeyType::Rsa3072 => rcgen::KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_3072),
        KeyType::Rsa4096 => rcgen::KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_4096),
        KeyType::EcdsaP256 => rcgen::KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
        KeyType::EcdsaP384 => rcgen::KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384),
    };
    k.with_context(|| format!("cannot generate a {} key", kt.as_str()))
}

/// The CSR: subject CN = `names[0]` (GSI matches on it), SANs = `names` in this order.
pub fn csr(names: &[String], key: &rcgen::KeyPair) -> Result<Vec<u8>> {
    let mut p = rcgen::CertificateParams::new(names.to_vec()).context("CSR names")?;
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, names[0].as_str());
    Ok(p.serialize_request(key)
        .context("cannot sign the CSR")?
        .der()
        .to_vec())
}

/// What one successful order yields.
pub struct Issued {
    pub cert_pem: String,
    pub chain_pem: String,
    pub key_pem: String,
    pub order_url: String,
}

/// Split a PEM chain into the leaf and the rest.
pub fn split_chain(pem: &str) -> Result<(String, String)> {
    let end = "-----END CERTIFICATE-----";
    let i = pem
        .find(end)
        .ok_or_else(|| anyhow!("the CA returned no certificate"))?
        + end.len();
    let leaf = format!("{}\n", pem[..i].trim_start());
    let rest = pem[i..].trim_start().to_string();
    Ok((leaf, rest))
}

/// One order to place.
pub struct OrderRequest<'a> {
    pub lineage: &'a Lineage,
    /// The certificate this one replaces (ARI, RFC 9773), sent as `replaces`.
    pub replaces: Option<instant_acme::CertificateIdentifier<'static>>,
    /// The new private key, being generated while preflight and the CA work.
    pub key: tokio::task::JoinHandle<Result<rcgen::KeyPair>>,
}

/// Run one order: new-order, write every key authorization into the webroot, wait until
/// every node and the VIP serve them all, set every challenge ready, poll, finalize with our
/// CSR, download the chain. Challenge files are removed on every path.
pub async fn order(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    account: &Account,
    req: OrderRequest<'_>,
    progress: &Progress,
) -> Result<Issued> {
    let OrderRequest {
        lineage,
        replaces,
        key: keygen,
    } = req;
    let l = &lineage.name;

    let ids: Vec<Identifier> = lineage
        .names
        .iter()
        .map(|n| Identifier::Dns(n.clone()))
        .collect();
    let mut new_order = NewOrder::new(&ids);
    if let Some(r) = replaces {
        new_order = new_order.replaces(r);
    }
    for n in &lineage.names {
        progress.step(l, n, "ordering");
    }
    let mut order = account
        .new_order(&new_order)
        .await
        .map_err(acme_err(&format!("new order for {l} refused")))?;
    let order_url = order.url().to_string();
    tracing::debug!(lineage = %l, url = %order_url, "order created");

    // Authorizations: collect every pending http-01 challenge and write its file.
    let mut files: Vec<WebrootFile> = Vec::new();
    let mut expect: Vec<(String, String)> = Vec::new();
    {
        let mut authzs = order.authorizations();
        while let Some(a) = authzs.next().await {
            let mut a = a.map_err(acme_err(&format!("cannot fetch an authorization of {l}")))?;
            let name = a.identifier().to_string();
            match a.status {
                AuthorizationStatus::Valid => {
                    progress.step(l, &name, "already authorized");
                    continue;
                }
                AuthorizationStatus::Pending => {}
                s => bail!(
                    "authorization for {name} is {s:?}; the CA will not validate it in this order"
                ),
            }
            let ch = a
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| anyhow!("the CA offers no http-01 challenge for {name}"))?;
            let token = ch.token.clone();
            if !crate::challenge::valid_token(&token) {
                bail!("the CA sent a challenge token for {name} that is not base64url ({} chars); refusing to write it", token.len());
            }
            let ka = ch.key_authorization().as_str().to_string();
            files.push(WebrootFile::create(store, &token, &ka)?);
            expect.push((token, ka));
            progress.step(
                l,
                &name,
                "challenge file written; waiting for every node to serve it",
            );
        }
    }

    // Readiness barrier: NFS attribute caches may hide new files from some nodes for a while.
    if !expect.is_empty() {
        match crate::preflight::barrier(cfg, plan, &expect, Duration::from_secs(90)).await {
            // How long the slowest node's cache hid a file: what NFS tuning is judged by.
            Ok(waited) => tracing::info!(
                lineage = %l,
                waited_ms = waited.as_millis() as u64,
                "readiness barrier: every node serves every challenge file"
            ),
            Err(report) => bail!(
                "not every node serves the challenge files of {l} after 90 s; the CA was not asked to validate.\n{}",
                report.table(true)
            ),
        }
    }

    // Tell the CA every challenge is ready (cached authorizations: no extra round trips).
    {
        let mut authzs = order.authorizations();
        while let Some(a) = authzs.next().await {
            let mut a = a.map_err(acme_err(&format!("cannot fetch an authorization of {l}")))?;
            if a.status != AuthorizationStatus::Pending {
                continue;
            }
            let name = a.identifier().to_string();
            let mut ch = a
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| anyhow!("no http-01 challenge for {name}"))?;
            ch.set_ready()
                .await
                .map_err(acme_err(&format!("challenge for {name} refused")))?;
            progress.step(l, &name, "validating");
        }
    }

    // instant-acme sleeps before its first poll: keep that short (Pebble answers within
    // milliseconds; a slower CA stretches the backoff or sends Retry-After).
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(10))
        .backoff(1.5)
        .timeout(cfg.acme.timeout);
    let status = order
        .poll_ready(&retry)
        .await
        .map_err(acme_err(&format!("order for {l}")))?;
    if status != OrderStatus::Ready {
        // Say which names failed and what the CA saw.
        let mut why = Vec::new();
        let mut authzs = order.authorizations();
        while let Some(Ok(mut a)) = authzs.next().await {
            let name = a.identifier().to_string();
            let _ = a.refresh().await;
            if a.status == AuthorizationStatus::Invalid {
                let err = a
                    .challenges
                    .iter()
                    .filter_map(|c| c.error.as_ref())
                    .map(|p| describe(&instant_acme::Error::Api(p.clone())))
                    .next()
                    .unwrap_or_else(|| "no detail".into());
                progress.finish(l, &name, false, &err);
                why.push(format!("  {name}: {err}"));
            }
        }
        bail!("order for {l} is {status:?}:\n{}", why.join("\n"));
    }
    for n in &lineage.names {
        progress.step(l, n, "valid; finalizing");
    }
    // Removing the files waits on the disk (or NFS): do it while the CA finalizes, and
    // still before returning.
    let cleanup = tokio::task::spawn_blocking(move || drop(files));
    let res = finish(&mut order, lineage, keygen, &retry, order_url).await;
    let _ = cleanup.await;
    res
}

/// Finalize with our CSR and download the chain.
async fn finish(
    order: &mut instant_acme::Order,
    lineage: &Lineage,
    keygen: tokio::task::JoinHandle<Result<rcgen::KeyPair>>,
    retry: &RetryPolicy,
    order_url: String,
) -> Result<Issued> {
    let l = &lineage.name;
    let key = keygen.await.context("key generation task")??;
    let csr = csr(&lineage.names, &key)?;
    order
        .finalize_csr(&csr)
        .await
        .map_err(acme_err(&format!("finalize of {l} refused")))?;
    let chain = order
        .poll_certificate(retry)
        .await
        .map_err(acme_err(&format!("certificate of {l}")))?;
    let (cert_pem, chain_pem) = split_chain(&chain)?;
    Ok(Issued {
        cert_pem,
        chain_pem,
        key_pem: key.serialize_pem(),
        order_url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_has_cn_and_sans_in_order() {
        use x509_parser::prelude::FromDer;
        let key = generate_key(KeyType::EcdsaP256).unwrap();
        let names: Vec<String> = ["vip.example.org", "b.example.org", "a.example.org"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let der = csr(&names, &key).unwrap();
        let (_, req) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&der).unwrap();
        let cn = req
            .certification_request_info
            .subject
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(cn, "vip.example.org");
        let mut sans = Vec::new();
        for ext in req.requested_extensions().unwrap() {
            if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(s) = ext {
                for n in &s.general_names {
                    if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                        sans.push(d.to_string());
                    }
                }
            }
        }
        assert_eq!(sans, names);
    }

    #[test]
    fn rsa_key_sizes() {
        let k = generate_key(KeyType::Rsa2048).unwrap();
        let (c, _) = {
            let p = rcgen::CertificateParams::new(vec!["a.example.org".to_string()]).unwrap();
            (p.self_signed(&k).unwrap().pem(), ())
        };
        assert_eq!(
            crate::cert::leaf_info(c.as_bytes()).unwrap().key_type,
            "rsa2048"
        );
    }

    #[test]
    fn retry_after_is_noted_and_read_back() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = parse_retry_after("120", now).unwrap();
        assert_eq!(at, now + Duration::from_secs(120));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now).unwrap(),
            std::time::UNIX_EPOCH + Duration::from_secs(784111777)
        );
        assert!(parse_retry_after("soon", now).is_none());
        let body = br#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many","status":429}"#;
        let noted = note_detail(body, at);
        let p: instant_acme::Problem = serde_json::from_slice(&noted).unwrap();
        let msg = describe(&instant_acme::Error::Api(p));
        assert!(
            msg.contains("too many (retry after 2027-01-15T08:02:00Z)"),
            "{msg}"
        );
        assert!(msg.contains("[rateLimited]"), "{msg}");
        assert_eq!(retry_after_in(&msg), Some(1_800_000_120));
        assert_eq!(retry_after_in("no note"), None);
        assert_eq!(&note_detail(b"not json", at)[..], b"not json");
    }

    #[test]
    fn split_chain_separates_leaf() {
        let (a, _) = crate::cert::tests::make(&["a.example.org"]);
        let (b, _) = crate::cert::tests::make(&["b.example.org"]);
        let (leaf, rest) = split_chain(&format!("{a}\n{b}")).unwrap();
        assert_eq!(crate::cert::pem_certs(leaf.as_bytes()).unwrap().len(), 1);
        assert_eq!(crate::cert::pem_certs(rest.as_bytes()).unwrap().len(), 1);
        assert!(split_chain("nothing").is_err());
    }
}
