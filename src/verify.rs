//! THE verification policy: is this certificate, chain and key good for this lineage? One
//! answer used by `issue` before publishing, `install` (and so `serve --watch`), `rollback`
//! and `check` (local and `--fleet`), so that install refuses exactly what check calls
//! critical and check calls critical exactly what install refuses.
//!
//! Checks, in this order, each a small function that returns a [`Verdict`]:
//! PEM parses → key parses and is not encrypted → key matches the leaf → fullchain.pem's
//! first certificate is cert.pem's → each certificate is signed by the next → the chain ends
//! at a trusted root (Mozilla's roots as compiled into `webpki-roots`, plus `[acme] ca_roots`)
//! → validity window (5 min of clock skew) → CN and SAN set as planned → serverAuth EKU
//! (clientAuth where a node needs it) → not marked revoked in the store.
//!
//! The checks split where the data lives: [`check_files`] needs the bytes (the node that holds
//! the files runs it, and sends only the verdicts in its status), [`check_facts`] needs only
//! the public facts of the leaf, the plan and the clock (the fleet checker runs it). [`check`]
//! runs both. How bad a failure is comes from one table, [`Failure::level`].
//!
//! Not here: reading files (callers pass bytes: `install`, `drift`, `issue`), parsing facts
//! out of a certificate (`cert`), and what to do about a failure (install refuses, drift
//! reports and advises).
//!
//! Why webpki-roots and not /etc/ssl/certs: the same compiled-in set on every node and on the
//! host that runs `check --fleet`, so a verdict does not depend on which host computed it; it
//! is the set the ACME client already trusts (`acme::http_client`); and it needs no file I/O.
//! A CA outside it (a private or IGTF CA, Let's Encrypt staging, Pebble) goes in `ca_roots`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use x509_parser::prelude::*;

use crate::cert::{self, CertInfo, Problem, MAX_PEM_BYTES};
use crate::config::Config;
use crate::plan::Lineage;
use crate::store::{format_version, Version};

/// A certificate that is not yet valid is accepted this long before its notBefore: clocks of
/// the CA and the nodes differ a little.
pub(crate) const SKEW_SECS: i64 = 300;

/// One check of the policy. Declaration order is the order they run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Step {
    Pem,
    Key,
    KeyMatch,
    FullchainLeaf,
    Chain,
    Root,
    Validity,
    Names,
    Eku,
    Revoked,
}

/// What a failure means for the certificate's users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Level {
    /// Works for most uses; `check` warns, `install` installs.
    Warning,
    /// Clients or the service will fail; `check` is critical, `install` refuses.
    Critical,
}

/// Why a certificate fails one check. Each names the file it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "failure", rename_all = "snake_case")]
pub(crate) enum Failure {
    #[error("{file}: {why}")]
    Pem { file: String, why: String },
    #[error("{file}: {why}")]
    Key { file: String, why: String },
    #[error("{file} is an encrypted private key: services cannot read it unattended")]
    KeyEncrypted { file: String },
    #[error("the private key {key} does not belong to the certificate {cert}")]
    KeyMismatch { key: String, cert: String },
    #[error("{fullchain} is not the certificate of {cert} followed by {chain}")]
    FullchainLeaf {
        fullchain: String,
        cert: String,
        chain: String,
    },
    #[error("{file}: certificate {index} ({subject}) is not signed by the next one ({next})")]
    ChainBroken {
        file: String,
        index: usize,
        subject: String,
        next: String,
    },
    #[error("{file}: the chain ends at {subject}, issued by {issuer}, which is not a trusted root (Mozilla's roots or [acme] ca_roots): clients will reject it{hint}")]
    Untrusted {
        file: String,
        subject: String,
        issuer: String,
        hint: String,
    },
    #[error("{file}: expired at {}", crate::store::fmt_time(*not_after))]
    Expired {
        file: String,
        // Clamped when read from another node's status document (`unixtime`).
        #[serde(deserialize_with = "crate::unixtime::clamped")]
        not_after: i64,
    },
    #[error("{file}: not valid before {} (the node's clock or the certificate is wrong)", crate::store::fmt_time(*not_before))]
    NotYetValid {
        file: String,
        #[serde(deserialize_with = "crate::unixtime::clamped")]
        not_before: i64,
    },
    #[error("{file}: {}", wrong_cn(found.as_deref(), want))]
    WrongCn {
        file: String,
        found: Option<String>,
        want: String,
    },
    #[error("{file}: SAN set differs from the plan: missing {missing:?}, unexpected {extra:?}")]
    WrongSans {
        file: String,
        missing: Vec<String>,
        extra: Vec<String>,
    },
    #[error(
        "{file}: no serverAuth EKU (has {}): TLS clients refuse it as a server certificate",
        eku_list(eku)
    )]
    NoServerAuth { file: String, eku: Vec<String> },
    #[error("{file}: no clientAuth EKU (has {}) but a node has needs_client_auth = true: TLS client use (e.g. XRootD third-party copy) will fail", eku_list(eku))]
    NoClientAuth { file: String, eku: Vec<String> },
    #[error("{file}: this certificate is marked revoked in the store")]
    Revoked { file: String },
}

