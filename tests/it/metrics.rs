//! Metrics from every daemon, as Prometheus sees them: the node server's page on `[serve]
//! metrics_listen`, the textfile of `issue` and `renew` (`[renew] metrics_file`) and the
//! shipped alert rules — checked by `promtool`, and scraped by a real Prometheus (Debian
//! `prometheus`) from `vipcert serve`, `vipcert balance` and node_exporter's textfile
//! collector (Debian `prometheus-node-exporter`), read back through its HTTP API.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::net::Block;
use crate::common::pebble::{Lab, LabOptions, HTTP_PORT};
use crate::common::site::Site;
use crate::common::{connect_from, need, raw_http, text, wait_listening, Proc, BIN};

const PROMTOOL: &str = "/usr/bin/promtool";
const PROMETHEUS: &str = "/usr/bin/prometheus";
const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

/// The shipped rules and their unit tests.
fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/prometheus")
}

/// `promtool check metrics` on `page` (its linter: names, types, HELP): Err with what it said.
fn promtool_check_metrics(page: &str) -> Result<(), String> {
    need(PROMTOOL, "prometheus");
    let mut c = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(text(&out))
    }
}

/// `GET path` at `addr`: status code, head (lower case), body.
fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    get_as(addr, path, "HTTP/1.1")
}

/// `get` in HTTP/1.0 (`version`), so that a Go server (Prometheus) sends the body whole, not
/// chunked.
fn get_as(addr: SocketAddr, path: &str, version: &str) -> (u16, String, String) {
    let rsp = raw_http(
        addr,
        &format!("GET {path} {version}\r\nHost: gridftp.example.org\r\nConnection: close\r\n\r\n"),
    );
    let (head, body) = rsp.split_once("\r\n\r\n").unwrap_or((&rsp, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head.to_ascii_lowercase(), body.to_string())
}

/// The value of the sample `name{labels}` (exactly these labels, in this order) in `page`.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The shipped rules load (`promtool check rules`), their unit tests pass (`promtool test
/// rules`: each alert fires when it should and not before), and docs/monitoring.md shows
/// the file as it is.
#[test]
fn shipped_alert_rules_pass_promtool_and_the_docs_show_them() {
    need(PROMTOOL, "prometheus");
    let dir = rules_dir();
    for args in [
        ["check", "rules", "vipcert-rules.yml"],
        ["test", "rules", "vipcert-rules.test.yml"],
    ] {
        let out = Command::new(PROMTOOL)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "promtool {args:?}:\n{}", text(&out));
        assert!(text(&out).contains("SUCCESS"), "{}", text(&out));
    }
    let rules = std::fs::read_to_string(dir.join("vipcert-rules.yml")).unwrap();
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/monitoring.md"))
            .unwrap();
    assert!(
        docs.contains(&format!("```yaml\n{rules}```")),
        "docs/monitoring.md must show packaging/prometheus/vipcert-rules.yml as it is"
    );
}

/// Each `series` (name and labels, as written) has its value in `page`.
fn expect(page: &str, series: &[(&str, f64)]) {
    for (name, want) in series {
        assert_eq!(sample(page, name), Some(*want), "{name}\n{page}");
    }
}

/// Ask `n` what the serve test counts: a challenge served and one missing, a batch answered
/// and one refused, a third idle connection from one address (over the cap of 2), and three
/// status requests at once (over a share of 1 a second).
fn exercise(n: &crate::serve::Node, from: std::net::IpAddr) {
    let wr = n.shared.join("webroot/.well-known/acme-challenge");
    std::fs::write(wr.join("tok_A"), "tok_A.thumbprint").unwrap();
    let ch = "/.well-known/acme-challenge";
    assert_eq!(get(n.addr, &format!("{ch}/tok_A")).0, 200);
    assert_eq!(get(n.addr, &format!("{ch}/tok_missing")).0, 404);
    let batch = "/.well-known/vipcert/challenges";
    assert_eq!(get(n.addr, &format!("{batch}/tok_A,tok_B")).0, 200);
    assert_eq!(get(n.addr, &format!("{batch}/tok_A,not.a.token")).0, 400);
    let _idle: Vec<_> = (0..2)
        .map(|_| connect_from(from, n.addr).unwrap())
        .collect();
    let mut third = connect_from(from, n.addr).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 1];
    // Closed by the server: end of stream or a reset. A timeout means it stayed open.
    let r = std::io::Read::read(&mut third, &mut buf);
    assert!(
        matches!(&r, Ok(0))
            || matches!(&r, Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted)),
        "the third connection is closed: {r:?}"
    );
    for _ in 0..3 {
        let _ = get(n.addr, "/.well-known/vipcert/status");
    }
}

