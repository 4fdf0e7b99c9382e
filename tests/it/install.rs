//! `vipcert install`, `rollback` and `serve --watch` without a CA: store versions are
//! published with `Store::publish` from a small rcgen CA, three nodes each install under their
//! own --root. Proves modes and owners, idempotence (no writes, no hooks), hooks once with
//! their environment, refusal of bad store content, symlinks at targets, rollback and watch.

use std::path::Path;

use crate::common::net::Block;
use crate::common::pki::Spec;
use crate::common::site::{file, id_of, snapshot, under, Site, NODES, VIP};
use crate::common::{text, wait_for, Proc};

const MAIN_CERT: &str = "/etc/grid-security/gridftp/gridftp-hostcert.pem";
const MAIN_KEY: &str = "/etc/grid-security/gridftp/gridftp-hostkey.pem";
const XRD_CERT: &str = "/etc/grid-security/xrd/xrdcert.pem";
const XRD_KEY: &str = "/etc/grid-security/xrd/xrdkey.pem";

/// Shared layout, hooks that log their environment, and an XRootD copy owned by nobody.
fn site(hooklog: &Path, rest: &str) -> Site {
    let log = hooklog.display();
    Site::new(
        &Block::Install.net(),
        "shared",
        &format!(
            r#"reload = ["echo reload $VIPCERT_NODE $VIPCERT_VERSION >> {log}"]
deploy_hook = ["echo deploy $VIPCERT_NODE $RENEWED_LINEAGE $VIPCERT_VERSION \"$RENEWED_DOMAINS\" $VIPCERT_CERT $VIPCERT_KEY >> {log}"]
[[install.copy]]
cert = "{XRD_CERT}"
key = "{XRD_KEY}"
owner = "nobody"
group = "nogroup"
"#
        ),
        rest,
    )
}

fn hooklines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Every target of `node` holds version `v` with the configured owner/group/mode.
fn assert_installed(s: &Site, node: usize, v: u32) {
    let root = s.root(node);
    let full = s.version_file(VIP, v, "fullchain.pem");
    let key = s.version_file(VIP, v, "key.pem");
    let (nobody, nogroup) = (id_of("passwd", "nobody"), id_of("group", "nogroup"));
    for (p, want, mode, uid, gid) in [
        (MAIN_CERT, &full, 0o644, 0, 0),
        (MAIN_KEY, &key, 0o400, 0, 0),
        (XRD_CERT, &full, 0o644, nobody, nogroup),
        (XRD_KEY, &key, 0o400, nobody, nogroup),
    ] {
        let (bytes, m, u, g, _, _) = file(&under(&root, p));
        assert!(bytes == *want, "{p} on node {node} is not version {v}");
        assert_eq!((m, u, g), (mode, uid, gid), "{p} on node {node}");
    }
}

#[test]
fn three_nodes_install_with_owners_modes_and_hooks_once() {
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("hooks.log");
    let s = site(&log, "");
    // Before anything is issued: nothing to do, exit 0, says so.
    let out = s.install(0);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("not issued yet"), "{}", text(&out));

    assert_eq!(s.publish_good(VIP), 1);
    for n in 0..3 {
        let out = s.install(n);
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains("gridftp.example.org: installed version 0001"),
            "{}",
            text(&out)
        );
        assert_installed(&s, n, 1);
        // No journal or temporary file is left next to the targets.
        for d in ["etc/grid-security/gridftp", "etc/grid-security/xrd"] {
            let mut names: Vec<String> = std::fs::read_dir(s.root(n).join(d))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            assert_eq!(names.len(), 2, "{d}: {names:?}");
        }
    }
    let lines = hooklines(&log);
    assert_eq!(lines.len(), 6, "{lines:?}");
    for (n, node) in NODES.iter().enumerate() {
        let root = s.root(n);
        assert!(lines.contains(&format!("reload {node} 0001")), "{lines:?}");
        assert!(
            lines.contains(&format!(
                "deploy {node} {VIP} 0001 {VIP} {} {} {} {} {}",
                NODES[0],
                NODES[1],
                NODES[2],
                under(&root, MAIN_CERT).display(),
                under(&root, MAIN_KEY).display()
            )),
            "{lines:?}"
        );
    }

    // Idempotent: a second run writes nothing (same inodes, mtimes, sizes) and runs no hook.
    let before: Vec<_> = (0..3).map(|n| snapshot(&s.root(n))).collect();
    for (n, before) in before.iter().enumerate() {
        let out = s.install(n);
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains("up to date (version 0001)"),
            "{}",
            text(&out)
        );
        assert_eq!(&snapshot(&s.root(n)), before, "node {n} changed");
    }
    assert_eq!(hooklines(&log).len(), 6);

    // A new version: replaced everywhere, hooks once per node.
    assert_eq!(s.publish_good(VIP), 2);
    for n in 0..3 {
        assert!(s.install(n).status.success());
        assert_installed(&s, n, 2);
    }
    let lines = hooklines(&log);
    assert_eq!(lines.len(), 12, "{lines:?}");
    assert_eq!(lines.iter().filter(|l| l.contains(" 0002")).count(), 6);

    // An operator's chmod is repaired without a reload (the bytes did not change).
    let k = under(&s.root(0), MAIN_KEY);
    std::fs::set_permissions(&k, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = s.install(0);
    assert!(text(&out).contains("fixed owner/mode"), "{}", text(&out));
    assert_installed(&s, 0, 2);
    assert_eq!(hooklines(&log).len(), 12);
}

