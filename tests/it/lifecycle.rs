//! The certificate lifecycle against a real Pebble CA and real `vipcert serve` nodes: issue on
//! one node and every node installs (`install`, `serve --watch`); `renew` when nothing is due
//! changes nothing; a forced renew replaces the pair everywhere and runs each hook once;
//! rollback; and three `renew` processes started at once on three nodes place one order.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::common::net::Block;
use crate::common::pebble::{Lab, LabOptions};
use crate::common::site::snapshot;
use crate::common::{text, wait_for};

const VIP: &str = "gridftp.example.org";
const CERT: &str = "etc/grid-security/gridftp/gridftp-hostcert.pem";
const KEY: &str = "etc/grid-security/gridftp/gridftp-hostkey.pem";
const XRD_CERT: &str = "etc/grid-security/xrd/xrdcert.pem";
const XRD_KEY: &str = "etc/grid-security/xrd/xrdkey.pem";

/// [install] keys: a deploy hook that logs node and version, and an XRootD copy owned by nobody.
fn install_extra(hooks: &Path) -> String {
    format!(
        "deploy_hook = [\"echo $VIPCERT_NODE $VIPCERT_VERSION >> {}\"]\n\n[[install.copy]]\ncert = \"/{XRD_CERT}\"\nkey = \"/{XRD_KEY}\"\nowner = \"nobody\"\ngroup = \"nogroup\"\n",
        hooks.display()
    )
}

/// Poll store/*/current every 100 ms in `serve --watch` (edits the lab's config before any
/// watcher starts).
pub(crate) fn fast_watch(lab: &Lab) {
    let c = std::fs::read_to_string(&lab.config).unwrap();
    let c = c.replacen("[serve]\n", "[serve]\nwatch_interval = \"100ms\"\n", 1);
    std::fs::write(&lab.config, c).unwrap();
}

fn version_file(lab: &Lab, v: u32, f: &str) -> Vec<u8> {
    std::fs::read(lab.store_dir(VIP).join(format!("{v:04}")).join(f)).unwrap()
}

/// The version node `i` has installed (every target must agree), or None.
pub(crate) fn installed(lab: &Lab, i: usize) -> Option<u32> {
    let root = lab.root(i);
    let c = std::fs::read(root.join(CERT)).ok()?;
    let v = (1..=20).find(|v| {
        lab.store_dir(VIP)
            .join(format!("{v:04}/fullchain.pem"))
            .exists()
            && version_file(lab, *v, "fullchain.pem") == c
    })?;
    Some(v)
}

/// Node `i` holds version `v` at every target with the configured owner, group and mode.
fn assert_installed(lab: &Lab, i: usize, v: u32) {
    let root = lab.root(i);
    let full = version_file(lab, v, "fullchain.pem");
    let key = version_file(lab, v, "key.pem");
    for (p, want, mode, uid) in [
        (CERT, &full, 0o644, 0),
        (KEY, &key, 0o400, 0),
        (XRD_CERT, &full, 0o644, 65534),
        (XRD_KEY, &key, 0o400, 65534),
    ] {
        let path = root.join(p);
        let m = std::fs::symlink_metadata(&path).unwrap();
        assert!(m.is_file(), "{}", path.display());
        assert!(
            std::fs::read(&path).unwrap() == *want,
            "node {i}: {p} is not version {v}"
        );
        assert_eq!(
            (m.mode() & 0o7777, m.uid(), m.gid()),
            (mode, uid, uid),
            "node {i}: {p}"
        );
    }
}

fn hook_lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn count(lines: &[String], node: &str, v: u32) -> usize {
    let want = format!("{node} {v:04}");
    lines.iter().filter(|l| **l == want).count()
}

