//! THE verification policy, end to end: one table of tampered certificates, keys and chains,
//! each put either in the store (as a new current version over a good installed one) or at a
//! node's installed targets, with real files, a real store (`Store::publish`), a real CA chain
//! (`common::pki`) trusted through `[acme] ca_roots`, the real binary, and for some rows a real
//! `vipcert serve` asked by `check --fleet`. For every row it asserts what a site admin sees:
//! whether `install` refuses (and then leaves every target byte-for-byte as it was), the
//! severity `check` gives (local, and --fleet), and that the two agree: install refuses
//! exactly the store versions check calls critical, and what check calls critical on a node
//! with a good store, install repairs.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::net::Block;
use crate::common::pki::{self_signed, Ca, Leaf, Spec};
use crate::common::site::{node, Site, SiteNode};
use crate::common::{start_listening, Proc, BIN};

const VIP: &str = "vip.verify.test";
const DTN1: &str = "dtn1.verify.test";
const DTN2: &str = "dtn2.verify.test";
/// The node servers of the fleet rows listen here, each row on its own address.
const PORT: u16 = 18090;

/// Where the tampered material goes.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Side {
    /// A new store version (current), over a good version installed on dtn1.
    Store,
    /// dtn1's installed cert and key files; the store holds the good version.
    Installed,
}

/// How bad the row is, as both commands must see it.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Want {
    /// install refuses (store side) / check critical.
    Critical,
    /// install installs, check warns.
    Warning,
}

/// The files a row puts in place: the store version's cert.pem, chain.pem, key.pem, and
/// optionally a different fullchain.pem; on the installed side, the cert file is `cert +
/// chain` (or `fullchain` when given).
struct Files {
    cert: Vec<u8>,
    chain: Vec<u8>,
    key: Vec<u8>,
    fullchain: Option<Vec<u8>>,
}

impl Files {
    fn of(l: &Leaf) -> Files {
        Files {
            cert: l.cert_pem.clone().into_bytes(),
            chain: l.chain_pem.clone().into_bytes(),
            key: l.key_pem.clone().into_bytes(),
            fullchain: None,
        }
    }
    fn served(&self) -> Vec<u8> {
        self.fullchain
            .clone()
            .unwrap_or_else(|| [self.cert.clone(), self.chain.clone()].concat())
    }
}

struct Row {
    name: &'static str,
    side: Side,
    want: Want,
    /// The check whose finding carries the verdict on the installed side ("store" for the
    /// store side).
    check: &'static str,
    /// Also ask `check --fleet` through a real node server.
    fleet: bool,
    /// dtn1 has needs_client_auth = true.
    client_auth: bool,
    make: fn(&Lab) -> Files,
}

/// One row's site: a shared-layout VIP with two nodes, version 1 (good) in the store and
/// installed on dtn1 by the real installer.
struct Lab {
    site: Site,
    /// The site's own CA (trusted through ca_roots).
    names: Vec<String>,
}

impl Lab {
    fn spec(&self) -> Spec {
        Spec::new(&self.names[0], &self.names)
    }
    fn good(&self) -> Leaf {
        self.site.ca.leaf(&self.spec())
    }
    fn leaf(&self, s: &Spec) -> Leaf {
        self.site.ca.leaf(s)
    }
}

fn pem_block(label: &str, der: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for c in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(c).unwrap());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s.into_bytes()
}

/// A real passphrase-protected PKCS#8 key (openssl, AES-256), as `openssl genpkey -aes256`
/// or a careless export leaves it.
fn encrypted(key_pem: &[u8], dir: &Path) -> Vec<u8> {
    let plain = dir.join("plain.key");
    std::fs::write(&plain, key_pem).unwrap();
    let out = Command::new("openssl")
        .args([
            "pkcs8",
            "-topk8",
            "-v2",
            "aes256",
            "-passout",
            "pass:secret",
            "-in",
        ])
        .arg(&plain)
        .output()
        .expect("openssl (package openssl)");
    std::fs::remove_file(&plain).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ENCRYPTED PRIVATE KEY"));
    out.stdout
}

const GARBAGE_CERT: &str =
    "-----BEGIN CERTIFICATE-----\nTUlJQmdhcmJhZ2Ugbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";

