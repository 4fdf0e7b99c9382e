//! Living with a CA against a real Pebble: a CA that forgot the account (Pebble restarted)
//! is recovered by `renew`; a CA that is down is named first in the error; `vipcert account
//! show | update | rollover | deactivate`.

use crate::common::net::Block;
use crate::common::pebble::{Lab, LabOptions};
use crate::common::text;

const VIP: &str = "gridftp.example.org";

fn lab(block: Block) -> Lab {
    Lab::new(
        block,
        LabOptions {
            nodes: 1,
            acme_extra: "key_type = \"ecdsa-p256\"",
            ..LabOptions::default()
        },
    )
}

/// The account directory of the lab's CA in the shared dir.
fn accounts(lab: &Lab) -> std::path::PathBuf {
    let host = lab.pebble.listen.to_string().replace(':', "_");
    lab.shared.join("accounts").join(host)
}

fn account_json(lab: &Lab) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(accounts(lab).join("account.json")).unwrap()).unwrap()
}

fn retired(lab: &Lab) -> usize {
    std::fs::read_dir(accounts(lab))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("account.json.retired-")
        })
        .count()
}

#[test]
fn renew_recovers_when_the_ca_forgot_the_account() {
    let mut lab = lab(Block::AcmeForgotAccount);
    let out = lab.run_as(0, &["issue"]);
    assert!(out.status.success(), "{}", text(&out));
    let before = account_json(&lab);

    // Pebble keeps accounts in memory: a restart is a CA that no longer knows ours.
    lab.pebble.restart_with("pebble-reset.json", |_| {});
    let out = lab.run_as(0, &["renew", "--force"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(
        msg.contains(&format!("{VIP}: renewed: version 0002")),
        "{msg}"
    );
    assert!(msg.contains("no longer knows the account"), "{msg}");
    // A new account replaced the old one; the old file is kept aside.
    assert_ne!(account_json(&lab)["id"], before["id"]);
    assert_eq!(retired(&lab), 1);

    // The next run uses the new account as it is: no further re-creation.
    let out = lab.run_as(0, &["renew", "--force"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(!msg.contains("no longer knows the account"), "{msg}");
    assert_eq!(retired(&lab), 1);
}

#[test]
fn ca_down_error_names_the_ca_first() {
    let mut lab = lab(Block::AcmeCaDown);
    let out = lab.run_as(0, &["issue"]);
    assert!(out.status.success(), "{}", text(&out));
    lab.pebble.stop();
    let url = lab.pebble.directory_url.clone();

    let out = lab.run_as(0, &["issue", "--force"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    // The lineage's failure (issue reports each lineage's outcome), the CA named first.
    let err = msg
        .lines()
        .find_map(|l| l.strip_prefix("gridftp.example.org: FAILED: "))
        .unwrap_or_else(|| panic!("no failure line: {msg}"));
    assert!(
        err.starts_with(&format!("the CA {url} cannot be reached")),
        "{err}"
    );
    assert!(err.contains("onnection refused"), "{err}");
    assert!(!err.contains("account.json"), "{err}");

    let out = lab.run_as(0, &["renew", "--force"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains(&format!("): the CA {url} cannot be reached")),
        "{msg}"
    );
    // The account file is left alone: the CA is down, not forgetful.
    assert_eq!(retired(&lab), 0);
}

#[test]
fn account_show_update_rollover_deactivate() {
    let lab = lab(Block::AcmeAccountCommands);
    let url = lab.pebble.directory_url.clone();

    let out = lab.run(0, &["account", "show"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(msg.contains("no account for this CA yet"), "{msg}");

    let out = lab.run_as(0, &["issue"]);
    assert!(out.status.success(), "{}", text(&out));
    let id = account_json(&lab)["id"].as_str().unwrap().to_string();

    let out = lab.run(0, &["account", "show"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(msg.contains(&format!("CA:      {url}")), "{msg}");
    assert!(msg.contains(&format!("account: {id}")), "{msg}");
    assert!(msg.contains("the CA knows this account"), "{msg}");

    // A bad contact is refused before the CA is asked.
    let out = lab.run(0, &["account", "update", "--contact", "ops@example.org"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(msg.contains("must start with \"mailto:\""), "{msg}");
    let out = lab.run(
        0,
        &[
            "account",
            "update",
            "--contact",
            "mailto:ops@example.org",
            "--contact",
            "mailto:grid@example.org",
        ],
    );
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(
        msg.contains("contacts are now mailto:ops@example.org, mailto:grid@example.org"),
        "{msg}"
    );

    // Rollover: same account, new key, saved; ordering with it works.
    let key_before = account_json(&lab)["key_pkcs8"].clone();
    let out = lab.run(0, &["account", "rollover"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(msg.contains("key rolled over"), "{msg}");
    let after = account_json(&lab);
    assert_eq!(after["id"].as_str(), Some(id.as_str()));
    assert_ne!(after["key_pkcs8"], key_before);
    let out = lab.run_as(0, &["issue", "--force"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(msg.contains("issued version 0002"), "{msg}");
    assert_eq!(account_json(&lab)["id"].as_str(), Some(id.as_str()));

    // Deactivate: needs --yes; then the CA refuses the account, its file moves aside, and the
    // next issue creates a new account.
    let out = lab.run(0, &["account", "deactivate"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("--yes"));
    let out = lab.run(0, &["account", "deactivate", "--yes"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(msg.contains("deactivated"), "{msg}");
    assert_eq!(retired(&lab), 1);
    let out = lab.run(0, &["account", "show"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = lab.run_as(0, &["issue", "--force"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(msg.contains("issued version 0003"), "{msg}");
    assert_ne!(account_json(&lab)["id"].as_str(), Some(id.as_str()));
}

/// The HMAC key Pebble is given for `kid-1` (base64url, 48 bytes), and another one.
const EAB_KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
const WRONG_KEY: &str = "b2xkLWtleS1vbGQta2V5LW9sZC1rZXktb2xkLWtleS1vbGQta2V5LW9sZC1rZXk";

/// Add `lines` at the top of the lab config's [acme] section.
fn acme_keys(lab: &Lab, lines: &str) {
    lab.edit_config(|c| c.replacen("[acme]\n", &format!("[acme]\n{lines}\n"), 1));
}

#[test]
fn eab_issue_needs_the_right_key_in_a_private_file() {
    use std::os::unix::fs::PermissionsExt;
    let mut lab = lab(Block::AcmeEab);
    lab.pebble.restart_with("pebble-eab.json", |cfg| {
        cfg["pebble"]["externalAccountBindingRequired"] = true.into();
        cfg["pebble"]["externalAccountMACKeys"] = serde_json::json!({ "kid-1": EAB_KEY });
    });
    let url = lab.pebble.directory_url.clone();

    // No EAB configured: the CA's refusal, named, with what to set.
    let out = lab.run_as(0, &["issue"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains(&format!(
            "gridftp.example.org: FAILED: the CA {url} refused"
        )),
        "{msg}"
    );
    assert!(msg.contains("[externalAccountRequired]"), "{msg}");
    assert!(
        msg.contains("set acme.eab_kid and acme.eab_hmac_key_file"),
        "{msg}"
    );

    let keyfile = lab.dir.join("eab.key");
    acme_keys(
        &lab,
        &format!(
            "eab_kid = \"kid-1\"\neab_hmac_key_file = \"{}\"",
            keyfile.display()
        ),
    );
    // A world-readable key file is refused before the CA is asked.
    std::fs::write(&keyfile, format!("{EAB_KEY}\n")).unwrap();
    std::fs::set_permissions(&keyfile, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = lab.run_as(0, &["issue"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains("readable by group or others (mode 0644)"),
        "{msg}"
    );
    assert!(
        !msg.contains(EAB_KEY),
        "the key leaked into the output: {msg}"
    );
    // A symlink to a good file is refused too.
    let real = lab.dir.join("eab-real.key");
    std::fs::write(&real, EAB_KEY).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::remove_file(&keyfile).unwrap();
    std::os::unix::fs::symlink(&real, &keyfile).unwrap();
    let out = lab.run_as(0, &["issue"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(msg.contains("not a symlink"), "{msg}");
    std::fs::remove_file(&keyfile).unwrap();

    // The wrong key: the CA refuses, the error says which kid and file to check.
    std::fs::write(&keyfile, WRONG_KEY).unwrap();
    std::fs::set_permissions(&keyfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = lab.run_as(0, &["issue"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains(&format!(
            "gridftp.example.org: FAILED: the CA {url} refused"
        )),
        "{msg}"
    );
    assert!(msg.contains("key id \"kid-1\""), "{msg}");
    assert!(
        !msg.contains(WRONG_KEY),
        "the key leaked into the output: {msg}"
    );
    assert!(!accounts(&lab).join("account.json").exists());

    // The right key: an account bound to kid-1, and a certificate.
    std::fs::write(&keyfile, format!("{EAB_KEY}\n")).unwrap();
    let out = lab.run_as(0, &["issue"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(msg.contains("issued version 0001"), "{msg}");
    assert!(
        !msg.contains(EAB_KEY),
        "the key leaked into the output: {msg}"
    );
}

#[test]
fn revoke_marks_the_version_reissues_and_nothing_goes_back_to_it() {
    use crate::lifecycle::{fast_watch, installed};
    let mut lab = Lab::new(
        Block::AcmeRevoke,
        LabOptions {
            nodes: 2,
            acme_extra: "key_type = \"ecdsa-p256\"",
            ..LabOptions::default()
        },
    );
    fast_watch(&lab);
    let _watcher = lab.start_watcher(1);
    let out = lab.run_as(0, &["issue"]);
    assert!(out.status.success(), "{}", text(&out));
    crate::common::wait_for(|| installed(&lab, 1) == Some(1), "node 1 installs 0001");
    let key1 = std::fs::read(lab.store_dir(VIP).join("0001/key.pem")).unwrap();

    // A leaked key: revoke 0001 and reissue at once.
    let out = lab.run_as(
        0,
        &["revoke", VIP, "--reason", "keyCompromise", "--reissue"],
    );
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(
        msg.contains(&format!(
            "store/{VIP}/0001: revoked at {}",
            lab.pebble.directory_url
        )),
        "{msg}"
    );
    assert!(msg.contains("issued version 0002"), "{msg}");
    let mark: serde_json::Value = serde_json::from_slice(
        &std::fs::read(lab.store_dir(VIP).join("0001/revoked.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(mark["reason"], "keyCompromise");
    assert_eq!(mark["by"], lab.nodes[0].0.as_str());
    // A new key, installed here and by the watching node.
    assert_ne!(
        std::fs::read(lab.store_dir(VIP).join("0002/key.pem")).unwrap(),
        key1
    );
    assert_eq!(installed(&lab, 0), Some(2));
    crate::common::wait_for(|| installed(&lab, 1) == Some(2), "node 1 installs 0002");

    // The CA did revoke it: asking again, it says so (and the mark stays).
    let out = lab.run_as(0, &["revoke", VIP, "--version", "1"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(
        msg.contains("already marked revoked (keyCompromise)"),
        "{msg}"
    );

    // Rollback refuses the revoked version; current stays 0002.
    let out = lab.run_as(0, &["rollback", VIP, "--to", "1"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains("this certificate is marked revoked in the store"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_link(lab.store_dir(VIP).join("current")).unwrap(),
        std::path::Path::new("0002")
    );

    // Revoke the current version without --reissue (the CA confirms against its own
    // records): install refuses it and `check` calls the nodes holding it critical.
    let out = lab.run_as(0, &["revoke", VIP, "--reason", "superseded"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(msg.contains("the current version is revoked"), "{msg}");
    let out = lab.run_as(0, &["install"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains("this certificate is marked revoked in the store"),
        "{msg}"
    );
    let root = lab.root(0);
    let out = lab.run(0, &["check", "--root", root.to_str().unwrap()]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(
        msg.contains("this certificate is marked revoked in the store"),
        "{msg}"
    );

    // A new certificate ends it.
    let out = lab.run_as(0, &["issue", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = lab.run(0, &["check", "--root", root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn an_unreachable_ca_falls_through_to_the_next_and_state_names_the_issuer() {
    let lab = Lab::new(
        Block::AcmeFallback,
        LabOptions {
            nodes: 1,
            acme_extra: "key_type = \"ecdsa-p256\"",
            ..LabOptions::default()
        },
    );
    let pebble = lab.pebble.directory_url.clone();
    // [acme] is a CA nobody answers for (a closed port on this test's own address); Pebble is
    // the fallback.
    let dead = format!("https://{}:1/dir", Block::AcmeFallback.host(3));
    let c = std::fs::read_to_string(&lab.config).unwrap();
    let c = c.replacen(
        &format!("directory = \"{pebble}\""),
        &format!("directory = \"{dead}\""),
        1,
    );
    let c = c.replacen(
        "\n[[node]]",
        &format!("\n[[acme.fallback]]\ndirectory = \"{pebble}\"\n\n[[node]]"),
        1,
    );
    std::fs::write(&lab.config, c).unwrap();

    let out = lab.run_as(0, &["issue"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(msg.contains("issued version 0001"), "{msg}");
    assert!(
        msg.contains(&format!("the CA {dead} cannot be reached")),
        "{msg}"
    );
    assert!(msg.contains("trying the next CA"), "{msg}");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lab.store_dir(VIP).join("0001/meta.json")).unwrap())
            .unwrap();
    assert_eq!(meta["ca"], pebble.as_str());
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(lab.shared.join(format!("state/{VIP}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(state["ca"], pebble.as_str());
    let root = lab.root(0);
    let out = lab.run(
        0,
        &[
            "check",
            "--format",
            "json",
            "--root",
            root.to_str().unwrap(),
        ],
    );
    let msg = text(&out);
    assert!(msg.contains(&format!("from the CA {pebble}")), "{msg}");
}
