//! Directory-relative file operations that never follow a symlink in the last component.
//!
//! Owns the few primitives every writer and reader of the shared directory and of install
//! targets goes through: open a directory, read a bounded regular file in it, create a file
//! with its final mode from the first byte, publish by write-temp + fsync + rename, and fsync a
//! directory. It does not know what the files mean (see `store`, `install`, `serve`).
//!
//! The directory itself is opened by path (operators configure it); everything inside it is
//! reached by a single name relative to that directory with `O_NOFOLLOW`, so a symlink planted
//! in the directory is refused rather than followed.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, CWD};

/// An open directory; all operations are relative to it.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

/// A file path as the directory to open and the name to use in it: `.` for a bare name.
/// None for a path with no file name (`/`, `a/..`) or a name that is not UTF-8.
pub(crate) fn split_path(path: &Path) -> Option<(&Path, &str)> {
    let name = path.file_name()?.to_str()?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Some((parent, name))
}

/// A file against the bytes, owner and mode it should have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileState {
    Same,
    /// Right bytes, wrong owner/group/mode.
    Meta,
    /// Missing, different bytes, or not a regular file (e.g. a planted symlink).
    Content,
}

/// Why a bounded read was refused; callers that serve files match on it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("no such file")]
    NotFound,
    #[error("not a regular file (symlink, directory, device, or a hard link where refused)")]
    NotRegular,
    #[error("larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Why `Dir::open_beneath` could not reach a directory; each names the path at fault.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WalkError {
    #[error("{} is a symlink; vipcert never writes through a symlinked directory: replace it with the real directory (or configure the real path)", .0.display())]
    Symlink(std::path::PathBuf),
    #[error("{} is not a plain relative path below the install root", .0.display())]
    NotPlain(std::path::PathBuf),
    #[error("{}: {}", .0.display(), .1)]
    Io(std::path::PathBuf, io::Error),
}

/// A file name must be one path component: no `/`, not `.` or `..`, not empty, no NUL.
pub(crate) fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a plain file name"),
        ));
    }
    Ok(())
}

impl Dir {
    /// Open a directory by path. The last component must not be a symlink.
    pub(crate) fn open(path: &Path) -> io::Result<Dir> {
        let fd = rfs::openat(
            CWD,
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Dir { fd })
    }

