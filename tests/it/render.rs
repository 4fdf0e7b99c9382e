//! `vipcert render …` through the real binary; the keepalived.conf it prints must pass the
//! real `keepalived -t`.

use std::path::Path;
use std::process::Command;

use crate::common::{text, BIN};
const KEEPALIVED: &str = "/usr/sbin/keepalived";

fn config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let p = dir.join("vipcert.toml");
    std::fs::write(
        &p,
        format!(
            r#"virtual_hostname = "gridftp.example.org"
virtual_ip = "192.0.2.10"
shared_dir = "/mnt/nfsshare/vipcert"
layout = "shared"
[[node]]
hostname = "dtn1.example.org"
address = "192.0.2.11"
[[node]]
hostname = "dtn2.example.org"
address = "192.0.2.12"
weight = 2
{extra}"#
        ),
    )
    .unwrap();
    p
}

fn render(cfg: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(cfg)
        .arg("render")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// keepalived refuses VRRP on loopback: use the first real interface of this machine.
fn interface() -> String {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    names
        .into_iter()
        .next()
        .expect("keepalived -t needs a non-loopback network interface for the vrrp_instance")
}

fn keepalived_check(conf: &Path) -> (bool, String) {
    let out = Command::new(KEEPALIVED)
        .arg("-t")
        .arg("-f")
        .arg(conf)
        .output()
        .unwrap();
    (out.status.success(), text(&out))
}

#[test]
fn rendered_keepalived_conf_passes_keepalived_t() {
    if !Path::new(KEEPALIVED).exists() {
        eprintln!("skipped: {KEEPALIVED} is absent (Debian package keepalived)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for extra in [
        // Defaults: http on 80 (HTTP_GET), gridftp on 2811 (TCP_CHECK), wlc, DR.
        format!("[balancer.keepalived]\ninterface = \"{}\"\n", interface()),
        // A backup balancer, NAT with a port mapping, weighted round robin.
        format!(
            "[balancer]\nscheduler = \"rr\"\nfall = 1\n[balancer.keepalived]\ninterface = \"{}\"\nstate = \"BACKUP\"\nvirtual_router_id = 200\nlvs_method = \"NAT\"\n[[balancer.service]]\nname = \"web\"\nport = 80\nbackend_port = 8080\ncheck = \"http\"\n[[balancer.service]]\nname = \"gridftp\"\nport = 2811\ncheck = \"banner\"\nexpect = \"220\"\n",
            interface()
        ),
    ] {
        let cfg = config(dir.path(), &extra);
        let (ok, text, err) = render(&cfg, &["keepalived"]);
        assert!(ok, "{err}");
        let conf = dir.path().join("keepalived.conf");
        std::fs::write(&conf, &text).unwrap();
        let (ok, why) = keepalived_check(&conf);
        assert!(ok, "keepalived -t refused:\n{why}\n---\n{text}");
        assert_eq!(text.matches("virtual_server ").count(), 2, "{text}");
        assert_eq!(text.matches("real_server ").count(), 4, "{text}");
        // The same check must be able to fail: a broken copy is refused.
        let broken = text.replace("lvs_method", "lvs_methd");
        std::fs::write(&conf, broken).unwrap();
        assert!(!keepalived_check(&conf).0, "keepalived -t accepted a broken file");
    }
}

#[test]
fn dr_with_a_port_mapping_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "[[balancer.service]]\nname = \"web\"\nport = 80\nbackend_port = 8080\n",
    );
    let (ok, _, err) = render(&cfg, &["keepalived"]);
    assert!(!ok);
    assert!(err.contains("cannot change ports"), "{err}");
}

#[test]
fn arptables_and_gridftp_sysconfig() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "[install]\ncert = \"/etc/grid-security/hostcert.pem\"\nkey = \"/etc/grid-security/hostkey.pem\"\n",
    );
    let (ok, text, err) = render(&cfg, &["arptables"]);
    assert!(ok, "{err}");
    for node in ["192.0.2.11", "192.0.2.12"] {
        assert!(
            text.contains(&format!(
                "arptables -A OUT -s 192.0.2.10 -j mangle --mangle-ip-s {node}"
            )),
            "{text}"
        );
    }
    assert_eq!(
        text.matches("arptables -A IN -d 192.0.2.10 -j DROP")
            .count(),
        2
    );
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .args(["--node", "dtn2.example.org", "render", "arptables"])
        .output()
        .unwrap();
    let one = String::from_utf8(out.stdout).unwrap();
    assert!(
        one.contains("--mangle-ip-s 192.0.2.12") && !one.contains("192.0.2.11"),
        "{one}"
    );

    let (ok, text, err) = render(&cfg, &["gridftp-sysconfig"]);
    assert!(ok, "{err}");
    assert_eq!(
        text,
        "export X509_USER_CERT=/etc/grid-security/hostcert.pem\nexport X509_USER_KEY=/etc/grid-security/hostkey.pem\n"
    );
}
