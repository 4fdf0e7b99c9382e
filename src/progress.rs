//! Per-name progress for long-running commands: a live line per name on a terminal
//! (indicatif), one log line per step otherwise (journald, cron, CI).
//!
//! Owns only presentation; callers say which name reached which step.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub(crate) struct Progress {
    live: Option<MultiProgress>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    width: usize,
    /// More than one lineage: lines are labelled `lineage: name`.
    qualify: bool,
}

impl Progress {
    /// One line per (lineage, name). Live lines when stderr is a terminal, log lines otherwise.
    pub(crate) fn new(entries: &[(String, String)]) -> Progress {
        let live = std::io::stderr().is_terminal();
        Progress::with_mode(entries, live)
    }

    pub(crate) fn with_mode(entries: &[(String, String)], live: bool) -> Progress {
        let qualify = entries.iter().any(|(l, _)| *l != entries[0].0);
        let names: Vec<String> = entries.iter().map(|(l, n)| label(qualify, l, n)).collect();
        let width = names.iter().map(|n| n.len()).max().unwrap_or(10);
        let mut bars = HashMap::new();
        let live = live.then(|| {
            let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let style =
                ProgressStyle::with_template("{spinner} {prefix} {msg}").expect("static template");
            for n in names {
                let b = mp.add(
                    ProgressBar::new_spinner()
                        .with_style(style.clone())
                        .with_prefix(format!("{n:<width$}")),
                );
                b.enable_steady_tick(std::time::Duration::from_millis(120));
                bars.insert(n.clone(), b);
            }
            mp
        });
        Progress {
            live,
            bars: Mutex::new(bars),
            width,
            qualify,
        }
    }

    /// `name` of `lineage` reached `step`.
    pub(crate) fn step(&self, lineage: &str, name: &str, step: &str) {
        let name = &label(self.qualify, lineage, name);
        if self.live.is_some() {
            if let Some(b) = self.bars.lock().expect("progress lock").get(name) {
                b.set_message(step.to_string());
            }
        } else {
            tracing::info!("{name:<w$}  {step}", w = self.width);
        }
    }

    /// `name` of `lineage` finished (ok or not): freeze its line with `msg`.
    pub(crate) fn finish(&self, lineage: &str, name: &str, ok: bool, msg: &str) {
        let name = &label(self.qualify, lineage, name);
        let mark = if ok { "✓" } else { "✗" };
        if self.live.is_some() {
            if let Some(b) = self.bars.lock().expect("progress lock").get(name) {
                b.finish_with_message(format!("{mark} {msg}"));
            }
        } else if ok {
            tracing::info!("{name:<w$}  {mark} {msg}", w = self.width);
        } else {
            tracing::error!("{name:<w$}  {mark} {msg}", w = self.width);
        }
    }

    /// Stop every live line (e.g. before printing an error).
    pub(crate) fn clear(&self) {
        for b in self.bars.lock().expect("progress lock").values() {
            if !b.is_finished() {
                b.abandon();
            }
        }
    }
}

fn label(qualify: bool, lineage: &str, name: &str) -> String {
    if qualify {
        format!("{lineage}: {name}")
    } else {
        name.to_string()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}
