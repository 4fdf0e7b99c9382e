//! `vipcert account persist-record`: the dns-persist-01 records (draft-ietf-acme-dns-persist)
//! that bind each planned name to this cluster's ACME account at the configured CA.
//!
//! Owns the steps: the account URL from the stored credentials (the account is created first
//! when there is none: the records name it, so it must exist before any order), the issuer
//! domain name from the CA's directory (`meta.caaIdentities`, or `--issuer`), the names from
//! the plan, and the report that prints the zone-file lines. The record's syntax is
//! `persist`'s; the directory read and `--apply`'s RFC 2136 updates are `solve::persist`'s.

use std::fmt;

use anyhow::{bail, Context, Result};

use crate::config::Config;
use crate::persist::PersistRecord;
use crate::plan::Plan;
use crate::store::Store;

/// What `account persist-record` prints records for, and how.
#[derive(Debug, Clone, Default)]
pub struct PersistOptions {
    /// Only this lineage's names (default: every planned name).
    pub lineage: Option<String>,
    /// Only these names (each one the plan has).
    pub names: Vec<String>,
    /// Add `policy=wildcard`.
    pub wildcard: bool,
    /// Add `persistUntil=` (Unix seconds).
    pub persist_until: Option<u64>,
    /// The issuer domain name to write instead of the directory's first caaIdentities entry.
    pub issuer: Option<String>,
    /// The `[[acme.ca]]` the records are for (`account --ca NAME`): that CA's lineages' names;
    /// None: `[acme]`'s.
    pub ca: Option<String>,
    /// Place the records by RFC 2136 (`[challenge.dns] method = "rfc2136"`).
    pub apply: bool,
}

/// The records, and what they were made from.
#[derive(Debug)]
pub struct PersistReport {
    /// The CA's directory URL.
    pub ca: String,
    /// The issuer domain names the CA's directory lists (meta.caaIdentities).
    pub offered: Vec<String>,
    /// The account was created by this run (there was none).
    pub created: bool,
    /// One record per name, in plan order.
    pub records: Vec<(String, PersistRecord)>,
    /// With `--apply`: what was done to each name's record.
    pub applied: Option<Vec<(String, Applied)>>,
}

pub use crate::solve::persist::Applied;

/// Make the records for `opts` at the CA of `cfg`.
pub async fn run(
    cfg: &Config,
    plan: &Plan,
    store: &Store,
    opts: &PersistOptions,
) -> Result<PersistReport> {
    let names = names(plan, opts)?;
    let (account, created) = account_url(cfg, store).await?;
    let offered = crate::solve::persist::caa_identities(cfg).await?;
    let issuer = match (&opts.issuer, offered.first()) {
        (Some(i), _) => i.clone(),
        (None, Some(i)) => i.clone(),
        (None, None) => bail!(
            "the CA {} lists no issuer domain name (its directory has no meta.caaIdentities); \
             ask the CA which name its dns-persist-01 records carry and pass it as --issuer",
            cfg.acme.directory
        ),
    };
    let rec = PersistRecord::new(&issuer, &account, opts.wildcard, opts.persist_until)
        .context("cannot write the record")?;
    let records: Vec<(String, PersistRecord)> =
        names.into_iter().map(|n| (n, rec.clone())).collect();
    let applied = match opts.apply {
        true => Some(crate::solve::persist::apply(cfg, &records).await?),
        false => None,
    };
    Ok(PersistReport {
        ca: cfg.acme.directory.clone(),
        offered,
        created,
        records,
        applied,
    })
}

/// The names asked for: `--name`s (each planned), else `--lineage`'s, else every planned name
/// once, in plan order.
fn names(plan: &Plan, opts: &PersistOptions) -> Result<Vec<String>> {
    let lineages: Vec<&crate::plan::Lineage> = match &opts.lineage {
        Some(l) => vec![plan.named_lineage(l)?],
        // Only the lineages of this CA: another CA's names need that CA's records.
        None => plan.lineages.iter().filter(|l| l.ca == opts.ca).collect(),
    };
    let mut all: Vec<String> = Vec::new();
    for n in lineages.iter().flat_map(|l| &l.names) {
        if !all.contains(n) {
            all.push(n.clone());
        }
    }
    if opts.names.is_empty() {
        return Ok(all);
    }
    for n in &opts.names {
        if !all.contains(n) {
            bail!(
                "--name {n:?} is not a name vipcert orders ({}); the names are: {}",
                opts.lineage.as_deref().unwrap_or("any lineage"),
                all.join(", ")
            );
        }
    }
    Ok(opts.names.clone())
}

