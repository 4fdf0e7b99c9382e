//! The dns-persist-01 record (draft-ietf-acme-dns-persist, the syntax Let's Encrypt's staging
//! and Pebble 2.10 validate: `accounturi=`): one persistent TXT record per name at
//! `_validation-persist.<name>` whose value is an RFC 8659 issue-value naming the CA (an
//! issuer domain name) and the ACME account, e.g.
//! `authority.example; accounturi=https://ca.example/acct/123; policy=wildcard; persistUntil=1721952000`.
//!
//! Owns that record, pure: the validated parts ([`PersistRecord`]), its value, its split into
//! TXT character-strings and its zone-file line, the parse of a value found in DNS
//! ([`parse`], as a CA reads it: RFC 8659 syntax, tags case-insensitive, unknown tags
//! ignored) and the judgement of what a name holds against what it should ([`judge`]). It
//! neither asks DNS (`dns`) nor the CA (`acme`): callers hand it what those said.

use std::fmt;

/// The label prepended to a name: the draft's "DNS TXT Record Persistent DCV Domain Label".
pub const LABEL: &str = "_validation-persist";
/// The TTL of a printed record: the draft's examples use an hour. A CA may reuse a validation
/// for no longer than the record's TTL, and a reuse ending costs nothing here (the record is
/// still there: the CA validates again with no change to DNS).
pub const TTL: u32 = 3600;
/// RFC 1035 §3.3: a TXT character-string holds at most 255 octets.
const MAX_STRING: usize = 255;
/// The longest account URL taken (a CA's are ~60 octets; the draft asks CAs to keep them short).
const MAX_ACCOUNT_URI: usize = 1024;
/// The draft's bound on an issuer domain name.
const MAX_ISSUER: usize = 253;
/// The longest TXT value parsed (a value is read from DNS: whatever arrives is bounded).
const MAX_VALUE: usize = 4096;

/// What is wrong with a part of a record to be written. A caller shows it; nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The issuer domain name is not a lowercase A-label name without a trailing dot.
    #[error("the issuer domain name {0:?} is not a domain name in lowercase A-labels (draft-ietf-acme-dns-persist §3: letters, digits, '-' and '.', at most 253 octets)")]
    Issuer(String),
    /// The account URL cannot be an RFC 8659 parameter value.
    #[error("the account URL {0:?} cannot go into the record (RFC 8659 values are 1 to 1024 printable ASCII characters without ';' or spaces)")]
    AccountUri(String),
}

/// One name's dns-persist-01 record: the parts, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistRecord {
    /// The CA's issuer domain name (lowercase A-labels, no trailing dot).
    pub issuer: String,
    /// The ACME account URL (RFC 8657 §3 `accounturi`).
    pub account_uri: String,
    /// `policy=wildcard`: the validation also covers subdomains and `*.<name>`.
    pub wildcard: bool,
    /// `persistUntil=`: after this Unix time the CA takes the record for no new validation.
    pub persist_until: Option<u64>,
}

/// The owner name of `name`'s record, with the root's dot: `_validation-persist.<name>.`.
pub fn owner(name: &str) -> String {
    format!("{LABEL}.{}.", name.trim_end_matches('.'))
}

/// `name` as the draft's normalization leaves an issuer domain name (lowercase, no trailing
/// dot), or why it is not one. Non-ASCII is refused, not converted: a CA sends A-labels.
pub fn issuer_name(name: &str) -> Result<String, RecordError> {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if n.is_empty() || n.len() > MAX_ISSUER || !n.split('.').all(label_ok) {
        return Err(RecordError::Issuer(name.chars().take(300).collect()));
    }
    Ok(n)
}

/// RFC 8659 §4.2 `value = *(%x21-3A / %x3C-7E)`: printable ASCII but ';' and space.
fn value_char(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b';'
}

