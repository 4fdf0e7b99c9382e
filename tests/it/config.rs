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
