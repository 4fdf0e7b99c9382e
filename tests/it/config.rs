//! A config that can't lie: `vipcert config check` refuses what would be cut short, hang,
//! overflow or mean something else later, naming the file, line and key; `check`'s usage
//! errors are UNKNOWN (3) to Nagios. No network: these tests only read files in a temp dir.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::{text, Proc, BIN};

/// Line numbers below are this text's.
const BASE: &str = r#"virtual_hostname = "gridftp.example.org"
virtual_ip = "192.0.2.10"
shared_dir = "/mnt/nfsshare/vipcert"
layout = "shared"
[acme]
contact = ["mailto:grid-admin@example.org"]
http_port = 80
timeout = "90s"
[[node]]
hostname = "dtn1.example.org"
address = "192.0.2.11"
[[node]]
hostname = "dtn2.example.org"
address = "192.0.2.12"
[serve]
listen = ["0.0.0.0:80"]
watch_interval = "30s"
[install]
root = "/nonexistent/vipcert-test-root"
key_mode = "0400"
[balancer]
threads = 2
"#;

fn config_check(path: &Path) -> Output {
    Command::new(BIN)
        .args(["config", "check", "--config"])
        .arg(path)
        .output()
        .unwrap()
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("vipcert.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// `config check` of `text` fails, and its message starts with `file:line: key:`.
fn refused(config: &str, line: usize, key: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), config);
    let out = config_check(&p);
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "accepted:\n{config}\n{}",
        text(&out)
    );
    let want = format!("{}:{line}: {key}: ", p.display());
    assert!(e.contains(&want), "want {want:?} in:\n{e}");
    e
}

/// `config check --node dtn1.example.org` of `config` written in `dir`: as this machine were
/// that node, so the host checks (files, users) run.
fn config_check_on_node(dir: &Path, config: &str) -> (PathBuf, Output) {
    let p = write(dir, config);
    let out = Command::new(BIN)
        .args(["config", "check", "--node", "dtn1.example.org", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    (p, out)
}

/// As `refused`, on a node (see `config_check_on_node`), with the files of `dir`.
fn refused_on_node(dir: &Path, config: &str, line: usize, key: &str) -> String {
    let (p, out) = config_check_on_node(dir, config);
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "accepted:\n{config}\n{}",
        text(&out)
    );
    let want = format!("{}:{line}: {key}: ", p.display());
    assert!(e.contains(&want), "want {want:?} in:\n{e}");
    e
}

/// `config check` on a node accepts `config`; returns its output.
fn accepted_on_node(dir: &Path, config: &str) -> String {
    let (_, out) = config_check_on_node(dir, config);
    assert!(out.status.success(), "refused:\n{config}\n{}", text(&out));
    text(&out)
}

#[test]
fn eab_key_file_that_others_can_read_or_another_user_owns_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("eab.key");
    // base64url of 32 bytes, as a CA hands it out.
    std::fs::write(&key, "c2VjcmV0LWhtYWMta2V5LWZvci10ZXN0cy0zMi1ieXRl\n").unwrap();
    let config = BASE.replacen(
        "timeout = \"90s\"\n",
        &format!(
            "timeout = \"90s\"\neab_kid = \"kid-1\"\neab_hmac_key_file = \"{}\"\n",
            key.display()
        ),
        1,
    );
    let chmod = |m| std::fs::set_permissions(&key, std::fs::Permissions::from_mode(m)).unwrap();
    chmod(0o644);
    let e = refused_on_node(dir.path(), &config, 10, "acme.eab_hmac_key_file");
    assert!(e.contains("0644") && e.contains("chmod 600"), "{e}");
    chmod(0o600);
    accepted_on_node(dir.path(), &config);
    // A secret another user owns is that user's to read or replace: only root's is accepted.
    std::os::unix::fs::chown(&key, Some(65534), None).unwrap();
    let e = refused_on_node(dir.path(), &config, 10, "acme.eab_hmac_key_file");
    assert!(e.contains("65534") && e.contains("chown root"), "{e}");
}

