//! DNS-01 against a real BIND 9 with a TSIG key (tests/it/common/bind.rs): the `vipcert::dns`
//! toolbox on its own, then whole issues through Pebble resolving through BIND.

use std::time::Duration;

use vipcert::dns::{self, Change, DnsError, Lookup, TsigAlg, TsigCode, TsigKey};

use crate::common::bind::{Bind, Zone, KEY_NAME, KEY_NAME_512};
use crate::common::net::Block;
use crate::common::pebble::{Lab, LabOptions};
use crate::common::text;

const BOUND: Duration = Duration::from_secs(2);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The toolbox against BIND: zone by SOA, NS set and addresses, CNAME followed and a loop
/// caught, a TXT value added and deleted with TSIG and seen on the server directly, a wrong
/// secret and an unknown key refused as TSIG errors, a server that does not hold the zone named.
#[test]
fn toolbox_finds_zones_follows_cnames_and_updates_with_tsig() {
    let b = Block::DnsToolbox;
    let tmp = tempfile::tempdir().unwrap();
    let ns = [("ns1.example.test", b.ip(1)), ("ns2.example.test", b.ip(3))];
    let records = "_acme-challenge.dtn2 IN CNAME dtn2.acme.site.test.\n\
                   _acme-challenge.loop IN CNAME loop2\nloop2 IN CNAME _acme-challenge.loop\n";
    let primary = Bind::primary(
        &tmp.path().join("ns1"),
        b.ip(1),
        &ns,
        &[
            Zone {
                name: "example.test",
                records,
            },
            Zone {
                name: "site.test",
                records: "",
            },
        ],
    );
    // ns2 answers but holds another zone only: not authoritative for example.test.
    let stranger = Bind::primary(
        &tmp.path().join("ns2"),
        b.ip(3),
        &ns[1..],
        &[Zone {
            name: "other.test",
            records: "",
        }],
    );
    let look = Lookup::new(vec![primary.addr], BOUND);
    let key = TsigKey::from_text(&primary.secret, KEY_NAME, TsigAlg::HmacSha256).unwrap();
    rt().block_on(async {
        let fqdn = "_acme-challenge.dtn1.example.test.";
        assert_eq!(look.zone_of(fqdn).await.unwrap(), "example.test.");
        assert_eq!(look.follow_cname(fqdn).await.unwrap(), fqdn);
        let to = look
            .follow_cname("_acme-challenge.dtn2.example.test")
            .await
            .unwrap();
        assert_eq!(to, "dtn2.acme.site.test.");
        assert_eq!(look.zone_of(&to).await.unwrap(), "site.test.");
        let e = look
            .follow_cname("_acme-challenge.loop.example.test")
            .await
            .unwrap_err();
        assert!(matches!(e, DnsError::CnameLoop { .. }), "{e}");
        let e = look.zone_of("x.nowhere.invalid").await.unwrap_err();
        assert!(matches!(e, DnsError::ZoneNotFound { .. }), "{e}");

        let servers = look.name_servers("example.test").await.unwrap();
        let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["ns1.example.test.", "ns2.example.test."]);
        assert_eq!(servers[1].addrs, [b.addr(3, 53)]);

        let z = "example.test.";
        dns::update_txt(primary.addr, z, fqdn, "v1", Change::Add, &key, BOUND)
            .await
            .unwrap();
        dns::update_txt(primary.addr, z, fqdn, "v2", Change::Add, &key, BOUND)
            .await
            .unwrap();
        let mut got = dns::txt_at(primary.addr, z, fqdn, BOUND).await.unwrap();
        got.sort();
        assert_eq!(got, ["v1", "v2"]);
        dns::update_txt(primary.addr, z, fqdn, "v1", Change::Delete, &key, BOUND)
            .await
            .unwrap();
        assert_eq!(
            dns::txt_at(primary.addr, z, fqdn, BOUND).await.unwrap(),
            ["v2"]
        );
        // hmac-sha512, the other algorithm [challenge.dns] takes, signs and is verified too.
        let k512 =
            TsigKey::from_text(&primary.secret512, KEY_NAME_512, TsigAlg::HmacSha512).unwrap();
        dns::update_txt(primary.addr, z, fqdn, "v512", Change::Add, &k512, BOUND)
            .await
            .unwrap();
        let mut got = dns::txt_at(primary.addr, z, fqdn, BOUND).await.unwrap();
        got.sort();
        assert_eq!(got, ["v2", "v512"]);
        dns::update_txt(primary.addr, z, fqdn, "v512", Change::Delete, &k512, BOUND)
            .await
            .unwrap();
        let e = dns::txt_at(b.addr(3, 53), z, fqdn, BOUND)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            DnsError::NotAuthoritative {
                server: b.addr(3, 53),
                zone: z.into()
            }
        );

        let wrong = TsigKey::from_text(
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            KEY_NAME,
            TsigAlg::HmacSha256,
        )
        .unwrap();
        let e = dns::update_txt(primary.addr, z, fqdn, "v3", Change::Add, &wrong, BOUND)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                DnsError::TsigRefused {
                    code: TsigCode::BadSig,
                    ..
                }
            ),
            "{e}"
        );
        assert!(!e.to_string().contains(&primary.secret), "{e}");
        let other = TsigKey::from_text(&primary.secret, "stranger.", TsigAlg::HmacSha256).unwrap();
        let e = dns::update_txt(primary.addr, z, fqdn, "v3", Change::Add, &other, BOUND)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                DnsError::TsigRefused {
                    code: TsigCode::BadKey,
                    ..
                }
            ),
            "{e}"
        );
        let its_key = TsigKey::from_text(&stranger.secret, KEY_NAME, TsigAlg::HmacSha256).unwrap();
        let e = dns::update_txt(stranger.addr, z, fqdn, "v", Change::Add, &its_key, BOUND)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            DnsError::NotAuth {
                server: stranger.addr,
                zone: z.into()
            }
        );
        let e = dns::update_txt(
            b.addr(9, 53),
            z,
            fqdn,
            "v",
            Change::Add,
            &key,
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(e, DnsError::Timeout { .. } | DnsError::Io { .. }),
            "{e}"
        );
    });
    assert_eq!(primary.txt("_acme-challenge.dtn1.example.test"), ["v2"]);
}

