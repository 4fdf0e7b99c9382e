//! Where a config value came from: the file being validated (`Ctx`), kept beside its parsed
//! keys after validation (`Source`), and the error that names file, line and key
//! (`ConfigError`).
//!
//! Owns how a byte span becomes `file:line: key: message`, and the TOML syntax error's
//! `file:line:`. Every section's `from_raw` reports through a `Ctx`; `hostcheck` through a
//! `Source`. It does not know any key or rule: the sections and `values` do.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::raw::RawConfig;

/// A config error that points at a place in the file.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {key}: {msg}")]
pub(crate) struct ConfigError {
    pub(crate) file: String,
    pub(crate) line: usize,
    pub(crate) key: String,
    pub(crate) msg: String,
}

/// The file being validated: what every section's `from_raw` needs to name a line.
pub(super) struct Ctx<'a> {
    pub(super) path: &'a Path,
    text: &'a str,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(path: &'a Path, text: &'a str) -> Ctx<'a> {
        Ctx { path, text }
    }

    /// A `ConfigError` for `key` at the line holding `span` (0..0: the first line, for keys
    /// whose place serde does not keep).
    pub(super) fn err<T>(
        &self,
        span: Range<usize>,
        key: &str,
        msg: impl Into<String>,
    ) -> anyhow::Result<T> {
        Err(ConfigError {
            file: self.path.display().to_string(),
            line: line_of(self.text, span.start),
            key: key.to_string(),
            msg: msg.into(),
        }
        .into())
    }
}

/// 1-based line of byte `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// The TOML of `text` as the `Raw*` structs, or a syntax error naming file and line.
pub(super) fn parse_raw(path: &Path, text: &str) -> anyhow::Result<RawConfig> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(0, |s| line_of(text, s.start));
        anyhow::anyhow!("{}:{line}: {}", path.display(), e.message())
    })
}

/// A validated file as it was read: its keys with their places, so that a check made outside
/// `config` reports `file:line: key:` like every other config error.
pub(crate) struct Source {
    path: PathBuf,
    text: String,
    pub(crate) raw: RawConfig,
}

impl Source {
    pub(super) fn new(path: &Path, text: String, raw: RawConfig) -> Source {
        Source {
            path: path.to_path_buf(),
            text,
            raw,
        }
    }

    /// A `ConfigError` for `key` at the line holding `span`.
    pub(crate) fn err<T>(
        &self,
        span: Range<usize>,
        key: &str,
        msg: impl Into<String>,
    ) -> anyhow::Result<T> {
        Ctx::new(&self.path, &self.text).err(span, key, msg)
    }
}