#[test]
fn issue_on_one_node_all_install_renew_when_due_only_and_roll_back() {
    let t = tempfile::tempdir().unwrap();
    let hooks = t.path().join("hooks.log");
    let extra = install_extra(&hooks);
    let mut lab = Lab::new(
        Block::LifecycleIssue,
        LabOptions {
            extra: &extra,
            ..Default::default()
        },
    );
    fast_watch(&lab);
    let _watcher = lab.start_watcher(2);
    let names: Vec<String> = lab.nodes.iter().map(|n| n.0.clone()).collect();

    // Issue on node 0: it installs at once; node 1 by `install`; node 2 by its watcher.
    let out = lab.run_as(0, &["issue"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{VIP}: installed version 0001")),
        "{}",
        text(&out)
    );
    let out = lab.run_as(1, &["install"]);
    assert!(out.status.success(), "{}", text(&out));
    // The watcher is finished when its journal is gone too (it is removed after the hooks).
    let journal = lab
        .root(2)
        .join("etc/grid-security/gridftp/.vipcert-install.journal");
    wait_for(
        || {
            installed(&lab, 2) == Some(1)
                && count(&hook_lines(&hooks), &names[2], 1) == 1
                && !journal.exists()
        },
        "node 2's watcher installs 0001",
    );
    for i in 0..3 {
        assert_installed(&lab, i, 1);
    }
    let lines = hook_lines(&hooks);
    for n in &names {
        assert_eq!(count(&lines, n, 1), 1, "{n}: {lines:?}");
    }
    assert_eq!(lab.pebble.orders_created(), 1);

    // Nothing is due (Pebble issues for years): renew changes nothing, runs no hook, orders
    // nothing.
    let before: Vec<_> = (0..3).map(|i| snapshot(&lab.root(i))).collect();
    let state_before = std::fs::read(lab.shared.join(format!("state/{VIP}.json"))).ok();
    for i in 0..3 {
        let out = lab.run_as(i, &["renew"]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains(&format!("{VIP}: not due")),
            "{}",
            text(&out)
        );
        assert!(text(&out).contains("up to date"), "{}", text(&out));
    }
    for (i, b) in before.iter().enumerate() {
        assert_eq!(&snapshot(&lab.root(i)), b, "node {i} changed");
    }
    assert_eq!(hook_lines(&hooks).len(), 3);
    assert_eq!(lab.pebble.orders_created(), 1);
    assert_eq!(
        std::fs::read(lab.shared.join(format!("state/{VIP}.json"))).ok(),
        state_before,
        "a run with nothing due must not touch state/"
    );

    // Forced renewal on node 0; node 1's own renew run (not due any more) installs it; node 2's
    // watcher installs it. Each node's hook runs once for 0002.
    let out = lab.run_as(0, &["renew", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{VIP}: renewed: version 0002")),
        "{}",
        text(&out)
    );
    let out = lab.run_as(1, &["renew"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("not due"), "{}", text(&out));
    assert!(
        text(&out).contains("installed version 0002"),
        "{}",
        text(&out)
    );
    wait_for(
        || installed(&lab, 2) == Some(2) && count(&hook_lines(&hooks), &names[2], 2) == 1,
        "node 2's watcher installs 0002",
    );
    for i in 0..3 {
        assert_installed(&lab, i, 2);
    }
    let lines = hook_lines(&hooks);
    for n in &names {
        assert_eq!(count(&lines, n, 2), 1, "{n}: {lines:?}");
    }
    assert_eq!(lab.pebble.orders_created(), 2);
    let st: vipcert::store::State = serde_json::from_slice(
        &std::fs::read(lab.shared.join(format!("state/{VIP}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(st.failures, 0);
    assert!(st.last_success.is_some());

    // Roll back to 0001: here at once, on node 2 by its watcher.
    let out = lab.run_as(0, &["rollback", VIP]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("current is now version 0001 (was 0002)"),
        "{}",
        text(&out)
    );
    assert_installed(&lab, 0, 1);
    wait_for(
        || installed(&lab, 2) == Some(1) && count(&hook_lines(&hooks), &names[2], 1) == 2,
        "node 2's watcher installs the rollback",
    );
    assert_installed(&lab, 2, 1);
}

/// Restart the lab's Pebble with a certificate lifetime of `secs` (before any account exists:
/// Pebble keeps accounts in memory).
fn short_lived_pebble(lab: &mut Lab, secs: u64) {
    lab.pebble.restart_with("pebble-short.json", |cfg| {
        cfg["pebble"]["certificateValidityPeriod"] = secs.into();
    });
}

#[test]
fn three_renew_processes_at_once_place_one_order() {
    let mut lab = Lab::new(Block::LifecycleRenewRace, LabOptions::default());
    // 8-second certificates are due at half their life: 4 s after issue.
    short_lived_pebble(&mut lab, 8);
    let out = lab.run_as(0, &["issue"]);
    assert!(out.status.success(), "{}", text(&out));
    let leaf = vipcert::cert::leaf_info(&version_file(&lab, 1, "cert.pem")).unwrap();
    eprintln!(
        "lifetime {} s (not_before {}, not_after {})",
        leaf.lifetime_secs(),
        leaf.not_before,
        leaf.not_after
    );
    assert!(
        leaf.lifetime_secs() < 60,
        "Pebble ignored the validity period"
    );
    // Due from the second renew's own rule names (now >= not_after - lifetime / 2).
    let due_at = leaf.not_after - leaf.lifetime_secs() / 2;
    wait_for(
        || vipcert::store::now() >= due_at,
        "the certificate becomes due",
    );
    let orders_before = lab.pebble.orders_created();

    let outs = lab.run_on_all_at_once(&["renew"]);
    let mut renewed = 0;
    for (i, o) in outs.iter().enumerate() {
        eprintln!("--- node {i}\n{}", text(o));
        assert!(o.status.success(), "node {i}: {}", text(o));
        let t = text(o);
        if t.contains(&format!("{VIP}: renewed: version 0002")) {
            renewed += 1;
        } else {
            assert!(
                t.contains("renewal in progress on")
                    || t.contains("already renewed by another node")
                    || t.contains("not due"),
                "node {i}: {t}"
            );
        }
    }
    assert_eq!(renewed, 1, "exactly one node renews");
    assert_eq!(lab.pebble.orders_created(), orders_before + 1, "one order");
    assert_eq!(
        vipcert::store::Store::new(&lab.shared)
            .versions(VIP)
            .unwrap(),
        vec![1, 2]
    );
    // Every node ends with the renewed pair (the losers install it on their next run, as
    // their `serve --watch` would).
    for i in 0..3 {
        let out = lab.run_as(i, &["install"]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(installed(&lab, i), Some(2));
    }
}