/// A Pebble lab whose names live in zone example.org on a real BIND primary (.1, and a
/// secondary on .3 when asked), Pebble validating through it, `[challenge]` dns-01 with
/// `dns_section` as `[challenge.dns]`.
struct DnsLab {
    lab: Lab,
    primary: Bind,
    secondary: Option<Bind>,
    /// The recursive resolver Pebble and preflight use (.4), when asked.
    _resolver: Option<Bind>,
    dir: tempfile::TempDir,
}

struct DnsLabOptions<'a> {
    layout: &'a str,
    nodes: usize,
    records: &'a str,
    secondary: bool,
    /// Pebble and `[preflight] resolver` use a recursive resolver (.4), not the primary.
    resolver: bool,
    /// `[challenge.dns]` keys given the key file's path and the primary.
    dns: &'a dyn Fn(&std::path::Path, &Bind) -> String,
    /// More sections, given the lab's temp dir.
    extra: &'a dyn Fn(&std::path::Path) -> String,
}

/// One node in the shared layout, RFC 2136 at the primary, no secondary, no resolver.
impl Default for DnsLabOptions<'static> {
    fn default() -> Self {
        DnsLabOptions {
            layout: "shared",
            nodes: 1,
            records: "",
            secondary: false,
            resolver: false,
            dns: &rfc2136,
            extra: &none,
        }
    }
}

fn none(_: &std::path::Path) -> String {
    String::new()
}

fn rfc2136(key: &std::path::Path, primary: &Bind) -> String {
    format!(
        "method = \"rfc2136\"\nserver = \"{}\"\ntsig_key_name = \"{KEY_NAME}\"\ntsig_secret_file = \"{}\"\npropagation_timeout = \"10s\"\n",
        primary.addr,
        key.display()
    )
}

