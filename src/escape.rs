//! Text from outside — shared files (meta.json, state, the lease), the CA's problem documents,
//! the CA's account object — made safe to print in line-oriented output: a control character
//! in it cannot start a line of its own ("OK: fake line" under `check`), move the cursor,
//! recolour the terminal or reorder what follows.
//!
//! Owns [`escape`] (pure). JSON needs none (serde escapes), Prometheus label values have their
//! own rules (`drift::output`); every text and Nagios line with such text goes through this,
//! at the point where that text enters a message or a row.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `s` with every control character shown as an escape: `\n`, `\r`, `\t`, else `\u{1b}`
/// (Rust's notation). Unicode line separators and bidirectional overrides count as control
/// characters here. Borrowed when there is nothing to escape (the usual case).
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_control(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// C0, DEL and C1 (Unicode's Cc), the line and paragraph separators, and the bidirectional
/// marks, embeddings, overrides and isolates ("Trojan Source").
fn is_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_never_acted_on() {
        assert!(matches!(escape("plain text, ünïcode"), Cow::Borrowed(_)));
        assert_eq!(
            escape("https://ca/dir\nOK: fake line\r\t\x1b[32m\x7f\u{85}"),
            "https://ca/dir\\nOK: fake line\\r\\t\\u{1b}[32m\\u{7f}\\u{85}"
        );
        assert_eq!(escape("a\u{202e}b\u{2028}c"), "a\\u{202e}b\\u{2028}c");
        // A backslash stays as it is: escaped text is for reading, not for parsing back.
        assert_eq!(escape("C:\\x"), "C:\\x");
        assert!(!escape("x\ny").contains('\n'));
    }
}
