//! `[hooks] pre_validation` and `post_validation`: the operator's commands run once per order
//! around the CA's validation (e.g. open port 80 at the border only meanwhile), with the
//! order's names in their environment.
//!
//! Owns their environment (`env`, pure) and what a failure means: a failed
//! `pre_validation` fails the order before the CA is told to validate; `post_validation`
//! runs whenever `pre_validation` was tried, and its failure is logged only. It does not
//! decide when in an order they run (`issue`) nor how a program is run (`program`).

use std::path::Path;

use anyhow::{anyhow, Result};

use crate::acme::{Answer, Challenge};
use crate::config::Hooks;

/// Which hook, and for `Post` whether validation succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Pre,
    Post { valid: bool },
}

/// The commands' environment: the event, the lineage, its names being validated, and each
/// name's challenge type.
pub(crate) fn env(
    event: Event,
    lineage: &str,
    ca: &str,
    challenges: &[Challenge],
) -> Vec<(&'static str, String)> {
    let names: Vec<&str> = challenges.iter().map(|c| c.name.as_str()).collect();
    let types: Vec<String> = challenges
        .iter()
        .map(|c| format!("{}={}", c.name, type_name(&c.answer)))
        .collect();
    let mut env = vec![
        (
            "VIPCERT_EVENT",
            match event {
                Event::Pre => "pre-validation",
                Event::Post { .. } => "post-validation",
            }
            .to_string(),
        ),
        ("VIPCERT_LINEAGE", lineage.to_string()),
        ("VIPCERT_DOMAINS", names.join(" ")),
        ("VIPCERT_CHALLENGES", types.join(" ")),
        ("VIPCERT_CA", ca.to_string()),
    ];
    if let Event::Post { valid } = event {
        let result = if valid { "valid" } else { "failed" };
        env.push(("VIPCERT_VALIDATION", result.to_string()));
    }
    env
}

fn type_name(a: &Answer) -> &'static str {
    match a {
        Answer::Http01 { .. } => "http-01",
        Answer::Dns01 { .. } => "dns-01",
        Answer::DnsPersist01 => "dns-persist-01",
    }
}

/// `pre_validation`, if configured: an error (naming the command's failure) fails the order.
pub(crate) async fn pre(
    hooks: &Hooks,
    lineage: &str,
    ca: &str,
    challenges: &[Challenge],
) -> Result<()> {
    let Some(cmd) = &hooks.pre_validation else {
        return Ok(());
    };
    let env = env(Event::Pre, lineage, ca, challenges);
    run(cmd, &env, hooks).await.map_err(|e| {
        anyhow!(
            "[hooks] pre_validation failed for {lineage} ({e}); the CA was not asked to validate"
        )
    })
}

/// `post_validation`, if configured; a failure is logged, never the order's.
pub(crate) async fn post(
    hooks: &Hooks,
    lineage: &str,
    ca: &str,
    challenges: &[Challenge],
    valid: bool,
) {
    let Some(cmd) = &hooks.post_validation else {
        return;
    };
    let env = env(Event::Post { valid }, lineage, ca, challenges);
    if let Err(e) = run(cmd, &env, hooks).await {
        tracing::warn!(lineage, "[hooks] post_validation FAILED: {e}");
    }
}

async fn run(
    cmd: &str,
    env: &[(&str, String)],
    hooks: &Hooks,
) -> Result<(), crate::program::ProgramError> {
    let out = crate::program::run(Path::new("/bin/sh"), &["-c", cmd], env, hooks.timeout).await?;
    if !out.is_empty() {
        tracing::info!(command = %cmd, output = %out, "validation hook ran");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_names_the_order() {
        let ch = |n: &str, answer| Challenge {
            name: n.to_string(),
            answer,
        };
        let cs = [
            ch("v.example.org", Answer::Dns01 { txt: "x".into() }),
            ch("a.example.org", Answer::DnsPersist01),
        ];
        let e = env(
            Event::Post { valid: false },
            "v.example.org",
            "https://ca/dir",
            &cs,
        );
        let get = |k: &str| e.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("VIPCERT_EVENT"), Some("post-validation"));
        assert_eq!(get("VIPCERT_DOMAINS"), Some("v.example.org a.example.org"));
        assert_eq!(
            get("VIPCERT_CHALLENGES"),
            Some("v.example.org=dns-01 a.example.org=dns-persist-01")
        );
        assert_eq!(get("VIPCERT_VALIDATION"), Some("failed"));
        let pre = env(Event::Pre, "v.example.org", "https://ca/dir", &cs);
        assert!(pre.iter().all(|(k, _)| *k != "VIPCERT_VALIDATION"));
    }
}
