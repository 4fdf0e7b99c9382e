//! `vipcert status` against Pebble (issue 20, Deliver 1): after an issue it shows the
//! version, serial, names and the next renewal with its reason, in the table and in JSON;
//! what a renew learned of the CA's ARI; a recorded failure's backoff; with `--fleet` each
//! node's installed version and when it installed it, and a node that does not answer. It
//! reads only: the shared directory is the same, file for file, before and after.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::common::net::Block;
use crate::common::pebble::{Lab, LabOptions};
use crate::common::site::snapshot;
use crate::common::{text, wait_for};
use crate::lifecycle::fast_watch;

const VIP: &str = "gridftp.example.org";
const CERT: &str = "etc/grid-security/gridftp/gridftp-hostcert.pem";

/// `vipcert status <args>` on node 0: it succeeds; its stdout.
fn status(lab: &Lab, args: &[&str]) -> String {
    let mut a = vec!["status"];
    a.extend(args);
    let out = lab.run(0, &a);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn status_json(lab: &Lab, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--json"];
    a.extend(args);
    let out = status(lab, &a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Everything in the shared directory but the webroot (which the node servers sweep).
fn shared_snapshot(lab: &Lab) -> Vec<(PathBuf, u64, i128, u64)> {
    ["store", "state", "accounts", "locks"]
        .iter()
        .flat_map(|d| snapshot(&lab.shared.join(d)))
        .collect()
}

#[test]
fn status_shows_version_renewal_backoff_and_each_nodes_install() {
    let mut lab = Lab::new(
        Block::StatusPebble,
        LabOptions {
            nodes: 2,
            ..LabOptions::default()
        },
    );
    fast_watch(&lab);
    let _w0 = lab.start_watcher(0);
    let mut w1 = lab.start_watcher(1);
    let out = lab.run_as(0, &["issue"]);
    assert!(out.status.success(), "{}", text(&out));
    let leaf =
        vipcert::cert::leaf_info(&std::fs::read(lab.store_dir(VIP).join("0001/cert.pem")).unwrap())
            .unwrap();
    // The serial as the store's meta.json records it (CertInfo keeps it to the library).
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lab.store_dir(VIP).join("0001/meta.json")).unwrap())
            .unwrap();
    let serial = meta["leaf"]["serial"].as_str().unwrap().to_string();
    assert!(!serial.is_empty());

    // The table: version, serial, names, validity, the next renewal and why.
    let before = shared_snapshot(&lab);
    let t = status(&lab, &[]);
    let renews_from = leaf.not_after - (leaf.not_after - leaf.not_before) / 3;
    let rfc = |t: i64| vipcert::unixtime::rfc3339(t);
    for want in [
        format!("{VIP}\n"),
        format!("version 0001, serial {serial}"),
        format!("SANs {}", leaf.sans.join(", ")),
        format!("{} .. {}", rfc(leaf.not_before), rfc(leaf.not_after)),
        format!(
            "renewal        not due: valid until {}; renews from {}",
            rfc(leaf.not_after),
            rfc(renews_from)
        ),
        format!(
            "renews         from {} (the lifetime rule)",
            rfc(renews_from)
        ),
        format!("CA             {}", lab.pebble.directory_url),
        "ARI            not asked yet".to_string(),
        "backoff        none".to_string(),
        "revoked        none".to_string(),
        "issuer lease   free".to_string(),
        "renew timer    next run unknown".to_string(),
    ] {
        assert!(t.contains(&want), "no {want:?} in\n{t}");
    }
    assert!(!t.contains("  node "), "{t}");

    // The same as JSON.
    let j = status_json(&lab, &[]);
    assert_eq!(j["schema"], 1);
    let l = &j["lineages"][0];
    assert_eq!(l["lineage"], VIP);
    assert_eq!(l["current"]["version"], 1);
    assert_eq!(l["current"]["serial"], serial.as_str());
    assert_eq!(l["current"]["names"], serde_json::json!(leaf.sans));
    assert_eq!(l["current"]["not_after"], leaf.not_after);
    let left = l["current"]["lifetime_left"].as_f64().unwrap();
    assert!(left > 0.99 && left <= 1.0, "{l}");
    assert_eq!(l["renewal"]["verdict"], "not_due");
    assert_eq!(l["renewal"]["rule"], "lifetime");
    assert_eq!(l["renewal"]["at"], renews_from);
    assert_eq!(l["ari"]["state"], "not_asked");
    assert_eq!(l["backoff"]["failures"], 0);
    assert_eq!(l["ca"]["issued_by"], lab.pebble.directory_url.as_str());
    assert!(
        l["account"]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://"),
        "{l}"
    );
    assert!(l.get("nodes").is_none(), "{l}");
    assert_eq!(j["lease"]["state"], "free");
    assert_eq!(j["timer"]["state"], "unknown");
    assert_eq!(
        shared_snapshot(&lab),
        before,
        "status wrote to the shared directory"
    );

    // A renew with nothing due learns that Pebble offers no ARI; status says so.
    let out = lab.run_as(0, &["renew"]);
    assert!(out.status.success(), "{}", text(&out));
    let j = status_json(&lab, &[]);
    assert_eq!(j["lineages"][0]["ari"]["state"], "not_offered", "{j}");
    assert!(status(&lab, &[]).contains("ARI            the CA offers none"));

    // --fleet: each node's version and when it installed it (the file's time on the node).
    // (A node server observes its files again once a second.)
    let mut j = serde_json::Value::Null;
    wait_for(
        || {
            j = status_json(&lab, &["--fleet"]);
            j["lineages"][0]["nodes"]
                .as_array()
                .is_some_and(|n| n.iter().all(|n| n["version"] == 1))
        },
        "both nodes report version 0001",
    );
    let nodes = j["lineages"][0]["nodes"].as_array().unwrap().clone();
    assert_eq!(nodes.len(), 2, "{j}");
    for (i, n) in nodes.iter().enumerate() {
        let mtime = std::fs::metadata(lab.root(i).join(CERT)).unwrap().mtime();
        assert_eq!(n["node"], lab.nodes[i].0.as_str(), "{n}");
        assert_eq!(n["version"], 1, "{n}");
        assert_eq!(n["current"], true, "{n}");
        assert_eq!(n["serial"], serial.as_str(), "{n}");
        assert_eq!(n["installed_at"], mtime, "{n}");
    }
    let t = status(&lab, &["--fleet"]);
    let at = |i: usize| rfc(std::fs::metadata(lab.root(i).join(CERT)).unwrap().mtime());
    assert!(
        t.contains(&format!(
            "  node           dtn1.example.org: version 0001 (current), installed {}",
            at(0)
        )),
        "{t}"
    );
    // A node that does not answer is said to be unknown, and status still succeeds.
    w1.kill();
    let t = status(&lab, &["--fleet"]);
    assert!(
        t.contains("  node           dtn2.example.org: UNKNOWN: connect"),
        "{t}"
    );

    // A recorded failure: with dtn2's server down a forced renewal fails (preflight), and
    // status shows the backoff and the error.
    let out = lab.run_as(0, &["renew", "--force"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let j = status_json(&lab, &[]);
    let b = &j["lineages"][0]["backoff"];
    assert_eq!(b["failures"], 1, "{j}");
    let next = b["next_attempt"].as_i64().unwrap();
    assert!(next > vipcert::store::now(), "{b}");
    let error = b["last_error"].as_str().unwrap();
    assert!(error.starts_with("preflight failed"), "{b}");
    let t = status(&lab, &[]);
    assert!(
        t.contains(&format!(
            "backoff        1 failure(s) in a row; next attempt after {}",
            rfc(next)
        )),
        "{t}"
    );
    // The error's lines, escaped: one row, whatever the shared file holds.
    let row = t.lines().find(|l| l.starts_with("  last error")).unwrap();
    assert!(
        row.contains("preflight failed") && row.contains("\\nNAME "),
        "{t}"
    );
}
