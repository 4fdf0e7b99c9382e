//! Whole pairs and safe paths for `vipcert install` (issue 8, items 2 and 3): honest messages
//! when a target cannot be replaced, no write through a symlinked ancestor directory, stale
//! temporaries named, a damaged `current` named, and the reader loop: readers open the cert
//! then the key while installs of fresh versions run and are killed at random steps.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::common::net::Block;
use crate::common::pki::Spec;
use crate::common::site::{snapshot, under, Site, VIP};
use crate::common::text;
use crate::install_crash::{seed, Rng};

const MAIN_CERT: &str = "/etc/grid-security/gridftp/gridftp-hostcert.pem";
const MAIN_KEY: &str = "/etc/grid-security/gridftp/gridftp-hostkey.pem";
const XRD_CERT: &str = "/etc/grid-security/xrd/xrdcert.pem";
const XRD_KEY: &str = "/etc/grid-security/xrd/xrdkey.pem";

fn site(install_extra: &str) -> Site {
    Site::new(
        &Block::Pair.net(),
        "shared",
        &format!("{install_extra}\n[[install.copy]]\ncert = \"{XRD_CERT}\"\nkey = \"{XRD_KEY}\"\n"),
        "",
    )
}

#[test]
fn cert_target_that_is_a_directory_is_refused_before_any_write() {
    let s = site("");
    s.publish_good(VIP);
    let out = s.install(0);
    assert!(out.status.success(), "{}", text(&out));
    s.publish_good(VIP);
    let root = s.root(0);
    let xrd = under(&root, XRD_CERT);
    std::fs::remove_file(&xrd).unwrap();
    std::fs::create_dir(&xrd).unwrap();
    let before = snapshot(&root);
    let out = s.install(0);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(&format!("{} is a directory", xrd.display())),
        "the message must name the directory: {t}"
    );
    assert!(t.contains("nothing was changed"), "{t}");
    assert_eq!(
        snapshot(&root),
        before,
        "it said nothing was changed, so nothing may have changed"
    );
}

/// `<root>/<link>` is a symlink to a victim directory: install refuses, naming it, and writes
/// nothing into the victim.
fn ancestor_symlink_is_refused(link: &str) {
    let s = site("");
    s.publish_good(VIP);
    let root = s.root(0);
    let victim = s.path("victim");
    std::fs::create_dir_all(&victim).unwrap();
    let at = root.join(link);
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&victim, &at).unwrap();
    let out = s.install(0);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(&format!("{} is a symlink", at.display())),
        "the message must name the symlink: {t}"
    );
    let left: Vec<_> = walk(&victim);
    assert!(left.is_empty(), "written into the victim: {left:?}");
}

#[test]
fn symlinked_etc_is_refused() {
    ancestor_symlink_is_refused("etc");
}

#[test]
fn symlinked_grid_security_is_refused() {
    ancestor_symlink_is_refused("etc/grid-security");
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn stale_directory_named_like_a_temp_file_is_named() {
    let s = site("");
    s.publish_good(VIP);
    let root = s.root(0);
    let stale = under(
        &root,
        "/etc/grid-security/gridftp/.gridftp-hostkey.pem.tmp.1.2.3",
    );
    std::fs::create_dir_all(&stale).unwrap();
    let out = s.install(0);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains(&stale.display().to_string()), "{t}");
    assert!(t.contains("nothing was changed"), "{t}");
}

#[test]
fn current_that_is_not_a_symlink_is_named() {
    for kind in ["regular file", "directory"] {
        let s = site("");
        s.publish_good(VIP);
        let cur = s.shared.join("store").join(VIP).join("current");
        std::fs::remove_file(&cur).unwrap();
        if kind == "directory" {
            std::fs::create_dir(&cur).unwrap();
        } else {
            std::fs::write(&cur, "0001").unwrap();
        }
        let out = s.install(0);
        let t = text(&out);
        assert!(!out.status.success(), "{kind}: {t}");
        assert!(
            t.contains(&format!("store/{VIP}/current is a {kind}")),
            "{kind}: {t}"
        );
    }
}

