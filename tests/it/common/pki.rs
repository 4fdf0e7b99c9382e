//! The one rcgen certificate builder of the tests: a root → intermediate CA ([`Ca`]) that signs
//! leaves ([`Leaf`]) described by a [`Spec`] (names, validity, EKU, AKI), so that what tests
//! install, publish, check or serve over TLS is a real leaf + intermediate chain under a root
//! a client can trust. Used by the install/renew tests, the drift tests, the Pebble and ACME
//! stub HTTPS servers, and examples/drift-lab.rs (by #[path], so it needs nothing but itself).
//!
//! Not here: where certificates go (see `site`, `pebble`).

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SerialNumber,
};
use time::OffsetDateTime;

pub const DAY: i64 = 86_400;

/// A root and an intermediate; leaves are signed by the intermediate.
pub struct Ca {
    root: CertifiedIssuer<'static, KeyPair>,
    inter: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf as PEM texts, plus its DER (for TLS servers).
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    /// The intermediate: what an ACME CA returns after the leaf.
    pub chain_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
    pub chain_der: Vec<u8>,
    pub key_der: Vec<u8>,
}

impl Leaf {
    pub fn fullchain(&self) -> String {
        format!("{}{}", self.cert_pem, self.chain_pem)
    }

    /// A rustls server config that serves this leaf and its chain, without client auth.
    pub fn server_config(&self) -> std::sync::Arc<rustls::ServerConfig> {
        use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![
                    CertificateDer::from(self.cert_der.clone()),
                    CertificateDer::from(self.chain_der.clone()),
                ],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
            )
            .unwrap();
        std::sync::Arc::new(cfg)
    }
}

/// What a leaf should look like.
#[derive(Clone)]
pub struct Spec {
    pub cn: String,
    pub sans: Vec<String>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// serverAuth unless this is false (a certificate for something else: refused).
    pub server_auth: bool,
    /// clientAuth unless this is false (GridFTP nodes that act as clients need it).
    pub client_auth: bool,
    /// Authority key identifier: lets ARI name the certificate (RFC 9773 uses AKI + serial).
    pub aki: bool,
    /// An RSA-2048 key instead of ECDSA P-256 (GSI derives its proxy keys from the
    /// credential's RSA key size).
    pub rsa: bool,
}

impl Spec {
    /// A 90-day certificate issued 30 days ago for `cn` and `sans`, serverAuth + clientAuth,
    /// with an AKI.
    pub fn new(cn: &str, sans: &[String]) -> Spec {
        let now = OffsetDateTime::now_utc();
        Spec {
            cn: cn.into(),
            sans: sans.to_vec(),
            not_before: now - time::Duration::days(30),
            not_after: now + time::Duration::days(60),
            server_auth: true,
            client_auth: true,
            aki: true,
            rsa: false,
        }
    }

    /// `new` for `names`, the first of them the CN.
    pub fn names(names: &[&str]) -> Spec {
        let sans: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        Spec::new(names[0], &sans)
    }

    /// With an RSA-2048 key.
    pub fn rsa(mut self) -> Spec {
        self.rsa = true;
        self
    }

    /// Valid from `not_before` to `not_after`, in days relative to now.
    pub fn days(mut self, not_before: i64, not_after: i64) -> Spec {
        let now = OffsetDateTime::now_utc();
        self.not_before = now + time::Duration::days(not_before);
        self.not_after = now + time::Duration::days(not_after);
        self
    }

    /// Valid from `not_before` to `not_after`, in unix seconds.
    pub fn unix(mut self, not_before: i64, not_after: i64) -> Spec {
        self.not_before = OffsetDateTime::from_unix_timestamp(not_before).unwrap();
        self.not_after = OffsetDateTime::from_unix_timestamp(not_after).unwrap();
        self
    }
}

impl Ca {
    /// A root "`name` root" and its intermediate "`name` intermediate" (ECDSA P-256 keys).
    pub fn new(name: &str) -> Ca {
        Ca::with_keys(name, KeyPair::generate, KeyPair::generate)
    }

