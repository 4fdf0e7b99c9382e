//! Finding things out: through recursive resolvers, a name's CNAME target, its zone (by SOA), the
//! zone's NS set and each server's addresses; directly at one authoritative server, the TXT
//! values it serves. No updates, no keys.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::error::DnsError;
use super::wire::{exchange, Answer, EDNS_PAYLOAD};

/// Most CNAME hops followed from `_acme-challenge.<name>`.
pub const CNAME_MAX: usize = 8;
/// Most name servers of one zone taken (a zone has 2 to 13).
const NS_MAX: usize = 16;
/// Most addresses taken per name server.
const ADDR_MAX: usize = 8;

/// A name as hickory's absolute `Name`, or `BadName`.
pub(crate) fn name(s: &str) -> Result<Name, DnsError> {
    let mut n = Name::from_ascii(s).map_err(|e| DnsError::BadName {
        name: s.to_string(),
        detail: e.to_string(),
    })?;
    n.set_fqdn(true);
    Ok(n)
}

/// A name's text, lower case, with its trailing dot.
pub(crate) fn text(n: &Name) -> String {
    let mut n = n.to_lowercase();
    n.set_fqdn(true);
    n.to_ascii()
}

/// A fresh question `name`/`rtype` and its id; `rd` asks for recursion.
pub(crate) fn question(name: &Name, rtype: RecordType, rd: bool) -> (Message, u16) {
    let mut id = [0u8; 2];
    crate::random::fill(&mut id);
    let id = u16::from_be_bytes(id);
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(rd)
        .add_query(Query::query(name.clone(), rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    m.set_edns(edns);
    (m, id)
}

/// Ask `server` one question; its answer whatever the RCODE.
pub(crate) async fn ask(
    server: SocketAddr,
    name: &Name,
    rtype: RecordType,
    rd: bool,
    bound: Duration,
) -> Result<Answer, DnsError> {
    let (m, id) = question(name, rtype, rd);
    let bytes = m.to_vec().map_err(|e| DnsError::BadName {
        name: text(name),
        detail: e.to_string(),
    })?;
    exchange(server, &bytes, id, bound).await
}

/// A name server of a zone and the addresses (port 53) to ask it at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameServer {
    /// Its NS name, absolute.
    pub name: String,
    /// Its addresses.
    pub addrs: Vec<SocketAddr>,
}

/// Recursive resolvers to look names up through, each question under a time bound.
#[derive(Debug, Clone)]
pub struct Lookup {
    servers: Vec<SocketAddr>,
    bound: Duration,
}

impl Lookup {
    /// Through `servers` (tried in turn when one times out or is unreachable).
    pub fn new(servers: Vec<SocketAddr>, bound: Duration) -> Lookup {
        Lookup { servers, bound }
    }

    /// Through the system's resolvers (/etc/resolv.conf).
    pub fn system(bound: Duration) -> anyhow::Result<Lookup> {
        let (conf, _) = hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| anyhow::anyhow!("cannot read /etc/resolv.conf: {e}"))?;
        let mut servers: Vec<SocketAddr> =
            conf.name_servers().iter().map(|n| n.socket_addr).collect();
        servers.dedup();
        if servers.is_empty() {
            anyhow::bail!("/etc/resolv.conf names no nameserver");
        }
        Ok(Lookup::new(servers, bound))
    }

    /// The first answer any resolver gives (the last failure when none does).
    async fn ask(&self, name: &Name, rtype: RecordType) -> Result<Message, DnsError> {
        let mut last = None;
        for &s in &self.servers {
            match ask(s, name, rtype, true, self.bound).await {
                Ok(a) => return Ok(a.msg),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| DnsError::ZoneNotFound {
            name: text(name),
            detail: "no resolver configured".into(),
        }))
    }

    /// Where `fqdn` leads through CNAMEs (itself when it is none), at most [`CNAME_MAX`] hops.
    pub async fn follow_cname(&self, fqdn: &str) -> Result<String, DnsError> {
        let mut at = name(fqdn)?;
        let mut chain = vec![text(&at)];
        loop {
            let m = self.ask(&at, RecordType::CNAME).await?;
            let Some(next) = cname_of(&m, &at) else {
                return Ok(text(&at));
            };
            let seen = chain.contains(&text(&next));
            chain.push(text(&next));
            if seen || chain.len() > CNAME_MAX {
                return Err(DnsError::CnameLoop {
                    chain,
                    max: CNAME_MAX,
                });
            }
            at = next;
        }
    }

    /// The zone `fqdn` is in: the owner of the SOA its lookup returns, walking up when none.
    pub async fn zone_of(&self, fqdn: &str) -> Result<String, DnsError> {
        let mut at = name(fqdn)?;
        let mut detail = String::from("no SOA record for it or a parent");
        loop {
            match self.ask(&at, RecordType::SOA).await {
                Ok(m)
                    if matches!(
                        m.response_code(),
                        ResponseCode::NoError | ResponseCode::NXDomain
                    ) =>
                {
                    if let Some(z) = soa_owner(&m) {
                        return Ok(text(&z));
                    }
                }
                Ok(m) => {
                    detail = format!(
                        "the resolver answered {} for {}",
                        m.response_code(),
                        text(&at)
                    )
                }
                Err(e @ (DnsError::Timeout { .. } | DnsError::Io { .. })) => detail = e.to_string(),
                Err(e) => return Err(e),
            }
            if at.num_labels() <= 1 {
                return Err(DnsError::ZoneNotFound {
                    name: fqdn.to_string(),
                    detail,
                });
            }
            at = at.base_name();
        }
    }

    /// The zone's NS set and each server's addresses (A and AAAA, port 53).
    pub async fn name_servers(&self, zone: &str) -> Result<Vec<NameServer>, DnsError> {
        let z = name(zone)?;
        let m = self.ask(&z, RecordType::NS).await?;
        let mut names = BTreeSet::new();
        for r in m.answers() {
            if let RData::NS(ns) = r.data() {
                if r.name().eq_ignore_root(&z) {
                    names.insert(text(&ns.0));
                }
            }
        }
        if names.is_empty() {
            return Err(DnsError::ZoneNotFound {
                name: text(&z),
                detail: format!("no NS records ({})", m.response_code()),
            });
        }
        let mut out = Vec::new();
        for ns in names.into_iter().take(NS_MAX) {
            let addrs = self.addresses(&ns).await?;
            if addrs.is_empty() {
                return Err(DnsError::NoAddress { ns, zone: text(&z) });
            }
            out.push(NameServer { name: ns, addrs });
        }
        Ok(out)
    }

    async fn addresses(&self, host: &str) -> Result<Vec<SocketAddr>, DnsError> {
        let n = name(host)?;
        let mut out = Vec::new();
        for t in [RecordType::A, RecordType::AAAA] {
            let m = self.ask(&n, t).await?;
            for r in m.answers() {
                let ip: IpAddr = match r.data() {
                    RData::A(a) => a.0.into(),
                    RData::AAAA(a) => a.0.into(),
                    _ => continue,
                };
                let sa = SocketAddr::new(ip, 53);
                if !out.contains(&sa) && out.len() < ADDR_MAX {
                    out.push(sa);
                }
            }
        }
        Ok(out)
    }
}

