//! One order's steps (`PlacedOrder`): new-order, the challenge each pending authorization
//! offers for the method asked for (as typed data, `Challenge`), set ready, poll, finalize
//! with our CSR (rcgen, explicit CN, names in planned order), download the chain.
//!
//! It does not answer a challenge (the solvers in `solve` do) nor wait for one to be served
//! (their barriers): `issue` drives these steps around them.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
};

use super::error::{acme_err, describe_problem, resend_on_bad_nonce, AcmeError, NameFailure};
use crate::config::{ChallengeKind, Config, KeyType};
use crate::plan::Lineage;
use crate::progress::Progress;

/// A fresh private key of `kt`.
pub(crate) fn generate_key(kt: KeyType) -> Result<rcgen::KeyPair> {
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
pub(crate) fn csr(names: &[String], key: &rcgen::KeyPair) -> Result<Vec<u8>> {
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
pub(crate) struct Finalized {
    pub(crate) cert_pem: String,
    pub(crate) chain_pem: String,
    pub(crate) key_pem: String,
    pub(crate) order_url: String,
}

/// Split a PEM chain into the leaf and the rest.
pub(crate) fn split_chain(pem: &str) -> Result<(String, String)> {
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
pub(crate) struct OrderRequest<'a> {
    pub(crate) lineage: &'a Lineage,
    /// The certificate this one replaces (ARI, RFC 9773), sent as `replaces`.
    pub(crate) replaces: Option<instant_acme::CertificateIdentifier<'static>>,
    /// The new private key, being generated while preflight and the CA work.
    pub(crate) key: tokio::task::JoinHandle<Result<rcgen::KeyPair>>,
}

/// One pending authorization's challenge, as the solver that answers it needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// The identifier (a DNS name) the authorization is for.
    pub(crate) name: String,
    pub(crate) answer: Answer,
}

/// What the CA will look for, per challenge type (RFC 8555 §8.3, §8.4; draft-ietf-acme-dns-persist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// http-01: `/.well-known/acme-challenge/<token>` on the name, holding the key
    /// authorization.
    Http01 {
        /// base64url only (checked): safe as a file name.
        token: String,
        key_authorization: String,
    },
    /// dns-01: a TXT record at `_acme-challenge.<name>` holding this value (base64url of the
    /// SHA-256 of the key authorization).
    Dns01 { txt: String },
    /// dns-persist-01: the persistent `_validation-persist.<name>` record answers; nothing is
    /// placed per order.
    DnsPersist01,
}

impl Answer {
    /// The challenge type this answers, as the CA names it.
    fn challenge_type(kind: ChallengeKind) -> ChallengeType {
        match kind {
            ChallengeKind::Http01 => ChallengeType::Http01,
            ChallengeKind::Dns01 => ChallengeType::Dns01,
            ChallengeKind::DnsPersist01 => ChallengeType::Unknown(kind.as_str().to_string()),
        }
    }
}

/// An order the CA accepted, every authorization fetched once; its steps, in the order
/// `issue` runs them: `place` → `challenges` → (the solvers answer them) → `set_ready`
/// → `poll_ready` → `finalize`. The authorization steps read the cached states and send
/// nothing but what they say.
pub(crate) struct PlacedOrder<'a> {
    order: instant_acme::Order,
    lineage: &'a Lineage,
    /// The CA's directory URL, which every error names.
    ca: &'a str,
    /// `[acme] timeout`: for the order to become ready, then for the certificate.
    timeout: Duration,
    key: tokio::task::JoinHandle<Result<rcgen::KeyPair>>,
    progress: &'a Progress,
    /// The challenge type picked for each pending authorization (`challenges`), which
    /// `set_ready` answers.
    picked: Vec<(String, ChallengeKind)>,
}