impl DnsLab {
    fn new(b: Block, o: DnsLabOptions) -> DnsLab {
        let dir = tempfile::tempdir().unwrap();
        let mut ns = vec![("ns1.example.org", b.ip(1))];
        if o.secondary {
            ns.push(("ns2.example.org", b.ip(3)));
        }
        let zones = [
            Zone {
                name: "example.org",
                records: o.records,
            },
            Zone {
                name: "acme.test",
                records: "",
            },
        ];
        let primary = Bind::primary(&dir.path().join("ns1"), b.ip(1), &ns, &zones);
        let secondary = o.secondary.then(|| {
            Bind::secondary(
                &dir.path().join("ns2"),
                b.ip(3),
                &primary,
                &["example.org", "acme.test"],
            )
        });
        let resolver = o.resolver.then(|| {
            Bind::resolver(
                &dir.path().join("resolver"),
                b.ip(4),
                &primary,
                &["example.org", "acme.test"],
            )
        });
        let key = dir.path().join("tsig.key");
        primary.write_key_file(&key);
        let extra = format!(
            "\n[challenge]\ntype = \"dns-01\"\n\n[challenge.dns]\n{}\n{}",
            (o.dns)(&key, &primary),
            (o.extra)(dir.path())
        );
        let lab = Lab::new(
            b,
            LabOptions {
                layout: o.layout,
                nodes: o.nodes,
                extra: &extra,
                dns: Some(resolver.as_ref().unwrap_or(&primary).addr),
                ..Default::default()
            },
        );
        if let Some(r) = &resolver {
            // vipcert looks names up at the primary; the CA through its own resolver, whose
            // negative cache vipcert's SOA lookups must not fill (as in the field).
            let (from, to) = (r.addr.to_string(), primary.addr.to_string());
            lab.edit_config(|c| {
                c.replace(
                    &format!("resolver = \"{from}\""),
                    &format!("resolver = \"{to}\""),
                )
            });
        }
        DnsLab {
            lab,
            primary,
            secondary,
            _resolver: resolver,
            dir,
        }
    }

    /// TXT records left anywhere in the lab's zones.
    fn txt_left(&self) -> Vec<String> {
        let mut v = self.primary.all_txt("example.org");
        v.extend(self.primary.all_txt("acme.test"));
        v
    }

    /// Ledger files left in the shared directory.
    fn ledger_left(&self) -> Vec<String> {
        match std::fs::read_dir(self.lab.shared.join("dns01")) {
            Err(_) => vec![],
            Ok(d) => d
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
        }
    }
}

fn issued(lab: &Lab, lineage: &str) -> vipcert::cert::CertInfo {
    let store = vipcert::store::Store::new(&lab.shared);
    let n = store.current(lineage).unwrap();
    let n = n.unwrap_or_else(|| panic!("no current version of {lineage}"));
    vipcert::cert::leaf_info(&store.read(lineage, n).unwrap().cert_pem).unwrap()
}

fn names(v: &[&str]) -> std::collections::BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Done-when: rfc2136 issue for the VIP and 3 nodes, shared layout; nothing left in DNS.
#[test]
fn rfc2136_issues_the_vip_and_three_nodes_in_the_shared_layout() {
    let l = DnsLab::new(
        Block::Dns01Shared,
        DnsLabOptions {
            nodes: 3,
            ..DnsLabOptions::default()
        },
    );
    let check = l.lab.run(0, &["config", "check"]);
    assert!(
        text(&check).contains("challenge  dns-01"),
        "{}",
        text(&check)
    );
    let out = l.lab.run(0, &["issue"]);
    assert!(out.status.success(), "{}", text(&out));
    let info = issued(&l.lab, "gridftp.example.org");
    assert_eq!(info.cn.as_deref(), Some("gridftp.example.org"));
    assert_eq!(
        info.san_set(),
        names(&[
            "gridftp.example.org",
            "dtn1.example.org",
            "dtn2.example.org",
            "dtn3.example.org"
        ])
    );
    assert_eq!(l.txt_left(), Vec::<String>::new());
    assert_eq!(l.ledger_left(), Vec::<String>::new());
    assert!(l.lab.webroot_files().is_empty());
}

/// Done-when: rfc2136 issue for the VIP and 3 nodes, per-host layout (orders in parallel).
#[test]
fn rfc2136_issues_the_vip_and_three_nodes_in_the_per_host_layout() {
    let l = DnsLab::new(
        Block::Dns01PerHost,
        DnsLabOptions {
            layout: "per-host",
            nodes: 3,
            ..DnsLabOptions::default()
        },
    );
    let out = l.lab.run(0, &["issue"]);
    assert!(out.status.success(), "{}", text(&out));
    for (h, _) in &l.lab.nodes {
        let info = issued(&l.lab, h);
        assert_eq!(info.cn.as_deref(), Some(h.as_str()));
        assert_eq!(info.san_set(), names(&[h, "gridftp.example.org"]));
    }
    assert_eq!(l.txt_left(), Vec::<String>::new());
    assert_eq!(l.ledger_left(), Vec::<String>::new());
}