fn cname_of(m: &Message, at: &Name) -> Option<Name> {
    m.answers().iter().find_map(|r| match r.data() {
        RData::CNAME(c) if r.name().eq_ignore_root(at) => Some(c.0.clone()),
        _ => None,
    })
}

/// The owner of the first SOA in the answer or authority section.
fn soa_owner(m: &Message) -> Option<Name> {
    m.answers()
        .iter()
        .chain(m.name_servers())
        .find(|r| r.record_type() == RecordType::SOA)
        .map(|r| r.name().clone())
}

/// The TXT values `server` serves at `fqdn`, asked directly (no recursion); the server must be
/// authoritative for `zone` (AA set), else [`DnsError::NotAuthoritative`].
pub async fn txt_at(
    server: SocketAddr,
    zone: &str,
    fqdn: &str,
    bound: Duration,
) -> Result<Vec<String>, DnsError> {
    let n = name(fqdn)?;
    let a = ask(server, &n, RecordType::TXT, false, bound).await?;
    let not_auth = || DnsError::NotAuthoritative {
        server,
        zone: zone.to_string(),
    };
    match a.msg.response_code() {
        ResponseCode::NoError | ResponseCode::NXDomain if a.msg.authoritative() => {}
        ResponseCode::NoError | ResponseCode::NXDomain | ResponseCode::Refused => {
            return Err(not_auth())
        }
        rc => {
            return Err(DnsError::Rcode {
                server,
                rcode: rc.to_string(),
                what: format!("a TXT query for {}", text(&n)),
            })
        }
    }
    Ok(txt_values(&a.msg, &n))
}

/// The TXT strings at `n` in the answer (each record's chunks joined, as ACME reads them).
pub(crate) fn txt_values(m: &Message, n: &Name) -> Vec<String> {
    m.answers()
        .iter()
        .filter(|r| r.name().eq_ignore_root(n))
        .filter_map(|r| match r.data() {
            RData::TXT(t) => Some(
                t.txt_data()
                    .iter()
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{CNAME, SOA, TXT};
    use hickory_proto::rr::Record;

    fn n(s: &str) -> Name {
        name(s).unwrap()
    }

    #[test]
    fn the_soa_owner_is_the_zone_from_either_section() {
        let soa = SOA::new(n("ns1.example.org"), n("root.example.org"), 1, 2, 3, 4, 5);
        let rec = Record::from_rdata(n("example.org"), 60, RData::SOA(soa));
        let mut m = Message::new();
        m.add_name_server(rec.clone());
        assert_eq!(text(&soa_owner(&m).unwrap()), "example.org.");
        let mut m = Message::new();
        m.add_answer(rec);
        assert_eq!(text(&soa_owner(&m).unwrap()), "example.org.");
        assert!(soa_owner(&Message::new()).is_none());
    }

    #[test]
    fn txt_chunks_join_and_other_owners_are_ignored() {
        let at = n("_acme-challenge.a.example.org");
        let mut m = Message::new();
        m.add_answer(Record::from_rdata(
            at.clone(),
            60,
            RData::TXT(TXT::new(vec!["ab".into(), "cd".into()])),
        ));
        m.add_answer(Record::from_rdata(
            n("x.example.org"),
            60,
            RData::TXT(TXT::new(vec!["zz".into()])),
        ));
        assert_eq!(txt_values(&m, &at), vec!["abcd".to_string()]);
    }

    #[test]
    fn a_cname_for_the_name_is_found() {
        let at = n("_acme-challenge.A.example.org");
        let mut m = Message::new();
        m.add_answer(Record::from_rdata(
            n("_acme-challenge.a.example.org"),
            60,
            RData::CNAME(CNAME(n("a.acme.site.org"))),
        ));
        assert_eq!(text(&cname_of(&m, &at).unwrap()), "a.acme.site.org.");
        assert!(cname_of(&m, &n("b.example.org")).is_none());
    }

    #[test]
    fn names_are_absolute_lower_case_and_validated() {
        assert_eq!(text(&n("WWW.Example.org")), "www.example.org.");
        assert!(matches!(name("a..b"), Err(DnsError::BadName { .. })));
    }
}
