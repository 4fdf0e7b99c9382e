//! The fleet requests of `check --fleet`: every node's `/.well-known/vipcert/status` and the
//! configured TLS probes, concurrently, each bounded in time and size, then evaluated into
//! one report.
//!
//! It does not judge facts itself (`drift` evaluates them), read a node's files (`local`,
//! on the node, behind its status route) or render the report (`output`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::finding::{finding, Check, Severity};
use super::local::Observation;
use super::policy::{lease_finding, store_findings, target_findings, Expected, Thresholds};
use super::remote::{probe_finding, status_findings};
use super::report::{new_report, schedule, store_summary, CheckMode, CheckReport};
use super::store_view::{read_stores, StoreView};
use crate::cert::{self, CertInfo};
use crate::config::{Config, Node, Sni};
use crate::plan::{Lineage, Plan, Target};
use crate::status::Status;
use crate::store::Store;

/// Largest status document accepted from a node (100 lineages × a few targets is ~200 KiB).
const MAX_STATUS_BYTES: usize = 4 << 20;

/// A node's status route: where it was asked, and what it answered.
type StatusAnswer = (SocketAddr, Result<Status, String>);
/// One TLS probe: the endpoint label, and the served leaf.
type ProbeAnswer = (String, Result<CertInfo, String>);

/// `check --fleet`: the store's findings, then per node (in config order) its status, its
/// install targets as it reports them and its TLS probes.
pub(crate) async fn check_fleet(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    th: Thresholds,
    now: i64,
) -> anyhow::Result<CheckReport> {
    let mut r = new_report(CheckMode::Fleet, th, now);
    let views = read_all_stores(cfg, plan, store, now).await?;
    for v in &views {
        r.findings.extend(store_findings(v, now));
        r.store.push(store_summary(v));
        r.schedules.push(schedule(v, now));
    }
    r.findings
        .extend(lease_finding(store, crate::lease::Timing::of(&cfg.renew)));
    let (statuses, probes) = ask_fleet(cfg).await;
    let fleet = Fleet {
        cfg,
        views: &views,
        targets: crate::plan::targets(cfg, &cfg.install.root),
        th,
        now,
    };
    let mut probes = probes.into_iter();
    for (node, (addr, status)) in cfg.nodes.iter().zip(statuses) {
        let lineages: Vec<&Lineage> = plan.for_node(&node.hostname).collect();
        r.findings
            .extend(status_findings(node, &lineages, &status, addr));
        r.nodes_up.push((node.hostname.clone(), status.is_ok()));
        if let Some(st) = status.as_ref().ok().filter(|s| s.node == node.hostname) {
            for l in &lineages {
                fleet.node_lineage(&mut r, node, l, st);
            }
        }
        fleet.node_probes(&mut r, node, &lineages, &mut probes);
    }
    Ok(r)
}

/// Every lineage's store, read off the reactor (NFS reads can block).
async fn read_all_stores(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    now: i64,
) -> anyhow::Result<Vec<StoreView>> {
    let names: Vec<String> = plan.lineages.iter().map(|l| l.name.clone()).collect();
    let (store, cfg, plan) = (store.clone(), cfg.clone(), plan.clone());
    tokio::task::spawn_blocking(move || {
        let trust = crate::drift::Trust::load(&cfg, &store, &names)?;
        let lineages: Vec<&Lineage> = plan.lineages.iter().collect();
        anyhow::Ok(read_stores(&cfg, &store, &trust, &lineages, now))
    })
    .await
    .unwrap_or_else(|_| Ok(Vec::new()))
}

/// Every node's status and every (node, probe) TLS handshake, all at once: statuses in node
/// order, probes in node order and within a node in `[[check.probe]]` order.
async fn ask_fleet(cfg: &Config) -> (Vec<StatusAnswer>, Vec<ProbeAnswer>) {
    let timeout = cfg.check.timeout;
    let tls = Arc::new(probe_client_config());
    let statuses = futures_util::future::join_all(cfg.nodes.iter().map(|n| {
        let addr = SocketAddr::new(n.address, cfg.check.status_port);
        let host = n.hostname.clone();
        async move { (addr, fetch_status(addr, &host, timeout).await) }
    }));
    let probes = futures_util::future::join_all(cfg.nodes.iter().flat_map(|n| {
        let tls = tls.clone();
        cfg.check.probes.iter().map(move |p| {
            let sni = match &p.sni {
                Sni::Node => n.hostname.clone(),
                Sni::Virtual => cfg.virtual_hostname.clone(),
                Sni::Name(s) => s.clone(),
            };
            let addr = SocketAddr::new(n.address, p.port);
            let tls = tls.clone();
            async move { tls_probe(tls, addr, &sni, timeout).await }
        })
    }));
    tokio::join!(statuses, probes)
}

