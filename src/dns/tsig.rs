//! The TSIG key (RFC 8945): read from its root-only file, sign a message, verify and decode the
//! answer's TSIG record. The secret never leaves this module in text: `Debug` hides it and no
//! error carries it.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use hickory_proto::dnssec::rdata::tsig::{TsigAlgorithm, TSIG};
use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RData, Record};
use hickory_proto::serialize::binary::{BinEncodable as _, BinEncoder};

/// The HMAC of a TSIG key: the config's type, one enum for the whole crate.
pub use crate::config::TsigAlg;

/// hickory's name for `a`.
fn hickory(a: TsigAlg) -> TsigAlgorithm {
    match a {
        TsigAlg::HmacSha256 => TsigAlgorithm::HmacSha256,
        TsigAlg::HmacSha512 => TsigAlgorithm::HmacSha512,
    }
}

/// A TSIG key: its name, algorithm and secret.
#[derive(Clone)]
pub struct TsigKey {
    name: Name,
    alg: TsigAlg,
    secret: Vec<u8>,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name.to_ascii())
            .field("alg", &self.alg)
            .field("secret", &"<hidden>")
            .finish()
    }
}

/// Clock difference a server accepts (RFC 8945 recommends 300 s).
const FUDGE: u16 = 300;
/// Shortest secret taken (tsig-keygen makes 32 bytes for hmac-sha256).
const SECRET_MIN: usize = 16;

impl TsigKey {
    /// Read the key `name` (`alg`) from `path`: refused unless root-only (as the EAB key file);
    /// holds the base64 secret alone, or a whole BIND `key "name" { algorithm …; secret "…"; };`
    /// statement, whose name and algorithm must then match.
    pub fn read(path: &Path, name: &str, alg: TsigAlg) -> Result<TsigKey> {
        let what = || format!("[challenge.dns] tsig_secret_file {}", path.display());
        let text = crate::secret_file::read(path, &what)?;
        TsigKey::from_text(&text, name, alg).map_err(|e| anyhow!("{}: {e}", what()))
    }

    /// The key from a file's text (see [`TsigKey::read`]).
    pub fn from_text(text: &str, name: &str, alg: TsigAlg) -> Result<TsigKey> {
        let key_name = Name::from_ascii(name)
            .map_err(|_| anyhow!("tsig_key_name {name:?} is not a DNS name"))?;
        let b64 = match bind_key(text)? {
            None => text.trim().to_string(),
            Some(k) => {
                let theirs = Name::from_ascii(&k.name)
                    .map_err(|_| anyhow!("its key name {:?} is not a DNS name", k.name))?;
                if !theirs.eq_ignore_root(&key_name) {
                    bail!("it holds key {:?}, not tsig_key_name {name:?}", k.name);
                }
                if TsigAlg::parse(&k.algorithm) != Some(alg) {
                    bail!(
                        "its key has algorithm {:?}, not tsig_algorithm {:?}",
                        k.algorithm,
                        alg.as_str()
                    );
                }
                k.secret
            }
        };
        let secret = decode_b64(&b64)?;
        if secret.len() < SECRET_MIN {
            bail!(
                "its secret is {} bytes; at least {SECRET_MIN} are needed (tsig-keygen makes 32)",
                secret.len()
            );
        }
        let mut name = key_name;
        name.set_fqdn(true);
        Ok(TsigKey { name, alg, secret })
    }

    /// The key's name, absolute.
    pub fn name(&self) -> String {
        self.name.to_ascii()
    }

    /// Sign `msg` at `now` (unix seconds); the request MAC, which the answer's signature covers.
    pub(crate) fn sign(&self, msg: &mut Message, now: u64) -> Result<Vec<u8>> {
        let signer = self.signer()?;
        msg.finalize(&signer, now as u32)?;
        let mac = msg
            .signature()
            .iter()
            .find_map(|r| tsig_of(r).map(|t| t.mac().to_vec()))
            .ok_or_else(|| anyhow!("signing left no TSIG record"))?;
        Ok(mac)
    }

    /// Whether `answer` (bytes) carries a valid signature of this key over the request `mac`.
    pub(crate) fn verify(&self, mac: &[u8], answer: &[u8]) -> bool {
        let Ok(signer) = self.signer() else {
            return false;
        };
        signer.verify_message_byte(Some(mac), answer, true).is_ok()
    }

    fn signer(&self) -> Result<TSigner> {
        TSigner::new(
            self.secret.clone(),
            hickory(self.alg),
            self.name.clone(),
            FUDGE,
        )
        .map_err(|e| anyhow!("TSIG: {e}"))
    }
}

fn tsig_of(r: &Record) -> Option<&TSIG> {
    match r.data() {
        RData::DNSSEC(DNSSECRData::TSIG(t)) => Some(t),
        _ => None,
    }
}

/// The error field of the answer's TSIG record (0 when none or NOERROR).
pub(crate) fn answer_tsig_error(msg: &Message) -> u16 {
    msg.signature()
        .iter()
        .find_map(tsig_of)
        .and_then(tsig_error)
        .unwrap_or(0)
}

