//! Value parsers shared by the sections: durations (always with a minimum and a maximum), "one
//! of these strings", addresses, ports, host names, mailto contacts, file modes, bounded
//! numbers, and short names.
//!
//! Owns how a value is spelt and the message that says it is not. It does not know which key
//! uses which parser or default: that is each section's `from_raw`.

use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::ops::{Bound, RangeBounds, RangeInclusive};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use toml::Spanned;

use super::ctx::Ctx;

/// `n` seconds, for bounds tables.
pub(super) const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `n` milliseconds, for bounds tables.
pub(super) const fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A file mode, e.g. 0o644.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileMode(pub u32);

/// "10s", "2h", "1m30s", "500ms".
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like \"10s\" or \"2h\": {e}"))
}

/// RFC 1123 host name check: letters, digits, hyphens; labels 1–63; total ≤ 253; at least one
/// dot; the last label not all digits (that is an IP address, which no CA issues for HTTP-01
/// and no GSI client matches by CN).
pub(crate) fn check_hostname(name: &str) -> Result<(), String> {
    if name.len() > 253 {
        return Err(format!("{name:?} is longer than 253 characters"));
    }
    if !name.contains('.') {
        return Err(format!(
            "{name:?} is not a fully qualified host name (no dot)"
        ));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "{name:?} is not a valid host name (label {label:?})"
            ));
        }
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("{name:?} must be lower case"));
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "{name:?} is an IP address, not a host name; use the name in DNS"
        ));
    }
    for label in name.split('.').filter(|l| l.get(2..4) == Some("--")) {
        check_reserved_label(name, label)?;
    }
    Ok(())
}

/// A label with "--" in the third and fourth place is reserved for IDNA (RFC 5891 §4.2.3.1):
/// it must be an A-label, "xn--" then the punycode of a valid internationalized label, spelt
/// exactly as IDNA spells it. CAs refuse any other (Let's Encrypt: "invalid IDN").
fn check_reserved_label(name: &str, label: &str) -> Result<(), String> {
    if !label.starts_with("xn--") {
        return Err(format!(
            "{name:?} is not a valid host name (label {label:?}: \"--\" in the third and fourth place is reserved for IDNA \"xn--\" labels, and CAs refuse others)"
        ));
    }
    match idna::domain_to_ascii_strict(label) {
        Ok(a) if a == label => Ok(()),
        _ => Err(format!(
            "{name:?} is not a valid host name (label {label:?} is not valid IDNA: its punycode does not decode to a valid name, and CAs refuse it); write the name as `idn2 --lookup` prints it"
        )),
    }
}

/// An ACME account contact: `mailto:` and one address `local@domain` (RFC 8555 §7.3 allows
/// one address per URL, no query part), the domain a host name.
pub(crate) fn check_mailto(c: &str) -> Result<(), String> {
    let hint = "use \"mailto:someone@example.org\"";
    let Some(addr) = c.strip_prefix("mailto:") else {
        return Err(format!("{c:?} must start with \"mailto:\"; {hint}"));
    };
    let ok_local = |l: &str| {
        !l.is_empty()
            && l.len() <= 64
            && l.bytes()
                .all(|b| b.is_ascii_graphic() && !b"@,?<>()[]\\\";:".contains(&b))
    };
    match addr.split_once('@') {
        Some((local, domain))
            if ok_local(local) && check_hostname(&domain.to_ascii_lowercase()).is_ok() =>
        {
            Ok(())
        }
        _ => Err(format!("{c:?} is not one e-mail address; {hint}")),
    }
}

