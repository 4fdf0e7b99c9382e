//! A file holding a secret (the EAB HMAC key, the TSIG key): read only when it is a regular
//! file (not a symlink, FIFO or device), readable by its owner alone, owned by root or the user
//! running vipcert, and small. The rule is here once; callers decode the text and never log it.
//!
//! Owns those checks. It does not know what the secret is for or how it is encoded.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Largest secret file read (a key is well under 200 bytes; a BIND key statement a few lines).
const MAX: u64 = 4096;

/// The text of the secret file at `path` (called `name()` in errors), refused unless it is a
/// regular file, readable by its owner only, owned by root or us, at most [`MAX`].
pub(crate) fn read(path: &Path, name: &dyn Fn() -> String) -> Result<String> {
    use std::io::Read as _;
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};

    // O_NOFOLLOW: a symlink is refused, not followed; O_NONBLOCK: a FIFO cannot hang us.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_flags())
        .open(path)
        .with_context(|| {
            format!(
                "cannot open {} (it must be a regular file, not a symlink)",
                name()
            )
        })?;
    let md = f.metadata().with_context(name)?;
    if !md.file_type().is_file() {
        bail!("{} is not a regular file", name());
    }
    if md.mode() & 0o077 != 0 {
        bail!(
            "{} is readable by group or others (mode {:04o}); it holds a secret: chmod 600 it (owner root)",
            name(),
            md.mode() & 0o7777
        );
    }
    // Its owner may read and replace it: root, or the user vipcert runs as (labs).
    let me = rustix::process::geteuid().as_raw();
    if md.uid() != 0 && md.uid() != me {
        bail!(
            "{} is owned by uid {}, who can read or replace the secret: `chown root` it",
            name(),
            md.uid()
        );
    }
    if md.len() > MAX {
        bail!(
            "{} is larger than {MAX} bytes; it should hold only the secret",
            name()
        );
    }
    let mut text = String::new();
    f.take(MAX)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {} as text", name()))?;
    Ok(text)
}

fn libc_flags() -> i32 {
    (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32
}
