//! RFC 2136 dynamic update of one TXT value, signed with TSIG, sent to the zone's primary; the
//! answer's RCODE and TSIG error turned into [`DnsError`] variants.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{update_message, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, RData, Record, RecordSet};

use super::error::{DnsError, TsigCode};
use super::lookup::{name, text};
use super::tsig::{answer_tsig_error, TsigKey};
use super::wire::exchange;

/// TTL of the TXT records we add: short, so a resolver forgets a stale value soon.
pub const TXT_TTL: u32 = 60;

/// Add or delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Add the value to the TXT RRset (other values stay).
    Add,
    /// Delete this value only (other values stay; absent is fine).
    Delete,
}

/// Add or delete the TXT `value` at `fqdn` in `zone` at `server` (the zone's primary), signed
/// by `key`, the whole exchange within `bound`.
pub async fn update_txt(
    server: SocketAddr,
    zone: &str,
    fqdn: &str,
    value: &str,
    change: Change,
    key: &TsigKey,
    bound: Duration,
) -> Result<(), DnsError> {
    let rec = TxtRecord {
        fqdn,
        strings: vec![value.to_string()],
        ttl: TXT_TTL,
    };
    update_txt_record(server, zone, &rec, change, key, bound).await
}

/// One TXT record as placed: its owner, its character-strings (each at most 255 octets) and TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxtRecord<'a> {
    /// The owner name.
    pub fqdn: &'a str,
    /// The character-strings, in order.
    pub strings: Vec<String>,
    /// Its TTL in seconds.
    pub ttl: u32,
}

/// `update_txt` for a whole record: several character-strings (a dns-persist-01 record) and
/// its own TTL.
pub async fn update_txt_record(
    server: SocketAddr,
    zone: &str,
    rec: &TxtRecord<'_>,
    change: Change,
    key: &TsigKey,
    bound: Duration,
) -> Result<(), DnsError> {
    let (z, n) = (name(zone)?, name(rec.fqdn)?);
    if !z.zone_of(&n) {
        return Err(DnsError::BadName {
            name: text(&n),
            detail: format!("it is not in zone {}", text(&z)),
        });
    }
    let rec = Record::from_rdata(
        n.clone(),
        rec.ttl,
        RData::TXT(TXT::new(rec.strings.clone())),
    );
    let mut set = RecordSet::from(rec);
    set.set_dns_class(DNSClass::IN);
    let mut msg = match change {
        Change::Add => update_message::append(set, z.clone(), false, false),
        Change::Delete => update_message::delete_by_rdata(set, z.clone(), false),
    };
    let id = msg.id();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let bad = |detail: String| DnsError::BadAnswer { server, detail };
    let mac = key.sign(&mut msg, now).map_err(|e| bad(e.to_string()))?;
    let bytes = msg.to_vec().map_err(|e| bad(e.to_string()))?;
    let a = exchange(server, &bytes, id, bound).await?;
    judge(server, &text(&z), &text(&n), key, &mac, &a.msg, &a.bytes)
}

/// What the answer to an update says.
fn judge(
    server: SocketAddr,
    zone: &str,
    fqdn: &str,
    key: &TsigKey,
    mac: &[u8],
    msg: &hickory_proto::op::Message,
    bytes: &[u8],
) -> Result<(), DnsError> {
    let tsig_err = answer_tsig_error(msg);
    if tsig_err != 0 {
        return Err(DnsError::TsigRefused {
            server,
            key: key.name(),
            code: TsigCode::from_u16(tsig_err),
        });
    }
    match msg.response_code() {
        ResponseCode::NoError if key.verify(mac, bytes) => Ok(()),
        ResponseCode::NoError => Err(DnsError::BadAnswer {
            server,
            detail: "its answer's TSIG signature does not verify".into(),
        }),
        ResponseCode::NotAuth => Err(DnsError::NotAuth {
            server,
            zone: zone.to_string(),
        }),
        ResponseCode::Refused => Err(DnsError::Refused {
            server,
            zone: zone.to_string(),
            what: format!("the update of {fqdn}"),
        }),
        rc => Err(DnsError::Rcode {
            server,
            rcode: rc.to_string(),
            what: format!("the update of {fqdn} in zone {zone}"),
        }),
    }
}
