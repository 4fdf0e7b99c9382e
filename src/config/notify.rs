//! `[notify]`: programs to run when a lineage's renewal fails, so a failure reaches a person
//! (mail, a ticket, a chat message) and not only the timer's exit code.
//!
//! Owns the validated `Notify`. It does not run anything: that is `crate::failure_hook`.

use std::path::PathBuf;
use std::time::Duration;

use super::ctx::Ctx;
use super::raw::RawNotify;
use super::values::{duration, secs};

/// Programs `on_failure` may list.
const MAX_PROGRAMS: usize = 8;

#[derive(Debug, Clone)]
pub(crate) struct Notify {
    /// Absolute paths of programs, each run directly (no shell, no arguments): what they need
    /// comes in the environment.
    pub(crate) on_failure: Vec<PathBuf>,
    /// How long each program may run before it is killed.
    pub(crate) timeout: Duration,
}

impl Notify {
    pub(super) fn from_raw(n: &RawNotify, cx: &Ctx) -> anyhow::Result<Notify> {
        if let Some(extra) = n.on_failure.get(MAX_PROGRAMS) {
            return cx.err(
                extra.span(),
                "notify.on_failure",
                format!("at most {MAX_PROGRAMS} programs"),
            );
        }
        let mut on_failure = Vec::new();
        for p in &n.on_failure {
            let path = PathBuf::from(p.get_ref());
            // A relative path would depend on the timer's working directory; a shell line
            // would need quoting rules: one absolute program, arguments in a wrapper script.
            if !path.is_absolute() || p.get_ref().len() > 4096 || p.get_ref().contains('\0') {
                return cx.err(
                    p.span(),
                    "notify.on_failure",
                    format!(
                        "{:?} is not an absolute path of a program (no arguments: put them in a script)",
                        p.get_ref()
                    ),
                );
            }
            on_failure.push(path);
        }
        Ok(Notify {
            on_failure,
            timeout: duration(
                cx,
                "notify.timeout",
                &n.timeout,
                secs(60),
                secs(1)..=secs(600),
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{parse, GOOD};

    #[test]
    fn notify_programs_are_absolute_and_bounded() {
        let c = parse(GOOD).unwrap();
        assert!(c.notify.on_failure.is_empty());
        assert_eq!(c.notify.timeout.as_secs(), 60);
        let ok = format!(
            "{GOOD}[notify]\non_failure = [\"/usr/local/bin/mail-admins\"]\ntimeout = \"10s\"\n"
        );
        let c = parse(&ok).unwrap();
        assert_eq!(
            c.notify.on_failure[0].to_str(),
            Some("/usr/local/bin/mail-admins")
        );
        for bad in [
            "on_failure = [\"mail -s x root\"]",
            "on_failure = [\"bin/mail-admins\"]",
            "timeout = \"1h\"",
        ] {
            let e = format!(
                "{:#}",
                parse(&format!("{GOOD}[notify]\n{bad}\n")).unwrap_err()
            );
            assert!(e.contains(":22: notify."), "{bad}: {e}");
        }
    }
}
