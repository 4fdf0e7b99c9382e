//! A drift lab on real files: a small CA made with rcgen (root → intermediate → leaves, so
//! there is a real chain), a config, a real shared store filled with `Store::publish`, and
//! per-node install roots written the way `vipcert install` writes them. Shared by
//! tests/drift.rs and examples/drift-lab.rs (the `check --fleet` benchmark).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use vipcert::config::Config;
use vipcert::plan::Plan;
use vipcert::safefs::Dir;
use vipcert::store::{Issued, Meta, Store};

pub const DAY: i64 = 86_400;

/// A root and an intermediate; leaves are signed by the intermediate.
pub struct Ca {
    inter: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf as PEM texts, plus its DER (for TLS servers).
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
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
}

/// What a leaf should look like.
pub struct Spec<'a> {
    pub cn: &'a str,
    pub sans: Vec<String>,
    /// Days relative to now.
    pub not_before_days: i64,
    pub not_after_days: i64,
    pub client_auth: bool,
}

impl<'a> Spec<'a> {
    /// A 90-day certificate issued 30 days ago, serverAuth + clientAuth.
    pub fn new(cn: &'a str, sans: &[String]) -> Self {
        Spec {
            cn,
            sans: sans.to_vec(),
            not_before_days: -30,
            not_after_days: 60,
            client_auth: true,
        }
    }
}

impl Ca {
    pub fn new() -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "vipcert drift test root");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let root = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "vipcert drift test intermediate");
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let inter = CertifiedIssuer::signed_by(p, KeyPair::generate().unwrap(), &root).unwrap();
        Ca { inter }
    }

    pub fn leaf(&self, s: &Spec) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(s.sans.clone()).unwrap();
        p.distinguished_name.push(DnType::CommonName, s.cn);
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now + time::Duration::days(s.not_before_days);
        p.not_after = now + time::Duration::days(s.not_after_days);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if s.client_auth {
            p.extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
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

pub struct Lab {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub cfg: Config,
    pub plan: Plan,
    pub store: Store,
    pub ca: Ca,
}

/// One node of a lab config.
pub struct LabNode {
    pub hostname: String,
    pub address: String,
    pub needs_client_auth: bool,
}

pub fn node(hostname: &str, address: &str) -> LabNode {
    LabNode {
        hostname: hostname.into(),
        address: address.into(),
        needs_client_auth: false,
    }
}

impl Lab {
    /// Write a config (`layout`, the nodes, `extra` TOML appended) under `dir`, init the store.
    pub fn new(dir: &Path, layout: &str, vip: &str, nodes: &[LabNode], extra: &str) -> Lab {
        let mut t = format!(
            "virtual_hostname = \"{vip}\"\nvirtual_ip = \"127.0.0.254\"\nshared_dir = \"{}\"\nlayout = \"{layout}\"\n",
            dir.join("shared").display()
        );
        for n in nodes {
            t.push_str(&format!(
                "[[node]]\nhostname = \"{}\"\naddress = \"{}\"\nneeds_client_auth = {}\n",
                n.hostname, n.address, n.needs_client_auth
            ));
        }
        t.push_str(extra);
        let config = dir.join("vipcert.toml");
        std::fs::write(&config, &t).unwrap();
        let cfg = Config::load(&config).unwrap();
        let plan = Plan::new(&cfg).unwrap();
        let store = Store::new(&cfg.shared_dir);
        store.init().unwrap();
        Lab {
            dir: dir.to_path_buf(),
            config,
            cfg,
            plan,
            store,
            ca: Ca::new(),
        }
    }

    /// The planned names of `lineage`, CN first.
    pub fn names(&self, lineage: &str) -> Vec<String> {
        self.plan.lineage(lineage).unwrap().names.clone()
    }

    /// A good leaf for `lineage` as planned.
    pub fn good_leaf(&self, lineage: &str) -> Leaf {
        let names = self.names(lineage);
        self.ca.leaf(&Spec::new(&names[0], &names))
    }

    /// Publish `leaf` as the next version of `lineage`; returns its number.
    pub fn publish(&self, lineage: &str, leaf: &Leaf) -> u32 {
        let info = vipcert::cert::leaf_info(leaf.cert_pem.as_bytes()).unwrap();
        let meta = Meta {
            lineage: lineage.into(),
            version: 0,
            names: self.names(lineage),
            key_type: info.key_type.clone(),
            issued_at: vipcert::store::now(),
            issued_by: "lab".into(),
            ca: "lab".into(),
            order_url: None,
            leaf: info,
        };
        let issued = Issued {
            cert_pem: leaf.cert_pem.clone(),
            chain_pem: leaf.chain_pem.clone(),
            key_pem: leaf.key_pem.clone(),
        };
        self.store
            .publish(lineage, &issued, meta, 5, || Ok(()))
            .unwrap()
    }

    /// Install root of `node`.
    pub fn root(&self, node: &str) -> PathBuf {
        self.dir.join("nodes").join(node)
    }

    /// Write `leaf` to every target of `node` the way the installer does: the fullchain (or
    /// the cert alone) and the key, with the configured modes, root-owned (tests run as root).
    pub fn install_leaf(&self, node: &str, leaf: &Leaf) {
        let cert = if self.cfg.install.fullchain {
            leaf.fullchain()
        } else {
            leaf.cert_pem.clone()
        };
        for t in vipcert::plan::targets(&self.cfg, &self.root(node)) {
            for (path, data, mode) in [
                (&t.cert, cert.as_bytes(), t.cert_mode),
                (&t.key, leaf.key_pem.as_bytes(), t.key_mode),
            ] {
                let dir = Dir::create_all(path.parent().unwrap(), 0o755).unwrap();
                dir.replace(path.file_name().unwrap().to_str().unwrap(), data, mode)
                    .unwrap();
            }
        }
    }

    /// Install store version `n` of `lineage` on `node`.
    pub fn install_version(&self, node: &str, lineage: &str, n: u32) {
        let v = self.store.read(lineage, n).unwrap();
        let leaf = Leaf {
            cert_pem: String::from_utf8(v.cert_pem).unwrap(),
            chain_pem: String::from_utf8(v.chain_pem).unwrap(),
            key_pem: String::from_utf8(v.key_pem).unwrap(),
            cert_der: vec![],
            chain_der: vec![],
            key_der: vec![],
        };
        self.install_leaf(node, &leaf);
    }

    /// The main target of `node` (paths under its root).
    pub fn main_target(&self, node: &str) -> vipcert::plan::Target {
        vipcert::plan::targets(&self.cfg, &self.root(node)).remove(0)
    }
}
