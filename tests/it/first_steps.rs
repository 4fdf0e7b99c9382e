//! A new user's first steps on a freshly made shared directory (mounted, empty: nothing has
//! run there yet): `install` exits 0 saying nothing is issued yet, `check` says the lineage
//! was never issued (not "cannot read the store"), `serve --watch` starts and installs the
//! first version once one is published. No CA: versions come from the test CA (`pki`).

use std::process::Stdio;

use crate::common::net::Block;
use crate::common::site::{under, Site, VIP};
use crate::common::{text, wait_for, wait_listening, Proc};

/// A site whose shared directory is empty, as an admin makes it before the first run.
fn fresh_site(rest: &str) -> Site {
    let s = Site::new(&Block::FirstSteps.net(), "shared", "", rest);
    std::fs::remove_dir_all(&s.shared).unwrap();
    std::fs::create_dir(&s.shared).unwrap();
    s
}

#[test]
fn install_before_the_first_issue_exits_zero_and_says_what_to_do() {
    let s = fresh_site("");
    let out = s.install(0);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains(&format!("{VIP}: not issued yet"))
            && t.contains("run `vipcert issue` on one node"),
        "{t}"
    );
    assert!(!t.contains("REFUSED"), "{t}");
    assert!(
        !s.root(0).exists(),
        "nothing to install, nothing created:\n{t}"
    );
}

#[test]
fn check_before_the_first_issue_says_never_issued() {
    let s = fresh_site("");
    let root = s.root(0);
    let args = ["check", "--root", root.to_str().unwrap()];
    let out = s.run(0, &args);
    let t = text(&out);
    // Critical: the service has no certificate to serve.
    assert_eq!(out.status.code(), Some(2), "{t}");
    let store_row = t
        .lines()
        .find(|l| l.contains(" store "))
        .unwrap_or_else(|| panic!("no store row:\n{t}"));
    assert!(
        store_row.starts_with("critical")
            && store_row.contains("never issued")
            && store_row.contains("run `vipcert issue` on one node"),
        "{t}"
    );
    assert!(!t.contains("cannot read the store"), "{t}");
    // No renewal state yet is no failed renewal, not an unreadable state file.
    assert!(
        t.lines()
            .any(|l| l.starts_with("ok") && l.contains(" renewal ")),
        "{t}"
    );
    // An unmounted share (shared_dir missing) is still said to be that, not "never issued".
    std::fs::remove_dir(&s.shared).unwrap();
    let out = s.run(0, &args);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("does not exist") && !t.contains("never issued"),
        "{t}"
    );
}

#[test]
fn serve_watch_starts_on_a_fresh_shared_dir_and_installs_the_first_version() {
    let s = fresh_site("[serve]\nwatch_interval = \"100ms\"\n");
    let t = tempfile::tempdir().unwrap();
    let addr = Block::FirstSteps.addr(11, 5002);
    let root = s.root(0);
    let child = s
        .cmd(
            0,
            &[
                "serve",
                "--watch",
                "--listen",
                &addr.to_string(),
                "--root",
                root.to_str().unwrap(),
            ],
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(t.path().join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let mut serve = Proc::new(child, "serve --watch");
    wait_listening(addr, "serve --watch on a fresh shared_dir");
    let v = s.publish_good(VIP);
    let cert = under(&root, "/etc/grid-security/gridftp/gridftp-hostcert.pem");
    wait_for(
        || std::fs::read(&cert).ok() == Some(s.version_file(VIP, v, "fullchain.pem")),
        "serve --watch installs the first version",
    );
    let log = std::fs::read_to_string(t.path().join("serve.log")).unwrap();
    assert!(!log.contains("ERROR"), "{log}");
    serve.kill();
}