fn eku_list(eku: &[String]) -> String {
    if eku.is_empty() {
        "none".into()
    } else {
        eku.join(", ")
    }
}

impl Failure {
    /// THE severity table. Everything is critical but a missing clientAuth: Let's Encrypt
    /// stopped including it in 2026, and refusing every new certificate would break the
    /// server side, which is what most nodes use.
    pub(crate) fn level(&self) -> Level {
        match self {
            Failure::NoClientAuth { .. } => Level::Warning,
            _ => Level::Critical,
        }
    }

    /// The check this failure belongs to (the unit tests assert which checks failed).
    #[cfg(test)]
    fn step(&self) -> Step {
        match self {
            Failure::Pem { .. } => Step::Pem,
            Failure::Key { .. } | Failure::KeyEncrypted { .. } => Step::Key,
            Failure::KeyMismatch { .. } => Step::KeyMatch,
            Failure::FullchainLeaf { .. } => Step::FullchainLeaf,
            Failure::ChainBroken { .. } => Step::Chain,
            Failure::Untrusted { .. } => Step::Root,
            Failure::Expired { .. } | Failure::NotYetValid { .. } => Step::Validity,
            Failure::WrongCn { .. } | Failure::WrongSans { .. } => Step::Names,
            Failure::NoServerAuth { .. } | Failure::NoClientAuth { .. } => Step::Eku,
            Failure::Revoked { .. } => Step::Revoked,
        }
    }
}

/// The outcome of one check that ran: `None` when it passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Verdict {
    pub(crate) step: Step,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) failure: Option<Failure>,
}

fn verdict(step: Step, r: Result<(), Failure>) -> Verdict {
    Verdict {
        step,
        failure: r.err(),
    }
}

/// Every check that ran, in order; a check whose input is missing (no parsable certificate,
/// no key) did not run.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Verdicts {
    /// Facts of the leaf, when the certificate file parsed.
    pub(crate) leaf: Option<CertInfo>,
    pub(crate) verdicts: Vec<Verdict>,
}

impl Verdicts {
    pub(crate) fn failures(&self) -> impl Iterator<Item = &Failure> {
        self.verdicts.iter().filter_map(|v| v.failure.as_ref())
    }
    /// The first critical failure: why install refuses.
    pub(crate) fn refusal(&self) -> Option<&Failure> {
        self.failures().find(|f| f.level() == Level::Critical)
    }
}

/// A PEM text and the file name it came from (for messages).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Named<'a> {
    pub(crate) file: &'a str,
    pub(crate) bytes: &'a [u8],
}

/// What to verify.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Files<'a> {
    /// What a service serves: the leaf, then its intermediates (fullchain.pem, or an installed
    /// cert file).
    pub(crate) served: Named<'a>,
    /// The store's cert.pem and chain.pem: `served` must be exactly the one then the other.
    pub(crate) parts: Option<(Named<'a>, Named<'a>)>,
    /// Intermediates to append when `served` holds the leaf only (install.fullchain = false).
    pub(crate) intermediates: Option<Named<'a>>,
    /// The private key; None where it is not read (it did not read: an earlier finding says).
    pub(crate) key: Option<Named<'a>>,
}

