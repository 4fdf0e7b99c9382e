//! Install owners and groups: a name looked up in /etc/passwd or /etc/group, or a number.
//!
//! Owns reading those two files and resolving every target's owner and group before any write
//! (a typo in a user name must not leave a half-done run). `hostcheck` checks the config's
//! names with the same lookup and `drift` names owners with `id_entries` the other way round.
//! It does not chown anything (`slots`, `place`, `links`).

use anyhow::{anyhow, Context, Result};

use crate::plan::Target;

/// (uid, gid) of every target, in the order of `targets`.
pub(super) fn resolve(targets: &[Target]) -> Result<Vec<(u32, u32)>> {
    targets
        .iter()
        .map(|t| {
            Ok((
                uid_of(&t.owner)
                    .with_context(|| format!("install owner for {}", t.cert.display()))?,
                gid_of(&t.group)
                    .with_context(|| format!("install group for {}", t.cert.display()))?,
            ))
        })
        .collect()
}

/// A user or group: a name looked up in /etc/passwd or /etc/group, or a number.
fn lookup_id(db: &str, name: &str) -> Result<u32> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    let text = std::fs::read_to_string(db).with_context(|| format!("cannot read {db}"))?;
    id_in(&text, name).ok_or_else(|| {
        anyhow!(
            "{name:?} is not in {db}; create it or set install owner/group to an existing {}",
            if db.ends_with("passwd") {
                "user"
            } else {
                "group"
            }
        )
    })
}

/// (first field, third field) of each line with a numeric third field: the name and id of an
/// /etc/passwd or /etc/group text. `drift` names owners with it the other way round.
pub(crate) fn id_entries(text: &str) -> impl Iterator<Item = (&str, u32)> {
    text.lines().filter_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        f.next()?;
        Some((name, f.next()?.trim().parse().ok()?))
    })
}

/// The third field of the line whose first field is `name` (passwd and group share this).
fn id_in(text: &str, name: &str) -> Option<u32> {
    id_entries(text).find(|&(n, _)| n == name).map(|(_, id)| id)
}

pub(crate) fn uid_of(name: &str) -> Result<u32> {
    lookup_id("/etc/passwd", name)
}

pub(crate) fn gid_of(name: &str) -> Result<u32> {
    lookup_id("/etc/group", name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_passwd_and_group_text() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nxrootd:x:998:997::/var/spool/xrootd:/sbin/nologin\n";
        assert_eq!(id_in(passwd, "root"), Some(0));
        assert_eq!(id_in(passwd, "xrootd"), Some(998));
        assert_eq!(id_in(passwd, "nobod"), None);
        assert_eq!(id_in(passwd, "x"), None);
        let group = "root:x:0:\nnogroup:x:65534:\n";
        assert_eq!(id_in(group, "nogroup"), Some(65534));
        assert_eq!(lookup_id("/nonexistent", "1234").unwrap(), 1234);
        assert!(lookup_id("/etc/passwd", "no-such-user-vipcert").is_err());
    }
}
