//! True outcomes (issue 17, Why 5 and 7): a run that flipped `current` reports success even
//! when the bookkeeping after it fails; every I/O error on the share names the file, the step
//! and what to do; an unreadable `current` is named, not mistaken for "no certificate"; text
//! from shared files and the CA cannot forge lines of `check`; `serve` survives SIGHUP and says
//! so; `account show` prints the contacts the CA holds.
//!
//! The failing filesystems are real: a full tmpfs and read-only bind mounts, made inside the
//! test's own temp dir (tests run as root) and unmounted when the guard drops.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::net::Block;
use crate::common::pebble::{Lab, LabOptions};
use crate::common::site::Site;
use crate::common::{raw_http, text, wait_for, Proc, BIN};

const VIP: &str = "gridftp.example.org";

/// A mount made by a test, unmounted (lazily if busy) when dropped.
struct Mounted(PathBuf);

impl Mounted {
    fn mount(args: &[&str], at: &Path) -> Mounted {
        let ok = Command::new("mount")
            .args(args)
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount {args:?} {} failed", at.display());
        Mounted(at.to_path_buf())
    }

    /// A tmpfs of one page at `at`, filled: every write into it fails with ENOSPC.
    fn full_tmpfs(at: &Path) -> Mounted {
        let m = Mounted::mount(&["-t", "tmpfs", "-o", "size=4k,mode=0700", "tmpfs"], at);
        let mut fill = vec![b'x'; 4096];
        // Whatever the page size, write until the filesystem says it is full.
        let f = at.join(".fill");
        std::fs::write(&f, &fill).unwrap();
        while std::fs::OpenOptions::new()
            .append(true)
            .open(&f)
            .and_then(|mut h| std::io::Write::write_all(&mut h, &fill))
            .is_ok()
        {
            fill.truncate(fill.len() / 2 + 1);
        }
        m
    }

