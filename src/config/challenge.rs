//! `[challenge]` and `[challenge.dns]`: which ACME challenge proves each name (http-01 by
//! default; `[[node]] challenge` overrides it for a node's own name, the virtual hostname
//! follows `[challenge]`), and how DNS-01 places its TXT records (RFC 2136 with TSIG, or a
//! program speaking lego's exec protocol).
//!
//! Owns these keys' types and rules. It does not read the TSIG key file (that is `dns`, when
//! the key is used: the file is root's) nor speak DNS.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::ctx::Ctx;
use super::raw::{RawChallenge, RawDns};
use super::values::{abs_path, duration, one_of, optional, socket_addr, PathKind};

/// An ACME challenge type vipcert can answer: how the CA is to validate a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChallengeKind {
    /// A file under `/.well-known/acme-challenge/` on port 80 of every address of the name.
    #[default]
    Http01,
    /// A TXT record at `_acme-challenge.<name>`, placed for each order.
    Dns01,
    /// One persistent TXT record at `_validation-persist.<name>` binding it to the account.
    DnsPersist01,
}

/// The spellings of `type` and `[[node]] challenge`.
pub(super) const TYPES: &[(&str, ChallengeKind)] = &[
    ("http-01", ChallengeKind::Http01),
    ("dns-01", ChallengeKind::Dns01),
    ("dns-persist-01", ChallengeKind::DnsPersist01),
];

impl ChallengeKind {
    /// As the config spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::Dns01 => "dns-01",
            ChallengeKind::DnsPersist01 => "dns-persist-01",
        }
    }
}

impl std::fmt::Display for ChallengeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The HMAC of the TSIG key (`tsig_algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsigAlg {
    /// hmac-sha256 (the default; what `tsig-keygen` makes).
    HmacSha256,
    /// hmac-sha512.
    HmacSha512,
}

impl TsigAlg {
    /// "hmac-sha256" or "hmac-sha512" (case-insensitive, trailing dot allowed), as a BIND key
    /// statement may spell it.
    pub fn parse(s: &str) -> Option<TsigAlg> {
        match s.trim_end_matches('.').to_ascii_lowercase().as_str() {
            "hmac-sha256" => Some(TsigAlg::HmacSha256),
            "hmac-sha512" => Some(TsigAlg::HmacSha512),
            _ => None,
        }
    }

    /// As the config and BIND spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            TsigAlg::HmacSha256 => "hmac-sha256",
            TsigAlg::HmacSha512 => "hmac-sha512",
        }
    }
}

/// How TXT records are placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsMethod {
    /// RFC 2136 updates signed with TSIG, sent to the primary `server`.
    Rfc2136 {
        /// ip:port of the primary that takes updates.
        server: std::net::SocketAddr,
        /// The TSIG key's name.
        tsig_key_name: String,
        /// hmac-sha256 (default) or hmac-sha512.
        tsig_algorithm: TsigAlg,
        /// The root-only file holding the secret.
        tsig_secret_file: PathBuf,
    },
    /// `program present|cleanup <fqdn> <value>` (lego's exec protocol).
    Exec {
        /// The program's absolute path.
        program: PathBuf,
    },
}

/// `[challenge.dns]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// rfc2136 or exec.
    pub method: DnsMethod,
    /// The zone updates go to, absolute ("example.org."); found by SOA lookup when None.
    pub zone: Option<String>,
    /// Bound of the propagation barrier.
    pub propagation_timeout: Duration,
}

/// `[challenge]`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Challenge {
    /// The method of the virtual hostname and of every node without its own.
    pub kind: ChallengeKind,
    /// `[challenge.dns]` when present.
    pub dns: Option<DnsConfig>,
}

/// Default bound of the propagation barrier.
const PROPAGATION_DEFAULT: Duration = Duration::from_secs(120);

impl Challenge {
    /// `[challenge]`; `node_types` are the `[[node]] challenge` overrides (with their spans):
    /// `[challenge.dns]` is required as soon as any name uses a DNS method.
    pub(super) fn from_raw(
        raw: &RawChallenge,
        node_types: &[(ChallengeKind, std::ops::Range<usize>)],
        cx: &Ctx,
    ) -> anyhow::Result<Challenge> {
        let kind = optional(&raw.kind, ChallengeKind::Http01, |v| {
            one_of(cx, "challenge.type", v, TYPES)
        })?;
        let dns = match &raw.dns {
            Some(d) => Some(dns_from_raw(d, cx)?),
            None => None,
        };
        let dns_user = std::iter::once((kind, raw.kind.as_ref().map_or(0..0, |k| k.span())))
            .chain(node_types.iter().cloned())
            .find(|(t, _)| *t == ChallengeKind::Dns01);
        if let (Some((_, span)), None) = (dns_user, &dns) {
            return cx.err(
                span,
                "challenge.dns",
                "dns-01 needs a [challenge.dns] section: method = \"rfc2136\" (server, tsig_key_name, tsig_secret_file) or \"exec\" (program)",
            );
        }
        Ok(Challenge { kind, dns })
    }
}