impl<'a> PlacedOrder<'a> {
    /// New-order for the lineage's names, with the configured profile (which `issue` has
    /// checked against the CA's offer, `offered_profile`, before any order there), then every
    /// authorization fetched once.
    pub(crate) async fn place(
        cfg: &'a Config,
        account: &Account,
        req: OrderRequest<'a>,
        progress: &'a Progress,
    ) -> Result<PlacedOrder<'a>> {
        let OrderRequest {
            lineage,
            replaces,
            key,
        } = req;
        let (l, ca) = (&lineage.name, cfg.acme.directory.as_str());
        let ids: Vec<Identifier> = lineage
            .names
            .iter()
            .map(|n| Identifier::Dns(n.clone()))
            .collect();
        let mut new_order = NewOrder::new(&ids);
        if let Some(r) = replaces {
            new_order = new_order.replaces(r);
        }
        // Checked once per CA before any order (`offered_profile`).
        if let Some(p) = &cfg.acme.profile {
            new_order = new_order.profile(p);
        }
        for n in &lineage.names {
            progress.step(l, n, "ordering");
        }
        let mut order = resend_on_bad_nonce!(account.new_order(&new_order).await)
            .map_err(acme_err(ca, format!("new order for {l} refused")))?;
        resend_on_bad_nonce!(fetch_authorizations(&mut order).await).map_err(acme_err(
            ca,
            format!("cannot fetch an authorization of {l}"),
        ))?;
        tracing::debug!(lineage = %l, url = %order.url(), "order created");
        Ok(PlacedOrder {
            order,
            lineage,
            ca,
            timeout: cfg.acme.timeout,
            key,
            progress,
            picked: Vec::new(),
        })
    }

    /// The challenge of every pending authorization: of the first type in `kinds_for(name)`
    /// the authorization offers; a valid one (reused by the CA) is already authorized and has
    /// none. Any other state, none of the types offered, or an http-01 token that is not
    /// base64url fails the order.
    pub(crate) async fn challenges(
        &mut self,
        kinds_for: impl Fn(&str) -> Vec<ChallengeKind>,
    ) -> Result<Vec<Challenge>> {
        let (l, ca) = (&self.lineage.name, self.ca);
        let mut out = Vec::new();
        let mut authzs = self.order.authorizations();
        while let Some(a) = authzs.next().await {
            let mut a = a.map_err(acme_err(
                ca,
                format!("cannot fetch an authorization of {l}"),
            ))?;
            let name = a.identifier().to_string();
            match a.status {
                AuthorizationStatus::Valid => {
                    self.progress.step(l, &name, "already authorized");
                    continue;
                }
                AuthorizationStatus::Pending => {}
                s => bail!(
                    "authorization for {name} is {s:?}; the CA will not validate it in this order"
                ),
            }
            let kinds = kinds_for(&name);
            let offered = kinds.iter().copied().find(|k| {
                let t = Answer::challenge_type(*k);
                a.challenges.iter().any(|c| c.r#type == t)
            });
            let Some(kind) = offered else {
                let wanted: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                bail!("the CA {ca} offers no {} challenge for {name}; choose another [challenge] type for it", wanted.join(" or "));
            };
            let ch = a
                .challenge(Answer::challenge_type(kind))
                .expect("offered: found above");
            let answer = match kind {
                ChallengeKind::Http01 => {
                    let token = ch.token.clone();
                    if !crate::store::valid_token(&token) {
                        bail!("the CA sent a challenge token for {name} that is not base64url ({} chars); refusing to write it", token.len());
                    }
                    let key_authorization = ch.key_authorization().as_str().to_string();
                    Answer::Http01 {
                        token,
                        key_authorization,
                    }
                }
                ChallengeKind::Dns01 => Answer::Dns01 {
                    txt: ch.key_authorization().dns_value(),
                },
                ChallengeKind::DnsPersist01 => Answer::DnsPersist01,
            };
            self.picked.push((name.clone(), kind));
            out.push(Challenge { name, answer });
        }
        Ok(out)
    }

    /// Tell the CA every pending challenge is ready (cached authorizations: no extra round
    /// trips).
    pub(crate) async fn set_ready(&mut self) -> Result<()> {
        let (l, ca) = (&self.lineage.name, self.ca);
        let mut authzs = self.order.authorizations();
        while let Some(a) = authzs.next().await {
            let mut a = a.map_err(acme_err(
                ca,
                format!("cannot fetch an authorization of {l}"),
            ))?;
            if a.status != AuthorizationStatus::Pending {
                continue;
            }
            let name = a.identifier().to_string();
            let Some(&(_, kind)) = self.picked.iter().find(|(n, _)| *n == name) else {
                bail!("no challenge was picked for {name} before asking the CA to validate it");
            };
            let mut ch = a
                .challenge(Answer::challenge_type(kind))
                .ok_or_else(|| anyhow!("no {kind} challenge for {name}"))?;
            resend_on_bad_nonce!(ch.set_ready().await)
                .map_err(acme_err(ca, format!("challenge for {name} refused")))?;
            self.progress.step(l, &name, "validating");
        }
        Ok(())
    }

    /// Wait until the CA has validated every name (`[acme] timeout`); if it failed some,
    /// an [`AcmeError::Validation`] saying which and what the CA saw.
    pub(crate) async fn poll_ready(&mut self) -> Result<()> {
        let l = &self.lineage.name;
        let status = resend_on_bad_nonce!(self.order.poll_ready(&retry_policy(self.timeout)).await)
            .map_err(acme_err(self.ca, format!("order for {l}")))?;
        if status != OrderStatus::Ready {
            let failures = self.validation_failures(status).await;
            return Err(AcmeError::Validation {
                ca: self.ca.to_string(),
                lineage: l.clone(),
                failures,
            }
            .into());
        }
        for n in &self.lineage.names {
            self.progress.step(l, n, "valid; finalizing");
        }
        Ok(())
    }

    /// Which names failed and what the CA saw (the order as a whole when no authorization
    /// says).
    async fn validation_failures(&mut self, status: OrderStatus) -> Vec<NameFailure> {
        let l = &self.lineage.name;
        let mut why = Vec::new();
        let mut authzs = self.order.authorizations();
        while let Some(Ok(mut a)) = authzs.next().await {
            let name = a.identifier().to_string();
            let _ = a.refresh().await;
            if a.status == AuthorizationStatus::Invalid {
                let err = a
                    .challenges
                    .iter()
                    .filter_map(|c| c.error.as_ref())
                    .map(describe_problem)
                    .next()
                    .unwrap_or_else(|| "no detail".into());
                self.progress.finish(l, &name, false, &err);
                why.push(NameFailure { name, detail: err });
            }
        }
        if why.is_empty() {
            why.push(NameFailure {
                name: l.clone(),
                detail: format!("the order is {status:?}"),
            });
        }
        why
    }

    /// Finalize with our CSR (for the key generated meanwhile) and download the chain.
    pub(crate) async fn finalize(mut self) -> Result<Finalized> {
        let (l, ca) = (&self.lineage.name, self.ca);
        let key = self.key.await.context("key generation task")??;
        let csr = csr(&self.lineage.names, &key)?;
        resend_on_bad_nonce!(self.order.finalize_csr(&csr).await)
            .map_err(acme_err(ca, format!("finalize of {l} refused")))?;
        let chain = resend_on_bad_nonce!(
            self.order
                .poll_certificate(&retry_policy(self.timeout))
                .await
        )
        .map_err(acme_err(ca, format!("certificate of {l}")))?;
        let (cert_pem, chain_pem) = split_chain(&chain)?;
        Ok(Finalized {
            cert_pem,
            chain_pem,
            key_pem: key.serialize_pem(),
            order_url: self.order.url().to_string(),
        })
    }
}

