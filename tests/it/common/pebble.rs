//! A real Pebble CA with pebble-challtestsrv as its DNS ([`Pebble`]), and a loopback [`Lab`]
//! of a VIP and N nodes, each a real `vipcert serve` process on its own 127.x address, with a
//! config that points at that Pebble. Every process started here is killed when its guard
//! drops.
//!
//! Not here: labs without an ACME CA (see `site`).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::net::Block;
use super::nfs::Views;
use super::pki::{Ca, Spec};
use super::site::run_logged;
use super::{need, raw_http, start_listening, wait_listening, Proc, BIN};

/// The port Pebble validates HTTP-01 on; every node serves it on its own address.
pub const HTTP_PORT: u16 = 5002;

/// Pebble + challtestsrv, with a test CA for Pebble's HTTPS.
pub struct Pebble {
    pub dir: PathBuf,
    pub directory_url: String,
    pub ca_pem: PathBuf,
    pub dns: SocketAddr,
    pub mgmt: SocketAddr,
    pub listen: SocketAddr,
    /// Pebble's own management interface (HTTPS): its issuing roots.
    pebble_mgmt: SocketAddr,
    pebble: Option<Proc>,
    /// PEBBLE_WFE_NONCEREJECT: the percentage of good nonces Pebble refuses (None: Pebble's
    /// default, 5).
    nonce_reject: Option<u8>,
    /// The DNS server Pebble resolves through (`-dnsserver`): challtestsrv unless a test gave one.
    validation_dns: SocketAddr,
    _challtestsrv: Proc,
}

impl Pebble {
    /// Start both servers on `host` (an address of the test's own [`Block`], so that tests in
    /// parallel never race for ports). `nosleep`: validate at once (PEBBLE_VA_NOSLEEP=1).
    pub fn start(dir: &Path, host: IpAddr, nosleep: bool) -> Pebble {
        Pebble::start_with_dns(dir, host, nosleep, None)
    }

    /// As [`Pebble::start`], Pebble resolving (validating dns-01) through `dns` instead of
    /// challtestsrv when given (a BIND of tests/it/common/bind.rs).
    pub fn start_with_dns(
        dir: &Path,
        host: IpAddr,
        nosleep: bool,
        dns: Option<SocketAddr>,
    ) -> Pebble {
        need("/usr/bin/pebble", "pebble");
        need("/usr/bin/pebble-challtestsrv", "pebble");
        std::fs::create_dir_all(dir).unwrap();
        // rustls refuses a self-signed CA as a server certificate: a leaf under a test CA.
        let ca = Ca::new("vipcert test CA");
        let leaf = ca.leaf(&Spec::names(&[host.to_string().as_str()]));
        let ca_pem = dir.join("test-ca.pem");
        std::fs::write(&ca_pem, ca.root_pem()).unwrap();
        std::fs::write(dir.join("pebble-cert.pem"), leaf.fullchain()).unwrap();
        std::fs::write(dir.join("pebble-key.pem"), &leaf.key_pem).unwrap();

        // Fixed ports below the ephemeral range on the test's own address: nothing else can
        // hold them (free ports picked on 127.0.0.1 raced with other tests' sockets).
        let listen = SocketAddr::new(host, 14000);
        let mgmt = SocketAddr::new(host, 15000);
        let dns_addr = SocketAddr::new(host, 8053);
        let chall_mgmt = SocketAddr::new(host, 8055);
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": listen.to_string(),
                "managementListenAddress": mgmt.to_string(),
                "certificate": dir.join("pebble-cert.pem"),
                "privateKey": dir.join("pebble-key.pem"),
                "httpPort": HTTP_PORT,
                "tlsPort": 5001,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();

        let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
        // challtestsrv starts while Pebble does (Pebble asks its DNS only when it validates);
        // it is waited for below.
        let chall = Proc::start(
            Command::new("/usr/bin/pebble-challtestsrv")
                .args([
                    "-dns01",
                    &dns_addr.to_string(),
                    "-management",
                    &chall_mgmt.to_string(),
                ])
                .args([
                    "-defaultIPv6",
                    "",
                    "-defaultIPv4",
                    "127.0.0.1",
                    "-http01",
                    "",
                    "-https01",
                    "",
                    "-tlsalpn01",
                    "",
                ])
                .stdout(log("challtestsrv.log"))
                .stderr(log("challtestsrv.err")),
            "pebble-challtestsrv",
        );

        let mut p = Pebble {
            dir: dir.to_path_buf(),
            directory_url: format!("https://{listen}/dir"),
            ca_pem,
            dns: dns_addr,
            mgmt: chall_mgmt,
            listen,
            pebble_mgmt: mgmt,
            pebble: None,
            nonce_reject: None,
            validation_dns: dns.unwrap_or(dns_addr),
            _challtestsrv: chall,
        };
        p.start_pebble("pebble.json", nosleep);
        wait_listening(chall_mgmt, "pebble-challtestsrv");
        p
    }

