//! The HTTP client every request to the CA goes through: TCP_NODELAY, the Mozilla roots plus
//! `ca_roots`, one deadline per request (`[acme] request_timeout`), every answer capped at
//! [`MAX_ANSWER`], redirects refused, and Retry-After bounded before instant-acme reads it.
//!
//! Owns what a bad answer is (`BadAnswer`, `Fault`) and the 429/5xx answer kept as data
//! (`CaAnswer`). It does not word errors for people (`error`) nor know any ACME resource.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};

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
    pub(super) fn hint(&self) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::error::{retry_note, AcmeError};

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
}
