//! `[acme]`: which CA, the account contact, the key type and the HTTP-01 port.
//!
//! Owns the validated `Acme` and the names of the well-known directories. It does not talk to
//! the CA: that is `crate::acme`.

use std::path::PathBuf;
use std::time::Duration;

use super::raw::RawAcme;
use super::values::{check_mailto, duration, one_of, optional, port, secs};
use super::Ctx;

pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";
/// Contacts an account may list: a handful of people or lists, not a directory.
const MAX_CONTACTS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Rsa2048,
    Rsa3072,
    Rsa4096,
    EcdsaP256,
    EcdsaP384,
}

/// The names `[acme] key_type` accepts (the test holds them to `as_str`).
const KEY_TYPES: &[(&str, KeyType)] = &[
    ("rsa2048", KeyType::Rsa2048),
    ("rsa3072", KeyType::Rsa3072),
    ("rsa4096", KeyType::Rsa4096),
    ("ecdsa-p256", KeyType::EcdsaP256),
    ("ecdsa-p384", KeyType::EcdsaP384),
];

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Rsa2048 => "rsa2048",
            KeyType::Rsa3072 => "rsa3072",
            KeyType::Rsa4096 => "rsa4096",
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Acme {
    pub directory: String,
    pub contact: Vec<String>,
    pub ca_roots: Option<PathBuf>,
    pub key_type: KeyType,
    pub http_port: u16,
    pub timeout: Duration,
}

impl Acme {
    pub(super) fn from_raw(a: &RawAcme, cx: &Ctx) -> anyhow::Result<Acme> {
        let directory = optional(&a.directory, LETSENCRYPT.to_string(), |d| {
            match d.get_ref().as_str() {
                "letsencrypt" => Ok(LETSENCRYPT.to_string()),
                "letsencrypt-staging" => Ok(LETSENCRYPT_STAGING.to_string()),
                u if u.starts_with("https://") => Ok(u.to_string()),
                u => cx.err(
                    d.span(),
                    "acme.directory",
                    format!(
                        "{u:?} is not \"letsencrypt\", \"letsencrypt-staging\" or an https:// URL"
                    ),
                ),
            }
        })?;
        let key_type = optional(&a.key_type, KeyType::Rsa2048, |k| {
            one_of(cx, "acme.key_type", k, KEY_TYPES)
        })?;
        let contact = a.contact.as_deref().unwrap_or_default();
        if contact.len() > MAX_CONTACTS {
            return cx.err(
                contact[MAX_CONTACTS].span(),
                "acme.contact",
                format!("at most {MAX_CONTACTS} addresses"),
            );
        }
        for c in contact {
            check_mailto(c.get_ref()).or_else(|m| cx.err(c.span(), "acme.contact", m))?;
        }
        Ok(Acme {
            directory,
            contact: contact.iter().map(|c| c.get_ref().clone()).collect(),
            ca_roots: a.ca_roots.clone(),
            key_type,
            // Port 80 is where a CA sends HTTP-01 requests; another one is only for test CAs.
            http_port: port(cx, "acme.http_port", &a.http_port, 80)?,
            // A CA that has not finished an order within an hour will not; the bound also keeps
            // deadline arithmetic from overflowing.
            timeout: duration(
                cx,
                "acme.timeout",
                &a.timeout,
                secs(90),
                secs(1)..=secs(3600),
            )?,
        })
    }

    /// Host part of the directory URL: names the account directory in the store.
    pub fn ca_host(&self) -> String {
        let rest = self
            .directory
            .split_once("://")
            .map(|x| x.1)
            .unwrap_or(&self.directory);
        let hostport = rest.split('/').next().unwrap_or(rest);
        hostport.replace(':', "_")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_type_names_read_back_as_written() {
        for (name, k) in KEY_TYPES {
            assert_eq!(k.as_str(), *name);
        }
    }
}