#[test]
fn per_host_installs_own_leaf_without_chain_when_fullchain_false() {
    let s = Site::new(&Block::Install.net(), "per-host", "fullchain = false", "");
    for n in NODES {
        s.publish_good(n);
    }
    for (i, n) in NODES.iter().enumerate() {
        let out = s.install(i);
        assert!(out.status.success(), "{}", text(&out));
        let out = text(&out);
        assert!(
            out.contains(&format!("{n}: installed version 0001")),
            "{out}"
        );
        // Only its own lineage.
        assert_eq!(out.matches("installed version").count(), 1, "{out}");
        let root = s.root(i);
        let (c, m, ..) = file(&under(&root, "/etc/grid-security/hostcert.pem"));
        assert_eq!(c, s.version_file(n, 1, "cert.pem"));
        assert_eq!(m, 0o644);
        let (k, m, ..) = file(&under(&root, "/etc/grid-security/hostkey.pem"));
        assert_eq!(k, s.version_file(n, 1, "key.pem"));
        assert_eq!(m, 0o400);
        let info = vipcert::cert::leaf_info(&c).unwrap();
        assert_eq!(info.cn.as_deref(), Some(*n));
    }
}

#[test]
fn bad_store_content_is_refused_and_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("hooks.log");
    let s = site(&log, "");
    s.publish_good(VIP);
    assert!(s.install(0).status.success());
    let good = snapshot(&s.root(0));
    let hooks = hooklines(&log).len();

    type Corrupt = Box<dyn Fn(&Site, &Path)>;
    let cases: Vec<(&str, Corrupt, &str)> = vec![
        (
            "truncated fullchain",
            Box::new(|_, d| {
                let b = std::fs::read(d.join("fullchain.pem")).unwrap();
                std::fs::write(d.join("fullchain.pem"), &b[..b.len() / 3]).unwrap();
            }),
            "fullchain.pem",
        ),
        (
            "key of another certificate",
            Box::new(|s, d| {
                let other = s.ca.leaf(&Spec::names(&[VIP]));
                std::fs::write(d.join("key.pem"), other.key_pem).unwrap();
            }),
            "key.pem does not belong",
        ),
        (
            "1-byte key",
            Box::new(|_, d| std::fs::write(d.join("key.pem"), b"x").unwrap()),
            "key.pem",
        ),
        (
            "1-byte fullchain",
            Box::new(|_, d| std::fs::write(d.join("fullchain.pem"), b"-").unwrap()),
            "fullchain.pem",
        ),
        (
            "key is a symlink to /etc/shadow",
            Box::new(|_, d| {
                std::fs::remove_file(d.join("key.pem")).unwrap();
                std::os::unix::fs::symlink("/etc/shadow", d.join("key.pem")).unwrap();
            }),
            "key.pem: not a regular file",
        ),
        (
            "certificate for other names",
            Box::new(|s, d| {
                let l = s.ca.leaf(&Spec::names(&[VIP, "evil.example.org"]));
                std::fs::write(d.join("fullchain.pem"), l.fullchain()).unwrap();
                std::fs::write(d.join("cert.pem"), l.cert_pem).unwrap();
                std::fs::write(d.join("key.pem"), l.key_pem).unwrap();
            }),
            "fullchain.pem: SAN set differs",
        ),
        (
            "fullchain of another leaf than cert.pem",
            Box::new(|s, d| {
                let c = s.good_leaf(VIP).cert_pem;
                std::fs::write(d.join("cert.pem"), c).unwrap();
            }),
            "fullchain.pem is not the certificate of",
        ),
    ];
    for (what, corrupt, says) in cases {
        let v = s.publish_good(VIP);
        corrupt(&s, &s.version_dir(VIP, v));
        let out = s.install(0);
        let msg = text(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {msg}");
        assert!(
            msg.contains("REFUSED, nothing was changed"),
            "{what}: {msg}"
        );
        assert!(msg.contains(says), "{what}: wanted {says:?} in {msg}");
        assert!(
            msg.contains(&format!("store/{VIP}/{v:04}/")),
            "{what}: names the version: {msg}"
        );
        assert_eq!(snapshot(&s.root(0)), good, "{what}: targets changed");
        assert_eq!(hooklines(&log).len(), hooks, "{what}: a hook ran");
    }
}

