//! `vipcert renew` against a small in-test ACME server that speaks real HTTPS (rcgen CA,
//! rustls): a directory with renewalInfo (RFC 9773), newNonce, newAccount, a newOrder that
//! answers HTTP 429 `urn:ietf:params:acme:error:rateLimited` with Retry-After, and a
//! renewalInfo that returns a chosen suggestedWindow. Pebble 2.4 has neither ARI nor rate
//! limits, hence the stub. For `vipcert issue` with `[acme] profile` (Pebble 2.4 has no
//! profiles either) the stub also runs one whole order: authorizations whose http-01 challenge
//! turns valid when answered (the stub does not fetch the file; validation is tested against
//! Pebble), a finalize that signs the CSR with its rcgen CA (no subject CN for `tlsserver`),
//! and the certificate chain. Real `vipcert serve` processes answer preflight and the readiness
//! barrier, each test's on its own loopback block.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};

use crate::common;
use crate::common::net::Block;
use crate::common::pebble::{Lab, LabOptions};
use crate::common::pki::{Ca, Spec, DAY};
use crate::common::site::{Site, VIP};
use crate::common::{text, Proc};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What the stub saw and what it answers.
struct Stub {
    base: String,
    window: (i64, i64),
    new_orders: AtomicUsize,
    /// `replaces` of every newOrder payload.
    replaces: Mutex<Vec<Option<String>>>,
    /// Certificate identifiers asked for at renewalInfo.
    ari: Mutex<Vec<String>>,
    nonces: AtomicUsize,
    /// The directory's meta.profiles (name, description).
    profiles: Vec<(&'static str, &'static str)>,
    /// `profile` of every newOrder payload.
    profile: Mutex<Vec<Option<String>>>,
    /// How newOrder answers.
    refuse: Refuse,
    /// The stub's CA: signs what finalize is sent, under the root in `ca_file`.
    ca: Ca,
    /// The one order of `Refuse::Issue`.
    order: Mutex<Flow>,
    /// The Retry-After values it sends (a test may change them before a run).
    retry: Mutex<Retry>,
    /// Every HTTP request it answered, whatever the route.
    requests: AtomicUsize,
    /// Whether its directory offers renewalInfo (a test may clear it before a run).
    offers_ari: AtomicBool,
}

/// The Retry-After header values the stub sends, as the CA wrote them.
struct Retry {
    /// With the rateLimited answer to newOrder.
    order: String,
    /// With every renewalInfo answer.
    ari: String,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            order: "3600".into(),
            ari: "21600".into(),
        }
    }
}

/// The state of the one order the stub keeps (`Refuse::Issue`).
#[derive(Default)]
struct Flow {
    names: Vec<String>,
    profile: Option<String>,
    /// Per name (authorization index): its challenge was answered.
    ready: Vec<bool>,
    /// The PEM chain, once finalized.
    chain: Option<String>,
}

/// The stub's answer to every newOrder: the failures that send a lineage on to the next CA.
#[derive(Clone, Copy)]
enum Refuse {
    /// HTTP 429 `rateLimited` with Retry-After (`Retry::order`, 3600 unless a test changes it).
    RateLimited,
    /// HTTP 503 `serverInternal` (the CA is overloaded or in maintenance).
    Unavailable,
    /// No refusal: the order goes through (one order per stub). The stub does NOT validate
    /// HTTP-01: an answered challenge is valid at once. It stands in for what Pebble 2.4
    /// cannot do (profiles); validation is tested against Pebble.
    Issue,
}

fn rfc3339(t: i64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(t as u64))
        .to_string()
}

impl Stub {
    fn respond(
        &self,
        status: u16,
        headers: &[(&str, String)],
        body: String,
    ) -> Response<Full<Bytes>> {
        let n = self.nonces.fetch_add(1, Ordering::SeqCst);
        let mut r = Response::builder()
            .status(status)
            .header("Replay-Nonce", format!("stub-nonce-{n}"))
            .header("Cache-Control", "no-store");
        for (k, v) in headers {
            r = r.header(*k, v);
        }
        r.body(Full::new(Bytes::from(body))).unwrap()
    }

