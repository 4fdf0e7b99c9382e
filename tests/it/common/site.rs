//! A site without an ACME CA: a config, a real shared store filled with `Store::publish` from
//! the test CA (`pki`), and one install root per node, either filled by the real binary
//! (`vipcert install`) or written the way the installer writes them. Serves the install, renew
//! and drift tests, and examples/drift-lab.rs (the `check --fleet` benchmark), which includes
//! this file and pki.rs by #[path]: so this file uses nothing else of the test support.
//!
//! Also here: file fingerprints ([`file`], [`snapshot`]) for "what did the installer change".
//! Not here: labs with Pebble and running `vipcert serve` nodes (see `pebble`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vipcert::config::Config;
use vipcert::plan::Plan;
use vipcert::safefs::Dir;
use vipcert::store::{Issued, Meta, Store};

use super::pki::{Ca, Leaf, Spec};

pub const VIP: &str = "gridftp.example.org";
pub const NODES: [&str; 3] = ["dtn1.example.org", "dtn2.example.org", "dtn3.example.org"];

/// The binary, in integration tests only: cargo sets CARGO_BIN_EXE_* for tests, not for
/// examples, and examples/drift-lab.rs (which includes this file) never runs the binary.
#[allow(clippy::option_env_unwrap)]
fn bin() -> &'static str {
    option_env!("CARGO_BIN_EXE_vipcert").expect("only integration tests run the vipcert binary")
}

/// A site directory: config, shared store, test CA, one install root per node.
pub struct Site {
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub config: PathBuf,
    pub shared: PathBuf,
    pub store: Store,
    pub ca: Ca,
    /// Node hostnames, in config order.
    pub nodes: Vec<String>,
}

/// One node of a site config.
pub struct SiteNode {
    pub hostname: String,
    pub address: String,
    pub needs_client_auth: bool,
}

pub fn node(hostname: &str, address: &str) -> SiteNode {
    SiteNode {
        hostname: hostname.into(),
        address: address.into(),
        needs_client_auth: false,
    }
}

impl Site {
    /// [`VIP`] on `net`.10 and [`NODES`] on `net`.11-13 (`net` is "127.0.N", the test's own
    /// block from tests/it/common/net.rs) in a fresh temporary directory. `install_extra` is
    /// appended inside [install] (keys, then [[install.copy]] tables may follow); `rest` goes
    /// at the top level before the nodes.
    pub fn new(net: &str, layout: &str, install_extra: &str, rest: &str) -> Site {
        let tmp = fast_tempdir();
        let dir = tmp.path().to_path_buf();
        let shared = dir.join("shared");
        let mut toml = format!(
            "virtual_hostname = \"{VIP}\"\nvirtual_ip = \"{net}.10\"\nshared_dir = \"{}\"\nlayout = \"{layout}\"\n{rest}\n",
            shared.display()
        );
        for (i, n) in NODES.iter().enumerate() {
            toml.push_str(&format!(
                "[[node]]\nhostname = \"{n}\"\naddress = \"{net}.{}\"\n",
                11 + i
            ));
        }
        // A root inside the site, so a command run without --root never touches the real /etc.
        toml.push_str(&format!(
            "[install]\nroot = \"{}\"\n{install_extra}\n",
            dir.join("root-unset").display()
        ));
        let nodes = NODES.iter().map(|s| s.to_string()).collect();
        Site::create(dir, Some(tmp), &toml, nodes)
    }

    /// A site in `dir` for `vip` (on 127.0.0.254, which nothing here serves) and `nodes`, with
    /// `extra` TOML appended (it may hold any section, [install] included).
    pub fn in_dir(dir: &Path, layout: &str, vip: &str, nodes: &[SiteNode], extra: &str) -> Site {
        let mut toml = format!(
            "virtual_hostname = \"{vip}\"\nvirtual_ip = \"127.0.0.254\"\nshared_dir = \"{}\"\nlayout = \"{layout}\"\n",
            dir.join("shared").display()
        );
        for n in nodes {
            toml.push_str(&format!(
                "[[node]]\nhostname = \"{}\"\naddress = \"{}\"\nneeds_client_auth = {}\n",
                n.hostname, n.address, n.needs_client_auth
            ));
        }
        toml.push_str(extra);
        let hosts = nodes.iter().map(|n| n.hostname.clone()).collect();
        Site::create(dir.to_path_buf(), None, &toml, hosts)
    }