/// What the reader loop saw.
#[derive(Debug, Default)]
struct Reads {
    reads: u64,
    /// cert, key, cert again: the cert was the same before and after the key was read, and the
    /// key is not its key: the files on disk were a mixed pair at that instant.
    mixed: u64,
    /// The cert changed while the key was read: a read that straddled a switch (possible in
    /// any mode: two files cannot be opened at one instant).
    straddled: u64,
    /// A file missing or unreadable (the first install, killed before both exist).
    missing: u64,
    /// After each install process ended (killed or not), with no writer running: mixed pairs.
    mixed_at_rest: u64,
    installs: u64,
    killed: u64,
}

/// Publish a fresh version and install it, `n` times, killing the installer (SIGKILL, the
/// failpoint) at a random step in most runs, while a reader thread opens the main cert then
/// its key. Each version's cert is unique, so a key is compared with the key of the version
/// the cert belongs to (the same answer as comparing public keys, without parsing).
///
/// The reader reads while an installer runs, from before it is spawned until it has been
/// reaped; between runs the files do not change (checked after each run: `mixed_at_rest`),
/// so it waits there and leaves the CPU to the next version's key, certificate and publish.
fn reader_loop(mode: &str, n: u64) -> Reads {
    let s = site(&format!("mode = \"{mode}\""));
    let root = s.root(0);
    let (cert_p, key_p) = (under(&root, MAIN_CERT), under(&root, MAIN_KEY));
    let key_of: Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let installing = Arc::new(AtomicBool::new(false));
    let counts: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let reader = {
        let (key_of, stop, counts) = (key_of.clone(), stop.clone(), counts.clone());
        let installing = installing.clone();
        let (cert_p, key_p) = (cert_p.clone(), key_p.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if !installing.load(Ordering::SeqCst) {
                    std::thread::park();
                    continue;
                }
                let c1 = std::fs::read(&cert_p);
                let k = std::fs::read(&key_p);
                let c2 = std::fs::read(&cert_p);
                let i = match (c1, k, c2) {
                    (Ok(c1), Ok(k), Ok(c2)) if c1 == c2 => {
                        let want = key_of.lock().unwrap().get(&c1).cloned();
                        match want {
                            Some(w) if w == k => 0,
                            Some(_) => 1,
                            None => 3,
                        }
                    }
                    (Ok(_), Ok(_), Ok(_)) => 2,
                    _ => 3,
                };
                counts[i].fetch_add(1, Ordering::Relaxed);
                std::thread::yield_now();
            }
        })
    };
    let mut r = Reads::default();
    // The seed is printed by `seed` (replay with VIPCERT_CRASH_SEED).
    let mut rng = Rng(seed());
    eprintln!("reader loop, mode {mode}: {n} installs");
    // A good leaf each time, as `Site::good_leaf` makes it, from names planned once.
    let names = s.names(VIP);
    for _ in 0..n {
        let leaf = s.ca.leaf(&Spec::new(&names[0], &names));
        key_of.lock().unwrap().insert(
            leaf.fullchain().into_bytes(),
            leaf.key_pem.clone().into_bytes(),
        );
        s.publish_named(VIP, names.clone(), &leaf);
        // 3 runs in 4 are killed at a random step among the first 20 (an install has about
        // 15 to 20): every instant of a run gets killed in some run.
        let crash = (rng.below(4) != 0).then(|| 1 + rng.below(20));
        let mut c = s.cmd(0, &["install", "--root", root.to_str().unwrap()]);
        if let Some(k) = crash {
            c.env("VIPCERT_TEST_CRASH_AFTER", k.to_string());
        }
        installing.store(true, Ordering::SeqCst);
        reader.thread().unpark();
        let out = c.output().unwrap();
        installing.store(false, Ordering::SeqCst);
        r.installs += 1;
        if std::os::unix::process::ExitStatusExt::signal(&out.status) == Some(9) {
            r.killed += 1;
        } else {
            assert!(out.status.success(), "{}", text(&out));
        }
        if let (Ok(c), Ok(k)) = (std::fs::read(&cert_p), std::fs::read(&key_p)) {
            if key_of.lock().unwrap().get(&c) != Some(&k) {
                r.mixed_at_rest += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    reader.thread().unpark();
    reader.join().unwrap();
    let [ok, mixed, straddled, missing] = counts.as_ref();
    r.mixed = mixed.load(Ordering::Relaxed);
    r.straddled = straddled.load(Ordering::Relaxed);
    r.missing = missing.load(Ordering::Relaxed);
    r.reads = ok.load(Ordering::Relaxed) + r.mixed + r.straddled + r.missing;
    // A final clean run completes whatever the last kill left.
    let out = s.install(0);
    assert!(out.status.success(), "{}", text(&out));
    eprintln!("reader loop, mode {mode}: {r:?}");
    r
}

/// Installs per mode: VIPCERT_TEST_PAIR_INSTALLS, default 1,000 as the issue asks (15 s for
/// both modes on a quiet 2-core machine; about four times that beside the rest of the suite).
fn installs() -> u64 {
    std::env::var("VIPCERT_TEST_PAIR_INSTALLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

#[test]
fn reader_loop_links_mode_never_sees_a_mixed_pair_files_mode_counted() {
    // Both cores busy for its own sake for 15-40 s: the tests beside it (the node server's
    // flood and latency tests come next in the suite's order; a challenge p99 under 10 ms
    // failed beside it once with four test threads on two cores) get the CPU first.
    let _nice = crate::common::background();
    let t0 = Instant::now();
    let n = installs();
    let links = reader_loop("links", n);
    let files = reader_loop("files", n);
    eprintln!(
        "REPORT pair reader loop, {n} installs per mode in {:.1} s: links: {} reads, {} mixed, {} mixed at rest, {} straddled a switch, {} killed; files: {} reads, {} mixed, {} mixed at rest, {} straddled, {} killed",
        t0.elapsed().as_secs_f64(),
        links.reads,
        links.mixed,
        links.mixed_at_rest,
        links.straddled,
        links.killed,
        files.reads,
        files.mixed,
        files.mixed_at_rest,
        files.straddled,
        files.killed
    );
    assert!(
        links.reads > 1000 && files.reads > 1000,
        "the reader barely ran"
    );
    assert!(
        links.killed > n / 3 && files.killed > n / 3,
        "too few kills"
    );
    assert_eq!(
        links.mixed, 0,
        "links mode: a reader saw a mixed pair on disk"
    );
    assert_eq!(
        links.mixed_at_rest, 0,
        "links mode: a kill left a mixed pair"
    );
}

#[test]
fn links_mode_installs_links_that_check_and_openssl_read() {
    let s = site("mode = \"links\"");
    let out = s.run(0, &["config", "check"]);
    assert!(
        text(&out).contains(&format!(
            "mode \"links\": each path is a symlink into <dir>/.vipcert/{VIP}/current/"
        )),
        "{}",
        text(&out)
    );
    let v1 = s.publish_good(VIP);
    let out = s.install(0);
    assert!(out.status.success(), "{}", text(&out));
    let root = s.root(0);
    for (p, f) in [
        (MAIN_CERT, "fullchain.pem"),
        (MAIN_KEY, "key.pem"),
        (XRD_CERT, "fullchain.pem"),
        (XRD_KEY, "key.pem"),
    ] {
        let at = under(&root, p);
        let m = std::fs::symlink_metadata(&at).unwrap();
        assert!(m.file_type().is_symlink(), "{p} is not a link");
        assert_eq!(
            std::fs::read(&at).unwrap(),
            s.version_file(VIP, v1, f),
            "{p}"
        );
    }
    // The real files carry the configured modes; openssl reads the pair through the links.
    use std::os::unix::fs::PermissionsExt;
    let key = under(&root, MAIN_KEY);
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o400
    );
    let cert = under(&root, MAIN_CERT);
    let pubkey = |args: &[&str]| {
        let o = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "openssl {args:?}: {}", text(&o));
        o.stdout
    };
    assert_eq!(
        pubkey(&["x509", "-noout", "-pubkey", "-in", cert.to_str().unwrap()]),
        pubkey(&["pkey", "-pubout", "-in", key.to_str().unwrap()]),
    );
    // Up to date: nothing changes; `check` reads through the links and is happy.
    let before = snapshot(&root);
    let out = s.install(0);
    assert!(text(&out).contains("up to date"), "{}", text(&out));
    assert_eq!(snapshot(&root), before);
    let out = s.run(0, &["check", "--root", root.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    // A new version: one switch, the previous version kept beside it for a moment.
    let v2 = s.publish_good(VIP);
    let out = s.install(0);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(&cert).unwrap(),
        s.version_file(VIP, v2, "fullchain.pem")
    );
    assert_eq!(
        std::fs::read(&key).unwrap(),
        s.version_file(VIP, v2, "key.pem")
    );
}

#[test]
fn config_check_refuses_same_cert_and_key_and_bad_lease_values() {
    for (extra, rest, want) in [
        (
            format!("key = \"{MAIN_CERT}\"\ncert = \"{MAIN_CERT}\""),
            "",
            "cert and key are the same file",
        ),
        (
            String::new(),
            "[renew]\nlease_ttl = \"0s\"",
            "renew.lease_ttl",
        ),
        (
            String::new(),
            "[renew]\nlease_ttl = \"100000000000000d\"",
            "renew.lease_ttl",
        ),
        (
            String::new(),
            "[renew]\nlease_refresh = \"0s\"",
            "renew.lease_refresh",
        ),
        (
            "mode = \"links\"\ncert = \"/etc/a/c.pem\"\nkey = \"/etc/b/k.pem\"".to_string(),
            "",
            "install.mode",
        ),
    ] {
        let s = Site::new(&Block::Pair.net(), "shared", &extra, "");
        if !rest.is_empty() {
            let mut t = std::fs::read_to_string(&s.config).unwrap();
            t.push_str(&format!("\n{rest}\n"));
            std::fs::write(&s.config, t).unwrap();
        }
        let out = s.run(0, &["config", "check"]);
        assert!(!out.status.success(), "{extra} {rest}: {}", text(&out));
        assert!(text(&out).contains(want), "{extra} {rest}: {}", text(&out));
    }
}

/// GSI through the links: a real `globus-gridftp-server` (GSI, no -aa) whose X509_USER_CERT
/// and X509_USER_KEY are the links-mode targets, and a `globus-url-copy` over gsiftp:// with a
/// client certificate of the same test CA, expecting the server's subject to be the VIP name.
#[test]
fn gsi_gridftp_server_uses_the_links_mode_pair() {
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    let s = site("mode = \"links\"");
    // RSA, as issued by default: GSI sizes its delegated proxy keys by the credential's RSA key.
    let names = s.names(VIP);
    s.publish(VIP, &s.ca.leaf(&Spec::new(&names[0], &names).rsa()));
    let out = s.install(0);
    assert!(out.status.success(), "{}", text(&out));
    let root = s.root(0);
    // The session runs as `nobody` (the gridmap below): it must reach the payload.
    std::fs::set_permissions(&s.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Trust: the test root and intermediate, by subject hash, with GSI signing policies.
    let certs = s.path("certificates");
    std::fs::create_dir(&certs).unwrap();
    let chain = s.good_leaf(VIP).chain_pem;
    // The client's own CA has RSA keys: the server sizes the proxy it makes for the client's
    // delegated credential by the client's issuer key (with an ECDSA issuer: "key size too
    // small").
    let client_ca = crate::common::pki::Ca::new_rsa("vipcert gsi client CA");
    let client_chain = client_ca.leaf(&Spec::names(&["unused"])).chain_pem;
    for (pem, subject) in [
        (s.ca.root_pem(), "/CN=vipcert test CA root"),
        (chain, "/CN=vipcert test CA intermediate"),
        (client_ca.root_pem(), "/CN=vipcert gsi client CA root"),
        (client_chain, "/CN=vipcert gsi client CA intermediate"),
    ] {
        let f = certs.join("ca.pem");
        std::fs::write(&f, &pem).unwrap();
        let o = Command::new("openssl")
            .args(["x509", "-hash", "-noout", "-in", f.to_str().unwrap()])
            .output()
            .unwrap();
        let hash = String::from_utf8(o.stdout).unwrap().trim().to_string();
        std::fs::rename(&f, certs.join(format!("{hash}.0"))).unwrap();
        std::fs::write(
            certs.join(format!("{hash}.signing_policy")),
            format!("access_id_CA X509 '{subject}'\npos_rights globus CA:sign\ncond_subjects globus '\"*\"'\n"),
        )
        .unwrap();
    }
    let client = client_ca.leaf(&Spec::names(&["vipcert-test-client"]).rsa());
    let (ccert, ckey) = (s.path("client.pem"), s.path("client.key"));
    std::fs::write(&ccert, &client.cert_pem).unwrap();
    std::fs::write(&ckey, &client.key_pem).unwrap();
    std::fs::set_permissions(&ckey, std::fs::Permissions::from_mode(0o400)).unwrap();
    let gridmap = s.path("grid-mapfile");
    std::fs::write(&gridmap, "\"/CN=vipcert-test-client\" nobody\n").unwrap();
    let payload = s.path("payload");
    std::fs::write(&payload, "read through a GSI session\n").unwrap();

    let ip = Block::PairGsi.host(11);
    let mut server = crate::common::Proc::spawn(
        Command::new("/usr/sbin/globus-gridftp-server")
            .args([
                "-p",
                "2811",
                "-control-interface",
                ip,
                "-data-interface",
                ip,
            ])
            .env("X509_USER_CERT", under(&root, MAIN_CERT))
            .env("X509_USER_KEY", under(&root, MAIN_KEY))
            .env("X509_CERT_DIR", &certs)
            .env("GRIDMAP", &gridmap),
        &s.path("gridftp.log"),
    );
    crate::common::wait_listening(Block::PairGsi.addr(11, 2811), "globus-gridftp-server");
    let got = s.path("got");
    let out = Command::new("timeout")
        .args([
            "60",
            "/usr/bin/globus-url-copy",
            "-ss",
            &format!("/CN={VIP}"),
        ])
        .arg(format!("gsiftp://{ip}:2811{}", payload.display()))
        .arg(format!("file://{}", got.display()))
        .env("X509_USER_CERT", &ccert)
        .env("X509_USER_KEY", &ckey)
        .env("X509_CERT_DIR", &certs)
        .output()
        .unwrap();
    server.kill();
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        std::fs::read_to_string(s.path("gridftp.log")).unwrap_or_default()
    );
    assert_eq!(
        std::fs::read(&got).unwrap(),
        std::fs::read(&payload).unwrap()
    );
}

/// The issue's case: the `[[install.copy]]` lives on another filesystem, and it is full. The
/// copy's filesystem is a 64 KiB tmpfs mounted in a private mount namespace (`unshare -m`), so
/// it exists only for the shell that runs the installs. Every temporary is written before any
/// rename, so the full copy stops the run before anything changed, and the message says so
/// truthfully: every target still holds version 1.
#[test]
fn full_filesystem_at_a_copy_changes_nothing_and_says_so() {
    let s = site("");
    let v1 = s.publish_good(VIP);
    let v2 = s.publish_good(VIP);
    s.store.set_current(VIP, v1).unwrap();
    let root = s.root(0);
    let xrd = under(&root, XRD_CERT).parent().unwrap().to_path_buf();
    std::fs::create_dir_all(&xrd).unwrap();
    let script = r#"
set -e
mount -t tmpfs -o size=64k tmpfs "$XRD"
"$BIN" install --root "$ROOT" >/dev/null
ln -s "$V2" "$CUR.new" && mv -T "$CUR.new" "$CUR"
dd if=/dev/zero of="$XRD/fill" bs=1k 2>/dev/null || true
set +e
"$BIN" install --root "$ROOT"
echo "rc=$?"
for f in "$@"; do echo "$f $(sha256sum < "$f" | cut -d' ' -f1)"; done
"#;
    let cur = s.shared.join("store").join(VIP).join("current");
    let files = [MAIN_CERT, MAIN_KEY, XRD_CERT, XRD_KEY].map(|p| under(&root, p));
    let cmd = s.cmd(0, &[]);
    let out = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .args(&files)
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env("BIN", cmd.get_program())
        .env("XRD", &xrd)
        .env("ROOT", &root)
        .env("CUR", &cur)
        .env("V2", format!("{v2:04}"))
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        !t.contains("rc=0"),
        "the install on a full filesystem succeeded: {t}"
    );
    assert!(t.contains("nothing was changed"), "{t}");
    let sha = |b: &[u8]| vipcert::cert::sha256_hex(b);
    let v1_full = sha(&s.version_file(VIP, v1, "fullchain.pem"));
    let v1_key = sha(&s.version_file(VIP, v1, "key.pem"));
    for (f, want) in files.iter().zip([&v1_full, &v1_key, &v1_full, &v1_key]) {
        let line = format!("{} {want}", f.display());
        assert!(
            t.contains(&line),
            "{} is not version 1 after a run that said nothing was changed:\n{t}",
            f.display()
        );
    }
}

/// Clears the immutable attribute when dropped, so a failing test still leaves a removable
/// temporary directory.
struct Immutable(PathBuf);

impl Immutable {
    fn set(p: &Path) -> Immutable {
        let st = std::process::Command::new("chattr")
            .arg("+i")
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success(), "chattr +i {}", p.display());
        Immutable(p.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

/// A rename that fails after others landed (the copy's key is immutable, `chattr +i`; the
/// install root is on /tmp, whose ext4 has the attribute, unlike tmpfs): the report lists
/// exactly what changed and what did not, never "nothing was changed", and exits 1; once the
/// attribute is gone the next run completes the install from the journal.
#[test]
fn a_failure_part_way_says_what_changed_and_the_next_run_completes() {
    let s = site("");
    let v1 = s.publish_good(VIP);
    let disk = tempfile::tempdir().unwrap();
    let root = disk.path().join("root");
    let install = || s.run(0, &["install", "--root", root.to_str().unwrap()]);
    assert!(install().status.success());
    let v2 = s.publish_good(VIP);
    let guard = Immutable::set(&under(&root, XRD_KEY));
    let out = install();
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(!t.contains("nothing was changed"), "{t}");
    let changed = t
        .lines()
        .find(|l| l.contains("changed (new version):"))
        .unwrap_or_else(|| panic!("no list of changed files: {t}"));
    let unchanged = t
        .lines()
        .find(|l| l.contains("NOT changed (old version):"))
        .unwrap_or_else(|| panic!("no list of unchanged files: {t}"));
    for p in [MAIN_CERT, MAIN_KEY, XRD_CERT] {
        let p = under(&root, p);
        assert!(changed.contains(&p.display().to_string()), "{t}");
        let f = if p.ends_with("xrdcert.pem") || p.ends_with("gridftp-hostcert.pem") {
            "fullchain.pem"
        } else {
            "key.pem"
        };
        assert_eq!(
            std::fs::read(&p).unwrap(),
            s.version_file(VIP, v2, f),
            "{}",
            p.display()
        );
    }
    let xrd_key = under(&root, XRD_KEY);
    assert!(unchanged.contains(&xrd_key.display().to_string()), "{t}");
    assert_eq!(
        std::fs::read(&xrd_key).unwrap(),
        s.version_file(VIP, v1, "key.pem")
    );
    drop(guard);
    let out = install();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("completed an interrupted install"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read(&xrd_key).unwrap(),
        s.version_file(VIP, v2, "key.pem")
    );
}