#[test]
fn ca_roots_missing_or_a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let with = |p: &Path| {
        BASE.replacen(
            "http_port = 80\n",
            &format!("http_port = 80\nca_roots = \"{}\"\n", p.display()),
            1,
        )
    };
    let roots = dir.path().join("roots.pem");
    let e = refused_on_node(dir.path(), &with(&roots), 8, "acme.ca_roots");
    assert!(e.contains("roots.pem"), "{e}");
    let e = refused_on_node(dir.path(), &with(dir.path()), 8, "acme.ca_roots");
    assert!(e.contains("not a regular file"), "{e}");
    std::fs::write(&roots, "no certificate here\n").unwrap();
    refused_on_node(dir.path(), &with(&roots), 8, "acme.ca_roots");
    std::fs::write(&roots, crate::common::pki::Ca::new("roots test").root_pem()).unwrap();
    accepted_on_node(dir.path(), &with(&roots));
}

/// A dry run's `staging_ca_roots` is read on a node as `ca_roots` is, and named as itself.
#[test]
fn staging_ca_roots_missing_is_refused_on_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("staging-roots.pem");
    let config = BASE.replacen(
        "http_port = 80\n",
        &format!(
            "http_port = 80\nstaging_directory = \"https://staging.example.org/dir\"\nstaging_ca_roots = \"{}\"\n",
            roots.display()
        ),
        1,
    );
    let e = refused_on_node(dir.path(), &config, 9, "acme.staging_ca_roots");
    assert!(e.contains("cannot read acme.staging_ca_roots"), "{e}");
    std::fs::write(
        &roots,
        crate::common::pki::Ca::new("staging test").root_pem(),
    )
    .unwrap();
    accepted_on_node(dir.path(), &config);
}

#[test]
fn install_owners_out_of_range_or_unknown_here_are_refused() {
    let owner = |o: &str| {
        BASE.replacen(
            "key_mode = \"0400\"",
            &format!("key_mode = \"0400\"\n{o}"),
            1,
        )
    };
    // 4294967295 is chown(2)'s "leave unchanged"; larger does not fit a uid at all.
    for bad in [
        "owner = \"4294967296\"",
        "owner = \"4294967295\"",
        "owner = \"a:b\"",
        "owner = \"\"",
    ] {
        refused(&owner(bad), 21, "install.owner");
    }
    refused(&owner("group = \"99999999999\""), 21, "install.group");
    let dir = tempfile::tempdir().unwrap();
    let e = refused_on_node(
        dir.path(),
        &owner("owner = \"nosuchuser\""),
        21,
        "install.owner",
    );
    assert!(e.contains("nosuchuser") && e.contains("/etc/passwd"), "{e}");
    let e = refused_on_node(
        dir.path(),
        &owner("group = \"nosuchgroup\""),
        21,
        "install.group",
    );
    assert!(e.contains("/etc/group"), "{e}");
    let copy = format!(
        "{BASE}[[install.copy]]\ncert = \"/etc/x/c.pem\"\nkey = \"/etc/x/k.pem\"\nowner = \"nosuchuser\"\n"
    );
    refused_on_node(dir.path(), &copy, 26, "install.copy.owner");
    let out = accepted_on_node(dir.path(), &owner("owner = \"nobody\"\ngroup = \"65534\""));
    assert!(out.contains("checked on this host"), "{out}");
    // A machine that is not a node (here: no --node) cannot tell: it says it did not check.
    let p = write(dir.path(), &owner("owner = \"nosuchuser\""));
    let out = config_check(&p);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("not checked"), "{}", text(&out));
}

