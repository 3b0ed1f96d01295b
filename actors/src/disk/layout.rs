//! The store directory's layout: where each file lives, and the few ways the
//! store creates directories and files so that a power cut cannot lose them.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use logd_core::wal;

use crate::disk::fileops::FileOps;
use crate::error::Error;

/// The directory holding the log segments, inside a store directory.
pub fn wal_dir(dir: &Path) -> PathBuf {
    dir.join("wal")
}

/// The path of the segment whose first commit is `first`.
pub fn segment_path(dir: &Path, first: u64) -> PathBuf {
    wal_dir(dir).join(wal::segment_file_name(first))
}

/// What `wal/` holds (see [`list_wal`]).
#[derive(Debug, Default)]
pub(crate) struct WalListing {
    /// The segments, by first commit, ascending.
    pub(crate) segments: Vec<u64>,
    /// Temp files of segments never renamed into place (`*.seg.tmp`).
    pub(crate) unfinished: Vec<PathBuf>,
}

/// The one listing of `<dir>/wal/`: the segment files by first commit, and
/// the unfinished ones. Other names are ignored.
pub(crate) fn list_wal(dir: &Path) -> Result<WalListing, Error> {
    let wdir = wal_dir(dir);
    let mut out = WalListing::default();
    for ent in std::fs::read_dir(&wdir).map_err(|e| Error::io("read dir", &wdir, &e))? {
        let ent = ent.map_err(|e| Error::io("read dir", &wdir, &e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(first) = wal::parse_segment_file_name(name) {
            out.segments.push(first);
        } else if name.ends_with(".seg.tmp") {
            out.unfinished.push(wdir.join(name));
        }
    }
    out.segments.sort_unstable();
    Ok(out)
}

/// Whether `dir` holds a store: its `meta` or its `wal/` exists.
pub fn holds_store(dir: &Path) -> bool {
    dir.join("meta").exists() || wal_dir(dir).exists()
}

/// Makes sure the directory `dir` exists, creating each missing directory
/// on the way with exactly `0o777 & !umask` and fsyncing its parent, so a
/// power cut cannot lose the new entry (and with it everything under it).
/// A link where a directory of the store should be is [`Error::Symlink`]
/// (the store directory itself, which the user names, may be a link).
/// Returns whether anything was created.
pub(crate) fn ensure_dir(fs_ops: &dyn FileOps, dir: &Path, umask: u32) -> Result<bool, Error> {
    // The missing directories, innermost first.
    let mut missing = Vec::new();
    let mut at = dir;
    loop {
        match std::fs::metadata(at) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(Error::Io {
                    op: "create dir",
                    path: at.to_path_buf(),
                    kind: std::io::ErrorKind::AlreadyExists,
                    message: "exists and is not a directory".into(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if std::fs::symlink_metadata(at).is_ok() {
                    // A dangling link: never create its target.
                    return Err(Error::Symlink {
                        path: at.to_path_buf(),
                    });
                }
                missing.push(at);
                match at.parent() {
                    Some(p) if !p.as_os_str().is_empty() => at = p,
                    _ => break,
                }
            }
            Err(e) => return Err(Error::io("stat", at, &e)),
        }
    }
    let created = !missing.is_empty();
    for d in missing.into_iter().rev() {
        fs_ops
            .create_dir(d, 0o777 & !umask)
            .map_err(|e| Error::io("create dir", d, &e))?;
        let parent = match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        fs_ops
            .sync_dir(parent)
            .map_err(|e| Error::io("sync dir", parent, &e))?;
    }
    Ok(created)
}

/// A subdirectory of the store (`wal/`, `snap/`, `ckpt/`): like
/// [`ensure_dir`], but a link is always refused.
pub(crate) fn ensure_subdir(fs_ops: &dyn FileOps, dir: &Path, umask: u32) -> Result<bool, Error> {
    if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(Error::Symlink {
            path: dir.to_path_buf(),
        });
    }
    ensure_dir(fs_ops, dir, umask)
}

/// Writes `<dir>/<name>` atomically (`bytes` to `<name>.tmp`, fsync,
/// rename, directory fsync) and returns the open file (positioned nowhere;
/// use positional writes). A new file gets exactly `0o666 & !umask`; a
/// rewrite keeps the mode the file has.
pub(crate) fn create_new_file(
    fs_ops: &dyn FileOps,
    dir: &Path,
    name: &str,
    bytes: &[u8],
    umask: u32,
) -> Result<File, Error> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let mode = match std::fs::symlink_metadata(&dst) {
        Ok(m) if m.file_type().is_symlink() => return Err(Error::Symlink { path: dst }),
        Ok(m) => m.permissions().mode() & 0o7777,
        Err(_) => 0o666 & !umask,
    };
    let f = fs_ops
        .create(&tmp, mode)
        .map_err(|e| Error::io("create", &tmp, &e))?;
    fs_ops
        .write_at(&f, bytes, 0)
        .map_err(|e| Error::io("write", &tmp, &e))?;
    fs_ops.sync(&f).map_err(|e| Error::io("sync", &tmp, &e))?;
    fs_ops
        .rename(&tmp, &dst)
        .map_err(|e| Error::io("rename", &tmp, &e))?;
    fs_ops
        .sync_dir(dir)
        .map_err(|e| Error::io("sync dir", dir, &e))?;
    Ok(f)
}

/// Fsyncs one of the store's files (never through a link).
pub(crate) fn sync_file(fs_ops: &dyn FileOps, path: &Path) -> Result<(), Error> {
    let f = fs_ops.open(path).map_err(|e| Error::io("open", path, &e))?;
    fs_ops.sync(&f).map_err(|e| Error::io("sync", path, &e))
}