    /// `at` bound onto itself read-only: every write below it fails with EROFS.
    fn read_only(at: &Path) -> Mounted {
        let m = Mounted::mount(&["--bind", at.to_str().unwrap()], at);
        let ok = Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {} read-only failed", at.display());
        m
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// A hook that leaves `<dir>/hook-ran` behind, and the `[notify]` section that runs it.
fn marker_hook(dir: &Path) -> String {
    let hook = dir.join("hook.sh");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\ntouch {}/hook-ran\n", dir.display()),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    format!(
        "[notify]\non_failure = [\"{}\"]\ntimeout = \"10s\"\n",
        hook.display()
    )
}

/// A one-node lab with `marker_hook(hook_dir)` whose lineage is issued (version 0001).
fn issued_lab(block: Block, hook_dir: &Path) -> Lab {
    let extra = marker_hook(hook_dir);
    let lab = Lab::new(
        block,
        LabOptions {
            nodes: 1,
            acme_extra: "key_type = \"ecdsa-p256\"",
            extra: &extra,
            ..LabOptions::default()
        },
    );
    let out = lab.run_as(0, &["issue"]);
    assert!(out.status.success(), "{}", text(&out));
    lab
}

fn current_target(lab: &Lab) -> String {
    std::fs::read_link(lab.store_dir(VIP).join("current"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Why 5: with no room left for state/<lineage>.json, `issue` flips `current`, installs it
/// and says so; the state write is a warning naming the file, not a failure: exit 0, nothing
/// counted, no `on_failure`.
#[test]
fn issue_that_flipped_current_succeeds_when_the_state_write_fails() {
    let hooks = tempfile::tempdir().unwrap();
    let extra = marker_hook(hooks.path());
    let lab = Lab::new(
        Block::OutcomeStateFull,
        LabOptions {
            nodes: 1,
            acme_extra: "key_type = \"ecdsa-p256\"",
            extra: &extra,
            ..LabOptions::default()
        },
    );
    let state = lab.shared.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let full = Mounted::full_tmpfs(&state);
    let out = lab.run_as(0, &["issue"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains(&format!("{VIP}: issued version 0001")), "{t}");
    assert!(!t.contains("FAILED"), "{t}");
    let file = state.join(format!("{VIP}.json"));
    assert!(
        t.lines().any(|l| l.contains("warning")
            && l.contains(&file.display().to_string())
            && l.contains("No space left on device")),
        "the warning names the state file and why: {t}"
    );
    assert!(t.contains("installed"), "installed here: {t}");
    assert_eq!(current_target(&lab), "0001");
    assert!(
        !hooks.path().join("hook-ran").exists(),
        "no on_failure for a published certificate"
    );
    drop(full);
    assert!(!file.exists(), "no failure was recorded");
}

/// Why 5 for `renew`, and Why 7 "`renew --force` on a read-only share says only 'Read-only
/// file system (os error 30)'": with state/ read-only the renewal is published and succeeds
/// with warnings naming state/<lineage>.json; with the whole share read-only it fails, and
/// every I/O error names its file and says the share is read-only.
#[test]
fn renew_on_a_read_only_share_names_the_file_and_the_step() {
    let hooks = tempfile::tempdir().unwrap();
    let lab = issued_lab(Block::OutcomeReadOnly, hooks.path());
    let file = lab.shared.join(format!("state/{VIP}.json"));
    let before = std::fs::read(&file).unwrap();

    let ro = Mounted::read_only(&lab.shared.join("state"));
    let out = lab.run_as(0, &["renew", "--force"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains(&format!("{VIP}: renewed: version 0002")), "{t}");
    assert!(!t.contains("FAILED"), "{t}");
    assert!(
        t.lines().any(|l| l.contains("warning")
            && l.contains(&file.display().to_string())
            && l.contains("Read-only file system")),
        "the warning names the state file and why: {t}"
    );
    assert_eq!(current_target(&lab), "0002");
    assert!(!hooks.path().join("hook-ran").exists());
    drop(ro);
    assert_eq!(std::fs::read(&file).unwrap(), before, "state unchanged");

    let ro = Mounted::read_only(&lab.shared);
    let out = lab.run_as(0, &["renew", "--force"]);
    let t = text(&out);
    drop(ro);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("RENEWAL FAILED"), "{t}");
    assert!(t.contains("read-only"), "says what is wrong: {t}");
    for l in t.lines().filter(|l| l.contains("os error")) {
        assert!(
            l.contains(&lab.shared.display().to_string()),
            "an I/O error without its file: {l}\n{t}"
        );
    }
    assert_eq!(current_target(&lab), "0002");
    assert!(
        hooks.path().join("hook-ran").exists(),
        "a real failure still reaches on_failure, even when it cannot be counted"
    );
}

/// Why 7: an unreadable `current` (oversized meta.json, a non-numeric link target) is named
/// with its file and reason; renew orders nothing (that needs the admin) and exits 1, instead of
/// "due: no certificate in the store yet" and "already renewed by another node".
#[test]
fn renew_names_an_unreadable_current_and_orders_nothing() {
    let hooks = tempfile::tempdir().unwrap();
    let lab = issued_lab(Block::OutcomeUnreadable, hooks.path());
    let orders = lab.pebble.orders_created();
    let v1 = lab.store_dir(VIP).join("0001");
    let meta = std::fs::read(v1.join("meta.json")).unwrap();

    let mut big = meta.clone();
    big.resize(70 * 1024, b' ');
    std::fs::write(v1.join("meta.json"), &big).unwrap();
    let out = lab.run_as(0, &["renew"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let file = v1.join("meta.json").display().to_string();
    assert!(
        t.contains(&file) && t.contains("larger than"),
        "names the file and why: {t}"
    );
    assert!(!t.contains("no certificate in the store yet"), "{t}");
    assert!(!t.contains("already renewed by another node"), "{t}");
    assert!(t.contains("nothing ordered"), "{t}");
    std::fs::write(v1.join("meta.json"), &meta).unwrap();

    let cur = lab.store_dir(VIP).join("current");
    std::fs::remove_file(&cur).unwrap();
    std::os::unix::fs::symlink("latest", &cur).unwrap();
    let out = lab.run_as(0, &["renew"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains(&cur.display().to_string()) && t.contains("\"latest\""),
        "names the link and its target: {t}"
    );
    assert!(!t.contains("no certificate in the store yet"), "{t}");
    assert!(!t.contains("already renewed by another node"), "{t}");
    assert_eq!(lab.pebble.orders_created(), orders, "nothing ordered");
    assert!(!hooks.path().join("hook-ran").exists());
}

/// Why 7: a newline in meta.json's `ca` (or in state's `last_error`) cannot add a line to
/// `check`'s text or Nagios output: control characters are shown escaped.
#[test]
fn check_escapes_text_read_from_the_shared_directory() {
    let site = Site::new(&Block::OutcomeEscape.net(), "shared", "", "");
    let v = site.publish_good(VIP);
    site.install(0);
    let meta = site.version_dir(VIP, v).join("meta.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    m["ca"] = "https://ca.example/dir\nOK: fake line\r\x1b[32m".into();
    std::fs::write(&meta, serde_json::to_vec(&m).unwrap()).unwrap();
    let state =
        serde_json::json!({"failures": 1, "last_error": "boom\nOK: forged", "last_attempt": 1});
    std::fs::write(
        site.shared.join(format!("state/{VIP}.json")),
        state.to_string(),
    )
    .unwrap();
    let root = site.root(0);
    for format in ["text", "nagios"] {
        let out = site.run(
            0,
            &[
                "check",
                "--format",
                format,
                "--root",
                root.to_str().unwrap(),
            ],
        );
        let t = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            !t.lines().any(|l| l.starts_with("OK: ")),
            "{format}: a forged line: {t}"
        );
        assert!(!t.contains('\x1b') && !t.contains('\r'), "{format}: {t:?}");
        assert!(t.contains("\\nOK: forged"), "{format}: shown escaped: {t}");
    }
    let out = site.run(0, &["check", "--root", root.to_str().unwrap()]);
    let t = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        t.contains("ca.example/dir\\nOK: fake line\\r\\u{1b}"),
        "{t}"
    );
}

/// Why 7: `serve` used to die with 129 and no log line on SIGHUP. Now it keeps answering and
/// logs what it did; a changed config is named as needing a restart.
#[test]
fn serve_survives_sighup_and_says_what_it_did() {
    let site = Site::new(&Block::OutcomeSighup.net(), "shared", "", "");
    let addr = SocketAddr::new(Block::OutcomeSighup.ip(11), 8080);
    let log = site.path("serve.log");
    let mut serve = Proc::spawn(
        Command::new(BIN)
            .arg("--config")
            .arg(&site.config)
            .args(["serve", "--node", &site.nodes[0], "--listen"])
            .arg(addr.to_string()),
        &log,
    );
    crate::common::wait_listening(addr, "vipcert serve");
    let health = || {
        raw_http(
            addr,
            "GET /.well-known/vipcert/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
    };
    serve.signal("HUP");
    wait_for(
        || serve.log_text().contains("SIGHUP"),
        "serve logs the SIGHUP",
    );
    assert!(
        serve.child.try_wait().unwrap().is_none(),
        "{}",
        serve.log_text()
    );
    assert!(health().starts_with("HTTP/1.1 200"), "{}", serve.log_text());
    assert!(
        serve.log_text().contains("unchanged"),
        "{}",
        serve.log_text()
    );

    let c = std::fs::read_to_string(&site.config).unwrap();
    std::fs::write(
        &site.config,
        format!("{c}\n[serve]\nwatch_interval = \"7s\"\n"),
    )
    .unwrap();
    serve.signal("HUP");
    wait_for(
        || serve.log_text().contains("restart"),
        "serve says a changed config needs a restart",
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        serve.child.try_wait().unwrap().is_none(),
        "{}",
        serve.log_text()
    );
    assert!(health().starts_with("HTTP/1.1 200"));
    serve.signal("TERM");
    let st = serve
        .wait_exit(Duration::from_secs(10))
        .expect("exits on SIGTERM");
    assert!(st.success(), "{st:?}");
}

/// Why 7: `account update --contact` succeeded, then nothing displayed the contacts. `account
/// show` prints the contacts the CA holds.
#[test]
fn account_show_prints_the_contacts_the_ca_holds() {
    let hooks = tempfile::tempdir().unwrap();
    let lab = issued_lab(Block::OutcomeContacts, hooks.path());
    let out = lab.run(0, &["account", "show"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("contact: mailto:grid-admin@example.org"), "{t}");
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
    assert!(out.status.success(), "{}", text(&out));
    let out = lab.run(0, &["account", "show"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("contact: mailto:ops@example.org, mailto:grid@example.org"),
        "{t}"
    );
    assert!(
        !t.contains("grid-admin@"),
        "the CA's contacts, not the config's: {t}"
    );
}