impl PersistRecord {
    /// The record for `issuer` and `account_uri`, each checked.
    pub fn new(
        issuer: &str,
        account_uri: &str,
        wildcard: bool,
        persist_until: Option<u64>,
    ) -> Result<PersistRecord, RecordError> {
        let u = account_uri;
        if u.is_empty() || u.len() > MAX_ACCOUNT_URI || !u.bytes().all(value_char) {
            return Err(RecordError::AccountUri(u.chars().take(300).collect()));
        }
        Ok(PersistRecord {
            issuer: issuer_name(issuer)?,
            account_uri: u.to_string(),
            wildcard,
            persist_until,
        })
    }

    /// The parts as the draft writes them, each but the last ending in ';', each but the
    /// first starting with a space: `["authority.example;", " accounturi=…"]`.
    fn parts(&self) -> Vec<String> {
        let mut p = vec![
            self.issuer.clone(),
            format!(" accounturi={}", self.account_uri),
        ];
        if self.wildcard {
            p.push(" policy=wildcard".into());
        }
        if let Some(t) = self.persist_until {
            p.push(format!(" persistUntil={t}"));
        }
        let last = p.len() - 1;
        for s in &mut p[..last] {
            s.push(';');
        }
        p
    }

    /// The TXT value, whole: what a CA reads once it joined the character-strings.
    pub fn value(&self) -> String {
        self.parts().concat()
    }

    /// The value as TXT character-strings of at most 255 octets: one per part as in the
    /// draft's examples, a part longer than that (a long account URL) cut at 255 (RFC 1035
    /// §3.3; the draft's §"DNS Record Size Considerations").
    pub fn strings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for part in self.parts() {
            // ASCII only (checked in `new`): any byte index is a char boundary.
            let mut rest = part.as_str();
            while rest.len() > MAX_STRING {
                out.push(rest[..MAX_STRING].to_string());
                rest = &rest[MAX_STRING..];
            }
            out.push(rest.to_string());
        }
        out
    }

    /// The zone-file line for `name` (RFC 1035 §5.1 master-file syntax, as the draft prints
    /// it): `_validation-persist.<name>. 3600 IN TXT ("issuer;" " accounturi=…")`.
    pub fn zone_line(&self, name: &str) -> String {
        let quoted: Vec<String> = self
            .strings()
            .iter()
            .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        format!("{} {TTL} IN TXT ({})", owner(name), quoted.join(" "))
    }
}

/// `--persist-until`'s argument as Unix seconds: a Unix time, a date (`2027-06-30`, its
/// midnight UTC) or an RFC 3339 time (`2027-06-30T12:00:00Z`). Refused when not after `now`
/// (the CA would take the record for nothing) or past year 9999.
pub fn persist_until(arg: &str, now: u64) -> Result<u64, String> {
    let a = arg.trim();
    let t = if !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) {
        a.parse::<u64>().map_err(|e| e.to_string())?
    } else {
        let full = if a.len() == 10 {
            format!("{a}T00:00:00Z")
        } else {
            a.to_string()
        };
        let at = humantime::parse_rfc3339_weak(&full).map_err(|e| {
            format!("{arg:?} is not a date (2027-06-30), an RFC 3339 time or Unix seconds: {e}")
        })?;
        let secs = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?;
        secs.as_secs()
    };
    if t > crate::unixtime::MAX as u64 {
        return Err(format!("{arg:?} is after the year 9999"));
    }
    if t <= now {
        return Err(format!(
            "{arg:?} ({}) is not in the future: the CA would take the record for no validation",
            crate::unixtime::rfc3339(t as i64)
        ));
    }
    Ok(t)
}

/// A TXT value read as a dns-persist-01 record, as a CA reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The issuer domain name, normalized (lowercase, no trailing dot).
    pub issuer: String,
    /// `accounturi`.
    pub account_uri: String,
    /// The `policy` value, as written ("" when absent).
    pub policy: String,
    /// `persistUntil`.
    pub persist_until: Option<u64>,
}