    fn start_pebble(&mut self, config: &str, nosleep: bool) {
        let log = |name: &str| std::fs::File::create(self.dir.join(name)).unwrap();
        let mut cmd = Command::new("/usr/bin/pebble");
        cmd.args([
            "-config",
            self.dir.join(config).to_str().unwrap(),
            "-dnsserver",
            &self.validation_dns.to_string(),
        ])
        .stdout(log("pebble.log"))
        .stderr(log("pebble.err"));
        if nosleep {
            cmd.env("PEBBLE_VA_NOSLEEP", "1");
        }
        if let Some(p) = self.nonce_reject {
            cmd.env("PEBBLE_WFE_NONCEREJECT", p.to_string());
        }
        self.pebble = Some(start_listening(&mut cmd, self.listen, "pebble"));
        self.trust_issuing_root();
    }

    /// Append Pebble's issuing root (management `/roots/0`, made afresh at every start) to
    /// `ca_pem`, the labs' `ca_roots`: the verification policy refuses a chain that does not
    /// end at a trusted root. Roots of earlier starts stay, so older versions still verify.
    fn trust_issuing_root(&self) {
        use std::io::{Read, Write};
        let ca = std::fs::read(&self.ca_pem).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for der in vipcert::cert::pem_certs(&ca).unwrap() {
            roots.add(der.into()).unwrap();
        }
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = std::sync::Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let name = rustls_pki_types::ServerName::IpAddress(self.pebble_mgmt.ip().into());
        let mut last = String::new();
        for _ in 0..500 {
            let fetched = (|| -> std::io::Result<Vec<u8>> {
                let tcp = std::net::TcpStream::connect(self.pebble_mgmt)?;
                tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
                let conn = rustls::ClientConnection::new(tls.clone(), name.clone())
                    .map_err(std::io::Error::other)?;
                let mut s = rustls::StreamOwned::new(conn, tcp);
                let req = format!(
                    "GET /roots/0 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    self.pebble_mgmt
                );
                s.write_all(req.as_bytes())?;
                let mut body = Vec::new();
                // Pebble may close without close_notify: keep what arrived.
                let _ = s.read_to_end(&mut body);
                Ok(body)
            })();
            match fetched {
                Ok(b) if String::from_utf8_lossy(&b).contains("-----END CERTIFICATE-----") => {
                    let text = String::from_utf8_lossy(&b);
                    let end = "-----END CERTIFICATE-----";
                    let pem = &text[text.find("-----BEGIN CERTIFICATE-----").unwrap()
                        ..text.rfind(end).unwrap() + end.len()];
                    let pem = format!("{pem}\n");
                    let mut f = std::fs::OpenOptions::new()
                        .append(true)
                        .open(&self.ca_pem)
                        .unwrap();
                    f.write_all(pem.as_bytes()).unwrap();
                    return;
                }
                Ok(b) => last = String::from_utf8_lossy(&b).into_owned(),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!(
            "no issuing root from Pebble's {}/roots/0: {last}",
            self.pebble_mgmt
        );
    }

    /// Stop Pebble and start it again, validating at once, with its config changed by `edit`
    /// (saved as `name` beside the original). Pebble keeps everything in memory: accounts
    /// and orders start afresh; challtestsrv's DNS entries stay.
    pub fn restart_with(&mut self, name: &str, edit: impl FnOnce(&mut serde_json::Value)) {
        self.stop();
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.dir.join("pebble.json")).unwrap()).unwrap();
        edit(&mut cfg);
        std::fs::write(self.dir.join(name), cfg.to_string()).unwrap();
        self.start_pebble(name, true);
    }