    /// The order object (RFC 8555 7.1.3) of `f`.
    fn order_json(&self, f: &Flow) -> String {
        let b = &self.base;
        let status = if f.chain.is_some() {
            "valid"
        } else if f.ready.iter().all(|r| *r) {
            "ready"
        } else {
            "pending"
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
        o.to_string()
    }

    /// The authorization object of name `i` of the order, with its one http-01 challenge.
    fn authz_json(&self, f: &Flow, i: usize) -> String {
        let status = if f.ready[i] { "valid" } else { "pending" };
        serde_json::json!({
            "status": status,
            "expires": rfc3339(vipcert::store::now() + DAY),
            "identifier": {"type": "dns", "value": f.names[i]},
            "challenges": [self.challenge_json(f, i)],
        })
        .to_string()
    }

    fn challenge_json(&self, f: &Flow, i: usize) -> serde_json::Value {
        let status = if f.ready[i] { "valid" } else { "pending" };
        serde_json::json!({
            "type": "http-01",
            "url": format!("{}/chall/{i}", self.base),
            "token": format!("stubtoken{i:0>34}"),
            "status": status,
        })
    }

    /// The order routes of `Refuse::Issue` (POST, body = JWS); None: not one of them.
    fn handle_order(
        &self,
        path: &str,
        payload: &serde_json::Value,
    ) -> Option<Response<Full<Bytes>>> {
        let json = ("Content-Type", "application/json".to_string());
        let mut f = self.order.lock().unwrap();
        let index = |prefix: &str| -> Option<usize> {
            path.strip_prefix(prefix)?
                .parse()
                .ok()
                .filter(|i| *i < f.names.len())
        };
        if path == "/order/1" {
            return Some(self.respond(200, &[json], self.order_json(&f)));
        }
        if let Some(i) = index("/authz/") {
            return Some(self.respond(200, &[json], self.authz_json(&f, i)));
        }
        if let Some(i) = index("/chall/") {
            f.ready[i] = true;
            let body = self.challenge_json(&f, i).to_string();
            return Some(self.respond(200, &[json], body));
        }
        if path == "/finalize" {
            let csr = B64.decode(payload["csr"].as_str().unwrap()).unwrap();
            // What a `tlsserver`-like profile does: the names in SANs only, no subject CN
            // (`serveronly`: such a profile under a name vipcert does not know).
            let keep_cn = !matches!(f.profile.as_deref(), Some("tlsserver" | "serveronly"));
            let (leaf, chain) = self.ca.sign_csr(&csr, keep_cn);
            f.chain = Some(format!("{leaf}{chain}"));
            return Some(self.respond(200, &[json], self.order_json(&f)));
        }
        if path == "/cert" {
            let pem = (
                "Content-Type",
                "application/pem-certificate-chain".to_string(),
            );
            return Some(self.respond(200, &[pem], f.chain.clone()?));
        }
        None
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<hyper::body::Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let path = req.uri().path().to_string();
        let method = req.method().as_str().to_string();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let b = &self.base;
        let json = ("Content-Type", "application/json".to_string());
        Ok(match (method.as_str(), path.as_str()) {
            ("GET", "/dir") => {
                let mut dir = serde_json::json!({
                    "newNonce": format!("{b}/nonce"),
                    "newAccount": format!("{b}/acct"),
                    "newOrder": format!("{b}/order"),
                    "revokeCert": format!("{b}/revoke"),
                    "keyChange": format!("{b}/key"),
                    "meta": {
                        "profiles": self.profiles.iter().map(|(n, d)| (n.to_string(), serde_json::Value::from(*d))).collect::<serde_json::Map<_, _>>(),
                    },
                });
                if self.offers_ari.load(Ordering::SeqCst) {
                    dir["renewalInfo"] = format!("{b}/ari").into();
                }
                self.respond(200, &[json], dir.to_string())
            }
            ("HEAD" | "GET", "/nonce") => self.respond(200, &[], String::new()),
            ("POST", "/acct") => self.respond(
                201,
                &[json, ("Location", format!("{b}/acct/1"))],
                r#"{"status":"valid"}"#.into(),
            ),
            ("POST", "/order") => {
                self.new_orders.fetch_add(1, Ordering::SeqCst);
                let jws: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let payload = B64.decode(jws["payload"].as_str().unwrap()).unwrap();
                let payload: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                self.replaces
                    .lock()
                    .unwrap()
                    .push(payload["replaces"].as_str().map(str::to_string));
                self.profile
                    .lock()
                    .unwrap()
                    .push(payload["profile"].as_str().map(str::to_string));
                if let Refuse::Issue = self.refuse {
                    let names: Vec<String> = payload["identifiers"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|i| i["value"].as_str().unwrap().to_string())
                        .collect();
                    let mut f = self.order.lock().unwrap();
                    *f = Flow {
                        ready: vec![false; names.len()],
                        names,
                        profile: payload["profile"].as_str().map(str::to_string),
                        chain: None,
                    };
                    return Ok(self.respond(
                        201,
                        &[json, ("Location", format!("{b}/order/1"))],
                        self.order_json(&f),
                    ));
                }
                let problem = ("Content-Type", "application/problem+json".to_string());
                match self.refuse {
                    Refuse::RateLimited => self.respond(
                        429,
                        &[problem, ("Retry-After", self.retry.lock().unwrap().order.clone())],
                        r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many new orders recently","status":429}"#.into(),
                    ),
                    Refuse::Unavailable => self.respond(
                        503,
                        &[problem],
                        r#"{"type":"urn:ietf:params:acme:error:serverInternal","detail":"down for maintenance","status":503}"#.into(),
                    ),
                    Refuse::Issue => unreachable!("answered above"),
                }
            }
            ("GET", p) if p.starts_with("/ari/") => {
                self.ari
                    .lock()
                    .unwrap()
                    .push(p["/ari/".len()..].to_string());
                self.respond(
                    200,
                    &[
                        json,
                        ("Retry-After", self.retry.lock().unwrap().ari.clone()),
                    ],
                    serde_json::json!({"suggestedWindow": {
                        "start": rfc3339(self.window.0),
                        "end": rfc3339(self.window.1),
                    }})
                    .to_string(),
                )
            }
            ("POST", p) => {
                let payload = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|jws| B64.decode(jws["payload"].as_str()?).ok())
                    .and_then(|p| serde_json::from_slice(&p).ok())
                    .unwrap_or(serde_json::Value::Null);
                self.handle_order(p, &payload)
                    .unwrap_or_else(|| self.respond(404, &[], String::new()))
            }
            _ => self.respond(404, &[], String::new()),
        })
    }
}