    fn create(
        dir: PathBuf,
        tmp: Option<tempfile::TempDir>,
        toml: &str,
        nodes: Vec<String>,
    ) -> Site {
        let ca = Ca::new("vipcert test CA");
        let toml = trust_roots(&dir, toml, &ca.root_pem());
        let config = dir.join("vipcert.toml");
        std::fs::write(&config, toml).unwrap();
        let shared = dir.join("shared");
        let store = Store::new(&shared);
        // The admin's mount: vipcert never creates shared_dir itself.
        std::fs::create_dir_all(&shared).unwrap();
        store.init().unwrap();
        Site {
            dir,
            _tmp: tmp,
            config,
            shared,
            store,
            ca,
            nodes,
        }
    }

    /// The config as the binary loads it (loaded on each call: some tests rewrite it).
    pub fn cfg(&self) -> Config {
        Config::load(&self.config).unwrap()
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }

    /// Install root of node `i`.
    pub fn root(&self, i: usize) -> PathBuf {
        self.root_of(&self.nodes[i])
    }

    /// Install root of the node named `hostname`.
    pub fn root_of(&self, hostname: &str) -> PathBuf {
        self.dir.join("nodes").join(hostname)
    }

    /// The planned names of `lineage`, CN first.
    pub fn names(&self, lineage: &str) -> Vec<String> {
        let plan = Plan::new(&self.cfg()).unwrap();
        plan.lineage(lineage).unwrap().names.clone()
    }

    /// A good leaf for `lineage` as planned.
    pub fn good_leaf(&self, lineage: &str) -> Leaf {
        let names = self.names(lineage);
        self.ca.leaf(&Spec::new(&names[0], &names))
    }

    /// Publish a fresh good leaf for `lineage`; returns its version number.
    pub fn publish_good(&self, lineage: &str) -> u32 {
        self.publish(lineage, &self.good_leaf(lineage))
    }

    /// Publish `leaf` as the next version of `lineage`; returns its number.
    pub fn publish(&self, lineage: &str, leaf: &Leaf) -> u32 {
        self.publish_named(lineage, self.names(lineage), leaf)
    }