/// Why a TXT value is no dns-persist-01 record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Empty, or longer than vipcert reads.
    #[error("empty or longer than 4096 octets")]
    Size,
    /// The part before the first ';' is no domain name.
    #[error("{0}")]
    Issuer(RecordError),
    /// A parameter is not `tag=value` with a value of RFC 8659 characters.
    #[error("parameter {0:?} is not tag=value (RFC 8659)")]
    Parameter(String),
    /// A known tag appears twice.
    #[error("parameter {0:?} appears twice")]
    Duplicate(String),
    /// `persistUntil` is not a base-10 integer.
    #[error("persistUntil={0:?} is not a Unix time in seconds")]
    PersistUntil(String),
    /// No `accounturi`.
    #[error("it has no accounturi= parameter")]
    NoAccountUri,
}

/// Read `value` (the character-strings of one TXT record, joined) as an RFC 8659 issue-value
/// with the draft's parameters: WSP around parts ignored, tags case-insensitive, unknown tags
/// ignored, each known tag at most once, `accounturi` mandatory.
pub fn parse(value: &str) -> Result<Parsed, ParseError> {
    if value.is_empty() || value.len() > MAX_VALUE {
        return Err(ParseError::Size);
    }
    let wsp = |c: char| c == ' ' || c == '\t';
    let mut parts = value.split(';');
    let issuer = parts.next().unwrap_or_default().trim_matches(wsp);
    let issuer = issuer_name(issuer).map_err(ParseError::Issuer)?;
    let (mut account, mut policy, mut until) = (None, None, None);
    for param in parts {
        let param = param.trim_matches(wsp);
        let Some((tag, v)) = param.split_once('=') else {
            return Err(ParseError::Parameter(param.into()));
        };
        let (tag, v) = (tag.trim_matches(wsp), v.trim_matches(wsp));
        if tag.is_empty() || !v.bytes().all(value_char) {
            return Err(ParseError::Parameter(param.into()));
        }
        let slot = match tag.to_ascii_lowercase().as_str() {
            "accounturi" => &mut account,
            "policy" => &mut policy,
            "persistuntil" => &mut until,
            _ => continue,
        };
        if slot.replace(v.to_string()).is_some() {
            return Err(ParseError::Duplicate(tag.into()));
        }
    }
    let persist_until = match until {
        // Clamped where it is read, as every timestamp from outside: past year 9999 it is no
        // date a CA would honour.
        Some(t) => Some(
            t.parse::<u64>()
                .ok()
                .filter(|s| *s <= crate::unixtime::MAX as u64)
                .ok_or(ParseError::PersistUntil(t))?,
        ),
        None => None,
    };
    Ok(Parsed {
        issuer,
        account_uri: account
            .filter(|a| !a.is_empty())
            .ok_or(ParseError::NoAccountUri)?,
        policy: policy.unwrap_or_default(),
        persist_until,
    })
}

/// What a name's `_validation-persist` TXT records say for our CA and account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A record of our issuer names our account, with the policy we need, not expired.
    Good,
    /// No TXT record at all.
    Missing,
    /// Records, but none for our issuer (the issuers they name, for the message).
    OtherIssuers(Vec<String>),
    /// Our issuer's record does not parse.
    Malformed(ParseError),
    /// Our issuer's record names another account.
    OtherAccount(String),
    /// We need `policy=wildcard` and the record lacks it.
    NotWildcard,
    /// `persistUntil` is past (the Unix time it says).
    Expired(u64),
}

/// What a name's record must say: one of the CA's issuer domain names, our account, and
/// `policy=wildcard` when the name is a wildcard (`*.<name>`: the record is `<name>`'s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// The issuer domain names the CA takes (normalized); a record naming any one will do.
    pub issuers: Vec<String>,
    /// Our account URL.
    pub account_uri: String,
    /// `policy=wildcard` is needed.
    pub wildcard: bool,
}

