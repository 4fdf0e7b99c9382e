//! `[acme]`: which CA, the account contact, the key type and the HTTP-01 port; its
//! `[[acme.fallback]]` CAs and the named `[[acme.ca]]` CAs a per-host node may order from.
//!
//! Owns the validated `Acme` (and `Acme::for_ca`, the `[acme]` of a named CA's lineage), the
//! names of the well-known directories and the profiles known to drop the subject CN. It
//! does not talk to the CA: that is `crate::acme`; nor does it say which node uses which CA
//! (`[[node]] ca`, checked in `node`).

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::ctx::Ctx;
use super::raw::{RawAcme, RawFallback, RawNamedCa};
use super::values::{
    abs_path, check_mailto, duration, is_short_name, one_of, optional, port, secs, PathKind,
};

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

/// At most this many `[[acme.ca]]` entries (a site has one or two CAs besides `[acme]`).
const MAX_NAMED_CAS: usize = 8;

/// Longest `[[acme.ca]] name`: it names an account directory and shows in reports.
const CA_NAME_MAX: usize = 32;

/// Profiles whose certificates carry no subject CN (Let's Encrypt's `tlsserver` and
/// `shortlived`): refused unless `[acme] require_cn = false`, before any order.
pub(crate) const CN_DROPPING_PROFILES: &[&str] = &["tlsserver", "shortlived"];

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
        require_cn: bool,
        key: &str,
        cx: &Ctx,
    ) -> anyhow::Result<Issuer> {
        Ok(Issuer {
            directory: directory(a, contact_default.is_some(), key, cx)?,
            contact: contact(a, contact_default, key, cx)?,
            eab: eab(a, key, cx)?,
            profile: profile(a, require_cn, key, cx)?,
        })
    }
}

/// One `[[acme.ca]]`: a CA that per-host nodes name (`[[node]] ca`) to take their lineage's
/// certificates from instead of `[acme]` (an IGTF CA that still issues clientAuth, while the
/// VIP stays on Let's Encrypt). It has no fallback: a lineage that needs this CA's
/// certificates must not quietly get another CA's.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NamedCa {
    pub(crate) name: String,
    pub(crate) issuer: Issuer,
    /// This CA's roots (PEM): for its HTTPS and to verify its chains; `[acme] ca_roots` does
    /// not apply to it.
    pub(crate) ca_roots: Option<PathBuf>,
    /// This CA's staging (test) directory, where a dry run orders its lineages, and that
    /// staging CA's roots.
    pub(crate) staging_directory: Option<String>,
    pub(crate) staging_ca_roots: Option<PathBuf>,
}