const METHODS: &[(&str, bool)] = &[("rfc2136", true), ("exec", false)];

fn dns_from_raw(d: &Spanned<RawDns>, cx: &Ctx) -> anyhow::Result<DnsConfig> {
    let r = d.get_ref();
    let Some(m) = &r.method else {
        return missing(cx, d, "method", "\"rfc2136\" or \"exec\"");
    };
    let rfc2136 = one_of(cx, "challenge.dns.method", m, METHODS)?;
    let method = if rfc2136 {
        rfc2136_from_raw(d, cx)?
    } else {
        let Some(p) = &r.program else {
            return missing(cx, d, "program", "the absolute path of the program called as `program present|cleanup <fqdn> <value>`");
        };
        DnsMethod::Exec {
            program: abs_path(cx, "challenge.dns.program", p, PathKind::File)?,
        }
    };
    only_for_the_method(d, rfc2136, cx)?;
    Ok(DnsConfig {
        method,
        zone: optional(&r.zone, None, |z| {
            dns_name(cx, "challenge.dns.zone", z).map(Some)
        })?,
        propagation_timeout: duration(
            cx,
            "challenge.dns.propagation_timeout",
            &r.propagation_timeout,
            PROPAGATION_DEFAULT,
            Duration::from_secs(1)..=Duration::from_secs(3600),
        )?,
    })
}

/// `[challenge.dns] key` is missing: what it should hold.
fn missing<T>(cx: &Ctx, d: &Spanned<RawDns>, key: &str, why: &str) -> anyhow::Result<T> {
    cx.err(
        d.span(),
        &format!("challenge.dns.{key}"),
        format!("missing: {why}"),
    )
}

/// `method = "rfc2136"`: the primary, the TSIG key's name, algorithm and secret file.
fn rfc2136_from_raw(d: &Spanned<RawDns>, cx: &Ctx) -> anyhow::Result<DnsMethod> {
    let r = d.get_ref();
    let Some(server) = &r.server else {
        let why = "ip:port of the zone's primary, which takes the updates";
        return missing(cx, d, "server", why);
    };
    let Some(key) = &r.tsig_key_name else {
        let why = "the name of the TSIG key the primary's update-policy grants";
        return missing(cx, d, "tsig_key_name", why);
    };
    let Some(file) = &r.tsig_secret_file else {
        let why = "the root-only file holding the TSIG secret";
        return missing(cx, d, "tsig_secret_file", why);
    };
    Ok(DnsMethod::Rfc2136 {
        server: socket_addr(cx, "challenge.dns.server", server)?,
        tsig_key_name: dns_name(cx, "challenge.dns.tsig_key_name", key)?,
        tsig_algorithm: optional(&r.tsig_algorithm, TsigAlg::HmacSha256, |v| {
            one_of(
                cx,
                "challenge.dns.tsig_algorithm",
                v,
                &[
                    ("hmac-sha256", TsigAlg::HmacSha256),
                    ("hmac-sha512", TsigAlg::HmacSha512),
                ],
            )
        })?,
        tsig_secret_file: abs_path(cx, "challenge.dns.tsig_secret_file", file, PathKind::File)?,
    })
}

/// A key of the other method is refused rather than ignored: it says the admin meant it.
fn only_for_the_method(d: &Spanned<RawDns>, rfc2136: bool, cx: &Ctx) -> anyhow::Result<()> {
    let r = d.get_ref();
    let exec_key = r.program.is_some() && rfc2136;
    let rfc_keys = [
        ("server", r.server.is_some()),
        ("tsig_key_name", r.tsig_key_name.is_some()),
        ("tsig_secret_file", r.tsig_secret_file.is_some()),
    ];
    let wrong = if exec_key {
        Some(("program", "exec"))
    } else {
        rfc_keys
            .iter()
            .find(|(_, set)| *set && !rfc2136)
            .map(|(k, _)| (*k, "rfc2136"))
    };
    match wrong {
        Some((key, only)) => cx.err(
            d.span(),
            &format!("challenge.dns.{key}"),
            format!("only method \"{only}\" uses it; remove it or change method"),
        ),
        None => Ok(()),
    }
}

