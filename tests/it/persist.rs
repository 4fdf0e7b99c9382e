//! dns-persist-01 (draft-ietf-acme-dns-persist): `vipcert account persist-record` against a
//! small in-test ACME server that speaks real HTTPS (rcgen CA, rustls) and lists
//! `meta.caaIdentities` in its directory. Pebble 2.4, the Debian one, has neither
//! caaIdentities nor dns-persist-01 (Pebble 2.10 and Let's Encrypt's staging have both),
//! hence the stub. Its orders offer one dns-persist-01 challenge per name, with
//! `issuer-domain-names` and `accounturi` as Boulder sends them, and turn an authorization
//! valid only when the `_validation-persist` record holds (`Stub::check`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};

use crate::common::net::Block;
use crate::common::pki::{Ca, DAY};
use crate::common::site::{fast_tempdir, Site, NODES, VIP};
use crate::common::text;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// How the stub judges a name's `_validation-persist` record when its challenge is answered:
/// Ok, or the problem detail of an `unauthorized` answer.
type Check = Box<dyn Fn(&str, &str) -> Result<(), String> + Send + Sync>;

/// What the stub answers and saw.
struct Stub {
    base: String,
    /// meta.caaIdentities of its directory, as the CA writes them.
    caa: Vec<&'static str>,
    nonces: AtomicUsize,
    /// newAccount requests.
    accounts: AtomicUsize,
    /// newOrder requests.
    orders: AtomicUsize,
    ca: Ca,
    flow: Mutex<Flow>,
    /// Judges name's record for the account URL when its challenge is answered.
    check: Check,
}

/// The one order the stub keeps.
#[derive(Default)]
struct Flow {
    names: Vec<String>,
    /// Per name: None pending, Some(Ok) valid, Some(Err(detail)) invalid.
    state: Vec<Option<Result<(), String>>>,
    /// The payload of each challenge POST (RFC 8555 §7.5.1: `{}`).
    answered: Vec<String>,
    chain: Option<String>,
}

fn rfc3339(t: i64) -> String {
    vipcert::unixtime::rfc3339(t)
}

impl Stub {
    fn respond(
        &self,
        status: u16,
        ctype: &str,
        extra: &[(&str, String)],
        body: String,
    ) -> Response<Full<Bytes>> {
        let n = self.nonces.fetch_add(1, Ordering::SeqCst);
        let mut r = Response::builder()
            .status(status)
            .header("Replay-Nonce", format!("stub-nonce-{n}"))
            .header("Cache-Control", "no-store");
        if !ctype.is_empty() {
            r = r.header("Content-Type", ctype);
        }
        for (k, v) in extra {
            r = r.header(*k, v);
        }
        r.body(Full::new(Bytes::from(body))).unwrap()
    }

    fn json(
        &self,
        status: u16,
        extra: &[(&str, String)],
        v: serde_json::Value,
    ) -> Response<Full<Bytes>> {
        self.respond(status, "application/json", extra, v.to_string())
    }

    fn account(&self) -> String {
        format!("{}/acct/1", self.base)
    }

    fn directory(&self) -> serde_json::Value {
        let b = &self.base;
        serde_json::json!({
            "newNonce": format!("{b}/nonce"),
            "newAccount": format!("{b}/new-acct"),
            "newOrder": format!("{b}/new-order"),
            "revokeCert": format!("{b}/revoke"),
            "keyChange": format!("{b}/key"),
            "meta": {"caaIdentities": self.caa},
        })
    }

    fn order_json(&self, f: &Flow) -> serde_json::Value {
        let b = &self.base;
        let status = match () {
            _ if f.chain.is_some() => "valid",
            _ if f.state.iter().any(|s| matches!(s, Some(Err(_)))) => "invalid",
            _ if f.state.iter().all(|s| matches!(s, Some(Ok(())))) => "ready",
            _ => "pending",
        };
        let mut o = serde_json::json!({
            "status": status,
            "expires": rfc3339(vipcert::store::now() + DAY),
            "identifiers": f.names.iter().map(|n| serde_json::json!({"type": "dns", "value": n})).collect::<Vec<_>>(),
            "authorizations": (0..f.names.len()).map(|i| format!("{b}/authz/{i}")).collect::<Vec<_>>(),
            "finalize": format!("{b}/finalize"),
        });
        if f.chain.is_some() {
            o["certificate"] = format!("{b}/cert").into();
        }
        o
    }

