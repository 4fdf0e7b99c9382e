//! `[acme]`: which CA, the account contact, the key type and the HTTP-01 port.
//!
//! Owns the validated `Acme` and the names of the well-known directories. It does not talk to
//! the CA: that is `crate::acme`.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::ctx::Ctx;
use super::raw::{RawAcme, RawFallback};
use super::values::{abs_path, check_mailto, duration, one_of, optional, port, secs, PathKind};

pub(crate) const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub(crate) const LETSENCRYPT_STAGING: &str =
    "https://acme-staging-v02.api.letsencrypt.org/directory";
/// Contacts an account may list: a handful of people or lists, not a directory.
const MAX_CONTACTS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyType {
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
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            KeyType::Rsa2048 => "rsa2048",
            KeyType::Rsa3072 => "rsa3072",
            KeyType::Rsa4096 => "rsa4096",
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
        }
    }
}

/// External Account Binding (RFC 8555 §7.3.4): the CA's key identifier and where the HMAC
/// key lives. The key is read only when an account is created (`acme::eab_key`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Eab {
    pub(crate) kid: String,
    pub(crate) hmac_key_file: PathBuf,
}

/// Longest `eab_kid` accepted (CAs hand out ids of a few dozen characters).
const EAB_KID_MAX: usize = 256;

/// At most this many `[[acme.fallback]]` entries.
const MAX_FALLBACKS: usize = 8;

/// The per-CA keys: `[acme]` itself, or one `[[acme.fallback]]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Issuer {
    pub(crate) directory: String,
    pub(crate) contact: Vec<String>,
    pub(crate) eab: Option<Eab>,
    pub(crate) profile: Option<String>,
}

impl Issuer {
    /// `contact_default`: a fallback without `contact` uses `[acme] contact`; `key`: the
    /// section named in errors.
    fn from_raw(
        a: &RawFallback,
        contact_default: Option<&Vec<String>>,
        key: &str,
        cx: &Ctx,
    ) -> anyhow::Result<Issuer> {
        Ok(Issuer {
            directory: directory(a, contact_default.is_some(), key, cx)?,
            contact: contact(a, contact_default, key, cx)?,
            eab: eab(a, key, cx)?,
            profile: profile(a, key, cx)?,
        })
    }
}

/// `directory`: a well-known name or an https:// URL; Let's Encrypt when `[acme]` leaves it
/// out, an error when a fallback (`fallback`) does: a fallback entry must say which CA it is.
fn directory(a: &RawFallback, fallback: bool, key: &str, cx: &Ctx) -> anyhow::Result<String> {
    let k = format!("{key}.directory");
    let Some(d) = &a.directory else {
        if fallback {
            return cx.err(0..0, &k, "is required in every [[acme.fallback]]");
        }
        return Ok(LETSENCRYPT.to_string());
    };
    directory_url(d, &k, cx)
}

/// A directory value (key `k`): "letsencrypt", "letsencrypt-staging" or an https:// URL of at
/// most 1024 bytes, as the URL.
fn directory_url(d: &Spanned<String>, k: &str, cx: &Ctx) -> anyhow::Result<String> {
    match d.get_ref().as_str() {
        "letsencrypt" => Ok(LETSENCRYPT.to_string()),
        "letsencrypt-staging" => Ok(LETSENCRYPT_STAGING.to_string()),
        u if u.starts_with("https://") && u.len() <= 1024 => Ok(u.to_string()),
        u => cx.err(
            d.span(),
            k,
            format!("{u:?} is not \"letsencrypt\", \"letsencrypt-staging\" or an https:// URL"),
        ),
    }
}

/// `staging_directory`, validated like `directory`: where `--dry-run` orders. Left out, Let's
/// Encrypt's staging for Let's Encrypt, else none (a dry run then refuses, naming this key).
/// Never a CA that issues real certificates: not Let's Encrypt's production directory, not
/// `[acme] directory` nor a fallback's.
fn staging_directory(
    a: &RawAcme,
    primary: &str,
    fallback: &[Issuer],
    cx: &Ctx,
) -> anyhow::Result<Option<String>> {
    let Some(d) = &a.staging_directory else {
        return Ok((primary == LETSENCRYPT).then(|| LETSENCRYPT_STAGING.to_string()));
    };
    let k = "acme.staging_directory";
    let url = directory_url(d, k, cx)?;
    let why = if url == LETSENCRYPT {
        "is Let's Encrypt's production directory"
    } else if url == primary {
        "is [acme] directory itself"
    } else if fallback.iter().any(|f| f.directory == url) {
        "is the directory of an [[acme.fallback]]"
    } else {
        return Ok(Some(url));
    };
    cx.err(
        d.span(),
        k,
        format!("{why}: a dry run must never order a real certificate; give the CA's staging (test) directory"),
    )
}