    /// Open `path`, first creating it and any missing parents with exactly `mode` whatever
    /// the umask (a service running as another user must be able to walk them). Each missing
    /// directory is made below the deepest one that exists, by name from its open parent.
    pub fn create_all(path: &Path, mode: u32) -> io::Result<Dir> {
        let existing = path
            .ancestors()
            .find(|a| a.as_os_str().is_empty() || a.exists())
            .unwrap_or(Path::new("/"));
        let base = if existing.as_os_str().is_empty() {
            Path::new(".")
        } else {
            existing
        };
        let mut dir = Dir::open(base)?;
        let rest = path.strip_prefix(existing).unwrap_or(Path::new(""));
        for comp in rest.components() {
            match comp {
                std::path::Component::Normal(c) => {
                    let name = c.to_str().ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("{}: not UTF-8", path.display()),
                        )
                    })?;
                    dir = dir.ensure_dir(name, mode)?;
                }
                std::path::Component::CurDir => {}
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{}: \"..\" below a missing directory", path.display()),
                    ))
                }
            }
        }
        Ok(dir)
    }

    /// Open the directory `rel` below `root`, walking one component at a time with
    /// `O_NOFOLLOW` from the already open `root`, so that no component below it may be a
    /// symlink (a link planted at `<root>/etc` is refused, never followed). Missing components
    /// are created with `create` when given. `root` itself is opened by path: the operator
    /// configured it. Errors name the component at fault.
    pub(crate) fn open_beneath(
        root: &Path,
        rel: &Path,
        create: Option<u32>,
    ) -> Result<Dir, WalkError> {
        let mut dir = Dir::open(root).map_err(|e| WalkError::Io(root.to_path_buf(), e))?;
        let mut here = root.to_path_buf();
        for comp in rel.components() {
            let std::path::Component::Normal(c) = comp else {
                if matches!(comp, std::path::Component::CurDir) {
                    continue;
                }
                return Err(WalkError::NotPlain(rel.to_path_buf()));
            };
            here.push(c);
            let name = c.to_string_lossy().into_owned();
            dir = match dir.open_dir(&name) {
                Ok(d) => d,
                Err(e) => match dir.stat(&name) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                        return Err(WalkError::Symlink(here))
                    }
                    Ok(_) => return Err(WalkError::Io(here, e)),
                    Err(e2) if e2.kind() == io::ErrorKind::NotFound => match create {
                        Some(mode) => dir
                            .ensure_dir(&name, mode)
                            .map_err(|e| WalkError::Io(here.clone(), e))?,
                        None => return Err(WalkError::Io(here, e2)),
                    },
                    Err(e2) => return Err(WalkError::Io(here, e2)),
                },
            };
        }
        Ok(dir)
    }

    /// Open a subdirectory by name without following a symlink.
    pub(crate) fn open_dir(&self, name: &str) -> io::Result<Dir> {
        check_name(name)?;
        let fd = rfs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Dir { fd })
    }

    /// Create a subdirectory with `mode` (exact: the umask is not consulted for the check), or
    /// open it if it exists.
    pub(crate) fn ensure_dir(&self, name: &str, mode: u32) -> io::Result<Dir> {
        check_name(name)?;
        match rfs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode)) {
            Ok(()) => {
                let d = self.open_dir(name)?;
                // mkdir honours the umask; make the final mode exact before anything goes in.
                rfs::fchmod(&d.fd, Mode::from_raw_mode(mode))?;
                Ok(d)
            }
            Err(e) if e == rustix::io::Errno::EXIST => self.open_dir(name),
            Err(e) => Err(e.into()),
        }
    }

    /// How the file `name` compares with `data` owned and moded as `(uid, gid, mode)`: the
    /// check before a write that may be skipped (install, the links area).
    pub(crate) fn state_of(
        &self,
        name: &str,
        data: &[u8],
        (uid, gid, mode): (u32, u32, u32),
        limit: u64,
    ) -> io::Result<FileState> {
        match self.read(name, limit) {
            Ok(b) if b == data => {}
            Ok(_)
            | Err(ReadError::NotFound | ReadError::NotRegular | ReadError::TooLarge { .. }) => {
                return Ok(FileState::Content)
            }
            Err(ReadError::Io(e)) => return Err(e),
        }
        let st = self.stat(name)?;
        if (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (uid, gid, mode) {
            Ok(FileState::Same)
        } else {
            Ok(FileState::Meta)
        }
    }

    /// Read a regular file of at most `limit` bytes; symlinks, FIFOs and devices are refused
    /// without blocking on them.
    pub(crate) fn read(&self, name: &str, limit: u64) -> Result<Vec<u8>, ReadError> {
        self.read_checked(name, limit, false)
    }

    /// `read` for files served to strangers (challenge files): a file with more than one
    /// hard link is refused as `NotRegular` too, since a hard link placed in a served
    /// directory can name any file of the same filesystem (a link to /etc/shadow is not a
    /// symlink). vipcert's own challenge files always have exactly one link.
    pub(crate) fn read_served(&self, name: &str, limit: u64) -> Result<Vec<u8>, ReadError> {
        self.read_checked(name, limit, true)
    }

    fn read_checked(
        &self,
        name: &str,
        limit: u64,
        single_link: bool,
    ) -> Result<Vec<u8>, ReadError> {
        check_name(name).map_err(|_| ReadError::NotFound)?;
        let fd = match rfs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) if e == rustix::io::Errno::NOENT => return Err(ReadError::NotFound),
            Err(e) if e == rustix::io::Errno::LOOP => return Err(ReadError::NotRegular),
            Err(e) => return Err(ReadError::Io(e.into())),
        };
        let st = rfs::fstat(&fd).map_err(io::Error::from)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
            || (single_link && st.st_nlink != 1)
        {
            return Err(ReadError::NotRegular);
        }
        if st.st_size as u64 > limit {
            return Err(ReadError::TooLarge { limit });
        }
        // One read of one byte more than fstat's size: getting exactly the size means the
        // whole file (a read of a regular file stops short only at its end), with no second
        // read to see the end (the challenge route's hot path). Anything else (the file
        // changed in between, an interrupted read) goes on reading, still bounded.
        let size = st.st_size as usize;
        let mut buf = Vec::with_capacity(size + 1);
        let n = match rustix::io::read(&fd, rustix::buffer::spare_capacity(&mut buf)) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => 0,
            Err(e) => return Err(ReadError::Io(e.into())),
        };
        if n == size {
            return Ok(buf);
        }
        File::from(fd)
            .take(limit + 1 - n as u64)
            .read_to_end(&mut buf)?;
        if buf.len() as u64 > limit {
            return Err(ReadError::TooLarge { limit });
        }
        Ok(buf)
    }

    /// Metadata of an entry without following a symlink.
    pub(crate) fn stat(&self, name: &str) -> io::Result<rfs::Stat> {
        check_name(name)?;
        Ok(rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)?)
    }

    /// Whether an entry (of any type, symlinks included) exists.
    pub(crate) fn exists(&self, name: &str) -> io::Result<bool> {
        match self.stat(name) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Create a new file (it must not exist) with its final `mode`, write `data`, fsync.
    pub(crate) fn create_new(&self, name: &str, data: &[u8], mode: u32) -> io::Result<()> {
        self.write_new(name, data, mode, true)
    }

    fn write_new(&self, name: &str, data: &[u8], mode: u32, sync: bool) -> io::Result<()> {
        check_name(name)?;
        let fd = rfs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )?;
        // The umask may have narrowed the mode; a wider umask cannot widen it, so this only
        // ever restores what was asked for (e.g. 0644 under umask 077) before any byte exists.
        rfs::fchmod(&fd, Mode::from_raw_mode(mode))?;
        let mut f = File::from(fd);
        let res = f
            .write_all(data)
            .and_then(|_| if sync { f.sync_all() } else { Ok(()) });
        if res.is_err() {
            let _ = self.remove(name);
        }
        res
    }

    /// `replace` without fsync, for short-lived files whose loss in a crash does not matter
    /// (challenge and probe files): readers still see the old content or the new, never a
    /// part, but nothing waits for the disk or an NFS COMMIT.
    pub(crate) fn replace_volatile(&self, name: &str, data: &[u8], mode: u32) -> io::Result<()> {
        check_name(name)?;
        let tmp = temp_name(name);
        self.write_new(&tmp, data, mode, false)?;
        if let Err(e) = self.rename(&tmp, name) {
            let _ = self.remove(&tmp);
            return Err(e);
        }
        Ok(())
    }

    /// Atomically replace (or create) `name` with `data` at `mode`: write a unique temporary
    /// name in the same directory, fsync, rename over, fsync the directory. Readers see the old
    /// content or the new, never a part.
    pub fn replace(&self, name: &str, data: &[u8], mode: u32) -> io::Result<()> {
        self.replace_with(name, data, mode, None)
    }

    /// `replace` with an owner/group set on the temporary file before it is renamed in place.
    pub(crate) fn replace_with(
        &self,
        name: &str,
        data: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> io::Result<()> {
        check_name(name)?;
        let tmp = temp_name(name);
        self.create_new(&tmp, data, mode)?;
        if let Some((uid, gid)) = owner {
            if let Err(e) = self.chown(&tmp, uid, gid) {
                let _ = self.remove(&tmp);
                return Err(e);
            }
        }
        if let Err(e) = self.rename(&tmp, name) {
            let _ = self.remove(&tmp);
            return Err(e);
        }
        self.sync()
    }

    /// Set owner and group of an entry, never following a symlink.
    pub(crate) fn chown(&self, name: &str, uid: u32, gid: u32) -> io::Result<()> {
        check_name(name)?;
        rfs::chownat(
            &self.fd,
            name,
            Some(rfs::Uid::from_raw(uid)),
            Some(rfs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        Ok(())
    }

    /// Rename within this directory (atomic on POSIX filesystems, NFS included).
    pub(crate) fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        check_name(from)?;
        check_name(to)?;
        rfs::renameat(&self.fd, from, &self.fd, to)?;
        Ok(())
    }

    /// Hard-link `from` to `to`; fails with `AlreadyExists` if `to` exists. This is the
    /// NFS-safe exclusive create (O_EXCL is only atomic on NFSv3+ servers that honour it).
    pub(crate) fn link(&self, from: &str, to: &str) -> io::Result<()> {
        check_name(from)?;
        check_name(to)?;
        rfs::linkat(&self.fd, from, &self.fd, to, AtFlags::empty())?;
        Ok(())
    }

    /// Remove a file or symlink (not a directory). Missing is not an error.
    pub(crate) fn remove(&self, name: &str) -> io::Result<()> {
        check_name(name)?;
        match rfs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(e) if e == rustix::io::Errno::NOENT => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Swap two entries atomically (renameat2 RENAME_EXCHANGE): both must exist.
    pub(crate) fn exchange(&self, a: &str, b: &str) -> io::Result<()> {
        check_name(a)?;
        check_name(b)?;
        rfs::renameat_with(&self.fd, a, &self.fd, b, rfs::RenameFlags::EXCHANGE)?;
        Ok(())
    }

    /// Remove subdirectory `name` holding only files and symlinks (no deeper directories):
    /// the flat directories vipcert itself creates. Missing is not an error.
    pub(crate) fn remove_flat_dir(&self, name: &str) -> io::Result<()> {
        let sub = match self.open_dir(name) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for f in sub.list()? {
            sub.remove(&f)?;
        }
        self.remove_dir(name)
    }

    /// Remove an empty subdirectory. Missing is not an error.
    pub(crate) fn remove_dir(&self, name: &str) -> io::Result<()> {
        check_name(name)?;
        match rfs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR) {
            Ok(()) => Ok(()),
            Err(e) if e == rustix::io::Errno::NOENT => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Point symlink `name` at `target` atomically (symlink to a temp name, rename over).
    pub(crate) fn replace_symlink(&self, name: &str, target: &str) -> io::Result<()> {
        check_name(name)?;
        let tmp = temp_name(name);
        rfs::symlinkat(target, &self.fd, tmp.as_str())?;
        if let Err(e) = self.rename(&tmp, name) {
            let _ = self.remove(&tmp);
            return Err(e);
        }
        self.sync()
    }

    /// The target of symlink `name`, or None if it does not exist.
    pub(crate) fn read_link(&self, name: &str) -> io::Result<Option<String>> {
        check_name(name)?;
        match rfs::readlinkat(&self.fd, name, Vec::new()) {
            Ok(t) => Ok(Some(t.to_string_lossy().into_owned())),
            Err(e) if e == rustix::io::Errno::NOENT => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Names of the entries, without `.` and `..`.
    pub(crate) fn list(&self) -> io::Result<Vec<String>> {
        let dup = rfs::openat(
            &self.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut out = Vec::new();
        for entry in rfs::Dir::read_from(&dup)? {
            let entry = entry?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            out.push(name.to_string_lossy().into_owned());
        }
        Ok(out)
    }

    /// fsync the directory so renames and creates in it are durable.
    pub(crate) fn sync(&self) -> io::Result<()> {
        rfs::fsync(&self.fd)?;
        Ok(())
    }

    /// The filesystem's clock: the mtime of a file written here, then removed. On NFS the file
    /// server sets it, so comparing it with other mtimes on the same share needs no host's clock.
    pub(crate) fn now(&self) -> io::Result<std::time::SystemTime> {
        let name = temp_name("clock");
        // Some bytes: the write makes the server set the mtime (an empty exclusive create may
        // carry the client's verifier there instead).
        self.write_new(&name, b"vipcert clock probe\n", 0o644, false)?;
        let st = self.stat(&name);
        let _ = self.remove(&name);
        let st = st?;
        let nanos = (st.st_mtime_nsec as u32).min(999_999_999);
        std::time::UNIX_EPOCH
            .checked_add(std::time::Duration::new(st.st_mtime.max(0) as u64, nanos))
            .ok_or_else(|| io::Error::other(format!("mtime {} out of range", st.st_mtime)))
    }

    pub(crate) fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A temporary sibling name unique to this process and call: `.<name>.tmp.<pid>.<n>.<ns>`.
/// The leading dot keeps it outside the challenge token pattern, so a half-written challenge
/// file is never served.
pub(crate) fn temp_name(name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(".{name}.tmp.{}.{n}.{nanos}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn split_path_gives_directory_and_name() {
        fn p(s: &str) -> Option<(&Path, &str)> {
            split_path(Path::new(s))
        }
        assert_eq!(
            p("/etc/grid-security/hostcert.pem"),
            Some((Path::new("/etc/grid-security"), "hostcert.pem"))
        );
        assert_eq!(p("key.pem"), Some((Path::new("."), "key.pem")));
        assert_eq!(p("/"), None);
        assert_eq!(p("a/.."), None);
    }

    #[test]
    fn create_new_has_final_mode_and_refuses_existing() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open(t.path()).unwrap();
        d.create_new("k", b"secret", 0o600).unwrap();
        let m = std::fs::metadata(t.path().join("k"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(m & 0o777, 0o600);
        assert!(d.create_new("k", b"x", 0o600).is_err());
        assert_eq!(std::fs::read(t.path().join("k")).unwrap(), b"secret");
    }

    /// Every directory create_all makes has the mode asked for, not one the umask narrowed
    /// (0777 is what any umask but 0 would narrow); one that exists is left as it is.
    #[test]
    fn create_all_makes_each_missing_parent_with_the_exact_mode() {
        let t = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let before = mode(t.path());
        let deep = t.path().join("a/b/c");
        let d = Dir::create_all(&deep, 0o777).unwrap();
        d.create_new("f", b"x", 0o600).unwrap();
        for p in ["a", "a/b", "a/b/c"] {
            assert_eq!(mode(&t.path().join(p)), 0o777, "{p}");
        }
        assert_eq!(mode(t.path()), before, "the existing parent is not changed");
        // Again: everything exists, nothing changes.
        Dir::create_all(&deep, 0o700).unwrap();
        assert_eq!(mode(&deep), 0o777);
        // A symlink where a directory is missing is refused, not followed.
        std::os::unix::fs::symlink(t.path().join("a"), t.path().join("link")).unwrap();
        std::fs::remove_dir_all(t.path().join("a")).unwrap();
        assert!(Dir::create_all(&t.path().join("link/x"), 0o755).is_err());
        assert!(!t.path().join("a").exists());
    }

    #[test]
    fn read_refuses_symlink_and_oversize() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("big"), vec![b'a'; 100]).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("ln")).unwrap();
        let d = Dir::open(t.path()).unwrap();
        assert!(matches!(d.read("ln", 4096), Err(ReadError::NotRegular)));
        assert!(matches!(d.read("big", 10), Err(ReadError::TooLarge { .. })));
        assert!(matches!(d.read("nope", 10), Err(ReadError::NotFound)));
        assert!(matches!(d.read("../etc", 10), Err(ReadError::NotFound)));
        assert_eq!(d.read("big", 100).unwrap().len(), 100);
    }

    #[test]
    fn replace_is_atomic_and_leaves_no_temp() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open(t.path()).unwrap();
        d.replace("f", b"one", 0o644).unwrap();
        d.replace("f", b"two", 0o644).unwrap();
        assert_eq!(std::fs::read(t.path().join("f")).unwrap(), b"two");
        assert_eq!(d.list().unwrap(), vec!["f".to_string()]);
        d.replace_symlink("cur", "0001").unwrap();
        d.replace_symlink("cur", "0002").unwrap();
        assert_eq!(d.read_link("cur").unwrap().as_deref(), Some("0002"));
    }
}
