//! What a certificate and key say: parse PEM, read CN, SANs, serial, dates, EKU and key type,
//! check that a key belongs to a certificate and that the names are the planned ones.
//!
//! Owns the one definition of "this pair is good for this lineage" used before publishing
//! (`acme`), before installing (`install`) and when checking drift (`drift`). It does no I/O.

use std::collections::BTreeSet;
use std::fmt;

use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;
use x509_parser::prelude::*;

use crate::plan::Lineage;

/// Bounds for any PEM we accept (a chain of a few certificates is ~5 KiB; an RSA-4096 key ~3 KiB).
pub const MAX_PEM_BYTES: u64 = 64 * 1024;

/// Public facts of a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CertInfo {
    /// Subject CN, if any.
    pub cn: Option<String>,
    /// DNS SANs in certificate order.
    pub sans: Vec<String>,
    /// Serial number, lower-case hex without separators.
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// SHA-256 of the leaf DER, lower-case hex.
    pub sha256: String,
    /// Extended key usages present ("serverAuth", "clientAuth", ...).
    pub eku: Vec<String>,
    /// "rsa2048", "ecdsa-p256", ... as far as recognised.
    pub key_type: String,
    /// Issuer DN, for display.
    pub issuer: String,
    /// Authority key identifier (hex), for ARI certificate identifiers.
    pub aki: Option<String>,
}

impl CertInfo {
    pub fn lifetime_secs(&self) -> i64 {
        self.not_after - self.not_before
    }
    pub fn san_set(&self) -> BTreeSet<String> {
        self.sans.iter().cloned().collect()
    }
    pub fn has_client_auth(&self) -> bool {
        self.eku.iter().any(|e| e == "clientAuth")
    }
}

/// Why a pair is not good for a lineage. Install and drift report these verbatim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("no PEM certificate found")]
    NoCertificate,
    #[error("cannot parse certificate: {0}")]
    BadCertificate(String),
    #[error("no PEM private key found")]
    NoKey,
    #[error("cannot parse private key: {0}")]
    BadKey(String),
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
    #[error("{}", wrong_cn(found.as_deref(), want))]
    WrongCn { found: Option<String>, want: String },
    #[error("SAN set differs from the plan: missing {missing:?}, unexpected {extra:?}")]
    WrongSans {
        missing: Vec<String>,
        extra: Vec<String>,
    },
}

/// All `CERTIFICATE` blocks of a PEM text, as DER.
pub fn pem_certs(pem: &[u8]) -> Result<Vec<Vec<u8>>, Problem> {
    let mut out = Vec::new();
    for p in Pem::iter_from_buffer(pem) {
        let p = p.map_err(|e| Problem::BadCertificate(e.to_string()))?;
        if p.label == "CERTIFICATE" {
            out.push(p.contents);
        }
    }
    if out.is_empty() {
        return Err(Problem::NoCertificate);
    }
    Ok(out)
}

fn hex(b: &[u8]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

pub fn sha256_hex(der: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der).as_ref())
}

/// Facts of the first certificate in `pem` (the leaf of a fullchain).
pub fn leaf_info(pem: &[u8]) -> Result<CertInfo, Problem> {
    let ders = pem_certs(pem)?;
    info_from_der(&ders[0])
}

pub fn info_from_der(der: &[u8]) -> Result<CertInfo, Problem> {
    let (_, c) =
        X509Certificate::from_der(der).map_err(|e| Problem::BadCertificate(e.to_string()))?;
    let cn = c
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_string);
    let mut sans = Vec::new();
    let mut eku = Vec::new();
    let mut aki = None;
    for ext in c.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for n in &san.general_names {
                    if let GeneralName::DNSName(d) = n {
                        sans.push(d.to_string());
                    }
                }
            }
            ParsedExtension::ExtendedKeyUsage(e) => {
                if e.server_auth {
                    eku.push("serverAuth".into());
                }
                if e.client_auth {
                    eku.push("clientAuth".into());
                }
                if e.code_signing {
                    eku.push("codeSigning".into());
                }
                if e.email_protection {
                    eku.push("emailProtection".into());
                }
            }
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = a.key_identifier.as_ref().map(|k| hex(k.0));
            }
            _ => {}
        }
    }
    let spki = c.public_key();
    let key_type = match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(r)) => format!("rsa{}", r.key_size()),
        Ok(x509_parser::public_key::PublicKey::EC(p)) => match p.key_size() {
            256 => "ecdsa-p256".into(),
            384 => "ecdsa-p384".into(),
            n => format!("ecdsa-{n}"),
        },
        _ => "unknown".into(),
    };
    Ok(CertInfo {
        cn,
        sans,
        serial: hex(c.raw_serial()).trim_start_matches("00").to_string(),
        not_before: c.validity().not_before.timestamp(),
        not_after: c.validity().not_after.timestamp(),
        sha256: sha256_hex(der),
        eku,
        key_type,
        issuer: c.issuer().to_string(),
        aki,
    })
}

/// (AKI keyIdentifier bytes, DER serial bytes).
pub type AriParts = (Vec<u8>, Vec<u8>);

/// The raw AKI keyIdentifier and DER serial bytes of the leaf in `pem`: the two halves of an
/// ARI certificate identifier (RFC 9773 §4.1). None when the certificate has no AKI.
pub fn ari_parts(pem: &[u8]) -> Result<Option<AriParts>, Problem> {
    let ders = pem_certs(pem)?;
    let (_, c) =
        X509Certificate::from_der(&ders[0]).map_err(|e| Problem::BadCertificate(e.to_string()))?;
    let aki = c
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        });
    Ok(aki.map(|a| (a, c.tbs_certificate.raw_serial().to_vec())))
}

