//! `issue --dry-run` and `renew --dry-run` against a real Pebble as the staging CA: the whole
//! flow runs (lease, preflight, an order with real HTTP-01 validation, verification) with its
//! own staging account, and the shared directory and install roots are byte-identical after it
//! (but for that account); no hook runs, and the production CA hears nothing. A dry run that
//! fails counts nothing in state/ and tells no `on_failure` program; one without a staging
//! directory refuses, saying which key to set.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::common::net::Block;
use crate::common::pebble::{Lab, LabOptions};
use crate::common::text;

const LINEAGE: &str = "gridftp.example.org";

/// One entry of a tree as the user sees it: kind, mode and content (directory times are left
/// out: the lease and challenge files come and go inside `locks/` and the webroot).
#[derive(Debug, PartialEq)]
enum Entry {
    Dir(u32),
    File(u32, Vec<u8>),
    Link(PathBuf),
}

/// Every entry under `root` by its path relative to `root` (empty when `root` is missing).
fn tree(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        let mode = m.permissions().mode() & 0o7777;
        let e = if m.file_type().is_symlink() {
            Entry::Link(std::fs::read_link(&p).unwrap())
        } else if m.is_dir() {
            for c in std::fs::read_dir(&p).unwrap() {
                stack.push(c.unwrap().path());
            }
            Entry::Dir(mode)
        } else {
            Entry::File(mode, std::fs::read(&p).unwrap())
        };
        out.insert(rel, e);
    }
    out
}

/// The shared directory and every node's install root.
fn snapshot(lab: &Lab) -> Vec<BTreeMap<PathBuf, Entry>> {
    let mut v = vec![tree(&lab.shared)];
    v.extend((0..lab.nodes.len()).map(|i| tree(&lab.root(i))));
    v
}

/// Hooks that each append a line to a file in `dir`: `reload` and `deploy_hook` (run by an
/// install that changed something) and `on_failure` (run when a failure is counted); and the
/// textfile every real issuing run writes there (`[renew] metrics_file`), which a dry run
/// never does.
fn hooks(dir: &Path) -> String {
    let script = dir.join("on_failure.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho failed >> {}/on_failure\n", dir.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "reload = [\"echo reload >> {d}/reload\"]\ndeploy_hook = [\"echo deploy >> {d}/deploy\"]\n\n[notify]\non_failure = [\"{s}\"]\n\n[renew]\nmetrics_file = \"{d}/vipcert-renew.prom\"\n",
        d = dir.display(),
        s = script.display()
    )
}

/// The hooks' files in `dir`, by name, with their lines (and the textfile, by its name).
fn hook_runs(dir: &Path) -> BTreeMap<String, String> {
    ["reload", "deploy", "on_failure", "vipcert-renew.prom"]
        .into_iter()
        .filter_map(|n| Some((n.to_string(), std::fs::read_to_string(dir.join(n)).ok()?)))
        .collect()
}

/// A two-node lab with `hooks(hook_dir)`, its certificate issued (for real, at Pebble) and
/// installed on node 0; node 1 has installed nothing yet, so a real `renew` there would install
/// and run the hooks.
fn issued_lab(block: Block, hook_dir: &Path) -> Lab {
    let extra = hooks(hook_dir);
    let lab = Lab::new(
        block,
        LabOptions {
            nodes: 2,
            extra: &extra,
            ..LabOptions::default()
        },
    );
    let out = lab.run_as(0, &["issue"]);
    assert!(out.status.success(), "{}", text(&out));
    let ran = hook_runs(hook_dir);
    assert_eq!(ran.get("reload").map(String::as_str), Some("reload\n"));
    assert!(!ran.contains_key("on_failure"), "{ran:?}");
    assert!(ran.contains_key("vipcert-renew.prom"), "{ran:?}");
    lab
}

/// Point `[acme] directory` at `production` (a listener that answers nothing) and make Pebble
/// the staging CA, trusted through `staging_ca_roots`.
fn use_pebble_as_staging(lab: &Lab, production: &str) {
    let pebble = &lab.pebble.directory_url;
    let from = format!("directory = \"{pebble}\"");
    let to = format!(
        "directory = \"https://{production}/dir\"\nstaging_directory = \"{pebble}\"\nstaging_ca_roots = \"{}\"",
        lab.pebble.ca_pem.display()
    );
    lab.edit_config(|t| {
        assert!(t.contains(&from), "{t}");
        t.replacen(&from, &to, 1)
    });
}

