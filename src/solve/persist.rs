//! dns-persist-01's solver. Nothing is placed per order: the persistent
//! `_validation-persist.<name>` record answers, so an order only tells the CA "ready"
//! (`issue` does, through `acme`). What this solver owns is knowing the record is there:
//! the binding every record must name (the CA's issuer domain names from its directory's
//! `meta.caaIdentities`, the stored account's URL), the preflight that asks every
//! authoritative server of each name's zone directly (a table of what is missing or wrong,
//! before any order), and `--apply`: placing the records by RFC 2136.
//!
//! The record's syntax and judgement are `persist`'s; DNS questions and updates are `dns`'s;
//! the CA's requests go through `acme`'s bounded client.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use futures_util::future::join_all;

use crate::config::{ChallengeKind, Config, DnsMethod};
use crate::dns::{self, Change, DnsError, Lookup, TsigKey, TxtRecord};
use crate::persist::{self, Expect, PersistRecord, Row, Table};
use crate::plan::Plan;
use crate::store::Store;

/// Issuer domain names taken from a directory at most (the draft allows a CA 10).
const MAX_ISSUERS: usize = 10;
/// Bound of one RFC 2136 update of `--apply`.
const UPDATE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every record must name: one of the CA's issuer domain names and our account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Binding {
    /// The directory's meta.caaIdentities, normalized (empty: the CA lists none).
    pub(crate) issuers: Vec<String>,
    /// The stored account's URL.
    pub(crate) account_uri: String,
}

/// The directory's `meta.caaIdentities`, normalized (lowercase, no trailing dot); entries
/// that are no domain name are left out.
pub(crate) async fn caa_identities(cfg: &Config) -> Result<Vec<String>> {
    let dir = crate::acme::directory(cfg).await?;
    Ok(identities(&dir))
}

fn identities(dir: &serde_json::Value) -> Vec<String> {
    let list = dir["meta"]["caaIdentities"].as_array();
    list.into_iter()
        .flatten()
        .filter_map(|v| persist::issuer_name(v.as_str()?).ok())
        .take(MAX_ISSUERS)
        .collect()
}

/// The binding at the CA of `cfg`: its issuer names (a GET of its directory) and the stored
/// account (none yet is an error saying how to make one).
pub(crate) async fn binding(cfg: &Config, store: &Store) -> Result<Binding> {
    let ca = &cfg.acme.directory;
    let Some(creds) = crate::acme::read_credentials(cfg, store)? else {
        bail!("no ACME account at {ca} yet, so no dns-persist-01 record can name it: `vipcert account persist-record` creates the account and prints the records");
    };
    let account_uri = crate::acme::id_url(&creds)
        .ok_or_else(|| anyhow!("the stored account at {ca} has no account URL"))?;
    Ok(Binding {
        issuers: caa_identities(cfg).await?,
        account_uri,
    })
}

/// The names that use dns-persist-01, grouped by the CA their lineage orders from (None:
/// `[acme]`), in plan order; a name in lineages of two CAs needs a record for each.
fn persist_names(cfg: &Config, plan: &Plan) -> Vec<(Option<String>, Vec<String>)> {
    let mut out: Vec<(Option<String>, Vec<String>)> = Vec::new();
    for l in &plan.lineages {
        let i = match out.iter().position(|(ca, _)| *ca == l.ca) {
            Some(i) => i,
            None => {
                out.push((l.ca.clone(), Vec::new()));
                out.len() - 1
            }
        };
        for n in &l.names {
            let uses = cfg.challenge_for(n) == ChallengeKind::DnsPersist01;
            if uses && !out[i].1.contains(n) {
                out[i].1.push(n.clone());
            }
        }
    }
    out.retain(|(_, names)| !names.is_empty());
    out
}

