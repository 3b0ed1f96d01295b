//! Opening a store directory: the `LOCK`, the `meta` file, and recovery of
//! the log.
//!
//! This module owns what happens before any actor runs: [`DirLock`] (an
//! advisory `flock` on `<dir>/LOCK`, one opener per store, in this process or
//! any other), creating `wal/` and `meta` for a new store, and [`recover`]:
//! one scan of every segment that checks every CRC, truncates a torn tail of
//! the last segment, refuses corruption anywhere else (naming file and
//! offset), and returns every good record so the index can be rebuilt from
//! the same scan ([`recover_after`] checks every CRC but decodes only the
//! records after a given commit: [`crate::open::checkpoint`] uses it). It never
//! appends records (the log writer does) and never skips a bad record
//! silently.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use logd_core::meta::{self, Meta};
use logd_core::wal::{self, HEADER_LEN, Location, TailStatus, WalErrorKind};

use crate::disk::fileops::{FileOps, read_file};
pub(crate) use crate::disk::layout::{create_new_file, ensure_subdir, list_wal, sync_file};
pub use crate::disk::layout::{holds_store, segment_path, wal_dir};
pub use crate::disk::lock::DirLock;
pub use crate::disk::record::DurableRecord;
use crate::error::Error;
use crate::options::Options;

/// A log segment on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The first commit (the file's name).
    pub first_commit: u64,
    /// The last commit in it (`first_commit - 1` when it holds none yet).
    pub last_commit: u64,
    /// The file.
    pub path: PathBuf,
    /// Its length in bytes (header included).
    pub bytes: u64,
    /// Whether it was sealed: it holds a record and its file ends exactly at
    /// its last record. The log writer keeps zero fill ahead of the records
    /// of the segment it appends to and cuts the fill off when it seals one
    /// (see `log_writer`), so a reopened writer starts a new segment after a
    /// sealed one instead of appending to it. The rule errs only the safe
    /// way: a segment whose records happen to end at its file's end after a
    /// crash also counts as sealed, which costs one more segment file.
    pub sealed: bool,
}

/// What [`recover`] found: every good record, the segments, and what was
/// repaired. Hand `records` to the index; hand the whole value to the log
/// writer (see `supervisor::start`).
#[derive(Clone, Debug)]
pub struct Recovered {
    /// Every good record after `decoded_after`, in commit order (every good
    /// record for [`recover`]).
    pub records: Vec<DurableRecord>,
    /// Records up to this commit were checked (length and CRC) but not
    /// decoded: they are in `skipped`, not in `records` (0 for [`recover`]).
    pub decoded_after: u64,
    /// The commit and location of every good record up to `decoded_after`,
    /// in commit order.
    pub skipped: Vec<(u64, Location)>,
    /// The segments, oldest first.
    pub segments: Vec<SegmentInfo>,
    /// The last durable commit (0 for an empty store).
    pub last_commit: u64,
    /// Where a torn tail was cut off (file, offset), if one was.
    pub truncated: Option<(PathBuf, u64)>,
    /// The meta file's contents.
    pub meta: Meta,
    /// The largest transaction id found in the log (0 if none).
    pub max_tx_id: u64,
    /// Segments below a gap in the log: left over by a compaction whose
    /// unlinks did not all reach the disk. Not part of the retained log;
    /// [`remove_leftovers`] deletes them once a snapshot covers the gap.
    pub leftovers: Vec<PathBuf>,
    /// The largest transaction id in the leftovers (ids are never reused).
    max_tx_id_below_gap: u64,
}

/// Writes `<dir>/meta` atomically.
pub fn write_meta(fs_ops: &dyn FileOps, dir: &Path, m: &Meta, umask: u32) -> Result<(), Error> {
    create_new_file(fs_ops, dir, "meta", &meta::encode(m), umask).map(drop)
}

/// Reads and checks `<dir>/meta`.
pub fn read_meta(dir: &Path) -> Result<Meta, Error> {
    let path = dir.join("meta");
    let bytes = read_file(&path).map_err(|e| Error::io("read", &path, &e))?;
    meta::decode(&bytes).map_err(|e| Error::corrupt(&path, e.offset, e.reason))
}

