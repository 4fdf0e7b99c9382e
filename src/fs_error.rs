//! An I/O error on a named file: which file, what vipcert was doing there and, for the errors a
//! shared filesystem gives (read-only, full, over quota, permission, stale handle, I/O), what to
//! do about it. A bare "Read-only file system (os error 30)" tells an admin nothing.
//!
//! Owns the wording of those errors ([`FsError`]) and the advice per errno (`advice`, pure). It
//! does not decide what is fatal: callers return the error, or print it as a warning.

use std::io;
use std::path::{Path, PathBuf};

/// "cannot <step> <path>: <error> — <advice>".
#[derive(Debug, thiserror::Error)]
#[error("cannot {step} {}: {error}{}", path.display(), advice(error).map(|a| format!(" — {a}")).unwrap_or_default())]
pub struct FsError {
    /// What vipcert was doing, as a verb phrase the path completes ("write", "record the
    /// renewal outcome in").
    step: String,
    path: PathBuf,
    /// Not a `source`: its text is already in the message, and `{:#}` would print it twice.
    error: io::Error,
}

impl FsError {
    /// The error of doing `step` on `path`.
    pub fn new(step: impl Into<String>, path: impl Into<PathBuf>, error: io::Error) -> FsError {
        FsError {
            step: step.into(),
            path: path.into(),
            error,
        }
    }

    /// What kind of I/O error it was.
    pub fn kind(&self) -> io::ErrorKind {
        self.error.kind()
    }
}

/// For `map_err`: the [`FsError`] of doing `step` on `path`, as an `anyhow::Error`.
pub(crate) fn at<'a>(
    step: &'a str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> anyhow::Error + 'a {
    move |e| FsError::new(step, path, e).into()
}

/// What an admin does about the errors a (shared) filesystem gives; None for the others.
pub(crate) fn advice(e: &io::Error) -> Option<String> {
    let errno = rustix::io::Errno::from_io_error(e)?;
    use rustix::io::Errno;
    let a = match errno {
        Errno::ROFS => "the filesystem is mounted read-only on this node: remount it read-write (for NFS, check the export and the mount options)".to_string(),
        Errno::NOSPC => "the filesystem is full: free space on it (df)".to_string(),
        Errno::DQUOT => "the disk quota of this user on that filesystem is used up: raise it or free space".to_string(),
        Errno::ACCESS | Errno::PERM => format!(
            "permission denied to uid {}: check the owner and mode of the file and its directory (on NFS, also root squashing: no_root_squash, or run vipcert as a user the server maps)",
            rustix::process::geteuid().as_raw()
        ),
        Errno::STALE => "stale NFS file handle: the share was remounted or the directory replaced on the server; run again, or remount the share".to_string(),
        Errno::IO => "the filesystem reported an I/O error: check the NFS server or the disk, and the kernel log (dmesg)".to_string(),
        _ => return None,
    };
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_file_the_step_and_what_to_do() {
        let e = FsError::new(
            "record the renewal outcome in",
            "/srv/vipcert/state/v.example.org.json",
            io::Error::from_raw_os_error(30),
        );
        let s = format!("{:#}", anyhow::Error::from(e));
        assert!(
            s.starts_with("cannot record the renewal outcome in /srv/vipcert/state/v.example.org.json: Read-only file system (os error 30) — the filesystem is mounted read-only on this node"),
            "{s}"
        );
        assert_eq!(s.matches("os error").count(), 1, "{s}");
        let full = FsError::new("write", "/x", io::Error::from_raw_os_error(28)).to_string();
        assert!(
            full.ends_with("— the filesystem is full: free space on it (df)"),
            "{full}"
        );
        // No advice for what needs none.
        let other = FsError::new("read", "/x", io::ErrorKind::NotFound.into()).to_string();
        assert!(!other.contains('—'), "{other}");
        assert_eq!(
            FsError::new("read", "/x", io::Error::from_raw_os_error(2)).kind(),
            io::ErrorKind::NotFound
        );
        assert!(advice(&io::Error::from_raw_os_error(116)).is_some_and(|a| a.contains("stale")));
    }
}