    /// The challenge of name `i`: dns-persist-01 as Boulder and Pebble 2.10 send it, no token.
    fn challenge_json(&self, f: &Flow, i: usize) -> serde_json::Value {
        let (status, error) = match &f.state[i] {
            None => ("pending", None),
            Some(Ok(())) => ("valid", None),
            Some(Err(d)) => ("invalid", Some(d.clone())),
        };
        let mut c = serde_json::json!({
            "type": "dns-persist-01",
            "url": format!("{}/chall/{i}", self.base),
            "status": status,
            "issuer-domain-names": self.caa.iter().map(|c| c.to_ascii_lowercase()).collect::<Vec<_>>(),
            "accounturi": self.account(),
        });
        if let Some(d) = error {
            c["error"] = serde_json::json!({"type": "urn:ietf:params:acme:error:unauthorized", "detail": d, "status": 403});
        }
        c
    }

    fn authz_json(&self, f: &Flow, i: usize) -> serde_json::Value {
        let status = match &f.state[i] {
            None => "pending",
            Some(Ok(())) => "valid",
            Some(Err(_)) => "invalid",
        };
        serde_json::json!({
            "status": status,
            "expires": rfc3339(vipcert::store::now() + DAY),
            "identifier": {"type": "dns", "value": f.names[i]},
            "challenges": [self.challenge_json(f, i)],
        })
    }

    /// The POST routes of an order (body: the JWS payload); None: not one of them.
    fn order_route(&self, path: &str, payload: &[u8]) -> Option<Response<Full<Bytes>>> {
        let mut f = self.flow.lock().unwrap();
        let n = f.names.len();
        let index = |prefix: &str| {
            path.strip_prefix(prefix)?
                .parse::<usize>()
                .ok()
                .filter(|i| *i < n)
        };
        if path == "/order/1" {
            return Some(self.json(200, &[], self.order_json(&f)));
        }
        if let Some(i) = index("/authz/") {
            return Some(self.json(200, &[], self.authz_json(&f, i)));
        }
        if let Some(i) = index("/chall/") {
            f.answered
                .push(String::from_utf8_lossy(payload).into_owned());
            if f.state[i].is_none() {
                f.state[i] = Some((self.check)(&f.names[i], &self.account()));
            }
            return Some(self.json(200, &[], self.challenge_json(&f, i)));
        }
        if path == "/finalize" {
            let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
            let csr = B64.decode(v["csr"].as_str()?).ok()?;
            let (leaf, chain) = self.ca.sign_csr(&csr, true);
            f.chain = Some(format!("{leaf}{chain}"));
            return Some(self.json(200, &[], self.order_json(&f)));
        }
        if path == "/cert" {
            let pem = "application/pem-certificate-chain";
            return Some(self.respond(200, pem, &[], f.chain.clone()?));
        }
        None
    }

    fn new_order(&self, payload: &[u8]) -> Response<Full<Bytes>> {
        self.orders.fetch_add(1, Ordering::SeqCst);
        let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
        let names: Vec<String> = v["identifiers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["value"].as_str().unwrap().to_string())
            .collect();
        let mut f = self.flow.lock().unwrap();
        *f = Flow {
            state: vec![None; names.len()],
            names,
            ..Flow::default()
        };
        let loc = ("Location", format!("{}/order/1", self.base));
        self.json(201, &[loc], self.order_json(&f))
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<hyper::body::Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let path = req.uri().path().to_string();
        let method = req.method().as_str().to_string();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let payload = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|jws| B64.decode(jws["payload"].as_str()?).ok())
            .unwrap_or_default();
        Ok(match (method.as_str(), path.as_str()) {
            ("GET", "/dir") => self.json(200, &[], self.directory()),
            ("HEAD" | "GET", "/nonce") => self.respond(200, "", &[], String::new()),
            ("POST", "/new-acct") => {
                self.accounts.fetch_add(1, Ordering::SeqCst);
                let v = serde_json::json!({"status": "valid"});
                self.json(201, &[("Location", self.account())], v)
            }
            ("POST", "/new-order") => self.new_order(&payload),
            ("POST", p) => self
                .order_route(p, &payload)
                .unwrap_or_else(|| self.respond(404, "", &[], String::new())),
            _ => self.respond(404, "", &[], String::new()),
        })
    }
}

/// The stub on `ip` over HTTPS, on its own runtime thread; stops when dropped.
struct Server {
    stub: Arc<Stub>,
    /// The stub's CA certificate, for acme.ca_roots.
    ca_file: std::path::PathBuf,
    _serving: crate::common::https_stub::Serving,
}

