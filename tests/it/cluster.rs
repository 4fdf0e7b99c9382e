//! Cluster changes against a real Pebble CA: a `[[node]]` added after the first issue makes
//! `renew` (no --force) order a certificate with the new name set at once, and every node
//! installs it.

use crate::common::net::Block;
use crate::common::pebble::{Lab, LabOptions};
use crate::common::text;

const VIP: &str = "gridftp.example.org";
const CERT: &str = "etc/grid-security/gridftp/gridftp-hostcert.pem";

fn run_as(lab: &Lab, i: usize, args: &[&str]) -> std::process::Output {
    let root = lab.root(i);
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--root", root.to_str().unwrap()]);
    lab.run(i, &a)
}

fn version_dir(lab: &Lab, v: u32) -> std::path::PathBuf {
    lab.store_dir(VIP).join(format!("{v:04}"))
}

/// The name set of store version `v`'s certificate.
fn names(lab: &Lab, v: u32) -> std::collections::BTreeSet<String> {
    let pem = std::fs::read(version_dir(lab, v).join("cert.pem")).unwrap();
    let info = vipcert::cert::leaf_info(&pem).unwrap();
    info.sans.into_iter().chain(info.cn).collect()
}

#[test]
fn added_node_makes_renew_issue_the_new_name_set_and_every_node_installs_it() {
    let lab = Lab::new(
        Block::ClusterChange,
        LabOptions {
            nodes: 3,
            ..LabOptions::default()
        },
    );
    // The site starts with two nodes: dtn3 runs its server but is not in the config yet.
    let three = std::fs::read_to_string(&lab.config).unwrap();
    let dtn3 = format!(
        "\n[[node]]\nhostname = \"dtn3.example.org\"\naddress = \"{}\"\n",
        lab.nodes[2].1
    );
    assert!(three.contains(&dtn3));
    std::fs::write(&lab.config, three.replace(&dtn3, "")).unwrap();

    let out = run_as(&lab, 0, &["issue"]);
    assert!(out.status.success(), "{}", text(&out));
    let two_names = names(&lab, 1);
    assert!(!two_names.contains("dtn3.example.org"), "{two_names:?}");
    let out = run_as(&lab, 0, &["renew"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("not due"), "{}", text(&out));
    assert!(!version_dir(&lab, 2).exists());

    // dtn3 joins: renew (no --force) orders the new name set at once and says why.
    std::fs::write(&lab.config, &three).unwrap();
    let out = run_as(&lab, 1, &["renew"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("the cluster changed: names added: dtn3.example.org"),
        "{t}"
    );
    let want: std::collections::BTreeSet<String> = [
        VIP,
        "dtn1.example.org",
        "dtn2.example.org",
        "dtn3.example.org",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(names(&lab, 2), want);

    // Every node, the new one included, installs version 2.
    let full = std::fs::read(version_dir(&lab, 2).join("fullchain.pem")).unwrap();
    for i in 0..3 {
        let out = run_as(&lab, i, &["install"]);
        assert!(out.status.success(), "node {i}: {}", text(&out));
        let got = std::fs::read(lab.root(i).join(CERT)).unwrap();
        assert!(got == full, "node {i} does not hold version 2");
    }

    // Nothing changed since: the next renew orders nothing.
    let out = run_as(&lab, 2, &["renew"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("not due"), "{}", text(&out));
    assert!(!version_dir(&lab, 3).exists());
}