/// What `exercise` leaves on the page, line by line.
const SERVE_COUNTS: &str = r#"vipcert_serve_challenge_requests_total{result="served"} 1
vipcert_serve_challenge_requests_total{result="not_found"} 1
vipcert_serve_challenge_requests_total{result="unavailable"} 0
vipcert_serve_batch_requests_total{result="answered"} 1
vipcert_serve_batch_requests_total{result="bad_request"} 1
vipcert_serve_connections_refused_total{reason="per_address"} 1
vipcert_serve_connections_refused_total{reason="full"} 0
vipcert_serve_healthy 1"#;

/// The node server's page on `metrics_listen` counts what it answered — challenges served and
/// missing, batches answered and refused, a connection over the per-address cap, a status
/// request over its share — says it is healthy and which version runs, passes promtool's
/// linter, and is nowhere on the public port.
#[test]
fn serve_metrics_count_what_the_node_server_answered() {
    let b = Block::MetricsServe;
    let metrics = b.addr(11, 9812);
    let extra = format!(
        "metrics_listen = \"{metrics}\"\nmax_connections_per_address = 2\nmonitor_rate = 1\nmonitor_wait = \"100ms\""
    );
    let n = crate::serve::start_with(b, &extra, |_| {});
    wait_listening(metrics, "serve's metrics listener");
    exercise(&n, b.ip(101));
    let (code, head, page) = get(metrics, "/metrics");
    assert_eq!(code, 200, "{page}");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let build = format!(
        "vipcert_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    for line in SERVE_COUNTS.lines().chain([build.as_str()]) {
        assert!(page.lines().any(|l| l == line), "{line}\n{page}");
    }
    let over = |o: &str| {
        let name =
            format!("vipcert_serve_rationed_requests_total{{route=\"status\",outcome=\"{o}\"}}");
        sample(&page, &name).unwrap()
    };
    assert!(over("parked") + over("refused") >= 1.0, "{page}");
    assert!(!page.contains("vipcert_serve_watch"), "no --watch: {page}");
    promtool_check_metrics(&page).unwrap();
    // The public port has no metrics page.
    assert_eq!(get(n.addr, "/metrics").0, 404);
}

/// A site whose lineage `gridftp.example.org` has a current certificate (its facts returned)
/// and whose issuing runs write `<site>/textfile/vipcert-renew.prom`.
fn textfile_site() -> (Site, PathBuf, vipcert::cert::CertInfo) {
    let b = Block::MetricsTextfile;
    // The CA on .1 answers nothing (and is asked nothing: there is no account, nothing due);
    // the test CA's leaves are ECDSA.
    let rest = format!(
        "[acme]\ndirectory = \"https://{}:9/dir\"\nkey_type = \"ecdsa-p256\"\n",
        b.host(1)
    );
    let site = Site::new(&b.net(), "shared", "", &rest);
    std::fs::create_dir(site.dir.join("textfile")).unwrap();
    let file = site.dir.join("textfile/vipcert-renew.prom");
    let mut cfg = std::fs::read_to_string(&site.config).unwrap();
    cfg.push_str(&format!("[renew]\nmetrics_file = \"{}\"\n", file.display()));
    std::fs::write(&site.config, cfg).unwrap();
    let v = site.publish_good(VIP);
    let leaf = vipcert::cert::leaf_info(&site.version_file(VIP, v, "cert.pem")).unwrap();
    (site, file, leaf)
}

const VIP: &str = "gridftp.example.org";