    /// Restart Pebble refusing `percent` % of good nonces with `badNonce` (before any account
    /// exists: Pebble keeps accounts in memory).
    pub fn restart_rejecting_nonces(&mut self, percent: u8) {
        self.stop();
        self.nonce_reject = Some(percent);
        self.start_pebble("pebble.json", true);
    }

    /// Stop the CA (simulates an outage).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.pebble.take() {
            p.kill();
        }
    }

    /// Map `host` to `ip` in challtestsrv's DNS.
    pub fn add_a(&self, host: &str, ip: IpAddr) {
        self.manage(
            "/add-a",
            serde_json::json!({"host": host, "addresses": [ip.to_string()]}),
        );
    }

    /// Map `host` to `ip` alone (challtestsrv's add-a appends to what is there).
    pub fn replace_a(&self, host: &str, ip: IpAddr) {
        self.manage("/clear-a", serde_json::json!({"host": host}));
        self.add_a(host, ip);
    }

    /// Map `host` to the IPv6 address `ip` in challtestsrv's DNS.
    pub fn add_aaaa(&self, host: &str, ip: IpAddr) {
        self.manage(
            "/add-aaaa",
            serde_json::json!({"host": host, "addresses": [ip.to_string()]}),
        );
    }

    /// Make DNS queries for `host` fail (SERVFAIL), as for a name with a broken zone.
    pub fn servfail(&self, host: &str) {
        self.manage("/set-servfail", serde_json::json!({"host": host}));
    }

    fn manage(&self, path: &str, body: serde_json::Value) {
        let body = body.to_string();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            self.mgmt,
            body.len(),
            body
        );
        let rsp = raw_http(self.mgmt, &req);
        assert!(
            rsp.starts_with("HTTP/1.1 200"),
            "challtestsrv {path} failed: {rsp}"
        );
    }

    /// How many orders Pebble has seen created (from its log).
    pub fn orders_created(&self) -> usize {
        std::fs::read_to_string(self.dir.join("pebble.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("There are now") && l.contains("orders in the db"))
            .count()
    }
}

/// A VIP and nodes in a test's own address [`Block`]: Pebble on .2, the VIP on .10, nodes on
/// .11 and up; a shared dir, a config file, and a `vipcert serve` per node plus one on the VIP.
///
/// With [`LabOptions::cache`], each node sees the shared dir only through its own caching
/// view (`nfs::Views`), by a config of its own that differs in `shared_dir` alone; `shared`
/// is then the directory behind the views (the file server's disk).
pub struct Lab {
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
    pub pebble: Pebble,
    /// The config (every node's when there are no views).
    pub config: PathBuf,
    /// Each node's config, in node order.
    pub configs: Vec<PathBuf>,
    pub views: Option<Views>,
    pub shared: PathBuf,
    pub vip: (String, IpAddr),
    pub nodes: Vec<(String, IpAddr)>,
    pub serves: Vec<Option<Proc>>,
    pub vip_serve: Option<Proc>,
}

pub struct LabOptions<'a> {
    pub layout: &'a str,
    pub nodes: usize,
    /// Appended to the [acme] section.
    pub acme_extra: &'a str,
    /// Appended at the end of the file (more sections).
    pub extra: &'a str,
    pub nosleep: bool,
    /// Give each node its own bindfs view of the shared dir with this cache timeout.
    pub cache: Option<Duration>,
    /// A DNS server (BIND) Pebble validates through and [preflight] resolver names, instead
    /// of challtestsrv.
    pub dns: Option<SocketAddr>,
}

impl Default for LabOptions<'_> {
    fn default() -> Self {
        LabOptions {
            layout: "shared",
            nodes: 3,
            acme_extra: "",
            extra: "",
            nosleep: true,
            cache: None,
            dns: None,
        }
    }
}