/// What the plan expects of the leaf.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expect<'a> {
    pub(crate) lineage: &'a Lineage,
    /// Some node that installs this lineage has needs_client_auth = true.
    pub(crate) client_auth: bool,
    /// The store marks this certificate revoked.
    pub(crate) revoked: bool,
    /// Unix seconds.
    pub(crate) now: i64,
    /// `[acme] require_cn`: a certificate without a subject CN is refused (false: accepted
    /// when its SANs are the planned names; a CN, if present, must still be the lineage's).
    pub(crate) require_cn: bool,
}

/// A root certificate's subject and key, both DER with their SEQUENCE header.
#[derive(Debug, Clone)]
struct Anchor {
    subject: Vec<u8>,
    spki: Vec<u8>,
}

/// The trusted roots: Mozilla's (webpki-roots) plus `[acme] ca_roots`.
#[derive(Debug, Clone)]
pub(crate) struct Anchors {
    anchors: Vec<Anchor>,
    /// DER of the ca_roots certificates: a chain may end with the root itself.
    extra_der: Vec<Vec<u8>>,
}

/// A DER SEQUENCE around `content` (webpki-roots keeps names and keys without it).
fn der_sequence(content: &[u8]) -> Vec<u8> {
    let n = content.len();
    let mut out = vec![0x30];
    if n < 0x80 {
        out.push(n as u8);
    } else if n <= 0xff {
        out.extend([0x81, n as u8]);
    } else {
        out.extend([0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(content);
    out
}

impl Anchors {
    /// Mozilla's roots plus the certificates of `ca_roots_pem`.
    pub(crate) fn new(ca_roots_pem: Option<&[u8]>) -> Result<Anchors, Problem> {
        let mut anchors: Vec<Anchor> = webpki_roots::TLS_SERVER_ROOTS
            .iter()
            .map(|ta| Anchor {
                subject: der_sequence(&ta.subject),
                spki: der_sequence(&ta.subject_public_key_info),
            })
            .collect();
        let mut extra_der = Vec::new();
        if let Some(pem) = ca_roots_pem {
            for der in cert::pem_certs(pem)? {
                let (_, c) = X509Certificate::from_der(&der)
                    .map_err(|e| Problem::BadCertificate(e.to_string()))?;
                anchors.push(Anchor {
                    subject: c.subject().as_raw().to_vec(),
                    spki: c.public_key().raw.to_vec(),
                });
                extra_der.push(der);
            }
        }
        Ok(Anchors { anchors, extra_der })
    }

    /// The roots that verify lineage `lineage`'s certificates: Mozilla's plus the `ca_roots`
    /// of the CA it orders from (`[acme]`'s, which its fallbacks share, or its
    /// `[[acme.ca]]`'s); errors name the file and the key.
    pub(crate) fn of_lineage(cfg: &Config, lineage: &str) -> anyhow::Result<Anchors> {
        let acme = cfg.acme.for_ca(cfg.lineage_ca(lineage));
        match acme.ca_name() {
            None => Anchors::load(acme.ca_roots.as_deref()),
            Some(n) => {
                Anchors::load_as(acme.ca_roots.as_deref(), &format!("acme.ca {n:?} ca_roots"))
            }
        }
    }

    /// Read `[acme] ca_roots` (bounded) and build the anchors; errors name the file.
    pub(crate) fn load(ca_roots: Option<&Path>) -> anyhow::Result<Anchors> {
        Anchors::load_as(ca_roots, "acme.ca_roots")
    }

    /// `load`, with errors naming the file as the config key `key` (a dry run's
    /// `acme.staging_ca_roots`).
    pub(crate) fn load_as(ca_roots: Option<&Path>, key: &str) -> anyhow::Result<Anchors> {
        use anyhow::Context;
        let pem = match ca_roots {
            None => None,
            Some(p) => {
                let Some((dir, name)) = crate::safefs::split_path(p) else {
                    anyhow::bail!("{key} {} is not a file path", p.display())
                };
                let b = crate::safefs::Dir::open(dir)
                    .with_context(|| format!("cannot open the directory of {key} {}", p.display()))?
                    .read(name, 16 * MAX_PEM_BYTES)
                    .map_err(|e| anyhow::anyhow!("cannot read {key} {}: {e}", p.display()))?;
                Some(b)
            }
        };
        Anchors::new(pem.as_deref()).map_err(|e| {
            anyhow::anyhow!(
                "{key} {}: {e}",
                ca_roots
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )
        })
    }

    /// Is `c` (the last certificate of a chain) a trusted root, or signed by one?
    fn trusts(&self, der: &[u8], c: &X509Certificate) -> bool {
        if self.extra_der.iter().any(|d| d == der) {
            return true;
        }
        let issuer = c.issuer().as_raw();
        self.anchors.iter().any(|a| {
            a.subject == issuer
                && SubjectPublicKeyInfo::from_der(&a.spki)
                    .is_ok_and(|(_, k)| c.verify_signature(Some(&k)).is_ok())
        })
    }
}

/// Parse every CERTIFICATE block of `n`; an empty file, DER or garbage is a `Pem` failure.
fn parse_pem(n: Named) -> Result<Vec<Vec<u8>>, Failure> {
    let fail = |why: String| Failure::Pem {
        file: n.file.to_string(),
        why,
    };
    if n.bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(fail("the file is empty".into()));
    }
    if n.bytes.first() == Some(&0x30) {
        return Err(fail(
            "binary DER, not PEM: convert it with `openssl x509 -inform der`".into(),
        ));
    }
    let ders = cert::pem_certs(n.bytes).map_err(|p| fail(p.to_string()))?;
    for d in &ders {
        X509Certificate::from_der(d)
            .map_err(|e| fail(Problem::BadCertificate(e.to_string()).to_string()))?;
    }
    Ok(ders)
}

/// Step 1: the served file (and the store's parts) parse; the certificates to verify.
fn check_pem(f: &Files) -> Result<Vec<Vec<u8>>, Failure> {
    let mut ders = parse_pem(f.served)?;
    if let Some((c, ch)) = f.parts {
        parse_pem(c)?;
        // An empty chain.pem is legal (a CA that sends the leaf only).
        if !ch.bytes.iter().all(u8::is_ascii_whitespace) {
            parse_pem(ch)?;
        }
    }
    if ders.len() == 1 {
        if let Some(i) = f.intermediates {
            if !i.bytes.iter().all(u8::is_ascii_whitespace) {
                ders.extend(parse_pem(i)?);
            }
        }
    }
    Ok(ders)
}

/// Step 2: the key parses and is not encrypted; its SubjectPublicKeyInfo.
fn check_key(k: Named) -> Result<Vec<u8>, Failure> {
    let text = String::from_utf8_lossy(k.bytes);
    if text.contains("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(Failure::KeyEncrypted {
            file: k.file.to_string(),
        });
    }
    cert::key_spki(k.bytes).map_err(|p| Failure::Key {
        file: k.file.to_string(),
        why: p.to_string(),
    })
}

