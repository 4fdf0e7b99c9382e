//! XRootD through `[install] mode = "links"` (issue 8, item 2): a real `xrootd` (Debian's
//! xrootd-server 5.5) run as the `xrootd` user, with `xrd.tls` naming the links-mode copy that
//! vipcert installed (owner `xrootd`, key 0400), serves a file over `roots://` to a real
//! `xrdcp` that verifies the chain up to Pebble's issuing root and the node's name. After a
//! forced renewal xrootd still serves the old certificate (it reads the pair at start only)
//! until it is restarted; then it serves the new one.
//!
//! Not here: GSI (pair.rs), the installer's pair semantics (pair.rs, install.rs).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::net::Block;
use crate::common::pebble::{Lab, LabOptions};
use crate::common::{need, run_bounded, text, Proc, START_BOUND};

const NODE: &str = "dtn1.example.org";
const XRD_CERT: &str = "etc/grid-security/xrd/xrdcert.pem";
const XRD_KEY: &str = "etc/grid-security/xrd/xrdkey.pem";
/// xrootd binds the wildcard address (it has no directive for one address): ports that no
/// other test in this binary uses. `ROOTS_PORT` speaks the xroot protocol (TLS after its own
/// handshake, `xrootd.tls all`); `HTTPS_PORT` is XrdHttp, TLS first, with the same `xrd.tls`
/// pair, so that `openssl s_client` can read the certificate xrootd presents.
const ROOTS_PORT: u16 = 21094;
const HTTPS_PORT: u16 = 21095;

/// The `[install]` keys after `root`: links mode, and the XRootD copy owned by `xrootd`, as
/// Debian's `xrootd@.service` runs the server as that user.
const INSTALL: &str = "mode = \"links\"\n\n[[install.copy]]\ncert = \"/etc/grid-security/xrd/xrdcert.pem\"\nkey = \"/etc/grid-security/xrd/xrdkey.pem\"\nowner = \"xrootd\"\ngroup = \"xrootd\"\n";

/// Everything xrootd needs, in the lab's directory.
struct Xrd {
    dir: PathBuf,
    config: PathBuf,
    payload: PathBuf,
    /// xrootd's own log (`-l`), in its admin directory.
    log: PathBuf,
}

impl Xrd {
    /// Config, admin directory (owned by `xrootd`) and exported directory with one file, under
    /// `<lab>/xrootd`; the server's `xrd.tlsca` is `ca_dir`.
    fn new(lab: &Lab, ca_dir: &Path) -> Xrd {
        let dir = lab.dir.join("xrootd");
        let (adm, data) = (dir.join("adm"), dir.join("data"));
        for d in [&dir, &adm, &data] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let (uid, gid) = xrootd_ids();
        std::os::unix::fs::chown(&adm, Some(uid), Some(gid)).unwrap();
        let payload = data.join("payload.txt");
        std::fs::write(&payload, "read over roots:// with the links-mode pair\n").unwrap();
        let root = lab.root(0);
        let config = dir.join("xrootd.cfg");
        std::fs::write(
            &config,
            format!(
                "xrd.port {ROOTS_PORT}\nxrd.protocol XrdHttp:{HTTPS_PORT} libXrdHttp.so\nall.export {}\nall.adminpath {}\nall.pidpath {}\nxrd.tls {} {}\nxrd.tlsca certdir {}\nxrootd.tls all\n",
                data.display(),
                adm.display(),
                adm.display(),
                root.join(XRD_CERT).display(),
                root.join(XRD_KEY).display(),
                ca_dir.display(),
            ),
        )
        .unwrap();
        let log = adm.join("xrootd.log");
        Xrd {
            dir,
            config,
            payload,
            log,
        }
    }

