//! The issuer lease, `locks/issuer.lease`: at most one node talks to the CA at a time.
//!
//! Owns taking, refreshing, fencing and releasing the lease with NFS-safe primitives only
//! (exclusive create by `link(2)`, publish by rename; no flock). It does not decide what to
//! issue; `issue` holds a `Lease` for the whole flow.

use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::safefs::{Dir, ReadError};
use crate::store::{fmt_time, now, Store};

pub const LEASE: &str = "issuer.lease";

/// What the lease file says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Holder {
    pub node: String,
    pub host: String,
    pub pid: u32,
    /// Unix seconds after which anyone may break the lease.
    pub expires_at: i64,
    /// Random per acquisition: identifies *this* holding, not just the process.
    pub token: String,
}

/// Why the lease could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("renewal in progress on {} (pid {}, lease until {})", .0.node, .0.pid, fmt_time(.0.expires_at))]
    Held(Holder),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// A held lease. Dropping it does not release it (a crashed holder's lease expires); call
/// `release`.
#[derive(Debug)]
pub struct Lease {
    dir: Dir,
    holder: Holder,
    ttl: Duration,
}

fn random_token() -> String {
    crate::random::hex(16)
}

fn read_holder(dir: &Dir) -> Result<Option<Holder>> {
    match dir.read(LEASE, 4096) {
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(h) => Ok(Some(h)),
            // A lease we cannot parse is treated as expired: it was never validly written
            // (publishing is by rename, so this is corruption, not a race).
            Err(_) => Ok(Some(Holder {
                node: "?".into(),
                host: "?".into(),
                pid: 0,
                expires_at: 0,
                token: String::new(),
            })),
        },
        Err(ReadError::NotFound) => Ok(None),
        Err(e) => Err(anyhow::anyhow!("{LEASE}: {e}")),
    }
}

impl Lease {
    /// Who holds the lease now, if anyone (expired or not).
    pub fn holder(store: &Store) -> Result<Option<Holder>> {
        read_holder(&store.locks()?)
    }

    /// Take the lease for `ttl`, breaking an expired one. Fails with `LeaseError::Held` when a
    /// live lease belongs to someone else.
    pub fn acquire(store: &Store, node: &str, ttl: Duration) -> Result<Lease, LeaseError> {
        let dir = store.locks()?;
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        for _ in 0..5 {
            let holder = Holder {
                node: node.to_string(),
                host: host.clone(),
                pid: std::process::id(),
                expires_at: now() + ttl.as_secs() as i64,
                token: random_token(),
            };
            let tmp = crate::safefs::temp_name(LEASE);
            dir.create_new(&tmp, &serde_json::to_vec(&holder).context("lease")?, 0o644)
                .context("cannot write the issuer lease in locks/")?;
            let linked = dir.link(&tmp, LEASE);
            let _ = dir.remove(&tmp);
            match linked {
                Ok(()) => {
                    dir.sync().context("fsync locks/")?;
                    return Ok(Lease { dir, holder, ttl });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(anyhow::Error::from(e)
                        .context("cannot create locks/issuer.lease")
                        .into())
                }
            }
            match read_holder(&dir)? {
                None => continue, // released between our link and read: try again
                Some(h) if h.expires_at > now() => return Err(LeaseError::Held(h)),
                Some(h) => {
                    // Break the expired lease by renaming it aside: only one breaker's rename
                    // succeeds on the same file, the others find it gone and retry the create.
                    let aside = format!(".{LEASE}.broken.{}", random_token());
                    if dir.rename(LEASE, &aside).is_ok() {
                        let _ = dir.remove(&aside);
                        tracing::warn!(holder = %h.node, pid = h.pid, "broke an expired issuer lease");
                    }
                }
            }
        }
        Err(
            anyhow::anyhow!("could not take locks/issuer.lease after 5 attempts (contention)")
                .into(),
        )
    }

    /// Fencing check before publishing: the file must still carry our token and not be expired.
    pub fn verify(&self) -> Result<()> {
        match read_holder(&self.dir)? {
            Some(h) if h.token == self.holder.token && h.expires_at > now() => Ok(()),
            Some(h) if h.token == self.holder.token => {
                anyhow::bail!(
                    "our issuer lease expired at {} before publishing; nothing was published",
                    fmt_time(h.expires_at)
                )
            }
            Some(h) => anyhow::bail!(
                "the issuer lease was taken over by {} (pid {}); nothing was published",
                h.node,
                h.pid
            ),
            None => anyhow::bail!("the issuer lease disappeared; nothing was published"),
        }
    }

    /// Extend the lease by its ttl (write-temp + rename), after checking it is still ours.
    pub fn refresh(&mut self) -> Result<()> {
        self.verify()?;
        let mut h = self.holder.clone();
        h.expires_at = now() + self.ttl.as_secs() as i64;
        self.dir.replace(LEASE, &serde_json::to_vec(&h)?, 0o644)?;
        self.holder = h;
        Ok(())
    }

    /// `acquire` for an operator's one-off command (`account`, `revoke`): a live lease held by
    /// someone else is an error saying to try again, not an outcome.
    pub fn acquire_now(store: &Store, node: &str, ttl: Duration) -> Result<Lease> {
        match Lease::acquire(store, node, ttl) {
            Ok(l) => Ok(l),
            Err(LeaseError::Held(h)) => anyhow::bail!(
                "an order is in progress on {} (pid {}); try again when it is done",
                h.node,
                h.pid
            ),
            Err(LeaseError::Other(e)) => Err(e),
        }
    }

    /// Remove the lease if it is still ours.
    pub fn release(self) -> Result<()> {
        if let Ok(Some(h)) = read_holder(&self.dir) {
            if h.token == self.holder.token {
                self.dir.remove(LEASE)?;
                self.dir.sync()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let t = tempfile::tempdir().unwrap();
        let s = Store::new(t.path());
        s.init().unwrap();
        (t, s)
    }

    #[test]
    fn second_acquire_sees_holder_and_release_frees() {
        let (_t, s) = store();
        let a = Lease::acquire(&s, "dtn1", Duration::from_secs(60)).unwrap();
        match Lease::acquire(&s, "dtn2", Duration::from_secs(60)) {
            Err(LeaseError::Held(h)) => assert_eq!(h.node, "dtn1"),
            other => panic!("{other:?}"),
        }
        a.verify().unwrap();
        a.release().unwrap();
        let b = Lease::acquire(&s, "dtn2", Duration::from_secs(60)).unwrap();
        assert_eq!(Lease::holder(&s).unwrap().unwrap().node, "dtn2");
        b.release().unwrap();
    }

    #[test]
    fn expired_lease_is_broken_and_old_holder_is_fenced() {
        let (_t, s) = store();
        let a = Lease::acquire(&s, "dtn1", Duration::from_secs(0)).unwrap();
        let b = Lease::acquire(&s, "dtn2", Duration::from_secs(60)).unwrap();
        let e = a.verify().unwrap_err().to_string();
        assert!(e.contains("taken over by dtn2"), "{e}");
        // a's release must not remove b's lease
        a.release().unwrap();
        b.verify().unwrap();
    }

    #[test]
    fn concurrent_acquirers_one_wins() {
        let (_t, s) = store();
        let wins: usize = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let s = s.clone();
                    sc.spawn(move || {
                        Lease::acquire(&s, &format!("n{i}"), Duration::from_secs(60)).is_ok()
                            as usize
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(wins, 1);
    }
}
