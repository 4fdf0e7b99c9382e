//! `vipcert render …` through the real binary (`keepalived -t` on every keepalived variant is
//! in failover.rs: it needs a namespace where the VRRP interface exists).

use std::path::Path;
use std::process::Command;

use crate::common::BIN;

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
