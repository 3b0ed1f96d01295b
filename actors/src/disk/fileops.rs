//! The file-system operations the store performs, behind a trait.
//!
//! This module owns [`FileOps`] and its real implementation [`RealFs`], so
//! tests can inject failures (a failing fsync, a short write, a panic) into
//! every write path. Every write-side effect (create, open, write, sync,
//! rename, sync_dir, truncate, remove, create_dir) of the log writer,
//! recovery and the lock, the snapshotter, the catalogue, the index
//! checkpoint and the compactor goes through it; plain reads do not (they use [`open_read`] and
//! [`read_file`]). It never retries or hides errors.
//!
//! # Links and modes
//!
//! Every open of a store's own file, for writing or reading, passes
//! `O_NOFOLLOW`: a symbolic link where logd expects its file fails with
//! `ELOOP` (reported as `Error::Symlink`), so appends, truncations and
//! reads can never reach a file outside the store. Files and directories
//! are created with exactly the mode asked for (`0o666 & !umask`,
//! `0o777 & !umask`): the mode is set with `fchmod`/`chmod` after the
//! create, so the process umask does not narrow it further.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Opens one of the store's files for reading, never through a link.
pub fn open_read(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Reads one of the store's files whole, never through a link.
pub fn read_file(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = open_read(path)?;
    let mut buf = Vec::with_capacity(f.metadata().map(|m| m.len() as usize).unwrap_or(0));
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

/// File-system operations used by the durable write path. Implementations
/// must be cheap to call from a blocking thread.
///
/// Every method does the real operation by default, so a fault-injecting
/// implementation overrides only the operations it interferes with (and
/// [`RealFs`] overrides none). An implementation that must never touch the
/// real file system has to override them all.
pub trait FileOps: Send + Sync + std::fmt::Debug + 'static {
    /// Creates (or truncates) `path` for reading and writing, with exactly
    /// `mode` (whatever the process umask), never through a link.
    fn create(&self, path: &Path, mode: u32) -> io::Result<File> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        f.set_permissions(Permissions::from_mode(mode))?;
        Ok(f)
    }

    /// Opens an existing `path` for reading and writing, never through a
    /// link.
    fn open(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
    }

    /// Writes all of `buf` at `offset`.
    fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        file.write_all_at(buf, offset)
    }

    /// Makes the file's data durable (fdatasync).
    fn sync(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }

    /// Renames `from` to `to` (atomically replacing `to`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    /// Makes a directory's entries durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    /// Truncates the file to `len` bytes.
    fn truncate(&self, file: &File, len: u64) -> io::Result<()> {
        file.set_len(len)
    }

    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    /// Creates the directory `path` (its parent exists) with exactly
    /// `mode`. Callers go through `recovery::ensure_dir`, which also makes
    /// the new entry durable.
    fn create_dir(&self, path: &Path, mode: u32) -> io::Result<()> {
        fs::DirBuilder::new().mode(mode).create(path)?;
        fs::set_permissions(path, Permissions::from_mode(mode))
    }
}

/// The real file system (every [`FileOps`] method as provided).
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

impl FileOps for RealFs {}