/// Step 3: the key belongs to the leaf.
fn check_key_match(leaf: &[u8], spki: &[u8], f: &Files, key: Named) -> Result<(), Failure> {
    let (_, c) = X509Certificate::from_der(leaf).expect("parsed in check_pem");
    if c.public_key().raw == spki {
        Ok(())
    } else {
        Err(Failure::KeyMismatch {
            key: key.file.to_string(),
            cert: f.served.file.to_string(),
        })
    }
}

/// Step 4: fullchain.pem is cert.pem followed by chain.pem.
fn check_fullchain(served: &[Vec<u8>], f: &Files) -> Result<(), Failure> {
    let Some((c, ch)) = f.parts else {
        return Ok(());
    };
    let mut want = parse_pem(c).unwrap_or_default();
    want.truncate(1);
    want.extend(parse_pem(ch).unwrap_or_default());
    if served == want.as_slice() {
        Ok(())
    } else {
        Err(Failure::FullchainLeaf {
            fullchain: f.served.file.to_string(),
            cert: c.file.to_string(),
            chain: ch.file.to_string(),
        })
    }
}

fn subject(c: &X509Certificate) -> String {
    c.subject().to_string()
}

/// Step 5: each certificate is signed by the next one.
fn check_chain(ders: &[Vec<u8>], file: &str) -> Result<(), Failure> {
    let certs: Vec<X509Certificate> = ders
        .iter()
        .map(|d| X509Certificate::from_der(d).expect("parsed in check_pem").1)
        .collect();
    for (i, pair) in certs.windows(2).enumerate() {
        if pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .is_err()
        {
            return Err(Failure::ChainBroken {
                file: file.to_string(),
                index: i,
                subject: subject(&pair[0]),
                next: subject(&pair[1]),
            });
        }
    }
    Ok(())
}

