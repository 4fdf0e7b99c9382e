//! The node server's routes: `/.well-known/acme-challenge/<token>` (HTTP-01, for the CA),
//! `/.well-known/vipcert/challenges/<t1,t2,...>` (the readiness barrier's batch check),
//! `/.well-known/vipcert/health` (for the balancer) and `/.well-known/vipcert/status` (for
//! `check --fleet`), and which requests skip the router (`fast_token`).
//!
//! Owns the handlers and the rules of their answers (token pattern, batch size, when health
//! says 503: `Health`), and counts each challenge and batch answer. It does not read the
//! webroot itself (`token`), take the status document or health verdict (`cache`), decide
//! whether a request gets a turn (`rations`) or check its Host (`host`): `conn` does those
//! before a request reaches a route.

use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::Full;

use super::cache::NodeServer;
use super::counters::{Batch, Challenge};
use super::token;
use crate::store::{valid_token, MAX_TOKEN_FILE};

/// A health verdict older than this means the check itself hangs (a hard NFS mount that
/// stopped answering): the route then says 503, as the share is of no use either. The same
/// bound after which the challenge routes stop reading the share.
const HEALTH_STALE: Duration = token::HUNG_AFTER;

/// The node server's routes: HTTP-01 tokens, challenge batches, health and status.
pub(super) fn router(server: &NodeServer) -> Router {
    Router::new()
        .route("/.well-known/acme-challenge/{token}", get(challenge))
        .route("/.well-known/vipcert/challenges/{tokens}", get(challenges))
        .route("/.well-known/vipcert/health", get(health))
        .route("/.well-known/vipcert/status", get(status))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(server.clone())
}

