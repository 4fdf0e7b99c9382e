//! RFC 8555 on instant-acme: the HTTP client (one deadline and a size cap per request, no
//! redirects), the account (created once, shared through the store), and the steps of one
//! order (`PlacedOrder`: new-order, its http-01 challenges, set ready, poll, finalize with our
//! CSR, download the chain).
//!
//! Owns those requests, the key and CSR (rcgen, explicit CN, names in planned order) and the
//! wording of CA errors. It knows nothing of webroots, nodes or barriers: `issue` drives an
//! order, writes its challenge files and runs the readiness barrier (`preflight`) between
//! its steps. It does not take the lease, run preflight or publish either: `issue` does.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};

use crate::config::{Config, KeyType};
use crate::plan::Lineage;
use crate::progress::Progress;
use crate::store::Store;

/// An HTTPS client for the ACME server with TCP_NODELAY (instant-acme's default client stalls
/// ~40 ms per request on Nagle + delayed ACK), trusting the Mozilla roots plus `ca_roots`, that
/// holds every request to `request_timeout` and every answer to [`MAX_ANSWER`] ([`CaAnswers`]).
pub(crate) fn http_client(acme: &crate::config::Acme) -> Result<Box<dyn instant_acme::HttpClient>> {
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::client::legacy::Client;

    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS setup")?
    .with_root_certificates(trusted_roots(acme.ca_roots.as_deref())?)
    .with_no_client_auth();
    let deadline = acme.request_timeout;
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    // Inside the deadline, but on its own it names the step ("connect timeout").
    http.set_connect_timeout(Some(deadline.min(Duration::from_secs(10))));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    // hyper follows no redirects: a 3xx comes back to `CaAnswers`, which refuses it.
    let http = Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(https);
    Ok(Box::new(CaAnswers { http, deadline }))
}

/// The Mozilla roots plus every certificate in `ca_roots`.
fn trusted_roots(ca_roots: Option<&Path>) -> Result<rustls::RootCertStore> {
    use rustls_pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let Some(path) = ca_roots else {
        return Ok(roots);
    };
    let mut n = 0;
    for c in rustls_pki_types::CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read acme.ca_roots {}", path.display()))?
    {
        let c = c.with_context(|| {
            format!(
                "acme.ca_roots {} holds a bad PEM certificate",
                path.display()
            )
        })?;
        roots
            .add(c)
            .with_context(|| format!("acme.ca_roots {}: certificate refused", path.display()))?;
        n += 1;
    }
    if n == 0 {
        bail!("acme.ca_roots {} holds no PEM certificate", path.display());
    }
    Ok(roots)
}

/// How many more times a request the CA answered `badNonce` is sent whole, after the two
/// re-sends instant-acme makes itself.
pub(crate) const BAD_NONCE_ROUNDS: u32 = 5;

/// RFC 8555 §6.5: a `badNonce` error means the CA did not act on the request, and the client
/// should send it again with a fresh nonce. instant-acme does so twice per request; a CA that
/// rejects nonces often (Pebble rejects 5 % by design, a CA whose front ends do not share
/// nonces more) still refuses three in a row now and then, and one such request failed a
/// whole renewal (CI, 2026-11-30). So every request to the CA goes through this: `$call` (an
/// expression that sends it and awaits the answer) is evaluated again, up to
/// [`BAD_NONCE_ROUNDS`] more times, while the answer is `badNonce`.
macro_rules! resend_on_bad_nonce {
    ($call:expr) => {{
        let mut round = 0;
        loop {
            match $call {
                Err(e)
                    if $crate::acme::is_bad_nonce(&e) && round < $crate::acme::BAD_NONCE_ROUNDS =>
                {
                    round += 1;
                    tracing::debug!(round, "the CA refused the nonce; sending the request again");
                }
                answer => break answer,
            }
        }
    }};
}
pub(crate) use resend_on_bad_nonce;

/// Whether the CA refused a request for its nonce alone (so it did nothing with it).
pub(crate) fn is_bad_nonce(e: &instant_acme::Error) -> bool {
    matches!(e, instant_acme::Error::Api(p) if problem_kind(p) == "badNonce")
}

/// The HTTP client instant-acme sends every request through. Each request has one deadline
/// (`[acme] request_timeout`) from connect to the last byte of the body, and the body is read
/// here, at most [`MAX_ANSWER`] bytes of it, before instant-acme sees the answer: instant-acme
/// would read any body whole, however long it takes and however large it is. A redirect is
/// refused ([`Fault::Redirect`]); each of these comes back as a [`BadAnswer`].
///
/// instant-acme also drops the status line and the Retry-After header of an error answer: a
/// 429 or 5xx answer becomes a [`CaAnswer`] error that keeps both, so the caller can branch on
/// "rate limited until T" or "the CA failed" (fallback issuers, backoff) as data. Other error
/// answers (400 `badNonce` among them: instant-acme retries those) pass through unchanged.
struct CaAnswers {
    http: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        instant_acme::BodyWrapper<bytes::Bytes>,
    >,
    deadline: Duration,
}

/// An error answer instant-acme would have reduced to its problem document.
#[derive(Debug)]
pub(crate) struct CaAnswer {
    pub(crate) status: u16,
    pub(crate) problem: Option<instant_acme::Problem>,
    pub(crate) retry_after: Option<SystemTime>,
}

impl std::fmt::Display for CaAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(p) = &self.problem {
            let detail = p.detail.as_deref().unwrap_or("(no detail)");
            write!(f, ": {}", crate::escape::escape(detail))?;
        }
        Ok(())
    }
}

impl std::error::Error for CaAnswer {}

/// Largest answer read from the CA, body only. ACME answers are JSON of a few KiB (an order of
/// 100 names is ~10 KiB) or a PEM chain (a few certificates, each under 3 KiB): 1 MiB leaves
/// room for any real one and keeps a hostile CA from filling memory.
pub(crate) const MAX_ANSWER: u64 = 1024 * 1024;
// `Fault::hint`, docs/config.md and docs/operations.md say "1 MiB".
const _: () = assert!(MAX_ANSWER == 1 << 20);

/// Largest error body parsed as a problem document (problem documents are small).
const MAX_PROBLEM: usize = 64 * 1024;

/// What the CA did that the client does not accept. Data, so that a caller can branch on it
/// and a test can name it; the wording of each is what an operator reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Fault {
    /// No whole answer (headers and body) within `[acme] request_timeout`.
    #[error("did not answer within {}", humantime::format_duration(*.0))]
    Deadline(Duration),
    /// Content-Length above [`MAX_ANSWER`]: refused before reading the body.
    #[error("announced {0} bytes, more than {mib} MiB", mib = MAX_ANSWER >> 20)]
    Announced(u64),
    /// A body that grew past [`MAX_ANSWER`] while being read: reading stopped there.
    #[error("sent more than {} MiB", MAX_ANSWER >> 20)]
    TooLarge,
    /// A 3xx answer (ACME has none; hyper follows none).
    #[error("redirected to {location} with HTTP {status}")]
    Redirect { status: u16, location: String },
}

