//! Living with a CA against a real Pebble: a CA that forgot the account (Pebble restarted)
//! is recovered by `renew`; a CA that is down is named first in the error; `vipcert account
//! show | update | rollover | deactivate`.

mod common;

use common::pebble::{Lab, LabOptions};
use common::text;

const VIP: &str = "gridftp.example.org";

fn lab(net: &str) -> Lab {
    Lab::new(LabOptions {
        net,
        nodes: 1,
        acme_extra: "key_type = \"ecdsa-p256\"",
        ..LabOptions::default()
    })
}

fn run(lab: &Lab, args: &[&str]) -> std::process::Output {
    let root = lab.root(0);
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--root", root.to_str().unwrap()]);
    lab.run(0, &a)
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
    let mut lab = lab("127.0.100");
    let out = run(&lab, &["issue"]);
    assert!(out.status.success(), "{}", text(&out));
    let before = account_json(&lab);

    // Pebble keeps accounts in memory: a restart is a CA that no longer knows ours.
    lab.pebble.restart_with("pebble-reset.json", |_| {});
    let out = run(&lab, &["renew", "--force"]);
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
    let out = run(&lab, &["renew", "--force"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(!msg.contains("no longer knows the account"), "{msg}");
    assert_eq!(retired(&lab), 1);
}

#[test]
fn ca_down_error_names_the_ca_first() {
    let mut lab = lab("127.0.101");
    let out = run(&lab, &["issue"]);
    assert!(out.status.success(), "{}", text(&out));
    lab.pebble.stop();
    let url = lab.pebble.directory_url.clone();

    let out = run(&lab, &["issue", "--force"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    let err = msg
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {msg}"));
    assert!(
        err.starts_with(&format!("error: the CA {url} cannot be reached")),
        "{err}"
    );
    assert!(err.contains("onnection refused"), "{err}");
    assert!(!err.contains("account.json"), "{err}");

    let out = run(&lab, &["renew", "--force"]);
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
    let lab = lab("127.0.102");
    let url = lab.pebble.directory_url.clone();

    let out = lab.run(0, &["account", "show"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(msg.contains("no account for this CA yet"), "{msg}");

    let out = run(&lab, &["issue"]);
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
    let out = run(&lab, &["issue", "--force"]);
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
    let out = run(&lab, &["issue", "--force"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(msg.contains("issued version 0003"), "{msg}");
    assert_ne!(account_json(&lab)["id"].as_str(), Some(id.as_str()));
}