/// dns-persist-01 preflight: every name that uses it has a good record, for the CA of each
/// lineage it is in, on every authoritative server of its zone (asked directly), all names
/// at once.
pub(crate) async fn preflight(cfg: &Config, plan: &Plan, store: &Store) -> Result<Table> {
    let mut rows = Vec::new();
    for (ca, names) in persist_names(cfg, plan) {
        let cfg = cfg.for_ca(ca.as_deref());
        let mut t = preflight_ca(&cfg, store, &names).await?;
        if let Some(ca) = &ca {
            t.rows
                .iter_mut()
                .for_each(|r| r.server = format!("{} [CA {ca}]", r.server));
        }
        rows.append(&mut t.rows);
    }
    Ok(Table { rows })
}

/// The rows of `names` at the CA of `cfg`.
async fn preflight_ca(cfg: &Config, store: &Store, names: &[String]) -> Result<Table> {
    // No account, or no directory: one error for the run, not one per name.
    let b = binding(cfg, store).await?;
    let lookup = super::dns01::lookup(cfg)?;
    let zone = cfg.challenge.dns.as_ref().and_then(|d| d.zone.as_deref());
    let now = crate::store::now().max(0) as u64;
    let bound = cfg.preflight.timeout;
    let checks = names.iter().map(|n| {
        let want = Expect::for_name(n, &b.issuers, &b.account_uri);
        check_name(&lookup, zone, n, want, now, bound)
    });
    let rows = join_all(checks).await.into_iter().flatten().collect();
    Ok(Table { rows })
}

/// Where `name`'s record is: `_validation-persist.<name>.` through CNAMEs, and its zone
/// (`[challenge.dns] zone` when it holds that name, else found by SOA).
async fn target(
    lookup: &Lookup,
    zone: Option<&str>,
    name: &str,
) -> Result<(String, String), DnsError> {
    let owner = persist::owner(persist::record_name(name));
    let fqdn = lookup.follow_cname(&owner).await?;
    let zone = match zone {
        Some(z) if fqdn == z || fqdn.ends_with(&format!(".{z}")) => z.to_string(),
        _ => lookup.zone_of(&fqdn).await?,
    };
    Ok((fqdn, zone))
}

/// One row per authoritative server address of `name`'s zone (or one saying why none could
/// be asked).
async fn check_name(
    lookup: &Lookup,
    zone: Option<&str>,
    name: &str,
    want: Expect,
    now: u64,
    bound: Duration,
) -> Vec<Row> {
    let row = |server: String, verdict| Row {
        name: name.to_string(),
        server,
        verdict,
    };
    let found = async {
        let (fqdn, zone) = target(lookup, zone, name).await?;
        let servers = lookup.name_servers(&zone).await?;
        Ok::<_, DnsError>((fqdn, zone, servers))
    };
    let (fqdn, zone, servers) = match found.await {
        Ok(x) => x,
        Err(e) => return vec![row("-".into(), Err(e.to_string()))],
    };
    let addrs = servers
        .iter()
        .flat_map(|ns| ns.addrs.iter().map(move |&a| (ns.name.as_str(), a)));
    let asks = addrs.map(|(ns, a)| {
        let (fqdn, zone, want) = (&fqdn, &zone, &want);
        async move {
            let verdict = match dns::txt_at(a, zone, fqdn, bound).await {
                Ok(values) => Ok(persist::judge(&values, want, now)),
                Err(e) => Err(e.to_string()),
            };
            row(format!("{ns} ({})", a.ip()), verdict)
        }
    });
    join_all(asks).await
}

/// What `--apply` did to one name's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The record was there already.
    Present,
    /// Added; this many older records of the same issuer (another account, another
    /// persistUntil or policy) were removed.
    Added {
        /// Older records of our issuer removed.
        replaced: usize,
    },
}