#[test]
fn symlinks_at_targets_are_replaced_never_followed() {
    let t = tempfile::tempdir().unwrap();
    let s = site(&t.path().join("hooks.log"), "");
    s.publish_good(VIP);
    // A symlink planted at each target file, pointing at a file outside.
    let victim = t.path().join("victim");
    std::fs::write(&victim, "do not touch").unwrap();
    let root = s.root(0);
    for p in [MAIN_CERT, MAIN_KEY] {
        let p = under(&root, p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&victim, &p).unwrap();
    }
    let out = s.install(0);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(&victim).unwrap(), b"do not touch");
    assert_installed(&s, 0, 1);

    // A target directory that is a symlink into elsewhere is refused.
    let elsewhere = t.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let root = s.root(1);
    std::fs::create_dir_all(root.join("etc/grid-security")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, root.join("etc/grid-security/gridftp")).unwrap();
    let out = s.install(1);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("symlink"), "{}", text(&out));
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}

#[test]
fn unknown_owner_is_refused_before_any_write() {
    let s = Site::new(
        &Block::Install.net(),
        "shared",
        "[[install.copy]]\ncert = \"/etc/x/c.pem\"\nkey = \"/etc/x/k.pem\"\nowner = \"no-such-user-vipcert\"\n",
        "",
    );
    s.publish_good(VIP);
    let out = s.install(0);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no-such-user-vipcert"),
        "{}",
        text(&out)
    );
    assert!(!s.path("root-unset").exists());
    assert!(!s.root(0).exists(), "nothing may be created");
}