/// Recovers the store at `dir` (which the caller has locked): creates
/// `wal/` and `meta` when missing, scans every segment, truncates a torn
/// tail of the last segment (logged with `tracing::warn!`), and fails with
/// [`Error::Corrupt`] on anything else.
pub fn recover(dir: &Path, options: &Options, fs_ops: &dyn FileOps) -> Result<Recovered, Error> {
    recover_after(dir, options, fs_ops, 0)
}

/// [`recover`], except that the records of commits up to `decoded_after`
/// get their frames checked (length, CRC) but are not decoded: they are
/// listed in [`Recovered::skipped`]. [`crate::open::checkpoint::open_index`] passes the commit of a
/// checkpoint.
pub fn recover_after(
    dir: &Path,
    options: &Options,
    fs_ops: &dyn FileOps,
    decoded_after: u64,
) -> Result<Recovered, Error> {
    let umask = options.umask;
    let wdir = wal_dir(dir);
    ensure_subdir(fs_ops, &wdir, umask)?;
    let meta_path = dir.join("meta");
    let meta = if std::fs::symlink_metadata(&meta_path).is_ok() {
        read_meta(dir)?
    } else {
        // A new store, or a lost `meta` beside a log: the log is the truth
        // (transaction ids restart above the largest one it holds).
        let m = Meta {
            wal_format: wal::FORMAT_VERSION,
            tx_id_high_water: 0,
        };
        write_meta(fs_ops, dir, &m, umask)?;
        m
    };
    if meta.wal_format != wal::FORMAT_VERSION {
        return Err(Error::corrupt(
            &meta_path,
            0,
            format!("unsupported log format {}", meta.wal_format),
        ));
    }

    let listing = list_wal(dir)?;
    for p in &listing.unfinished {
        // A segment that was never renamed into place: never acknowledged.
        tracing::warn!(file = %p.display(), "removing unfinished segment");
        fs_ops.remove(p).map_err(|e| Error::io("remove", p, &e))?;
    }
    let names = listing.segments;

    let mut out = Recovered {
        records: Vec::new(),
        decoded_after,
        skipped: Vec::new(),
        segments: Vec::new(),
        last_commit: 0,
        truncated: None,
        meta,
        max_tx_id: 0,
        leftovers: Vec::new(),
        max_tx_id_below_gap: 0,
    };
    let count = names.len();
    for (i, first) in names.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let path = segment_path(dir, first);
        let bytes = read_file(&path).map_err(|e| Error::io("read", &path, &e))?;
        let scan = match wal::scan_decoding_after(&bytes, decoded_after) {
            Ok(s) => s,
            Err(e) => {
                if is_last && bytes.len() < HEADER_LEN as usize {
                    // Cannot happen with rename-into-place, but a cut header
                    // of the newest segment holds no record either way.
                    tracing::warn!(file = %path.display(), "removing segment with a torn header");
                    fs_ops
                        .remove(&path)
                        .map_err(|e| Error::io("remove", &path, &e))?;
                    continue;
                }
                return Err(Error::corrupt(&path, e.offset, e.kind.to_string()));
            }
        };
        if scan.first_commit != first {
            return Err(Error::corrupt(
                &path,
                0,
                format!("header names first commit {}", scan.first_commit),
            ));
        }
        let prev_last = out.segments.last().map(|s| s.last_commit);
        if let Some(last) = prev_last.filter(|&last| first != last + 1) {
            if first <= last {
                return Err(Error::corrupt(
                    &path,
                    0,
                    format!("segment starts at commit {first} but the previous one ends at {last}"),
                ));
            }
            // A gap: compaction unlinked the segments between, and the
            // unlinks of older ones did not all reach the disk. The retained
            // log starts here; what lies below is left over, and is removed
            // once a snapshot is known to cover it (`remove_leftovers`), or
            // the open fails because none does (`Catalog::horizon_for_log`).
            tracing::warn!(
                file = %path.display(),
                previous_ends_at = last,
                "gap in the log: the segments before it are leftovers of a compaction"
            );
            out.leftovers.extend(out.segments.drain(..).map(|s| s.path));
            out.records.clear();
            out.skipped.clear();
            out.max_tx_id_below_gap = out.max_tx_id_below_gap.max(out.max_tx_id);
        }
        if first == 0 {
            return Err(Error::corrupt(&path, 0, "segment starts at commit 0"));
        }
        let mut expect = first;
        for loc in scan.skipped {
            out.skipped.push((expect, loc));
            expect += 1;
        }
        for r in scan.records {
            if r.entry.commit != expect {
                return Err(Error::corrupt(
                    &path,
                    r.location.offset,
                    format!("record holds commit {}, expected {expect}", r.entry.commit),
                ));
            }
            expect += 1;
            out.max_tx_id = out.max_tx_id.max(r.entry.tx_id);
            out.records.push(DurableRecord {
                commit: r.entry.commit,
                location: r.location,
                entry: Arc::new(r.entry),
            });
        }
        if !matches!(scan.tail, TailStatus::Torn { .. }) {
            // What a crashed process left in the page cache reads back like
            // durable data: make it durable before relying on it.
            sync_file(fs_ops, &path)?;
        }
        let mut len = bytes.len() as u64;
        let mut sealed = false;
        match scan.tail {
            TailStatus::Clean => sealed = expect > first,
            // Zero fill ahead of the records (the writer's preallocation).
            TailStatus::Zeroed { offset } => len = offset,
            TailStatus::Torn { offset, error } if is_last => {
                tracing::warn!(
                    file = %path.display(),
                    offset,
                    error = %error,
                    "truncating torn tail of the last log segment"
                );
                let f = fs_ops
                    .open(&path)
                    .map_err(|e| Error::io("open", &path, &e))?;
                fs_ops
                    .truncate(&f, offset)
                    .map_err(|e| Error::io("truncate", &path, &e))?;
                fs_ops.sync(&f).map_err(|e| Error::io("sync", &path, &e))?;
                out.truncated = Some((path.clone(), offset));
                len = offset;
            }
            TailStatus::Torn { error, .. } | TailStatus::Corrupt { error, .. } => {
                let what = match error.kind {
                    WalErrorKind::Truncated { .. } => "truncated record inside the log",
                    _ => "bad record",
                };
                return Err(Error::corrupt(
                    &path,
                    error.offset,
                    format!("{what}: {}", error.kind),
                ));
            }
        }
        out.last_commit = expect - 1;
        out.segments.push(SegmentInfo {
            first_commit: first,
            last_commit: expect - 1,
            path,
            bytes: len,
            sealed,
        });
    }
    // Renames and unlinks of segments that a crashed process did not sync.
    fs_ops
        .sync_dir(&wdir)
        .map_err(|e| Error::io("sync dir", &wdir, &e))?;
    fs_ops
        .sync_dir(dir)
        .map_err(|e| Error::io("sync dir", dir, &e))?;
    out.max_tx_id = out.max_tx_id.max(out.max_tx_id_below_gap);
    Ok(out)
}

/// Removes the segments [`recover`] found below a gap in the log
/// ([`Recovered::leftovers`]), once the caller has checked that a snapshot
/// covers every commit they held, and makes the removal durable.
pub fn remove_leftovers(
    fs_ops: &dyn FileOps,
    dir: &Path,
    rec: &mut Recovered,
) -> Result<(), Error> {
    if rec.leftovers.is_empty() {
        return Ok(());
    }
    for p in rec.leftovers.drain(..) {
        tracing::warn!(file = %p.display(), "removing a segment left below the retention horizon");
        match fs_ops.remove(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &p, &e)),
        }
    }
    let wdir = wal_dir(dir);
    fs_ops
        .sync_dir(&wdir)
        .map_err(|e| Error::io("sync dir", &wdir, &e))
}