impl NamedCa {
    /// This CA as a dry run orders at it: its staging directory and roots, no EAB (the
    /// production CA's key would not be the staging CA's). An error says which key is missing.
    fn staged(&self) -> Result<NamedCa, String> {
        let name = &self.name;
        let Some(directory) = self.staging_directory.clone() else {
            return Err(format!("[[acme.ca]] \"{name}\" has no staging_directory: set it to that CA's staging (test) ACME directory (and staging_ca_roots) to dry-run its lineages; nothing was ordered for them"));
        };
        let Some(roots) = self.staging_ca_roots.clone() else {
            return Err(format!("[[acme.ca]] \"{name}\" has no staging_ca_roots: a dry run verifies the staging CA {directory}'s certificate as a real run would; set it to a PEM file of that CA's roots"));
        };
        Ok(NamedCa {
            issuer: Issuer {
                directory,
                eab: None,
                ..self.issuer.clone()
            },
            ca_roots: Some(roots),
            staging_directory: None,
            staging_ca_roots: None,
            ..self.clone()
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

/// `profile`: a name the CA lists (1 to 64 letters, digits, '-', '_', '.'), if any; a profile
/// known to drop the subject CN only with `require_cn = false`.
fn profile(
    a: &RawFallback,
    require_cn: bool,
    key: &str,
    cx: &Ctx,
) -> anyhow::Result<Option<String>> {
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
    if require_cn && CN_DROPPING_PROFILES.contains(&v.as_str()) {
        return cx.err(
            p.span(),
            &format!("{key}.profile"),
            format!("{v:?} gives certificates without a subject CN, and GSI clients (GridFTP) match on the CN: use a profile that keeps it (Let's Encrypt: \"classic\"), or, if every client of these hosts matches on the subjectAltName, set [acme] require_cn = false (docs/operations.md, \"CN or SAN\")"),
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
    /// `require_cn`: refuse profiles known to drop the subject CN, and a certificate without
    /// one (false: a CN-less certificate whose SANs match is accepted).
    pub(crate) require_cn: bool,
    /// `[[acme.ca]]`, in file order.
    pub(crate) cas: Vec<NamedCa>,
    /// A dry run's config only: the named CAs it cannot order at (no staging directory or
    /// roots), each with what to set.
    pub(crate) unstaged: Vec<(String, String)>,
    /// Which section of the file this CA is (`[acme]` itself, or one of its CAs made by
    /// `with_issuer` or `for_ca`).
    pub(crate) role: Role,
}

/// Which section of the file an `Acme` stands for: what its errors name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// `[acme]` itself.
    Primary,
    /// One `[[acme.fallback]]`.
    Fallback,
    /// The `[[acme.ca]]` of this name.
    Named(String),
}

impl Acme {
    /// The profile configured for the CA at `directory` (`[acme]`, a fallback or a named CA): None when
    /// that CA is no longer configured; Some("") when it is, without a profile.
    pub(crate) fn profile_at(&self, directory: &str) -> Option<&str> {
        if self.directory == directory {
            return Some(self.profile.as_deref().unwrap_or(""));
        }
        self.fallback
            .iter()
            .chain(self.cas.iter().map(|c| &c.issuer))
            .find(|f| f.directory == directory)
            .map(|f| f.profile.as_deref().unwrap_or(""))
    }

    pub(super) fn from_raw(a: &RawAcme, cx: &Ctx) -> anyhow::Result<Acme> {
        let key_type = optional(&a.key_type, KeyType::Rsa2048, |k| {
            one_of(cx, "acme.key_type", k, KEY_TYPES)
        })?;
        let require_cn = a.require_cn.as_ref().is_none_or(|b| *b.get_ref());
        let primary = primary(a, require_cn, cx)?;
        let fallback = fallbacks(a, &primary, require_cn, cx)?;
        let staging_directory = staging_directory(a, &primary.directory, &fallback, cx)?;
        let cas = named_cas(a, &primary, require_cn, cx)?;
        real_directories_are_not_staging(a, &primary, &fallback, &cas, cx)?;
        Ok(Acme {
            require_cn,
            cas,
            unstaged: Vec::new(),
            role: Role::Primary,
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
            role: Role::Fallback,
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
        let (mut cas, mut unstaged) = (Vec::new(), Vec::new());
        for c in &self.cas {
            match c.staged() {
                Ok(s) => cas.push(s),
                Err(why) => unstaged.push((c.name.clone(), why)),
            }
        }
        Ok(Acme {
            directory,
            ca_roots: Some(roots),
            eab: None,
            fallback: vec![],
            staging_directory: None,
            staging_ca_roots: None,
            staging: true,
            cas,
            unstaged,
            ..self.clone()
        })
    }

    /// The `[acme]` of a lineage whose node names the CA `name` (`[[node]] ca`): that CA's
    /// directory, contact, EAB, profile and roots, no fallback, the shared keys (key type,
    /// port, timeouts, `require_cn`) kept; in a dry run's config, that CA's staging. None is
    /// this section itself. The name was checked against `[[acme.ca]]` when the file was read;
    /// an unknown one (never from a validated config, or in a dry run a CA in `unstaged`,
    /// which `issue` refuses first) is this section too.
    pub(crate) fn for_ca(&self, name: Option<&str>) -> Acme {
        let Some(ca) = name.and_then(|n| self.cas.iter().find(|c| c.name == n)) else {
            return self.clone();
        };
        Acme {
            ca_roots: ca.ca_roots.clone(),
            role: Role::Named(ca.name.clone()),
            staging_directory: None,
            staging_ca_roots: None,
            ..self.with_issuer(&ca.issuer)
        }
    }

    /// How reports name this CA: `[acme]`, or `[[acme.ca]] "igtf"`, with its directory.
    pub fn describe(&self) -> String {
        match &self.role {
            Role::Primary => format!("[acme] {}", self.directory),
            Role::Fallback => format!("[[acme.fallback]] {}", self.directory),
            Role::Named(n) => format!("[[acme.ca]] {n:?} {}", self.directory),
        }
    }

    /// The key that sets this CA's `profile`, as errors name it (the entry of an array of
    /// tables by its directory or name).
    pub(crate) fn profile_key(&self) -> String {
        match &self.role {
            Role::Primary => "acme.profile".into(),
            Role::Fallback => format!("acme.fallback.profile (directory = {:?})", self.directory),
            Role::Named(n) => format!("acme.ca.profile (name = {n:?})"),
        }
    }

    /// The `[[acme.ca]]` this is, if it is one.
    pub(crate) fn ca_name(&self) -> Option<&str> {
        match &self.role {
            Role::Named(n) => Some(n),
            _ => None,
        }
    }

    /// The account's directory under `accounts/` in the shared directory: the CA's host;
    /// `named/<name>/<host>` for a `[[acme.ca]]`, whose account (its own EAB) is never
    /// `[acme]`'s even at the same host; `staging/<host>` for the staging CA of a dry run, so
    /// that a dry run never reads or writes a real account's file, even at a CA whose staging
    /// shares its host.
    pub(crate) fn account_dir(&self) -> String {
        if self.staging {
            format!("staging/{}", self.ca_host())
        } else if let Some(n) = self.ca_name() {
            format!("named/{n}/{}", self.ca_host())
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

/// `[acme]`'s own per-CA keys, as an `Issuer`.
fn primary(a: &RawAcme, require_cn: bool, cx: &Ctx) -> anyhow::Result<Issuer> {
    let raw = RawFallback {
        directory: a.directory.clone(),
        contact: a.contact.clone(),
        eab_kid: a.eab_kid.clone(),
        eab_hmac_key_file: a.eab_hmac_key_file.clone(),
        profile: a.profile.clone(),
    };
    Issuer::from_raw(&raw, None, require_cn, "acme", cx)
}

/// `[[acme.fallback]]`: at most `MAX_FALLBACKS`, each a CA not listed before (`primary`
/// included), each inheriting `primary`'s contact.
fn fallbacks(
    a: &RawAcme,
    primary: &Issuer,
    require_cn: bool,
    cx: &Ctx,
) -> anyhow::Result<Vec<Issuer>> {
    if a.fallback.len() > MAX_FALLBACKS {
        return cx.err(
            a.fallback[MAX_FALLBACKS].span(),
            "acme.fallback",
            format!("at most {MAX_FALLBACKS} fallback CAs"),
        );
    }
    let mut fallback = Vec::new();
    for f in &a.fallback {
        let i = Issuer::from_raw(
            f.get_ref(),
            Some(&primary.contact),
            require_cn,
            "acme.fallback",
            cx,
        )?;
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

/// `[[acme.ca]]`: at most `MAX_NAMED_CAS`, each with its own name and a directory that is
/// neither `[acme]`'s nor another named CA's (a version's `meta.ca` must tell which CA issued
/// it: `revoke` goes there), each inheriting `primary`'s contact.
fn named_cas(
    a: &RawAcme,
    primary: &Issuer,
    require_cn: bool,
    cx: &Ctx,
) -> anyhow::Result<Vec<NamedCa>> {
    if a.cas.len() > MAX_NAMED_CAS {
        return cx.err(
            a.cas[MAX_NAMED_CAS].span(),
            "acme.ca",
            format!("at most {MAX_NAMED_CAS} named CAs"),
        );
    }
    let mut out: Vec<NamedCa> = Vec::new();
    for c in &a.cas {
        let n = named_ca(c.get_ref(), c.span(), primary, require_cn, cx)?;
        let why = if out.iter().any(|o| o.name == n.name) {
            format!("name {:?} is given twice", n.name)
        } else if n.issuer.directory == primary.directory
            || out.iter().any(|o| o.issuer.directory == n.issuer.directory)
        {
            format!("directory {} is listed twice ([acme] or another [[acme.ca]]); a version's meta.ca must say which CA issued it", n.issuer.directory)
        } else {
            out.push(n);
            continue;
        };
        return cx.err(c.span(), "acme.ca", why);
    }
    Ok(out)
}

/// One `[[acme.ca]]`: `name` (1 to 32 letters, digits, '-', '_') and `directory` required,
/// validated like `[acme]`'s keys.
fn named_ca(
    r: &RawNamedCa,
    span: std::ops::Range<usize>,
    primary: &Issuer,
    require_cn: bool,
    cx: &Ctx,
) -> anyhow::Result<NamedCa> {
    let Some(name) = &r.name else {
        return cx.err(
            span,
            "acme.ca.name",
            "is required in every [[acme.ca]]: the name [[node]] ca refers to",
        );
    };
    if !is_short_name(name.get_ref(), CA_NAME_MAX, b"-_") {
        return cx.err(
            name.span(),
            "acme.ca.name",
            format!(
                "{:?} is not a CA name (1 to {CA_NAME_MAX} letters, digits, '-', '_')",
                name.get_ref()
            ),
        );
    }
    let raw = RawFallback {
        directory: r.directory.clone(),
        contact: r.contact.clone(),
        eab_kid: r.eab_kid.clone(),
        eab_hmac_key_file: r.eab_hmac_key_file.clone(),
        profile: r.profile.clone(),
    };
    if raw.directory.is_none() {
        return cx.err(
            span,
            "acme.ca.directory",
            "is required in every [[acme.ca]]",
        );
    }
    Ok(NamedCa {
        name: name.get_ref().clone(),
        issuer: Issuer::from_raw(&raw, Some(&primary.contact), require_cn, "acme.ca", cx)?,
        ca_roots: optional(&r.ca_roots, None, |p| {
            abs_path(cx, "acme.ca.ca_roots", p, PathKind::File).map(Some)
        })?,
        staging_directory: optional(&r.staging_directory, None, |d| {
            directory_url(d, "acme.ca.staging_directory", cx).map(Some)
        })?,
        staging_ca_roots: optional(&r.staging_ca_roots, None, |p| {
            abs_path(cx, "acme.ca.staging_ca_roots", p, PathKind::File).map(Some)
        })?,
    })
}

/// No staging directory (`[acme]`'s or a named CA's) may be a CA that issues real
/// certificates: Let's Encrypt's production directory, `[acme]`'s, a fallback's or a named
/// CA's. A dry run must never order a real certificate.
fn real_directories_are_not_staging(
    a: &RawAcme,
    primary: &Issuer,
    fallback: &[Issuer],
    cas: &[NamedCa],
    cx: &Ctx,
) -> anyhow::Result<()> {
    let real = |url: &str| {
        url == LETSENCRYPT
            || url == primary.directory
            || fallback.iter().any(|f| f.directory == url)
            || cas.iter().any(|c| c.issuer.directory == url)
    };
    let given = a
        .cas
        .iter()
        .filter_map(|c| c.get_ref().staging_directory.as_ref())
        .map(|d| (d, "acme.ca.staging_directory"))
        .chain(
            a.staging_directory
                .as_ref()
                .map(|d| (d, "acme.staging_directory")),
        );
    for (d, key) in given {
        if real(&directory_url(d, key, cx)?) {
            return cx.err(
                d.span(),
                key,
                "is the directory of a CA that issues real certificates ([acme], a fallback, an [[acme.ca]] or Let's Encrypt's production): a dry run must never order a real certificate; give the CA's staging (test) directory",
            );
        }
    }
    Ok(())
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

#[cfg(test)]
mod named_tests {
    use super::super::tests::{parse, GOOD};
    use super::*;

    /// GOOD in the per-host layout with `acme` appended to `[acme]` and `node1` to the first
    /// `[[node]]`.
    fn per_host(acme: &str, node1: &str) -> String {
        GOOD.replacen("layout = \"shared\"", "layout = \"per-host\"", 1)
            .replacen("http_port = 80\n", &format!("http_port = 80\n{acme}\n"), 1)
            .replacen(
                "address = \"192.0.2.11\"\n",
                &format!("address = \"192.0.2.11\"\n{node1}\n"),
                1,
            )
    }

    const IGTF: &str = "[[acme.ca]]\nname = \"igtf\"\ndirectory = \"https://acme.igtf.example/dir\"\neab_kid = \"kid-9\"\neab_hmac_key_file = \"/etc/vipcert/igtf.key\"\nprofile = \"grid\"\nca_roots = \"/etc/vipcert/igtf-roots.pem\"";

    #[test]
    fn a_named_ca_is_its_lineage_s_acme_with_its_own_account_and_roots() {
        let c = parse(&per_host(
            &format!("ca_roots = \"/etc/vipcert/roots.pem\"\n[[acme.fallback]]\ndirectory = \"https://b.example.org/dir\"\n{IGTF}"),
            "ca = \"igtf\"",
        ))
        .unwrap();
        assert!(c.acme.require_cn);
        assert_eq!(c.nodes[0].ca.as_deref(), Some("igtf"));
        assert_eq!(c.nodes[1].ca, None);
        assert_eq!(c.lineage_ca("dtn1.example.org"), Some("igtf"));
        assert_eq!(c.lineage_ca("dtn2.example.org"), None);

        let n = c.for_ca(Some("igtf"));
        assert_eq!(n.acme.directory, "https://acme.igtf.example/dir");
        assert_eq!(n.acme.eab.as_ref().unwrap().kid, "kid-9");
        assert_eq!(n.acme.profile.as_deref(), Some("grid"));
        // Its own roots, not [acme]'s; [acme]'s contact; the shared keys kept.
        assert_eq!(
            n.acme.ca_roots.as_deref(),
            Some(std::path::Path::new("/etc/vipcert/igtf-roots.pem"))
        );
        assert_eq!(n.acme.contact, c.acme.contact);
        assert_eq!(n.acme.key_type, c.acme.key_type);
        // No fallback: its lineage stays at the named CA.
        assert_eq!(n.issuers().len(), 1);
        assert_eq!(c.for_ca(None).issuers().len(), 2);
        // Accounts apart, even from a CA at the same host.
        assert_eq!(n.acme.account_dir(), "named/igtf/acme.igtf.example");
        assert_eq!(c.acme.account_dir(), "acme-v02.api.letsencrypt.org");
        assert_eq!(
            n.acme.describe(),
            "[[acme.ca]] \"igtf\" https://acme.igtf.example/dir"
        );
        assert_eq!(
            c.acme.profile_at("https://acme.igtf.example/dir"),
            Some("grid")
        );

        // Revocation goes to the CA that issued a version, whichever lineage asks.
        let at = |ca, dir| c.at_directory(ca, dir).map(|c| c.acme.account_dir());
        assert_eq!(
            at(Some("igtf"), "https://acme.igtf.example/dir").as_deref(),
            Some("named/igtf/acme.igtf.example")
        );
        assert_eq!(
            at(Some("igtf"), acme_dir()).as_deref(),
            Some("acme-v02.api.letsencrypt.org")
        );
        assert_eq!(
            at(None, "https://b.example.org/dir").as_deref(),
            Some("b.example.org")
        );
        assert_eq!(at(None, "https://gone.example.org/dir"), None);

        assert!(c.with_named_ca("igtf").is_ok());
        let e = format!("{:#}", c.with_named_ca("harica").unwrap_err());
        assert!(
            e.contains("no [[acme.ca]] named \"harica\"; its named CAs: igtf"),
            "{e}"
        );

        // A dry run orders every lineage at the staging CA, the named CA's too.
        let s = parse(&per_host(
            &format!("staging_ca_roots = \"/etc/vipcert/s.pem\"\n{IGTF}"),
            "ca = \"igtf\"",
        ))
        .unwrap()
        .staging()
        .unwrap();
        assert_eq!(s.for_ca(Some("igtf")).acme.directory, LETSENCRYPT_STAGING);
    }

    fn acme_dir() -> &'static str {
        LETSENCRYPT
    }

    #[test]
    fn named_ca_and_node_ca_errors_name_the_key() {
        let shared = GOOD
            .replacen("http_port = 80\n", &format!("http_port = 80\n{IGTF}\n"), 1)
            .replacen(
                "address = \"192.0.2.11\"\n",
                "address = \"192.0.2.11\"\nca = \"igtf\"\n",
                1,
            );
        let e = format!("{:#}", parse(&shared).unwrap_err());
        assert!(e.contains("node.ca"), "{e}");
        assert!(e.contains("layout = \"per-host\""), "{e}");

        let many: String = (0..9)
            .map(|i| {
                format!("[[acme.ca]]\nname = \"c{i}\"\ndirectory = \"https://c{i}.example/d\"\n")
            })
            .collect();
        let igtf2 = IGTF.replace("acme.igtf.example", "other.example");
        for (acme, node1, key, says) in [
            (IGTF, "ca = \"harica\"", "node.ca", "no [[acme.ca]] is named \"harica\" (the named CAs are: igtf)"),
            ("", "ca = \"igtf\"", "node.ca", "(there is none)"),
            ("[[acme.ca]]\ndirectory = \"https://x.example/d\"", "", "acme.ca.name", "is required"),
            ("[[acme.ca]]\nname = \"a b\"\ndirectory = \"https://x.example/d\"", "", "acme.ca.name", "not a CA name"),
            ("[[acme.ca]]\nname = \"x\"", "", "acme.ca.directory", "is required"),
            ("[[acme.ca]]\nname = \"x\"\ndirectory = \"http://x.example/d\"", "", "acme.ca.directory", "https://"),
            (&format!("{IGTF}\n{igtf2}"), "", "acme.ca", "name \"igtf\" is given twice"),
            ("[[acme.ca]]\nname = \"le\"\ndirectory = \"letsencrypt\"", "", "acme.ca", "listed twice"),
            ("[[acme.ca]]\nname = \"x\"\ndirectory = \"https://x.example/d\"\nca_roots = \"r.pem\"", "", "acme.ca.ca_roots", ""),
            ("[[acme.ca]]\nname = \"x\"\ndirectory = \"https://x.example/d\"\neab_kid = \"k\"", "", "acme.ca.eab_kid", ""),
            ("[[acme.ca]]\nname = \"x\"\ndirectory = \"https://x.example/d\"\nsurprise = 1", "", "surprise", ""),
            (&many, "", "acme.ca", "at most 8 named CAs"),
            (&format!("{IGTF}\nstaging_directory = \"letsencrypt\""), "", "acme.ca.staging_directory", "never order a real certificate"),
            (&format!("{IGTF}\nstaging_directory = \"https://acme.igtf.example/dir\""), "", "acme.ca.staging_directory", "never order a real certificate"),
        ] {
            let e = format!("{:#}", parse(&per_host(acme, node1)).unwrap_err());
            assert!(e.contains(key) && e.contains(says), "{acme} / {node1}: {e}");
        }
    }

    /// Profiles known to drop the subject CN are refused where they are configured, for
    /// every CA, unless `require_cn = false`; then verification takes a CN-less certificate.
    #[test]
    fn cn_dropping_profiles_need_require_cn_false() {
        for (acme, key) in [
            ("profile = \"tlsserver\"", "acme.profile"),
            (
                "[[acme.fallback]]\ndirectory = \"https://b.example/d\"\nprofile = \"shortlived\"",
                "acme.fallback.profile",
            ),
            (
                &IGTF.replace("\"grid\"", "\"tlsserver\""),
                "acme.ca.profile",
            ),
        ] {
            let e = format!("{:#}", parse(&per_host(acme, "")).unwrap_err());
            assert!(e.contains(key), "{acme}: {e}");
            assert!(e.contains("without a subject CN"), "{e}");
            assert!(e.contains("require_cn = false"), "{e}");
            let c = parse(&per_host(&format!("require_cn = false\n{acme}"), "")).unwrap();
            assert!(!c.acme.require_cn);
        }
        // Any other name is the CA's to judge (and verification's, after issue).
        assert!(parse(&per_host("profile = \"classic\"", "")).is_ok());
        let e = format!(
            "{:#}",
            parse(&per_host("require_cn = \"no\"", "")).unwrap_err()
        );
        assert!(e.contains("expected a boolean"), "{e}");
    }
}