fn start_stub(ip: &str, caa: Vec<&'static str>, check: Check) -> Server {
    let (ca, listening) = crate::common::https_stub::listen(ip, "dns-persist-01 stub CA");
    let addr: SocketAddr = listening.addr;
    let stub = Arc::new(Stub {
        base: format!("https://{addr}"),
        caa,
        nonces: AtomicUsize::new(0),
        accounts: AtomicUsize::new(0),
        orders: AtomicUsize::new(0),
        ca,
        flow: Mutex::new(Flow::default()),
        check,
    });
    let s2 = stub.clone();
    let serving = listening.serve(move |r| s2.clone().handle(r));
    Server {
        stub,
        ca_file: serving.ca_file.clone(),
        _serving: serving,
    }
}

/// A shared-layout site (VIP + 3 nodes on `block`) whose CA is the stub on .1; `extra` is
/// appended at the top level.
fn stub_site(block: Block, caa: Vec<&'static str>, check: Check, extra: &str) -> (Site, Server) {
    let server = start_stub(block.host(1), caa, check);
    let rest = format!(
        "[acme]\ndirectory = \"{}/dir\"\nca_roots = \"{}\"\nkey_type = \"ecdsa-p256\"\n{extra}\n",
        server.stub.base,
        server.ca_file.display()
    );
    (Site::new(&block.net(), "shared", "", &rest), server)
}

/// The printed records are the draft's syntax, character-string by character-string, for
/// every planned name: the issuer domain name from the directory's caaIdentities (normalized:
/// lowercase, no trailing dot), `accounturi=` the account the command created (it names the
/// account, so the account must exist first), then policy=wildcard and persistUntil.
#[test]
fn persist_record_prints_the_drafts_syntax_for_this_account() {
    let never: Check = Box::new(|_, _| Err("no order expected".into()));
    let (site, server) = stub_site(
        Block::PersistRecord,
        vec!["Authority.Example.", "ca.example.net"],
        never,
        "",
    );
    let acct = server.stub.account();
    let args = ["account", "persist-record", "--policy-wildcard"];
    let out = site.run(0, &[&args[..], &["--persist-until", "2099-01-01"]].concat());
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert_eq!(server.stub.accounts.load(Ordering::SeqCst), 1, "{msg}");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let records: Vec<&str> = stdout.lines().filter(|l| !l.starts_with(';')).collect();
    let want: Vec<String> = std::iter::once(VIP)
        .chain(NODES)
        .map(|n| {
            format!(
                "_validation-persist.{n}. 3600 IN TXT (\"authority.example;\" \" accounturi={acct};\" \" policy=wildcard;\" \" persistUntil=4070908800\")"
            )
        })
        .collect();
    assert_eq!(records, want, "{msg}");
    assert!(
        msg.contains(
            "; issuer:  authority.example (its directory lists: authority.example, ca.example.net)"
        ),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("; account: {acct} (created now)")),
        "{msg}"
    );
    assert!(
        msg.contains("; valid for new validations until 2099-01-01T00:00:00Z"),
        "{msg}"
    );

    // Again, for one name: the same account (no second one), no options, the draft's basic form.
    let out = site.run(0, &["account", "persist-record", "--name", NODES[1]]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert_eq!(server.stub.accounts.load(Ordering::SeqCst), 1, "{msg}");
    assert!(
        msg.ends_with(&format!(
        "\n_validation-persist.{}. 3600 IN TXT (\"authority.example;\" \" accounturi={acct}\")\n",
        NODES[1]
    )),
        "{msg}"
    );
    assert!(msg.contains(&format!("; account: {acct}\n")), "{msg}");
}