    /// `new` with RSA-2048 CA keys (GSI sizes the proxy keys it makes by them).
    pub fn new_rsa(name: &str) -> Ca {
        let rsa = || KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048);
        Ca::with_keys(name, rsa, rsa)
    }

    fn with_keys(
        name: &str,
        root_key: impl Fn() -> Result<KeyPair, rcgen::Error>,
        inter_key: impl Fn() -> Result<KeyPair, rcgen::Error>,
    ) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, format!("{name} root"));
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let root = CertifiedIssuer::self_signed(p, root_key().unwrap()).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, format!("{name} intermediate"));
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let inter = CertifiedIssuer::signed_by(p, inter_key().unwrap(), &root).unwrap();
        Ca { root, inter }
    }

    /// The root, PEM: what a client trusts (`ca_roots`).
    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    pub fn leaf(&self, s: &Spec) -> Leaf {
        let key = if s.rsa {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap()
        } else {
            KeyPair::generate().unwrap()
        };
        self.leaf_with_key(s, key)
    }

    /// `leaf` with a given key (e.g. RSA where the others are ECDSA).
    pub fn leaf_with_key(&self, s: &Spec, key: KeyPair) -> Leaf {
        let mut p = CertificateParams::new(s.sans.clone()).unwrap();
        p.distinguished_name.push(DnType::CommonName, s.cn.as_str());
        p.not_before = s.not_before;
        p.not_after = s.not_after;
        p.extended_key_usages = vec![];
        if s.server_auth {
            p.extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if s.client_auth {
            p.extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        p.use_authority_key_identifier_extension = s.aki;
        p.serial_number = Some(SerialNumber::from_slice(&serial()));
        let c = p.signed_by(&key, &self.inter).unwrap();
        Leaf {
            cert_pem: c.pem(),
            chain_pem: self.inter.pem(),
            key_pem: key.serialize_pem(),
            cert_der: c.der().to_vec(),
            chain_der: self.inter.der().to_vec(),
            key_der: key.serialize_der(),
        }
    }
}

impl Ca {
    /// Sign the DER CSR `csr` as an ACME CA would: its SANs and key, valid from an hour ago for
    /// 90 days, serverAuth + clientAuth; with the CSR's subject CN when `keep_cn`, else with an
    /// empty subject (what a `tlsserver`-like profile issues). Returns (leaf PEM, chain PEM).
    pub fn sign_csr(&self, csr: &[u8], keep_cn: bool) -> (String, String) {
        let mut req =
            rcgen::CertificateSigningRequestParams::from_der(&csr.to_vec().into()).unwrap();
        let p = &mut req.params;
        if !keep_cn {
            p.distinguished_name = rcgen::DistinguishedName::new();
        }
        let now = OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::hours(1);
        p.not_after = now + time::Duration::days(90);
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        p.serial_number = Some(SerialNumber::from_slice(&serial()));
        let c = req.signed_by(&self.inter).unwrap();
        (c.pem(), self.inter.pem())
    }
}

/// A self-signed leaf for `s` (no CA at all).
pub fn self_signed(s: &Spec) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(s.sans.clone()).unwrap();
    p.distinguished_name.push(DnType::CommonName, s.cn.as_str());
    p.not_before = s.not_before;
    p.not_after = s.not_after;
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let c = p.self_signed(&key).unwrap();
    Leaf {
        cert_pem: c.pem(),
        chain_pem: String::new(),
        key_pem: key.serialize_pem(),
        cert_der: c.der().to_vec(),
        chain_der: vec![],
        key_der: key.serialize_der(),
    }
}

/// A random positive 16-byte serial, explicit so that ARI ids stay distinct between leaves.
fn serial() -> [u8; 16] {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b[0] &= 0x7f;
    b[0] |= 0x01;
    b
}