impl Fault {
    /// What the operator can do about it.
    fn hint(&self) -> &'static str {
        match self {
            Fault::Deadline(_) => "acme.request_timeout bounds each request: the CA, or something on the way to it, is overloaded or stuck; `vipcert renew` tries again later (raise acme.request_timeout only if this CA is always that slow)",
            Fault::Announced(_) | Fault::TooLarge => "1 MiB is the limit for one ACME answer and no real one comes near it: the CA, or a proxy on the way, is broken; `vipcert renew` tries again later",
            Fault::Redirect { .. } => "vipcert follows no redirects: if the CA moved, set acme.directory to its new directory URL",
        }
    }
}

/// A [`Fault`] of the answer to one request (`method url`): the error the client hands
/// instant-acme, read back out by [`AcmeError::from_acme`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{fault} ({method} {url})")]
pub(crate) struct BadAnswer {
    pub(crate) method: String,
    pub(crate) url: String,
    pub(crate) fault: Fault,
}

/// At most this much of a URL or Location from the CA goes into a message.
const MAX_SHOWN: usize = 256;

/// `v` for a message: cut after [`MAX_SHOWN`] characters.
fn shown(v: &str) -> String {
    match v.char_indices().nth(MAX_SHOWN) {
        Some((i, _)) => format!("{}…", &v[..i]),
        None => v.to_string(),
    }
}

impl instant_acme::HttpClient for CaAnswers {
    fn request(
        &self,
        req: http::Request<instant_acme::BodyWrapper<bytes::Bytes>>,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<instant_acme::BytesResponse, instant_acme::Error>,
                > + Send,
        >,
    > {
        let (method, url) = (req.method().to_string(), shown(&req.uri().to_string()));
        let fault = move |fault| {
            instant_acme::Error::Other(Box::new(BadAnswer {
                method: method.clone(),
                url: url.clone(),
                fault,
            }))
        };
        let deadline = self.deadline;
        let sent = self.http.request(req);
        let read = async move { read_answer(sent.await.map_err(|e| Read::Http(e.into()))?).await };
        Box::pin(async move {
            let (mut parts, body) = match tokio::time::timeout(deadline, read).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(Read::Fault(f))) => return Err(fault(f)),
                Ok(Err(Read::Http(e))) => return Err(instant_acme::Error::Other(e)),
                Err(_) => return Err(fault(Fault::Deadline(deadline))),
            };
            bound_retry_after(&mut parts.headers, SystemTime::now());
            let status = parts.status;
            if !(status.as_u16() == 429 || status.is_server_error()) {
                return Ok(instant_acme::BytesResponse {
                    parts,
                    body: Box::new(body),
                });
            }
            let retry_after = parts
                .headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            let problem = serde_json::from_slice(&body[..body.len().min(MAX_PROBLEM)]).ok();
            Err(instant_acme::Error::Other(Box::new(CaAnswer {
                status: status.as_u16(),
                problem,
                retry_after,
            })))
        })
    }
}

/// Why [`read_answer`] gave up: the CA's answer broke a bound, or HTTP itself failed
/// (connection refused, TLS, a reset mid-body).
enum Read {
    Fault(Fault),
    Http(Box<dyn std::error::Error + Send + Sync>),
}

/// An answer with its body read whole: refused when it is a redirect, when Content-Length
/// announces more than [`MAX_ANSWER`], or as soon as the body grows past it (never more than
/// that plus one read is held).
async fn read_answer<B>(
    rsp: http::Response<B>,
) -> Result<(http::response::Parts, bytes::Bytes), Read>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt as _;

    let (parts, mut body) = rsp.into_parts();
    if parts.status.is_redirection() {
        let location = parts
            .headers
            .get(http::header::LOCATION)
            .map(|l| l.to_str().map_or("(not text)".into(), shown))
            .unwrap_or_else(|| "(no Location)".into());
        return Err(Read::Fault(Fault::Redirect {
            status: parts.status.as_u16(),
            location,
        }));
    }
    let announced = body.size_hint().lower();
    if announced > MAX_ANSWER {
        return Err(Read::Fault(Fault::Announced(announced)));
    }
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Read::Http(e.into()))?;
        if let Ok(data) = frame.into_data() {
            if (buf.len() + data.len()) as u64 > MAX_ANSWER {
                return Err(Read::Fault(Fault::TooLarge));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok((parts, buf.freeze()))
}

/// RFC 9110 Retry-After: delay-seconds or an HTTP-date. Bounded in both forms: a CA asking
/// for more than a year (`999…9` seconds, `Fri, 31 Dec 9999 …`) is treated as asking for a
/// year. The renewal policy caps it further (`retry`).
pub(crate) fn parse_retry_after(v: &str, now: SystemTime) -> Option<SystemTime> {
    let year = Duration::from_secs(366 * 86400);
    let v = v.trim();
    let at = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than u64 holds is still "a long time".
        let secs = v.parse::<u64>().unwrap_or(u64::MAX);
        now.checked_add(Duration::from_secs(secs).min(year))?
    } else {
        httpdate::parse_http_date(v).ok()?
    };
    Some(now.checked_add(year).map_or(at, |limit| at.min(limit)))
}

/// Put a response's Retry-After in bounded form (`parse_retry_after`, as delay-seconds), or
/// drop it when it does not parse, before instant-acme reads it: it adds the seconds to the
/// clock unchecked when polling and for renewalInfo (u64::MAX seconds would panic).
fn bound_retry_after(headers: &mut http::HeaderMap, now: SystemTime) {
    use http::header::RETRY_AFTER;
    let Some(v) = headers.get(RETRY_AFTER) else {
        return;
    };
    match v.to_str().ok().and_then(|v| parse_retry_after(v, now)) {
        Some(at) => {
            let secs = at.duration_since(now).unwrap_or_default().as_secs();
            headers.insert(RETRY_AFTER, http::HeaderValue::from(secs));
        }
        None => {
            headers.remove(RETRY_AFTER);
        }
    }
}

/// One name the CA could not validate, and what it saw.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NameFailure {
    pub(crate) name: String,
    pub(crate) detail: String,
}

