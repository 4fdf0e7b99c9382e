//! The CA's errors as data (`AcmeError`: validation, rate limit, CA failure, bad answer,
//! profile not offered …), their wording for people, and the `badNonce` re-send
//! (`resend_on_bad_nonce!`) every request to the CA goes through.
//!
//! It does not send requests (`client`, `account`, `order` do) nor decide what a failure
//! leads to (fallback, backoff: `issue` and `attempts` branch on `AcmeError`).

use std::time::SystemTime;

use super::client::{BadAnswer, CaAnswer};

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
    /// The configured `profile` (of the key `key`: `acme.profile`, a fallback's or a named
    /// CA's) is not among those the CA's directory offers (nothing ordered).
    #[error("the CA {ca} does not offer the profile {profile:?} of {key}; it offers: {} — set {key} to one of them, or remove it", if offered.is_empty() { "none (its directory lists no profiles)".to_string() } else { offered.join(", ") })]
    ProfileNotOffered {
        ca: String,
        profile: String,
        key: String,
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

pub(super) fn retry_note(at: Option<SystemTime>) -> String {
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

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
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
pub(super) fn problem_kind(p: &instant_acme::Problem) -> &str {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::client::Fault;
    use std::time::Duration;

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
}
