//! The next run of `vipcert-renew.timer`, as systemd tells it:
//! `systemctl show vipcert-renew.timer -p NextElapseUSecRealtime --value --timestamp=unix`
//! (systemd 248 and later print `@<unix seconds>`), else the same without `--timestamp`
//! (older systemd: its own words, shown as they are). No systemd, no unit, a timer not
//! enabled or a systemctl that hangs: "unknown", with why, never an error of `status`.
//!
//! Owns that question and the parse of its answer; it changes nothing.

use std::time::Duration;

use super::report::TimerNext;

/// The timer unit `status` asks about.
const UNIT: &str = "vipcert-renew.timer";
/// How long systemctl may take (it asks systemd over D-Bus).
const TIMEOUT: Duration = Duration::from_secs(5);
/// The most of its output read (one property's value is a line).
const MAX_OUTPUT: usize = 256;

/// What systemd says of the timer's next run.
pub(crate) async fn next_run() -> TimerNext {
    let unix = ask(&["--timestamp=unix"]).await;
    match unix {
        Ok(out) => parse(&out),
        // An older systemctl that does not know --timestamp: its own words.
        Err(_) => match ask(&[]).await {
            Ok(out) => parse(&out),
            Err(why) => TimerNext::Unknown { why },
        },
    }
}

/// Run systemctl with `extra` arguments; its stdout, or why there is none.
async fn ask(extra: &[&str]) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new("systemctl");
    cmd.args(["show", UNIT, "-p", "NextElapseUSecRealtime", "--value"])
        .args(extra)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = match tokio::time::timeout(TIMEOUT, cmd.output()).await {
        Err(_) => return Err(format!("systemctl did not answer within {TIMEOUT:?}")),
        Ok(Err(e)) => return Err(format!("cannot run systemctl: {e}")),
        Ok(Ok(out)) => out,
    };
    let text = |b: &[u8]| {
        let s = String::from_utf8_lossy(&b[..b.len().min(MAX_OUTPUT)]);
        s.lines().next().unwrap_or("").trim().to_string()
    };
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(format!("systemctl: {}", text(&out.stderr)))
    }
}

/// The value systemctl printed: `@<unix seconds>`, a date in systemd's words, or nothing (the
/// timer is not active, or the unit not loaded).
fn parse(value: &str) -> TimerNext {
    let value = value.trim();
    if value.is_empty() || value == "n/a" {
        return TimerNext::Unknown {
            why: format!(
                "systemd has no next run of {UNIT} (not installed, or not enabled and started?)"
            ),
        };
    }
    match value.strip_prefix('@').map(str::parse::<i64>) {
        Some(Ok(t)) => TimerNext::At {
            at: crate::unixtime::clamp(t),
        },
        _ => TimerNext::Said {
            text: value.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemctl_answers_are_read_or_kept_as_said() {
        assert_eq!(parse("@1800000000\n"), TimerNext::At { at: 1_800_000_000 });
        assert_eq!(
            parse("Fri 2027-01-15 09:07:12 UTC"),
            TimerNext::Said {
                text: "Fri 2027-01-15 09:07:12 UTC".into()
            }
        );
        assert!(matches!(parse(""), TimerNext::Unknown { .. }));
        assert!(matches!(parse("n/a"), TimerNext::Unknown { .. }));
        assert_eq!(
            parse("@99999999999999"),
            TimerNext::At {
                at: crate::unixtime::MAX
            }
        );
        assert!(matches!(parse("@x"), TimerNext::Said { .. }));
    }
}