/// An ACME failure a caller branches on: whether to recover the account, to try the next CA,
/// or when to try again. Every variant names the CA (its directory URL) first.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AcmeError {
    /// No answer at all: connection refused, DNS, TLS, timeout of the connection.
    #[error("the CA {ca} cannot be reached ({what}): {detail} — check that the directory URL is right, and DNS, firewall and proxy on the way to it; if the CA is down, `vipcert renew` tries again later")]
    Unreachable {
        ca: String,
        what: String,
        detail: String,
    },
    /// HTTP 5xx: the CA failed.
    #[error("the CA {ca} failed ({what}): HTTP {status}: {detail} — a problem on the CA's side; `vipcert renew` tries again later")]
    ServerError {
        ca: String,
        what: String,
        status: u16,
        detail: String,
        retry_after: Option<SystemTime>,
    },
    /// `rateLimited` (HTTP 429).
    #[error("the CA {ca} refused ({what}): rate limited{}: {detail} — wait until then; `vipcert renew` backs off by itself", retry_note(*.retry_after))]
    RateLimited {
        ca: String,
        what: String,
        detail: String,
        retry_after: Option<SystemTime>,
    },
    /// The CA does not know the account (a reset CA, a deactivated or deleted account).
    #[error("the CA {ca} does not know the account ({what}): {detail}")]
    AccountDoesNotExist {
        ca: String,
        what: String,
        detail: String,
    },
    /// The CA tried the challenges and some failed.
    #[error("the CA {ca} could not validate {lineage}:\n{}", failures.iter().map(|f| format!("  {}: {}", f.name, f.detail)).collect::<Vec<_>>().join("\n"))]
    Validation {
        ca: String,
        lineage: String,
        failures: Vec<NameFailure>,
    },
    /// Any other problem document (malformed, badCSR, rejectedIdentifier, EAB required, …).
    #[error("the CA {ca} refused ({what}): {detail}")]
    Refused {
        ca: String,
        what: String,
        detail: String,
    },
    /// `[acme] profile` names a profile the CA's directory does not offer (nothing ordered).
    #[error("the CA {ca} does not offer the profile {profile:?} of acme.profile; it offers: {} — set acme.profile to one of them, or remove it", if offered.is_empty() { "none (its directory lists no profiles)".to_string() } else { offered.join(", ") })]
    ProfileNotOffered {
        ca: String,
        profile: String,
        offered: Vec<String>,
    },
    /// The CA's answer to one request broke a bound of the HTTP client: no whole answer within
    /// `acme.request_timeout`, a body over [`MAX_ANSWER`], or a redirect.
    #[error("the CA {ca} {} ({what}: {} {}) — {}", answer.fault, answer.method, answer.url, answer.fault.hint())]
    BadAnswer {
        ca: String,
        what: String,
        answer: BadAnswer,
    },
    /// The order did not become ready (or valid) within `acme.timeout`.
    #[error("the CA {ca} did not finish in time ({what}) — raise acme.timeout?")]
    Timeout { ca: String, what: String },
    /// Anything else instant-acme reports (bad JSON from the CA, crypto failure, …).
    #[error("ACME with the CA {ca} failed ({what}): {detail}")]
    Other {
        ca: String,
        what: String,
        detail: String,
    },
}

fn retry_note(at: Option<SystemTime>) -> String {
    // Total for any SystemTime (before the epoch, past year 9999): `unixtime::rfc3339`.
    let secs = |t: SystemTime| match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    };
    at.map(|t| format!(" (retry after {})", crate::unixtime::rfc3339(secs(t))))
        .unwrap_or_default()
}