/// Place each `(name, record)` at the zone's primary by RFC 2136 (`[challenge.dns] method =
/// "rfc2136"`), replacing older records of the same issuer and leaving other CAs' alone.
pub(crate) async fn apply(
    cfg: &Config,
    records: &[(String, PersistRecord)],
) -> Result<Vec<(String, Applied)>> {
    let Some(DnsMethod::Rfc2136 {
        server,
        tsig_key_name,
        tsig_algorithm,
        tsig_secret_file,
    }) = cfg.challenge.dns.as_ref().map(|d| &d.method)
    else {
        bail!("--apply places records by RFC 2136: it needs [challenge.dns] method = \"rfc2136\" (server, tsig_key_name, tsig_secret_file) in {}; otherwise put the printed lines in the zone", cfg.path.display());
    };
    let key = TsigKey::read(tsig_secret_file, tsig_key_name, *tsig_algorithm)?;
    let lookup = super::dns01::lookup(cfg)?;
    let zone = cfg.challenge.dns.as_ref().and_then(|d| d.zone.as_deref());
    let mut out = Vec::new();
    for (name, rec) in records {
        let (fqdn, z) = target(&lookup, zone, name).await?;
        let done = apply_one(*server, &z, &fqdn, rec, &key).await?;
        out.push((name.clone(), done));
    }
    Ok(out)
}

/// `rec` at `fqdn` in `zone` on the primary `server`: what is there read first, older records
/// of our issuer deleted, ours added unless present.
async fn apply_one(
    server: std::net::SocketAddr,
    zone: &str,
    fqdn: &str,
    rec: &PersistRecord,
    key: &TsigKey,
) -> Result<Applied> {
    let value = rec.value();
    let current = dns::txt_at(server, zone, fqdn, UPDATE_TIMEOUT).await?;
    if current.contains(&value) {
        return Ok(Applied::Present);
    }
    let ours = |v: &String| persist::parse(v).is_ok_and(|p| p.issuer == rec.issuer);
    let stale: Vec<&String> = current.iter().filter(|v| ours(v)).collect();
    for old in &stale {
        let r = TxtRecord {
            fqdn,
            strings: chunks_of(old),
            ttl: persist::TTL,
        };
        dns::update_txt_record(server, zone, &r, Change::Delete, key, UPDATE_TIMEOUT).await?;
    }
    let r = TxtRecord {
        fqdn,
        strings: rec.strings(),
        ttl: persist::TTL,
    };
    dns::update_txt_record(server, zone, &r, Change::Add, key, UPDATE_TIMEOUT).await?;
    // A delete matches exact character-strings: count what is really gone.
    let after = dns::txt_at(server, zone, fqdn, UPDATE_TIMEOUT).await?;
    let left = stale.iter().filter(|v| after.contains(v)).count();
    Ok(Applied::Added {
        replaced: stale.len() - left,
    })
}

/// The character-strings an old record of ours was most likely placed as: vipcert's own split
/// when re-rendering it gives the same value, else one string.
fn chunks_of(old: &str) -> Vec<String> {
    let again = persist::parse(old).ok().and_then(|p| {
        let wild = p.policy.eq_ignore_ascii_case("wildcard");
        PersistRecord::new(&p.issuer, &p.account_uri, wild, p.persist_until).ok()
    });
    match again {
        Some(r) if r.value() == old => r.strings(),
        _ => vec![old.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// caaIdentities normalized, junk left out, at most 10; none when meta lacks them.
    #[test]
    fn identities_from_the_directory() {
        let dir = serde_json::json!({"meta": {"caaIdentities": ["LetsEncrypt.org.", 7, "bad name", "b.example"]}});
        assert_eq!(identities(&dir), vec!["letsencrypt.org", "b.example"]);
        assert!(identities(&serde_json::json!({"meta": {}})).is_empty());
        let many: Vec<String> = (0..20).map(|i| format!("ca{i}.example")).collect();
        let dir = serde_json::json!({"meta": {"caaIdentities": many}});
        assert_eq!(identities(&dir).len(), 10);
    }
}
