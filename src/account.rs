//! `vipcert account show | update | rollover | deactivate`: the ACME account's life after
//! `issue` created it.
//!
//! Owns the order of steps of each subcommand (lease, ask the CA, save or move the account
//! file) and their report (`AccountReport`, what was found or done, as data). It does not
//! speak ACME itself (`acme`: lookup by key, the HTTP client, error classification) nor lay
//! out the shared directory (`store`).

use std::fmt;
use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::acme::{find_by_key, AcmeError};
use crate::config::Config;
use crate::escape::escape;
use crate::lease::Lease;
use crate::store::Store;

/// What to do with the account.
pub enum Action {
    /// Print the CA, the account URL, the key thumbprint, whether the CA knows it and the
    /// contacts it holds.
    Show,
    /// Replace the account's contact addresses at the CA (RFC 8555 §7.3.2).
    Update {
        /// "mailto:" addresses.
        contact: Vec<String>,
    },
    /// Replace the account key (RFC 8555 §7.3.5) and save it.
    Rollover,
    /// Deactivate the account at the CA (RFC 8555 §7.3.6) and move its file aside.
    Deactivate,
}

/// What `vipcert account …` did.
#[derive(Debug)]
pub enum AccountReport {
    /// `show`: the account as this node and the CA see it.
    Show(AccountShow),
    /// `update`: the CA holds these contacts now.
    Updated {
        /// The account URL.
        account: String,
        /// The contacts sent.
        contacts: Vec<String>,
    },
    /// `rollover`: the account has a new key, saved in `file`.
    RolledOver {
        /// The account URL.
        account: String,
        /// The old key's JWK thumbprint.
        old: String,
        /// The new key's JWK thumbprint.
        new: String,
        /// The account file holding the new key.
        file: PathBuf,
    },
    /// `deactivate`: the CA deactivated the account; its file moved aside.
    Deactivated {
        /// The account URL.
        account: String,
        /// The CA's directory URL.
        ca: String,
        /// Where the account file went, if there was one.
        moved_to: Option<PathBuf>,
    },
}

/// What `account show` found.
#[derive(Debug)]
pub struct AccountShow {
    /// The CA's directory URL.
    pub ca: String,
    /// The account file in the shared directory.
    pub file: PathBuf,
    /// The account, as far as it is known.
    pub found: Found,
}

/// The account `account show` looked for.
#[derive(Debug)]
pub enum Found {
    /// No account file for this CA.
    NoAccount,
    /// The CA knows the account key.
    Known {
        /// The account URL.
        account: String,
        /// The key's JWK thumbprint.
        thumbprint: String,
        /// The account object's status and contacts, or why the CA did not say.
        object: Result<(String, Vec<String>), anyhow::Error>,
    },
    /// The CA does not know the account key.
    Unknown {
        /// The account URL recorded in the file ("" when there is none).
        account: String,
        /// The CA's words.
        detail: String,
    },
}

impl AccountReport {
    /// Nothing failed: `show` found an account the CA knows and read its object.
    pub fn ok(&self) -> bool {
        match self {
            AccountReport::Show(s) => matches!(&s.found, Found::Known { object: Ok(_), .. }),
            _ => true,
        }
    }
}

impl fmt::Display for AccountReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountReport::Show(s) => write!(f, "{s}"),
            AccountReport::Updated { account, contacts } => writeln!(
                f,
                "account {account}: contacts are now {}\nalso set [acme] contact in the config: new accounts use it",
                contacts.join(", ")
            ),
            AccountReport::RolledOver {
                account,
                old,
                new,
                file,
            } => writeln!(
                f,
                "account {account}: key rolled over ({old} -> {new}); saved in {}",
                file.display()
            ),
            AccountReport::Deactivated {
                account,
                ca,
                moved_to,
            } => writeln!(
                f,
                "account {account} deactivated at {ca}; its file moved to {}; the next `vipcert issue` or `renew` creates a new account",
                moved_to.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
            ),
        }
    }
}