impl AcmeError {
    /// When the CA said to come back, if it did.
    pub(crate) fn retry_after(&self) -> Option<SystemTime> {
        match self {
            AcmeError::RateLimited { retry_after, .. }
            | AcmeError::ServerError { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the next configured CA should be tried in the same run: this one could not be
    /// reached, failed, or rate-limits us. A validation failure would fail there too.
    pub(crate) fn falls_through(&self) -> bool {
        matches!(
            self,
            AcmeError::Unreachable { .. }
                | AcmeError::BadAnswer { .. }
                | AcmeError::ServerError { .. }
                | AcmeError::RateLimited { .. }
        )
    }

    /// Read the typed failure back out of an error chain, if one is there.
    pub(crate) fn find(e: &anyhow::Error) -> Option<&AcmeError> {
        e.chain().find_map(|c| c.downcast_ref::<AcmeError>())
    }

    /// Classify an instant-acme error from the CA at directory `ca` while doing `what`.
    pub(crate) fn from_acme(ca: &str, what: &str, e: instant_acme::Error) -> AcmeError {
        let (ca, what) = (ca.to_string(), what.to_string());
        match e {
            instant_acme::Error::Api(p) => AcmeError::from_problem(ca, what, &p),
            instant_acme::Error::Other(b) => AcmeError::from_client(ca, what, b),
            instant_acme::Error::Hyper(h) => AcmeError::Unreachable {
                ca,
                what,
                detail: error_chain(&h),
            },
            instant_acme::Error::Timeout(_) => AcmeError::Timeout { ca, what },
            other => AcmeError::Other {
                ca,
                what,
                detail: error_chain(&other),
            },
        }
    }

    /// A problem document instant-acme passed on (an error answer it did not reduce to
    /// [`CaAnswer`]).
    fn from_problem(ca: String, what: String, p: &instant_acme::Problem) -> AcmeError {
        let status = p.status.unwrap_or(0);
        let detail = describe_problem(p);
        match problem_kind(p) {
            "rateLimited" => AcmeError::RateLimited {
                ca,
                what,
                detail,
                retry_after: None,
            },
            "accountDoesNotExist" => AcmeError::AccountDoesNotExist { ca, what, detail },
            _ if status >= 500 => AcmeError::ServerError {
                ca,
                what,
                status,
                detail,
                retry_after: None,
            },
            _ => AcmeError::Refused { ca, what, detail },
        }
    }

    /// An error of our HTTP client ([`CaAnswers`]): a 429 or 5xx answer kept whole
    /// ([`CaAnswer`]), a broken bound ([`BadAnswer`]), or no answer at all.
    fn from_client(
        ca: String,
        what: String,
        b: Box<dyn std::error::Error + Send + Sync>,
    ) -> AcmeError {
        let b = match b.downcast::<CaAnswer>() {
            Ok(a) => return AcmeError::from_answer(ca, what, &a),
            Err(b) => b,
        };
        match b.downcast::<BadAnswer>() {
            Ok(answer) => AcmeError::BadAnswer {
                ca,
                what,
                answer: *answer,
            },
            // The HTTP client's own errors: no answer from the CA at all. hyper hides the
            // useful part ("connection refused") in its sources.
            Err(b) => AcmeError::Unreachable {
                ca,
                what,
                detail: error_chain(&*b),
            },
        }
    }

    /// A 429 or 5xx answer: rate limited, or the CA failed; with its Retry-After either way.
    fn from_answer(ca: String, what: String, a: &CaAnswer) -> AcmeError {
        let detail = match &a.problem {
            Some(p) => describe_problem(p),
            None => "(no problem document)".into(),
        };
        let limited = a.status == 429
            || a.problem
                .as_ref()
                .is_some_and(|p| problem_kind(p) == "rateLimited");
        if limited {
            AcmeError::RateLimited {
                ca,
                what,
                detail,
                retry_after: a.retry_after,
            }
        } else {
            AcmeError::ServerError {
                ca,
                what,
                status: a.status,
                detail,
                retry_after: a.retry_after,
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(e) = src {
        let t = e.to_string();
        if !s.contains(&t) {
            s.push_str(&format!(": {t}"));
        }
        src = e.source();
    }
    s
}

/// The last part of a problem's type URN (`rateLimited`, `accountDoesNotExist`, …).
fn problem_kind(p: &instant_acme::Problem) -> &str {
    p.r#type
        .as_deref()
        .unwrap_or("")
        .rsplit(':')
        .next()
        .unwrap_or("")
}

/// Explain a problem document for an operator: the CA's detail, its type, its subproblems,
/// and what to do for the usual ones. The CA's text is escaped: it cannot add lines.
pub(crate) fn describe_problem(p: &instant_acme::Problem) -> String {
    use crate::escape::escape;
    let kind = problem_kind(p);
    let mut s = format!(
        "the CA said: {}",
        escape(p.detail.as_deref().unwrap_or("(no detail)"))
    );
    if !kind.is_empty() {
        s.push_str(&format!(" [{}]", escape(kind)));
    }
    for sp in &p.subproblems {
        s.push_str(&format!("; {}", escape(&sp.to_string())));
    }
    let hint = match kind {
        "unauthorized" | "incorrectResponse" | "connection" | "dns" => {
            " — the CA could not fetch the challenge: run `vipcert preflight` and check DNS, the VIP and acme.http_port"
        }
        "externalAccountRequired" => {
            " — this CA needs External Account Binding: set acme.eab_kid and acme.eab_hmac_key_file (see docs/config.md)"
        }
        "badNonce" => " — retry",
        "rejectedIdentifier" => " — the CA will not issue for this name",
        _ => "",
    };
    s.push_str(hint);
    s
}

/// Explain an instant-acme error for an operator (logs; callers that branch use [`AcmeError`]).
pub(crate) fn describe(ca: &str, e: instant_acme::Error) -> String {
    AcmeError::from_acme(ca, "request", e).to_string()
}

/// The error-mapping closure for one step of talking to `ca`.
pub(crate) fn acme_err(
    ca: &str,
    what: String,
) -> impl Fn(instant_acme::Error) -> anyhow::Error + '_ {
    move |e| AcmeError::from_acme(ca, &what, e).into()
}

fn builder(cfg: &Config) -> Result<instant_acme::AccountBuilder> {
    Ok(Account::builder_with_http(http_client(&cfg.acme)?))
}

pub(crate) fn read_credentials(cfg: &Config, store: &Store) -> Result<Option<AccountCredentials>> {
    let host = cfg.acme.account_dir();
    let Some(json) = store.read_account(&host)? else {
        return Ok(None);
    };
    let creds = serde_json::from_slice(&json).with_context(|| {
        format!(
            "{} is not valid account credentials; move it aside and `vipcert issue` creates a new account",
            store.account_path(&host).display()
        )
    })?;
    Ok(Some(creds))
}

/// The stored account, without asking the CA whether it still knows it (only the directory is
/// fetched): enough for ARI, which needs no account. None when there is no account file.
pub(crate) async fn load_account(cfg: &Config, store: &Store) -> Result<Option<Account>> {
    let Some(creds) = read_credentials(cfg, store)? else {
        return Ok(None);
    };
    let ca = &cfg.acme.directory;
    let acc = builder(cfg)?
        .from_credentials(creds)
        .await
        .map_err(acme_err(ca, "reading its directory".into()))?;
    Ok(Some(acc))
}

/// Ask the CA for the account that holds the stored key (RFC 8555 §7.3.1 onlyReturnExisting).
/// An account the CA does not know, or one that is deactivated, is `AccountDoesNotExist`.
pub(crate) async fn find_by_key(
    cfg: &Config,
    creds: &AccountCredentials,
) -> Result<(Account, AccountCredentials), AcmeError> {
    let ca = cfg.acme.directory.as_str();
    let what = "looking up the account by its key";
    let der = creds.private_key().clone_key();
    // Checked once here for its own error; each re-send below needs a builder of its own.
    builder(cfg).map_err(|e| AcmeError::Other {
        ca: ca.to_string(),
        what: what.to_string(),
        detail: format!("{e:#}"),
    })?;
    let from_key = || async {
        let key = instant_acme::Key::from_pkcs8_der(der.clone_key())?;
        let b = builder(cfg).map_err(|e| instant_acme::Error::Other(e.into()))?;
        b.from_key(
            (key, rustls_pki_types::PrivateKeyDer::Pkcs8(der.clone_key())),
            ca.to_string(),
        )
        .await
    };
    match resend_on_bad_nonce!(from_key().await) {
        Ok(x) => Ok(x),
        // Pebble and Boulder answer `unauthorized` for a deactivated account's key.
        Err(instant_acme::Error::Api(p))
            if matches!(problem_kind(&p), "accountDoesNotExist" | "unauthorized") =>
        {
            Err(AcmeError::AccountDoesNotExist {
                ca: ca.to_string(),
                what: what.to_string(),
                detail: describe_problem(&p),
            })
        }
        Err(e) => Err(AcmeError::from_acme(ca, what, e)),
    }
}

/// The account to order with: the stored one if the CA still knows it (looked up by its key),
/// else a new one (the old file is moved aside and the change logged), else — no file yet — a
/// new one, saved exclusively so that every node shares one.
pub async fn account(cfg: &Config, store: &Store) -> Result<Account> {
    if let Some(acc) = existing_account(cfg, store).await? {
        return Ok(acc);
    }
    let host = cfg.acme.account_dir();
    if let Some(aside) = store.retire_account(&host)? {
        tracing::warn!(
            ca = %cfg.acme.directory,
            old = %aside.display(),
            "the CA no longer knows the account in {}; creating a new account",
            store.account_path(&host).display()
        );
    }
    create_account(cfg, store).await
}

/// The stored account as the CA knows it, found by its key; None when there is no stored
/// account or the CA no longer knows it (then [`account`] creates one). Never creates: `issue`
/// runs this beside preflight, and a new account waits until preflight has passed.
pub(crate) async fn existing_account(cfg: &Config, store: &Store) -> Result<Option<Account>> {
    let host = cfg.acme.account_dir();
    let Some(creds) = read_credentials(cfg, store)? else {
        return Ok(None);
    };
    match find_by_key(cfg, &creds).await {
        Ok((acc, found)) => {
            if id_url(&found) != id_url(&creds) {
                // The CA moved the account URL: keep the file current.
                store.replace_account(&host, &serde_json::to_vec_pretty(&found)?)?;
            }
            Ok(Some(acc))
        }
        Err(AcmeError::AccountDoesNotExist { detail, .. }) => {
            tracing::debug!(ca = %cfg.acme.directory, "account lookup: {detail}");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

async fn create_account(cfg: &Config, store: &Store) -> Result<Account> {
    let host = cfg.acme.account_dir();
    let ca = &cfg.acme.directory;
    let contact: Vec<&str> = cfg.acme.contact.iter().map(String::as_str).collect();
    let eab = cfg.acme.eab.as_ref().map(eab_key).transpose()?;
    let what = match &cfg.acme.eab {
        Some(e) => format!(
            "creating an account with External Account Binding, key id {:?} and the HMAC key in {}; if the CA refuses, check both against what the CA gave",
            e.kid,
            e.hmac_key_file.display()
        ),
        None => "creating an account".into(),
    };
    let new_account = NewAccount {
        contact: &contact,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, creds) = resend_on_bad_nonce!(
        builder(cfg)?
            .create(&new_account, ca.clone(), eab.as_ref())
            .await
    )
    .map_err(acme_err(ca, what))?;
    if store.save_account(&host, &serde_json::to_vec_pretty(&creds)?)? {
        tracing::info!(ca = %ca, "created ACME account {}", account.id());
        Ok(account)
    } else {
        // Lost a creation race: use the saved account so every node shares one.
        let creds = read_credentials(cfg, store)?
            .ok_or_else(|| anyhow!("the account file vanished while it was being created"))?;
        Ok(find_by_key(cfg, &creds).await?.0)
    }
}

/// Largest EAB key file read (a base64url HMAC key is well under 200 bytes).
const EAB_FILE_MAX: u64 = 4096;

/// The External Account Binding key: read from its file, which must be a regular file (not a
/// symlink) readable by its owner only, owned by root (or the user running vipcert), at most
/// 4 KiB, holding one base64url HMAC key of at least 128 bits. The key is never logged.
pub(crate) fn eab_key(eab: &crate::config::Eab) -> Result<instant_acme::ExternalAccountKey> {
    let path = &eab.hmac_key_file;
    let name = || format!("acme.eab_hmac_key_file {}", path.display());
    let text = read_secret_file(path, &name)?;
    let key = decode_hmac_key(&text, &name)?;
    Ok(instant_acme::ExternalAccountKey::new(eab.kid.clone(), &key))
}

/// The text of the secret file at `path` (called `name()` in errors), refused unless it is a
/// regular file, readable by its owner only, owned by root or us, at most [`EAB_FILE_MAX`].
pub(crate) fn read_secret_file(path: &Path, name: &dyn Fn() -> String) -> Result<String> {
    use std::io::Read as _;
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};

    // O_NOFOLLOW: a symlink is refused, not followed; O_NONBLOCK: a FIFO cannot hang us.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_flags())
        .open(path)
        .with_context(|| {
            format!(
                "cannot open {} (it must be a regular file, not a symlink)",
                name()
            )
        })?;
    let md = f.metadata().with_context(name)?;
    if !md.file_type().is_file() {
        bail!("{} is not a regular file", name());
    }
    if md.mode() & 0o077 != 0 {
        bail!(
            "{} is readable by group or others (mode {:04o}); it holds a secret: chmod 600 it (owner root)",
            name(),
            md.mode() & 0o7777
        );
    }
    // Its owner may read and replace it: root, or the user vipcert runs as (labs).
    let me = rustix::process::geteuid().as_raw();
    if md.uid() != 0 && md.uid() != me {
        bail!(
            "{} is owned by uid {}, who can read or replace the secret: `chown root` it",
            name(),
            md.uid()
        );
    }
    if md.len() > EAB_FILE_MAX {
        bail!(
            "{} is larger than {EAB_FILE_MAX} bytes; it should hold only the base64url HMAC key",
            name()
        );
    }
    let mut text = String::new();
    f.take(EAB_FILE_MAX)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {} as text", name()))?;
    Ok(text)
}

/// One base64url HMAC key of at least 128 bits (padding and surrounding blanks allowed).
fn decode_hmac_key(text: &str, name: &dyn Fn() -> String) -> Result<Vec<u8>> {
    use base64::Engine as _;

    let b64 = text.trim().trim_end_matches('=');
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| {
            anyhow!(
                "{} does not hold a base64url HMAC key (letters, digits, '-' and '_' only)",
                name()
            )
        })?;
    if key.len() < 16 {
        bail!(
            "{} holds a key of {} bytes; the CA's HMAC keys are at least 16",
            name(),
            key.len()
        );
    }
    Ok(key)
}

fn libc_flags() -> i32 {
    (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32
}

/// The account URL inside stored credentials (instant-acme keeps the field private; its
/// serialized form has it as `id`).
pub(crate) fn id_url(creds: &AccountCredentials) -> Option<String> {
    serde_json::to_value(creds)
        .ok()?
        .get("id")?
        .as_str()
        .map(str::to_string)
}

/// The `Date` header of the CA's directory answer (RFC 9110 §6.6.1): how `check` and
/// `preflight` see this node's clock against the CA's. Reads no body; the caller bounds the
/// wait.
pub(crate) async fn directory_date(cfg: &Config) -> Result<SystemTime> {
    let req = axum::http::Request::get(cfg.acme.directory.as_str())
        .body(instant_acme::BodyWrapper::default())
        .context("the directory URL")?;
    let rsp = http_client(&cfg.acme)?
        .request(req)
        .await
        .map_err(|e| anyhow!("{}", error_chain(&e)))?;
    let date = rsp
        .parts
        .headers
        .get(axum::http::header::DATE)
        .context("its answer has no Date header")?;
    date.to_str()
        .ok()
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .with_context(|| format!("its Date header {date:?} is not an HTTP date"))
}

/// What the CA said to a revocation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Revocation {
    Revoked,
    /// `alreadyRevoked`: the CA had revoked it before (an earlier, interrupted run).
    AlreadyRevoked,
}

/// Revoke the certificate `der` (RFC 8555 §7.6) with the account, giving RFC 5280 `reason`.
pub(crate) async fn revoke(
    cfg: &Config,
    account: &Account,
    der: &[u8],
    reason: instant_acme::RevocationReason,
) -> Result<Revocation, AcmeError> {
    let cert = rustls_pki_types::CertificateDer::from(der);
    let req = instant_acme::RevocationRequest {
        certificate: &cert,
        reason: Some(reason),
    };
    match resend_on_bad_nonce!(account.revoke(&req).await) {
        Ok(()) => Ok(Revocation::Revoked),
        Err(instant_acme::Error::Api(p)) if problem_kind(&p) == "alreadyRevoked" => {
            Ok(Revocation::AlreadyRevoked)
        }
        Err(e) => Err(AcmeError::from_acme(
            &cfg.acme.directory,
            "revoking the certificate",
            e,
        )),
    }
}

/// A fresh private key of `kt`.
pub(crate) fn generate_key(kt: KeyType) -> Result<rcgen::KeyPair> {
    use rcgen::{RsaKeySize, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256};
    let k = match kt {
        KeyType::Rsa2048 => rcgen::KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048),
        KeyType::Rsa3072 => rcgen::KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_3072),
        KeyType::Rsa4096 => rcgen::KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_4096),
        KeyType::EcdsaP256 => rcgen::KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
        KeyType::EcdsaP384 => rcgen::KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384),
    };
    k.with_context(|| format!("cannot generate a {} key", kt.as_str()))
}

/// The CSR: subject CN = `names[0]` (GSI matches on it), SANs = `names` in this order.
pub(crate) fn csr(names: &[String], key: &rcgen::KeyPair) -> Result<Vec<u8>> {
    let mut p = rcgen::CertificateParams::new(names.to_vec()).context("CSR names")?;
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, names[0].as_str());
    Ok(p.serialize_request(key)
        .context("cannot sign the CSR")?
        .der()
        .to_vec())
}

/// What one successful order yields.
pub(crate) struct Finalized {
    pub(crate) cert_pem: String,
    pub(crate) chain_pem: String,
    pub(crate) key_pem: String,
    pub(crate) order_url: String,
}

/// Split a PEM chain into the leaf and the rest.
pub(crate) fn split_chain(pem: &str) -> Result<(String, String)> {
    let end = "-----END CERTIFICATE-----";
    let i = pem
        .find(end)
        .ok_or_else(|| anyhow!("the CA returned no certificate"))?
        + end.len();
    let leaf = format!("{}\n", pem[..i].trim_start());
    let rest = pem[i..].trim_start().to_string();
    Ok((leaf, rest))
}

/// One order to place.
pub(crate) struct OrderRequest<'a> {
    pub(crate) lineage: &'a Lineage,
    /// The certificate this one replaces (ARI, RFC 9773), sent as `replaces`.
    pub(crate) replaces: Option<instant_acme::CertificateIdentifier<'static>>,
    /// The new private key, being generated while preflight and the CA work.
    pub(crate) key: tokio::task::JoinHandle<Result<rcgen::KeyPair>>,
}