/// SubjectPublicKeyInfo DER of the leaf in `cert_pem`.
fn leaf_spki(cert_pem: &[u8]) -> Result<Vec<u8>, Problem> {
    let ders = pem_certs(cert_pem)?;
    let (_, c) =
        X509Certificate::from_der(&ders[0]).map_err(|e| Problem::BadCertificate(e.to_string()))?;
    Ok(c.public_key().raw.to_vec())
}

/// SubjectPublicKeyInfo DER of a PEM private key.
fn key_spki(key_pem: &[u8]) -> Result<Vec<u8>, Problem> {
    use rcgen::PublicKeyData;
    let text =
        std::str::from_utf8(key_pem).map_err(|_| Problem::BadKey("not UTF-8 text".into()))?;
    if !text.contains("PRIVATE KEY-----") {
        return Err(Problem::NoKey);
    }
    let kp = rcgen::KeyPair::from_pem(text).map_err(|e| Problem::BadKey(e.to_string()))?;
    Ok(kp.subject_public_key_info())
}

/// Does `key_pem` hold the private key of the leaf in `cert_pem`?
pub fn key_matches(cert_pem: &[u8], key_pem: &[u8]) -> Result<(), Problem> {
    let c = leaf_spki(cert_pem)?;
    let k = key_spki(key_pem)?;
    if c == k {
        Ok(())
    } else {
        Err(Problem::KeyMismatch)
    }
}

/// CN equal to the lineage's CN, SAN set equal to its names (order is the CA's choice).
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

pub fn names_match(info: &CertInfo, lineage: &Lineage) -> Result<(), Problem> {
    if info.cn.as_deref() != Some(lineage.cn()) {
        return Err(Problem::WrongCn {
            found: info.cn.clone(),
            want: lineage.cn().to_string(),
        });
    }
    let want = lineage.name_set();
    let have = info.san_set();
    if want != have {
        return Err(Problem::WrongSans {
            missing: want.difference(&have).cloned().collect(),
            extra: have.difference(&want).cloned().collect(),
        });
    }
    Ok(())
}

/// The whole check: parses, key matches, names as planned. Returns the leaf's facts.
pub fn verify_pair(
    cert_pem: &[u8],
    key_pem: &[u8],
    lineage: &Lineage,
) -> Result<CertInfo, Problem> {
    let info = leaf_info(cert_pem)?;
    key_matches(cert_pem, key_pem)?;
    names_match(&info, lineage)?;
    Ok(info)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A self-signed certificate for `names` (first is CN) and its key, for unit tests.
    pub fn make(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        let c = p.self_signed(&key).unwrap();
        (c.pem(), key.serialize_pem())
    }

    fn lineage(names: &[&str]) -> Lineage {
        Lineage {
            name: names[0].into(),
            names: names.iter().map(|s| s.to_string()).collect(),
            nodes: vec![],
        }
    }

    #[test]
    fn good_pair_verifies_in_any_san_order() {
        let (c, k) = make(&["vip.example.org", "b.example.org", "a.example.org"]);
        let info = verify_pair(
            c.as_bytes(),
            k.as_bytes(),
            &lineage(&["vip.example.org", "a.example.org", "b.example.org"]),
        )
        .unwrap();
        assert_eq!(info.cn.as_deref(), Some("vip.example.org"));
        assert_eq!(info.key_type, "ecdsa-p256");
        assert_eq!(info.sha256.len(), 64);
    }

    #[test]
    fn a_certificate_without_cn_is_refused_naming_the_profile() {
        // What Let's Encrypt's tlsserver/shortlived profiles issue: SANs, no subject CN.
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec![
            "vip.example.org".to_string(),
            "a.example.org".to_string(),
        ])
        .unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        let c = p.self_signed(&key).unwrap().pem();
        let l = lineage(&["vip.example.org", "a.example.org"]);
        let e = verify_pair(c.as_bytes(), key.serialize_pem().as_bytes(), &l).unwrap_err();
        assert!(matches!(e, Problem::WrongCn { found: None, .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("no subject CN"), "{msg}");
        assert!(msg.contains("classic"), "{msg}");
    }

    #[test]
    fn wrong_key_wrong_cn_missing_san() {
        let (c, _) = make(&["vip.example.org", "a.example.org"]);
        let (_, k2) = make(&["vip.example.org", "a.example.org"]);
        assert_eq!(
            key_matches(c.as_bytes(), k2.as_bytes()),
            Err(Problem::KeyMismatch)
        );
        let info = leaf_info(c.as_bytes()).unwrap();
        assert!(matches!(
            names_match(&info, &lineage(&["a.example.org", "vip.example.org"])),
            Err(Problem::WrongCn { .. })
        ));
        match names_match(
            &info,
            &lineage(&["vip.example.org", "a.example.org", "b.example.org"]),
        ) {
            Err(Problem::WrongSans { missing, extra }) => {
                assert_eq!(missing, vec!["b.example.org".to_string()]);
                assert!(extra.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(leaf_info(b"x"), Err(Problem::NoCertificate));
        assert!(matches!(
            leaf_info(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(Problem::BadCertificate(_))
        ));
        let (c, _) = make(&["vip.example.org"]);
        assert_eq!(key_matches(c.as_bytes(), b"hello"), Err(Problem::NoKey));
    }
}