/// A directory without caaIdentities (Pebble 2.4's) gets an error that says what to pass; a
/// name vipcert does not order, or a past persistUntil, is refused; nothing is ordered.
#[test]
fn persist_record_without_an_issuer_name_says_to_pass_one() {
    let never: Check = Box::new(|_, _| Err("no order expected".into()));
    let (site, server) = stub_site(Block::PersistNoIssuer, vec![], never, "");
    let out = site.run(0, &["account", "persist-record"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains("lists no issuer domain name (its directory has no meta.caaIdentities)"),
        "{msg}"
    );
    assert!(msg.contains("pass it as --issuer"), "{msg}");
    let out = site.run(
        0,
        &["account", "persist-record", "--issuer", "Pebble.Example"],
    );
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(msg.contains("(\"pebble.example;\" \" accounturi="), "{msg}");
    assert!(
        msg.contains("; issuer:  pebble.example (its directory lists none)"),
        "{msg}"
    );
    let out = site.run(
        0,
        &["account", "persist-record", "--name", "other.example.org"],
    );
    assert!(
        text(&out).contains("--name \"other.example.org\" is not a name vipcert orders"),
        "{}",
        text(&out)
    );
    let out = site.run(
        0,
        &["account", "persist-record", "--persist-until", "2001-01-01"],
    );
    assert!(
        text(&out)
            .contains("--persist-until \"2001-01-01\" (2001-01-01T00:00:00Z) is not in the future"),
        "{}",
        text(&out)
    );
    assert_eq!(server.stub.orders.load(Ordering::SeqCst), 0);
}

/// The TXT values `server` holds at `fqdn`, each record's quoted strings joined (by `dig`, no
/// recursion): how the stub, standing in for the CA, reads DNS (not through vipcert's code).
fn dig_txt(server: std::net::IpAddr, fqdn: &str) -> Vec<String> {
    let out = std::process::Command::new("dig")
        .args(["+short", "+norecurse", "+time=2", "+tries=1"])
        .arg(format!("@{server}"))
        .args(["TXT", fqdn])
        .output()
        .expect("dig (bind9-dnsutils)");
    let joined = |line: &str| -> String { line.split('"').skip(1).step_by(2).collect() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('"'))
        .map(joined)
        .collect()
}

/// The stub's validation, as Boulder's: a record whose issuer-domain-name is one of ours (the
/// part before the first ';', WSP trimmed, case folded) with `accounturi=` the account.
fn stub_check(dns: std::net::IpAddr, issuer: &'static str) -> Check {
    Box::new(move |name, account| {
        let values = dig_txt(dns, &format!("_validation-persist.{name}"));
        let good = values.iter().any(|v| {
            let mut parts = v.split(';').map(|p| p.trim_matches([' ', '\t']));
            parts.next().is_some_and(|i| i.eq_ignore_ascii_case(issuer))
                && parts.any(|p| p == format!("accounturi={account}"))
        });
        match good {
            true => Ok(()),
            false => Err(format!(
                "No valid TXT record found for DNS-PERSIST-01 challenge (found {values:?})"
            )),
        }
    })
}

/// The SOA serial `server` has for `zone`: it moves with every change to the zone.
fn serial(server: std::net::IpAddr, zone: &str) -> String {
    let out = std::process::Command::new("dig")
        .args(["+short", "+norecurse", "+time=2", "+tries=1"])
        .arg(format!("@{server}"))
        .args(["SOA", zone])
        .output()
        .unwrap();
    let soa = String::from_utf8_lossy(&out.stdout).into_owned();
    soa.split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string()
}

/// BIND (a primary on .2 that takes TSIG updates, a secondary on .3, both serving
/// example.org) and a dns-persist-01 site whose CA is the stub on .1 (judging records on the
/// primary), `[challenge.dns]` rfc2136 to the primary for `--apply`.
struct PersistLab {
    site: Site,
    server: Server,
    primary: crate::common::bind::Bind,
    _secondary: crate::common::bind::Bind,
    _tmp: tempfile::TempDir,
}

fn persist_lab(b: Block) -> PersistLab {
    use crate::common::bind::{Bind, Zone, KEY_NAME};
    let tmp = fast_tempdir();
    let ns = [("ns1.example.org", b.ip(2)), ("ns2.example.org", b.ip(3))];
    let zone = [Zone {
        name: "example.org",
        records: "",
    }];
    let primary = Bind::primary(&tmp.path().join("ns1"), b.ip(2), &ns, &zone);
    let ns2 = tmp.path().join("ns2");
    let secondary = Bind::secondary(&ns2, b.ip(3), &primary, &["example.org"]);
    let key_file = tmp.path().join("tsig.key");
    primary.write_key_file(&key_file);
    let dns = format!(
        "[challenge]\ntype = \"dns-persist-01\"\n[challenge.dns]\nmethod = \"rfc2136\"\nserver = \"{0}\"\ntsig_key_name = \"{KEY_NAME}\"\ntsig_secret_file = \"{1}\"\n[preflight]\nresolver = \"{0}\"\ntimeout = \"2s\"\n",
        primary.addr,
        key_file.display(),
    );
    let check = stub_check(b.ip(2), "authority.example");
    let (site, server) = stub_site(b, vec!["Authority.Example"], check, &dns);
    PersistLab {
        site,
        server,
        primary,
        _secondary: secondary,
        _tmp: tmp,
    }
}

/// `issue` fails in preflight, before any order, with these rows among its table.
fn refused_before_any_order(lab: &PersistLab, rows: &[(&str, &str, &str)]) -> String {
    let out = lab.site.run(0, &["issue"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    for (name, server, what) in rows {
        let owner = format!("_validation-persist.{name}.");
        let row = |l: &&str| {
            l.trim_start().starts_with(&owner) && l.contains(server) && l.ends_with(what)
        };
        assert!(
            msg.lines().any(|l| row(&l)),
            "{owner} {server} {what}\n{msg}"
        );
    }
    assert_eq!(lab.server.stub.orders.load(Ordering::SeqCst), 0, "{msg}");
    msg
}

/// `persist-record` with `args`: succeeds, and says `what` for each of `names`.
fn persist_record(lab: &PersistLab, args: &[&str], names: &[&str], what: &str) {
    let mut all = vec!["account", "persist-record"];
    all.extend(args);
    let out = lab.site.run(0, &all);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    for n in names {
        let line = format!("; _validation-persist.{n}.: {what}\n");
        assert!(msg.contains(&line), "{line}{msg}");
    }
}

/// `issue` orders once, answers each of the 4 challenges with `{}` (RFC 8555 §7.5.1; the
/// stub then finds the record in BIND) and publishes, and the zone's serial stays `before`.
fn issued_without_touching_dns(lab: &PersistLab, before: &str) {
    let out = lab.site.run(0, &["issue"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert_eq!(lab.server.stub.orders.load(Ordering::SeqCst), 1, "{msg}");
    let flow = lab.server.stub.flow.lock().unwrap();
    assert_eq!(flow.state, vec![Some(Ok(())); 4], "{msg}");
    assert_eq!(flow.answered, vec!["{}"; 4], "{msg}");
    drop(flow);
    assert!(lab.site.store.current(VIP).unwrap().is_some(), "{msg}");
    let now = serial(lab.primary.addr.ip(), "example.org");
    assert_eq!(now, before, "the issue changed the zone");
}

/// The whole dns-persist-01 path against BIND (a primary that takes TSIG updates and a
/// secondary) and the stub CA: preflight refuses before any order while the records are
/// missing or another CA's, with a row per name and authoritative server; `persist-record
/// --apply` places them; then `issue` orders, answers each dns-persist-01 challenge with an
/// empty POST, the stub finds the records in BIND and the certificate is published, and the
/// zone is not changed by the issue (its SOA serial stays).
#[test]
fn dns_persist_records_are_checked_on_every_server_and_answer_the_order() {
    let b = Block::PersistOrder;
    let lab = persist_lab(b);
    let names: Vec<&str> = std::iter::once(VIP).chain(NODES).collect();

    // No account yet: nothing can name it; preflight says how to make one, nothing is ordered.
    let msg = refused_before_any_order(&lab, &[]);
    assert!(msg.contains("no ACME account at"), "{msg}");
    assert!(
        msg.contains("`vipcert account persist-record` creates the account"),
        "{msg}"
    );

    // The account, and another CA's record for dtn3 placed by --apply with --issuer.
    let other = ["--apply", "--name", NODES[2], "--issuer", "other.example"];
    persist_record(&lab, &other, &[NODES[2]], "added");
    let (ns1, ns2) = (
        "ns1.example.org. (127.0.237.2)",
        "ns2.example.org. (127.0.237.3)",
    );
    let mut rows: Vec<(&str, &str, &str)> = Vec::new();
    for n in &names[..3] {
        rows.extend([(*n, ns1, "no TXT record"), (*n, ns2, "no TXT record")]);
    }
    rows.push((
        NODES[2],
        ns1,
        "no record for this CA (records for: other.example)",
    ));
    let msg = refused_before_any_order(&lab, &rows);
    assert!(
        msg.contains("dns-persist-01: 8 of 8 record lookups are not right:"),
        "{msg}"
    );

    // Place them all; wait for the secondary's copy (NOTIFY, then a transfer).
    persist_record(&lab, &["--apply"], &names, "added");
    let t = std::time::Instant::now();
    while dig_txt(b.ip(3), &format!("_validation-persist.{}", NODES[2])).len() < 2 {
        assert!(
            t.elapsed().as_secs() < 10,
            "the secondary never got the records"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let before = serial(lab.primary.addr.ip(), "example.org");

    issued_without_touching_dns(&lab, &before);
    // The other CA's record stays; running --apply again changes nothing.
    assert_eq!(
        dig_txt(b.ip(2), &format!("_validation-persist.{}", NODES[2])).len(),
        2
    );
    persist_record(&lab, &["--apply"], &names, "already in the zone");
    assert_eq!(serial(b.ip(2), "example.org"), before);
}