/// `default` for an absent key, else what `parse` makes of it.
pub(super) fn optional<V, T>(
    v: &Option<Spanned<V>>,
    default: T,
    parse: impl FnOnce(&Spanned<V>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    v.as_ref().map_or(Ok(default), parse)
}

/// The value paired with `v`'s spelling in `choices` (exactly as written there).
pub(super) fn one_of<T: Copy>(
    cx: &Ctx,
    key: &str,
    v: &Spanned<String>,
    choices: &[(&str, T)],
) -> anyhow::Result<T> {
    pick(cx, key, v, choices, |a, b| a == b)
}

/// As `one_of`, in any letter case (keepalived's own words are upper case, people type both).
pub(super) fn one_of_any_case<T: Copy>(
    cx: &Ctx,
    key: &str,
    v: &Spanned<String>,
    choices: &[(&str, T)],
) -> anyhow::Result<T> {
    pick(cx, key, v, choices, str::eq_ignore_ascii_case)
}

fn pick<T: Copy>(
    cx: &Ctx,
    key: &str,
    v: &Spanned<String>,
    choices: &[(&str, T)],
    same: impl Fn(&str, &str) -> bool,
) -> anyhow::Result<T> {
    if let Some((_, t)) = choices.iter().find(|(name, _)| same(name, v.get_ref())) {
        return Ok(*t);
    }
    let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
    let list = match names.as_slice() {
        [a, b] => format!("{a} or {b}"),
        _ => format!("one of {}", names.join(", ")),
    };
    cx.err(v.span(), key, format!("{:?} is not {list}", v.get_ref()))
}

/// A duration key: `default` when absent (defaults are within `bounds` by construction).
/// Every duration has a maximum: an absurd one ("500000000000y") would overflow the clock
/// arithmetic of whatever uses it, long after `config check` said yes.
pub(super) fn duration(
    cx: &Ctx,
    key: &str,
    v: &Option<Spanned<String>>,
    default: Duration,
    bounds: RangeInclusive<Duration>,
) -> anyhow::Result<Duration> {
    debug_assert!(bounds.contains(&default), "{key}: default out of bounds");
    optional(v, default, |s| {
        let d = parse_duration(s.get_ref()).or_else(|e| cx.err(s.span(), key, e))?;
        match outside(&bounds, d) {
            None => Ok(d),
            Some(m) => cx.err(s.span(), key, m),
        }
    })
}

/// What is wrong with `d` for `bounds`, if anything.
fn outside(bounds: &impl RangeBounds<Duration>, d: Duration) -> Option<String> {
    let show = humantime::format_duration;
    match bounds.start_bound() {
        Bound::Included(m) if d < *m => return Some(format!("must be at least {}", show(*m))),
        Bound::Excluded(m) if d <= *m => return Some(format!("must be longer than {}", show(*m))),
        _ => {}
    }
    match bounds.end_bound() {
        Bound::Included(m) if d > *m => Some(format!("must be at most {}", show(*m))),
        Bound::Excluded(m) if d >= *m => Some(format!("must be shorter than {}", show(*m))),
        _ => None,
    }
}

/// A number key within `range`; `unit` ends the message (e.g. " consecutive checks").
pub(super) fn number<T: Copy + PartialOrd + Display>(
    cx: &Ctx,
    key: &str,
    v: &Option<Spanned<T>>,
    default: T,
    range: RangeInclusive<T>,
    unit: &str,
) -> anyhow::Result<T> {
    optional(v, default, |n| {
        if range.contains(n.get_ref()) {
            return Ok(*n.get_ref());
        }
        let (lo, hi) = (range.start(), range.end());
        cx.err(
            n.span(),
            key,
            format!("must be between {lo} and {hi}{unit}"),
        )
    })
}

/// `v` parsed as a `T`, or "`v` is not `what`".
fn parsed<T: FromStr>(cx: &Ctx, key: &str, v: &Spanned<String>, what: &str) -> anyhow::Result<T> {
    match v.get_ref().parse() {
        Ok(t) => Ok(t),
        Err(_) => cx.err(v.span(), key, format!("{:?} is not {what}", v.get_ref())),
    }
}

pub(super) fn ip(cx: &Ctx, key: &str, v: &Spanned<String>) -> anyhow::Result<IpAddr> {
    parsed(cx, key, v, "an IP address")
}

/// The address of one host: not unspecified (0.0.0.0, ::), multicast or broadcast.
pub(super) fn host_ip(cx: &Ctx, key: &str, v: &Spanned<String>) -> anyhow::Result<IpAddr> {
    let a = ip(cx, key, v)?;
    let broadcast = matches!(a, IpAddr::V4(v4) if v4.is_broadcast());
    if a.is_unspecified() || a.is_multicast() || broadcast {
        return cx.err(
            v.span(),
            key,
            format!("{a} is not the address of one host (unspecified, multicast or broadcast)"),
        );
    }
    Ok(a)
}

/// `ip:port`, the port not 0 (which would bind a random port nobody can find).
pub(super) fn socket_addr(cx: &Ctx, key: &str, v: &Spanned<String>) -> anyhow::Result<SocketAddr> {
    let a: SocketAddr = parsed(cx, key, v, "an ip:port address")?;
    if a.port() == 0 {
        return cx.err(
            v.span(),
            key,
            format!("{a}: port 0 is not a port; give one"),
        );
    }
    Ok(a)
}

/// A TCP port key, 1–65535.
pub(super) fn port(
    cx: &Ctx,
    key: &str,
    v: &Option<Spanned<u16>>,
    default: u16,
) -> anyhow::Result<u16> {
    number(cx, key, v, default, 1..=u16::MAX, "")
}

pub(super) fn hostname(cx: &Ctx, key: &str, v: &Spanned<String>) -> anyhow::Result<String> {
    match check_hostname(v.get_ref()) {
        Ok(()) => Ok(v.get_ref().clone()),
        Err(m) => cx.err(v.span(), key, m),
    }
}

/// An octal file mode like "0644" or "0o600".
pub(super) fn mode(
    cx: &Ctx,
    key: &str,
    v: &Option<Spanned<String>>,
    default: FileMode,
) -> anyhow::Result<FileMode> {
    optional(v, default, |s| {
        match u32::from_str_radix(s.get_ref().trim_start_matches("0o"), 8) {
            Ok(m) if m <= 0o777 => Ok(FileMode(m)),
            // chown(2) clears setuid/setgid, so such a mode never matches what is on disk and
            // every run would rewrite the file; a certificate has no use for them.
            Ok(m) if m <= 0o7777 => cx.err(
                s.span(),
                key,
                format!(
                    "{:?} sets setuid, setgid or sticky bits; use permission bits only, like \"0400\"",
                    s.get_ref()
                ),
            ),
            _ => cx.err(
                s.span(),
                key,
                format!("{:?} is not an octal file mode like \"0644\"", s.get_ref()),
            ),
        }
    })
}

/// Longest path accepted: PATH_MAX (4096) less the terminating NUL.
const MAX_PATH: usize = 4095;

/// What a path key names, for the message when it does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PathKind {
    File,
    Dir,
}