/// Whether anyone connected to `l` (non-blocking: queued connections are accepted at once).
fn contacted(l: &TcpListener) -> bool {
    l.set_nonblocking(true).unwrap();
    match l.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept: {e}"),
    }
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn dry_runs_order_at_staging_and_leave_share_and_roots_byte_identical() {
    let hook_dir = tempfile::tempdir().unwrap();
    let lab = issued_lab(Block::DryRun, hook_dir.path());
    let production = TcpListener::bind(Block::DryRun.addr(1, 14000)).unwrap();
    use_pebble_as_staging(&lab, &production.local_addr().unwrap().to_string());
    let before = snapshot(&lab);
    let hooks_before = hook_runs(hook_dir.path());
    let orders = lab.pebble.orders_created();

    // issue --dry-run on the node that has it installed, renew --dry-run on the one that has
    // installed nothing (a real renew would install there and run reload and deploy_hook).
    let issued = lab.run_as(0, &["issue", "--dry-run"]);
    let renewed = lab.run_as(1, &["renew", "--dry-run"]);
    for out in [&issued, &renewed] {
        let t = text(out);
        assert_eq!(out.status.code(), Some(0), "{t}");
        let s = stdout(out);
        assert!(
            s.contains(&format!(
                "{LINEAGE}: dry run: issued by the staging CA and verified"
            )),
            "{t}"
        );
        let last = s.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("dry run: 1 of 1 lineage(s) issued and verified")
                && last.contains("nothing was published, installed, recorded or hooked"),
            "{t}"
        );
    }
    assert!(
        stdout(&renewed).contains("as if every lineage were due"),
        "{}",
        text(&renewed)
    );
    // Real orders, validated by the staging CA: one per dry run.
    assert_eq!(lab.pebble.orders_created(), orders + 2);
    assert!(!contacted(&production), "the production CA was contacted");

    // Byte-identical, but for the staging account, kept apart from every real account.
    let mut after = snapshot(&lab);
    let host = format!("{}_14000", Block::DryRun.host(2));
    let acct = PathBuf::from(format!("accounts/staging/{host}/account.json"));
    match after[0].remove(&acct) {
        Some(Entry::File(0o600, b)) => assert!(!b.is_empty()),
        e => panic!("no staging account at {}: {e:?}", acct.display()),
    }
    for d in [
        format!("accounts/staging/{host}"),
        "accounts/staging".into(),
    ] {
        assert_eq!(
            after[0].remove(Path::new(&d)),
            Some(Entry::Dir(0o700)),
            "{d}"
        );
    }
    assert!(before == after, "the shared dir or an install root changed");
    assert!(!after[2].contains_key(Path::new("")), "node 1 installed");
    assert_eq!(
        hook_runs(hook_dir.path()),
        hooks_before,
        "a hook ran, or the metrics textfile was written"
    );
}

#[test]
fn a_failing_dry_run_counts_nothing_and_tells_nobody() {
    let hook_dir = tempfile::tempdir().unwrap();
    let mut lab = issued_lab(Block::DryRunFails, hook_dir.path());
    let before = snapshot(&lab);
    let hooks_before = hook_runs(hook_dir.path());

    // No staging directory known for this CA: refused before anything, naming the key.
    let out = lab.run_as(1, &["renew", "--dry-run"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("set [acme] staging_directory"), "{t}");
    assert!(
        before == snapshot(&lab),
        "a refused dry run changed something"
    );

    // A node that cannot answer: preflight fails, the dry run fails, and nothing is counted.
    let production = TcpListener::bind(Block::DryRunFails.addr(1, 14000)).unwrap();
    use_pebble_as_staging(&lab, &production.local_addr().unwrap().to_string());
    lab.stop_serve(1);
    for args in [["renew", "--dry-run"], ["issue", "--dry-run"]] {
        let out = lab.run_as(0, &args);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {t}");
        assert!(
            stdout(&out).contains(&format!("{LINEAGE}: dry run FAILED: preflight failed")),
            "{t}"
        );
        let last = stdout(&out).lines().last().unwrap_or_default().to_string();
        assert!(
            last.starts_with("dry run FAILED for 1 of 1 lineage(s)"),
            "{t}"
        );
    }
    assert!(!contacted(&production), "the production CA was contacted");
    assert!(
        before == snapshot(&lab),
        "a failed dry run changed the shared dir (state/) or an install root"
    );
    assert_eq!(
        hook_runs(hook_dir.path()),
        hooks_before,
        "a hook ran, or the metrics textfile was written"
    );
}
