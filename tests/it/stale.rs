//! Nothing stale, nothing invented (issue 8, item 5): a killed run's challenge and probe files
//! are swept by the next issue and by `serve`; an unmounted `shared_dir` is refused by
//! `issue`, `renew` and `install` (never created); the health route answers 503 while the
//! webroot is missing.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use crate::common::net::Block;
use crate::common::site::Site;
use crate::common::{raw_http, start_listening, text, wait_for, BIN};

fn site() -> Site {
    Site::new(
        &Block::Stale.net(),
        "shared",
        "",
        "[preflight]\nskip_dns = true\ntimeout = \"2s\"\n",
    )
}

/// Stale entries of every kind in the webroot, and a fresh challenge file; returns the
/// webroot. Only `old-token` may be swept.
fn litter(s: &Site) -> std::path::PathBuf {
    let web = s.shared.join("webroot/.well-known/acme-challenge");
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let old = |p: &Path| {
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(hour_ago)
            .unwrap()
    };
    for name in [
        "old-token",
        "vipcert-probe-0123abcd",
        "not.a.token",
        "fresh-token",
    ] {
        std::fs::write(web.join(name), "x").unwrap();
        if name != "fresh-token" {
            old(&web.join(name));
        }
    }
    std::fs::create_dir(web.join("old-dir-token")).unwrap();
    // A symlink with a token name: not ours to judge by its target's age, never followed.
    let victim = s.path("victim");
    std::fs::write(&victim, "keep").unwrap();
    old(&victim);
    std::os::unix::fs::symlink(&victim, web.join("old-link-token")).unwrap();
    web
}

fn assert_swept(web: &Path, s: &Site) {
    for gone in ["old-token", "vipcert-probe-0123abcd"] {
        assert!(!web.join(gone).exists(), "{gone} was not swept");
    }
    for kept in [
        "not.a.token",
        "fresh-token",
        "old-dir-token",
        "old-link-token",
    ] {
        assert!(
            std::fs::symlink_metadata(web.join(kept)).is_ok(),
            "{kept} was removed"
        );
    }
    assert!(s.path("victim").exists());
}

#[test]
fn issue_sweeps_stale_challenge_files() {
    let s = site();
    let web = litter(&s);
    // No node answers: the run fails at preflight, after the sweep.
    let out = s.run(0, &["renew", "--force"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("preflight"), "{}", text(&out));
    assert_swept(&web, &s);
}

#[test]
fn serve_sweeps_stale_files_and_health_fails_without_webroot() {
    let s = site();
    let web = litter(&s);
    let addr: SocketAddr = Block::Stale.addr(11, 8080);
    let _p = start_listening(
        Command::new(BIN)
            .args(["serve", "--listen", &addr.to_string()])
            .env("VIPCERT_CONFIG", &s.config)
            .env("VIPCERT_NODE", &s.nodes[0])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        addr,
        "vipcert serve",
    );
    wait_for(
        || !web.join("old-token").exists(),
        "serve sweeps the webroot",
    );
    assert_swept(&web, &s);
    assert_eq!(health(addr), 200);
    // The webroot goes away (a broken share): health says so within its refresh (1 s).
    std::fs::rename(s.shared.join("webroot"), s.path("webroot-aside")).unwrap();
    assert_eq!(health_within(addr, 503), 503);
    std::fs::rename(s.path("webroot-aside"), s.shared.join("webroot")).unwrap();
    assert_eq!(health_within(addr, 200), 200);
}

/// The health route's answer once it is `want`, or its last answer after 2.5 s (the verdict
/// is taken once a second).
fn health_within(addr: SocketAddr, want: u16) -> u16 {
    let t = std::time::Instant::now();
    loop {
        let code = health(addr);
        if code == want || t.elapsed() > std::time::Duration::from_millis(2500) {
            return code;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn health(addr: SocketAddr) -> u16 {
    let rsp = raw_http(
        addr,
        "GET /.well-known/vipcert/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    rsp.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn unmounted_shared_dir_is_refused_never_created() {
    let s = site();
    s.publish_good(crate::common::site::VIP);
    std::fs::remove_dir_all(&s.shared).unwrap();
    let root = s.root(0);
    for args in [
        vec!["renew", "--force"],
        vec!["issue"],
        vec!["install", "--root", root.to_str().unwrap()],
    ] {
        let out = s.run(0, &args);
        let t = text(&out);
        assert!(!out.status.success(), "{args:?}: {t}");
        assert!(
            t.contains(&format!("shared_dir {} does not exist", s.shared.display()))
                && t.contains("mounted at"),
            "{args:?}: {t}"
        );
        assert!(!s.shared.exists(), "{args:?} created shared_dir");
    }
}