#[test]
fn rollback_installs_here_and_serve_watch_installs_there() {
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("hooks.log");
    let s = site(&log, "[serve]\nwatch_interval = \"100ms\"\n");
    for _ in 0..7 {
        s.publish_good(VIP);
    }
    // Five versions kept.
    assert_eq!(s.store.versions(VIP).unwrap(), vec![3, 4, 5, 6, 7]);
    assert!(s.install(0).status.success());
    assert_installed(&s, 0, 7);

    // Node 2 runs `serve --watch` with its own root.
    let root1 = s.root(1);
    let child = s
        .cmd(
            1,
            &[
                "serve",
                "--watch",
                "--listen",
                &Block::Install.addr(12, 0).to_string(),
                "--root",
                root1.to_str().unwrap(),
            ],
        )
        .stderr(std::fs::File::create(t.path().join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let _guard = Proc::new(child, "serve --watch");
    wait_for(
        || watched(&s, &log, 7),
        "watch installs the current version",
    );

    let root0 = s.root(0);
    let root0 = root0.to_str().unwrap();
    let out = s.run(0, &["rollback", VIP, "--root", root0]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("current is now version 0006 (was 0007)"),
        "{}",
        text(&out)
    );
    assert_installed(&s, 0, 6);
    wait_for(|| watched(&s, &log, 6), "watch installs the rollback");
    assert_installed(&s, 1, 6);

    let out = s.run(0, &["rollback", VIP, "--to", "3", "--root", root0]);
    assert!(out.status.success(), "{}", text(&out));
    assert_installed(&s, 0, 3);
    wait_for(|| watched(&s, &log, 3), "watch installs --to 3");

    let out = s.run(0, &["rollback", VIP, "--root", root0]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("no kept version older"),
        "{}",
        text(&out)
    );
    let out = s.run(0, &["rollback", VIP, "--to", "1", "--root", root0]);
    assert!(text(&out).contains("not kept"), "{}", text(&out));
    let out = s.run(0, &["rollback", "nope.example.org", "--root", root0]);
    assert!(text(&out).contains("not a lineage"), "{}", text(&out));
    // Each node ran the hooks once per version it installed: node 1 for 7, 6, 3; node 2 too.
    let lines = hooklines(&log);
    for node in [NODES[0], NODES[1]] {
        let mine: Vec<&String> = lines
            .iter()
            .filter(|l| l.split(' ').nth(1) == Some(node))
            .collect();
        assert_eq!(mine.len(), 6, "{node}: {mine:?}");
    }
}

/// Node 2's watcher has installed version `v`: its files hold it and its deploy hook ran.
fn watched(s: &Site, log: &Path, v: u32) -> bool {
    installed_version(s, 1) == Some(v)
        && hooklines(log)
            .iter()
            .any(|l| l.starts_with(&format!("deploy {} {VIP} {v:04} ", NODES[1])))
}

fn installed_version(s: &Site, node: usize) -> Option<u32> {
    let c = std::fs::read(under(&s.root(node), MAIN_CERT)).ok()?;
    s.store
        .versions(VIP)
        .unwrap()
        .into_iter()
        .find(|v| s.version_file(VIP, *v, "fullchain.pem") == c)
}

#[test]
fn failing_hook_is_reported_once_and_not_retried() {
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("hooks.log");
    let s = Site::new(
        &Block::Install.net(),
        "shared",
        &format!(
            "reload = [\"echo reload >> {0}; exit 3\"]\ndeploy_hook = [\"echo deploy >> {0}\"]\n",
            log.display()
        ),
        "",
    );
    s.publish_good(VIP);
    let out = s.install(0);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(msg.contains("installed version 0001"), "{msg}");
    assert!(msg.contains("hook FAILED: reload"), "{msg}");
    assert!(msg.contains("exit status: 3"), "{msg}");
    // The deploy hook still ran; the pair is in place; the journal is gone.
    assert_eq!(hooklines(&log), vec!["reload", "deploy"]);
    let (c, ..) = file(&under(&s.root(0), MAIN_CERT));
    assert_eq!(c, s.version_file(VIP, 1, "fullchain.pem"));
    assert!(!under(
        &s.root(0),
        "/etc/grid-security/gridftp/.vipcert-install.journal"
    )
    .exists());
    // Not retried: the next run has nothing to do.
    let out = s.install(0);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("up to date"), "{}", text(&out));
    assert_eq!(hooklines(&log).len(), 2);
}

#[test]
fn temporary_files_of_a_killed_run_are_swept_even_when_up_to_date() {
    // A run killed while writing the journal or a target leaves `.<name>.tmp.*` behind; the
    // next run removes them, also when the targets already hold the current pair.
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("hooks.log");
    let s = site(&log, "");
    assert_eq!(s.publish_good(VIP), 1);
    assert!(s.install(0).status.success());
    let gridftp = s.root(0).join("etc/grid-security/gridftp");
    let stale = [
        "..vipcert-install.journal.tmp.4242.0.1",
        ".gridftp-hostkey.pem.tmp.4242.1.2",
        ".gridftp-hostcert.pem.tmp.4242.2.3",
    ];
    for f in stale {
        std::fs::write(gridftp.join(f), "partial").unwrap();
    }
    let hooks_before = hooklines(&log);
    let out = s.install(0);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("up to date"), "{}", text(&out));
    let mut names: Vec<String> = std::fs::read_dir(&gridftp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["gridftp-hostcert.pem", "gridftp-hostkey.pem"]);
    assert_eq!(hooklines(&log), hooks_before, "no hook for a sweep");
    assert_installed(&s, 0, 1);
}

#[test]
fn rollback_refuses_a_version_that_would_not_install() {
    // Rollback asks install's own question: a kept version whose fullchain.pem no longer
    // starts with its cert.pem (or is otherwise unusable) is refused, and current stays.
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("hooks.log");
    let s = site(&log, "");
    s.publish_good(VIP);
    s.publish_good(VIP);
    let v1 = s.version_dir(VIP, 1);
    let other = s.version_file(VIP, 2, "fullchain.pem");
    std::fs::write(v1.join("fullchain.pem"), other).unwrap();
    let out = s.run(0, &["rollback", VIP]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("fullchain.pem") && text(&out).contains("not rolled back"),
        "{}",
        text(&out)
    );
    assert_eq!(s.store.current(VIP).unwrap(), Some(2), "current unchanged");
}
