//! The hooks step: once every changed lineage is in place and verified, `[install] reload`
//! runs once, then each `deploy_hook` once per changed lineage, each command under /bin/sh
//! with certbot's environment names plus ours, killed after `HOOK_TIMEOUT`.
//!
//! Owns the hook environment, the timeout and the typed failure (`HookFailure`) the install
//! report lists. A failed hook is reported, never retried by the next run. It does not decide
//! whether anything changed (`flow`) nor remove the journal (`journal`).

use std::fmt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use super::failpoint::step;
use super::pair::Pair;
use crate::config::Install;
use crate::plan::Target;
use crate::store::format_version;

/// A reload command or deploy hook that runs longer than this is killed and reported.
const HOOK_TIMEOUT: Duration = Duration::from_secs(300);

/// Which configured hook a command is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hook {
    /// `[install] reload`: once per run that changed something.
    Reload,
    /// `[install] deploy_hook`: once per changed lineage.
    Deploy { lineage: String },
}

/// Why a hook command failed.
#[derive(Debug)]
pub(crate) enum HookError {
    /// /bin/sh could not be started.
    Start(std::io::Error),
    /// Waiting for the command failed.
    Wait(std::io::Error),
    /// It exited with a non-zero code or was killed by a signal.
    Exit(ExitStatus),
    /// It ran longer than the timeout and was killed.
    Timeout(Duration),
}

/// One hook command that failed: which hook, the command line, why.
#[derive(Debug)]
pub(crate) struct HookFailure {
    pub(crate) hook: Hook,
    pub(crate) command: String,
    pub(crate) error: HookError,
}

impl fmt::Display for HookError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            HookError::Start(e) => write!(f, "cannot start /bin/sh: {e}"),
            HookError::Wait(e) => write!(f, "{e}"),
            HookError::Exit(st) => write!(f, "exited with {st}"),
            HookError::Timeout(d) => write!(f, "killed after {} s", d.as_secs()),
        }
    }
}

impl fmt::Display for HookFailure {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let (cmd, e) = (&self.command, &self.error);
        match &self.hook {
            Hook::Reload => write!(f, "reload {cmd:?}: {e}"),
            Hook::Deploy { lineage } => write!(f, "deploy_hook {cmd:?} for {lineage}: {e}"),
        }
    }
}

/// What the hooks step did: commands run (reload then deploy hooks, in order) and those of
/// them that failed.
#[derive(Debug, Default)]
pub(super) struct HooksRan {
    pub(super) count: usize,
    pub(super) failures: Vec<HookFailure>,
}

/// Run the reload commands once (with the first changed lineage's environment), then every
/// deploy hook once per lineage of `changed`. `main` is the first install target, the one the
/// environment names. `changed` is not empty.
pub(super) fn run(cfg: &Install, node: &str, main: &Target, changed: &[&Pair]) -> HooksRan {
    let mut ran = HooksRan::default();
    let base_env = vec![("VIPCERT_NODE".to_string(), node.to_string())];
    let mut one = |hook: Hook, cmd: &String, pair: &Pair| {
        let mut env = base_env.clone();
        env.extend(lineage_env(pair, main));
        ran.count += 1;
        if let Err(error) = run_hook(cmd, &env) {
            let command = cmd.clone();
            ran.failures.push(HookFailure {
                hook,
                command,
                error,
            });
        }
    };
    for cmd in &cfg.reload {
        one(Hook::Reload, cmd, changed[0]);
        step("reload ran");
    }
    for p in changed {
        for cmd in &cfg.deploy_hook {
            let lineage = p.lineage.clone();
            one(Hook::Deploy { lineage }, cmd, p);
            step("deploy hook ran");
        }
    }
    ran
}

/// The environment of hooks: certbot's names plus ours.
fn lineage_env(p: &Pair, main: &Target) -> Vec<(String, String)> {
    vec![
        ("RENEWED_LINEAGE".into(), p.lineage.clone()),
        ("RENEWED_DOMAINS".into(), p.names.join(" ")),
        ("VIPCERT_CERT".into(), main.cert.display().to_string()),
        ("VIPCERT_KEY".into(), main.key.display().to_string()),
        ("VIPCERT_VERSION".into(), format_version(p.version)),
        ("VIPCERT_SERIAL".into(), p.serial.clone()),
    ]
}

fn run_hook(cmd: &str, env: &[(String, String)]) -> Result<(), HookError> {
    tracing::info!(command = %cmd, "running hook");
    let mut child = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(HookError::Start)?;
    let deadline = Instant::now() + HOOK_TIMEOUT;
    loop {
        if let Some(st) = child.try_wait().map_err(HookError::Wait)? {
            return if st.success() {
                Ok(())
            } else {
                Err(HookError::Exit(st))
            };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HookError::Timeout(HOOK_TIMEOUT));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