/// Step 6: the last certificate is a trusted root or signed by one.
fn check_root(ders: &[Vec<u8>], file: &str, anchors: &Anchors) -> Result<(), Failure> {
    let last = ders.last().expect("at least the leaf");
    let (_, c) = X509Certificate::from_der(last).expect("parsed in check_pem");
    if anchors.trusts(last, &c) {
        return Ok(());
    }
    let hint = if ders.len() == 1 && c.subject() != c.issuer() {
        "; the file holds the leaf only: is the intermediate missing?"
    } else if c.subject() == c.issuer() {
        "; it is self-signed"
    } else {
        "; if this CA is yours (a private CA, Let's Encrypt staging), add its root to [acme] ca_roots"
    };
    Err(Failure::Untrusted {
        file: file.to_string(),
        subject: subject(&c),
        issuer: c.issuer().to_string(),
        hint: hint.into(),
    })
}

/// Steps 1–6, on the bytes: what the node that holds the files computes.
pub(crate) fn check_files(f: &Files, anchors: &Anchors) -> Verdicts {
    let mut out = Verdicts::default();
    let ders = match check_pem(f) {
        Ok(d) => d,
        Err(e) => {
            out.verdicts.push(verdict(Step::Pem, Err(e)));
            return out;
        }
    };
    out.verdicts.push(verdict(Step::Pem, Ok(())));
    match cert::info_from_der(&ders[0]) {
        Ok(i) => out.leaf = Some(i),
        Err(p) => {
            // parse_pem parsed it; info_from_der only fails the same way.
            out.verdicts[0].failure = Some(Failure::Pem {
                file: f.served.file.to_string(),
                why: p.to_string(),
            });
            return out;
        }
    }
    if let Some(k) = f.key {
        match check_key(k) {
            Ok(spki) => {
                out.verdicts.push(verdict(Step::Key, Ok(())));
                out.verdicts.push(verdict(
                    Step::KeyMatch,
                    check_key_match(&ders[0], &spki, f, k),
                ));
            }
            Err(e) => out.verdicts.push(verdict(Step::Key, Err(e))),
        }
    }
    if f.parts.is_some() {
        out.verdicts
            .push(verdict(Step::FullchainLeaf, check_fullchain(&ders, f)));
    }
    out.verdicts
        .push(verdict(Step::Chain, check_chain(&ders, f.served.file)));
    out.verdicts.push(verdict(
        Step::Root,
        check_root(&ders, f.served.file, anchors),
    ));
    out
}

/// Step 7: within notBefore − skew … notAfter.
fn check_validity(leaf: &CertInfo, file: &str, now: i64) -> Result<(), Failure> {
    if now > leaf.not_after {
        return Err(Failure::Expired {
            file: file.into(),
            not_after: leaf.not_after,
        });
    }
    if now + SKEW_SECS < leaf.not_before {
        return Err(Failure::NotYetValid {
            file: file.into(),
            not_before: leaf.not_before,
        });
    }
    Ok(())
}

fn wrong_cn(found: Option<&str>, want: &str) -> String {
    match found {
        Some(f) => format!("CN is {:?}, the plan says {want:?}", Some(f)),
        // Let's Encrypt's tlsserver and shortlived profiles (and a CN over 64 characters)
        // give certificates without a subject CN; GSI matches on it.
        None => format!(
            "the certificate has no subject CN; the plan says {want:?} (GSI clients match on the CN): use a profile that keeps it (Let's Encrypt: \"classic\"; not tlsserver or shortlived)"
        ),
    }
}