impl Expect {
    /// What the record of `name` must say for the CA of `issuers` and `account_uri`.
    pub fn for_name(name: &str, issuers: &[String], account_uri: &str) -> Expect {
        Expect {
            issuers: issuers.to_vec(),
            account_uri: account_uri.to_string(),
            wildcard: name.starts_with("*."),
        }
    }
}

/// The name whose `_validation-persist` record covers `name`: itself, or for `*.<base>`,
/// `<base>`.
pub fn record_name(name: &str) -> &str {
    name.strip_prefix("*.").unwrap_or(name)
}

/// Judge `values` (the TXT records found at the name's owner, each joined) against `want` at
/// Unix time `now`. Of several records for our issuers, one good one is enough (a CA takes
/// any that validates); otherwise the first one's fault is told.
pub fn judge(values: &[String], want: &Expect, now: u64) -> Verdict {
    if values.is_empty() {
        return Verdict::Missing;
    }
    // A CA that lists no issuer name: a record of any issuer may be its.
    let ours = |i: &str| want.issuers.is_empty() || want.issuers.iter().any(|w| w == i);
    let mut first_fault = None;
    let mut others = Vec::new();
    for v in values {
        let fault = match parse(v) {
            Err(e) => {
                let issuer = v.split(';').next().map(|i| issuer_name(i.trim()));
                if !matches!(issuer, Some(Ok(ref i)) if ours(i)) {
                    others.push(
                        crate::escape::escape(&v.chars().take(64).collect::<String>()).into_owned(),
                    );
                    continue;
                }
                Verdict::Malformed(e)
            }
            Ok(p) if !ours(&p.issuer) => {
                others.push(p.issuer);
                continue;
            }
            Ok(p) => fault_of(&p, want, now),
        };
        if fault == Verdict::Good {
            return fault;
        }
        first_fault.get_or_insert(fault);
    }
    first_fault.unwrap_or(Verdict::OtherIssuers(others))
}

/// What is wrong with `p`, a record of one of our issuers, as a CA would see it at `now`.
fn fault_of(p: &Parsed, want: &Expect, now: u64) -> Verdict {
    if p.account_uri != want.account_uri {
        return Verdict::OtherAccount(p.account_uri.clone());
    }
    if want.wildcard && !p.policy.eq_ignore_ascii_case("wildcard") {
        return Verdict::NotWildcard;
    }
    match p.persist_until {
        Some(t) if t < now => Verdict::Expired(t),
        _ => Verdict::Good,
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Good => write!(f, "ok"),
            Verdict::Missing => write!(f, "no TXT record"),
            Verdict::OtherIssuers(i) => {
                write!(f, "no record for this CA (records for: {})", i.join(", "))
            }
            Verdict::Malformed(e) => write!(f, "this CA's record is malformed: {e}"),
            Verdict::OtherAccount(a) => write!(f, "this CA's record names another account: {a}"),
            Verdict::NotWildcard => write!(f, "this CA's record lacks policy=wildcard"),
            Verdict::Expired(t) => write!(
                f,
                "this CA's record expired at persistUntil={t} ({})",
                crate::unixtime::rfc3339(*t as i64)
            ),
        }
    }
}

/// What one authoritative server said of one name's record: a verdict, or why it could not
/// be asked (timeout, REFUSED, …: the DNS layer's words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The name validated (the record is at `owner(record_name(name))`).
    pub name: String,
    /// The server asked ("ns1.example.org (192.0.2.53)").
    pub server: String,
    /// Its answer, judged.
    pub verdict: Result<Verdict, String>,
}

/// The dns-persist-01 preflight: every name on every authoritative server of its zone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// One row per name and server.
    pub rows: Vec<Row>,
}

impl Table {
    /// Every server holds a good record for every name.
    pub fn ok(&self) -> bool {
        self.rows.iter().all(|r| r.verdict == Ok(Verdict::Good))
    }
}