/// The account URL (RFC 8657 accounturi) of the stored account; a new account first when
/// there is none (saved exclusively in the shared directory, as `issue` would).
async fn account_url(cfg: &Config, store: &Store) -> Result<(String, bool)> {
    let creds = crate::acme::read_credentials(cfg, store)?;
    let created = creds.is_none();
    if created {
        store.init()?;
        let acc = crate::acme::account(cfg, store).await?;
        return Ok((acc.id().to_string(), true));
    }
    let url = creds
        .as_ref()
        .and_then(crate::acme::id_url)
        .with_context(|| {
            format!(
                "the account file {} holds no account URL",
                store.account_path(&cfg.acme.account_dir()).display()
            )
        })?;
    Ok((url, false))
}

impl fmt::Display for PersistReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some((_, first)) = self.records.first() else {
            return writeln!(f, "; no names");
        };
        writeln!(f, "; dns-persist-01 records (draft-ietf-acme-dns-persist)")?;
        writeln!(f, "; CA:      {}", self.ca)?;
        let listed = if self.offered.is_empty() {
            "its directory lists none".to_string()
        } else {
            format!("its directory lists: {}", self.offered.join(", "))
        };
        writeln!(f, "; issuer:  {} ({listed})", first.issuer)?;
        let new = if self.created { " (created now)" } else { "" };
        writeln!(f, "; account: {}{new}", first.account_uri)?;
        if let Some(t) = first.persist_until {
            let at = crate::unixtime::rfc3339(t.min(i64::MAX as u64) as i64);
            writeln!(f, "; valid for new validations until {at}")?;
        }
        for (name, rec) in &self.records {
            writeln!(f, "{}", rec.zone_line(name))?;
        }
        for (name, done) in self.applied.iter().flatten() {
            let owner = crate::persist::owner(crate::persist::record_name(name));
            match done {
                Applied::Present => writeln!(f, "; {owner}: already in the zone")?,
                Applied::Added { replaced: 0 } => writeln!(f, "; {owner}: added")?,
                Applied::Added { replaced } => writeln!(
                    f,
                    "; {owner}: added, replacing {replaced} older record(s) of this CA"
                )?,
            }
        }
        if self.applied.is_some() {
            writeln!(
                f,
                "; `vipcert preflight` shows whether every authoritative server serves them"
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The printout: a commented head, then one zone line per name.
    #[test]
    fn report_prints_zone_lines() {
        let rec = PersistRecord::new(
            "authority.example",
            "https://ca.example/acct/123",
            false,
            Some(1721952000),
        )
        .unwrap();
        let rep = PersistReport {
            ca: "https://ca.example/dir".into(),
            offered: vec!["authority.example".into(), "ca.example.net".into()],
            created: false,
            records: vec![
                ("dtn.example.org".into(), rec.clone()),
                ("dtn1.example.org".into(), rec),
            ],
            applied: None,
        };
        assert_eq!(
            rep.to_string(),
            "; dns-persist-01 records (draft-ietf-acme-dns-persist)\n\
             ; CA:      https://ca.example/dir\n\
             ; issuer:  authority.example (its directory lists: authority.example, ca.example.net)\n\
             ; account: https://ca.example/acct/123\n\
             ; valid for new validations until 2024-07-26T00:00:00Z\n\
             _validation-persist.dtn.example.org. 3600 IN TXT (\"authority.example;\" \" accounturi=https://ca.example/acct/123;\" \" persistUntil=1721952000\")\n\
             _validation-persist.dtn1.example.org. 3600 IN TXT (\"authority.example;\" \" accounturi=https://ca.example/acct/123;\" \" persistUntil=1721952000\")\n"
        );
    }
}