impl fmt::Display for AccountShow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "CA:      {}", self.ca)?;
        writeln!(f, "file:    {}", self.file.display())?;
        match &self.found {
            Found::NoAccount => {
                writeln!(f, "no account for this CA yet; `vipcert issue` creates one")
            }
            Found::Known {
                account,
                thumbprint,
                object,
            } => {
                writeln!(f, "account: {}", escape(account))?;
                writeln!(f, "key:     {thumbprint} (JWK thumbprint)")?;
                match object {
                    // The CA's own view: what `account update --contact` changed.
                    Ok((status, contact)) => {
                        let status = escape(status);
                        writeln!(f, "status:  {status} (the CA knows this account)")?;
                        writeln!(f, "contact: {}", contacts(contact))
                    }
                    Err(e) => {
                        writeln!(f, "status:  the CA knows this account")?;
                        writeln!(f, "contact: unknown: {e:#}")
                    }
                }
            }
            Found::Unknown { account, detail } => {
                writeln!(f, "account: {account}")?;
                writeln!(
                    f,
                    "status:  the CA does not know this account ({detail}); the next `vipcert issue` or `renew` creates a new one"
                )
            }
        }
    }
}

/// Run `action` as `node` (the lease holder's name for the changing actions).
pub async fn run(cfg: &Config, store: &Store, node: &str, action: Action) -> Result<AccountReport> {
    if let Action::Update { contact } = &action {
        // Refused before anything is sent or locked.
        for c in contact {
            if let Err(why) = crate::config::check_mailto(c) {
                bail!("--contact {why}");
            }
        }
    }
    if let Action::Show = action {
        return Ok(AccountReport::Show(show(cfg, store).await?));
    }
    store.init()?;
    // An order in flight signs with the account key: never change it under one.
    let lease = Lease::acquire_now(store, node, crate::lease::Timing::of(&cfg.renew))?;
    let res = change(cfg, store, action).await;
    lease.release_or_log();
    res
}

async fn show(cfg: &Config, store: &Store) -> Result<AccountShow> {
    let host = cfg.acme.account_dir();
    let mut shown = AccountShow {
        ca: cfg.acme.directory.clone(),
        file: store.account_path(&host),
        found: Found::NoAccount,
    };
    let Some(creds) = crate::acme::read_credentials(cfg, store)? else {
        return Ok(shown);
    };
    shown.found = match find_by_key(cfg, &creds).await {
        Ok((acc, found)) => Found::Known {
            account: acc.id().to_string(),
            thumbprint: acc.key_thumbprint().to_string(),
            object: crate::account_object::fetch(cfg, &found)
                .await
                .map(|obj| (obj.status, obj.contact)),
        },
        Err(AcmeError::AccountDoesNotExist { detail, .. }) => Found::Unknown {
            account: crate::acme::id_url(&creds).unwrap_or_default(),
            detail,
        },
        Err(e) => return Err(e.into()),
    };
    Ok(shown)
}

/// The contacts as one line, escaped (they are the CA's text): "none" when there are none.
fn contacts(c: &[String]) -> String {
    if c.is_empty() {
        return "none (the CA has no address to warn before expiry or of problems)".into();
    }
    c.iter().map(|x| escape(x)).collect::<Vec<_>>().join(", ")
}