#[test]
fn paths_must_be_absolute_and_normal_and_are_reported_at_their_own_line() {
    let install = |k: &str| {
        BASE.replacen(
            "key_mode = \"0400\"",
            &format!("key_mode = \"0400\"\n{k}"),
            1,
        )
    };
    for (bad, key) in [
        ("cert = \"/etc/../../x.pem\"", "install.cert"),
        // Was reported at line 1.
        ("cert = \"x.pem\"", "install.cert"),
        ("key = \"/etc/grid-security/./k.pem\"", "install.key"),
        ("key = \"/etc/grid-security/\"", "install.key"),
        (
            "cert = \"/etc/x/c.pem\"\nkey = \"/etc/x/c.pem\"",
            "install.key",
        ),
    ] {
        let line = 20 + bad.lines().count();
        refused(&install(bad), line, key);
    }
    let copy = format!("{BASE}[[install.copy]]\ncert = \"../c.pem\"\nkey = \"/etc/x/k.pem\"\n");
    refused(&copy, 24, "install.copy.cert");
    let copy = format!("{BASE}[[install.copy]]\ncert = \"/etc/x/c.pem\"\nkey = \"/etc/x/k.pem\"\nkey_mode = \"0640\"\n");
    refused(&copy, 26, "install.copy.key_mode");
    let acme = |k: &str| BASE.replacen("http_port = 80\n", &format!("http_port = 80\n{k}\n"), 1);
    refused(&acme("ca_roots = \"roots.pem\""), 8, "acme.ca_roots");
    refused(
        &acme("eab_kid = \"k\"\neab_hmac_key_file = \"/etc/vipcert/../eab.key\""),
        9,
        "acme.eab_hmac_key_file",
    );
    refused(
        &BASE.replacen("/mnt/nfsshare/vipcert", "/srv/../mnt/vipcert", 1),
        3,
        "shared_dir",
    );
    refused(
        &install("mode = \"links\"\ncert = \"/etc/a/c.pem\"\nkey = \"/etc/b/k.pem\""),
        21,
        "install.mode",
    );
}

#[test]
fn lease_refresh_must_fit_three_times_in_lease_ttl() {
    let renew = |r: &str| format!("{BASE}[renew]\n{r}\n");
    let e = refused(
        &renew("lease_ttl = \"2s\"\nlease_refresh = \"60s\""),
        25,
        "renew.lease_refresh",
    );
    assert!(e.contains("three"), "{e}");
    // The default refresh is 10 s.
    refused(&renew("lease_ttl = \"4s\""), 24, "renew.lease_ttl");
    let dir = tempfile::tempdir().unwrap();
    let out = config_check(&write(
        dir.path(),
        &renew("lease_ttl = \"3s\"\nlease_refresh = \"1s\""),
    ));
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn invalid_idna_names_are_refused() {
    let e = refused(
        &BASE.replacen("gridftp.example.org", "xn--zz.example.org", 1),
        1,
        "virtual_hostname",
    );
    assert!(e.contains("xn--zz"), "{e}");
    refused(
        &BASE.replacen("dtn2.example.org", "xn--zz.example.org", 1),
        13,
        "node.hostname",
    );
    // "--" in the third and fourth place is for IDNA only: CAs refuse other such labels.
    refused(
        &BASE.replacen("dtn2.example.org", "ab--cd.example.org", 1),
        13,
        "node.hostname",
    );
    // A valid IDN (bücher) is a name like any other.
    let dir = tempfile::tempdir().unwrap();
    let ok = BASE.replacen("dtn2.example.org", "xn--bcher-kva.example.org", 1);
    let out = config_check(&write(dir.path(), &ok));
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn vip_and_addresses_keepalived_pairs_with_it_share_a_family() {
    let v6 = BASE.replacen("\"192.0.2.10\"", "\"2001:db8::10\"", 1);
    let e = refused(&v6, 11, "node.address");
    assert!(e.contains("vrrp"), "{e}");
    // `vipcert balance` proxies across families: with keepalived only moving the VIP it works.
    let dir = tempfile::tempdir().unwrap();
    let vrrp = format!("{v6}[balancer.keepalived]\nmode = \"vrrp\"\n");
    let out = config_check(&write(dir.path(), &vrrp));
    assert!(out.status.success(), "{}", text(&out));
    // The VRRP instance takes the VIP's family; keepalived ignores peers of the other one.
    let peers = format!("{BASE}[balancer.keepalived]\nunicast_peers = [\"2001:db8::1\"]\n");
    refused(&peers, 24, "balancer.keepalived.unicast_peers");
}

#[test]
fn client_auth_from_lets_encrypt_is_a_warning_that_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let c = BASE.replacen(
        "address = \"192.0.2.11\"\n",
        "address = \"192.0.2.11\"\nneeds_client_auth = true\n",
        1,
    );
    let out = config_check(&write(dir.path(), &c));
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("warning: ")
            && t.contains("dtn1.example.org")
            && t.contains("2026-02-11")
            && t.contains("IGTF"),
        "{t}"
    );
    // A CA that may still issue clientAuth: nothing to warn about.
    let other = c.replacen(
        "[acme]\n",
        "[acme]\ndirectory = \"https://acme.example.org/dir\"\n",
        1,
    );
    let out = config_check(&write(dir.path(), &other));
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("warning"), "{}", text(&out));
}