/// An absolute, normal path: no "." or ".." component (".." under `[install] root`, or on a
/// share mounted elsewhere, would lead somewhere else than it reads), no control character,
/// at most 4095 bytes; a file's path does not end in "/".
pub(super) fn abs_path(
    cx: &Ctx,
    key: &str,
    v: &Spanned<PathBuf>,
    kind: PathKind,
) -> anyhow::Result<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let p = v.get_ref();
    let b = p.as_os_str().as_bytes();
    let why = if b.len() > MAX_PATH {
        format!("is longer than {MAX_PATH} bytes")
    } else if !p.is_absolute() {
        "is not an absolute path; give the whole path, from /".to_string()
    } else if b.iter().any(|c| c.is_ascii_control()) {
        "holds a control character".to_string()
    } else if b.split(|&c| c == b'/').any(|c| c == b"." || c == b"..") {
        "has a \".\" or \"..\" component; write the path it means without them".to_string()
    } else if kind == PathKind::File && (b.ends_with(b"/") || p.file_name().is_none()) {
        "names a directory; give the path of the file".to_string()
    } else {
        return Ok(p.clone());
    };
    cx.err(v.span(), key, format!("{p:?} {why}"))
}

/// Largest uid or gid a key may give: chown(2) reads 4294967295 ((uid_t)-1) as "leave it".
const MAX_ID: u64 = u32::MAX as u64 - 1;