/// The configured profile of the CA of `cfg` against the profiles its directory offers
/// (`meta.profiles`, read once with the directory when the account was loaded): what `issue`
/// asks of each CA before it orders anything there. No profile configured: nothing to check.
pub(crate) fn offered_profile(cfg: &Config, account: &Account) -> Result<()> {
    let Some(profile) = &cfg.acme.profile else {
        return Ok(());
    };
    let mut offered: Vec<String> = account.profiles().map(|m| m.name.to_string()).collect();
    if offered.iter().any(|o| o == profile) {
        return Ok(());
    }
    offered.sort();
    Err(AcmeError::ProfileNotOffered {
        ca: cfg.acme.directory.clone(),
        profile: profile.clone(),
        key: cfg.acme.profile_key(),
        offered,
    }
    .into())
}

/// How the order and its certificate are polled. instant-acme sleeps before its first poll:
/// keep that short (Pebble answers within milliseconds; a slower CA stretches the backoff or
/// sends Retry-After).
fn retry_policy(timeout: Duration) -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(10))
        .backoff(1.5)
        .timeout(timeout)
}

/// Fetch the state of every authorization of a new order, each once; the steps that follow
/// read the cached states and send nothing (a failed fetch inside them would skip that
/// authorization). Run again after a `badNonce`, it fetches only what is still missing.
async fn fetch_authorizations(order: &mut instant_acme::Order) -> Result<(), instant_acme::Error> {
    let mut authzs = order.authorizations();
    while let Some(a) = authzs.next().await {
        a?;
    }
    Ok(())
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
    fn split_chain_separates_leaf() {
        let (a, _) = crate::cert::tests::make(&["a.example.org"]);
        let (b, _) = crate::cert::tests::make(&["b.example.org"]);
        let (leaf, rest) = split_chain(&format!("{a}\n{b}")).unwrap();
        assert_eq!(crate::cert::pem_certs(leaf.as_bytes()).unwrap().len(), 1);
        assert_eq!(crate::cert::pem_certs(rest.as_bytes()).unwrap().len(), 1);
        assert!(split_chain("nothing").is_err());
    }
}