/// Step 8: CN equal to the lineage's (or none at all, when `require_cn` is off), SAN set equal
/// to its names (order is the CA's choice).
pub(crate) fn check_names(
    leaf: &CertInfo,
    file: &str,
    lineage: &Lineage,
    require_cn: bool,
) -> Result<(), Failure> {
    let cn_ok = match leaf.cn.as_deref() {
        Some(cn) => cn == lineage.cn(),
        None => !require_cn,
    };
    if !cn_ok {
        return Err(Failure::WrongCn {
            file: file.into(),
            found: leaf.cn.clone(),
            want: lineage.cn().to_string(),
        });
    }
    let want = lineage.name_set();
    let have = leaf.san_set();
    if want != have {
        return Err(Failure::WrongSans {
            file: file.into(),
            missing: want.difference(&have).cloned().collect(),
            extra: have.difference(&want).cloned().collect(),
        });
    }
    Ok(())
}

/// Step 9: serverAuth, and clientAuth where a node needs it. A certificate without an EKU
/// extension may be used for anything (RFC 5280 §4.2.1.12).
fn check_eku(leaf: &CertInfo, file: &str, client_auth: bool) -> Result<(), Failure> {
    let has = |e: &str| leaf.eku.is_empty() || leaf.eku.iter().any(|x| x == e);
    if !has("serverAuth") {
        return Err(Failure::NoServerAuth {
            file: file.into(),
            eku: leaf.eku.clone(),
        });
    }
    if client_auth && !has("clientAuth") {
        return Err(Failure::NoClientAuth {
            file: file.into(),
            eku: leaf.eku.clone(),
        });
    }
    Ok(())
}

/// Step 10: not marked revoked in the store.
fn check_revoked(file: &str, revoked: bool) -> Result<(), Failure> {
    if revoked {
        Err(Failure::Revoked { file: file.into() })
    } else {
        Ok(())
    }
}

/// Steps 7–10, on the public facts of the leaf: what the fleet checker computes.
pub(crate) fn check_facts(leaf: &CertInfo, file: &str, want: &Expect) -> Vec<Verdict> {
    vec![
        verdict(Step::Validity, check_validity(leaf, file, want.now)),
        verdict(
            Step::Names,
            check_names(leaf, file, want.lineage, want.require_cn),
        ),
        verdict(Step::Eku, check_eku(leaf, file, want.client_auth)),
        verdict(Step::Revoked, check_revoked(file, want.revoked)),
    ]
}

/// What the plan expects of `lineage`'s certificate at time `now`: clientAuth when any node
/// that installs it needs it.
pub(crate) fn expect_for<'a>(
    cfg: &Config,
    lineage: &'a Lineage,
    revoked: bool,
    now: i64,
) -> Expect<'a> {
    Expect {
        lineage,
        client_auth: cfg
            .nodes
            .iter()
            .any(|n| n.needs_client_auth && lineage.nodes.contains(&n.hostname)),
        revoked,
        now,
        require_cn: cfg.acme.require_cn,
    }
}

/// The whole policy on a store version: fullchain.pem (what is served) must be cert.pem then
/// chain.pem, and pass every check with key.pem. What install and rollback refuse, and what
/// check calls a broken store.
pub(crate) fn check_version(v: &Version, anchors: &Anchors, want: &Expect) -> Verdicts {
    let dir = format!("store/{}/{}", v.lineage, format_version(v.number));
    let (fc, c, ch, k) = (
        format!("{dir}/fullchain.pem"),
        format!("{dir}/cert.pem"),
        format!("{dir}/chain.pem"),
        format!("{dir}/key.pem"),
    );
    let named = |file, bytes| Named { file, bytes };
    check(
        &Files {
            served: named(&fc, &v.fullchain_pem),
            parts: Some((named(&c, &v.cert_pem), named(&ch, &v.chain_pem))),
            intermediates: None,
            key: Some(named(&k, &v.key_pem)),
        },
        anchors,
        want,
    )
}

