//! Numbers from outside are bounded (issue 17, Why 3 and 4): times in the shared directory far
//! outside any sane range, stray version directories, and a bug (a panic) never turn into a
//! panic message, exit 101 or a wrapped counter. The real binary, a real store; Pebble where a
//! certificate must be issued. The CA's Retry-After is in renew_stub.rs (a hostile CA).

use std::path::Path;

use crate::common::net::Block;
use crate::common::pebble::{Lab, LabOptions};
use crate::common::pki::{Spec, DAY};
use crate::common::serve_node;
use crate::common::site::{node, Run, Site, NODES, VIP};
use crate::common::text;

/// The first second of year 10000: what Why 3 wrote into state/<lineage>.json.
const YEAR_10000: i64 = 253_402_300_800;

/// A state file as a broken (or hostile) node might leave it: every time far outside the
/// sane range, in each JSON form a number can take.
fn far_future_state() -> String {
    format!(
        r#"{{
  "ari_start": -9223372036854775808,
  "ari_end": 1e300,
  "ari_checked_at": 18446744073709551615,
  "ari_retry_after": 9223372036854775807,
  "last_attempt": {YEAR_10000},
  "last_success": -1,
  "failures": 1,
  "last_error": "the CA said no",
  "next_attempt": {YEAR_10000}
}}"#
    )
}

fn write_state(shared: &Path, lineage: &str, json: &str) {
    std::fs::write(shared.join(format!("state/{lineage}.json")), json).unwrap();
}

/// No panic text and no exit 101: the run ended the way the command documents.
fn no_panic(r: &Run, what: &str) {
    assert!(
        !r.all().contains("panicked") && r.code != 101,
        "{what} panicked (exit {}):\n{}",
        r.code,
        r.all()
    );
}

/// `check` of `args` in every format: the renewal finding is a warning that names the state
/// file's next attempt as not credible; text, json and nagios exit 1, prometheus 0.
fn check_warns_in_every_format(site: &Site, args: &[&str]) {
    for format in ["text", "json", "nagios", "prometheus"] {
        let mut a = args.to_vec();
        a.extend(["--format", format]);
        let r = site.vipcert(&a);
        no_panic(&r, &format!("check --format {format}"));
        let want = if format == "prometheus" { 0 } else { 1 };
        assert_eq!(r.code, want, "check --format {format}\n{}", r.all());
        match format {
            "nagios" => {
                let first = r.stdout.lines().next().unwrap_or("");
                assert!(first.starts_with("VIPCERT WARNING - "), "{}", r.all());
            }
            "json" => {
                let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
                assert_eq!(v["status"], "warning", "{}", r.stdout);
            }
            _ => {}
        }
        if format != "prometheus" {
            assert!(
                r.stdout.contains("9999-12-31T23:59:59Z")
                    && r.stdout.contains("further ahead than vipcert ever waits"),
                "check --format {format}\n{}",
                r.all()
            );
        }
    }
}