impl fmt::Display for Table {
    /// The rows that are not good, aligned (`name  server  what is wrong`), or one line saying
    /// all are; then what to do.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bad: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.verdict != Ok(Verdict::Good))
            .collect();
        if bad.is_empty() {
            let names: std::collections::BTreeSet<&str> =
                self.rows.iter().map(|r| r.name.as_str()).collect();
            return writeln!(
                f,
                "dns-persist-01: every authoritative server holds the record of {} name(s)",
                names.len()
            );
        }
        let w_name = bad
            .iter()
            .map(|r| owner(record_name(&r.name)).len())
            .max()
            .unwrap_or(0);
        let w_server = bad.iter().map(|r| r.server.len()).max().unwrap_or(0);
        writeln!(
            f,
            "dns-persist-01: {} of {} record lookups are not right:",
            bad.len(),
            self.rows.len()
        )?;
        for r in &bad {
            let what = match &r.verdict {
                Ok(v) => v.to_string(),
                Err(e) => format!("cannot ask: {e}"),
            };
            let o = owner(record_name(&r.name));
            writeln!(f, "  {o:<w_name$}  {:<w_server$}  {what}", r.server)?;
        }
        writeln!(f, "`vipcert account persist-record` prints the records to put in each zone (--apply places them with [challenge.dns] method = \"rfc2136\")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCT: &str = "https://ca.example/acct/123";

    fn rec(wildcard: bool, until: Option<u64>) -> PersistRecord {
        PersistRecord::new("authority.example", ACCT, wildcard, until).unwrap()
    }

    /// The draft's four examples (§"Examples"), character-string by character-string:
    /// basic, wildcard, persistUntil, wildcard with persistUntil.
    #[test]
    fn zone_lines_are_the_drafts_examples() {
        assert_eq!(
            rec(false, None).zone_line("example.com"),
            r#"_validation-persist.example.com. 3600 IN TXT ("authority.example;" " accounturi=https://ca.example/acct/123")"#
        );
        assert_eq!(
            rec(true, None).zone_line("example.com"),
            r#"_validation-persist.example.com. 3600 IN TXT ("authority.example;" " accounturi=https://ca.example/acct/123;" " policy=wildcard")"#
        );
        assert_eq!(
            rec(false, Some(1721952000)).zone_line("example.com"),
            r#"_validation-persist.example.com. 3600 IN TXT ("authority.example;" " accounturi=https://ca.example/acct/123;" " persistUntil=1721952000")"#
        );
        assert_eq!(
            rec(true, Some(1721952000)).strings(),
            vec![
                "authority.example;",
                " accounturi=https://ca.example/acct/123;",
                " policy=wildcard;",
                " persistUntil=1721952000",
            ]
        );
        // The draft's "Multiple CA Authorization Records", as values.
        let ca1 = PersistRecord::new(
            "ca1.example",
            "https://ca1.example/acme/acct/12345",
            true,
            None,
        );
        assert_eq!(
            ca1.unwrap().value(),
            "ca1.example; accounturi=https://ca1.example/acme/acct/12345; policy=wildcard"
        );
        let ca2 = PersistRecord::new(
            "ca2.example",
            "https://ca2.example/acme/acct/67890",
            false,
            Some(1767225600),
        );
        assert_eq!(
            ca2.unwrap().value(),
            "ca2.example; accounturi=https://ca2.example/acme/acct/67890; persistUntil=1767225600"
        );
    }

    /// A part over 255 octets is cut into character-strings that join back to the value.
    #[test]
    fn long_account_urls_are_split_at_255_octets() {
        let long = format!("https://ca.example/acct/{}", "7".repeat(600));
        let r = PersistRecord::new("authority.example", &long, false, None).unwrap();
        let s = r.strings();
        assert!(s.iter().all(|x| x.len() <= 255), "{s:?}");
        assert_eq!(s.len(), 4);
        assert_eq!(s.concat(), r.value());
        assert_eq!(parse(&r.value()).unwrap().account_uri, long);
    }

    /// What `new` refuses: non-LDH or Unicode issuers, account URLs RFC 8659 cannot carry.
    #[test]
    fn bad_parts_are_refused() {
        assert_eq!(issuer_name("LetsEncrypt.ORG.").unwrap(), "letsencrypt.org");
        for bad in [
            "",
            "a..b",
            "-a.org",
            "exämple.org",
            "a b.org",
            &"a".repeat(254),
        ] {
            assert!(issuer_name(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "https://x/a;b", "https://x/a b", "https://x/\u{e9}"] {
            let e = PersistRecord::new("ca.example", bad, false, None).unwrap_err();
            assert!(matches!(e, RecordError::AccountUri(_)), "{bad:?}");
        }
        let long = "h".repeat(1025);
        assert!(PersistRecord::new("ca.example", &long, false, None).is_err());
    }

    /// The draft's records parse, whitespace and tag case as RFC 8659 allows; the syntax
    /// errors a CA calls `malformed` are refused.
    #[test]
    fn parse_reads_as_a_ca_does() {
        // A persistUntil past year 9999 is refused where it is read, not carried as a number.
        assert_eq!(
            parse("authority.example; accounturi=https://ca.example/acct/123; persistUntil=18446744073709551615"),
            Err(ParseError::PersistUntil("18446744073709551615".into()))
        );
        let p = parse("authority.example; accounturi=https://ca.example/acct/123; policy=wildcard; persistUntil=1721952000").unwrap();
        assert_eq!(
            p,
            Parsed {
                issuer: "authority.example".into(),
                account_uri: ACCT.into(),
                policy: "wildcard".into(),
                persist_until: Some(1721952000),
            }
        );
        // Boulder's own form: no spaces; tags in any case; unknown tags ignored.
        let p = parse("Authority.Example;AccountURI=https://ca.example/acct/123;future=x").unwrap();
        assert_eq!(
            (p.issuer.as_str(), p.account_uri.as_str()),
            ("authority.example", ACCT)
        );
        assert_eq!(parse("authority.example"), Err(ParseError::NoAccountUri));
        assert_eq!(
            parse("a.example; accounturi=x; accounturi=y"),
            Err(ParseError::Duplicate("accounturi".into()))
        );
        assert_eq!(
            parse("a.example; accounturi=x; persistUntil=tomorrow"),
            Err(ParseError::PersistUntil("tomorrow".into()))
        );
        assert!(matches!(
            parse("a.example; accounturi=x;"),
            Err(ParseError::Parameter(_))
        ));
        assert!(matches!(
            parse("a.example; accounturi"),
            Err(ParseError::Parameter(_))
        ));
        assert!(matches!(
            parse("; accounturi=x"),
            Err(ParseError::Issuer(_))
        ));
        assert_eq!(parse(""), Err(ParseError::Size));
        assert_eq!(parse(&"a".repeat(4097)), Err(ParseError::Size));
        // What we write, we read back.
        let r = rec(true, Some(9));
        let p = parse(&r.value()).unwrap();
        assert_eq!((p.policy.as_str(), p.persist_until), ("wildcard", Some(9)));
    }

    /// The table lists what is wrong, per name and server, aligned; all good is one line.
    #[test]
    fn table_says_which_server_lacks_which_record() {
        let row = |name: &str, server: &str, verdict| Row {
            name: name.into(),
            server: server.into(),
            verdict,
        };
        let mut t = Table {
            rows: vec![
                row("dtn.example.org", "ns1 (192.0.2.1)", Ok(Verdict::Good)),
                row("dtn.example.org", "ns2 (192.0.2.2)", Ok(Verdict::Missing)),
                row(
                    "dtn1.example.org",
                    "ns1 (192.0.2.1)",
                    Ok(Verdict::OtherAccount("https://x/acct/2".into())),
                ),
                row("dtn1.example.org", "ns2 (192.0.2.2)", Err("REFUSED".into())),
            ],
        };
        assert!(!t.ok());
        assert_eq!(
            t.to_string(),
            "dns-persist-01: 3 of 4 record lookups are not right:\n\
             \x20 _validation-persist.dtn.example.org.   ns2 (192.0.2.2)  no TXT record\n\
             \x20 _validation-persist.dtn1.example.org.  ns1 (192.0.2.1)  this CA's record names another account: https://x/acct/2\n\
             \x20 _validation-persist.dtn1.example.org.  ns2 (192.0.2.2)  cannot ask: REFUSED\n\
             `vipcert account persist-record` prints the records to put in each zone (--apply places them with [challenge.dns] method = \"rfc2136\")\n"
        );
        t.rows.retain(|r| r.verdict == Ok(Verdict::Good));
        assert!(t.ok());
        assert_eq!(
            t.to_string(),
            "dns-persist-01: every authoritative server holds the record of 1 name(s)\n"
        );
    }

    /// `--persist-until` takes a date, an RFC 3339 time or Unix seconds, in the future only.
    #[test]
    fn persist_until_takes_dates_and_seconds() {
        let now = 1_700_000_000;
        assert_eq!(persist_until("2024-07-26", now), Ok(1721952000));
        assert_eq!(persist_until("2024-07-26T00:00:00Z", now), Ok(1721952000));
        assert_eq!(persist_until("1721952000", now), Ok(1721952000));
        assert!(persist_until("2020-01-01", now)
            .unwrap_err()
            .contains("not in the future"));
        assert!(persist_until("tomorrow", now)
            .unwrap_err()
            .contains("not a date"));
        assert!(persist_until("99999999999999", now)
            .unwrap_err()
            .contains("9999"));
    }

    /// Each verdict, and that one good record among several is enough.
    #[test]
    fn judge_tells_what_is_missing_or_wrong() {
        let issuers = vec![
            "authority.example".to_string(),
            "ca.example.net".to_string(),
        ];
        let want = Expect::for_name("example.com", &issuers, ACCT);
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let good = "authority.example; accounturi=https://ca.example/acct/123";
        assert_eq!(judge(&[], &want, 0), Verdict::Missing);
        assert_eq!(judge(&v(&[good]), &want, 0), Verdict::Good);
        assert_eq!(
            judge(&v(&["other.example; accounturi=x", "junk"]), &want, 0),
            Verdict::OtherIssuers(vec!["other.example".into(), "junk".into()])
        );
        assert_eq!(
            judge(
                &v(&["authority.example; accounturi=https://ca.example/acct/9"]),
                &want,
                0
            ),
            Verdict::OtherAccount("https://ca.example/acct/9".into())
        );
        assert_eq!(
            judge(&v(&["authority.example; policy=wildcard"]), &want, 0),
            Verdict::Malformed(ParseError::NoAccountUri)
        );
        let wild = Expect::for_name("*.example.com", &issuers, ACCT);
        assert_eq!(record_name("*.example.com"), "example.com");
        assert_eq!(judge(&v(&[good]), &wild, 0), Verdict::NotWildcard);
        let other_name = "ca.example.net; accounturi=https://ca.example/acct/123; policy=WildCard";
        assert_eq!(judge(&v(&[other_name]), &wild, 0), Verdict::Good);
        let dated = format!("{good}; persistUntil=100");
        assert_eq!(judge(&v(&[&dated]), &want, 101), Verdict::Expired(100));
        assert_eq!(judge(&v(&[&dated]), &want, 100), Verdict::Good);
        let wrong_first = "authority.example; accounturi=https://ca.example/acct/9";
        assert_eq!(judge(&v(&[wrong_first, good]), &want, 0), Verdict::Good);
        assert_eq!(
            Verdict::Expired(1767225600).to_string(),
            "this CA's record expired at persistUntil=1767225600 (2026-01-01T00:00:00Z)"
        );
    }
}