    /// Start xrootd as the `xrootd` user (as systemd would); return when both ports accept.
    /// A server that exits first (e.g. it refused the key) fails the test with its log.
    fn start(&self) -> Proc {
        let mut p = Proc::spawn(
            Command::new("setpriv")
                .args(["--reuid", "xrootd", "--regid", "xrootd", "--init-groups"])
                .arg("/usr/bin/xrootd")
                .arg("-c")
                .arg(&self.config)
                .arg("-l")
                .arg(&self.log),
            &self.dir.join("xrootd.out"),
        );
        let t = Instant::now();
        for port in [ROOTS_PORT, HTTPS_PORT] {
            let addr = Block::Xrootd.addr(11, port);
            while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                if let Some(st) = p.child.try_wait().unwrap() {
                    panic!("xrootd exited ({st}) before listening:\n{}", self.logs(&p));
                }
                assert!(
                    t.elapsed() < START_BOUND,
                    "xrootd does not listen on {addr}:\n{}",
                    self.logs(&p)
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        p
    }

    fn logs(&self, p: &Proc) -> String {
        format!(
            "{}{}",
            p.log_text(),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    /// `xrdcp roots://dtn1.example.org:21094//<payload>` trusting only the certificates in
    /// `ca_dir`.
    /// The client checks that the name is in the certificate's SANs, so it resolves NODE
    /// through its own /etc/hosts, bind-mounted in a private mount namespace (`unshare -m`):
    /// nothing outside the test's directory changes.
    fn fetch(&self, ca_dir: &Path, to: &Path) -> Result<(), String> {
        let hosts = self.dir.join("hosts");
        std::fs::write(&hosts, format!("{} {NODE}\n", Block::Xrootd.ip(11))).unwrap();
        let url = format!("roots://{NODE}:{ROOTS_PORT}/{}", self.payload.display());
        run_bounded(
            Command::new("unshare")
                .args(["-m", "--propagation", "private", "sh", "-c"])
                .arg("mount --bind \"$1\" /etc/hosts && exec xrdcp -f \"$2\" \"$3\"")
                .arg("sh")
                .arg(&hosts)
                .arg(&url)
                .arg(to)
                .env("X509_CERT_DIR", ca_dir)
                .env("XRD_CONNECTIONRETRY", "1")
                .env("XRD_REQUESTTIMEOUT", "30"),
            Duration::from_secs(60),
        )
    }

    /// `fetch` succeeds and the file arrives whole (else the failure with `server`'s logs).
    fn assert_fetches(&self, ca_dir: &Path, to: &Path, server: &Proc) {
        let fetched = self.fetch(ca_dir, to);
        assert!(fetched.is_ok(), "{fetched:?}\n{}", self.logs(server));
        assert_eq!(
            std::fs::read(to).unwrap(),
            std::fs::read(&self.payload).unwrap()
        );
    }
}

/// The uid and gid of the `xrootd` user (made by the xrootd-server package).
fn xrootd_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("xrootd:"))
        .expect("no xrootd user: install xrootd-server (apt-get install -y xrootd-server); .ci/run does this");
    let f: Vec<&str> = line.split(':').collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

/// The PEM certificates in `file`, as DER.
fn certs_in(file: &Path) -> Vec<Vec<u8>> {
    vipcert::cert::pem_certs(&std::fs::read(file).unwrap()).unwrap()
}

/// A CA directory (OpenSSL's `<subject hash>.0` names) holding `certs` (DER) alone.
fn ca_dir(at: &Path, certs: &[Vec<u8>]) -> PathBuf {
    std::fs::create_dir_all(at).unwrap();
    for der in certs {
        let pem = at.join("cert.pem");
        let b64 = base64_lines(der);
        std::fs::write(
            &pem,
            format!("-----BEGIN CERTIFICATE-----\n{b64}-----END CERTIFICATE-----\n"),
        )
        .unwrap();
        let o = Command::new("openssl")
            .args(["x509", "-hash", "-noout", "-in"])
            .arg(&pem)
            .output()
            .unwrap();
        assert!(o.status.success(), "openssl x509 -hash: {}", text(&o));
        let hash = String::from_utf8(o.stdout).unwrap().trim().to_string();
        std::fs::rename(&pem, at.join(format!("{hash}.0"))).unwrap();
    }
    at.to_path_buf()
}

/// Pebble's issuing root of its latest start: the last certificate of the lab's ca_roots.
fn pebble_root(lab: &Lab) -> Vec<u8> {
    certs_in(&lab.pebble.ca_pem).pop().unwrap()
}

/// The intermediate (chain.pem) of store version `v` of NODE's lineage (DER).
fn intermediate_of(lab: &Lab, v: u32) -> Vec<u8> {
    certs_in(&lab.store_dir(NODE).join(format!("{v:04}/chain.pem"))).remove(0)
}

fn base64_lines(der: &[u8]) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    b.as_bytes()
        .chunks(64)
        .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
        .collect()
}

/// The certificates xrootd presents on its HTTPS port (DER, leaf first), read with `openssl
/// s_client -showcerts`.
fn served_chain() -> Vec<Vec<u8>> {
    let addr = Block::Xrootd.addr(11, HTTPS_PORT);
    let o = Command::new("timeout")
        .args(["20", "openssl", "s_client", "-showcerts"])
        .args(["-connect", &addr.to_string(), "-servername", NODE])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let certs = vipcert::cert::pem_certs(&o.stdout).unwrap_or_default();
    assert!(
        !certs.is_empty(),
        "openssl s_client {addr}: no certificate: {}",
        text(&o)
    );
    certs
}

/// xrootd presents store version `v`: its leaf, then its intermediate. xrootd 5.5 loads the
/// `xrd.tls` file with SSL_CTX_use_certificate_file, which keeps the first certificate alone
/// (5.6.4 loads the chain); on its HTTPS port OpenSSL completes the chain from the
/// `xrd.tlsca` directory, where the test put the intermediate.
fn assert_serves(lab: &Lab, v: u32, why: &str) {
    let chain = served_chain();
    assert!(
        chain[0] == leaf_of(lab, v),
        "{why}: not version {v:04}'s leaf"
    );
    assert!(
        chain.get(1) == Some(&intermediate_of(lab, v)),
        "{why}: version {v:04}'s intermediate is not sent ({} certificates)",
        chain.len()
    );
}

/// The leaf of store version `v` of NODE's lineage (DER).
fn leaf_of(lab: &Lab, v: u32) -> Vec<u8> {
    certs_in(&lab.store_dir(NODE).join(format!("{v:04}/cert.pem"))).remove(0)
}

#[test]
fn xrootd_serves_the_links_mode_pair_and_the_new_one_after_a_restart() {
    need("/usr/bin/xrootd", "xrootd-server");
    need("/usr/bin/xrdcp", "xrootd-client");
    let (uid, gid) = xrootd_ids();
    let mut lab = Lab::new(
        Block::Xrootd,
        LabOptions {
            layout: "per-host",
            nodes: 1,
            extra: INSTALL,
            ..Default::default()
        },
    );
    let out = lab.run_as(0, &["issue"]);
    assert!(
        text(&out).contains(&format!("{NODE}: installed version 0001")),
        "{}",
        text(&out)
    );
    // The targets are root's links; the real files behind them are xrootd's, key 0400.
    let root = lab.root(0);
    for (p, mode) in [(XRD_CERT, 0o644), (XRD_KEY, 0o400)] {
        let at = root.join(p);
        assert!(std::fs::symlink_metadata(&at)
            .unwrap()
            .file_type()
            .is_symlink());
        let m = std::fs::metadata(&at).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (uid, gid, mode),
            "{p}"
        );
    }
    // The lab directory is a private temporary one: xrootd must reach its files.
    std::fs::set_permissions(&lab.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The server's xrd.tlsca and the client's X509_CERT_DIR both hold the intermediate and
    // the root (see `assert_serves` and the root-only client below for why).
    let root1 = pebble_root(&lab);
    let server_ca = lab.dir.join("ca-server");
    ca_dir(&server_ca, &[intermediate_of(&lab, 1), root1.clone()]);
    let trust1 = ca_dir(
        &lab.dir.join("ca-client-1"),
        &[intermediate_of(&lab, 1), root1.clone()],
    );
    let xrd = Xrd::new(&lab, &server_ca);

    let server = xrd.start();
    // xrootd 5.5 sends its leaf alone over roots://: a client that trusts the root but lacks
    // the intermediate refuses it ("unknown ca"). docs/operations.md tells admins so.
    let root_only = ca_dir(&lab.dir.join("ca-root-only"), std::slice::from_ref(&root1));
    let refused = xrd.fetch(&root_only, &lab.dir.join("got-0"));
    assert!(
        refused.is_err(),
        "a client without the intermediate accepted xrootd's certificate: xrootd now sends \
         its chain over roots://; update docs/operations.md"
    );
    xrd.assert_fetches(&trust1, &lab.dir.join("got-1"), &server);
    assert_serves(&lab, 1, "after the issue");

    // A new version from a CA with a new root (Pebble makes its root afresh at each start), so
    // that a client trusting only the new root accepts only the new pair.
    lab.pebble.restart_with("pebble-2.json", |_| {});
    let root2 = pebble_root(&lab);
    assert_ne!(root1, root2, "Pebble kept its root across a restart");
    let out = lab.run_as(0, &["renew", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        certs_in(&root.join(XRD_CERT)).remove(0),
        leaf_of(&lab, 2),
        "{}",
        text(&out)
    );
    ca_dir(&server_ca, &[intermediate_of(&lab, 2), root2.clone()]);
    let trust2 = ca_dir(
        &lab.dir.join("ca-client-2"),
        &[intermediate_of(&lab, 2), root2],
    );
    // xrootd read its pair at start: it still presents version 0001.
    assert_serves(&lab, 1, "installed but xrootd not restarted");
    drop(server);
    let server = xrd.start();
    assert_serves(&lab, 2, "after a restart");
    xrd.assert_fetches(&trust2, &lab.dir.join("got-2"), &server);
}