/// One http-01 challenge of a pending authorization: the name, and the file the CA will fetch
/// from it (`/.well-known/acme-challenge/<token>` holding the key authorization). Whoever
/// drives the order makes every name serve it before `PlacedOrder::set_ready`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Http01Challenge {
    pub(crate) name: String,
    /// base64url only (checked): safe as a file name.
    pub(crate) token: String,
    pub(crate) key_authorization: String,
}

/// An order the CA accepted, every authorization fetched once; its steps, in the order
/// `issue` runs them: `place` → `http01_challenges` → (the challenges served) → `set_ready`
/// → `poll_ready` → `finalize`. The authorization steps read the cached states and send
/// nothing but what they say.
pub(crate) struct PlacedOrder<'a> {
    order: instant_acme::Order,
    lineage: &'a Lineage,
    /// The CA's directory URL, which every error names.
    ca: &'a str,
    /// `[acme] timeout`: for the order to become ready, then for the certificate.
    timeout: Duration,
    key: tokio::task::JoinHandle<Result<rcgen::KeyPair>>,
    progress: &'a Progress,
}

impl<'a> PlacedOrder<'a> {
    /// New-order for the lineage's names (a configured profile the CA does not offer is
    /// refused first, before the CA sees an order it would reject or ignore), then every
    /// authorization fetched once.
    pub(crate) async fn place(
        cfg: &'a Config,
        account: &Account,
        req: OrderRequest<'a>,
        progress: &'a Progress,
    ) -> Result<PlacedOrder<'a>> {
        let OrderRequest {
            lineage,
            replaces,
            key,
        } = req;
        let (l, ca) = (&lineage.name, cfg.acme.directory.as_str());
        let ids: Vec<Identifier> = lineage
            .names
            .iter()
            .map(|n| Identifier::Dns(n.clone()))
            .collect();
        let mut new_order = NewOrder::new(&ids);
        if let Some(r) = replaces {
            new_order = new_order.replaces(r);
        }
        if let Some(p) = &cfg.acme.profile {
            offered_profile(account, ca, p)?;
            new_order = new_order.profile(p);
        }
        for n in &lineage.names {
            progress.step(l, n, "ordering");
        }
        let mut order = resend_on_bad_nonce!(account.new_order(&new_order).await)
            .map_err(acme_err(ca, format!("new order for {l} refused")))?;
        resend_on_bad_nonce!(fetch_authorizations(&mut order).await).map_err(acme_err(
            ca,
            format!("cannot fetch an authorization of {l}"),
        ))?;
        tracing::debug!(lineage = %l, url = %order.url(), "order created");
        Ok(PlacedOrder {
            order,
            lineage,
            ca,
            timeout: cfg.acme.timeout,
            key,
            progress,
        })
    }

    /// The http-01 challenge of every pending authorization; a valid one (reused by the CA) is
    /// already authorized and has none. Any other state, or no http-01 offered, or a token
    /// that is not base64url, fails the order.
    pub(crate) async fn http01_challenges(&mut self) -> Result<Vec<Http01Challenge>> {
        let (l, ca) = (&self.lineage.name, self.ca);
        let mut out = Vec::new();
        let mut authzs = self.order.authorizations();
        while let Some(a) = authzs.next().await {
            let mut a = a.map_err(acme_err(
                ca,
                format!("cannot fetch an authorization of {l}"),
            ))?;
            let name = a.identifier().to_string();
            match a.status {
                AuthorizationStatus::Valid => {
                    self.progress.step(l, &name, "already authorized");
                    continue;
                }
                AuthorizationStatus::Pending => {}
                s => bail!(
                    "authorization for {name} is {s:?}; the CA will not validate it in this order"
                ),
            }
            let ch = a
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| anyhow!("the CA offers no http-01 challenge for {name}"))?;
            let token = ch.token.clone();
            if !crate::store::valid_token(&token) {
                bail!("the CA sent a challenge token for {name} that is not base64url ({} chars); refusing to write it", token.len());
            }
            let key_authorization = ch.key_authorization().as_str().to_string();
            out.push(Http01Challenge {
                name,
                token,
                key_authorization,
            });
        }
        Ok(out)
    }

    /// Tell the CA every pending challenge is ready (cached authorizations: no extra round
    /// trips).
    pub(crate) async fn set_ready(&mut self) -> Result<()> {
        let (l, ca) = (&self.lineage.name, self.ca);
        let mut authzs = self.order.authorizations();
        while let Some(a) = authzs.next().await {
            let mut a = a.map_err(acme_err(
                ca,
                format!("cannot fetch an authorization of {l}"),
            ))?;
            if a.status != AuthorizationStatus::Pending {
                continue;
            }
            let name = a.identifier().to_string();
            let mut ch = a
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| anyhow!("no http-01 challenge for {name}"))?;
            resend_on_bad_nonce!(ch.set_ready().await)
                .map_err(acme_err(ca, format!("challenge for {name} refused")))?;
            self.progress.step(l, &name, "validating");
        }
        Ok(())
    }

    /// Wait until the CA has validated every name (`[acme] timeout`); if it failed some,
    /// an [`AcmeError::Validation`] saying which and what the CA saw.
    pub(crate) async fn poll_ready(&mut self) -> Result<()> {
        let l = &self.lineage.name;
        let status = resend_on_bad_nonce!(self.order.poll_ready(&retry_policy(self.timeout)).await)
            .map_err(acme_err(self.ca, format!("order for {l}")))?;
        if status != OrderStatus::Ready {
            let failures = self.validation_failures(status).await;
            return Err(AcmeError::Validation {
                ca: self.ca.to_string(),
                lineage: l.clone(),
                failures,
            }
            .into());
        }
        for n in &self.lineage.names {
            self.progress.step(l, n, "valid; finalizing");
        }
        Ok(())
    }

    /// Which names failed and what the CA saw (the order as a whole when no authorization
    /// says).
    async fn validation_failures(&mut self, status: OrderStatus) -> Vec<NameFailure> {
        let l = &self.lineage.name;
        let mut why = Vec::new();
        let mut authzs = self.order.authorizations();
        while let Some(Ok(mut a)) = authzs.next().await {
            let name = a.identifier().to_string();
            let _ = a.refresh().await;
            if a.status == AuthorizationStatus::Invalid {
                let err = a
                    .challenges
                    .iter()
                    .filter_map(|c| c.error.as_ref())
                    .map(describe_problem)
                    .next()
                    .unwrap_or_else(|| "no detail".into());
                self.progress.finish(l, &name, false, &err);
                why.push(NameFailure { name, detail: err });
            }
        }
        if why.is_empty() {
            why.push(NameFailure {
                name: l.clone(),
                detail: format!("the order is {status:?}"),
            });
        }
        why
    }

    /// Finalize with our CSR (for the key generated meanwhile) and download the chain.
    pub(crate) async fn finalize(mut self) -> Result<Finalized> {
        let (l, ca) = (&self.lineage.name, self.ca);
        let key = self.key.await.context("key generation task")??;
        let csr = csr(&self.lineage.names, &key)?;
        resend_on_bad_nonce!(self.order.finalize_csr(&csr).await)
            .map_err(acme_err(ca, format!("finalize of {l} refused")))?;
        let chain = resend_on_bad_nonce!(
            self.order
                .poll_certificate(&retry_policy(self.timeout))
                .await
        )
        .map_err(acme_err(ca, format!("certificate of {l}")))?;
        let (cert_pem, chain_pem) = split_chain(&chain)?;
        Ok(Finalized {
            cert_pem,
            chain_pem,
            key_pem: key.serialize_pem(),
            order_url: self.order.url().to_string(),
        })
    }
}