fn rows() -> Vec<Row> {
    use Side::*;
    use Want::*;
    let row = |name, side, want, check, fleet, make| Row {
        name,
        side,
        want,
        check,
        fleet,
        client_auth: false,
        make,
    };
    let mut rows = Vec::new();
    for side in [Store, Installed] {
        let s = side == Store;
        let c = |installed: &'static str| if s { "store" } else { installed };
        rows.extend([
            row("expired", side, Critical, c("expiry"), false, |l| {
                Files::of(&l.leaf(&l.spec().days(-100, -10)))
            }),
            row(
                "not yet valid (tomorrow)",
                side,
                Critical,
                c("expiry"),
                !s,
                |l| Files::of(&l.leaf(&l.spec().days(1, 90))),
            ),
            row(
                "valid only in 100 days",
                side,
                Critical,
                c("expiry"),
                false,
                |l| Files::of(&l.leaf(&l.spec().days(100, 190))),
            ),
            row(
                "garbage intermediate",
                side,
                Critical,
                c("parse"),
                false,
                |l| {
                    let mut f = Files::of(&l.good());
                    f.chain = GARBAGE_CERT.into();
                    f
                },
            ),
            row(
                "foreign intermediate",
                side,
                Critical,
                c("chain"),
                false,
                |l| {
                    let mut f = Files::of(&l.good());
                    f.chain = Ca::new("foreign").leaf(&l.spec()).chain_pem.into_bytes();
                    f
                },
            ),
            row(
                "self-signed, right names",
                side,
                Critical,
                c("chain"),
                !s,
                |l| Files::of(&self_signed(&l.spec())),
            ),
            row(
                "unrelated CA, right names",
                side,
                Critical,
                c("chain"),
                true,
                |l| Files::of(&Ca::new("unrelated").leaf(&l.spec())),
            ),
            row(
                "key of another certificate",
                side,
                Critical,
                c("key"),
                false,
                |l| {
                    let mut f = Files::of(&l.good());
                    f.key = l.good().key_pem.into_bytes();
                    f
                },
            ),
            row(
                "key of another type (RSA for ECDSA)",
                side,
                Critical,
                c("key"),
                false,
                |l| {
                    let mut f = Files::of(&l.good());
                    let rsa = rcgen::KeyPair::generate_rsa_for(
                        &rcgen::PKCS_RSA_SHA256,
                        rcgen::RsaKeySize::_2048,
                    )
                    .unwrap();
                    f.key = rsa.serialize_pem().into_bytes();
                    f
                },
            ),
            row(
                "truncated chain (leaf only)",
                side,
                Critical,
                c("chain"),
                false,
                |l| {
                    let mut f = Files::of(&l.good());
                    f.chain = vec![];
                    f
                },
            ),
            row("encrypted key", side, Critical, c("parse"), false, |l| {
                let mut f = Files::of(&l.good());
                f.key = encrypted(&f.key, &l.site.dir);
                f
            }),
            row("wrong CN", side, Critical, c("names"), false, |l| {
                Files::of(&l.leaf(&Spec::new(DTN1, &l.names)))
            }),
            row("extra SAN", side, Critical, c("names"), false, |l| {
                let mut names = l.names.clone();
                names.push("intruder.verify.test".into());
                Files::of(&l.leaf(&Spec::new(VIP, &names)))
            }),
            row("missing SAN", side, Critical, c("names"), false, |l| {
                Files::of(&l.leaf(&Spec::new(VIP, &l.names[..2])))
            }),
            row("no serverAuth EKU", side, Critical, c("eku"), false, |l| {
                let mut s = l.spec();
                s.server_auth = false;
                Files::of(&l.leaf(&s))
            }),
            row(
                "empty certificate file",
                side,
                Critical,
                c("parse"),
                false,
                |l| {
                    let mut f = Files::of(&l.good());
                    f.cert = vec![];
                    f.chain = vec![];
                    f
                },
            ),
            row("DER, not PEM", side, Critical, c("parse"), false, |l| {
                let g = l.good();
                let mut f = Files::of(&g);
                f.cert = g.cert_der.clone();
                f.chain = vec![];
                f
            }),
        ]);
        if s {
            rows.push(row(
                "fullchain.pem leaf differs from cert.pem",
                side,
                Critical,
                "store",
                false,
                |l| {
                    let mut f = Files::of(&l.good());
                    f.fullchain = Some(l.good().fullchain().into_bytes());
                    f
                },
            ));
        }
        rows.push(Row {
            name: "no clientAuth where the node needs it",
            side,
            want: Warning,
            check: "eku",
            fleet: false,
            client_auth: true,
            make: |l| {
                let mut s = l.spec();
                s.client_auth = false;
                Files::of(&l.leaf(&s))
            },
        });
    }
    // A PEM key block holding garbage (a truncated copy), the store's and the node's.
    rows.push(row(
        "truncated key file",
        Side::Store,
        Want::Critical,
        "store",
        false,
        |l| {
            let mut f = Files::of(&l.good());
            f.key.truncate(f.key.len() / 2);
            f
        },
    ));
    rows.push(row(
        "key file holding a certificate",
        Side::Installed,
        Want::Critical,
        "parse",
        false,
        |l| {
            let mut f = Files::of(&l.good());
            f.key = pem_block("CERTIFICATE", &l.good().cert_der);
            f
        },
    ));
    rows
}