/// What judging the nodes' answers reads: the config, the store, the planned targets.
struct Fleet<'a> {
    cfg: &'a Config,
    views: &'a [StoreView],
    targets: Vec<Target>,
    th: Thresholds,
    now: i64,
}

impl Fleet<'_> {
    /// The install targets of lineage `l` as node `node` reports them in its status `st`: the
    /// policy chain per target, or one finding when the node reports another number of targets
    /// than this config has.
    fn node_lineage(&self, r: &mut CheckReport, node: &Node, l: &Lineage, st: &Status) {
        let v = self
            .views
            .iter()
            .find(|v| v.lineage == l.name)
            .expect("a view per lineage");
        let obs: Vec<&Observation> = st.targets.iter().filter(|o| o.lineage == l.name).collect();
        if obs.len() != self.targets.len() {
            r.findings.push(finding(
                Some(&node.hostname),
                &l.name,
                Check::Status,
                Severity::Unknown,
                None,
                format!(
                    "the node reports {} install target(s) for this lineage, this config has {}: is the node running the same config and vipcert version?",
                    obs.len(),
                    self.targets.len()
                ),
            ));
            return;
        }
        for (o, t) in obs.iter().zip(&self.targets) {
            let want = Expected {
                node,
                lineage: l,
                target: t,
                fullchain: self.cfg.install.fullchain,
                require_cn: self.cfg.acme.require_cn,
            };
            r.findings
                .extend(target_findings(&want, o, v, &self.th, self.now));
            r.add_installed(&node.hostname, o);
        }
    }

    /// One finding per `[[check.probe]]` of `node`, taking its answers from `probes`.
    fn node_probes(
        &self,
        r: &mut CheckReport,
        node: &Node,
        lineages: &[&Lineage],
        probes: &mut impl Iterator<Item = ProbeAnswer>,
    ) {
        let node_views: Vec<&StoreView> = self
            .views
            .iter()
            .filter(|v| lineages.iter().any(|l| l.name == v.lineage))
            .collect();
        for p in &self.cfg.check.probes {
            let (endpoint, served) = probes.next().expect("a result per probe");
            r.findings.push(probe_finding(
                node,
                p,
                &endpoint,
                &served,
                &node_views,
                self.views,
            ));
        }
    }
}

/// GET the node's status document by its real address, bounded in time and size (also what
/// `vipcert status --fleet` asks each node).
pub(crate) async fn fetch_status(
    addr: SocketAddr,
    host: &str,
    timeout: Duration,
) -> Result<Status, String> {
    let started = Instant::now();
    let work = async {
        use http_body_util::{BodyExt, Empty, Limited};
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (mut tx, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("{addr}: {e}"))?;
        tokio::spawn(conn);
        let req = hyper::Request::get("/.well-known/vipcert/status")
            .header(hyper::header::HOST, host)
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = tx
            .send_request(req)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{addr} answered HTTP {}", resp.status()));
        }
        let body = Limited::new(resp.into_body(), MAX_STATUS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("{addr}: reading the status: {e}"))?
            .to_bytes();
        serde_json::from_slice::<Status>(&body)
            .map_err(|e| format!("{addr}: the status is not vipcert's: {e}"))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer from {addr} within {:?}",
            started.elapsed()
        )),
    }
}

/// Accepts any server certificate: the probe compares the served leaf with the store by
/// hash, so trust paths do not matter; handshake signatures are still verified, which proves
/// the server holds the key of the certificate it sent.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn probe_client_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth()
}

/// TLS handshake with `sni` at `addr`; the served leaf's facts. Returns the endpoint label.
async fn tls_probe(
    tls: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    sni: &str,
    timeout: Duration,
) -> (String, Result<CertInfo, String>) {
    let endpoint = format!("{addr} (SNI {sni})");
    let work = async {
        let name = rustls_pki_types::ServerName::try_from(sni.to_string())
            .map_err(|e| format!("SNI {sni:?}: {e}"))?;
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let tls = tokio_rustls::TlsConnector::from(tls)
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
        let der = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or_else(|| format!("{addr} sent no certificate"))?;
        cert::info_from_der(der)
            .map_err(|e| format!("{addr} served an unparsable certificate: {e}"))
    };
    let res = match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("no TLS handshake with {addr} within {timeout:?}")),
    };
    (endpoint, res)
}