/// The textfile of a run that decided nothing was due, for a lineage (`l`: its labels) with
/// certificate `leaf` and no failure; written a moment ago.
fn first_textfile(page: &str, leaf: &vipcert::cert::CertInfo, l: &str) {
    let renews_from = leaf.not_after - (leaf.not_after - leaf.not_before) / 3;
    expect(
        page,
        &[
            ("vipcert_renew_last_run_success", 1.0),
            (&format!("vipcert_renew_consecutive_failures{l}"), 0.0),
            (
                &format!("vipcert_certificate_expiration_timestamp_seconds{l}"),
                leaf.not_after as f64,
            ),
            (
                &format!("vipcert_certificate_renewal_timestamp_seconds{l}"),
                renews_from as f64,
            ),
        ],
    );
    let ran = sample(page, "vipcert_renew_last_run_timestamp_seconds").unwrap();
    assert!((ran - vipcert::store::now() as f64).abs() < 60.0, "{page}");
    assert!(!page.contains("vipcert_renew_next_attempt_timestamp_seconds{"));
}

/// `renew` leaves the textfile whatever it decides (here: nothing due), with what the store
/// says per lineage, mode 0644, accepted by promtool; a backoff recorded in state/ shows; a
/// textfile directory that is gone is a warning, and the run still succeeds.
#[test]
fn renew_writes_the_textfile_and_never_fails_for_it() {
    let (site, file, leaf) = textfile_site();
    let root = site.root(0);
    let renew = || site.run(0, &["renew", "--root", root.to_str().unwrap()]);
    let out = renew();
    assert!(out.status.success(), "{}", text(&out));
    let page = std::fs::read_to_string(&file).unwrap();
    let l = format!("{{lineage=\"{VIP}\"}}");
    first_textfile(&page, &leaf, &l);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o644);
    promtool_check_metrics(&page).unwrap();
    // A backoff recorded by another node's failures.
    let next = vipcert::store::now() + 6000;
    let mut st = site.store.read_state(VIP).unwrap();
    st.failures = 3;
    st.next_attempt = Some(vipcert::unixtime::UnixTime::new(next));
    site.store.write_state(VIP, &st).unwrap();
    assert!(renew().status.success());
    let page = std::fs::read_to_string(&file).unwrap();
    expect(
        &page,
        &[
            (&format!("vipcert_renew_consecutive_failures{l}"), 3.0),
            (
                &format!("vipcert_renew_next_attempt_timestamp_seconds{l}"),
                next as f64,
            ),
        ],
    );
    // node_exporter's directory gone: a warning naming the file; the run is not a failure.
    let dir = file.parent().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
    let out = renew();
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("cannot write [renew] metrics_file"), "{said}");
    assert!(said.contains(&file.display().to_string()), "{said}");
    assert!(
        !dir.exists(),
        "the directory is node_exporter's: never made"
    );
}

/// Every sample of every `vipcert_` series Prometheus holds now: (labels with `__name__`,
/// value).
fn query_vipcert(prometheus: SocketAddr) -> Vec<(BTreeMap<String, String>, f64)> {
    // {__name__=~"vipcert_.+"}, percent-encoded.
    let q = "%7B__name__%3D~%22vipcert_.%2B%22%7D";
    let (code, _, body) = get_as(prometheus, &format!("/api/v1/query?query={q}"), "HTTP/1.0");
    if code != 200 {
        return vec![];
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let Some(result) = v["data"]["result"].as_array() else {
        return vec![];
    };
    result
        .iter()
        .filter_map(|r| {
            let labels = serde_json::from_value(r["metric"].clone()).ok()?;
            let value = r["value"][1].as_str()?.parse().ok()?;
            Some((labels, value))
        })
        .collect()
}

/// What a scrape must hold: the value of `name` from `job` whose labels include `labels`.
struct Want {
    job: &'static str,
    name: &'static str,
    labels: Vec<(String, String)>,
    /// None: any value.
    value: Option<f64>,
}

/// `labels`: "k=v,k=v" ("" for none).
fn want(job: &'static str, name: &'static str, labels: &str, value: Option<f64>) -> Want {
    let labels = labels
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Want {
        job,
        name,
        labels,
        value,
    }
}

fn held(samples: &[(BTreeMap<String, String>, f64)], w: &Want) -> bool {
    samples.iter().any(|(l, v)| {
        l.get("__name__").map(String::as_str) == Some(w.name)
            && l.get("job").map(String::as_str) == Some(w.job)
            && w.labels.iter().all(|(k, x)| l.get(k) == Some(x))
            && w.value.is_none_or(|want| *v == want)
    })
}

/// Prometheus (scrape_interval 1s) on `addr` scraping `targets` (job, address), with the
/// shipped rules loaded; its data in `dir`.
fn start_prometheus(dir: &Path, addr: SocketAddr, targets: &[(&str, SocketAddr)]) -> Proc {
    need(PROMETHEUS, "prometheus");
    let mut cfg = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n",
        rules_dir().join("vipcert-rules.yml").display()
    );
    for (job, a) in targets {
        cfg.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: ['{a}']\n"
        ));
    }
    std::fs::write(dir.join("prometheus.yml"), cfg).unwrap();
    let p = Proc::spawn(
        Command::new(PROMETHEUS)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}")),
        &dir.join("prometheus.log"),
    );
    wait_listening(addr, "prometheus");
    p
}