/// `[acme] profile` against the profiles the CA's directory offers.
fn offered_profile(account: &Account, ca: &str, profile: &str) -> Result<()> {
    let mut offered: Vec<String> = account.profiles().map(|m| m.name.to_string()).collect();
    if offered.iter().any(|o| o == profile) {
        return Ok(());
    }
    offered.sort();
    Err(AcmeError::ProfileNotOffered {
        ca: ca.to_string(),
        profile: profile.to_string(),
        offered,
    }
    .into())
}

/// How the order and its certificate are polled. instant-acme sleeps before its first poll:
/// keep that short (Pebble answers within milliseconds; a slower CA stretches the backoff or
/// sends Retry-After).
fn retry_policy(timeout: Duration) -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(10))
        .backoff(1.5)
        .timeout(timeout)
}

/// Fetch the state of every authorization of a new order, each once; the steps that follow
/// read the cached states and send nothing (a failed fetch inside them would skip that
/// authorization). Run again after a `badNonce`, it fetches only what is still missing.
async fn fetch_authorizations(order: &mut instant_acme::Order) -> Result<(), instant_acme::Error> {
    let mut authzs = order.authorizations();
    while let Some(a) = authzs.next().await {
        a?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(kind: &str) -> instant_acme::Error {
        instant_acme::Error::Api(instant_acme::Problem {
            r#type: Some(format!("urn:ietf:params:acme:error:{kind}")),
            detail: None,
            status: Some(400),
            subproblems: vec![],
        })
    }

    /// A request the CA refuses for its nonce is sent again, up to the bound; any other
    /// answer ends it at once.
    #[tokio::test]
    async fn bad_nonce_is_sent_again_up_to_the_bound() {
        let sent = std::cell::Cell::new(0u32);
        // Refused `refusals` times, then accepted.
        let request = |refusals: u32| {
            sent.set(sent.get() + 1);
            let n = sent.get();
            async move {
                if n <= refusals {
                    Err(problem("badNonce"))
                } else {
                    Ok(n)
                }
            }
        };
        let r = resend_on_bad_nonce!(request(BAD_NONCE_ROUNDS).await);
        assert_eq!(r.unwrap(), BAD_NONCE_ROUNDS + 1);

        sent.set(0);
        let r = resend_on_bad_nonce!(request(BAD_NONCE_ROUNDS + 1).await);
        assert!(is_bad_nonce(&r.unwrap_err()), "gives up after the bound");
        assert_eq!(sent.get(), BAD_NONCE_ROUNDS + 1);

        sent.set(0);
        let r: Result<u32, _> = resend_on_bad_nonce!({
            sent.set(sent.get() + 1);
            Err(problem("rateLimited"))
        });
        assert!(!is_bad_nonce(&r.unwrap_err()));
        assert_eq!(sent.get(), 1, "other errors are not sent again");
    }

    #[test]
    fn csr_has_cn_and_sans_in_order() {
        use x509_parser::prelude::FromDer;
        let key = generate_key(KeyType::EcdsaP256).unwrap();
        let names: Vec<String> = ["vip.example.org", "b.example.org", "a.example.org"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let der = csr(&names, &key).unwrap();
        let (_, req) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&der).unwrap();
        let cn = req
            .certification_request_info
            .subject
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(cn, "vip.example.org");
        let mut sans = Vec::new();
        for ext in req.requested_extensions().unwrap() {
            if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(s) = ext {
                for n in &s.general_names {
                    if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                        sans.push(d.to_string());
                    }
                }
            }
        }
        assert_eq!(sans, names);
    }

    #[test]
    fn rsa_key_sizes() {
        let k = generate_key(KeyType::Rsa2048).unwrap();
        let (c, _) = {
            let p = rcgen::CertificateParams::new(vec!["a.example.org".to_string()]).unwrap();
            (p.self_signed(&k).unwrap().pem(), ())
        };
        assert_eq!(
            crate::cert::leaf_info(c.as_bytes()).unwrap().key_type,
            "rsa2048"
        );
    }

    #[test]
    fn retry_after_travels_as_data() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = parse_retry_after("120", now).unwrap();
        assert_eq!(at, now + Duration::from_secs(120));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now).unwrap(),
            std::time::UNIX_EPOCH + Duration::from_secs(784111777)
        );
        assert!(parse_retry_after("soon", now).is_none());
        // Bounded in both forms: a year at most.
        let year = now + Duration::from_secs(366 * 86400);
        for far in [
            "Fri, 31 Dec 9999 23:59:59 GMT",
            "18446744073709551615",
            "99999999999999999999999999",
        ] {
            assert_eq!(parse_retry_after(far, now), Some(year), "{far}");
        }
        let p: instant_acme::Problem = serde_json::from_slice(
            br#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many","status":429}"#,
        )
        .unwrap();
        let answer = CaAnswer {
            status: 429,
            problem: Some(p),
            retry_after: Some(at),
        };
        let e = AcmeError::from_acme(
            "https://ca.example/dir",
            "new order",
            instant_acme::Error::Other(Box::new(answer)),
        );
        assert!(matches!(e, AcmeError::RateLimited { .. }), "{e:?}");
        assert_eq!(e.retry_after(), Some(at));
        assert!(e.falls_through());
        let msg = e.to_string();
        assert!(msg.starts_with("the CA https://ca.example/dir "), "{msg}");
        assert!(msg.contains("too many"), "{msg}");
        // Found again through anyhow context layers.
        let any = anyhow::Error::from(e).context("renewing vip.example.org");
        assert_eq!(
            AcmeError::find(&any).and_then(|e| e.retry_after()),
            Some(at)
        );
    }

    /// What instant-acme reads when polling and for renewalInfo is bounded, whatever the CA
    /// wrote; and the retry note formats any time.
    #[test]
    fn retry_after_header_is_bounded_before_instant_acme_reads_it() {
        use http::{header::RETRY_AFTER, HeaderMap, HeaderValue};
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let bounded = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
            bound_retry_after(&mut h, now);
            h.get(RETRY_AFTER).map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(bounded("120").as_deref(), Some("120"));
        assert_eq!(bounded("18446744073709551615").as_deref(), Some("31622400"));
        assert_eq!(
            bounded("Fri, 31 Dec 9999 23:59:59 GMT").as_deref(),
            Some("31622400")
        );
        assert_eq!(
            bounded("Sun, 06 Nov 1994 08:49:37 GMT").as_deref(),
            Some("0")
        );
        assert_eq!(bounded("soon"), None);
        let mut h = HeaderMap::new();
        bound_retry_after(&mut h, now);
        assert!(h.is_empty());

        for t in [i64::MIN, -1, 253_402_300_800, i64::MAX] {
            let at = if t < 0 {
                std::time::UNIX_EPOCH - Duration::from_secs(t.unsigned_abs().min(1 << 40))
            } else {
                std::time::UNIX_EPOCH + Duration::from_secs(t as u64)
            };
            let note = retry_note(Some(at));
            assert!(
                note.starts_with(" (retry after ") && note.ends_with("Z)"),
                "{t}: {note}"
            );
        }
    }

    #[test]
    fn failures_are_classified() {
        let ca = "https://ca.example/dir";
        let api = |t: &str, status: u16| {
            instant_acme::Error::Api(
                serde_json::from_value(serde_json::json!({
                    "type": format!("urn:ietf:params:acme:error:{t}"),
                    "detail": "d",
                    "status": status
                }))
                .unwrap(),
            )
        };
        let e = AcmeError::from_acme(ca, "x", api("accountDoesNotExist", 400));
        assert!(matches!(e, AcmeError::AccountDoesNotExist { .. }));
        assert!(!e.falls_through());
        let e = AcmeError::from_acme(ca, "x", api("serverInternal", 500));
        assert!(matches!(e, AcmeError::ServerError { status: 500, .. }));
        assert!(e.falls_through());
        let e = AcmeError::from_acme(ca, "x", api("malformed", 400));
        assert!(matches!(e, AcmeError::Refused { .. }));
        assert!(!e.falls_through());
        let answer = CaAnswer {
            status: 503,
            problem: None,
            retry_after: None,
        };
        let e = AcmeError::from_acme(ca, "x", instant_acme::Error::Other(Box::new(answer)));
        assert!(matches!(e, AcmeError::ServerError { status: 503, .. }));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = AcmeError::from_acme(ca, "x", instant_acme::Error::Other(Box::new(io)));
        assert!(matches!(e, AcmeError::Unreachable { .. }));
        assert!(e.falls_through());
        let v = AcmeError::Validation {
            ca: ca.into(),
            lineage: "vip".into(),
            failures: vec![],
        };
        assert!(!v.falls_through());
    }

    /// `read_answer` on an answer of `status` with `headers` and `body`; the fault, if any.
    async fn read<B>(status: u16, headers: &[(&str, &str)], body: B) -> Option<Fault>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut r = http::Response::builder().status(status);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        match read_answer(r.body(body).unwrap()).await {
            Ok(_) => None,
            Err(Read::Fault(f)) => Some(f),
            Err(Read::Http(e)) => panic!("HTTP error {e}"),
        }
    }

    /// A body without a length, in chunks of `chunk` bytes, `total` in all.
    fn chunked(
        total: usize,
        chunk: usize,
    ) -> http_body_util::StreamBody<
        impl futures_util::Stream<
                Item = Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>,
            > + Unpin,
    > {
        let sizes = (0..total.div_ceil(chunk)).map(move |i| chunk.min(total - i * chunk));
        http_body_util::StreamBody::new(futures_util::stream::iter(
            sizes.map(|n| Ok(hyper::body::Frame::data(bytes::Bytes::from(vec![b' '; n])))),
        ))
    }

    /// Up to [`MAX_ANSWER`] is read, announced or not; one byte more is refused, before
    /// reading when announced, else when the body grows past it; a redirect is refused.
    #[tokio::test]
    async fn answers_are_held_to_the_cap_and_redirects_refused() {
        use http_body_util::Full;
        let cap = MAX_ANSWER as usize;
        let full = |n: usize| Full::new(bytes::Bytes::from(vec![b' '; n]));
        assert_eq!(read(200, &[], full(cap)).await, None);
        assert_eq!(read(200, &[], chunked(cap, 4096)).await, None);
        assert_eq!(
            read(200, &[], full(cap + 1)).await,
            Some(Fault::Announced(MAX_ANSWER + 1))
        );
        assert_eq!(
            read(200, &[], chunked(cap + 1, 4096)).await,
            Some(Fault::TooLarge)
        );
        assert_eq!(
            read(500, &[], chunked(cap + 1, 4096)).await,
            Some(Fault::TooLarge),
            "error bodies too"
        );
        let long = format!("https://other.example/{}", "a".repeat(1000));
        match read(301, &[("location", &long)], full(0)).await {
            Some(Fault::Redirect {
                status: 301,
                location,
            }) => {
                assert!(location.starts_with("https://other.example/aaa"));
                assert!(location.chars().count() <= MAX_SHOWN + 1, "{location}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            read(302, &[], full(0)).await,
            Some(Fault::Redirect {
                status: 302,
                location: "(no Location)".into()
            })
        );
    }

    /// A bad answer names the CA, what was being done, the request, what the CA did, and what
    /// to do; the next CA is tried.
    #[test]
    fn bad_answers_name_the_ca_and_fall_through() {
        let ca = "https://ca.example/dir";
        let bad = BadAnswer {
            method: "GET".into(),
            url: ca.into(),
            fault: Fault::Deadline(Duration::from_secs(30)),
        };
        let e = AcmeError::from_acme(
            ca,
            "reading its directory",
            instant_acme::Error::Other(Box::new(bad.clone())),
        );
        assert!(
            matches!(&e, AcmeError::BadAnswer { answer, .. } if *answer == bad),
            "{e:?}"
        );
        assert!(e.falls_through());
        let msg = e.to_string();
        assert!(
            msg.starts_with("the CA https://ca.example/dir did not answer within 30s (reading its directory: GET https://ca.example/dir) — "),
            "{msg}"
        );
        assert!(msg.contains("acme.request_timeout"), "{msg}");
        let big = Fault::TooLarge.to_string();
        assert_eq!(big, "sent more than 1 MiB");
    }

    #[test]
    fn split_chain_separates_leaf() {
        let (a, _) = crate::cert::tests::make(&["a.example.org"]);
        let (b, _) = crate::cert::tests::make(&["b.example.org"]);
        let (leaf, rest) = split_chain(&format!("{a}\n{b}")).unwrap();
        assert_eq!(crate::cert::pem_certs(leaf.as_bytes()).unwrap().len(), 1);
        assert_eq!(crate::cert::pem_certs(rest.as_bytes()).unwrap().len(), 1);
        assert!(split_chain("nothing").is_err());
    }
}
