//! Documents generated from the clap definitions in `cli`: the man pages vipcert(1) and one
//! vipcert-COMMAND(1) per command, and the bash/zsh/fish completion scripts. There is no
//! second copy of the command-line text: `--help`, `man` and completion all read `cli`.
//!
//! It does not own the words (those are in `cli`) nor vipcert.toml(5), which
//! `scripts/package` converts from docs/config.md, the single source for config keys.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

use crate::cli::Cli;

/// Shells `vipcert completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Where the packages install the prose docs; man pages point there.
pub const DOC_DIR: &str = "/usr/share/doc/vipcert";

/// The built command tree (help subcommand off: a man page for `help` helps nobody).
fn command() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// Write the completion script for `shell`.
pub fn completions(shell: Shell, out: &mut dyn Write) {
    let mut cmd = command();
    let name = cmd.get_name().to_string();
    match shell {
        Shell::Bash => clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, name, out),
        Shell::Zsh => clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, name, out),
        Shell::Fish => clap_complete::generate(clap_complete::Shell::Fish, &mut cmd, name, out),
    }
}

/// Every visible command, depth first, the root first: (page name, command).
fn pages(cmd: &clap::Command) -> Vec<(String, clap::Command)> {
    let mut out = Vec::new();
    let name = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string();
    out.push((name, cmd.clone()));
    for sc in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        out.extend(pages(sc));
    }
    out
}

/// Write every man page into `dir` (created if missing); returns the files written.
pub fn write_man_pages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let root = command();
    let all = pages(&root);
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    let mut written = Vec::new();
    for (name, cmd) in &all {
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        man_page(name, cmd, &names, &mut buf)?;
        std::fs::write(&path, dedup_preamble(&buf))?;
        written.push(path);
    }
    Ok(written)
}

/// One page: clap_mangen's sections, then NOTES (the command's after-help, if any) and a
/// SEE ALSO that links the pages to each other and to the prose docs.
fn man_page(name: &str, cmd: &clap::Command, all: &[&str], w: &mut dyn Write) -> io::Result<()> {
    let version = cmd.get_version().unwrap_or(env!("CARGO_PKG_VERSION"));
    let man = Man::new(cmd.clone())
        .title(name.to_uppercase())
        .section("1")
        .source(format!("vipcert {version}"))
        .manual("vipcert manual");
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(w)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(w)?;
    }
    let mut roff = Roff::default();
    if let Some(after) = cmd.get_after_long_help().or(cmd.get_after_help()) {
        roff.control("SH", ["NOTES"]);
        for para in after.to_string().split("\n\n") {
            roff.text([roman(para.replace('\n', " "))]);
            roff.control("PP", []);
        }
    }
    roff.control("SH", ["SEE ALSO"]);
    let mut refs = Vec::new();
    let related = all
        .iter()
        .filter(|&&other| other != name)
        .filter(|&&other| is_related(name, other));
    for other in related {
        refs.push(format!("{other}(1)"));
    }
    refs.push("vipcert.toml(5)".into());
    let mut line = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        if i > 0 {
            line.push(roman(", "));
        }
        line.push(bold(r.as_str()));
    }
    roff.text(line);
    roff.control("PP", []);
    roff.text([roman(format!(
        "The operator guide, operations, monitoring and balancer notes: {DOC_DIR}/ \
         (guide.md, operations.md, monitoring.md, balancer.md, config.md) and the example \
         configurations in {DOC_DIR}/examples/."
    ))]);
    roff.to_writer(w)
}

/// Each clap_mangen section comes with roff's two-line apostrophe preamble; keep the first.
fn dedup_preamble(page: &[u8]) -> Vec<u8> {
    const PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";
    let text = String::from_utf8_lossy(page);
    match text.split_once(PREAMBLE) {
        Some((before, rest)) => {
            format!("{before}{PREAMBLE}{}", rest.replace(PREAMBLE, "")).into_bytes()
        }
        None => page.to_vec(),
    }
}

/// vipcert(1) lists every top-level page; a page lists its parent and its own children.
fn is_related(page: &str, other: &str) -> bool {
    let depth = |n: &str| n.matches('-').count();
    let top = |n: &str| depth(n) == 1 && n.starts_with("vipcert-");
    if page == "vipcert" {
        return top(other);
    }
    other == "vipcert"
        || page.strip_prefix(other).is_some_and(|r| r.starts_with('-'))
        || other.strip_prefix(page).is_some_and(|r| r.starts_with('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_per_visible_command() {
        let root = command();
        let names: Vec<String> = pages(&root).into_iter().map(|(n, _)| n).collect();
        for want in [
            "vipcert",
            "vipcert-init",
            "vipcert-issue",
            "vipcert-renew",
            "vipcert-config-check",
            "vipcert-render-keepalived",
            "vipcert-completions",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
        assert!(
            !names.iter().any(|n| n == "vipcert-man"),
            "hidden: {names:?}"
        );
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
    }

    #[test]
    fn renew_page_carries_the_long_help_and_links() {
        let root = command();
        let all = pages(&root);
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        let (_, renew) = all.iter().find(|(n, _)| n == "vipcert-renew").unwrap();
        let mut buf = Vec::new();
        man_page("vipcert-renew", renew, &names, &mut buf).unwrap();
        let page = String::from_utf8(dedup_preamble(&buf)).unwrap();
        assert!(
            page.contains("\n.TH VIPCERT\\-RENEW 1 ") || page.contains("\n.TH VIPCERT-RENEW 1 "),
            "{page}"
        );
        assert_eq!(page.matches(".ds Aq").count(), 2, "one preamble: {page}");
        assert!(page.contains("ARI"), "{page}");
        assert!(page.contains("\\-\\-random\\-delay"), "{page}");
        assert!(page.contains("\\-\\-config"), "global options: {page}");
        assert!(page.contains("vipcert.toml(5)"), "{page}");
    }

    #[test]
    fn relations() {
        assert!(is_related("vipcert", "vipcert-issue"));
        assert!(!is_related("vipcert", "vipcert-config-check"));
        assert!(is_related("vipcert-config", "vipcert-config-check"));
        assert!(is_related("vipcert-config-check", "vipcert-config"));
        assert!(is_related("vipcert-issue", "vipcert"));
        assert!(!is_related("vipcert-issue", "vipcert-renew"));
    }

    #[test]
    fn completions_name_the_commands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut buf = Vec::new();
            completions(shell, &mut buf);
            let s = String::from_utf8(buf).unwrap();
            assert!(s.contains("renew") && s.contains("init"), "{shell:?}: {s}");
        }
    }
}
