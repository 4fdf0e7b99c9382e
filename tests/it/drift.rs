//! `vipcert check` against real drift: each test makes one kind of drift with real files,
//! rcgen certificates from a small CA, a real store (`Store::publish`) and, for --fleet, real
//! `vipcert serve` processes and a TLS server on the test's own loopback block; then runs the real binary in all
//! four formats and asserts the finding and each format's exit code.

use std::net::SocketAddr;
use std::path::Path;

use crate::common::net::Block;
use crate::common::pki::{Leaf, Spec};
use crate::common::serve_node;
use crate::common::site::{node, Site, SiteNode};

const VIP: &str = "vip.drift.test";
const DTN1: &str = "dtn1.drift.test";
const DTN2: &str = "dtn2.drift.test";

/// A shared-layout lab with two nodes; dtn1 and dtn2 hold version 1 of the VIP lineage.
fn shared_lab(dir: &Path, nodes: Vec<SiteNode>, extra: &str) -> Site {
    let lab = Site::in_dir(dir, "shared", VIP, &nodes, extra);
    let v = lab.publish(VIP, &lab.good_leaf(VIP));
    for n in &nodes {
        lab.install_version(&n.hostname, VIP, v);
    }
    lab
}

/// DTN1 on .11 and DTN2 on .12 of `block`.
fn two_nodes(block: Block) -> Vec<SiteNode> {
    vec![node(DTN1, block.host(11)), node(DTN2, block.host(12))]
}