/// Why 3: `state/<lineage>.json` with `"next_attempt": 253402300800` (year 10000) made `check`
/// print "task 3 panicked … a Display implementation returned an error", and `renew` panic
/// when the lineage is due. Now the times are clamped when read, `check` warns that such a
/// next attempt is further ahead than vipcert ever waits, and `renew` ignores it: it renews
/// (here preflight fails: nothing serves the names) and records a sane next attempt.
#[test]
fn a_year_10000_next_attempt_never_panics_check_or_renew() {
    let block = Block::BoundsFarFuture;
    // The CA on .1 answers nothing; preflight (no DNS) fails before it would be asked.
    let rest = format!(
        "[acme]\ndirectory = \"https://{}:9/dir\"\nkey_type = \"ecdsa-p256\"\n[preflight]\nskip_dns = true\ntimeout = \"1s\"\n",
        block.host(1)
    );
    let site = Site::new(&block.net(), "shared", "", &rest);
    let now = vipcert::store::now();
    // 65 of 90 days gone: due by the lifetime rule, a warning (not critical) for `check`.
    let names = site.names(VIP);
    let leaf = site
        .ca
        .leaf(&Spec::new(&names[0], &names).unix(now - 65 * DAY, now + 25 * DAY));
    let v = site.publish(VIP, &leaf);
    site.install_version(NODES[0], VIP, v);
    write_state(&site.shared, VIP, &far_future_state());

    let root = site.root(0);
    let root = root.to_str().unwrap();
    check_warns_in_every_format(&site, &["check", "--node", NODES[0], "--root", root]);

    let out = site.run(0, &["renew", "--root", root]);
    let msg = text(&out);
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    no_panic(&r, "renew");
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(msg.contains(&format!("{VIP}: due: ")), "{msg}");
    assert!(
        msg.contains("further ahead than vipcert ever waits"),
        "{msg}"
    );
    assert!(msg.contains("RENEWAL FAILED"), "{msg}");
    assert!(msg.contains("preflight failed"), "{msg}");
    let st: serde_json::Value = serde_json::from_slice(
        &std::fs::read(site.shared.join(format!("state/{VIP}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(st["failures"], 2, "{msg}");
    let next = st["next_attempt"].as_i64().unwrap();
    assert!(
        next > now && next <= vipcert::store::now() + DAY,
        "next_attempt {next} (now {now})\n{msg}"
    );
}

/// Why 3: the same state file made `check --fleet --format nagios` panic with exit 101 and no
/// status line. Now: one status line, WARNING, exit 1.
#[test]
fn a_year_10000_next_attempt_never_panics_the_fleet_check() {
    let block = Block::BoundsFarFutureFleet;
    let t = tempfile::tempdir().unwrap();
    let port = 18080;
    let nodes = vec![
        node("dtn1.bounds.test", block.host(11)),
        node("dtn2.bounds.test", block.host(12)),
    ];
    let vip = "vip.bounds.test";
    let extra = format!("[serve]\nlisten = [\"0.0.0.0:{port}\"]\n[check]\ntimeout = \"2s\"\n");
    let site = Site::in_dir(t.path(), "shared", vip, &nodes, &extra);
    let v = site.publish(vip, &site.good_leaf(vip));
    for n in &nodes {
        site.install_version(&n.hostname, vip, v);
    }
    let _s1 = serve_node(&site, &nodes[0].hostname, block.addr(11, port));
    let _s2 = serve_node(&site, &nodes[1].hostname, block.addr(12, port));
    write_state(&site.shared, vip, &far_future_state());

    let r = site.vipcert(&["check", "--fleet", "--format", "nagios"]);
    no_panic(&r, "check --fleet --format nagios");
    assert_eq!(r.code, 1, "{}", r.all());
    let first = r.stdout.lines().next().unwrap_or("");
    assert!(first.starts_with("VIPCERT WARNING - "), "{}", r.all());
    assert!(
        r.stdout.contains("further ahead than vipcert ever waits"),
        "{}",
        r.all()
    );
}

/// A panicking `check` (`run` of a format) in every format: UNKNOWN there, exit 3.
fn check_is_unknown_in_every_format(run: impl Fn(&str) -> Run, at: &str) {
    let r = run("nagios");
    assert_eq!(r.code, 3, "{at}: {}", r.all());
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{at}: {}", r.all());
    assert!(
        lines[0].starts_with("VIPCERT UNKNOWN - internal error"),
        "{at}: {}",
        r.all()
    );
    assert!(lines[0].contains("VIPCERT_TEST_PANIC"), "{}", r.all());

    let r = run("json");
    assert_eq!(r.code, 3, "{at}: {}", r.all());
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (v["status"].as_str(), v["exit_code"].as_i64()),
        (Some("unknown"), Some(3))
    );

    let r = run("prometheus");
    assert_eq!(r.code, 3, "{at}: {}", r.all());
    assert!(r.stdout.contains("vipcert_check_success 0"), "{}", r.all());

    let r = run("html");
    assert_eq!(r.code, 3, "{at}: {}", r.all());
    assert!(r.stdout.starts_with("<!DOCTYPE html>"), "{at}: {}", r.all());
    assert!(
        r.stdout.contains("id=\"status\">unknown<") && r.stdout.contains("internal error"),
        "{at}: {}",
        r.all()
    );

    let r = run("text");
    assert_eq!(r.code, 3, "{at}: {}", r.all());
    assert_eq!(r.stderr.lines().count(), 1, "{at}: {}", r.all());
    assert!(r.stderr.starts_with("error: internal error"), "{}", r.all());
}

/// Deliver 3: a bug (a panic, made here by the test failpoint `VIPCERT_TEST_PANIC`, on the
/// main thread or in a runtime task) never ends `check` with exit 101: one UNKNOWN status in
/// the format asked for, exit 3. Every other command says "internal error" in one line and
/// exits 1, its documented failure code.
#[test]
fn a_panic_is_unknown_for_check_and_one_line_for_other_commands() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::in_dir(
        t.path(),
        "shared",
        "vip.panic.test",
        &[node("dtn1.panic.test", Block::BoundsPanic.host(11))],
        "",
    );
    let run = |args: &[&str], at: &str| -> Run {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_vipcert"))
            .arg("--config")
            .arg(&site.config)
            .args(args)
            .env("VIPCERT_TEST_PANIC", at)
            .env("RUST_LOG", "vipcert=error")
            // With it set, the default report (a backtrace) is printed as well.
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap();
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    };
    let check = ["check", "--node", "dtn1.panic.test", "--format"];
    for at in ["main", "task"] {
        check_is_unknown_in_every_format(|format| run(&[&check[..], &[format]].concat(), at), at);
        for cmd in [&["renew"][..], &["install"], &["config", "check"]] {
            let r = run(cmd, at);
            assert_eq!(r.code, 1, "{cmd:?} {at}: {}", r.all());
            assert!(
                r.stderr
                    .lines()
                    .any(|l| l.starts_with("error: internal error")
                        && l.contains("VIPCERT_TEST_PANIC")),
                "{cmd:?} {at}: {}",
                r.all()
            );
            assert!(!r.all().contains("RUST_BACKTRACE"), "{}", r.all());
        }
    }
}

/// Why 4: a stray `store/<lineage>/4294967295` made the next publish wrap the counter to 0000,
/// and `00005` counted as 5 (but was opened as 0005). Now only canonical four-digit names are
/// versions (the others are ignored, with a warning naming them), and a full counter (9999)
/// refuses before anything is ordered, naming the directory and what to do.
#[test]
fn stray_version_directories_never_wrap_the_counter() {
    let lab = Lab::new(
        Block::BoundsVersions,
        LabOptions {
            nodes: 1,
            ..LabOptions::default()
        },
    );
    let out = lab.run_as(0, &["issue"]);
    assert!(out.status.success(), "{}", text(&out));
    let dir = lab.store_dir(VIP);
    // Strays: non-empty, so a rename onto them fails as it did in Why 4.
    for stray in ["4294967295", "00005", "5", "0000"] {
        std::fs::create_dir(dir.join(stray)).unwrap();
        std::fs::write(dir.join(stray).join("meta.json"), b"{}").unwrap();
    }

    let out = lab.run_as(0, &["issue", "--force"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(msg.contains("issued version 0002"), "{msg}");
    for stray in ["4294967295", "00005", "5", "0000"] {
        assert!(
            msg.contains(&format!("store/{VIP}/{stray}")) && dir.join(stray).exists(),
            "{stray}: {msg}"
        );
    }
    assert_eq!(
        std::fs::read_link(dir.join("current")).unwrap(),
        Path::new("0002")
    );
    assert_eq!(lab.pebble.orders_created(), 2);

    // The last number four digits hold: the next issue refuses before ordering.
    std::fs::create_dir(dir.join("9999")).unwrap();
    let out = lab.run_as(0, &["issue", "--force"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains(&format!("store/{VIP}/9999")) && msg.contains("no version number left"),
        "{msg}"
    );
    assert_eq!(lab.pebble.orders_created(), 2, "{msg}");
    assert_eq!(
        std::fs::read_link(dir.join("current")).unwrap(),
        Path::new("0002")
    );
    assert!(!dir.join("0000").join("cert.pem").exists(), "{msg}");
}
