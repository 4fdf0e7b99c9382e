//! Running an operator's program: bounded in time, its output bounded, killed and reaped when
//! it overruns, and why it failed as data (`ProgramError`).
//!
//! Owns the mechanics only: `failure_hook` ([notify] on_failure), the validation hooks
//! ([hooks]) and the exec DNS method decide what to run, with which arguments and
//! environment, and what a failure means to them.

use std::fmt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes of a program's stdout and of its stderr kept (for the log or an error).
pub(crate) const MAX_OUTPUT: u64 = 16 * 1024;

/// Why a program did not succeed.
#[derive(Debug)]
pub(crate) enum ProgramError {
    /// It could not be started (not found, not executable).
    Start(std::io::Error),
    /// It ran and exited unsuccessfully, with its (bounded) output.
    Exit { status: ExitStatus, output: String },
    /// It was still running at the bound, and was killed.
    Timeout(Duration),
    /// Waiting for it failed.
    Wait(std::io::Error),
}

impl fmt::Display for ProgramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProgramError::Start(e) => write!(f, "cannot start: {e}"),
            ProgramError::Exit { status, output } if output.is_empty() => write!(f, "{status}"),
            ProgramError::Exit { status, output } => write!(f, "{status}: {output}"),
            ProgramError::Timeout(t) => {
                write!(f, "killed after {}", humantime::format_duration(*t))
            }
            ProgramError::Wait(e) => write!(f, "cannot wait for it: {e}"),
        }
    }
}

impl std::error::Error for ProgramError {}

/// Run `prog` with `args` and `env` (added to ours), no stdin, for at most `timeout`: its
/// combined (bounded, trimmed) stdout and stderr on success.
pub(crate) async fn run(
    prog: &Path,
    args: &[&str],
    env: &[(&str, String)],
    timeout: Duration,
) -> Result<String, ProgramError> {
    let mut child = tokio::process::Command::new(prog)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(ProgramError::Start)?;
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let all = async { tokio::join!(bounded(out), bounded(err), child.wait()) };
    match tokio::time::timeout(timeout, all).await {
        Ok((o, e, Ok(status))) => {
            let output = format!("{o}{e}").trim().to_string();
            if status.success() {
                Ok(output)
            } else {
                Err(ProgramError::Exit { status, output })
            }
        }
        Ok((_, _, Err(e))) => Err(ProgramError::Wait(e)),
        Err(_) => {
            // kill_on_drop sends SIGKILL; reap it so no zombie is left.
            let _ = child.kill().await;
            Err(ProgramError::Timeout(timeout))
        }
    }
}

/// Up to `MAX_OUTPUT` bytes of `r`, then drain the rest so the program never blocks on a
/// full pipe.
async fn bounded(r: Option<impl AsyncRead + Unpin>) -> String {
    let Some(mut r) = r else {
        return String::new();
    };
    let mut buf = Vec::new();
    let _ = (&mut r).take(MAX_OUTPUT).read_to_end(&mut buf).await;
    let _ = tokio::io::copy(&mut r, &mut tokio::io::sink()).await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_exit_and_timeout_are_told_apart() {
        let sh = Path::new("/bin/sh");
        let t = Duration::from_secs(5);
        let ok = run(sh, &["-c", "echo out; echo err >&2"], &[], t).await;
        assert_eq!(ok.unwrap(), "out\nerr");
        let env = [("V", "x".to_string())];
        match run(sh, &["-c", "echo $V; exit 3"], &env, t).await {
            Err(ProgramError::Exit { status, output }) => {
                assert_eq!(status.code(), Some(3));
                assert_eq!(output, "x");
            }
            other => panic!("{other:?}"),
        }
        let slow = run(sh, &["-c", "sleep 5"], &[], Duration::from_millis(100)).await;
        assert!(matches!(slow, Err(ProgramError::Timeout(_))), "{slow:?}");
        let missing = run(Path::new("/nonexistent/prog"), &[], &[], t).await;
        assert!(matches!(missing, Err(ProgramError::Start(_))));
    }
}
