//! A real BIND 9 `named` as a test's authoritative DNS: a primary that takes RFC 2136 updates
//! signed with a TSIG key made by `tsig-keygen`, optional secondaries that transfer from it,
//! each a process on its own 127.x address port 53 (held on `lo` as a /32 while it runs: named
//! binds interface addresses only), killed when dropped. Needs root, as CI runs. Zone files and the config live in the test's temp dir.
//!
//! Not here: what the tests check (tests/it/dns01.rs).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{need, Proc, START_BOUND};

/// The TSIG key's name in every test zone's update-policy.
pub const KEY_NAME: &str = "vipcert.";
/// A second key, hmac-sha512, granted the same.
pub const KEY_NAME_512: &str = "vipcert512.";

/// A zone a test serves: its name and extra records (zone-file lines, relative or absolute).
pub struct Zone<'a> {
    pub name: &'a str,
    pub records: &'a str,
}

/// One `named` process (primary or secondary).
pub struct Bind {
    pub dir: PathBuf,
    pub addr: SocketAddr,
    /// The TSIG secret (base64), as tsig-keygen printed it.
    pub secret: String,
    /// The hmac-sha512 key's secret ([`KEY_NAME_512`]; primaries only, else empty).
    pub secret512: String,
    conf: PathBuf,
    proc: Option<Proc>,
    /// The /32 this guard put on `lo` (removed on drop).
    lo_addr: Option<String>,
}

impl Drop for Bind {
    fn drop(&mut self) {
        self.proc = None;
        if let Some(a) = self.lo_addr.take() {
            let _ = Command::new("ip")
                .args(["addr", "del", &a, "dev", "lo"])
                .status();
        }
    }
}

/// named listens only on addresses an interface holds (127.0.0.1/8 on `lo` is one address to
/// it): put `ip`/32 on `lo` (routing is unchanged, 127/8 is local already); Some when added.
fn hold_on_lo(ip: IpAddr) -> Option<String> {
    let a = format!("{ip}/32");
    let out = Command::new("ip")
        .args(["addr", "add", &a, "dev", "lo"])
        .output()
        .expect("ip (iproute2)");
    out.status.success().then_some(a)
}

/// A fresh secret of `alg` for the key `name` from `tsig-keygen`.
fn keygen(alg: &str, name: &str) -> String {
    let out = Command::new("tsig-keygen")
        .args(["-a", alg, name])
        .output()
        .expect("tsig-keygen (bind9)");
    let text = String::from_utf8(out.stdout).unwrap();
    let at = text
        .find("secret \"")
        .expect("a secret in tsig-keygen's output")
        + 8;
    text[at..].split('"').next().unwrap().to_string()
}

fn options(dir: &Path, ip: IpAddr, extra: &str) -> String {
    let d = dir.display();
    format!(
        "options {{ directory \"{d}\"; pid-file \"{d}/named.pid\"; listen-on port 53 {{ {ip}; }};\n\
         listen-on-v6 {{ none; }}; recursion no; dnssec-validation no; notify-delay 0;\n\
         notify-source {ip}; transfer-source {ip};\n\
         allow-transfer {{ any; }}; session-keyfile \"{d}/session.key\";\n\
         managed-keys-directory \"{d}\"; {extra} }};\ncontrols {{ }};\n"
    )
}

impl Bind {
    /// A primary on `ip`:53 serving `zones`, each with NS records for `ns` (name, address;
    /// A records added in the zone that holds the name), updatable by [`KEY_NAME`] (TXT only).
    pub fn primary(dir: &Path, ip: IpAddr, ns: &[(&str, IpAddr)], zones: &[Zone]) -> Bind {
        std::fs::create_dir_all(dir).unwrap();
        let secret = keygen("hmac-sha256", KEY_NAME);
        let secret512 = keygen("hmac-sha512", KEY_NAME_512);
        let notify: Vec<String> = ns
            .iter()
            .filter(|(_, a)| *a != ip)
            .map(|(_, a)| format!("{a};"))
            .collect();
        let extra = if notify.is_empty() {
            "notify no;".to_string()
        } else {
            format!("notify explicit; also-notify {{ {} }};", notify.join(" "))
        };
        let mut conf = options(dir, ip, &extra);
        conf.push_str(&format!(
            "key \"{KEY_NAME}\" {{ algorithm hmac-sha256; secret \"{secret}\"; }};\n\
             key \"{KEY_NAME_512}\" {{ algorithm hmac-sha512; secret \"{secret512}\"; }};\n"
        ));
        for z in zones {
            let file = dir.join(format!("{}.zone", z.name));
            std::fs::write(&file, zone_file(z, ns)).unwrap();
            conf.push_str(&format!(
                "zone \"{}\" {{ type primary; file \"{}\"; update-policy {{ grant {KEY_NAME} zonesub TXT; grant {KEY_NAME_512} zonesub TXT; }}; }};\n",
                z.name,
                file.display()
            ));
        }
        let mut b = Bind::start_new(dir, ip, secret, conf);
        b.secret512 = secret512;
        b
    }

