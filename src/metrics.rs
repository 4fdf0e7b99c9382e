//! The Prometheus text exposition format (version 0.0.4): the one writer behind every metrics
//! page and textfile vipcert makes — the balancer's `/metrics` and `check --format
//! prometheus`. One way to write a family (`# HELP`, `# TYPE`, then its samples) and one
//! label-value escaper, so that no output escapes differently from another.
//!
//! Owns the syntax only. It names no metric and measures nothing: each user keeps its
//! families as a table of [`Family`] constants and fills in the samples.

use std::borrow::Cow;
use std::fmt::{Display, Write as _};

/// The Content-Type of a page in this format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// A family's type, as `# TYPE` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A value that goes up and down (or a 0/1 state).
    Gauge,
    /// A count that only goes up (its name ends in `_total`).
    Counter,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

/// A metric family: its name, type and `# HELP` text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Family {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) help: &'static str,
}

impl Family {
    pub(crate) const fn gauge(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            kind: Kind::Gauge,
            help,
        }
    }

    pub(crate) const fn counter(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            kind: Kind::Counter,
            help,
        }
    }
}

/// A page being written: families one after the other, each with its samples.
#[derive(Debug, Default)]
pub(crate) struct Exposition {
    out: String,
}

impl Exposition {
    /// Start `family` (its `# HELP` and `# TYPE` lines); its samples go through the answer,
    /// before the next family starts.
    pub(crate) fn family(&mut self, family: &Family) -> Samples<'_> {
        debug_assert!(is_name(family.name), "metric name {:?}", family.name);
        let _ = writeln!(
            self.out,
            "# HELP {} {}",
            family.name,
            help_text(family.help)
        );
        let _ = writeln!(self.out, "# TYPE {} {}", family.name, family.kind.as_str());
        Samples {
            out: &mut self.out,
            name: family.name,
        }
    }

    /// The page's text.
    pub(crate) fn finish(self) -> String {
        self.out
    }
}

/// The samples of the family just started.
pub(crate) struct Samples<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Samples<'_> {
    /// One sample: `name{label="value",…} value` (no braces without labels), each label value
    /// escaped.
    pub(crate) fn sample(&mut self, labels: &[(&str, &str)], value: impl Display) -> &mut Self {
        self.out.push_str(self.name);
        for (i, (label, v)) in labels.iter().enumerate() {
            debug_assert!(is_name(label) && !label.contains(':'), "label {label:?}");
            let open = if i == 0 { "{" } else { "," };
            let _ = write!(self.out, "{open}{label}=\"{}\"", label_value(v));
        }
        if !labels.is_empty() {
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }
}

/// A label value as the format writes it between double quotes: backslash, double quote and
/// newline escaped (`\\`, `\"`, `\n`); everything else as it is.
pub(crate) fn label_value(v: &str) -> Cow<'_, str> {
    escape(v, &['\\', '"', '\n'])
}

/// `# HELP` text: backslash and newline escaped (a double quote stays as it is).
fn help_text(v: &str) -> Cow<'_, str> {
    escape(v, &['\\', '\n'])
}

fn escape<'a>(v: &'a str, special: &[char]) -> Cow<'a, str> {
    if !v.contains(special) {
        return Cow::Borrowed(v);
    }
    let mut s = String::with_capacity(v.len() + 8);
    for c in v.chars() {
        match c {
            '\n' if special.contains(&c) => s.push_str("\\n"),
            '\\' | '"' if special.contains(&c) => {
                s.push('\\');
                s.push(c);
            }
            c => s.push(c),
        }
    }
    Cow::Owned(s)
}

/// A metric or label name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn is_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    const UP: Family = Family::gauge("x_up", "1 when \"up\"; a \\ and a\nnewline");
    const HITS: Family = Family::counter("x_hits_total", "Hits");

    #[test]
    fn writes_families_and_escapes_once() {
        let mut page = Exposition::default();
        page.family(&UP).sample(&[], 1);
        page.family(&HITS)
            .sample(&[("path", "/a\"b\\c\nd"), ("code", "200")], 7u64)
            .sample(&[("path", "plain")], 0);
        assert_eq!(
            page.finish(),
            "# HELP x_up 1 when \"up\"; a \\\\ and a\\nnewline\n\
             # TYPE x_up gauge\n\
             x_up 1\n\
             # HELP x_hits_total Hits\n\
             # TYPE x_hits_total counter\n\
             x_hits_total{path=\"/a\\\"b\\\\c\\nd\",code=\"200\"} 7\n\
             x_hits_total{path=\"plain\"} 0\n"
        );
    }

    #[test]
    fn label_values_escape_backslash_quote_newline_only() {
        assert_eq!(label_value("a\"b\\c"), "a\\\"b\\\\c");
        assert_eq!(label_value("\\n"), "\\\\n");
        assert_eq!(label_value("tab\there é"), "tab\there é");
        assert!(matches!(label_value("dtn1.example.org"), Cow::Borrowed(_)));
        assert!(is_name("vipcert_balancer_backend_up") && !is_name("1x") && !is_name("a-b"));
    }
}