/// Done-when: the exec method with `nsupdate` as the program (lego's exec protocol).
#[test]
fn exec_method_with_an_nsupdate_script_issues() {
    let script = |key: &std::path::Path, primary: &Bind| {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = key.parent().unwrap();
        let bind_key = dir.join("tsig.conf");
        std::fs::write(
            &bind_key,
            format!(
                "key \"{KEY_NAME}\" {{ algorithm hmac-sha256; secret \"{}\"; }};\n",
                primary.secret
            ),
        )
        .unwrap();
        std::fs::set_permissions(&bind_key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let hook = dir.join("dns-hook");
        let log = dir.join("hook.log");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\n# lego exec: $1 present|cleanup, $2 fqdn, $3 value\necho \"$1 $2\" >> {log}\ncase \"$1\" in\n  present) rr=\"update add $2 60 TXT \\\"$3\\\"\" ;;\n  cleanup) rr=\"update delete $2 TXT \\\"$3\\\"\" ;;\n  *) echo \"unknown step $1\" >&2; exit 2 ;;\nesac\nprintf 'server {}\\n%s\\nsend\\n' \"$rr\" | nsupdate -k {}\n",
                primary.addr.ip(),
                bind_key.display(),
                log = log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        format!(
            "method = \"exec\"\nprogram = \"{}\"\npropagation_timeout = \"10s\"\n",
            hook.display()
        )
    };
    let l = DnsLab::new(
        Block::Dns01Exec,
        DnsLabOptions {
            nodes: 2,
            dns: &script,
            ..DnsLabOptions::default()
        },
    );
    let out = l.lab.run(0, &["issue"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(issued(&l.lab, "gridftp.example.org").san_set().len(), 3);
    let log = std::fs::read_to_string(l.dir.path().join("hook.log")).unwrap();
    for step in ["present", "cleanup"] {
        assert!(
            log.contains(&format!("{step} _acme-challenge.dtn1.example.org.")),
            "{log}"
        );
    }
    assert_eq!(l.txt_left(), Vec::<String>::new());
}

/// Done-when: a CNAME-delegated `_acme-challenge` (central IT's zone points into the site's
/// zone acme.test): the record goes to the target zone, Pebble follows the CNAME.
#[test]
fn a_cname_delegated_acme_challenge_is_followed() {
    let records = "_acme-challenge.gridftp IN CNAME gridftp.acme.test.\n_acme-challenge.dtn1 IN CNAME dtn1.acme.test.\n";
    let l = DnsLab::new(
        Block::Dns01Cname,
        DnsLabOptions {
            records,
            resolver: true,
            ..DnsLabOptions::default()
        },
    );
    let pre = l.lab.run(0, &["preflight"]);
    assert!(pre.status.success(), "{}", text(&pre));
    // The probes went where the CNAMEs lead, not to the names they start from.
    let t = text(&pre);
    assert!(
        t.contains("gridftp.acme.test.") && t.contains("dtn1.acme.test."),
        "{t}"
    );
    assert!(!t.contains("_acme-challenge.gridftp.example.org."), "{t}");
    let out = l.lab.run(0, &["issue"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        issued(&l.lab, "gridftp.example.org").san_set(),
        names(&["gridftp.example.org", "dtn1.example.org"])
    );
    assert_eq!(l.txt_left(), Vec::<String>::new());
}

/// Done-when: a second authoritative server that lags (a BIND secondary stopped) makes the
/// barrier wait and, on timeout, report it by name; started again, the barrier passes.
#[test]
fn a_lagging_secondary_holds_the_barrier_and_is_named_on_timeout() {
    let short = |k: &std::path::Path, p: &Bind| rfc2136(k, p).replace("\"10s\"", "\"3s\"");
    let mut l = DnsLab::new(
        Block::Dns01Lag,
        DnsLabOptions {
            secondary: true,
            dns: &short,
            ..DnsLabOptions::default()
        },
    );
    l.secondary.as_mut().unwrap().stop();
    let out = l.lab.run(0, &["issue"]);
    assert!(!out.status.success(), "{}", text(&out));
    let t = text(&out);
    // Preflight already waits for every authoritative server: it names the lagging one.
    assert!(t.contains("ns2.example.org. 127.0.225.3:53"), "{t}");
    assert_eq!(l.lab.pebble.orders_created(), 0, "{t}");
    assert_eq!(l.txt_left(), Vec::<String>::new());

    // Started again while an issue waits: the barrier passes once it has caught up.
    l.lab.edit_config(|c| c.replace("\"3s\"", "\"30s\""));
    let log = l.dir.path().join("issue.log");
    let mut issue = crate::common::Proc::spawn(&mut l.lab.cmd(0, &["issue"]), &log);
    std::thread::sleep(Duration::from_secs(2));
    // Still waiting for ns2: the barrier did not pass without it.
    assert!(
        issue.child.try_wait().unwrap().is_none(),
        "issue finished while ns2 was down: {}",
        issue.log_text()
    );
    l.secondary.as_mut().unwrap().start();
    let done = issue.wait_exit(Duration::from_secs(40));
    assert!(done.is_some_and(|s| s.success()), "{}", issue.log_text());
    assert_eq!(l.txt_left(), Vec::<String>::new());
}

/// Done-when: a wrong TSIG secret fails preflight naming TSIG, before any order.
#[test]
fn a_wrong_tsig_secret_fails_preflight_before_any_order() {
    let l = DnsLab::new(Block::Dns01BadTsig, DnsLabOptions::default());
    let key = l.dir.path().join("tsig.key");
    std::fs::write(&key, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").unwrap();
    let pre = l.lab.run(0, &["preflight"]);
    assert!(!pre.status.success());
    assert!(
        text(&pre).contains("TSIG refused") && text(&pre).contains("BADSIG"),
        "{}",
        text(&pre)
    );
    let out = l.lab.run(0, &["issue"]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("preflight failed") && t.contains("TSIG refused"),
        "{t}"
    );
    assert!(!t.contains(&l.primary.secret), "{t}");
    assert_eq!(l.lab.pebble.orders_created(), 0, "{t}");
    // A key file others may read is refused before anything is sent.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let pre = l.lab.run(0, &["preflight"]);
    assert!(
        text(&pre).contains("readable by group or others"),
        "{}",
        text(&pre)
    );
}

/// Done-when: kill -9 mid-order leaves no TXT record after the next run. The order is held
/// where its records are placed and seen (a `[hooks] pre_validation` that waits on a file),
/// and the issuing process is killed there.
#[test]
fn a_run_killed_mid_order_leaves_no_txt_record_after_the_next_run() {
    let hook = |dir: &std::path::Path| {
        let (held, gate) = (dir.join("held"), dir.join("gate"));
        std::fs::write(&gate, "").unwrap();
        format!(
            "[hooks]\npre_validation = \"touch {}; while [ -e {} ]; do sleep 0.05; done\"\ntimeout = \"1m\"\n",
            held.display(),
            gate.display()
        )
    };
    let l = DnsLab::new(
        Block::Dns01Killed,
        DnsLabOptions {
            nodes: 2,
            extra: &hook,
            ..DnsLabOptions::default()
        },
    );
    // Guarded: killed and reaped even when an assertion below panics.
    let log = l.dir.path().join("issue.log");
    let mut issue = crate::common::Proc::spawn(&mut l.lab.cmd(0, &["issue"]), &log);
    let held = l.dir.path().join("held");
    crate::common::wait_for(|| held.exists(), "the order to reach pre_validation");
    issue.kill(); // SIGKILL, reaped
    std::fs::remove_file(l.dir.path().join("gate")).unwrap(); // the orphaned hook ends
    assert_eq!(
        l.txt_left().len(),
        3,
        "the killed run's records: {:?}",
        l.txt_left()
    );
    assert_eq!(l.ledger_left().len(), 3, "noted in the ledger");
    std::fs::remove_file(&held).unwrap();
    l.lab
        .edit_config(|c| c.replace("pre_validation", "post_validation"));
    let out = l.lab.run(1, &["issue"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(l.txt_left(), Vec::<String>::new());
    assert_eq!(l.ledger_left(), Vec::<String>::new());
}

/// `type = "dns-persist-01"` with `[challenge.dns]` also set: an authorization that does not
/// offer dns-persist-01 (Debian's Pebble offers none, as Let's Encrypt's production until it
/// enables it) is answered by dns-01 through the same server; the persistent records, placed
/// once by `account persist-record --apply` and checked by preflight, stay.
#[test]
fn dns_persist_01_falls_back_to_dns_01_where_the_ca_does_not_offer_it() {
    let l = DnsLab::new(Block::Dns01PersistFallback, DnsLabOptions::default());
    l.lab
        .edit_config(|c| c.replace("type = \"dns-01\"", "type = \"dns-persist-01\""));
    let put = l.lab.run(
        0,
        &[
            "account",
            "persist-record",
            "--issuer",
            "pebble.test",
            "--apply",
        ],
    );
    assert!(put.status.success(), "{}", text(&put));
    let persist = l.txt_left();
    assert_eq!(persist.len(), 2, "{persist:?}");

    // Without [challenge.dns] there is nothing to fall back on: the order says so, and the
    // CA validates nothing. (First, while no authorization is valid for Pebble to reuse.)
    let dns_section = |comment: bool| {
        move |c: &str| {
            let (from, to) = if comment { ("", "#~ ") } else { ("#~ ", "") };
            c.lines()
                .scan(false, |inside, line| {
                    let bare = line.trim_start_matches("#~ ");
                    if bare.starts_with('[') {
                        *inside = bare == "[challenge.dns]";
                    }
                    Some(if *inside {
                        format!("{to}{}\n", line.strip_prefix(from).unwrap_or(line))
                    } else {
                        format!("{line}\n")
                    })
                })
                .collect::<String>()
        }
    };
    l.lab.edit_config(dns_section(true));
    let out = l.lab.run(0, &["issue"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("offers no dns-persist-01 challenge for"),
        "{}",
        text(&out)
    );

    l.lab.edit_config(dns_section(false));
    let out = l.lab.run(0, &["issue"]);
    assert!(out.status.success(), "{}", text(&out));
    let info = issued(&l.lab, "gridftp.example.org");
    assert_eq!(
        info.san_set(),
        names(&["gridftp.example.org", "dtn1.example.org"])
    );
    // The dns-01 records are gone; the persistent ones are as they were.
    assert_eq!(l.txt_left(), persist);
    assert_eq!(l.ledger_left(), Vec::<String>::new());
}

/// `[[node]] challenge` overrides `[challenge] type` for the node's own name: one shared
/// certificate whose VIP and dtn2 are validated by dns-01 (a TXT record each through BIND)
/// and dtn1 by http-01 (its file in the shared webroot, fetched by Pebble from the node's
/// server); both solvers clean up.
#[test]
fn one_order_mixes_dns_01_and_a_node_s_own_http_01() {
    let b = Block::Dns01Mixed;
    // Pebble resolves dtn1 through BIND to fetch its challenge file.
    let records = format!("dtn1 IN A {}\n", b.ip(11));
    let l = DnsLab::new(
        b,
        DnsLabOptions {
            nodes: 2,
            records: &records,
            ..DnsLabOptions::default()
        },
    );
    l.lab.edit_config(|c| {
        c.replacen(
            "hostname = \"dtn1.example.org\"\n",
            "hostname = \"dtn1.example.org\"\nchallenge = \"http-01\"\n",
            1,
        )
    });
    let check = text(&l.lab.run(0, &["config", "check"]));
    assert!(
        check.contains("dtn1.example.org     http-01  ([[node]] challenge)"),
        "{check}"
    );
    assert!(check.contains("dtn2.example.org     dns-01"), "{check}");
    let out = l.lab.run(0, &["issue"]);
    assert!(out.status.success(), "{}", text(&out));
    let info = issued(&l.lab, "gridftp.example.org");
    assert_eq!(
        info.san_set(),
        names(&[
            "gridftp.example.org",
            "dtn1.example.org",
            "dtn2.example.org"
        ])
    );
    assert_eq!(l.txt_left(), Vec::<String>::new());
    assert_eq!(l.ledger_left(), Vec::<String>::new());
    assert!(
        l.lab.webroot_files().is_empty(),
        "{:?}",
        l.lab.webroot_files()
    );
}