/// The whole policy.
pub(crate) fn check(f: &Files, anchors: &Anchors, want: &Expect) -> Verdicts {
    let mut v = check_files(f, anchors);
    if let Some(leaf) = &v.leaf {
        let facts = check_facts(leaf, f.served.file, want);
        v.verdicts.extend(facts);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair,
    };

    const NOW: i64 = 1_800_000_000;

    fn lineage() -> Lineage {
        Lineage {
            name: "vip.example.org".into(),
            names: vec!["vip.example.org".into(), "a.example.org".into()],
            nodes: vec![],
            ca: None,
        }
    }

    struct Ca {
        root: CertifiedIssuer<'static, KeyPair>,
        inter: CertifiedIssuer<'static, KeyPair>,
    }

    fn ca(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, format!("{name} root"));
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let root = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, format!("{name} inter"));
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let inter = CertifiedIssuer::signed_by(p, KeyPair::generate().unwrap(), &root).unwrap();
        Ca { root, inter }
    }

    /// (leaf PEM, intermediate PEM, key PEM) for `names`, valid around NOW.
    fn leaf(ca: &Ca, names: &[&str], eku: &[ExtendedKeyUsagePurpose]) -> (String, String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(DnType::CommonName, names[0]);
        p.not_before = ::time::OffsetDateTime::from_unix_timestamp(NOW - 86_400).unwrap();
        p.not_after = ::time::OffsetDateTime::from_unix_timestamp(NOW + 86_400).unwrap();
        p.extended_key_usages = eku.to_vec();
        let c = p.signed_by(&key, &ca.inter).unwrap();
        (c.pem(), ca.inter.pem(), key.serialize_pem())
    }

    fn run(served: &str, key: &str, roots: &Ca, client_auth: bool) -> Verdicts {
        let a = Anchors::new(Some(roots.root.pem().as_bytes())).unwrap();
        let l = lineage();
        check(
            &Files {
                served: Named {
                    file: "cert",
                    bytes: served.as_bytes(),
                },
                parts: None,
                intermediates: None,
                key: Some(Named {
                    file: "key",
                    bytes: key.as_bytes(),
                }),
            },
            &a,
            &Expect {
                lineage: &l,
                client_auth,
                revoked: false,
                now: NOW,
                require_cn: true,
            },
        )
    }

    fn steps(v: &Verdicts) -> Vec<Step> {
        v.failures().map(|f| f.step()).collect()
    }

    const SERVER: [ExtendedKeyUsagePurpose; 1] = [ExtendedKeyUsagePurpose::ServerAuth];

    #[test]
    fn a_certificate_without_cn_is_refused_naming_the_profile() {
        // What Let's Encrypt's tlsserver/shortlived profiles issue: SANs, no subject CN.
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![
            "vip.example.org".to_string(),
            "a.example.org".to_string(),
        ])
        .unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        let pem = p.self_signed(&key).unwrap().pem();
        let info = crate::cert::leaf_info(pem.as_bytes()).unwrap();
        let e = check_names(&info, "cert.pem", &lineage(), true).unwrap_err();
        assert!(matches!(e, Failure::WrongCn { found: None, .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("cert.pem: the certificate has no subject CN"),
            "{msg}"
        );
        assert!(msg.contains("\"classic\""), "{msg}");
        // `[acme] require_cn = false`: the same certificate passes, its SANs being the plan's;
        // a CN, when there is one, must still be the lineage's, and the SANs still count.
        check_names(&info, "cert.pem", &lineage(), false).unwrap();
        let mut wrong = info.clone();
        wrong.cn = Some("a.example.org".into());
        let e = check_names(&wrong, "cert.pem", &lineage(), false).unwrap_err();
        assert!(matches!(e, Failure::WrongCn { .. }), "{e:?}");
        let mut fewer = info.clone();
        fewer.sans.pop();
        let e = check_names(&fewer, "cert.pem", &lineage(), false).unwrap_err();
        assert!(matches!(e, Failure::WrongSans { .. }), "{e:?}");
    }

    #[test]
    fn good_chain_passes_every_step_in_order() {
        let ca = ca("t");
        let (c, i, k) = leaf(&ca, &["vip.example.org", "a.example.org"], &SERVER);
        let v = run(&format!("{c}{i}"), &k, &ca, false);
        let order: Vec<Step> = v.verdicts.iter().map(|v| v.step).collect();
        assert_eq!(
            order,
            [
                Step::Pem,
                Step::Key,
                Step::KeyMatch,
                Step::Chain,
                Step::Root,
                Step::Validity,
                Step::Names,
                Step::Eku,
                Step::Revoked
            ]
        );
        assert_eq!(v.refusal(), None, "{v:#?}");
        // The root itself at the end of the chain is trusted too.
        let v = run(&format!("{c}{i}{}", ca.root.pem()), &k, &ca, false);
        assert_eq!(v.refusal(), None, "{v:#?}");
    }

    #[test]
    fn untrusted_broken_and_truncated_chains() {
        let (ca1, ca2) = (ca("one"), ca("two"));
        let (c, i, k) = leaf(&ca1, &["vip.example.org", "a.example.org"], &SERVER);
        assert_eq!(
            steps(&run(&format!("{c}{i}"), &k, &ca2, false)),
            [Step::Root]
        );
        assert_eq!(steps(&run(&c, &k, &ca1, false)), [Step::Root]);
        let (_, i2, _) = leaf(&ca2, &["x.example.org"], &SERVER);
        assert_eq!(
            steps(&run(&format!("{c}{i2}"), &k, &ca1, false)),
            [Step::Chain, Step::Root]
        );
    }

    #[test]
    fn key_eku_and_pem_failures() {
        let ca = ca("t");
        let names = ["vip.example.org", "a.example.org"];
        let (c, i, k) = leaf(&ca, &names, &SERVER);
        let fc = format!("{c}{i}");
        let (_, _, k2) = leaf(&ca, &names, &SERVER);
        assert_eq!(steps(&run(&fc, &k2, &ca, false)), [Step::KeyMatch]);
        let enc =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(matches!(
            run(&fc, enc, &ca, false).refusal(),
            Some(Failure::KeyEncrypted { .. })
        ));
        // No clientAuth where needed: a warning, not a refusal.
        let v = run(&fc, &k, &ca, true);
        assert_eq!(steps(&v), [Step::Eku]);
        assert_eq!(v.refusal(), None);
        let (c3, i3, k3) = leaf(&ca, &names, &[ExtendedKeyUsagePurpose::ClientAuth]);
        assert!(matches!(
            run(&format!("{c3}{i3}"), &k3, &ca, false).refusal(),
            Some(Failure::NoServerAuth { .. })
        ));
        assert!(matches!(
            run("", &k, &ca, false).refusal(),
            Some(Failure::Pem { .. })
        ));
    }

    #[test]
    fn fullchain_must_be_cert_then_chain() {
        let ca = ca("t");
        let names = ["vip.example.org", "a.example.org"];
        let (c, i, k) = leaf(&ca, &names, &SERVER);
        let (c2, _, _) = leaf(&ca, &names, &SERVER);
        let a = Anchors::new(Some(ca.root.pem().as_bytes())).unwrap();
        let fc = format!("{c2}{i}");
        let v = check_files(
            &Files {
                served: Named {
                    file: "fullchain.pem",
                    bytes: fc.as_bytes(),
                },
                parts: Some((
                    Named {
                        file: "cert.pem",
                        bytes: c.as_bytes(),
                    },
                    Named {
                        file: "chain.pem",
                        bytes: i.as_bytes(),
                    },
                )),
                intermediates: None,
                key: Some(Named {
                    file: "key.pem",
                    bytes: k.as_bytes(),
                }),
            },
            &a,
        );
        assert_eq!(steps(&v), [Step::KeyMatch, Step::FullchainLeaf]);
    }

    #[test]
    fn mozilla_roots_are_usable_anchors() {
        let a = Anchors::new(None).unwrap();
        assert!(a.anchors.len() > 100);
        assert!(a
            .anchors
            .iter()
            .all(|x| SubjectPublicKeyInfo::from_der(&x.spki).is_ok()
                && X509Name::from_der(&x.subject).is_ok()));
    }
}
