//! A CA per lineage against two real Pebbles, each with its own roots: in the per-host layout
//! a node that names a `[[acme.ca]]` gets its certificate from that CA (its own account, its
//! own roots for verification, install and `check`), the others from `[acme]`; `revoke` goes
//! to the CA that issued the version; `config check` and `account --ca` say which CA.

use std::path::Path;
use std::process::Command;

use crate::common::net::Block;
use crate::common::pebble::{Lab, LabOptions, Pebble};
use crate::common::text;

/// `openssl verify` of the first certificate in `cert` against the roots in `roots`, with the
/// intermediates in `chain`: whether it verifies.
fn verifies(cert: &Path, chain: &Path, roots: &Path) -> bool {
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(roots)
        .arg("-untrusted")
        .arg(chain)
        .arg(cert)
        .output()
        .unwrap();
    out.status.success()
}

fn meta(lab: &Lab, lineage: &str, v: &str) -> serde_json::Value {
    let f = lab.store_dir(lineage).join(v).join("meta.json");
    serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap()
}

#[test]
fn each_lineage_comes_from_its_own_ca_and_is_revoked_there() {
    let block = Block::NamedCaTwoPebbles;
    let lab = Lab::new(
        block,
        LabOptions {
            layout: "per-host",
            nodes: 2,
            acme_extra: "key_type = \"ecdsa-p256\"",
            ..LabOptions::default()
        },
    );
    // The second CA: its own HTTPS roots and issuing root, its own DNS with the same names.
    let igtf = Pebble::start(&lab.dir.join("pebble-igtf"), block.ip(3), true);
    igtf.add_a(&lab.vip.0, lab.vip.1);
    for (h, ip) in &lab.nodes {
        igtf.add_a(h, *ip);
    }
    let (le_url, igtf_url) = (&lab.pebble.directory_url, &igtf.directory_url);
    let (dtn1, dtn2) = (lab.nodes[0].0.clone(), lab.nodes[1].0.clone());
    lab.edit_config(|c| {
        c.replacen(
            "\n[[node]]",
            &format!(
                "\n[[acme.ca]]\nname = \"igtf\"\ndirectory = \"{igtf_url}\"\nca_roots = \"{}\"\n\n[[node]]",
                igtf.ca_pem.display()
            ),
            1,
        )
        .replacen(
            &format!("hostname = \"{dtn2}\"\n"),
            &format!("hostname = \"{dtn2}\"\nca = \"igtf\"\n"),
            1,
        )
    });

    // `config check` says which CA each lineage uses.
    let out = lab.run(0, &["config", "check"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(
        msg.contains(&format!(
            "lineage {dtn1}  (2 names)\n  CN   {dtn1}\n  CA   [acme] {le_url}\n"
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "lineage {dtn2}  (2 names)\n  CN   {dtn2}\n  CA   [[acme.ca]] \"igtf\" {igtf_url}, no fallback\n"
        )),
        "{msg}"
    );

    let out = lab.run_as(0, &["issue"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(
        msg.contains(&format!("{dtn1}: issued version 0001")),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("{dtn2}: issued version 0001")),
        "{msg}"
    );
    assert_eq!(lab.pebble.orders_created(), 1, "{msg}");
    assert_eq!(igtf.orders_created(), 1, "{msg}");
    assert_eq!(meta(&lab, &dtn1, "0001")["ca"], le_url.as_str());
    assert_eq!(meta(&lab, &dtn2, "0001")["ca"], igtf_url.as_str());
    // One account per CA, stored apart.
    let host = |p: &Pebble| p.listen.to_string().replace(':', "_");
    let accounts = lab.shared.join("accounts");
    assert!(accounts
        .join(host(&lab.pebble))
        .join("account.json")
        .exists());
    assert!(accounts
        .join("named/igtf")
        .join(host(&igtf))
        .join("account.json")
        .exists());
    assert!(!accounts.join(host(&igtf)).exists());

    // Each node installs its own lineage; the installed certificate chains to its CA's root
    // and not to the other's.
    let out = lab.run_as(1, &["install"]);
    assert!(out.status.success(), "{}", text(&out));
    let installed = |i: usize| lab.root(i).join("etc/grid-security/hostcert.pem");
    let chain = |l: &str| lab.store_dir(l).join("0001/chain.pem");
    let (le_roots, igtf_roots) = (&lab.pebble.ca_pem, &igtf.ca_pem);
    assert!(verifies(&installed(0), &chain(&dtn1), le_roots));
    assert!(!verifies(&installed(0), &chain(&dtn1), igtf_roots));
    assert!(verifies(&installed(1), &chain(&dtn2), igtf_roots));
    assert!(!verifies(&installed(1), &chain(&dtn2), le_roots));

    // `check` verifies each lineage against the roots of its own CA.
    for i in 0..2 {
        let out = lab.run_as(i, &["check"]);
        let msg = text(&out);
        assert_eq!(out.status.code(), Some(0), "node {i}: {msg}");
    }

    // The named CA's account, by name.
    let out = lab.run(0, &["account", "--ca", "igtf", "show"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(msg.contains(igtf_url.as_str()), "{msg}");
    let out = lab.run(0, &["account", "show", "--ca", "harica"]);
    let msg = text(&out);
    assert!(!out.status.success(), "{msg}");
    assert!(
        msg.contains("no [[acme.ca]] named \"harica\"; its named CAs: igtf"),
        "{msg}"
    );

    // A node moved to the named CA: the next renew finds its lineage due (its version is
    // from another configured CA) and orders it there; the other lineage is left alone.
    lab.edit_config(|c| {
        c.replacen(
            &format!("hostname = \"{dtn1}\"\n"),
            &format!("hostname = \"{dtn1}\"\nca = \"igtf\"\n"),
            1,
        )
    });
    let out = lab.run_as(0, &["renew"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(msg.contains(&format!("CA {le_url} -> {igtf_url}")), "{msg}");
    assert_eq!(igtf.orders_created(), 2, "{msg}");
    assert_eq!(lab.pebble.orders_created(), 1, "{msg}");
    assert_eq!(meta(&lab, &dtn1, "0002")["ca"], igtf_url.as_str());
    assert!(!lab.store_dir(&dtn2).join("0002").exists(), "{msg}");
    lab.edit_config(|c| c.replacen("ca = \"igtf\"\n", "", 1));

    // Revocation goes to the CA that issued the version (Pebble refuses a certificate it
    // did not issue: success means the igtf Pebble revoked it).
    let out = lab.run_as(1, &["revoke", &dtn2, "--reason", "superseded"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(
        msg.contains(&format!(
            "store/{dtn2}/0001: revoked at {igtf_url} (superseded)"
        )),
        "{msg}"
    );
    // dtn1's 0001 came from [acme] before it moved: revoked there, with [acme]'s account.
    let out = lab.run_as(
        0,
        &["revoke", &dtn1, "--version", "1", "--reason", "superseded"],
    );
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(
        msg.contains(&format!(
            "store/{dtn1}/0001: revoked at {le_url} (superseded)"
        )),
        "{msg}"
    );
}

/// A dry run orders each lineage at the staging CA of its own CA: `[acme]`'s lineages at
/// `[acme] staging_directory`, a named CA's at its `staging_directory`; no production CA hears
/// anything. A named CA without a staging directory fails its lineages at once, saying which
/// key to set, and the others are still tried.
#[test]
fn a_dry_run_orders_each_lineage_at_its_own_ca_s_staging() {
    let block = Block::NamedCaDryRun;
    let lab = Lab::new(
        block,
        LabOptions {
            layout: "per-host",
            nodes: 2,
            ..LabOptions::default()
        },
    );
    let start = |name: &str, host: u8| {
        let p = Pebble::start(&lab.dir.join(name), block.ip(host), true);
        p.add_a(&lab.vip.0, lab.vip.1);
        for (h, ip) in &lab.nodes {
            p.add_a(h, *ip);
        }
        p
    };
    let (igtf, acme_staging, igtf_staging) = (
        start("igtf", 3),
        start("le-staging", 4),
        start("igtf-staging", 5),
    );
    let dtn2 = lab.nodes[1].0.clone();
    let igtf_block = |staging: bool| {
        let mut b = format!(
            "\n[[acme.ca]]\nname = \"igtf\"\ndirectory = \"{}\"\nca_roots = \"{}\"\n",
            igtf.directory_url,
            igtf.ca_pem.display()
        );
        if staging {
            b.push_str(&format!(
                "staging_directory = \"{}\"\nstaging_ca_roots = \"{}\"\n",
                igtf_staging.directory_url,
                igtf_staging.ca_pem.display()
            ));
        }
        b
    };
    let configure = |staging: bool| {
        let staging_keys = format!(
            "staging_directory = \"{}\"\nstaging_ca_roots = \"{}\"\n",
            acme_staging.directory_url,
            acme_staging.ca_pem.display()
        );
        lab.edit_config(|c| {
            let c = c
                .replace(&igtf_block(true), "")
                .replace(&igtf_block(false), "")
                .replace(&staging_keys, "")
                .replace("ca = \"igtf\"\n", "");
            c.replacen("\n[acme]\n", &format!("\n[acme]\n{staging_keys}"), 1)
                .replacen(
                    "\n[[node]]",
                    &format!("{}\n[[node]]", igtf_block(staging)),
                    1,
                )
                .replacen(
                    &format!("hostname = \"{dtn2}\"\n"),
                    &format!("hostname = \"{dtn2}\"\nca = \"igtf\"\n"),
                    1,
                )
        })
    };
    configure(true);
    let out = lab.run_as(0, &["renew", "--dry-run"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert_eq!(acme_staging.orders_created(), 1, "{msg}");
    assert_eq!(igtf_staging.orders_created(), 1, "{msg}");
    assert_eq!(
        lab.pebble.orders_created() + igtf.orders_created(),
        0,
        "{msg}"
    );

    // igtf without a staging directory: its lineage fails, naming the key; the other is tried.
    configure(false);
    let out = lab.run_as(0, &["renew", "--dry-run"]);
    let msg = text(&out);
    assert!(!out.status.success(), "{msg}");
    assert!(
        msg.contains("[[acme.ca]] \"igtf\" has no staging_directory"),
        "{msg}"
    );
    assert_eq!(acme_staging.orders_created(), 2, "{msg}");
    assert_eq!(igtf_staging.orders_created(), 1, "{msg}");
    assert_eq!(
        lab.pebble.orders_created() + igtf.orders_created(),
        0,
        "{msg}"
    );
}