impl Lab {
    pub fn new(block: Block, o: LabOptions) -> Lab {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let pebble = match o.dns {
            None => Pebble::start(&dir.join("pebble"), block.ip(2), o.nosleep),
            dns => Pebble::start_with_dns(&dir.join("pebble"), block.ip(2), o.nosleep, dns),
        };
        let vip = ("gridftp.example.org".to_string(), block.ip(10));
        let nodes: Vec<(String, IpAddr)> = (1..=o.nodes as u8)
            .map(|i| (format!("dtn{i}.example.org"), block.ip(10 + i)))
            .collect();
        pebble.add_a(&vip.0, vip.1);
        for (h, ip) in &nodes {
            pebble.add_a(h, *ip);
        }
        let shared = dir.join("shared");
        // The admin's mount: vipcert never creates shared_dir itself.
        std::fs::create_dir_all(&shared).unwrap();
        let mut toml = format!(
            "virtual_hostname = \"{}\"\nvirtual_ip = \"{}\"\nshared_dir = \"{}\"\nlayout = \"{}\"\n\n[acme]\ndirectory = \"{}\"\ncontact = [\"mailto:grid-admin@example.org\"]\nca_roots = \"{}\"\nhttp_port = {HTTP_PORT}\n{}\n",
            vip.0,
            vip.1,
            shared.display(),
            o.layout,
            pebble.directory_url,
            pebble.ca_pem.display(),
            o.acme_extra
        );
        for (h, ip) in &nodes {
            toml.push_str(&format!(
                "\n[[node]]\nhostname = \"{h}\"\naddress = \"{ip}\"\n"
            ));
        }
        toml.push_str(&format!(
            "\n[serve]\nlisten = [\"0.0.0.0:{HTTP_PORT}\"]\n\n[preflight]\nresolver = \"{}\"\ntimeout = \"2s\"\n\n[install]\nroot = \"{}\"\n{}\n",
            o.dns.unwrap_or(pebble.dns),
            dir.join("root").display(),
            o.extra
        ));
        let config = dir.join("vipcert.toml");
        std::fs::write(&config, &toml).unwrap();
        let names: Vec<String> = nodes.iter().map(|n| n.0.clone()).collect();
        let views = o.cache.map(|c| Views::new(&shared, &dir, &names, c));
        let configs = match &views {
            None => vec![config.clone(); nodes.len()],
            Some(v) => (0..nodes.len())
                .map(|i| {
                    let c = dir.join(format!("vipcert-{}.toml", names[i]));
                    let from = format!("shared_dir = \"{}\"", shared.display());
                    let to = format!("shared_dir = \"{}\"", v.path(i).display());
                    std::fs::write(&c, toml.replacen(&from, &to, 1)).unwrap();
                    c
                })
                .collect(),
        };
        let mut lab = Lab {
            dir,
            _tmp: tmp,
            pebble,
            config,
            configs,
            views,
            shared,
            vip,
            nodes,
            serves: vec![],
            vip_serve: None,
        };
        // Every server at once, then each waited for: their start-ups overlap.
        let mut starting: Vec<(Proc, SocketAddr)> = (0..lab.nodes.len())
            .map(|i| lab.spawn_serve_unwaited(i, lab.nodes[i].1, &lab.nodes[i].0))
            .collect();
        starting.push(lab.spawn_serve_unwaited(0, lab.vip.1, "vip"));
        for (p, addr) in starting {
            wait_listening(addr, &p.name);
            if addr.ip() == lab.vip.1 {
                lab.vip_serve = Some(p);
            } else {
                lab.serves.push(Some(p));
            }
        }
        lab
    }

    /// Rewrite every config (the common one and each node's) with `edit`.
    pub fn edit_config(&self, edit: impl Fn(&str) -> String) {
        let mut all = self.configs.clone();
        all.push(self.config.clone());
        all.dedup();
        for c in all {
            let t = std::fs::read_to_string(&c).unwrap();
            std::fs::write(&c, edit(&t)).unwrap();
        }
    }

    /// The shared dir as node `i` sees it (its view, or the directory itself).
    pub fn shared_of(&self, i: usize) -> PathBuf {
        match &self.views {
            Some(v) => v.path(i).to_path_buf(),
            None => self.shared.clone(),
        }
    }

    /// The install root of node `i`.
    pub fn root(&self, i: usize) -> PathBuf {
        self.dir.join(format!("root-{}", self.nodes[i].0))
    }

    fn spawn_serve(&self, i: usize, ip: IpAddr, tag: &str) -> Proc {
        let (p, addr) = self.spawn_serve_unwaited(i, ip, tag);
        wait_listening(addr, &p.name);
        p
    }

