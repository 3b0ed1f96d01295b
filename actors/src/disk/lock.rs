//! The store's `LOCK`: one opener per store, in this process or any other.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::disk::fileops::{FileOps, RealFs, read_file};
use crate::disk::layout::{ensure_dir, holds_store};
use crate::error::Error;
use crate::options::Options;

/// An exclusive advisory lock on `<dir>/LOCK`, released when dropped.
#[derive(Debug)]
pub struct DirLock {
    file: File,
    dir: PathBuf,
}

impl DirLock {
    /// [`DirLock::acquire_with`] on the real file system.
    pub fn acquire(dir: &Path, options: &Options) -> Result<DirLock, Error> {
        DirLock::acquire_with(dir, options, &RealFs)
    }

    /// Locks the store at `dir`. A second lock on the same directory (any
    /// process, or another `DirLock` in this one) fails with
    /// [`Error::Locked`], naming the holder's pid when it wrote one.
    ///
    /// A directory without `meta` or `wal/` holds no store: with
    /// [`Options::create`] it is created (each missing directory with
    /// exactly `0o777 & !umask`, its parent fsynced so the new entry is
    /// durable), otherwise the open fails with [`Error::NoStore`] and
    /// nothing is written.
    pub fn acquire_with(
        dir: &Path,
        options: &Options,
        fs_ops: &dyn FileOps,
    ) -> Result<DirLock, Error> {
        if !holds_store(dir) && !options.create {
            return Err(Error::NoStore {
                dir: dir.to_path_buf(),
            });
        }
        ensure_dir(fs_ops, dir, options.umask)?;
        let path = dir.join("LOCK");
        let existed = path.exists();
        let mode = 0o666 & !options.umask;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| Error::io("open", &path, &e))?;
        if !existed {
            file.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(|e| Error::io("chmod", &path, &e))?;
        }
        // SAFETY: flock on a file descriptor we own; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            return if err.kind() == std::io::ErrorKind::WouldBlock {
                let holder = read_file(&path)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|t| t.trim().parse().ok());
                Err(Error::Locked {
                    dir: dir.to_path_buf(),
                    holder,
                })
            } else {
                Err(Error::io("lock", &path, &err))
            };
        }
        // Who holds it, for the error a second opener gets (advisory only:
        // not synced, never read for anything else).
        let pid = format!("{}\n", std::process::id());
        if file
            .set_len(0)
            .and_then(|()| {
                use std::os::unix::fs::FileExt;
                file.write_all_at(pid.as_bytes(), 0)
            })
            .is_err()
        {
            tracing::debug!(file = %path.display(), "cannot record the pid in LOCK");
        }
        Ok(DirLock {
            file,
            dir: dir.to_path_buf(),
        })
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // SAFETY: unlocking our own descriptor; closing it would unlock anyway.
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}
