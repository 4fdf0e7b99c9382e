//! What a certificate and key say: parse PEM, read CN, SANs, serial, dates, EKU and key type,
//! and the public key of a private key.
//!
//! It does not judge them: whether a pair is good for a lineage is the verification policy
//! (`verify`). It does no I/O.

use std::collections::BTreeSet;
use std::fmt;

use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;
use x509_parser::prelude::*;

/// Bounds for any PEM we accept (a chain of a few certificates is ~5 KiB; an RSA-4096 key ~3 KiB).
pub(crate) const MAX_PEM_BYTES: u64 = 64 * 1024;

/// Public facts of a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CertInfo {
    /// Subject CN, if any.
    pub cn: Option<String>,
    /// DNS SANs in certificate order.
    pub sans: Vec<String>,
    /// Serial number, lower-case hex without separators.
    pub(crate) serial: String,
    /// Unix seconds. Clamped into `unixtime`'s range however it is read (a certificate, a
    /// meta.json, another node's status), so differences of the two never overflow.
    #[serde(deserialize_with = "crate::unixtime::clamped")]
    pub not_before: i64,
    /// Unix seconds (notAfter), clamped the same way.
    #[serde(deserialize_with = "crate::unixtime::clamped")]
    pub not_after: i64,
    /// SHA-256 of the leaf DER, lower-case hex.
    pub(crate) sha256: String,
    /// Extended key usages present ("serverAuth", "clientAuth", ...).
    pub(crate) eku: Vec<String>,
    /// "rsa2048", "ecdsa-p256", ... as far as recognised.
    pub key_type: String,
    /// Issuer DN, for display.
    pub(crate) issuer: String,
    /// Authority key identifier (hex), for ARI certificate identifiers.
    pub(crate) aki: Option<String>,
}

impl CertInfo {
    /// notAfter − notBefore in seconds: renewal thresholds are fractions of this, never fixed days.
    pub fn lifetime_secs(&self) -> i64 {
        self.not_after - self.not_before
    }
    /// The DNS SANs as a set: the CA decides their order, so checks compare sets.
    pub fn san_set(&self) -> BTreeSet<String> {
        self.sans.iter().cloned().collect()
    }
}

/// Why a PEM text does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The text holds no `CERTIFICATE` block.
    #[error("no PEM certificate found")]
    NoCertificate,
    /// A certificate that does not parse, as PEM or as X.509 (the parser's reason).
    #[error("cannot parse certificate: {0}")]
    BadCertificate(String),
    /// The text holds no private key block.
    #[error("no PEM private key found")]
    NoKey,
    /// A private key that does not parse (the parser's reason).
    #[error("cannot parse private key: {0}")]
    BadKey(String),
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

/// SHA-256 of `der` (or any bytes), lower-case hex.
pub fn sha256_hex(der: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der).as_ref())
}

/// Facts of the first certificate in `pem` (the leaf of a fullchain).
pub fn leaf_info(pem: &[u8]) -> Result<CertInfo, Problem> {
    let ders = pem_certs(pem)?;
    info_from_der(&ders[0])
}

pub(crate) fn info_from_der(der: &[u8]) -> Result<CertInfo, Problem> {
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
        not_before: crate::unixtime::clamp(c.validity().not_before.timestamp()),
        not_after: crate::unixtime::clamp(c.validity().not_after.timestamp()),
        sha256: sha256_hex(der),
        eku,
        key_type,
        issuer: c.issuer().to_string(),
        aki,
    })
}

/// (AKI keyIdentifier bytes, DER serial bytes).
pub(crate) type AriParts = (Vec<u8>, Vec<u8>);

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

/// SubjectPublicKeyInfo DER of a PEM private key.
pub fn key_spki(key_pem: &[u8]) -> Result<Vec<u8>, Problem> {
    use rcgen::PublicKeyData;
    let text =
        std::str::from_utf8(key_pem).map_err(|_| Problem::BadKey("not UTF-8 text".into()))?;
    if !text.contains("PRIVATE KEY-----") {
        return Err(Problem::NoKey);
    }
    let kp = rcgen::KeyPair::from_pem(text).map_err(|e| Problem::BadKey(e.to_string()))?;
    Ok(kp.subject_public_key_info())
}

/// A leaf with only its serial and validity set (ECDSA P-256, no names): the schedule,
/// textfile and metrics tests need no more.
#[cfg(test)]
impl CertInfo {
    pub(crate) fn valid_between(serial: &str, not_before: i64, not_after: i64) -> CertInfo {
        CertInfo {
            cn: None,
            sans: vec![],
            serial: serial.into(),
            not_before,
            not_after,
            sha256: String::new(),
            eku: vec![],
            key_type: "ecdsa-p256".into(),
            issuer: String::new(),
            aki: None,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A self-signed certificate for `names` (first is CN) and its key, for unit tests.
    pub(crate) fn make(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        let c = p.self_signed(&key).unwrap();
        (c.pem(), key.serialize_pem())
    }

    #[test]
    fn facts_of_a_leaf() {
        let (c, k) = make(&["vip.example.org", "b.example.org", "a.example.org"]);
        let info = leaf_info(c.as_bytes()).unwrap();
        assert_eq!(info.cn.as_deref(), Some("vip.example.org"));
        assert_eq!(info.sans.len(), 3);
        assert_eq!(info.key_type, "ecdsa-p256");
        assert_eq!(info.sha256.len(), 64);
        assert!(key_spki(k.as_bytes()).is_ok());
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(leaf_info(b"x"), Err(Problem::NoCertificate));
        assert!(matches!(
            leaf_info(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(Problem::BadCertificate(_))
        ));
        assert_eq!(key_spki(b"hello"), Err(Problem::NoKey));
    }
}