/// An install owner or group: a number up to 4294967294, or a name as useradd/groupadd make
/// them (1 to 32 letters, digits, '.', '_', '-', not starting with '-'; a trailing '$' for
/// machine accounts). Whether the name exists is for the host (`config check` on a node, and
/// `install`) to say.
pub(super) fn account(cx: &Ctx, key: &str, v: &Spanned<String>) -> anyhow::Result<String> {
    let s = v.get_ref();
    let why = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        match s.parse::<u64>() {
            Ok(n) if n <= MAX_ID => return Ok(s.clone()),
            _ => format!("{s:?} is not an id: ids go from 0 to {MAX_ID} (4294967295 means \"unchanged\" to chown)"),
        }
    } else {
        let name = s.strip_suffix('$').unwrap_or(s);
        if is_short_name(name, 32, b"._-") && !name.starts_with('-') {
            return Ok(s.clone());
        }
        format!("{s:?} is neither a name (1 to 32 letters, digits, '.', '_', '-') nor a number")
    };
    cx.err(v.span(), key, why)
}

/// 1 to `max` bytes, each a letter, a digit or one of `extra`: names that end up in other
/// programs' files (metric labels, interface names) where anything else would need quoting.
pub(super) fn is_short_name(s: &str, max: usize, extra: &[u8]) -> bool {
    (1..=max).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{parse, GOOD};
    use super::*;

    #[test]
    fn durations_and_modes_parse() {
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("soon").is_err());
        let bad = GOOD.replace("root = \"/\"", "root = \"/\"\nkey_mode = \"0644\"");
        assert!(format!("{:#}", parse(&bad).unwrap_err()).contains("lets group or others read"));
    }

    #[test]
    fn bounds_name_the_limit() {
        let d = Duration::from_secs;
        assert_eq!(
            outside(&(d(1)..=d(60)), Duration::ZERO).as_deref(),
            Some("must be at least 1s")
        );
        assert_eq!(outside(&(d(1)..=d(60)), d(1)), None);
        assert_eq!(
            outside(&(d(1)..=d(60)), d(61)).as_deref(),
            Some("must be at most 1m")
        );
        assert_eq!(outside(&.., Duration::ZERO), None);
    }

    #[test]
    fn reserved_labels_must_be_valid_idna() {
        // bücher, and a label with '-' elsewhere.
        for ok in [
            "xn--bcher-kva.example.org",
            "a-b--c.example.org",
            "dtn-1.example.org",
        ] {
            assert_eq!(check_hostname(ok), Ok(()), "{ok}");
        }
        for bad in [
            "xn--zz.example.org",
            "xn--.example.org",
            "xn--a.example.org",
            "ab--cd.example.org",
            "dtn.xn--zz",
        ] {
            assert!(check_hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn owners_and_paths() {
        let with = |k: &str| GOOD.replace("root = \"/\"", &format!("root = \"/\"\n{k}"));
        for ok in [
            "owner = \"xrootd\"",
            "owner = \"0\"",
            "group = \"4294967294\"",
            "owner = \"host$\"",
        ] {
            parse(&with(ok)).unwrap_or_else(|e| panic!("{ok}: {e:#}"));
        }
        for bad in [
            "owner = \"4294967295\"",
            "owner = \"18446744073709551616\"",
            "owner = \"-x\"",
            "group = \"a b\"",
            "cert = \"/etc/x/../c.pem\"",
            "cert = \"/etc/x/./c.pem\"",
            "cert = \"/etc/x/\"",
            "key = \"k.pem\"",
            "key = \"/etc/x\\nk.pem\"",
        ] {
            assert!(parse(&with(bad)).is_err(), "{bad}");
        }
        let long = format!("cert = \"/{}\"", "a".repeat(4095));
        let e = format!("{:#}", parse(&with(&long)).unwrap_err());
        assert!(e.contains("longer than 4095 bytes"), "{e}");
    }

    #[test]
    fn hostnames_and_contacts() {
        assert!(check_hostname("dtn1.example.org").is_ok());
        assert!(check_hostname("10.1.2.3")
            .unwrap_err()
            .contains("IP address"));
        assert!(check_hostname("a.b.123").is_err());
        assert!(check_mailto("mailto:grid-admin@example.org").is_ok());
        assert!(check_mailto("mailto:Grid.Admin+x@Example.ORG").is_ok());
        for bad in [
            "mailto:",
            "mailto:a@b@c",
            "mailto:@example.org",
            "mailto:a@",
            "a@b.org",
            "mailto:a b@example.org",
            "mailto:a@b.org,c@d.org",
            "mailto:a@b.org?cc=c@d.org",
        ] {
            assert!(check_mailto(bad).is_err(), "{bad}");
        }
    }
}