#[test]
fn base_config_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let out = config_check(&write(dir.path(), BASE));
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn values_accepted_before_are_refused_with_line_and_key() {
    let cases: &[(&str, &str, usize, &str)] = &[
        (
            "timeout = \"90s\"",
            "timeout = \"500000000000y\"",
            8,
            "acme.timeout",
        ),
        ("timeout = \"90s\"", "timeout = \"2h\"", 8, "acme.timeout"),
        ("http_port = 80", "http_port = 0", 7, "acme.http_port"),
        (
            "listen = [\"0.0.0.0:80\"]",
            "listen = []",
            16,
            "serve.listen",
        ),
        ("\"0.0.0.0:80\"", "\"0.0.0.0:0\"", 16, "serve.listen"),
        ("\"dtn2.example.org\"", "\"10.1.2.3\"", 13, "node.hostname"),
        (
            "\"mailto:grid-admin@example.org\"",
            "\"mailto:\"",
            6,
            "acme.contact",
        ),
        (
            "\"mailto:grid-admin@example.org\"",
            "\"mailto:a@b@c\"",
            6,
            "acme.contact",
        ),
        (
            "key_mode = \"0400\"",
            "key_mode = \"4400\"",
            20,
            "install.key_mode",
        ),
        (
            "watch_interval = \"30s\"",
            "watch_interval = \"0s\"",
            17,
            "serve.watch_interval",
        ),
        ("\"192.0.2.10\"", "\"0.0.0.0\"", 2, "virtual_ip"),
        ("\"192.0.2.10\"", "\"224.0.0.18\"", 2, "virtual_ip"),
        ("\"192.0.2.10\"", "\"255.255.255.255\"", 2, "virtual_ip"),
        ("threads = 2", "threads = 100000", 22, "balancer.threads"),
    ];
    for (from, to, line, key) in cases {
        assert!(BASE.contains(from), "{from}");
        refused(&BASE.replacen(from, to, 1), *line, key);
    }
}

#[test]
fn long_cn_is_reported_under_the_key_that_sets_it() {
    let long = format!("{}.example.org", "a".repeat(60));
    // Shared: the CN is the virtual hostname.
    let e = refused(
        &BASE.replace("gridftp.example.org", &long),
        1,
        "virtual_hostname",
    );
    assert!(e.contains("64"), "{e}");
    // Per-host: the CN is each node's own hostname; a long virtual hostname is only a SAN.
    let per_host = BASE.replace("\"shared\"", "\"per-host\"");
    refused(
        &per_host.replace("dtn2.example.org", &long),
        13,
        "node.hostname",
    );
    let dir = tempfile::tempdir().unwrap();
    let out = config_check(&write(
        dir.path(),
        &per_host.replace("gridftp.example.org", &long),
    ));
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn oversize_config_is_refused_not_truncated() {
    // What the issue saw: a third node and the install root after a 1.1 MB comment vanished.
    let config = format!(
        "{}# {}\n[[node]]\nhostname = \"dtn3.example.org\"\naddress = \"192.0.2.13\"\n",
        BASE.replace("[install]\nroot = \"/nonexistent/vipcert-test-root\"\n", ""),
        "x".repeat(1_100_000)
    ) + "[install]\nroot = \"/nonexistent/vipcert-test-root\"\n";
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), &config);
    let out = config_check(&p);
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(e.contains(&p.display().to_string()), "{e}");
    assert!(e.contains("1 MiB"), "{e}");
}

#[test]
fn non_regular_config_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.toml");
    let ok = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(ok.success());
    for p in [fifo.as_path(), dir.path(), Path::new("/dev/zero")] {
        let started = Instant::now();
        let mut proc = Proc::spawn(
            Command::new(BIN)
                .args(["config", "check", "--config"])
                .arg(p),
            &dir.path().join("check.log"),
        );
        let status = proc.wait_exit(Duration::from_secs(10));
        let log = proc.log_text();
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(1),
            "{}: {log}",
            p.display()
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(log.contains("not a regular file"), "{}: {log}", p.display());
        assert!(log.contains(&p.display().to_string()), "{log}");
    }
}

