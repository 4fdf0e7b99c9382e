//! `[hooks]`: shell commands run around the validation of each order, e.g. to open port 80
//! at the border firewall only while the CA validates.
//!
//! Owns the validated `Hooks`. It does not run them: `issue` does, through `program`.

use std::time::Duration;

use super::ctx::Ctx;
use super::raw::RawHooks;
use super::values::{duration, secs};
use toml::Spanned;

/// Longest command line taken.
const MAX_COMMAND: usize = 4096;

/// `[hooks]`, validated.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hooks {
    /// Run by `/bin/sh -c` once per order, before the CA is told to validate; a failure
    /// fails the order before the CA validates anything.
    pub(crate) pre_validation: Option<String>,
    /// Run by `/bin/sh -c` once per order after validation, whatever happened (also when
    /// `pre_validation` or the validation failed); a failure is logged.
    pub(crate) post_validation: Option<String>,
    /// How long each command may run before it is killed.
    pub(crate) timeout: Duration,
}

impl Hooks {
    pub(super) fn from_raw(h: &RawHooks, cx: &Ctx) -> anyhow::Result<Hooks> {
        Ok(Hooks {
            pre_validation: command(cx, "hooks.pre_validation", &h.pre_validation)?,
            post_validation: command(cx, "hooks.post_validation", &h.post_validation)?,
            timeout: duration(
                cx,
                "hooks.timeout",
                &h.timeout,
                secs(120),
                secs(1)..=secs(600),
            )?,
        })
    }
}

/// A non-empty shell command line of bounded length without NUL bytes.
fn command(cx: &Ctx, key: &str, v: &Option<Spanned<String>>) -> anyhow::Result<Option<String>> {
    let Some(v) = v else { return Ok(None) };
    let line = v.get_ref();
    if line.trim().is_empty() || line.len() > MAX_COMMAND || line.contains('\0') {
        return cx.err(
            v.span(),
            key,
            format!("{line:?} is not a shell command line (1 to {MAX_COMMAND} bytes, no NUL)"),
        );
    }
    Ok(Some(line.clone()))
}