struct Run {
    code: i32,
    out: String,
}

fn vipcert(site: &Site, args: &[&str]) -> Run {
    let o = Command::new(BIN)
        .arg("--config")
        .arg(&site.config)
        .args(args)
        .env("RUST_LOG", "vipcert=error")
        .output()
        .unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    }
}

fn install(site: &Site) -> Run {
    let root = site.root_of(DTN1);
    vipcert(
        site,
        &["install", "--node", DTN1, "--root", root.to_str().unwrap()],
    )
}

/// `check --format json` (local on dtn1, or --fleet): exit code and the findings.
fn check(site: &Site, fleet: bool) -> (i32, Vec<serde_json::Value>) {
    let root = site.root_of(DTN1);
    let args: Vec<&str> = if fleet {
        vec!["check", "--fleet", "--format", "json"]
    } else {
        vec![
            "check",
            "--node",
            DTN1,
            "--root",
            root.to_str().unwrap(),
            "--format",
            "json",
        ]
    };
    let r = vipcert(site, &args);
    let v: serde_json::Value = serde_json::from_str(&r.out)
        .unwrap_or_else(|e| panic!("check output is not JSON ({e}): {}", r.out));
    (
        r.code,
        v["findings"].as_array().cloned().unwrap_or_default(),
    )
}

/// The severity of the `check` finding about dtn1 (or the store), and its detail.
fn severity_of(findings: &[serde_json::Value], check: &str) -> (String, String) {
    findings
        .iter()
        .filter(|f| f["check"] == check)
        .filter(|f| check == "store" || f["node"] == DTN1)
        .map(|f| {
            (
                f["severity"].as_str().unwrap_or("").to_string(),
                f["detail"].as_str().unwrap_or("").to_string(),
            )
        })
        .max_by_key(|(s, _)| {
            ["ok", "warning", "unknown", "critical"]
                .iter()
                .position(|x| x == s)
        })
        .unwrap_or_else(|| ("none".into(), String::new()))
}

/// Every byte, mode and owner of the files under `dir`.
fn fingerprint(dir: &Path) -> Vec<(String, Vec<u8>, u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.display().to_string(),
                    std::fs::read(&p).unwrap_or_default(),
                    m.mode(),
                    m.uid(),
                ));
            }
        }
    }
    out.sort();
    out
}

fn serve(site: &Site, addr: SocketAddr) -> Proc {
    start_listening(
        Command::new(BIN)
            .arg("--config")
            .arg(&site.config)
            .args([
                "serve",
                "--node",
                DTN1,
                "--listen",
                &addr.to_string(),
                "--root",
            ])
            .arg(site.root_of(DTN1))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        addr,
        "serve dtn1",
    )
}

/// Write `f` as a new store version of the VIP lineage (current). Store::publish computes
/// fullchain.pem and meta.json from a leaf: publish a good one, then put the row's bytes in
/// the version's files, as a broken CA or a hand edit would.
fn publish(site: &Site, f: &Files) {
    let v = site.publish(VIP, &site.ca.leaf(&Spec::new(VIP, &site.names(VIP))));
    let dir = site.version_dir(VIP, v);
    for (name, data) in [
        ("cert.pem", f.cert.clone()),
        ("chain.pem", f.chain.clone()),
        ("key.pem", f.key.clone()),
        ("fullchain.pem", f.served()),
    ] {
        std::fs::write(dir.join(name), data).unwrap();
    }
}

/// Overwrite dtn1's installed cert and key with `f` (keeping their modes, as an admin's `cp`
/// or another tool would).
fn put_installed(site: &Site, f: &Files) {
    let t = site.main_target(DTN1);
    std::fs::write(&t.cert, f.served()).unwrap();
    std::fs::write(&t.key, &f.key).unwrap();
}