    /// A secondary on `ip`:53 of `zones` (names only) from `primary`.
    pub fn secondary(dir: &Path, ip: IpAddr, primary: &Bind, zones: &[&str]) -> Bind {
        // A secondary started again asks the primary within a second or two (SOA refresh 2).
        let mut conf = options(dir, ip, "notify no; min-refresh-time 1; min-retry-time 1;");
        for z in zones {
            conf.push_str(&format!(
                "zone \"{z}\" {{ type secondary; primaries {{ {}; }}; file \"{}/{z}.sec\"; }};\n",
                primary.addr.ip(),
                dir.display()
            ));
        }
        Bind::start_new(dir, ip, primary.secret.clone(), conf)
    }

    /// A recursive resolver on `ip`:53 (as a CA's is) forwarding each of `zones` to `to`:
    /// it follows a CNAME from one zone into another, which an authoritative-only server does
    /// not do.
    pub fn resolver(dir: &Path, ip: IpAddr, to: &Bind, zones: &[&str]) -> Bind {
        let mut conf = options(dir, ip, "notify no; allow-recursion { any; };")
            .replace("recursion no;", "recursion yes;");
        for z in zones {
            conf.push_str(&format!(
                "zone \"{z}\" {{ type forward; forward only; forwarders {{ {}; }}; }};\n",
                to.addr.ip()
            ));
        }
        Bind::start_new(dir, ip, to.secret.clone(), conf)
    }

    fn start_new(dir: &Path, ip: IpAddr, secret: String, conf: String) -> Bind {
        need("/usr/sbin/named", "bind9");
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("named.conf");
        std::fs::write(&path, conf).unwrap();
        let mut b = Bind {
            dir: dir.to_path_buf(),
            addr: SocketAddr::new(ip, 53),
            secret,
            secret512: String::new(),
            conf: path,
            proc: None,
            lo_addr: hold_on_lo(ip),
        };
        b.start();
        b
    }

    /// Start (again): listening when this returns.
    pub fn start(&mut self) {
        let log = self.dir.join("named.log");
        let mut cmd = Command::new("/usr/sbin/named");
        cmd.args(["-g", "-4", "-n", "1", "-c"]).arg(&self.conf);
        let mut p = Proc::spawn(&mut cmd, &log);
        let t = std::time::Instant::now();
        while std::net::TcpStream::connect(self.addr).is_err() {
            if p.child.try_wait().unwrap().is_some() || t.elapsed() > START_BOUND {
                panic!("named on {} did not start:\n{}", self.addr, p.log_text());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.proc = Some(p);
    }

    /// Stop (kill) it; its zone data stays on disk for [`Bind::start`].
    pub fn stop(&mut self) {
        self.proc = None;
    }

    /// Write the TSIG secret to `path`, mode 0600 (as an admin would).
    pub fn write_key_file(&self, path: &Path) {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::write(path, format!("{}\n", self.secret)).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// The TXT values this server serves at `fqdn` (by `dig`, no recursion).
    pub fn txt(&self, fqdn: &str) -> Vec<String> {
        let out = Command::new("dig")
            .args(["+short", "+norecurse", "+time=2", "+tries=1", "-b"])
            .arg(self.addr.ip().to_string())
            .arg(format!("@{}", self.addr.ip()))
            .args(["TXT", fqdn])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().trim_matches('"').to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Every TXT record in every zone file and journal this server holds ("" if none): the
    /// zone dumped by `named-journalprint` is not needed; `dig AXFR` shows the live data.
    pub fn all_txt(&self, zone: &str) -> Vec<String> {
        let out = Command::new("dig")
            .args(["+noall", "+answer", "+time=2", "+tries=1"])
            .arg(format!("@{}", self.addr.ip()))
            .args(["AXFR", zone])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.split_whitespace().nth(3) == Some("TXT"))
            .map(str::to_string)
            .collect()
    }
}

fn zone_file(z: &Zone, ns: &[(&str, IpAddr)]) -> String {
    let mut s = format!(
        "$TTL 60\n$ORIGIN {0}.\n@ IN SOA {1}. hostmaster.{0}. 1 2 1 3600 10\n",
        z.name, ns[0].0
    );
    for (n, a) in ns {
        s.push_str(&format!("@ IN NS {n}.\n"));
        if n.ends_with(&format!(".{}", z.name)) {
            s.push_str(&format!("{n}. IN A {a}\n"));
        }
    }
    s.push_str(z.records);
    s.push('\n');
    s
}