/// node_exporter on `addr` with the textfile collector alone, reading `dir`.
fn start_node_exporter(dir: &Path, addr: SocketAddr, log: &Path) -> Proc {
    need(NODE_EXPORTER, "prometheus-node-exporter");
    let p = Proc::spawn(
        Command::new(NODE_EXPORTER).args([
            "--collector.disable-defaults",
            "--collector.textfile",
            &format!("--collector.textfile.directory={}", dir.display()),
            &format!("--web.listen-address={addr}"),
        ]),
        log,
    );
    wait_listening(addr, "node_exporter");
    p
}

/// A lab whose node dtn1 runs `serve --watch` with its metrics on `metrics`, whose issuing
/// runs write `textfile`, and whose balancer (admin on `admin`) balances `VIP:7080` to the
/// node servers, checking their health route.
fn scrape_lab(b: Block, metrics: SocketAddr, admin: SocketAddr, textfile: &Path) -> Lab {
    let lab = Lab::new(
        b,
        LabOptions {
            nodes: 1,
            ..LabOptions::default()
        },
    );
    let listen = format!("listen = [\"0.0.0.0:{HTTP_PORT}\"]");
    lab.edit_config(|t| {
        let mut t = t.replacen(&listen, &format!("{listen}\nmetrics_listen = \"{metrics}\""), 1);
        t.push_str(&format!(
            "\n[renew]\nmetrics_file = \"{}\"\n\n[balancer]\nadmin_listen = \"{admin}\"\ndelay_loop = \"1s\"\nrise = 1\n\n[[balancer.service]]\nname = \"http\"\nport = 7080\nbackend_port = {HTTP_PORT}\ncheck = \"http\"\n",
            textfile.display()
        ));
        t
    });
    lab
}

/// What the scrape test must read back: from `serve` (its job `vipcert-serve`), `balance`
/// (`vipcert-balance`) and node_exporter (`node`: renew's and check's textfiles), the
/// certificate's `not_after` where it is one.
fn scrape_wants(not_after: f64) -> Vec<Want> {
    let (s, b, n) = ("vipcert-serve", "vipcert-balance", "node");
    let l = "lineage=gridftp.example.org";
    let version = format!("version={}", env!("CARGO_PKG_VERSION"));
    vec![
        want(s, "vipcert_build_info", &version, Some(1.0)),
        want(s, "vipcert_serve_healthy", "", Some(1.0)),
        want(
            s,
            "vipcert_serve_challenge_requests_total",
            "result=served",
            None,
        ),
        want(
            s,
            "vipcert_serve_batch_requests_total",
            "result=answered",
            None,
        ),
        want(s, "vipcert_serve_watch_installs_total", "result=ok", None),
        want(
            s,
            "vipcert_serve_certificate_expiration_timestamp_seconds",
            l,
            Some(not_after),
        ),
        want(
            b,
            "vipcert_balancer_backend_up",
            "service=http,backend=dtn1.example.org",
            Some(1.0),
        ),
        want(
            n,
            "vipcert_certificate_expiration_timestamp_seconds",
            l,
            Some(not_after),
        ),
        want(n, "vipcert_certificate_renewal_timestamp_seconds", l, None),
        want(n, "vipcert_renew_consecutive_failures", l, Some(0.0)),
        want(n, "vipcert_renew_last_run_success", "", Some(1.0)),
        want(n, "vipcert_check_success", "", Some(1.0)),
    ]
}