/// A DNS name (a zone, a key name), absolute and lower case: "example.org" → "example.org.".
fn dns_name(cx: &Ctx, key: &str, v: &Spanned<String>) -> anyhow::Result<String> {
    let s = v.get_ref().trim_end_matches('.');
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !ok {
        return cx.err(
            v.span(),
            key,
            format!(
                "{:?} is not a DNS name (letters, digits, '-', '_', dot-separated)",
                v.get_ref()
            ),
        );
    }
    Ok(format!("{}.", s.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{parse, GOOD};
    use super::*;

    const RFC2136: &str = "[challenge]\ntype = \"dns-01\"\n[challenge.dns]\nmethod = \"rfc2136\"\nserver = \"192.0.2.53:53\"\ntsig_key_name = \"vipcert\"\ntsig_secret_file = \"/etc/vipcert/tsig.key\"\n";

    #[test]
    fn http01_by_default_and_dns01_for_a_node_that_says_so() {
        let c = parse(GOOD).unwrap();
        assert_eq!(
            c.challenge_for("gridftp.example.org"),
            ChallengeKind::Http01
        );
        let with = GOOD.replacen(
            "address = \"192.0.2.12\"\n",
            "address = \"192.0.2.12\"\nchallenge = \"dns-01\"\n",
            1,
        )
            + "[challenge.dns]\nmethod = \"exec\"\nprogram = \"/usr/local/bin/dns-hook\"\n";
        let c = parse(&with).unwrap();
        assert_eq!(c.challenge_for("dtn2.example.org"), ChallengeKind::Dns01);
        assert_eq!(c.challenge_for("dtn1.example.org"), ChallengeKind::Http01);
        assert_eq!(
            c.challenge_for("gridftp.example.org"),
            ChallengeKind::Http01
        );
        let d = c.challenge.dns.unwrap();
        assert_eq!(
            d.method,
            DnsMethod::Exec {
                program: "/usr/local/bin/dns-hook".into()
            }
        );
        assert_eq!(d.propagation_timeout, Duration::from_secs(120));
    }

    #[test]
    fn rfc2136_keys_are_validated() {
        let c = parse(&format!("{GOOD}{RFC2136}zone = \"Example.ORG\"\ntsig_algorithm = \"hmac-sha512\"\npropagation_timeout = \"30s\"\n")).unwrap();
        assert_eq!(c.challenge_for("dtn1.example.org"), ChallengeKind::Dns01);
        let d = c.challenge.dns.unwrap();
        assert_eq!(d.zone.as_deref(), Some("example.org."));
        let DnsMethod::Rfc2136 {
            tsig_key_name,
            tsig_algorithm,
            ..
        } = d.method
        else {
            panic!()
        };
        assert_eq!(
            (tsig_key_name.as_str(), tsig_algorithm),
            ("vipcert.", TsigAlg::HmacSha512)
        );
        for (bad, key) in [
            ("[challenge]\ntype = \"dns-01\"\n", "challenge.dns"),
            ("[challenge]\ntype = \"dns01\"\n", "challenge.type"),
            (
                &RFC2136.replace("server = \"192.0.2.53:53\"\n", ""),
                "challenge.dns.server",
            ),
            (
                &RFC2136.replace("192.0.2.53:53", "ns1"),
                "challenge.dns.server",
            ),
            (
                &RFC2136.replace("tsig.key", "tsig.key/"),
                "challenge.dns.tsig_secret_file",
            ),
            (
                &format!("{RFC2136}tsig_algorithm = \"hmac-md5\"\n"),
                "challenge.dns.tsig_algorithm",
            ),
            (&format!("{RFC2136}zone = \"a b\"\n"), "challenge.dns.zone"),
            (
                &format!("{RFC2136}program = \"/bin/true\"\n"),
                "challenge.dns.program",
            ),
            (
                &format!("{RFC2136}propagation_timeout = \"2h\"\n"),
                "challenge.dns.propagation_timeout",
            ),
            (
                &RFC2136.replace("rfc2136", "route53"),
                "challenge.dns.method",
            ),
        ] {
            let e = format!("{:#}", parse(&format!("{GOOD}{bad}")).unwrap_err());
            assert!(
                e.contains(&format!(": {key}: ")) && e.contains("vipcert.toml:"),
                "{bad}: {e}"
            );
        }
    }
}
