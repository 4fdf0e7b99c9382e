//! `[check]` and `[[check.probe]]`: how `check --fleet` reaches every node's status route and
//! which TLS endpoints it probes.
//!
//! Owns the validated `FleetCheck` (the section), `TlsProbe` and `Sni`. It does not probe
//! anything: that is `drift`.

use std::time::Duration;

use toml::Spanned;

use super::ctx::Ctx;
use super::raw::{RawCheck, RawProbe};
use super::serve::Serve;
use super::values::{check_hostname, duration, millis, port, secs};

/// The server name a probe sends in its TLS ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sni {
    /// The probed node's own hostname.
    Node,
    /// The virtual hostname.
    Virtual,
    Name(String),
}

/// One `[[check.probe]]`: a TLS endpoint `check --fleet` connects to on every node, to see
/// which certificate it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsProbe {
    pub(crate) name: String,
    pub(crate) port: u16,
    pub(crate) sni: Sni,
}

/// `[check]`: how `check --fleet` reaches the nodes (not drift's `Check`, a kind of finding).
#[derive(Debug, Clone)]
pub(crate) struct FleetCheck {
    pub(crate) status_port: u16,
    pub(crate) timeout: Duration,
    pub(crate) probes: Vec<TlsProbe>,
}

impl FleetCheck {
    /// `serve` gives the default status port: the node server's own.
    pub(super) fn from_raw(c: &RawCheck, serve: &Serve, cx: &Ctx) -> anyhow::Result<FleetCheck> {
        let mut probes: Vec<TlsProbe> = Vec::new();
        for p in &c.probes {
            let probe = TlsProbe::from_raw(p.get_ref(), cx)?;
            if probes.iter().any(|q| q.name == probe.name) {
                return cx.err(
                    p.span(),
                    "check.probe.name",
                    format!(
                        "two probes are named {:?}; give each a distinct name",
                        probe.name
                    ),
                );
            }
            probes.push(probe);
        }
        Ok(FleetCheck {
            status_port: port(cx, "check.status_port", &c.status_port, serve.first_port())?,
            timeout: duration(
                cx,
                "check.timeout",
                &c.timeout,
                secs(3),
                millis(100)..=secs(300),
            )?,
            probes,
        })
    }
}

impl TlsProbe {
    fn from_raw(r: &RawProbe, cx: &Ctx) -> anyhow::Result<TlsProbe> {
        let port = port(cx, "check.probe.port", &Some(r.port.clone()), 0)?;
        let sni = match &r.sni {
            None => Sni::Node,
            Some(s) => Sni::from_raw(s, cx)?,
        };
        let name = r.name.clone().unwrap_or_else(|| port.to_string());
        Ok(TlsProbe { name, port, sni })
    }
}

impl Sni {
    /// "node", "virtual" or a host name of its own.
    fn from_raw(s: &Spanned<String>, cx: &Ctx) -> anyhow::Result<Sni> {
        match s.get_ref().as_str() {
            "node" => Ok(Sni::Node),
            "virtual" => Ok(Sni::Virtual),
            name => match check_hostname(name) {
                Ok(()) => Ok(Sni::Name(name.to_string())),
                Err(m) => cx.err(
                    s.span(),
                    "check.probe.sni",
                    format!("{m}; use \"node\", \"virtual\" or a host name"),
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{parse, GOOD};
    use super::*;

    #[test]
    fn check_section_defaults_and_probes() {
        let c = parse(&GOOD.replace("0.0.0.0:80", "0.0.0.0:8080")).unwrap();
        assert_eq!(c.check.status_port, 8080);
        assert_eq!(c.check.timeout, Duration::from_secs(3));
        assert!(c.check.probes.is_empty());
        let s = format!(
            "{GOOD}[check]\ntimeout = \"500ms\"\n[[check.probe]]\nport = 1094\n[[check.probe]]\nport = 443\nsni = \"virtual\"\nname = \"webdav\"\n[[check.probe]]\nport = 8443\nsni = \"x.example.org\"\n"
        );
        let c = parse(&s).unwrap();
        assert_eq!(c.check.timeout, Duration::from_millis(500));
        assert_eq!(
            c.check.probes,
            vec![
                TlsProbe {
                    name: "1094".into(),
                    port: 1094,
                    sni: Sni::Node
                },
                TlsProbe {
                    name: "webdav".into(),
                    port: 443,
                    sni: Sni::Virtual
                },
                TlsProbe {
                    name: "8443".into(),
                    port: 8443,
                    sni: Sni::Name("x.example.org".into())
                },
            ]
        );
        let bad = format!("{GOOD}[check]\n[[check.probe]]\nport = 1094\nsni = \"not a name\"\n");
        let e = format!("{:#}", parse(&bad).unwrap_err());
        assert!(e.contains(":24: check.probe.sni"), "{e}");
    }
}