/// `contact`: at most `MAX_CONTACTS` mailto: addresses; `contact_default` when left out.
fn contact(
    a: &RawFallback,
    contact_default: Option<&Vec<String>>,
    key: &str,
    cx: &Ctx,
) -> anyhow::Result<Vec<String>> {
    let k = format!("{key}.contact");
    let Some(c) = &a.contact else {
        return Ok(contact_default.cloned().unwrap_or_default());
    };
    if c.len() > MAX_CONTACTS {
        return cx.err(
            c[MAX_CONTACTS].span(),
            &k,
            format!("at most {MAX_CONTACTS} addresses"),
        );
    }
    for m in c {
        check_mailto(m.get_ref()).or_else(|e| cx.err(m.span(), &k, e))?;
    }
    Ok(c.iter().map(|m| m.get_ref().clone()).collect())
}

/// `profile`: a name the CA lists (1 to 64 letters, digits, '-', '_', '.'), if any.
fn profile(a: &RawFallback, key: &str, cx: &Ctx) -> anyhow::Result<Option<String>> {
    let Some(p) = &a.profile else {
        return Ok(None);
    };
    let v = p.get_ref();
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        return cx.err(
            p.span(),
            &format!("{key}.profile"),
            format!("{v:?} is not a profile name (1 to 64 letters, digits, '-', '_', '.')"),
        );
    }
    Ok(Some(v.clone()))
}

/// `[acme]`: which CA, which account contacts, which key type.
#[derive(Debug, Clone)]
pub struct Acme {
    pub(crate) directory: String,
    pub(crate) contact: Vec<String>,
    pub(crate) ca_roots: Option<PathBuf>,
    pub(crate) key_type: KeyType,
    /// Port the CA sends HTTP-01 requests to (80; another only for test CAs).
    pub http_port: u16,
    pub(crate) timeout: Duration,
    /// The deadline of one HTTP request to the CA, from connect to the last byte of the body.
    pub(crate) request_timeout: Duration,
    pub(crate) eab: Option<Eab>,
    /// ACME profile (draft-ietf-acme-profiles) to ask for, e.g. Let's Encrypt's "classic".
    pub(crate) profile: Option<String>,
    /// `[[acme.fallback]]`, in order.
    pub(crate) fallback: Vec<Issuer>,
    /// The CA's staging directory, where `--dry-run` orders (`staging`); None when none is
    /// known.
    pub(crate) staging_directory: Option<String>,
    /// The staging CA's roots: what `ca_roots` is for `directory`, for the staging CA.
    pub(crate) staging_ca_roots: Option<PathBuf>,
    /// This is the staging CA of a dry run (made by `staging`): its account lives apart from
    /// every real one (`account_dir`).
    pub(crate) staging: bool,
}

impl Acme {
    /// The profile configured for the CA at `directory` (`[acme]` or a fallback): None when
    /// that CA is no longer configured; Some("") when it is, without a profile.
    pub(crate) fn profile_at(&self, directory: &str) -> Option<&str> {
        if self.directory == directory {
            return Some(self.profile.as_deref().unwrap_or(""));
        }
        self.fallback
            .iter()
            .find(|f| f.directory == directory)
            .map(|f| f.profile.as_deref().unwrap_or(""))
    }

    pub(super) fn from_raw(a: &RawAcme, cx: &Ctx) -> anyhow::Result<Acme> {
        let key_type = optional(&a.key_type, KeyType::Rsa2048, |k| {
            one_of(cx, "acme.key_type", k, KEY_TYPES)
        })?;
        let primary = Issuer::from_raw(
            &RawFallback {
                directory: a.directory.clone(),
                contact: a.contact.clone(),
                eab_kid: a.eab_kid.clone(),
                eab_hmac_key_file: a.eab_hmac_key_file.clone(),
                profile: a.profile.clone(),
            },
            None,
            "acme",
            cx,
        )?;
        let fallback = fallbacks(a, &primary, cx)?;
        let staging_directory = staging_directory(a, &primary.directory, &fallback, cx)?;
        Ok(Acme {
            staging_directory,
            staging_ca_roots: optional(&a.staging_ca_roots, None, |p| {
                abs_path(cx, "acme.staging_ca_roots", p, PathKind::File).map(Some)
            })?,
            staging: false,
            eab: primary.eab,
            profile: primary.profile,
            directory: primary.directory,
            contact: primary.contact,
            fallback,
            ca_roots: optional(&a.ca_roots, None, |p| {
                abs_path(cx, "acme.ca_roots", p, PathKind::File).map(Some)
            })?,
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
            // An ACME answer is a few KiB: a CA that needs minutes for one is down, and the
            // run should move on (the next CA, or the next timer run) rather than hang.
            request_timeout: duration(
                cx,
                "acme.request_timeout",
                &a.request_timeout,
                secs(30),
                secs(1)..=secs(300),
            )?,
        })
    }