/// Poll Prometheus at `prom` (bounded: 30 s) until it holds every one of `wants`.
fn wait_scraped(prom: SocketAddr, wants: &[Want], prometheus: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut samples = query_vipcert(prom);
    while wants.iter().any(|w| !held(&samples, w)) {
        let missing: Vec<_> = wants
            .iter()
            .filter(|w| !held(&samples, w))
            .map(|w| (w.job, w.name))
            .collect();
        assert!(
            Instant::now() < deadline,
            "not scraped within 30 s: {missing:?}\nPrometheus holds: {samples:#?}\nits log:\n{}",
            prometheus.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
        samples = query_vipcert(prom);
    }
}

/// Every rule of the shipped file is loaded in the Prometheus at `prom`.
fn assert_rules_loaded(prom: SocketAddr) {
    let (_, _, rules) = get_as(prom, "/api/v1/rules", "HTTP/1.0");
    let v: serde_json::Value = serde_json::from_str(&rules).unwrap();
    let shipped = std::fs::read_to_string(rules_dir().join("vipcert-rules.yml")).unwrap();
    let group = &v["data"]["groups"][0];
    assert_eq!(group["name"], "vipcert", "{rules}");
    assert_eq!(
        group["rules"].as_array().map(Vec::len),
        Some(shipped.matches("- alert:").count()),
        "{rules}"
    );
}

/// `vipcert balance` with `lab`'s config, logging into `dir`, once its admin listener is up.
fn start_balance(lab: &Lab, admin: SocketAddr, dir: &Path) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(&lab.config)
        .arg("balance")
        .env("NO_COLOR", "1");
    let p = Proc::spawn(&mut cmd, &dir.join("balance.log"));
    wait_listening(admin, "balance's admin listener");
    p
}

/// Done when of issue 20: Prometheus scrapes the lab's `serve` (its metrics listener),
/// `balance` (its admin /metrics) and node_exporter's textfile collector (the textfile
/// `issue` wrote, and `check --format prometheus`'s beside it), and its HTTP API returns
/// `vipcert_` series from all three — with the values the lab holds — and the shipped rules
/// loaded. Bounded polling: done as soon as everything has been scraped.
#[test]
fn prometheus_scrapes_serve_balance_and_the_textfiles() {
    let b = Block::MetricsScrape;
    let (metrics, admin) = (b.addr(11, 9812), b.addr(1, 9811));
    // Not the packages' default ports (9100, 9090), where a machine's own may listen on 0.0.0.0.
    let (ne, prom) = (b.addr(3, 19100), b.addr(4, 19090));
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let textfiles = tmp.path().join("textfile");
    std::fs::create_dir(&textfiles).unwrap();
    let mut lab = scrape_lab(b, metrics, admin, &textfiles.join("vipcert-renew.prom"));
    let _watch = lab.start_watcher(0);
    wait_listening(metrics, "serve's metrics listener");
    let out: Output = lab.run_as(0, &["issue"]);
    assert!(out.status.success(), "{}", text(&out));
    let check = lab.run_as(0, &["check", "--format", "prometheus"]);
    std::fs::write(textfiles.join("vipcert.prom"), &check.stdout).unwrap();
    let _balance = start_balance(&lab, admin, tmp.path());
    let _ne = start_node_exporter(&textfiles, ne, &tmp.path().join("node_exporter.log"));
    let jobs = [
        ("vipcert-serve", metrics),
        ("vipcert-balance", admin),
        ("node", ne),
    ];
    let prometheus = start_prometheus(tmp.path(), prom, &jobs);
    let pem = std::fs::read(lab.store_dir(VIP).join("current/cert.pem")).unwrap();
    let not_after = vipcert::cert::leaf_info(&pem).unwrap().not_after as f64;
    wait_scraped(prom, &scrape_wants(not_after), &prometheus);
    assert_rules_loaded(prom);
    let took = t0.elapsed().as_secs_f64();
    eprintln!("scraped in {took:.1} s from the lab's start");
}