/// The stub on `addr` over HTTPS, on its own runtime thread; stops when dropped.
struct Server {
    stub: Arc<Stub>,
    /// The stub's CA certificate, for acme.ca_roots.
    ca_file: std::path::PathBuf,
    _serving: crate::common::https_stub::Serving,
}

fn start_stub(ip: &str, window: (i64, i64), profiles: Vec<(&'static str, &'static str)>) -> Server {
    start_stub_refusing(ip, window, profiles, Refuse::RateLimited)
}

/// `start_stub` whose newOrder answers `refuse`.
fn start_stub_refusing(
    ip: &str,
    window: (i64, i64),
    profiles: Vec<(&'static str, &'static str)>,
    refuse: Refuse,
) -> Server {
    let (ca, listening) = crate::common::https_stub::listen(ip, "ACME stub CA");
    let addr: SocketAddr = listening.addr;
    let stub = Arc::new(Stub {
        base: format!("https://{addr}"),
        window,
        new_orders: AtomicUsize::new(0),
        replaces: Mutex::new(vec![]),
        ari: Mutex::new(vec![]),
        nonces: AtomicUsize::new(0),
        profiles,
        profile: Mutex::new(vec![]),
        refuse,
        ca,
        order: Mutex::new(Flow::default()),
        retry: Mutex::new(Retry::default()),
        requests: AtomicUsize::new(0),
        offers_ari: AtomicBool::new(true),
    });
    let s2 = stub.clone();
    let serving = listening.serve(move |r| s2.clone().handle(r));
    Server {
        stub,
        ca_file: serving.ca_file.clone(),
        _serving: serving,
    }
}

/// A site whose CA is the stub (on .1 of `block`), with `vipcert serve` on the VIP (.10) and
/// the three nodes (.11-.13), an ACME account created at the stub, and one published version
/// whose leaf is valid over `valid`. Returns the site, the server guards, and the leaf's ARI certificate identifier.
fn setup(block: Block, window: (i64, i64), valid: (i64, i64)) -> (Site, Server, Vec<Proc>, String) {
    setup_with(block, window, valid, vec![], "")
}

/// `setup` with the directory offering `profiles` and `acme_extra` lines in [acme].
fn setup_with(
    block: Block,
    window: (i64, i64),
    valid: (i64, i64),
    profiles: Vec<(&'static str, &'static str)>,
    acme_extra: &str,
) -> (Site, Server, Vec<Proc>, String) {
    let (site, server, serves) =
        stub_site(block, window, profiles, acme_extra, Refuse::RateLimited);
    let names = site.names(VIP);
    let leaf = site
        .ca
        .leaf(&Spec::new(&names[0], &names).unix(valid.0, valid.1));
    let id = {
        let (aki, serial) = vipcert::cert::ari_parts(leaf.cert_pem.as_bytes())
            .unwrap()
            .unwrap();
        format!("{}.{}", B64.encode(aki), B64.encode(serial))
    };
    site.publish(VIP, &leaf);

    // The account, created at the stub through the library (as `issue` would).
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(vipcert::acme::account(&site.cfg(), &site.store))
        .unwrap();
    (site, server, serves, id)
}

/// A site whose CA is the stub (on .1 of `block`, newOrder answering `refuse`), with
/// `vipcert serve` on the VIP (.10) and the three nodes (.11-.13); nothing published.
fn stub_site(
    block: Block,
    window: (i64, i64),
    profiles: Vec<(&'static str, &'static str)>,
    acme_extra: &str,
    refuse: Refuse,
) -> (Site, Server, Vec<Proc>) {
    let server = start_stub_refusing(block.host(1), window, profiles, refuse);
    // A fixed port: the block's addresses are this test's alone.
    let port = 5002;
    let rest = format!(
        "[acme]\ndirectory = \"{}/dir\"\nca_roots = \"{}\"\nhttp_port = {port}\nkey_type = \"ecdsa-p256\"\n{acme_extra}\n[preflight]\nskip_dns = true\ntimeout = \"2s\"\n",
        server.stub.base,
        server.ca_file.display()
    );
    let site = Site::new(&block.net(), "shared", "", &rest);

    // Node servers for preflight: the VIP (.10) and the nodes (.11-.13).
    let mut serves = vec![];
    for (i, last) in [(0, 10), (0, 11), (1, 12), (2, 13)] {
        let addr = block.addr(last, port);
        serves.push(Proc::new(
            site.cmd(i, &["serve", "--listen", &addr.to_string()])
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
            format!("serve {addr}"),
        ));
        common::wait_listening(addr, "vipcert serve");
    }
    (site, server, serves)
}

fn state(site: &Site) -> vipcert::store::State {
    site.store.read_state(VIP).unwrap()
}