/// A `text/plain` answer.
pub(super) fn text(code: StatusCode, body: Vec<u8>) -> Response {
    let mut r = (code, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// The prefix of the challenge route; what follows is the token.
const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

async fn challenge(State(s): State<NodeServer>, UrlPath(token): UrlPath<String>) -> Response {
    if !valid_token(&token) {
        s.counters().challenge(Challenge::NotFound);
        return StatusCode::NOT_FOUND.into_response();
    }
    token_response(&s, &token).await.into_response()
}

/// The answer for a valid `token`, read where `token::place` says: in place (a ~90-byte
/// no-follow read costs less than the hop to the blocking pool, and a pool shared with
/// slower work is what made this route wait, issue 9), on the pool when that could stall
/// the server on a share that hangs, or not at all (503) when it hangs.
pub(super) async fn token_response(s: &NodeServer, token: &str) -> http::Response<Full<Bytes>> {
    let r = read_token(s, token).await;
    s.counters().challenge(match r.status() {
        StatusCode::OK => Challenge::Served,
        StatusCode::NOT_FOUND => Challenge::NotFound,
        _ => Challenge::Unavailable,
    });
    r
}

/// `token_response`'s read.
async fn read_token(s: &NodeServer, token: &str) -> http::Response<Full<Bytes>> {
    let now = Instant::now();
    let (place, in_place) = s.webroot().place(now);
    match place {
        token::Place::Here => {
            let r = token::respond_at(s.webroot(), token, now);
            drop(in_place);
            r
        }
        token::Place::Pool => {
            let (s, token) = (s.clone(), token.to_string());
            token::from_pool(move || token::respond(s.webroot(), &token))
                .await
                .unwrap_or_else(token::unavailable)
        }
        token::Place::Hung => token::unavailable(),
    }
}

/// Most tokens in one `/.well-known/vipcert/challenges/` request (a certificate has at most
/// 100 names).
const MAX_BATCH_TOKENS: usize = 100;

/// `/.well-known/vipcert/challenges/{t1,t2,...}`: the readiness barrier's batch check. One
/// line per token, in order: `+<content>` when the file is served, `-` when not. Same rules
/// as the challenge route (token pattern, no-follow open, size cap).
async fn challenges(State(s): State<NodeServer>, UrlPath(tokens): UrlPath<String>) -> Response {
    let r = batch(&s, tokens).await;
    s.counters().batch(match r.status() {
        StatusCode::OK => Batch::Answered,
        StatusCode::BAD_REQUEST => Batch::BadRequest,
        _ => Batch::Unavailable,
    });
    r
}

/// `challenges`' answer.
async fn batch(s: &NodeServer, tokens: String) -> Response {
    let tokens: Vec<String> = tokens.split(',').map(str::to_string).collect();
    if tokens.len() > MAX_BATCH_TOKENS || !tokens.iter().all(|t| valid_token(t)) {
        return StatusCode::BAD_REQUEST.into_response();
    }
    // Same gate as the challenge route: never wait on a share that hangs.
    if s.webroot().place(Instant::now()).0 == token::Place::Hung {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let (server, s) = (s.clone(), s.clone());
    let read = move || -> std::io::Result<Vec<u8>> {
        let dir = s.webroot().open()?;
        let mut out = Vec::new();
        for t in &tokens {
            match dir.read_served(t, MAX_TOKEN_FILE) {
                Ok(body) if !body.contains(&b'\n') => {
                    out.push(b'+');
                    out.extend_from_slice(&body);
                }
                _ => out.push(b'-'),
            }
            out.push(b'\n');
        }
        Ok(out)
    };
    match token::from_pool(read).await {
        Some(Ok(body)) => text(StatusCode::OK, body),
        Some(Err(e)) => {
            server.webroot().warn_unreadable(&e);
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// What the health route says now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Health {
    /// 200: the shared directory lists and the webroot opens.
    Ok,
    /// 503: the last check found the shared directory or the webroot unreadable.
    Unreadable,
    /// 503: the check has not come back for this long (a hung NFS mount?).
    Hung(Duration),
}

impl Health {
    /// The verdict `s` holds, as of now: a verdict older than `HEALTH_STALE` is `Hung`.
    pub(super) fn of(s: &NodeServer) -> Health {
        let (at, ok) = s.health();
        let age = at.elapsed();
        if age > HEALTH_STALE {
            Health::Hung(age)
        } else if ok {
            Health::Ok
        } else {
            Health::Unreadable
        }
    }
}

/// The health verdict of at most a second ago: never rationed (the balancer's checks share
/// their address with every client it proxies) and so never a file-system call per request.
async fn health(State(s): State<NodeServer>) -> Response {
    match Health::of(&s) {
        Health::Hung(age) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the shared directory check has not come back for {} s (a hung NFS mount?)\n",
                age.as_secs()
            )
            .into_bytes(),
        ),
        Health::Ok => text(StatusCode::OK, b"ok\n".to_vec()),
        Health::Unreadable => text(
            StatusCode::SERVICE_UNAVAILABLE,
            b"shared directory or webroot unreadable\n".to_vec(),
        ),
    }
}

async fn status(State(s): State<NodeServer>) -> Response {
    let body = s.status_body();
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The token of a `GET /.well-known/acme-challenge/<token>` whose token is valid as it
/// stands: such a request is answered without the router (it is the route the CA needs,
/// and the router's matching, extraction and boxing were a third of its cost). Anything
/// else, including a token the router would percent-decode first, goes to the router.
pub(super) fn fast_token<B>(req: &hyper::Request<B>) -> Option<&str> {
    if req.method() != http::Method::GET {
        return None;
    }
    let token = req.uri().path().strip_prefix(CHALLENGE_PREFIX)?;
    valid_token(token).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Status;

    /// Health answers its last verdict, and 503 once that verdict is older than
    /// HEALTH_STALE: the check hangs (a dead hard NFS mount), so the share is of no use.
    #[tokio::test]
    async fn health_is_503_when_its_check_has_not_come_back() {
        let t = tempfile::tempdir().unwrap();
        let web = t.path().join("webroot");
        std::fs::create_dir(&web).unwrap();
        let server = NodeServer::new(web, t.path().to_path_buf(), || Status {
            node: "n".into(),
            lineages: vec![],
            targets: vec![],
        });
        assert_eq!(health(State(server.clone())).await.status(), StatusCode::OK);
        let long_ago = std::time::Instant::now()
            .checked_sub(HEALTH_STALE + Duration::from_secs(1))
            .unwrap();
        server.set_health_taken_at(long_ago);
        let r = health(State(server.clone())).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        // The next verdict (the refresher's) brings it back.
        server.refresh_health();
        assert_eq!(health(State(server)).await.status(), StatusCode::OK);
    }
}