    /// `vipcert serve` as node `i` on `ip`, and the address it will listen on.
    fn spawn_serve_unwaited(&self, i: usize, ip: IpAddr, tag: &str) -> (Proc, SocketAddr) {
        let addr = SocketAddr::new(ip, HTTP_PORT);
        let log = std::fs::File::create(self.dir.join(format!("serve-{tag}.log"))).unwrap();
        let p = Proc::start(
            Command::new(BIN)
                .args([
                    "serve",
                    "--config",
                    self.configs[i].to_str().unwrap(),
                    "--node",
                    &self.nodes[i].0,
                    "--listen",
                    &addr.to_string(),
                ])
                .stdout(Stdio::null())
                .stderr(log),
            &format!("serve {tag}"),
        );
        (p, addr)
    }

    /// Start node `i`'s server (after `stop_serve`).
    pub fn start_serve(&self, i: usize) -> Proc {
        let (h, ip) = self.nodes[i].clone();
        self.spawn_serve(i, ip, &h)
    }

    pub fn stop_serve(&mut self, i: usize) {
        if let Some(mut p) = self.serves[i].take() {
            p.kill();
        }
    }

    /// `vipcert <args>` as node `node` (index), with this lab's config.
    pub fn cmd(&self, node: usize, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("VIPCERT_CONFIG", &self.configs[node])
            .env("VIPCERT_NODE", &self.nodes[node].0)
            .env("NO_COLOR", "1");
        c
    }

    pub fn run(&self, node: usize, args: &[&str]) -> Output {
        run_logged(self.cmd(node, args), args, &self.nodes[node].0)
    }

    /// `run` with `--root <node's install root>` appended.
    pub fn run_as(&self, node: usize, args: &[&str]) -> Output {
        let root = self.root(node);
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["--root", root.to_str().unwrap()]);
        self.run(node, &a)
    }

    /// `args` with `--root <node's install root>` started on every node at the same moment;
    /// their outputs in node order.
    pub fn run_on_all_at_once(&self, args: &[&str]) -> Vec<Output> {
        let children: Vec<_> = (0..self.nodes.len())
            .map(|i| {
                let root = self.root(i);
                let mut a: Vec<&str> = args.to_vec();
                a.extend(["--root", root.to_str().unwrap()]);
                self.cmd(i, &a)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect()
    }

    /// Replace node `i`'s server with `serve --watch --root <its root>`, logging into
    /// `watch-<i>.log` in the lab directory.
    pub fn start_watcher(&mut self, i: usize) -> Proc {
        self.stop_serve(i);
        let addr = SocketAddr::new(self.nodes[i].1, HTTP_PORT);
        let root = self.root(i);
        let log = std::fs::File::create(self.dir.join(format!("watch-{i}.log"))).unwrap();
        let args = [
            "serve",
            "--watch",
            "--listen",
            &addr.to_string(),
            "--root",
            root.to_str().unwrap(),
        ];
        start_listening(
            self.cmd(i, &args).stdout(Stdio::null()).stderr(log),
            addr,
            &format!("watch {i}"),
        )
    }

    /// Replace node `i`'s server with `serve --root <its root>` (no watcher), logging into
    /// `serve-root-<i>.log`: its status route reports what that root holds, for `check --fleet`.
    pub fn serve_own_root(&mut self, i: usize) {
        self.stop_serve(i);
        let addr = SocketAddr::new(self.nodes[i].1, HTTP_PORT);
        let root = self.root(i);
        let log = std::fs::File::create(self.dir.join(format!("serve-root-{i}.log"))).unwrap();
        let args = [
            "serve",
            "--listen",
            &addr.to_string(),
            "--root",
            root.to_str().unwrap(),
        ];
        let p = start_listening(
            self.cmd(i, &args).stdout(Stdio::null()).stderr(log),
            addr,
            &format!("serve {i} --root"),
        );
        self.serves[i] = Some(p);
    }

    pub fn store_dir(&self, lineage: &str) -> PathBuf {
        self.shared.join("store").join(lineage)
    }

    /// Files in the webroot's challenge directory (nothing should remain after a run).
    pub fn webroot_files(&self) -> Vec<String> {
        match std::fs::read_dir(self.shared.join("webroot/.well-known/acme-challenge")) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => vec![],
        }
    }
}

impl Drop for Lab {
    /// Stop every node before its view is unmounted (a busy view only detaches lazily).
    fn drop(&mut self) {
        self.serves.clear();
        self.vip_serve = None;
        self.views = None;
    }
}
