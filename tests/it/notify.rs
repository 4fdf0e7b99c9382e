//! `[notify] on_failure` against a real Pebble that goes down: a failed `renew` runs each
//! program once with the failure in its environment; a run that only waits out the backoff
//! (the failure count does not rise) runs nothing. No hook runs while things go well.

use std::path::Path;

use crate::common::net::Block;
use crate::common::pebble::{Lab, LabOptions};
use crate::common::text;

/// The hook's environment dumps (one file per run).
fn runs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "env"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    v.sort();
    v
}

/// A hook in `dir` that dumps its environment to `dir`/run-<pid>.env and says so on stdout,
/// and the `[notify]` section that runs it.
fn env_dumping_hook(dir: &Path) -> String {
    let hook = dir.join("hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nenv > {}/run-$$.env\necho notified-by-hook\n",
            dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    format!(
        "[notify]\non_failure = [\"{}\"]\ntimeout = \"10s\"\n",
        hook.display()
    )
}

/// A two-node lab whose `[notify]` runs `env_dumping_hook(hook_dir)`, its certificate
/// issued and installed on node 0; the hook has not run.
fn issued_lab_with_hook(block: Block, hook_dir: &Path) -> Lab {
    let extra = env_dumping_hook(hook_dir);
    let lab = Lab::new(
        block,
        LabOptions {
            nodes: 2,
            extra: &extra,
            ..LabOptions::default()
        },
    );
    let root = lab.root(0);
    let out = lab.run(0, &["issue", "--root", root.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(runs(hook_dir).is_empty());
    lab
}

#[test]
fn failed_renew_runs_the_hook_once_with_the_failure_in_its_environment() {
    let t = tempfile::tempdir().unwrap();
    let mut lab = issued_lab_with_hook(Block::NotifyFailure, t.path());
    let root = lab.root(0);
    // The operator moves to ECDSA (so the lineage is due at once), and the CA is down.
    let c = std::fs::read_to_string(&lab.config).unwrap();
    std::fs::write(
        &lab.config,
        c.replacen("[acme]\n", "[acme]\nkey_type = \"ecdsa-p256\"\n", 1),
    )
    .unwrap();
    lab.pebble.stop();
    let out = lab.run(0, &["renew", "--root", root.to_str().unwrap()]);
    let t1 = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t1}");
    assert!(t1.contains("RENEWAL FAILED (failure 1 in a row"), "{t1}");
    assert!(
        t1.contains("notified-by-hook"),
        "hook output is logged: {t1}"
    );

    let r = runs(t.path());
    assert_eq!(r.len(), 1, "{r:?}");
    let env = &r[0];
    for want in [
        "RENEWED_LINEAGE=gridftp.example.org\n",
        "VIPCERT_LINEAGE=gridftp.example.org\n",
        "RENEWED_DOMAINS=gridftp.example.org dtn1.example.org dtn2.example.org\n",
        "VIPCERT_FAILURES=1\n",
        "VIPCERT_NODE=dtn1.example.org\n",
        "VIPCERT_EVENT=renewal-failed\n",
        &format!("VIPCERT_CA={}\n", lab.pebble.directory_url),
    ] {
        assert!(env.contains(want), "{want:?} not in:\n{env}");
    }
    let line = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("{k} not in:\n{env}"))
            .to_string()
    };
    assert!(!line("VIPCERT_ERROR=").is_empty());
    assert!(line("VIPCERT_NEXT_ATTEMPT=").ends_with('Z'), "{env}");
    assert!(
        line("VIPCERT_NEXT_ATTEMPT_UNIX=").parse::<i64>().is_ok(),
        "{env}"
    );

    // At once again: backing off, nothing new failed, nobody is told twice.
    let out = lab.run(1, &["renew", "--root", lab.root(1).to_str().unwrap()]);
    assert!(
        text(&out).contains("backing off after 1 failure"),
        "{}",
        text(&out)
    );
    assert_eq!(runs(t.path()).len(), 1);
}

#[test]
fn failed_issue_runs_the_hook_once_with_the_lineage_in_its_environment() {
    let t = tempfile::tempdir().unwrap();
    let extra = env_dumping_hook(t.path());
    let mut lab = Lab::new(
        Block::NotifyIssue,
        LabOptions {
            nodes: 1,
            extra: &extra,
            ..LabOptions::default()
        },
    );
    // The first `issue` of a new site, with the CA down.
    lab.pebble.stop();
    let root = lab.root(0);
    let out = lab.run(0, &["issue", "--root", root.to_str().unwrap()]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(msg.contains("FAILED"), "{msg}");

    let r = runs(t.path());
    assert_eq!(r.len(), 1, "{r:?}\n{msg}");
    for want in [
        "VIPCERT_LINEAGE=gridftp.example.org\n",
        "VIPCERT_FAILURES=1\n",
        &format!("VIPCERT_CA={}\n", lab.pebble.directory_url),
    ] {
        assert!(r[0].contains(want), "{want:?} not in:\n{}", r[0]);
    }
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(lab.shared.join("state/gridftp.example.org.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["failures"], 1, "{state}");
}

/// `revoke --reissue` whose reissue fails (a node is down, so preflight stops it) leaves a
/// revoked certificate current: the operator must hear of it like any failed renewal.
#[test]
fn failed_reissue_after_revoke_runs_the_hook() {
    let t = tempfile::tempdir().unwrap();
    let mut lab = issued_lab_with_hook(Block::NotifyReissue, t.path());
    lab.stop_serve(1);
    let out = lab.run(
        0,
        &[
            "revoke",
            "gridftp.example.org",
            "--reason",
            "keyCompromise",
            "--reissue",
        ],
    );
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(msg.contains("revoked at"), "{msg}");
    assert!(msg.contains("failure 1 in a row recorded"), "{msg}");

    let r = runs(t.path());
    assert_eq!(r.len(), 1, "{r:?}\n{msg}");
    for want in [
        "VIPCERT_LINEAGE=gridftp.example.org\n",
        "VIPCERT_FAILURES=1\n",
        "VIPCERT_NODE=dtn1.example.org\n",
    ] {
        assert!(r[0].contains(want), "{want:?} not in:\n{}", r[0]);
    }
}