    /// This section with `i` as the CA: what `acme` and `issue` use for a fallback CA (the
    /// key type, port, timeouts and `ca_roots` are shared).
    pub(crate) fn with_issuer(&self, i: &Issuer) -> Acme {
        Acme {
            directory: i.directory.clone(),
            contact: i.contact.clone(),
            eab: i.eab.clone(),
            profile: i.profile.clone(),
            fallback: vec![],
            ..self.clone()
        }
    }

    /// The CA of a dry run: the staging directory alone (no fallback), with
    /// `staging_ca_roots` as its `ca_roots`, the same contact, profile and key type, and no
    /// External Account Binding (the production CA's key would not be the staging CA's).
    /// An error says which key to set when no staging directory is known, or the staging
    /// roots are not given: no trust store holds a staging CA's roots, and the dry run
    /// verifies its certificate as a real run would.
    pub(crate) fn staging(&self) -> anyhow::Result<Acme> {
        let Some(directory) = self.staging_directory.clone() else {
            anyhow::bail!(
                "a dry run orders at the CA's staging directory, and vipcert knows none for [acme] directory {}: set [acme] staging_directory to that CA's staging (test) ACME directory, and [acme] staging_ca_roots to its roots (docs/config.md)",
                self.directory
            );
        };
        let Some(roots) = self.staging_ca_roots.clone() else {
            let hint = if directory == LETSENCRYPT_STAGING {
                " (Let's Encrypt's: https://letsencrypt.org/docs/staging-environment/)"
            } else {
                ""
            };
            anyhow::bail!(
                "a dry run verifies the certificate of the staging CA {directory} as a real run would, and no trust store holds a staging CA's roots: set [acme] staging_ca_roots to a PEM file of them{hint}"
            );
        };
        Ok(Acme {
            directory,
            ca_roots: Some(roots),
            eab: None,
            fallback: vec![],
            staging_directory: None,
            staging_ca_roots: None,
            staging: true,
            ..self.clone()
        })
    }

    /// The account's directory under `accounts/` in the shared directory: the CA's host, or
    /// `staging/<host>` for the staging CA of a dry run, so that a dry run never reads or
    /// writes a real account's file, even at a CA whose staging shares its host.
    pub(crate) fn account_dir(&self) -> String {
        if self.staging {
            format!("staging/{}", self.ca_host())
        } else {
            self.ca_host()
        }
    }

    /// Host part of the directory URL (its port after '_'): names the account directory.
    pub(crate) fn ca_host(&self) -> String {
        let rest = self
            .directory
            .split_once("://")
            .map(|x| x.1)
            .unwrap_or(&self.directory);
        let hostport = rest.split('/').next().unwrap_or(rest);
        hostport.replace(':', "_")
    }
}

/// `[[acme.fallback]]`: at most `MAX_FALLBACKS`, each a CA not listed before (`primary`
/// included), each inheriting `primary`'s contact.
fn fallbacks(a: &RawAcme, primary: &Issuer, cx: &Ctx) -> anyhow::Result<Vec<Issuer>> {
    if a.fallback.len() > MAX_FALLBACKS {
        return cx.err(
            a.fallback[MAX_FALLBACKS].span(),
            "acme.fallback",
            format!("at most {MAX_FALLBACKS} fallback CAs"),
        );
    }
    let mut fallback = Vec::new();
    for f in &a.fallback {
        let i = Issuer::from_raw(f.get_ref(), Some(&primary.contact), "acme.fallback", cx)?;
        if i.directory == primary.directory
            || fallback.iter().any(|o: &Issuer| o.directory == i.directory)
        {
            return cx.err(
                f.span(),
                "acme.fallback",
                format!("directory {} is listed twice", i.directory),
            );
        }
        fallback.push(i);
    }
    Ok(fallback)
}

/// `eab_kid` and `eab_hmac_key_file`: both or neither.
fn eab(a: &RawFallback, key: &str, cx: &Ctx) -> anyhow::Result<Option<Eab>> {
    match (&a.eab_kid, &a.eab_hmac_key_file) {
        (None, None) => Ok(None),
        (Some(k), None) => cx.err(
            k.span(),
            &format!("{key}.eab_kid"),
            "is set but eab_hmac_key_file is not: give the file that holds the CA's HMAC key",
        ),
        (None, Some(f)) => cx.err(
            f.span(),
            &format!("{key}.eab_hmac_key_file"),
            "is set but eab_kid is not: give the key identifier the CA gave with the HMAC key",
        ),
        (Some(k), Some(f)) => {
            let kid = k.get_ref();
            let ok = !kid.is_empty()
                && kid.len() <= EAB_KID_MAX
                && kid.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return cx.err(
                    k.span(),
                    &format!("{key}.eab_kid"),
                    format!("must be 1 to {EAB_KID_MAX} printable characters without spaces"),
                );
            }
            let hmac_key_file =
                abs_path(cx, &format!("{key}.eab_hmac_key_file"), f, PathKind::File)?;
            Ok(Some(Eab {
                kid: kid.clone(),
                hmac_key_file,
            }))
        }
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
