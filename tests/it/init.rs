//! `vipcert init` writes a first config that `config check` accepts, never replaces an
//! admin's file without --force, and writes nothing when a flag is bad. Also: the man pages
//! and completions come out of the same binary. No network: no address block.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::common::BIN;

const GOOD: &[&str] = &[
    "--virtual-hostname",
    "gridftp.example.org",
    "--virtual-ip",
    "192.0.2.10",
    "--shared-dir",
    "/srv/vipcert",
    "--layout",
    "shared",
    "--contact",
    "grid-admin@example.org",
    "--node",
    "dtn1.example.org=192.0.2.11",
    "--node",
    "dtn2.example.org=192.0.2.12",
];

fn init(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .arg("init")
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn init_writes_a_config_that_config_check_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("etc/vipcert/vipcert.toml");
    let out = init(&cfg, GOOD);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    // The plan, as config check prints it, then the next steps.
    assert!(t.contains("lineage gridftp.example.org  (3 names)"), "{t}");
    assert!(
        t.contains("Next steps:") && t.contains("vipcert preflight"),
        "{t}"
    );
    assert_eq!(mode(&cfg), 0o644);
    assert_eq!(mode(&tmp.path().join("etc/vipcert")), 0o755);
    assert_eq!(mode(&tmp.path().join("etc")), 0o755);
    let leftovers: Vec<_> = std::fs::read_dir(cfg.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");

    let check = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .args(["config", "check"])
        .output()
        .unwrap();
    let c = text(&check);
    assert!(check.status.success(), "{c}");
    assert!(c.contains("lineage gridftp.example.org  (3 names)"), "{c}");
    assert!(c.contains("SAN2  dtn1.example.org"), "{c}");
    assert!(c.contains("letsencrypt.org/directory"), "{c}");
    let file = std::fs::read_to_string(&cfg).unwrap();
    assert!(file.contains("mailto:grid-admin@example.org"), "{file}");
}

/// The units read /etc/vipcert/vipcert.toml: a file written elsewhere must not be called the
/// one they use, and the next steps say how to point them at it.
#[test]
fn init_elsewhere_says_where_the_units_read_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("site/vipcert.toml");
    let out = init(&cfg, GOOD);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let steps = &t[t.find("Next steps:").expect("next steps")..];
    assert!(
        !steps.contains(&format!("Put this file at {}", cfg.display())),
        "{t}"
    );
    assert!(
        steps.contains("/etc/vipcert/vipcert.toml")
            && steps.contains(&format!("Environment=VIPCERT_CONFIG={}", cfg.display())),
        "{t}"
    );
    // PrivateTmp hides /tmp from the units (ProtectHome: /home, /root): say so.
    if cfg.starts_with("/tmp") || cfg.starts_with("/var/tmp") {
        assert!(steps.contains("PrivateTmp"), "{t}");
    }
}

#[test]
fn init_per_host_with_staging() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("vipcert.toml");
    let mut args = GOOD.to_vec();
    let l = args.iter().position(|a| *a == "shared").unwrap();
    args[l] = "per-host";
    args.push("--staging");
    let out = init(&cfg, &args);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("lineage dtn1.example.org  (2 names)")
            && t.contains("lineage dtn2.example.org  (2 names)"),
        "{t}"
    );
    assert!(t.contains("acme-staging-v02"), "{t}");
}

#[test]
fn init_refuses_to_overwrite_without_force_and_force_replaces() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("vipcert.toml");
    let admins = "# the admin's own file\nvirtual_hostname = \"x.example.org\"\n";
    std::fs::write(&cfg, admins).unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o640)).unwrap();

    let out = init(&cfg, GOOD);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("already exists") && t.contains("--force"), "{t}");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), admins);
    assert_eq!(mode(&cfg), 0o640);

    let mut forced = GOOD.to_vec();
    forced.push("--force");
    let out = init(&cfg, &forced);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("replaced"), "{t}");
    let now = std::fs::read_to_string(&cfg).unwrap();
    assert!(now.contains("gridftp.example.org"), "{now}");
    assert_eq!(mode(&cfg), 0o644);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn init_with_a_bad_flag_says_which_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("etc/vipcert.toml");
    // (flag to replace, bad value, words the error must contain)
    let cases: &[(&str, &str, &[&str])] = &[
        ("--virtual-ip", "192.0.2", &["--virtual-ip", "192.0.2"]),
        (
            "--virtual-hostname",
            "GridFTP.example.org",
            &["--virtual-hostname", "lower case"],
        ),
        ("--shared-dir", "srv/vipcert", &["--shared-dir", "absolute"]),
        ("--layout", "both", &["--layout", "both"]),
        ("--contact", "grid-admin", &["--contact", "e-mail"]),
        ("--node", "dtn1.example.org", &["--node", "NAME=ADDRESS"]),
        (
            "--node",
            "dtn1.example.org=192.0.2.10",
            &["--node", "is the virtual_ip"],
        ),
        (
            "--node",
            "gridftp.example.org=192.0.2.13",
            &["--node", "virtual hostname"],
        ),
    ];
    for (flag, bad, words) in cases {
        let mut args = GOOD.to_vec();
        let i = args.iter().position(|a| a == flag).unwrap();
        args[i + 1] = bad;
        let out = init(&cfg, &args);
        let t = text(&out);
        assert!(!out.status.success(), "{flag} {bad}: {t}");
        let err = String::from_utf8_lossy(&out.stderr);
        for w in *words {
            assert!(err.contains(w), "{flag} {bad}: error lacks {w:?}: {err}");
        }
        assert!(
            !tmp.path().join("etc").exists(),
            "{flag} {bad} wrote something"
        );
    }
    // Two nodes with one name, and no node at all.
    let mut args = GOOD.to_vec();
    args[13] = "dtn1.example.org=192.0.2.12";
    let out = init(&cfg, &args);
    let t = text(&out);
    assert!(!out.status.success() && t.contains("listed twice"), "{t}");
    let out = init(&cfg, &GOOD[..10]);
    let t = text(&out);
    assert!(!out.status.success() && t.contains("--node"), "{t}");
    assert!(!tmp.path().join("etc").exists());
}

#[test]
fn man_pages_and_completions_come_from_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["man", "--out-dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    for page in [
        "vipcert.1",
        "vipcert-init.1",
        "vipcert-issue.1",
        "vipcert-renew.1",
    ] {
        let p = std::fs::read_to_string(tmp.path().join(page)).unwrap();
        assert!(p.contains("\n.TH VIPCERT"), "{page}: {p}");
    }
    let renew = std::fs::read_to_string(tmp.path().join("vipcert-renew.1")).unwrap();
    assert!(
        renew.contains("Retry\\-After") && renew.contains("Exit status"),
        "{renew}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && s.contains("rollback"),
            "{shell}: {s}"
        );
    }
}
