//! The Host rule of the node server (RFC 9112 section 3.2): which requests are a 400 because
//! of their Host field or the authority of their absolute-form target.
//!
//! Owns the rule and its verdicts only (pure, unit-tested); the connection loop (`conn`)
//! answers them. It does not route by Host: every name of a node is served the same files.
//!
//! Which values are invalid is nginx's rule (`ngx_http_validate_host`), so that whatever a CA
//! or a probe gets from nginx it gets from vipcert: a value that is empty once the port and
//! one trailing dot are gone, holds `..`, `/`, NUL, a control character or a space. Port,
//! trailing dot, upper case, IPv6 literals and odd but harmless bytes pass.

use axum::http::header;

/// Why a request's Host is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HostError {
    /// HTTP/1.1 with no Host field.
    Missing,
    /// More than one Host field (any version).
    Repeated,
    /// A Host field, or the authority of an absolute-form target, that is not a host.
    Invalid,
}

impl HostError {
    /// The 400's body: what is wrong, for whoever reads it.
    pub(super) fn message(self) -> &'static [u8] {
        match self {
            HostError::Missing | HostError::Repeated => b"exactly one Host header is required\n",
            HostError::Invalid => b"invalid Host header\n",
        }
    }
}

/// The Host rule on `req`: HTTP/1.1 needs exactly one Host field, HTTP/1.0 at most one, and
/// every Host value and absolute-form authority must pass [`valid_host`].
pub(super) fn check<B>(req: &hyper::Request<B>) -> Result<(), HostError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(HostError::Repeated);
    }
    match host {
        None if !matches!(
            req.version(),
            hyper::Version::HTTP_10 | hyper::Version::HTTP_09
        ) =>
        {
            return Err(HostError::Missing)
        }
        Some(h) if !valid_host(h.as_bytes()) => return Err(HostError::Invalid),
        _ => {}
    }
    match req.uri().authority() {
        Some(a) if !valid_host(a.as_str().as_bytes()) => Err(HostError::Invalid),
        _ => Ok(()),
    }
}

/// nginx's Host rule: no `..`, `/`, NUL, control character, space or DEL anywhere in the
/// value, and something left of the host part (up to a `:` outside an IPv6 literal) once one
/// trailing dot is dropped.
pub(super) fn valid_host(value: &[u8]) -> bool {
    #[derive(PartialEq)]
    enum State {
        Host,
        Literal,
        /// Past the host part (the port, or whatever follows a literal).
        Rest,
    }
    let mut state = State::Host;
    let mut host_len = value.len();
    let mut last_dot: Option<usize> = None;
    for (i, &b) in value.iter().enumerate() {
        match b {
            b'.' => {
                if last_dot.is_some_and(|d| d + 1 == i) {
                    return false;
                }
                last_dot = Some(i);
            }
            b':' if state == State::Host => {
                host_len = i;
                state = State::Rest;
            }
            b'[' if i == 0 => state = State::Literal,
            b']' if state == State::Literal => {
                host_len = i + 1;
                state = State::Rest;
            }
            b'/' | 0..=b' ' | 0x7f => return false,
            _ => {}
        }
    }
    if host_len > 0 && last_dot == Some(host_len - 1) {
        host_len -= 1;
    }
    host_len > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_nginx_serves_is_valid() {
        for h in [
            "gridftp.example.org",
            "gridftp.example.org:80",
            "gridftp.example.org.",
            "gridftp.example.org.:80",
            "GRIDFTP.EXAMPLE.ORG",
            "[::1]",
            "[::1]:80",
            "127.0.0.1",
            "a_b",
            ".a",
            "a:xyz",
            "a\\b",
            "a%2fb",
            "[::1",
        ] {
            assert!(valid_host(h.as_bytes()), "{h:?}");
        }
        assert!(valid_host(b"a\xff\xfeb"));
    }

    #[test]
    fn what_nginx_refuses_is_invalid() {
        for h in [
            "", ":80", ".", ".:80", "..", "a..b", "a/b", "/", "a b", "a\tb", "a\0b", "[a..b]",
            "a\x7fb", "a\x01b", "a:8/0", "a:1..2",
        ] {
            assert!(!valid_host(h.as_bytes()), "{h:?}");
        }
    }

    fn req(version: hyper::Version, target: &str, hosts: &[&str]) -> hyper::Request<()> {
        let mut b = hyper::Request::builder().version(version).uri(target);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn one_host_for_http11_at_most_one_for_http10() {
        const HTTP_10: hyper::Version = hyper::Version::HTTP_10;
        const HTTP_11: hyper::Version = hyper::Version::HTTP_11;
        assert_eq!(check(&req(HTTP_11, "/t", &["a"])), Ok(()));
        assert_eq!(check(&req(HTTP_11, "/t", &[])), Err(HostError::Missing));
        assert_eq!(
            check(&req(HTTP_11, "/t", &["a", "a"])),
            Err(HostError::Repeated)
        );
        assert_eq!(check(&req(HTTP_10, "/t", &[])), Ok(()));
        assert_eq!(
            check(&req(HTTP_10, "/t", &["a", "b"])),
            Err(HostError::Repeated)
        );
        assert_eq!(
            check(&req(HTTP_10, "/t", &["a/b"])),
            Err(HostError::Invalid)
        );
    }

    #[test]
    fn an_absolute_form_authority_is_held_to_the_same_rule() {
        const HTTP_11: hyper::Version = hyper::Version::HTTP_11;
        assert_eq!(
            check(&req(HTTP_11, "http://a.example:80/t", &["x"])),
            Ok(())
        );
        assert_eq!(
            check(&req(HTTP_11, "http://a..b/t", &["x"])),
            Err(HostError::Invalid)
        );
        assert_eq!(
            check(&req(HTTP_11, "http://a.example/t", &["a b"])),
            Err(HostError::Invalid)
        );
    }
}