async fn change(cfg: &Config, store: &Store, action: Action) -> Result<AccountReport> {
    let host = cfg.acme.account_dir();
    let ca = cfg.acme.directory.as_str();
    let Some(creds) = crate::acme::read_credentials(cfg, store)? else {
        bail!(
            "no account for the CA {ca} in {}; `vipcert issue` creates one",
            store.account_path(&host).display()
        );
    };
    let (mut acc, _) = find_by_key(cfg, &creds).await?;
    match action {
        Action::Show => unreachable!("handled without the lease"),
        Action::Update { contact } => {
            let c: Vec<&str> = contact.iter().map(String::as_str).collect();
            crate::acme::resend_on_bad_nonce!(acc.update_contacts(&c).await)
                .map_err(crate::acme::acme_err(ca, "updating the contacts".into()))?;
            Ok(AccountReport::Updated {
                account: acc.id().to_string(),
                contacts: contact,
            })
        }
        Action::Rollover => {
            let old = acc.key_thumbprint().to_string();
            let new = crate::acme::resend_on_bad_nonce!(acc.update_key().await).map_err(
                crate::acme::acme_err(ca, "rolling the account key over".into()),
            )?;
            // The CA already accepts only the new key: save it before anything else can fail.
            store.replace_account(&host, &serde_json::to_vec_pretty(&new)?)?;
            Ok(AccountReport::RolledOver {
                account: acc.id().to_string(),
                old,
                new: acc.key_thumbprint().to_string(),
                file: store.account_path(&host),
            })
        }
        Action::Deactivate => {
            let id = acc.id().to_string();
            // Not re-sent on `badNonce` beyond instant-acme's own re-sends: `deactivate`
            // consumes the account. Running the command again is safe.
            acc.deactivate()
                .await
                .map_err(crate::acme::acme_err(ca, "deactivating the account".into()))?;
            let moved_to = store.retire_account(&host)?;
            tracing::info!(ca, account = %id, "account deactivated");
            Ok(AccountReport::Deactivated {
                account: id,
                ca: ca.to_string(),
                moved_to,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(found: Found) -> AccountReport {
        AccountReport::Show(AccountShow {
            ca: "https://ca.example.org/dir".into(),
            file: "/srv/shared/accounts/ca.example.org/account.json".into(),
            found,
        })
    }

    /// `account show`'s words for each answer, the CA's text escaped, and which are failures.
    #[test]
    fn show_says_what_the_ca_knows() {
        let head = "CA:      https://ca.example.org/dir\nfile:    /srv/shared/accounts/ca.example.org/account.json\n";
        let none = show(Found::NoAccount);
        assert_eq!(
            none.to_string(),
            format!("{head}no account for this CA yet; `vipcert issue` creates one\n")
        );
        assert!(!none.ok());
        let known = show(Found::Known {
            account: "https://ca.example.org/acct/1".into(),
            thumbprint: "tHuMb".into(),
            object: Ok(("valid\n".into(), vec![])),
        });
        assert_eq!(
            known.to_string(),
            format!("{head}account: https://ca.example.org/acct/1\nkey:     tHuMb (JWK thumbprint)\nstatus:  valid\\n (the CA knows this account)\ncontact: none (the CA has no address to warn before expiry or of problems)\n")
        );
        assert!(known.ok());
        let unread = show(Found::Known {
            account: "https://ca.example.org/acct/1".into(),
            thumbprint: "tHuMb".into(),
            object: Err(anyhow::anyhow!("timed out")),
        });
        assert!(unread
            .to_string()
            .ends_with("status:  the CA knows this account\ncontact: unknown: timed out\n"));
        assert!(!unread.ok());
        let unknown = show(Found::Unknown {
            account: "https://ca.example.org/acct/1".into(),
            detail: "no such account".into(),
        });
        assert_eq!(
            unknown.to_string(),
            format!("{head}account: https://ca.example.org/acct/1\nstatus:  the CA does not know this account (no such account); the next `vipcert issue` or `renew` creates a new one\n")
        );
        assert!(!unknown.ok());
    }

    /// What each change says it did.
    #[test]
    fn changes_say_what_they_did() {
        let updated = AccountReport::Updated {
            account: "A".into(),
            contacts: vec!["mailto:a@example.org".into(), "mailto:b@example.org".into()],
        };
        assert_eq!(
            updated.to_string(),
            "account A: contacts are now mailto:a@example.org, mailto:b@example.org\nalso set [acme] contact in the config: new accounts use it\n"
        );
        let rolled = AccountReport::RolledOver {
            account: "A".into(),
            old: "old".into(),
            new: "new".into(),
            file: "/s/account.json".into(),
        };
        assert_eq!(
            rolled.to_string(),
            "account A: key rolled over (old -> new); saved in /s/account.json\n"
        );
        let gone = AccountReport::Deactivated {
            account: "A".into(),
            ca: "https://ca/dir".into(),
            moved_to: Some("/s/account.json.deactivated".into()),
        };
        assert_eq!(
            gone.to_string(),
            "account A deactivated at https://ca/dir; its file moved to /s/account.json.deactivated; the next `vipcert issue` or `renew` creates a new account\n"
        );
        assert!(updated.ok() && rolled.ok() && gone.ok());
    }
}