#[test]
fn check_usage_errors_are_unknown_to_nagios() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), BASE);
    for bad in [["--warn", "abc"], ["--format", "xml"]] {
        let out = Command::new(BIN)
            .args(["check", "--config"])
            .arg(&p)
            .args(bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{bad:?}: {}", text(&out));
    }
    // Other commands keep clap's usage exit code.
    let out = Command::new(BIN)
        .args(["renew", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// Thousands of generated and mutated configs, starting from the shipped examples: the parser
/// answers Ok or an error, never a panic (a panic here is a bug that a typo in production
/// would meet). Bounded: the case count keeps it to about 3 s of CPU in a debug build.
mod fuzz {
    use proptest::prelude::*;
    use std::path::Path;

    use vipcert::config::Config;

    fn seeds() -> &'static [String] {
        static SEEDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        SEEDS.get_or_init(|| {
            let mut v: Vec<String> = ["examples/shared.toml", "examples/per-host.toml"]
                .iter()
                .map(|p| std::fs::read_to_string(p).unwrap())
                .collect();
            v.push(super::BASE.to_string());
            v
        })
    }

    /// Values that have tripped parsers: extremes, wrong types, odd spellings.
    const VALUES: &[&str] = &[
        "0",
        "-1",
        "65535",
        "65536",
        "4294967296",
        "18446744073709551616",
        "1e308",
        "nan",
        "true",
        "[]",
        "{}",
        "\"\"",
        "\"0s\"",
        "\"500000000000y\"",
        "\"1ns\"",
        "\"18446744073709551615s\"",
        "\"99999999999999h\"",
        "\"0.0.0.0\"",
        "\"::\"",
        "\"0.0.0.0:0\"",
        "\"[::1]:80\"",
        "\"7777\"",
        "\"0o7777\"",
        "\"99999999999\"",
        "\"mailto:\"",
        "\"mailto:a@b@c\"",
        "[\"\"]",
        "\"a..b\"",
        "\"é.example.org\"",
        "\"1.2.3.4\"",
        "\"/\"",
        "\"relative\"",
    ];

    fn mutate(base: &str, ops: &[(u8, usize, usize)]) -> String {
        let mut s = base.to_string();
        for &(op, a, b) in ops {
            let lines: Vec<&str> = s.lines().collect();
            if lines.is_empty() {
                break;
            }
            let i = a % lines.len();
            let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            match op % 6 {
                // Replace a value with a tricky one.
                0 => {
                    if let Some((k, _)) = out[i].split_once('=') {
                        out[i] = format!("{k}= {}", VALUES[b % VALUES.len()]);
                    }
                }
                // Change a digit in a number or duration.
                1 => {
                    let digits: Vec<usize> = out[i]
                        .char_indices()
                        .filter(|(_, c)| c.is_ascii_digit())
                        .map(|(j, _)| j)
                        .collect();
                    if !digits.is_empty() {
                        let j = digits[b % digits.len()];
                        let d = char::from(b'0' + (b % 10) as u8).to_string();
                        out[i].replace_range(j..j + 1, &d.repeat(1 + b % 20));
                    }
                }
                // Drop or duplicate a line (a key missing or given twice, a section repeated).
                2 => {
                    out.remove(i);
                }
                3 => {
                    let l = out[i].clone();
                    out.insert(b % out.len(), l);
                }
                // Truncate anywhere (a char boundary).
                4 => {
                    let joined = out.join("\n");
                    let mut cut = b % (joined.len() + 1);
                    while !joined.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    return joined[..cut].to_string();
                }
                // Insert a byte.
                _ => {
                    let bytes = [b'"', b'[', b']', b'=', b'\n', b'#', b'\\', b'.', b'0', b' '];
                    let j = (b / 7) % (out[i].len() + 1);
                    if out[i].is_char_boundary(j) {
                        out[i].insert(j, char::from(bytes[b % bytes.len()]));
                    }
                }
            }
            s = out.join("\n") + "\n";
        }
        s
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn mutated_configs_never_panic(
            seed in 0usize..3,
            ops in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<usize>()), 1..6),
        ) {
            let text = mutate(&seeds()[seed], &ops);
            let _ = Config::parse(Path::new("/etc/vipcert/vipcert.toml"), &text);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = Config::parse(Path::new("/etc/vipcert/vipcert.toml"), &text);
        }
    }
}
