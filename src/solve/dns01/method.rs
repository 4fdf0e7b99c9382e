//! How a TXT record is placed and removed: an RFC 2136 update signed with TSIG to the
//! configured primary, or the operator's program called as lego's exec provider calls it
//! (`program present|cleanup <fqdn> <value>`), each call under a time bound.
//!
//! Owns the call and its failure as data ([`MethodError`]). It does not find the record's name
//! or zone (`mod.rs`) nor wait for the zone's servers (`propagation`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use super::Record;
use crate::config::{DnsConfig, DnsMethod};
use crate::dns::{self, Change, DnsError, TsigKey};
use crate::program::ProgramError;

/// Bound of one exec call (lego's own default is a minute too); and of one RFC 2136 update.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const UPDATE_TIMEOUT: Duration = Duration::from_secs(10);
/// Characters of a program's output kept in an error.
const OUTPUT_IN_ERROR: usize = 1000;

/// The configured way of placing records, with its key read.
pub(crate) enum Method {
    /// RFC 2136 to `server`, signed by `key`.
    Rfc2136 {
        server: std::net::SocketAddr,
        key: TsigKey,
    },
    /// lego's exec protocol.
    Exec { program: PathBuf },
}

/// Why a record could not be placed or removed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MethodError {
    /// The DNS server said no (TSIG refused, NOTAUTH, REFUSED, …) or did not answer.
    #[error("{0}")]
    Dns(#[from] DnsError),
    /// The program failed.
    #[error("{program} {step} {fqdn}: {error}")]
    Program {
        program: String,
        step: &'static str,
        fqdn: String,
        error: String,
    },
}

impl Method {
    /// The method `[challenge.dns]` configures; the TSIG key file is read here (root-only).
    pub(crate) fn from_config(d: &DnsConfig) -> Result<Method> {
        Ok(match &d.method {
            DnsMethod::Rfc2136 {
                server,
                tsig_key_name,
                tsig_algorithm,
                tsig_secret_file,
            } => Method::Rfc2136 {
                server: *server,
                key: TsigKey::read(tsig_secret_file, tsig_key_name, *tsig_algorithm)?,
            },
            DnsMethod::Exec { program } => Method::Exec {
                program: program.clone(),
            },
        })
    }

    /// Add `r`'s value to its TXT RRset.
    pub(crate) async fn place(&self, r: &Record) -> Result<(), MethodError> {
        self.call(r, Change::Add).await
    }

    /// Remove `r`'s value (absent is fine).
    pub(crate) async fn remove(&self, r: &Record) -> Result<(), MethodError> {
        self.call(r, Change::Delete).await
    }

    /// Whether records may be placed concurrently: updates yes; a site's script maybe not.
    pub(crate) fn concurrent(&self) -> bool {
        matches!(self, Method::Rfc2136 { .. })
    }

    async fn call(&self, r: &Record, change: Change) -> Result<(), MethodError> {
        match self {
            Method::Rfc2136 { server, key } => {
                dns::update_txt(
                    *server,
                    &r.zone,
                    &r.fqdn,
                    &r.value,
                    change,
                    key,
                    UPDATE_TIMEOUT,
                )
                .await?;
                Ok(())
            }
            Method::Exec { program } => {
                let step = match change {
                    Change::Add => "present",
                    Change::Delete => "cleanup",
                };
                let args = [step, r.fqdn.as_str(), r.value.as_str()];
                match crate::program::run(program, &args, &[], CALL_TIMEOUT).await {
                    Ok(_) => Ok(()),
                    Err(e) => Err(MethodError::Program {
                        program: program.display().to_string(),
                        step,
                        fqdn: r.fqdn.clone(),
                        error: bounded(&e),
                    }),
                }
            }
        }
    }
}

/// A program error with its output cut to [`OUTPUT_IN_ERROR`] characters.
fn bounded(e: &ProgramError) -> String {
    let s = e.to_string();
    match s.char_indices().nth(OUTPUT_IN_ERROR) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}
