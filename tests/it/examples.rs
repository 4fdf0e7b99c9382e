//! The shipped example configs validate and plan what their comments promise.

use std::process::Command;

fn check(file: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vipcert"))
        .args([
            "config",
            "check",
            "--config",
            file,
            "--node",
            "dtn1.example.org",
        ])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{file}: {}{}",
        s,
        String::from_utf8_lossy(&out.stderr)
    );
    s
}

#[test]
fn shared_example_plans_one_certificate_vip_first() {
    let s = check("examples/shared.toml");
    assert!(s.contains("lineage gridftp.example.org  (4 names)"), "{s}");
    assert!(s.contains("CN   gridftp.example.org"), "{s}");
    let order: Vec<&str> = s
        .lines()
        .filter(|l| l.trim_start().starts_with("SAN"))
        .collect();
    assert!(
        order[0].ends_with("gridftp.example.org") && order[1].ends_with("dtn1.example.org"),
        "{order:?}"
    );
    assert!(
        s.contains("/etc/grid-security/gridftp/gridftp-hostkey.pem (0400 root:root)"),
        "{s}"
    );
}

#[test]
fn per_host_example_plans_one_certificate_per_node() {
    let s = check("examples/per-host.toml");
    assert!(
        s.contains("lineage dtn1.example.org  (2 names)")
            && s.contains("lineage dtn2.example.org  (2 names)"),
        "{s}"
    );
    assert!(
        s.contains("/etc/grid-security/xrd/xrdkey.pem (0400 xrootd:xrootd)"),
        "{s}"
    );
}

#[test]
fn bad_config_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v.toml");
    let text = std::fs::read_to_string("examples/shared.toml")
        .unwrap()
        .replace("key_type = \"rsa2048\"", "key_type = \"rsa1024\"");
    std::fs::write(&p, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vipcert"))
        .args(["config", "check", "--config", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains(&format!(
            "{}:12: acme.key_type: \"rsa1024\" is not one of",
            p.display()
        )),
        "{e}"
    );
}

/// The shipped units may write only below their ReadWritePaths: the examples' shared_dir must
/// be one of them, else a copied example fails in the sandbox ("Read-only file system").
#[test]
fn examples_share_a_directory_the_units_may_write() {
    for unit in [
        "systemd/vipcert-serve.service",
        "systemd/vipcert-renew.service",
    ] {
        let text = std::fs::read_to_string(unit).unwrap();
        let writable: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("ReadWritePaths="))
            .flat_map(|l| l.split_whitespace())
            .map(|p| p.trim_start_matches('-'))
            .collect();
        for file in ["examples/shared.toml", "examples/per-host.toml"] {
            let s = check(file);
            let dir = s
                .lines()
                .find_map(|l| l.strip_prefix("shared dir "))
                .unwrap_or_else(|| panic!("{file}: no shared dir line in\n{s}"));
            assert!(
                writable
                    .iter()
                    .any(|w| std::path::Path::new(dir.trim()).starts_with(w)),
                "{file}: shared_dir {dir} is not under {unit}'s ReadWritePaths {writable:?}"
            );
        }
    }
}

/// An example copied as it is gets no warning that would stay for ever.
#[test]
fn examples_check_without_warnings() {
    for file in ["examples/shared.toml", "examples/per-host.toml"] {
        let s = check(file);
        assert!(!s.to_lowercase().contains("warning"), "{file}:\n{s}");
    }
}