/// `check --node DTN1 --root <dtn1's root>` plus `extra`.
fn local_args(lab: &Site, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "check".into(),
        "--node".into(),
        DTN1.into(),
        "--root".into(),
        lab.root_of(DTN1).display().to_string(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// Run `args` in each format. Assert that a finding (`node`, `check`, `severity`, detail
/// containing `detail`) is reported in each, and the exit codes: `code` for text, json and
/// nagios; 0 for prometheus (whose status metric says `code`).
fn expect(
    lab: &Site,
    args: &[String],
    node: &str,
    check: &str,
    severity: &str,
    detail: &str,
    code: i32,
) {
    let with = |fmt: &str| {
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        a.extend(["--format", fmt]);
        lab.vipcert(&a)
    };

    let j = with("json");
    assert_eq!(j.code, code, "json exit code\n{}", j.stdout);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["schema"], 1);
    assert_eq!(v["exit_code"], code);
    let found = v["findings"].as_array().unwrap().iter().any(|f| {
        f["node"].as_str().unwrap_or("") == node
            && f["check"] == check
            && f["severity"] == severity
            && f["detail"].as_str().unwrap().contains(detail)
    });
    assert!(
        found,
        "no {node} {check} {severity} finding with {detail:?} in\n{}",
        j.stdout
    );

    let t = with("text");
    assert_eq!(t.code, code, "text exit code\n{}", t.stdout);
    // A node's lineage whose checks all pass is one row naming them; otherwise one row each.
    let line = t.stdout.lines().find(|l| {
        l.starts_with(severity)
            && l.contains(node)
            && (l.contains(detail)
                || (severity == "ok" && l.contains(" all ") && l.contains(check)))
    });
    assert!(
        line.is_some(),
        "no {severity} row with {detail:?} in\n{}",
        t.stdout
    );
    assert!(line.unwrap().contains(check), "{}", t.stdout);
    assert!(
        !t.stdout.contains('\x1b'),
        "colour when stdout is not a terminal"
    );

    let n = with("nagios");
    assert_eq!(n.code, code, "nagios exit code\n{}", n.stdout);
    let status = ["OK", "WARNING", "CRITICAL", "UNKNOWN"][code as usize];
    assert!(
        n.stdout.starts_with(&format!("VIPCERT {status} - ")),
        "nagios status line\n{}",
        n.stdout
    );
    if severity != "ok" {
        assert!(
            n.stdout.contains(detail),
            "nagios output lacks {detail:?}\n{}",
            n.stdout
        );
    }

    let p = with("prometheus");
    assert_eq!(
        p.code, 0,
        "prometheus exits 0 when it wrote metrics\n{}",
        p.stdout
    );
    assert!(
        p.stdout
            .contains(&format!("\nvipcert_check_status {code}\n")),
        "{}",
        p.stdout
    );
    assert!(
        p.stdout.contains("# TYPE vipcert_drift gauge"),
        "{}",
        p.stdout
    );
    if severity != "ok" {
        let series = format!("node=\"{node}\",lineage=");
        let hit = p.stdout.lines().any(|l| {
            l.starts_with("vipcert_drift{")
                && l.contains(&series)
                && l.contains(&format!("check=\"{check}\",severity=\"{severity}\"}} 1"))
        });
        assert!(
            hit,
            "no vipcert_drift {node} {check} {severity} = 1 in\n{}",
            p.stdout
        );
    }
}

/// Every format says all is well (exit 0) and no drift metric is 1.
fn expect_clean(lab: &Site, args: &[String]) {
    expect(lab, args, DTN1, "expiry", "ok", "expires in", 0);
    let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
    a.extend(["--format", "prometheus"]);
    let p = lab.vipcert(&a);
    assert!(
        !p.stdout
            .lines()
            .any(|l| l.starts_with("vipcert_drift{") && l.ends_with(" 1")),
        "{}",
        p.stdout
    );
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn clean_node_is_ok_in_every_format() {
    let t = tmp();
    let lab = shared_lab(t.path(), two_nodes(Block::DriftLocal), "");
    expect_clean(&lab, &local_args(&lab, &[]));
    let j = lab.vipcert(
        &local_args(&lab, &["--format", "json"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    let checks: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        [
            "store",
            "renewal",
            "file",
            "parse",
            "key",
            "names",
            "current",
            "chain",
            "permissions",
            "eku",
            "expiry"
        ],
        "the fixed order"
    );
}

#[test]
fn missing_file() {
    let t = tmp();
    let lab = shared_lab(t.path(), two_nodes(Block::DriftLocal), "");
    std::fs::remove_file(lab.main_target(DTN1).cert).unwrap();
    expect(
        &lab,
        &local_args(&lab, &[]),
        DTN1,
        "file",
        "critical",
        "gridftp-hostcert.pem is missing",
        2,
    );
}

#[test]
fn unreadable_file() {
    // Mode 000 would not do: the tests run as root, and root reads any mode. A dangling
    // symlink where the certificate should be is unreadable for root too (and vipcert never
    // follows a symlink at a target path anyway); so is a directory in the key's place.
    let t = tmp();
    let lab = shared_lab(t.path(), two_nodes(Block::DriftLocal), "");
    let tg = lab.main_target(DTN1);
    std::fs::remove_file(&tg.cert).unwrap();
    std::os::unix::fs::symlink(t.path().join("nowhere.pem"), &tg.cert).unwrap();
    expect(
        &lab,
        &local_args(&lab, &[]),
        DTN1,
        "file",
        "critical",
        "gridftp-hostcert.pem is unreadable: not a regular file",
        2,
    );
    std::fs::remove_file(&tg.cert).unwrap();
    lab.install_version(DTN1, VIP, 1);
    std::fs::remove_file(&tg.key).unwrap();
    std::fs::create_dir(&tg.key).unwrap();
    expect(
        &lab,
        &local_args(&lab, &[]),
        DTN1,
        "file",
        "critical",
        "gridftp-hostkey.pem is unreadable",
        2,
    );
}

#[test]
fn garbage_pem() {
    let t = tmp();
    let lab = shared_lab(t.path(), two_nodes(Block::DriftLocal), "");
    std::fs::write(
        lab.main_target(DTN1).cert,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    expect(
        &lab,
        &local_args(&lab, &[]),
        DTN1,
        "parse",
        "critical",
        "cannot parse certificate",
        2,
    );
    std::fs::write(lab.main_target(DTN1).cert, "hello\n").unwrap();
    expect(
        &lab,
        &local_args(&lab, &[]),
        DTN1,
        "parse",
        "critical",
        "no PEM certificate found",
        2,
    );
}

#[test]
fn key_of_another_cert() {
    let t = tmp();
    let lab = shared_lab(t.path(), two_nodes(Block::DriftLocal), "");
    let other = lab.good_leaf(VIP);
    std::fs::write(lab.main_target(DTN1).key, other.key_pem).unwrap();
    expect(
        &lab,
        &local_args(&lab, &[]),
        DTN1,
        "key",
        "critical",
        "does not belong to the certificate",
        2,
    );
}

#[test]
fn wrong_cn() {
    let t = tmp();
    let lab = shared_lab(t.path(), two_nodes(Block::DriftLocal), "");
    let names = lab.names(VIP);
    let leaf = lab.ca.leaf(&Spec::new(DTN1, &names));
    lab.install_leaf(DTN1, &leaf);
    expect(
        &lab,
        &local_args(&lab, &[]),
        DTN1,
        "names",
        "critical",
        "CN is Some(\"dtn1.drift.test\"), the plan says \"vip.drift.test\"",
        2,
    );
}

#[test]
fn node_missing_from_sans() {
    let t = tmp();
    let lab = shared_lab(t.path(), two_nodes(Block::DriftLocal), "");
    let names: Vec<String> = lab.names(VIP).into_iter().filter(|n| n != DTN2).collect();
    let v = lab.publish(VIP, &lab.ca.leaf(&Spec::new(VIP, &names)));
    lab.install_version(DTN1, VIP, v);
    expect(
        &lab,
        &local_args(&lab, &[]),
        DTN1,
        "names",
        "critical",
        "missing [\"dtn2.drift.test\"]",
        2,
    );
}

#[test]
fn same_names_in_another_order_is_no_finding() {
    let t = tmp();
    let lab = shared_lab(t.path(), two_nodes(Block::DriftLocal), "");
    // The CA's order (Let's Encrypt sorts), not the plan's: VIP is not first.
    let mut names = lab.names(VIP);
    names.sort();
    names.reverse();
    assert_ne!(names, lab.names(VIP));
    let v = lab.publish(VIP, &lab.ca.leaf(&Spec::new(VIP, &names)));
    lab.install_version(DTN1, VIP, v);
    expect_clean(&lab, &local_args(&lab, &[]));
}

#[test]
fn node_still_on_previous_version() {
    let t = tmp();
    let lab = shared_lab(t.path(), two_nodes(Block::DriftLocal), "");
    lab.publish(VIP, &lab.good_leaf(VIP));
    expect(
        &lab,
        &local_args(&lab, &[]),
        DTN1,
        "current",
        "warning",
        "holds version 0001; store current is version 0002",
        1,
    );
}

#[test]
fn wrong_mode() {
    let t = tmp();
    let lab = shared_lab(t.path(), two_nodes(Block::DriftLocal), "");
    use std::os::unix::fs::PermissionsExt;
    let tg = lab.main_target(DTN1);
    std::fs::set_permissions(&tg.cert, std::fs::Permissions::from_mode(0o600)).unwrap();
    expect(
        &lab,
        &local_args(&lab, &[]),
        DTN1,
        "permissions",
        "warning",
        "has mode 0600, configured 0644",
        1,
    );
    // A private key others can read is critical.
    std::fs::set_permissions(&tg.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    expect(
        &lab,
        &local_args(&lab, &[]),
        DTN1,
        "permissions",
        "critical",
        "is readable by group or others",
        2,
    );
}

#[test]
fn wrong_owner() {
    let t = tmp();
    let lab = shared_lab(t.path(), two_nodes(Block::DriftLocal), "");
    // nobody:nogroup is 65534 on Debian; the tests run as root so chown works.
    std::os::unix::fs::lchown(lab.main_target(DTN1).key, Some(65534), None).unwrap();
    expect(
        &lab,
        &local_args(&lab, &[]),
        DTN1,
        "permissions",
        "warning",
        "is owned by nobody, configured root",
        1,
    );
}

#[test]
fn no_client_auth_where_needed() {
    let t = tmp();
    let mut nodes = two_nodes(Block::DriftLocal);
    nodes[0].needs_client_auth = true;
    let lab = Site::in_dir(t.path(), "shared", VIP, &nodes, "");
    let names = lab.names(VIP);
    let mut spec = Spec::new(VIP, &names);
    spec.client_auth = false;
    let v = lab.publish(VIP, &lab.ca.leaf(&spec));
    lab.install_version(DTN1, VIP, v);
    expect(
        &lab,
        &local_args(&lab, &[]),
        DTN1,
        "eku",
        "warning",
        "no clientAuth EKU (has serverAuth)",
        1,
    );
    // It says why (the CA stopped issuing it) and what to do about it.
    expect(
        &lab,
        &local_args(&lab, &[]),
        DTN1,
        "eku",
        "warning",
        "Let's Encrypt stopped issuing clientAuth on 2026-02-11",
        1,
    );
    expect(
        &lab,
        &local_args(&lab, &[]),
        DTN1,
        "eku",
        "warning",
        "or set needs_client_auth = false",
        1,
    );
    // The same certificate on a node that does not need clientAuth is fine.
    lab.install_version(DTN2, VIP, v);
    let mut a = local_args(&lab, &[]);
    a[2] = DTN2.into();
    a[4] = lab.root_of(DTN2).display().to_string();
    expect(&lab, &a, DTN2, "eku", "ok", "EKU serverAuth", 0);
}

#[test]
fn near_expiry() {
    let t = tmp();
    let lab = Site::in_dir(t.path(), "shared", VIP, &two_nodes(Block::DriftLocal), "");
    let names = lab.names(VIP);
    // 90-day lifetime, 20 days left: below a third (30 d), above a sixth (15 d).
    let spec = Spec::new(VIP, &names).days(-70, 20);
    let v = lab.publish(VIP, &lab.ca.leaf(&spec));
    lab.install_version(DTN1, VIP, v);
    expect(
        &lab,
        &local_args(&lab, &[]),
        DTN1,
        "expiry",
        "warning",
        "warning below 30.0 d",
        1,
    );
    expect(
        &lab,
        &local_args(&lab, &["--crit", "21"]),
        DTN1,
        "expiry",
        "critical",
        "critical below 21.0 d",
        2,
    );
    expect(
        &lab,
        &local_args(&lab, &["--warn", "10d", "--crit", "5d"]),
        DTN1,
        "expiry",
        "ok",
        "expires in 20.0 d",
        0,
    );
}

#[test]
fn expired() {
    let t = tmp();
    let lab = Site::in_dir(t.path(), "shared", VIP, &two_nodes(Block::DriftLocal), "");
    let names = lab.names(VIP);
    let spec = Spec::new(VIP, &names).days(-91, -1);
    let v = lab.publish(VIP, &lab.ca.leaf(&spec));
    lab.install_version(DTN1, VIP, v);
    expect(
        &lab,
        &local_args(&lab, &[]),
        DTN1,
        "expiry",
        "critical",
        "expired 1.0 d ago",
        2,
    );
}

#[test]
fn empty_store_and_failed_renewal() {
    let t = tmp();
    let lab = Site::in_dir(t.path(), "shared", VIP, &two_nodes(Block::DriftLocal), "");
    expect(
        &lab,
        &local_args(&lab, &[]),
        "",
        "store",
        "critical",
        "store/vip.drift.test/current does not exist",
        2,
    );
    let v = lab.publish(VIP, &lab.good_leaf(VIP));
    lab.install_version(DTN1, VIP, v);
    // current pointing at a version that is not there: unreadable store.
    let cur = lab.cfg().shared_dir.join("store").join(VIP).join("current");
    std::fs::remove_file(&cur).unwrap();
    std::os::unix::fs::symlink("0009", &cur).unwrap();
    expect(
        &lab,
        &local_args(&lab, &[]),
        "",
        "store",
        "critical",
        // The absolute path: which share, not only which entry in it.
        &format!(
            "cannot read the store: cannot open {}/store/vip.drift.test/0009",
            lab.shared.display()
        ),
        2,
    );
    std::fs::remove_file(&cur).unwrap();
    std::os::unix::fs::symlink("0001", &cur).unwrap();
    let state = vipcert::store::State {
        failures: 3,
        last_error: Some("urn:ietf:params:acme:error:rateLimited".into()),
        next_attempt: Some(vipcert::unixtime::UnixTime::new(
            vipcert::store::now() + 3600,
        )),
        ..Default::default()
    };
    lab.store.write_state(VIP, &state).unwrap();
    expect(
        &lab,
        &local_args(&lab, &[]),
        "",
        "renewal",
        "warning",
        "3 failed renewal attempt(s), last: urn:ietf:params:acme:error:rateLimited; backoff until",
        1,
    );
}

// ---------------------------------------------------------------------------------------------
// --fleet: real node servers.

fn fleet_extra(port: u16, more: &str) -> String {
    format!("[serve]\nlisten = [\"0.0.0.0:{port}\"]\n[check]\ntimeout = \"2s\"\n{more}")
}

#[test]
fn fleet_reports_node_drift_through_status() {
    let t = tmp();
    let port = 18080;
    let lab = shared_lab(
        t.path(),
        two_nodes(Block::DriftFleetStatus),
        &fleet_extra(port, ""),
    );
    // dtn2 is left on version 1 with a cert file of the wrong mode.
    let v2 = lab.publish(VIP, &lab.good_leaf(VIP));
    lab.install_version(DTN1, VIP, v2);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        lab.main_target(DTN2).cert,
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let _s1 = serve_node(&lab, DTN1, Block::DriftFleetStatus.addr(11, port));
    let _s2 = serve_node(&lab, DTN2, Block::DriftFleetStatus.addr(12, port));
    let args = vec!["check".to_string(), "--fleet".into()];
    expect(
        &lab,
        &args,
        DTN2,
        "current",
        "warning",
        "holds version 0001; store current is version 0002",
        1,
    );
    expect(
        &lab,
        &args,
        DTN2,
        "permissions",
        "warning",
        "has mode 0640, configured 0644",
        1,
    );
    expect(&lab, &args, DTN1, "status", "ok", "node server answered", 1);
}

#[test]
fn fleet_node_server_down() {
    let t = tmp();
    let port = 18080;
    let lab = shared_lab(
        t.path(),
        two_nodes(Block::DriftFleetDown),
        &fleet_extra(port, ""),
    );
    let _s1 = serve_node(&lab, DTN1, Block::DriftFleetDown.addr(11, port));
    // Nothing listens on DTN2's address (.12): an unknown finding, not a crash.
    let args = vec!["check".to_string(), "--fleet".into()];
    expect(
        &lab,
        &args,
        DTN2,
        "status",
        "unknown",
        &format!("connect {}", Block::DriftFleetDown.addr(12, port)),
        3,
    );
    let j = lab.vipcert(&["check", "--fleet", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    let dtn1_expiry = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["node"] == DTN1 && f["check"] == "expiry" && f["severity"] == "ok");
    assert!(
        dtn1_expiry,
        "the reachable node is still checked\n{}",
        j.stdout
    );
    let p = lab.vipcert(&["check", "--fleet", "--format", "prometheus"]);
    assert!(
        p.stdout
            .contains("vipcert_node_status_up{node=\"dtn1.drift.test\"} 1"),
        "{}",
        p.stdout
    );
    assert!(
        p.stdout
            .contains("vipcert_node_status_up{node=\"dtn2.drift.test\"} 0"),
        "{}",
        p.stdout
    );
}

/// A TLS server on `addr` serving `leaf` (and its chain) to anyone, until the runtime ends.
async fn tls_server(addr: SocketAddr, leaf: &Leaf) {
    let acceptor = tokio_rustls::TlsAcceptor::from(leaf.server_config());
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                break;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(s).await {
                    use tokio::io::AsyncWriteExt;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_probe_serving_a_different_certificate() {
    let b = Block::DriftFleetProbe;
    let t = tmp();
    let port = 18080;
    let probes = "[[check.probe]]\nport = 18443\nname = \"webdav\"\n[[check.probe]]\nport = 18444\nsni = \"virtual\"\nname = \"xrootd\"\n";
    let lab = Site::in_dir(
        t.path(),
        "shared",
        VIP,
        &[node(DTN1, b.host(11))],
        &fleet_extra(port, probes),
    );
    let good = lab.good_leaf(VIP);
    let v = lab.publish(VIP, &good);
    lab.install_version(DTN1, VIP, v);
    // webdav serves the store's certificate; xrootd one the store never saw.
    tls_server(b.addr(11, 18443), &good).await;
    tls_server(b.addr(11, 18444), &lab.good_leaf(VIP)).await;
    let lab = std::sync::Arc::new(lab);
    let l2 = lab.clone();
    tokio::task::spawn_blocking(move || {
        let lab = l2;
        let _s = serve_node(&lab, DTN1, b.addr(11, port));
        let args = vec!["check".to_string(), "--fleet".into()];
        expect(
            &lab,
            &args,
            DTN1,
            "probe",
            "critical",
            "probe xrootd serves a certificate that is not in the store",
            2,
        );
        expect(
            &lab,
            &args,
            DTN1,
            "probe",
            "ok",
            "probe webdav serves version 0001 (store current)",
            2,
        );
        let j = lab.vipcert(&["check", "--fleet", "--format", "json"]);
        assert!(
            j.stdout
                .contains(&format!("{} (SNI vip.drift.test)", b.addr(11, 18444))),
            "{}",
            j.stdout
        );
        assert!(
            j.stdout
                .contains(&format!("{} (SNI dtn1.drift.test)", b.addr(11, 18443))),
            "{}",
            j.stdout
        );
    })
    .await
    .unwrap();
}