    /// `publish`, with the lineage's planned `names` given: a loop that publishes thousands
    /// of versions reads and plans the config once, not once per version.
    pub fn publish_named(&self, lineage: &str, names: Vec<String>, leaf: &Leaf) -> u32 {
        let info = vipcert::cert::leaf_info(leaf.cert_pem.as_bytes()).unwrap();
        let meta = Meta {
            lineage: lineage.into(),
            version: 0,
            names,
            key_type: info.key_type.clone(),
            issued_at: vipcert::store::now(),
            issued_by: self.nodes[0].clone(),
            ca: "test".into(),
            order_url: None,
            profile: None,
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

    /// Bytes of a file of store version `v`.
    pub fn version_file(&self, lineage: &str, v: u32, f: &str) -> Vec<u8> {
        std::fs::read(self.version_dir(lineage, v).join(f)).unwrap()
    }

    pub fn version_dir(&self, lineage: &str, v: u32) -> PathBuf {
        self.shared
            .join("store")
            .join(lineage)
            .join(format!("{v:04}"))
    }

    /// Write `leaf` to every target of `node` the way the installer does: the fullchain (or
    /// the cert alone) and the key, with the configured modes, root-owned (tests run as root).
    pub fn install_leaf(&self, node: &str, leaf: &Leaf) {
        let cfg = self.cfg();
        let cert = if cfg.install.fullchain {
            leaf.fullchain()
        } else {
            leaf.cert_pem.clone()
        };
        for t in vipcert::plan::targets(&cfg, &self.root_of(node)) {
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

    /// Write store version `n` of `lineage` on `node` (as `install_leaf`).
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
        vipcert::plan::targets(&self.cfg(), &self.root_of(node)).remove(0)
    }

    /// `vipcert <args>` as node `i`, with this site's config.
    pub fn cmd(&self, i: usize, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .env("VIPCERT_CONFIG", &self.config)
            .env("VIPCERT_NODE", &self.nodes[i])
            .env_remove("VIPCERT_TEST_CRASH_AFTER")
            .env("RUST_LOG", "vipcert=warn");
        c
    }

    pub fn run(&self, i: usize, args: &[&str]) -> Output {
        run_logged(self.cmd(i, args), args, &self.nodes[i])
    }

    /// `vipcert install --root <root of node i>` as node `i`.
    pub fn install(&self, i: usize) -> Output {
        let root = self.root(i);
        self.run(i, &["install", "--root", root.to_str().unwrap()])
    }

    /// `vipcert --config <this site's config> <args>`, where `args` name the node and root
    /// themselves. Logs errors only; NO_COLOR is unset so colour is decided as for a user.
    pub fn vipcert(&self, args: &[&str]) -> Run {
        let o = Command::new(bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("RUST_LOG", "vipcert=error")
            .env_remove("NO_COLOR")
            .output()
            .unwrap();
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// What one [`Site::vipcert`] run said.
pub struct Run {
    /// Exit code (-1: killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout then stderr: for failure messages, and for text that may be on either.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// `toml` with `[acme] ca_roots` naming `<dir>/ca-roots.pem`, which holds `root_pem` plus the
/// roots of the ca_roots `toml` named already (an ACME stub's): the verification policy
/// refuses a chain that does not end at a trusted root, and the test CA is no public one.
fn trust_roots(dir: &Path, toml: &str, root_pem: &str) -> String {
    let file = dir.join("ca-roots.pem");
    let mut roots = root_pem.to_string();
    let line = format!("ca_roots = \"{}\"", file.display());
    let mut out = String::new();
    let mut done = false;
    for l in toml.lines() {
        if let Some(v) = l.trim().strip_prefix("ca_roots") {
            let old = v.trim().trim_start_matches('=').trim().trim_matches('"');
            roots.push_str(&std::fs::read_to_string(old).unwrap());
            out.push_str(&line);
            done = true;
        } else {
            out.push_str(l);
        }
        out.push('\n');
        if l.trim() == "[acme]" && !toml.contains("ca_roots") {
            out.push_str(&line);
            out.push('\n');
            done = true;
        }
    }
    if !done {
        out.push_str(&format!("[acme]\n{line}\n"));
    }
    std::fs::write(file, roots).unwrap();
    out
}

/// Run `vipcert <args>` (as `cmd`) as `node` and print what it did, for a failing test's log.
/// Here rather than beside `Proc` in the parent module because examples/drift-lab.rs includes
/// this file without it; `pebble::Lab` uses it too.
pub fn run_logged(mut cmd: Command, args: &[&str], node: &str) -> Output {
    let out = cmd.output().unwrap();
    eprintln!(
        "$ vipcert {} (as {node})\n-- exit {:?}\n-- stdout\n{}-- stderr\n{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A temporary directory on tmpfs (/dev/shm) when there is one: these tests kill processes, they
/// do not cut power, so fsync buys nothing here and costs most of the run time on a busy disk.
pub fn fast_tempdir() -> tempfile::TempDir {
    if Path::new("/dev/shm").is_dir() {
        if let Ok(t) = tempfile::tempdir_in("/dev/shm") {
            return t;
        }
    }
    tempfile::tempdir().unwrap()
}

/// `root` + absolute `p`.
pub fn under(root: &Path, p: &str) -> PathBuf {
    root.join(p.trim_start_matches('/'))
}

/// (bytes, mode, uid, gid, inode, mtime_ns) of a regular file; panics on a symlink.
pub fn file(p: &Path) -> (Vec<u8>, u32, u32, u32, u64, i128) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(
        m.file_type().is_file(),
        "{} is not a regular file",
        p.display()
    );
    (
        std::fs::read(p).unwrap(),
        m.mode() & 0o7777,
        m.uid(),
        m.gid(),
        m.ino(),
        m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
    )
}

/// Every entry under `dir`, recursively, with (inode, mtime_ns, size): a fingerprint that
/// changes on any write, create, rename or delete.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, i128, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let m = std::fs::symlink_metadata(&d).unwrap();
        out.push((
            d.clone(),
            m.ino(),
            m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            m.size(),
        ));
        if m.is_dir() {
            for e in std::fs::read_dir(&d).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    out.sort();
    out
}

/// The numeric id of user (`db` "passwd") or group ("group") `name`, from getent(1): an oracle
/// independent of `vipcert::install::uid_of`/`gid_of`, which the installer itself uses to chown,
/// so that the ownership a test expects is not computed by the code under test.
pub fn id_of(db: &str, name: &str) -> u32 {
    let out = Command::new("getent").args([db, name]).output().unwrap();
    assert!(out.status.success(), "getent {db} {name}: no such entry");
    let line = String::from_utf8(out.stdout).unwrap();
    line.split(':').nth(2).unwrap().trim().parse().unwrap()
}