#[test]
fn ari_window_open_renews_with_replaces_and_rate_limit_sets_next_attempt() {
    let now = vipcert::store::now();
    // A fresh 90-day certificate (the lifetime rule says: not due), but the CA's window is
    // already open (e.g. it will revoke the certificate): due, by ARI.
    let window = (now - 2 * 3600, now - 3600);
    let (site, server, _serves, id) =
        setup(Block::RenewAriOpen, window, (now - 3600, now + 90 * DAY));
    let root = site.root(0);
    let out = site.run(0, &["renew", "--root", root.to_str().unwrap()]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains("due: inside the CA's renewal window (ARI)"),
        "{msg}"
    );
    assert!(msg.contains("RENEWAL FAILED"), "{msg}");
    assert!(msg.contains("[rateLimited]"), "{msg}");
    assert!(msg.contains("too many new orders recently"), "{msg}");
    assert!(msg.contains("rate limited (retry after "), "{msg}");
    // Still installs what is current.
    assert!(msg.contains("installed version 0001"), "{msg}");

    // The stub saw the ARI query for this certificate and one order replacing it.
    assert_eq!(*server.stub.ari.lock().unwrap(), vec![id.clone()]);
    assert_eq!(server.stub.new_orders.load(Ordering::SeqCst), 1);
    assert_eq!(
        *server.stub.replaces.lock().unwrap(),
        vec![Some(id.clone())]
    );

    // state/: the window, when to ask again (Retry-After 6 h), and the CA's Retry-After (1 h)
    // as the next attempt, not the 1-minute first backoff.
    let st = state(&site);
    let get = |t: Option<vipcert::unixtime::UnixTime>| t.map(|t| t.get());
    assert_eq!(
        (get(st.ari_start), get(st.ari_end)),
        (Some(window.0), Some(window.1))
    );
    let checked = st.ari_checked_at.unwrap().get();
    // Retry-After: 21600, give or take the second it took to get here.
    let again = st.ari_retry_after.unwrap().get() - checked;
    assert!((21590..=21600).contains(&again), "{again}");
    assert_eq!(st.failures, 1);
    let next = st.next_attempt.unwrap().get();
    assert!(
        next >= now + 3600 && next <= vipcert::store::now() + 3600,
        "next_attempt {next} is not the CA's Retry-After (now {now})"
    );
    assert!(st.last_error.as_deref().unwrap().contains("rateLimited"));

    // The next run respects it: no order, no new ARI query (cached), a clear non-zero exit.
    let out = site.run(0, &["renew", "--root", root.to_str().unwrap()]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(msg.contains("backing off after 1 failure(s)"), "{msg}");
    assert!(msg.contains("next attempt after"), "{msg}");
    assert_eq!(server.stub.new_orders.load(Ordering::SeqCst), 1);
    assert_eq!(server.stub.ari.lock().unwrap().len(), 1);

    // Another node sees the same shared state and holds back too.
    let root = site.root(1);
    let out = site.run(1, &["renew", "--root", root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(server.stub.new_orders.load(Ordering::SeqCst), 1);
}

#[test]
fn ari_window_later_holds_back_the_lifetime_rule() {
    let now = vipcert::store::now();
    // 80 of 90 days gone: the lifetime rule alone would renew now; the CA says "in 10 days".
    let window = (now + 10 * DAY, now + 11 * DAY);
    let (site, server, _serves, id) = setup(
        Block::RenewAriLater,
        window,
        (now - 80 * DAY, now + 10 * DAY),
    );
    let root = site.root(0);
    let out = site.run(0, &["renew", "--root", root.to_str().unwrap()]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(
        msg.contains(&format!(
            "not due: the CA's renewal window (ARI) starts at {}",
            rfc3339(window.0)
        )),
        "{msg}"
    );
    assert_eq!(*server.stub.ari.lock().unwrap(), vec![id]);
    assert_eq!(server.stub.new_orders.load(Ordering::SeqCst), 0);
    assert_eq!(state(&site).failures, 0);
}

/// `vipcert renew <root>` on node `i` of `site`: it succeeds with nothing due, saying `why`.
fn renew_not_due(site: &Site, i: usize, why: &str) {
    let root = site.root(i);
    let out = site.run(i, &["renew", "--root", root.to_str().unwrap()]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(msg.contains(&format!("{VIP}: not due: {why}")), "{msg}");
}

/// Issue 20, Deliver 6: the timer runs renew every hour, so a run with nothing due must not
/// ask the CA anything: the ARI window is cached in state/ until the CA's Retry-After, and
/// neither the account nor the directory is fetched while it is. Once the Retry-After has
/// passed, the next run asks again.
#[test]
fn a_renew_with_nothing_due_asks_the_ca_nothing_until_its_retry_after() {
    let now = vipcert::store::now();
    let window = (now + 30 * DAY, now + 31 * DAY);
    let (site, server, _serves, id) =
        setup(Block::RenewQuietAri, window, (now - DAY, now + 89 * DAY));
    let requests = || server.stub.requests.load(Ordering::SeqCst);
    let why = format!(
        "the CA's renewal window (ARI) starts at {}",
        rfc3339(window.0)
    );

    let before = requests();
    renew_not_due(&site, 0, &why);
    assert_eq!(*server.stub.ari.lock().unwrap(), vec![id.clone()]);
    let asked = requests();
    assert!(asked > before, "the first run asked nothing");

    // Within the CA's Retry-After (6 h): not one request, from this node or another.
    renew_not_due(&site, 0, &why);
    renew_not_due(&site, 1, &why);
    assert_eq!(requests(), asked, "a run with nothing due asked the CA");

    // `status` shows the cached window, when it was fetched and when the CA is asked again,
    // and the renewal it decides, asking the CA nothing either.
    let out = site.run(0, &["status", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let l = &j["lineages"][0];
    let st = state(&site);
    assert_eq!(l["ari"]["state"], "window", "{l}");
    assert_eq!(
        (&l["ari"]["start"], &l["ari"]["end"]),
        (&window.0.into(), &window.1.into())
    );
    assert_eq!(l["ari"]["fetched_at"], st.ari_checked_at.unwrap().get());
    assert_eq!(
        l["ari"]["ask_again_after"],
        st.ari_retry_after.unwrap().get()
    );
    assert_eq!(l["renewal"]["verdict"], "not_due");
    assert_eq!(l["renewal"]["rule"], "ari_window");
    assert_eq!(l["renewal"]["at"], window.0);
    assert_eq!(l["renewal"]["window_end"], window.1);
    let out = site.run(0, &["status"]);
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(
        t.contains(&format!(
            "renews         at a random moment between {} and {} (the CA's renewal window)",
            rfc3339(window.0),
            rfc3339(window.1)
        )),
        "{t}"
    );
    assert_eq!(requests(), asked, "status asked the CA");

    // Once the Retry-After has passed, the window is asked for again.
    let mut st = state(&site);
    st.ari_retry_after = Some(vipcert::unixtime::UnixTime::new(now - 1));
    site.store.write_state(VIP, &st).unwrap();
    renew_not_due(&site, 0, &why);
    assert_eq!(*server.stub.ari.lock().unwrap(), vec![id.clone(), id]);
    assert_eq!(server.stub.new_orders.load(Ordering::SeqCst), 0);
}

/// A CA without ARI (Pebble 2.4, many ACME CAs): that it offers none is recorded for the CA
/// (`accounts/<ca-host>/no-ari.json`), for a day, so the hourly run does not fetch its
/// directory every time to learn it again; the lineage's state is not touched.
#[test]
fn a_ca_without_ari_is_asked_again_a_day_later_not_every_run() {
    let now = vipcert::store::now();
    let valid = (now - DAY, now + 89 * DAY);
    let (site, server, _serves, _) = setup(Block::RenewQuietNoAri, (0, 0), valid);
    server.stub.offers_ari.store(false, Ordering::SeqCst);
    let requests = || server.stub.requests.load(Ordering::SeqCst);
    let why = format!(
        "valid until {}; renews from {}",
        rfc3339(valid.1),
        rfc3339(valid.1 - 30 * DAY)
    );

    let state_file = site.shared.join(format!("state/{VIP}.json"));
    let state_before = std::fs::read(&state_file).ok();
    let before = requests();
    renew_not_due(&site, 0, &why);
    let asked = requests();
    assert!(asked > before, "the first run asked nothing");
    let host = server
        .stub
        .base
        .trim_start_matches("https://")
        .replace(':', "_");
    let no_ari: serde_json::Value = serde_json::from_slice(
        &std::fs::read(site.shared.join(format!("accounts/{host}/no-ari.json"))).unwrap(),
    )
    .unwrap();
    let again = no_ari["retry_after"].as_i64().unwrap() - no_ari["checked_at"].as_i64().unwrap();
    assert_eq!(again, DAY, "{no_ari}");
    assert_eq!(std::fs::read(&state_file).ok(), state_before);

    renew_not_due(&site, 0, &why);
    renew_not_due(&site, 1, &why);
    assert_eq!(requests(), asked, "a run with nothing due asked the CA");
    assert!(server.stub.ari.lock().unwrap().is_empty());
}

#[test]
fn profile_is_sent_in_new_order_and_refused_when_not_offered() {
    let now = vipcert::store::now();
    let window = (now + 10 * DAY, now + 11 * DAY);
    let valid = (now - DAY, now + 89 * DAY);
    let offered = vec![
        ("classic", "The same profile you're accustomed to"),
        ("tlsserver", "Only serverAuth, no subject CN"),
    ];

    // Offered: new-order carries it (the stub then answers rateLimited; the payload is what
    // this test is about).
    let (site, server, _serves, _) = setup_with(
        Block::ProfileOffered,
        window,
        valid,
        offered.clone(),
        "profile = \"classic\"",
    );
    let root = site.root(0);
    let out = site.run(0, &["renew", "--force", "--root", root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        *server.stub.profile.lock().unwrap(),
        vec![Some("classic".to_string())]
    );
    drop((site, server, _serves));

    // Not offered: refused before any order, naming what the CA offers.
    let (site, server, _serves, _) = setup_with(
        Block::ProfileMissing,
        window,
        valid,
        offered,
        "profile = \"longlived\"",
    );
    let root = site.root(0);
    let out = site.run(0, &["renew", "--force", "--root", root.to_str().unwrap()]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains(&format!(
            "the CA {}/dir does not offer the profile \"longlived\" of acme.profile; it offers: classic, tlsserver",
            server.stub.base
        )),
        "{msg}"
    );
    assert_eq!(server.stub.new_orders.load(Ordering::SeqCst), 0);
}

/// A Pebble lab (VIP and one node) whose config lists `first` as `[acme]` and `second` as its
/// `[[acme.fallback]]`; the stub's CA joins `ca_roots` (which apply to every CA).
fn fallback_lab(block: Block, stub: &Server, stub_first: bool) -> Lab {
    let lab = Lab::new(
        block,
        LabOptions {
            nodes: 1,
            acme_extra: "key_type = \"ecdsa-p256\"",
            ..LabOptions::default()
        },
    );
    let mut roots = std::fs::OpenOptions::new()
        .append(true)
        .open(&lab.pebble.ca_pem)
        .unwrap();
    std::io::Write::write_all(&mut roots, &std::fs::read(&stub.ca_file).unwrap()).unwrap();
    let pebble = lab.pebble.directory_url.clone();
    let stub_dir = format!("{}/dir", stub.stub.base);
    let (first, second) = if stub_first {
        (stub_dir, pebble.clone())
    } else {
        (pebble.clone(), stub_dir)
    };
    lab.edit_config(|c| {
        c.replacen(
            &format!("directory = \"{pebble}\""),
            &format!("directory = \"{first}\""),
            1,
        )
        .replacen(
            "\n[[node]]",
            &format!("\n[[acme.fallback]]\ndirectory = \"{second}\"\n\n[[node]]"),
            1,
        )
    });
    lab
}

/// `issue` with the stub as `[acme]` refusing every order with `refuse`: the certificate comes
/// from Pebble (the fallback) in the same run, and meta, state/ and `check` name Pebble.
fn refused_order_falls_through_to_pebble(block: Block, refuse: Refuse, said: &str) {
    let stub = start_stub_refusing(block.host(1), (0, 0), vec![], refuse);
    let lab = fallback_lab(block, &stub, true);
    let pebble = lab.pebble.directory_url.clone();

    let out = lab.run_as(0, &["issue"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert_eq!(stub.stub.new_orders.load(Ordering::SeqCst), 1, "{msg}");
    assert!(msg.contains(said), "{msg}");
    assert!(msg.contains("trying the next CA"), "{msg}");
    assert!(msg.contains("issued version 0001"), "{msg}");
    assert_eq!(lab.pebble.orders_created(), 1);

    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lab.store_dir(VIP).join("0001/meta.json")).unwrap())
            .unwrap();
    assert_eq!(meta["ca"], pebble.as_str());
    // Ordered without a profile: recorded as the CA's default, so a later `[acme] profile`
    // makes `renew` see the change.
    assert_eq!(meta["profile"], "");
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(lab.shared.join(format!("state/{VIP}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(state["ca"], pebble.as_str());
    assert_eq!(state["failures"], 0, "{state}");
    let root = lab.root(0);
    let out = lab.run(0, &["install", "--root", root.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = lab.run(0, &["check", "--root", root.to_str().unwrap()]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(0), "{msg}");
    assert!(msg.contains(&format!("from the CA {pebble}")), "{msg}");
}

#[test]
fn fallback_after_a_503_issues_from_pebble_in_the_same_run() {
    refused_order_falls_through_to_pebble(
        Block::FallbackUnavailable,
        Refuse::Unavailable,
        "HTTP 503",
    );
}

#[test]
fn fallback_after_rate_limited_issues_from_pebble_in_the_same_run() {
    refused_order_falls_through_to_pebble(
        Block::FallbackRateLimited,
        Refuse::RateLimited,
        "too many new orders recently",
    );
}

#[test]
fn a_validation_failure_does_not_fall_through() {
    let block = Block::FallbackValidation;
    let stub = start_stub(block.host(1), (0, 0), vec![]);
    let lab = fallback_lab(block, &stub, false);
    // The VIP's name resolves (for Pebble) to .20, where a web server that is not vipcert
    // answers 404 to everything; preflight goes to the configured virtual_ip without DNS and
    // passes. Pebble's validation then fails: the same would happen at any CA.
    let wrong =
        std::net::TcpListener::bind(block.addr(20, crate::common::pebble::HTTP_PORT)).unwrap();
    std::thread::spawn(move || {
        for c in wrong.incoming() {
            let Ok(mut c) = c else { return };
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut c, &mut buf);
            let _ = std::io::Write::write_all(
                &mut c,
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    lab.pebble.replace_a(VIP, block.ip(20));
    lab.edit_config(|c| c.replacen("[preflight]\n", "[preflight]\nskip_dns = true\n", 1));

    let out = lab.run_as(0, &["issue"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(msg.contains("[unauthorized]"), "{msg}");
    assert!(!msg.contains("trying the next CA"), "{msg}");
    assert_eq!(lab.pebble.orders_created(), 1, "{msg}");
    // The second CA heard nothing: no order (not even an account).
    assert_eq!(stub.stub.new_orders.load(Ordering::SeqCst), 0, "{msg}");
    assert!(!lab.store_dir(VIP).join("0001").exists(), "{msg}");
}

/// `issue` through the stub's whole order flow: a profile vipcert does not know to drop the CN
/// (`serveronly`, `tlsserver`-like) gives a certificate without subject CN, which GSI needs;
/// it is refused naming the profile and `classic`, and nothing is published. `classic` keeps
/// the CN: issued and published. (The profiles known to drop it are refused before any order:
/// `a_cn_dropping_profile_is_refused_before_the_ca_hears_anything`.)
#[test]
fn issue_refuses_a_profile_without_cn_and_publishes_with_classic() {
    let offered = vec![
        ("classic", "The same profile you're accustomed to"),
        ("tlsserver", "Only serverAuth, no subject CN"),
        ("serveronly", "Only serverAuth, no subject CN either"),
    ];
    let webroot_files = |site: &Site| {
        // The node servers made the webroot: a missing one is a failure, not "empty".
        std::fs::read_dir(site.store.webroot_path())
            .unwrap()
            .count()
    };

    let (site, server, _serves) = stub_site(
        Block::ProfileNoCn,
        (0, 0),
        offered.clone(),
        "profile = \"serveronly\"",
        Refuse::Issue,
    );
    let out = site.run(0, &["issue"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    // The stub went as far as issuing: the refusal is vipcert's, of the certificate.
    assert!(server.stub.order.lock().unwrap().chain.is_some(), "{msg}");
    assert_eq!(
        *server.stub.profile.lock().unwrap(),
        vec![Some("serveronly".to_string())]
    );
    assert!(msg.contains("the certificate has no subject CN"), "{msg}");
    assert!(msg.contains("GSI clients match on the CN"), "{msg}");
    assert!(
        msg.contains("use a profile that keeps it (Let's Encrypt: \"classic\""),
        "{msg}"
    );
    assert!(msg.contains("not published"), "{msg}");
    assert_eq!(site.store.current(VIP).unwrap(), None, "{msg}");
    assert_eq!(
        site.store.versions(VIP).unwrap(),
        Vec::<u32>::new(),
        "{msg}"
    );
    assert_eq!(webroot_files(&site), 0, "{msg}");
    drop((site, server, _serves));

    let (site, server, _serves) = stub_site(
        Block::ProfileClassic,
        (0, 0),
        offered,
        "profile = \"classic\"",
        Refuse::Issue,
    );
    let out = site.run(0, &["issue"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(msg.contains("issued version 0001"), "{msg}");
    assert_eq!(
        *server.stub.profile.lock().unwrap(),
        vec![Some("classic".to_string())]
    );
    assert_eq!(site.store.current(VIP).unwrap(), Some(1), "{msg}");
    let meta: serde_json::Value =
        serde_json::from_slice(&site.version_file(VIP, 1, "meta.json")).unwrap();
    assert_eq!(meta["profile"], "classic");
    assert_eq!(webroot_files(&site), 0, "{msg}");
}

/// The CN-dropping profiles Let's Encrypt offers (`tlsserver`, `shortlived`) are refused
/// before any order: even offered by the CA, `issue` stops at the config, naming the key and
/// `require_cn`, and the CA hears nothing (no newOrder, no request at all) — the
/// duplicate-certificate budget is not spent on a certificate vipcert would then refuse.
#[test]
fn a_cn_dropping_profile_is_refused_before_the_ca_hears_anything() {
    let offered = vec![
        ("classic", "The same profile you're accustomed to"),
        ("tlsserver", "Only serverAuth, no subject CN"),
        ("shortlived", "Six days, no subject CN"),
    ];
    // The node servers run with a good config; the admin then picks the profile.
    let (site, server, _serves) = stub_site(
        Block::ProfileCnRefused,
        (0, 0),
        offered,
        "profile = \"classic\"",
        Refuse::Issue,
    );
    let good = std::fs::read_to_string(&site.config).unwrap();
    for p in ["tlsserver", "shortlived"] {
        let bad = good.replacen("profile = \"classic\"", &format!("profile = \"{p}\""), 1);
        std::fs::write(&site.config, bad).unwrap();
        for args in [&["issue"][..], &["config", "check"], &["renew", "--force"]] {
            let out = site.run(0, args);
            let msg = text(&out);
            assert!(!out.status.success(), "{args:?}: {msg}");
            assert!(msg.contains("acme.profile"), "{msg}");
            assert!(
                msg.contains(&format!("\"{p}\" gives certificates without a subject CN")),
                "{msg}"
            );
            assert!(msg.contains("set [acme] require_cn = false"), "{msg}");
        }
    }
    assert_eq!(server.stub.new_orders.load(Ordering::SeqCst), 0);
    assert_eq!(server.stub.requests.load(Ordering::SeqCst), 0);
    assert_eq!(site.store.versions(VIP).unwrap(), Vec::<u32>::new());
}

/// `[acme] require_cn = false`: the admin has decided every client matches on the SAN. A
/// `tlsserver` certificate (no subject CN, the planned names as SANs) is ordered, verified,
/// published and installed.
#[test]
fn require_cn_false_takes_a_certificate_without_cn() {
    let offered = vec![
        ("classic", "The same profile you're accustomed to"),
        ("tlsserver", "Only serverAuth, no subject CN"),
    ];
    let (site, server, _serves) = stub_site(
        Block::ProfileCnOptional,
        (0, 0),
        offered,
        "require_cn = false\nprofile = \"tlsserver\"",
        Refuse::Issue,
    );
    let out = site.run(0, &["issue"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(msg.contains("issued version 0001"), "{msg}");
    assert_eq!(
        *server.stub.profile.lock().unwrap(),
        vec![Some("tlsserver".to_string())]
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&site.version_file(VIP, 1, "meta.json")).unwrap();
    assert_eq!(meta["profile"], "tlsserver");
    assert_eq!(meta["leaf"]["cn"], serde_json::Value::Null, "{meta}");
    let mut sans: Vec<String> = serde_json::from_value(meta["leaf"]["sans"].clone()).unwrap();
    sans.sort();
    let mut want = site.names(VIP);
    want.sort();
    assert_eq!(sans, want);
    let out = site.install(0);
    assert!(out.status.success(), "{}", text(&out));
}

/// A `[[acme.ca]]`'s profile that CA does not offer: refused before any order at it, naming
/// that CA's profile; `[acme]` (nothing listens there) is not even tried, as no lineage is
/// on it.
#[test]
fn a_named_ca_s_profile_it_does_not_offer_is_refused_before_any_order() {
    let block = Block::NamedCaProfileMissing;
    let offered = vec![("classic", "The same profile you're accustomed to")];
    let (site, server, _serves) = stub_site(block, (0, 0), offered, "", Refuse::Issue);
    let stub_dir = format!("{}/dir", server.stub.base);
    let dead = format!("https://{}:9/dir", block.host(2));
    let text_of = std::fs::read_to_string(&site.config).unwrap();
    let roots = text_of
        .lines()
        .find(|l| l.starts_with("ca_roots = "))
        .unwrap()
        .to_string();
    let mut cfg = text_of
        .replacen("layout = \"shared\"", "layout = \"per-host\"", 1)
        .replacen(&format!("directory = \"{stub_dir}\""), &format!("directory = \"{dead}\""), 1)
        .replacen(
            "\n[preflight]",
            &format!("\n[[acme.ca]]\nname = \"stub\"\ndirectory = \"{stub_dir}\"\n{roots}\nprofile = \"nonesuch\"\n[preflight]"),
            1,
        );
    for n in &site.nodes {
        cfg = cfg.replacen(
            &format!("hostname = \"{n}\"\n"),
            &format!("hostname = \"{n}\"\nca = \"stub\"\n"),
            1,
        );
    }
    std::fs::write(&site.config, cfg).unwrap();
    let out = site.run(0, &["issue"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains(&format!(
            "the CA {stub_dir} does not offer the profile \"nonesuch\" of acme.ca.profile (name = \"stub\"); it offers: classic — set acme.ca.profile (name = \"stub\") to one of them"
        )),
        "{msg}"
    );
    assert!(!msg.contains(&dead), "{msg}");
    assert_eq!(server.stub.new_orders.load(Ordering::SeqCst), 0, "{msg}");
}

/// A renew against the stub whose ARI window is open and whose newOrder answers rateLimited
/// with Retry-After `retry` (and renewalInfo with the same), for a certificate with
/// `remaining` seconds left: the next attempt and the next ARI query land within a third of
/// the remaining lifetime, whatever the CA asked (Why 6, Deliver 3).
fn retry_after_is_capped(block: Block, retry: &str, remaining: i64) {
    let now = vipcert::store::now();
    let window = (now - 2 * 3600, now - 3600);
    let not_after = now + remaining;
    let (site, server, _serves, _) = setup(block, window, (not_after - 90 * DAY, not_after));
    *server.stub.retry.lock().unwrap() = Retry {
        order: retry.into(),
        ari: retry.into(),
    };
    let root = site.root(0);
    let start = vipcert::store::now();
    let out = site.run(0, &["renew", "--root", root.to_str().unwrap()]);
    let end = vipcert::store::now();
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(!msg.contains("panicked"), "{msg}");
    assert!(msg.contains("RENEWAL FAILED"), "{msg}");
    assert!(msg.contains("rate limited (retry after "), "{msg}");
    assert_eq!(server.stub.new_orders.load(Ordering::SeqCst), 1, "{msg}");

    // A third of what remained when the failure was recorded, give or take the run's seconds.
    let st: serde_json::Value = serde_json::from_slice(
        &std::fs::read(site.shared.join(format!("state/{VIP}.json"))).unwrap(),
    )
    .unwrap();
    let next = st["next_attempt"].as_i64().unwrap();
    let (low, high) = (start + (not_after - end) / 3, end + (not_after - start) / 3);
    assert!(
        (low..=high).contains(&next),
        "next_attempt {next} is not within a third of the remaining lifetime [{low}, {high}]\n{st}"
    );
    // The ARI query is not repeated before a day (RFC 9773's clamp), nor beyond the same cap.
    let again = st["ari_retry_after"].as_i64().unwrap() - st["ari_checked_at"].as_i64().unwrap();
    assert!(
        (1..=DAY.min(remaining / 3 + 1)).contains(&again),
        "ari_retry_after is {again} s after the query\n{st}"
    );
}

/// `Retry-After: Fri, 31 Dec 9999 23:59:59 GMT` set the next attempt to year 9999 (Why 6):
/// now a third of the 30 days left (10 days).
#[test]
fn retry_after_in_year_9999_is_capped_at_a_third_of_the_remaining_lifetime() {
    retry_after_is_capped(
        Block::RetryAfterDate,
        "Fri, 31 Dec 9999 23:59:59 GMT",
        30 * DAY,
    );
}

/// `Retry-After: 18446744073709551615` (u64::MAX seconds) on renewalInfo overflowed the
/// client's time arithmetic; on newOrder it was a year. Now both are a third of the 6 hours
/// left (2 hours).
#[test]
fn retry_after_of_u64_max_seconds_is_capped_everywhere() {
    retry_after_is_capped(Block::RetryAfterSecs, "18446744073709551615", 6 * 3600);
}