/// Run one row; the mismatches with what it expects, as lines.
fn run_row(i: usize, r: &Row) -> Vec<String> {
    let t = crate::common::site::fast_tempdir();
    // dtn1 on its own address per row (a fleet row's server must not meet the last one's);
    // dtn2's address is never served.
    let a = Block::Verify.host(11 + i as u8);
    let mut n1 = node(DTN1, a);
    n1.needs_client_auth = r.client_auth;
    let nodes: Vec<SiteNode> = vec![n1, node(DTN2, Block::Verify.host(250))];
    let extra = format!("[serve]\nlisten = [\"0.0.0.0:{PORT}\"]\n[check]\ntimeout = \"2s\"\n");
    let site = Site::in_dir(t.path(), "shared", VIP, &nodes, &extra);
    let lab = Lab {
        names: site.names(VIP),
        site,
    };
    let site = &lab.site;
    let mut bad = Vec::new();
    let mut expect = |ok: bool, what: String| {
        if !ok {
            bad.push(format!("[{:?}] {}: {what}", r.side, r.name));
        }
    };
    // The good version 1, installed by the real installer.
    site.publish(VIP, &lab.good());
    let first = install(site);
    assert_eq!(first.code, 0, "{}: setup install: {}", r.name, first.out);
    let files = (r.make)(&lab);
    let root = site.root_of(DTN1);
    match r.side {
        Side::Store => publish(site, &files),
        Side::Installed => put_installed(site, &files),
    }

    // check, local. A store version that only warns shows on the node once installed; until
    // then the node is one version behind.
    let store_warning = r.side == Side::Store && r.want == Want::Warning;
    let (code, findings) = check(site, false);
    let (sev, detail) = severity_of(&findings, if store_warning { "current" } else { r.check });
    let want_sev = match r.want {
        Want::Critical => "critical",
        Want::Warning => "warning",
    };
    expect(
        sev == want_sev,
        format!(
            "check (local) says {sev} for {:?}, want {want_sev} ({detail})",
            r.check
        ),
    );
    let want_code = if r.want == Want::Critical { 2 } else { 1 };
    expect(
        code == want_code,
        format!("check (local) exits {code}, want {want_code}"),
    );
    if r.side == Side::Store && r.want == Want::Critical {
        // What check advises must be what fixes it: install refuses this version.
        let advice: Vec<&str> = findings
            .iter()
            .filter_map(|f| f["detail"].as_str())
            .filter(|d| d.contains("run `vipcert install`"))
            .collect();
        expect(
            advice.is_empty(),
            format!("check advises `vipcert install`, which refuses: {advice:?}"),
        );
    }

    // check --fleet: the store side from the store; the installed side through dtn1's server.
    if (r.side == Side::Store && r.want == Want::Critical) || r.fleet {
        let _server = (r.side == Side::Installed)
            .then(|| serve(site, format!("{a}:{PORT}").parse().unwrap()));
        let (fcode, ff) = check(site, true);
        let (fsev, fdetail) = severity_of(&ff, r.check);
        expect(
            fsev == want_sev,
            format!(
                "check --fleet says {fsev} for {:?}, want {want_sev} ({fdetail})",
                r.check
            ),
        );
        if r.want == Want::Critical {
            expect(fcode == 2, format!("check --fleet exits {fcode}, want 2"));
        }
    }

    // install: refuses exactly what check called critical in the store, changing nothing;
    // repairs what check called critical on the node.
    let before = fingerprint(&root);
    let inst = install(site);
    let after = fingerprint(&root);
    let refused = inst.code != 0;
    match (r.side, r.want) {
        (Side::Store, Want::Critical) => {
            expect(refused, format!("install did not refuse: {}", inst.out));
            expect(
                inst.out.contains("REFUSED"),
                format!("install says no REFUSED: {}", inst.out),
            );
            expect(before == after, "install changed the targets".into());
        }
        (Side::Installed, Want::Critical) => {
            expect(!refused, format!("install did not repair: {}", inst.out));
            let (code, findings) = check(site, false);
            expect(
                code == 0,
                format!("after install, check exits {code}: {findings:?}"),
            );
        }
        (_, Want::Warning) => {
            expect(!refused, format!("install refused a warning: {}", inst.out));
            let (code, findings) = check(site, false);
            let (sev, detail) = severity_of(&findings, r.check);
            let want = if store_warning {
                ("warning", 1)
            } else {
                ("ok", 0)
            };
            expect(
                (sev.as_str(), code) == want,
                format!("after install, check says {sev} ({detail}), exits {code}; want {want:?}"),
            );
        }
    }
    // The agreement, stated once per row: install refused ⇔ check called the store critical.
    expect(
        refused == (r.side == Side::Store && r.want == Want::Critical),
        format!(
            "install refused = {refused} but check said {sev} ({:?} side)",
            r.side
        ),
    );
    bad
}

#[test]
fn tampered_certificates_install_and_check_agree() {
    let rows = rows();
    assert!(rows.len() >= 25, "{} rows", rows.len());
    let mut bad = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        bad.extend(run_row(i, r));
    }
    assert!(
        bad.is_empty(),
        "{} disagreements with the policy over {} rows:\n{}",
        bad.len(),
        rows.len(),
        bad.join("\n")
    );
}
