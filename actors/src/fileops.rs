//! The file-system operations the log writer performs, behind a trait.
//!
//! This module owns [`FileOps`] and its real implementation [`RealFs`], so
//! tests can inject failures (a failing fsync, a short write, a panic) into
//! the durable write path. Every write-side effect of the log writer and of
//! recovery (create, open, write, sync, rename, sync_dir, truncate, remove)
//! goes through it; plain reads do not. It never retries or hides errors.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::Path;

/// File-system operations used by the durable write path. Implementations
/// must be cheap to call from a blocking thread.
///
/// Every method does the real operation by default, so a fault-injecting
/// implementation overrides only the operations it interferes with (and
/// [`RealFs`] overrides none). An implementation that must never touch the
/// real file system has to override them all.
pub trait FileOps: Send + Sync + std::fmt::Debug + 'static {
    /// Creates (or truncates) `path` for reading and writing, with `mode`.
    fn create(&self, path: &Path, mode: u32) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)
    }

    /// Opens an existing `path` for reading and writing.
    fn open(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().read(true).write(true).open(path)
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

    /// Creates a directory (and its parents) with `mode`, if missing.
    fn create_dir(&self, path: &Path, mode: u32) -> io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
    }
}

/// The real file system (every [`FileOps`] method as provided).
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

impl FileOps for RealFs {}