/// TSIG RDATA: algorithm name, time (6), fudge (2), MAC size (2), MAC, original id (2), error (2).
fn tsig_error(t: &TSIG) -> Option<u16> {
    let mut buf = Vec::new();
    t.emit(&mut BinEncoder::new(&mut buf)).ok()?;
    let mut i = 0;
    while *buf.get(i)? != 0 {
        i += 1 + usize::from(buf[i]);
    }
    i += 1 + 6 + 2;
    let mac_len = usize::from(u16::from_be_bytes([*buf.get(i)?, *buf.get(i + 1)?]));
    i += 2 + mac_len + 2;
    Some(u16::from_be_bytes([*buf.get(i)?, *buf.get(i + 1)?]))
}

struct BindKey {
    name: String,
    algorithm: String,
    secret: String,
}

/// A BIND `key "name" { algorithm a; secret "s"; };` statement, if the text is one.
fn bind_key(text: &str) -> Result<Option<BindKey>> {
    let t = text.trim_start();
    if !t.starts_with("key") {
        return Ok(None);
    }
    let bad = || {
        anyhow!("it starts like a BIND key statement but is not `key \"name\" {{ algorithm …; secret \"…\"; }};`")
    };
    let rest = t["key".len()..].trim_start();
    let rest = rest.strip_prefix('"').ok_or_else(bad)?;
    let (name, rest) = rest.split_once('"').ok_or_else(bad)?;
    let body = rest.trim_start().strip_prefix('{').ok_or_else(bad)?;
    let body = body.split_once('}').ok_or_else(bad)?.0;
    let mut algorithm = None;
    let mut secret = None;
    for stmt in body.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = stmt.split_once(char::is_whitespace).ok_or_else(bad)?;
        let v = v.trim().trim_matches('"').to_string();
        match k {
            "algorithm" => algorithm = Some(v),
            "secret" => secret = Some(v),
            _ => {}
        }
    }
    Ok(Some(BindKey {
        name: name.to_string(),
        algorithm: algorithm.unwrap_or_else(|| "hmac-md5".into()),
        secret: secret.ok_or_else(bad)?,
    }))
}

/// Standard base64 (as tsig-keygen prints), padding optional; the error never shows the text.
fn decode_b64(s: &str) -> Result<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s.trim().trim_end_matches('='))
        .map_err(|_| anyhow!("its secret is not base64 (as tsig-keygen prints it)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    #[test]
    fn a_bare_secret_or_a_bind_statement() {
        let k = TsigKey::from_text(&format!("{SECRET}\n"), "vipcert", TsigAlg::HmacSha256).unwrap();
        assert_eq!(k.name(), "vipcert.");
        assert_eq!(k.secret.len(), 32);
        let bind =
            format!("key \"vipcert.\" {{\n\talgorithm hmac-sha512;\n\tsecret \"{SECRET}\";\n}};\n");
        let k = TsigKey::from_text(&bind, "VIPCERT", TsigAlg::HmacSha512).unwrap();
        assert_eq!(k.alg, TsigAlg::HmacSha512);
    }

    #[test]
    fn a_mismatch_is_named_and_the_secret_never_shown() {
        let bind = format!("key \"other\" {{ algorithm hmac-sha256; secret \"{SECRET}\"; }};");
        let e = TsigKey::from_text(&bind, "vipcert", TsigAlg::HmacSha256).unwrap_err();
        assert!(e.to_string().contains("\"other\""), "{e}");
        let bind = format!("key \"vipcert\" {{ algorithm hmac-sha256; secret \"{SECRET}\"; }};");
        let e = TsigKey::from_text(&bind, "vipcert", TsigAlg::HmacSha512).unwrap_err();
        assert!(e.to_string().contains("hmac-sha256"), "{e}");
        for bad in ["not*base64!", "c2hvcnQ="] {
            let e = TsigKey::from_text(bad, "vipcert", TsigAlg::HmacSha256).unwrap_err();
            assert!(!e.to_string().contains(bad), "{e}");
        }
        let k = TsigKey::from_text(SECRET, "vipcert", TsigAlg::HmacSha256).unwrap();
        assert!(!format!("{k:?}").contains(&SECRET[..10]));
    }

    #[test]
    fn a_signed_message_verifies_and_its_error_field_reads() {
        let k = TsigKey::from_text(SECRET, "vipcert", TsigAlg::HmacSha256).unwrap();
        let mut m = Message::new();
        m.set_id(9);
        let mac = k.sign(&mut m, 1_700_000_000).unwrap();
        assert_eq!(mac.len(), 32);
        assert_eq!(answer_tsig_error(&m), 0);
        let t = TSIG::new(
            TsigAlgorithm::HmacSha256,
            1,
            300,
            vec![1, 2, 3],
            9,
            17,
            vec![],
        );
        assert_eq!(tsig_error(&t), Some(17));
    }

    #[test]
    fn algorithms_parse() {
        assert_eq!(TsigAlg::parse("HMAC-SHA512."), Some(TsigAlg::HmacSha512));
        assert_eq!(TsigAlg::parse("hmac-md5"), None);
    }
}
