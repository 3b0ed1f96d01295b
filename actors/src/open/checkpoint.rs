//! The index checkpoint: opening a long-lived store without decoding its
//! whole log.
//!
//! This module owns `<dir>/ckpt/index.ckpt` (format: [`logd_core::index::checkpoint`]):
//! the path index as of a durable commit `N`, so that opening a long-lived
//! store decodes and indexes only the records after `N` ([`open_index`]),
//! and [`CheckpointWriter`], which writes it. The checkpoint is only an
//! accelerator; these invariants make it safe:
//!
//! 1. **Only durable state.** A checkpoint at `N` is written only after the
//!    segment holding commit `N` was fsynced (the writer syncs it itself),
//!    through `FileOps`: temp name, fsync, rename, directory fsync. A
//!    leftover temp file is removed at open. The log
//!    is append-only below its last durable commit, so the records `<= N`
//!    it describes never change afterwards.
//! 2. **Checked against the log before use.** Every frame's length and CRC
//!    is still verified at open (corruption anywhere is still reported with
//!    file and offset); only the payloads of commits `<= N` are not
//!    decoded. The checkpoint is used only when it decodes cleanly (header
//!    and body CRCs, structure), `N` is at most the recovered last commit,
//!    `N + 1` is at least the first commit the retained log holds, the
//!    location it records for *every* retained commit `<= N` equals the
//!    frame actually there, and the CRC stored in the frame of `N` is the
//!    one it recorded. Otherwise it is ignored (`tracing::warn!` with file
//!    and reason) and every record is decoded, exactly as without it.
//! 3. **Same index as a full decode.** A used checkpoint first forgets the
//!    commits before the retained log's first one (compaction may have
//!    deleted them since), then indexes the decoded records after `N`. The
//!    result answers every query as the index rebuilt from all retained
//!    records would.
//! 4. **Never required.** A missing, corrupt, stale or future checkpoint,
//!    or a failure writing one, never makes open fail or answer
//!    differently; it only makes open slower.
//!
//! What a used checkpoint gives up: the payloads of commits `<= N` are not
//! decoded at open, so a payload that passes its CRC but does not decode
//! (a bug, never a torn write) is found when the record is read, not at open.
//!
//! It never writes the log or snapshots, and never decides what a store
//! holds: [`crate::open::recovery`] scans the log, and the checkpoint only saves
//! decoding records that scan has checked.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use logd_core::index::PathIndex;
use logd_core::index::checkpoint as ckpt;
use logd_core::wal::{self, Location};

use crate::disk::fileops::{FileOps, read_file};
use crate::disk::layout::{create_new_file, list_wal, segment_path};
use crate::disk::record::DurableRecord;
use crate::error::Error;
use crate::open::recovery::{Recovered, recover_after};
use crate::options::Options;

/// The index checkpoint's file name, in [`checkpoint_dir`].
pub const CHECKPOINT_FILE: &str = "index.ckpt";

/// The directory holding the index checkpoint (`<dir>/ckpt`): only the
/// checkpoint writer touches it, so its file operations are told apart
/// from those of the log, snapshots and `meta`.
pub fn checkpoint_dir(dir: &Path) -> PathBuf {
    dir.join("ckpt")
}

/// The path of the index checkpoint of the store at `dir`.
pub fn checkpoint_path(dir: &Path) -> PathBuf {
    checkpoint_dir(dir).join(CHECKPOINT_FILE)
}

/// What [`open_index`] did with the index checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointStatus {
    /// There was none: every record was decoded.
    Absent,
    /// The index came from the checkpoint at `commit`; only the records
    /// after it were decoded.
    Used {
        /// The checkpoint's commit.
        commit: u64,
    },
    /// There was one but it could not be used (see the module docs):
    /// every record was decoded.
    Ignored {
        /// Its commit, when its header could be read.
        commit: Option<u64>,
        /// Why.
        reason: String,
    },
}

/// Reads and decodes `<dir>/ckpt/index.ckpt`: `None` when there is none,
/// [`Error::Corrupt`] (file and offset) when it does not decode.
pub fn read_checkpoint(dir: &Path) -> Result<Option<ckpt::Checkpoint>, Error> {
    let path = checkpoint_path(dir);
    let bytes = match read_file(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", &path, &e)),
    };
    ckpt::decode(&bytes)
        .map(Some)
        .map_err(|e| Error::corrupt(&path, e.offset, e.kind.to_string()))
}

/// Recovers the log (as [`crate::open::recovery::recover`]) and builds the path index, from the
/// index checkpoint when it is usable (see the module docs), else from
/// every record. The returned [`CheckpointStatus`] says which; with a checkpoint,
/// [`Recovered::records`] holds only the records after it, and
/// [`Recovered::max_tx_id`] includes the checkpoint's.
pub fn open_index(
    dir: &Path,
    options: &Options,
    fs_ops: &dyn FileOps,
) -> Result<(Recovered, PathIndex, CheckpointStatus), Error> {
    let path = checkpoint_path(dir);
    let tmp = checkpoint_dir(dir).join(format!("{CHECKPOINT_FILE}.tmp"));
    if tmp.exists() {
        tracing::warn!(file = %tmp.display(), "removing unfinished index checkpoint");
        if let Err(e) = fs_ops.remove(&tmp)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(Error::io("remove", &tmp, &e));
        }
    }
    let mut status = CheckpointStatus::Absent;
    let loaded = match read_checkpoint(dir) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "ignoring unusable index checkpoint");
            let commit = read_file(&path)
                .ok()
                .and_then(|b| ckpt::decode_header(&b).ok())
                .map(|h| h.commit);
            status = CheckpointStatus::Ignored {
                commit,
                reason: e.to_string(),
            };
            None
        }
    };
    let after = loaded.as_ref().map_or(0, |c| c.commit);
    let mut rec = recover_after(dir, options, fs_ops, after)?;
    let mut index = None;
    if let Some(c) = loaded {
        match usable(dir, &c, &rec).and_then(|first| {
            // Written by a process that may have died before its sync.
            crate::disk::layout::sync_file(fs_ops, &path)
                .and_then(|()| {
                    let cdir = checkpoint_dir(dir);
                    fs_ops
                        .sync_dir(&cdir)
                        .map_err(|e| Error::io("sync dir", &cdir, &e))
                })
                .map(|()| first)
                .map_err(|e| e.to_string())
        }) {
            Ok(log_first) => {
                let mut idx = c.index;
                idx.forget_before(log_first);
                rec.max_tx_id = rec.max_tx_id.max(c.max_tx_id);
                status = CheckpointStatus::Used { commit: c.commit };
                index = Some(idx);
            }
            Err(reason) => {
                tracing::warn!(
                    file = %path.display(),
                    commit = c.commit,
                    %reason,
                    "ignoring index checkpoint that does not match the log"
                );
                if c.commit > rec.last_commit {
                    // Beyond the durable log: once new commits pass its
                    // number it must not be mistaken for theirs.
                    match fs_ops.remove(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(Error::io("remove", &path, &e)),
                    }
                }
                status = CheckpointStatus::Ignored {
                    commit: Some(c.commit),
                    reason,
                };
            }
        }
    }
    let mut index = match index {
        Some(i) => i,
        None => {
            decode_skipped(dir, &mut rec)?;
            PathIndex::new()
        }
    };
    for r in &rec.records {
        index
            .insert_patch(r.commit, &r.entry.patch, r.location)
            .map_err(|e| {
                Error::corrupt(
                    segment_path(dir, r.location.segment),
                    r.location.offset,
                    e.to_string(),
                )
            })?;
    }
    // The retained log may hold no record although commits were made (the
    // newest segment is empty and compaction removed the older ones): the
    // index must still know every commit up to the last durable one.
    if rec.last_commit > 0 {
        index.start_at(rec.last_commit + 1);
    }
    Ok((rec, index, status))
}

/// The first commit the retained log holds (`last_commit + 1` when it
/// holds none).
fn log_first(rec: &Recovered) -> u64 {
    rec.skipped
        .first()
        .map(|&(c, _)| c)
        .or_else(|| rec.records.first().map(|r| r.commit))
        .unwrap_or(rec.last_commit + 1)
}

/// Whether the checkpoint `c` fits the log `rec` recovered with
/// `decoded_after == c.commit` (module docs, invariant 2): the retained
/// log's first commit, or why not.
fn usable(dir: &Path, c: &ckpt::Checkpoint, rec: &Recovered) -> Result<u64, String> {
    if c.commit > rec.last_commit {
        return Err(format!(
            "it is at commit {} but the log ends at commit {}",
            c.commit, rec.last_commit
        ));
    }
    let first = log_first(rec);
    if c.commit + 1 < first {
        return Err(format!(
            "it is at commit {} but the retained log starts at commit {first}",
            c.commit
        ));
    }
    let expected = (c.commit + 1).saturating_sub(first);
    if rec.skipped.len() as u64 != expected {
        return Err(format!(
            "the log holds {} records up to commit {}, expected {expected}",
            rec.skipped.len(),
            c.commit
        ));
    }
    for &(commit, loc) in &rec.skipped {
        let held = c.index.location(commit);
        if held != Some(loc) {
            return Err(format!(
                "it places commit {commit} at {held:?}, the log at {loc:?}"
            ));
        }
    }
    if let Some(&(commit, loc)) = rec.skipped.last() {
        let crc = frame_crc(dir, loc).map_err(|e| e.to_string())?;
        if crc != c.frame_crc {
            return Err(format!(
                "the record of commit {commit} has CRC {crc:#010x}, the checkpoint expects {:#010x}",
                c.frame_crc
            ));
        }
    }
    Ok(first)
}

/// The CRC stored in the header of the log frame at `loc`.
pub fn frame_crc(dir: &Path, loc: Location) -> Result<u32, Error> {
    use std::os::unix::fs::FileExt;
    let path = segment_path(dir, loc.segment);
    let f = crate::disk::fileops::open_read(&path).map_err(|e| Error::io("open", &path, &e))?;
    let mut h = [0u8; wal::FRAME_HEADER_LEN];
    f.read_exact_at(&mut h, loc.offset)
        .map_err(|e| Error::io("read", &path, &e))?;
    Ok(u32::from_le_bytes([h[4], h[5], h[6], h[7]]))
}

/// Decodes the records recovery skipped (a checkpoint turned out unusable)
/// and puts them before the others, so `rec` is what [`recover`] returns.
fn decode_skipped(dir: &Path, rec: &mut Recovered) -> Result<(), Error> {
    let mut out = read_records(dir, &rec.skipped, &|_| None)?;
    for r in &out {
        rec.max_tx_id = rec.max_tx_id.max(r.entry.tx_id);
    }
    out.append(&mut rec.records);
    rec.records = out;
    rec.skipped.clear();
    rec.decoded_after = 0;
    Ok(())
}

/// The records at `locs` (commit and location, in order): from `cached`
/// when it has them, else decoded from their segment files (each file read
/// at most once per run of records in it). A record that does not decode,
/// or holds another commit, is [`Error::Corrupt`] naming file and offset.
pub fn read_records(
    dir: &Path,
    locs: &[(u64, Location)],
    cached: &dyn Fn(u64) -> Option<Arc<wal::Entry>>,
) -> Result<Vec<DurableRecord>, Error> {
    let mut out = Vec::with_capacity(locs.len());
    let mut current: Option<(u64, Vec<u8>)> = None;
    for &(commit, loc) in locs {
        if let Some(entry) = cached(commit) {
            out.push(DurableRecord {
                commit,
                location: loc,
                entry,
            });
            continue;
        }
        let path = segment_path(dir, loc.segment);
        if current.as_ref().is_none_or(|(s, _)| *s != loc.segment) {
            let bytes = fs::read(&path).map_err(|e| Error::io("read", &path, &e))?;
            current = Some((loc.segment, bytes));
        }
        let Some((_, bytes)) = &current else {
            continue;
        };
        let frame = usize::try_from(loc.offset)
            .ok()
            .and_then(|o| bytes.get(o..))
            .ok_or_else(|| {
                Error::corrupt(&path, loc.offset, "record beyond the end of the file")
            })?;
        let (entry, n) = wal::decode_frame(frame, loc.offset)
            .map_err(|e| Error::corrupt(&path, e.offset, format!("bad record: {}", e.kind)))?;
        if entry.commit != commit || n != loc.len as usize {
            return Err(Error::corrupt(
                &path,
                loc.offset,
                format!("record holds commit {}, expected {commit}", entry.commit),
            ));
        }
        out.push(DurableRecord {
            commit,
            location: loc,
            entry: Arc::new(entry),
        });
    }
    Ok(out)
}

/// Writes the index checkpoint (see the module docs). Clones share state;
/// jobs are serialized. [`CheckpointWriter::close`] waits only for a file
/// write in flight (never for a job's CPU work, which stops at its next
/// check) and makes every later write a no-op: the store's lock is released
/// after it. Every method blocks: call them from a blocking thread.
#[derive(Clone, Debug)]
pub struct CheckpointWriter {
    dir: PathBuf,
    fs: Arc<dyn FileOps>,
    umask: u32,
    state: Arc<std::sync::Mutex<WriterState>>,
    /// `state.commit`, readable without waiting for a write in flight.
    commit: Arc<std::sync::atomic::AtomicU64>,
    /// `state.closed`, checked by jobs between their phases.
    closed: Arc<std::sync::atomic::AtomicBool>,
    /// Held by a job from start to end: jobs never overlap.
    jobs: Arc<std::sync::Mutex<()>>,
    /// Set by [`CheckpointWriter::stop_background`].
    closing: Arc<std::sync::atomic::AtomicBool>,
    /// Whether this handle runs background jobs (which `closing` stops).
    background: bool,
    /// The queue of the background worker thread (started on first use).
    worker: Arc<std::sync::Mutex<Option<std::sync::mpsc::Sender<Job>>>>,
}

/// A background checkpoint job.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// How long the background worker waits before each job: the caller's
/// next steps (a snapshot's compaction, the first reads) go first.
pub const BACKGROUND_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

/// A checkpoint encoded from an index ([`EncodedCheckpoint::of`]), to be
/// written later by [`CheckpointWriter::write_encoded`] (the index may
/// have moved on meanwhile).
#[derive(Clone, Debug)]
pub struct EncodedCheckpoint {
    bytes: Vec<u8>,
    commit: u64,
    location: Option<Location>,
}

impl EncodedCheckpoint {
    /// Encodes `index` (which must hold only durable commits, each at the
    /// location it records in the store at `dir`) as of its last commit,
    /// with the largest transaction id of its commits.
    pub fn of(dir: &Path, index: &PathIndex, max_tx_id: u64) -> Result<EncodedCheckpoint, Error> {
        let commit = ckpt::commit_of(index);
        let location = index.location(commit);
        let crc = match location {
            Some(loc) => frame_crc(dir, loc)?,
            None => 0,
        };
        Ok(EncodedCheckpoint {
            bytes: ckpt::encode(index, max_tx_id, crc),
            commit,
            location,
        })
    }

    /// The commit it is at.
    pub fn commit(&self) -> u64 {
        self.commit
    }
}

#[derive(Debug)]
struct WriterState {
    /// The commit of the usable checkpoint on disk (0: none).
    commit: u64,
    closed: bool,
}

impl CheckpointWriter {
    /// A writer for the store at `dir`, whose usable checkpoint on disk is
    /// at `on_disk` (`None`: there is none, or it was ignored).
    pub fn new(dir: &Path, fs: Arc<dyn FileOps>, umask: u32, on_disk: Option<u64>) -> Self {
        CheckpointWriter {
            dir: dir.to_path_buf(),
            fs,
            umask,
            state: Arc::new(std::sync::Mutex::new(WriterState {
                commit: on_disk.unwrap_or(0),
                closed: false,
            })),
            commit: Arc::new(std::sync::atomic::AtomicU64::new(on_disk.unwrap_or(0))),
            closed: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            jobs: Arc::new(std::sync::Mutex::new(())),
            closing: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            background: false,
            worker: Arc::new(std::sync::Mutex::new(None)),
        }
    }

    /// Queues `job` for this writer's background worker: one thread at the
    /// lowest CPU priority (nice 19), started on first use, running jobs in
    /// the order they were queued, each after [`BACKGROUND_DELAY`]. So a
    /// checkpoint write after a snapshot or at open takes only CPU time
    /// nobody else wants, and nobody waits for it: closing the store makes
    /// queued and running jobs stop at their next check. The job gets a
    /// [`CheckpointWriter::for_background`] handle.
    pub fn submit(&self, job: impl FnOnce(&CheckpointWriter) + Send + 'static) {
        let me = self.for_background();
        let job: Job = Box::new(move || job(&me));
        let mut worker = self.worker.lock().unwrap_or_else(|p| p.into_inner());
        let job = match worker.as_ref() {
            Some(tx) => match tx.send(job) {
                Ok(()) => return,
                // The worker is gone: start another.
                Err(std::sync::mpsc::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("logd-checkpoint".into())
            .spawn(move || {
                // SAFETY: on Linux, PRIO_PROCESS with who = 0 sets the nice
                // value of the calling thread only; no memory is shared. A
                // failure just leaves the priority as it is.
                unsafe {
                    libc::setpriority(libc::PRIO_PROCESS, 0, 19);
                }
                while let Ok(job) = rx.recv() {
                    std::thread::sleep(BACKGROUND_DELAY);
                    job();
                }
            });
        match spawned {
            Ok(_) => {
                if tx.send(job).is_ok() {
                    *worker = Some(tx);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot start the index checkpoint worker"),
        }
    }

    /// A handle for background jobs: they also stop once
    /// [`CheckpointWriter::stop_background`] was called.
    pub fn for_background(&self) -> CheckpointWriter {
        CheckpointWriter {
            background: true,
            ..self.clone()
        }
    }

    /// Makes background jobs stop at their next check (closing the store
    /// calls this first, so its own last advance does not wait for them).
    pub fn stop_background(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether this handle must not write any more.
    fn stopped(&self) -> bool {
        self.is_closed()
            || (self.background && self.closing.load(std::sync::atomic::Ordering::Acquire))
    }

    fn job(&self) -> std::sync::MutexGuard<'_, ()> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether [`CheckpointWriter::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WriterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The commit of the usable checkpoint on disk (0: none). Does not
    /// wait for a write in flight.
    pub fn commit(&self) -> u64 {
        self.commit.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Waits for a write in flight; later writes do nothing.
    pub fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.lock().closed = true;
    }

    /// Writes a checkpoint of `index` (which must hold only durable commits)
    /// unless one at or after its commit exists. Returns the new
    /// checkpoint's commit.
    pub fn write(&self, index: &PathIndex, max_tx_id: u64) -> Result<Option<u64>, Error> {
        self.write_encoded(&EncodedCheckpoint::of(&self.dir, index, max_tx_id)?)
    }

    /// Writes `encoded` unless a checkpoint at or after its commit exists.
    /// Returns the new checkpoint's commit.
    pub fn write_encoded(&self, encoded: &EncodedCheckpoint) -> Result<Option<u64>, Error> {
        let _job = self.job();
        let mut st = self.lock();
        if st.closed || self.stopped() || encoded.commit <= st.commit {
            return Ok(None);
        }
        self.put(&mut st, &encoded.bytes, encoded.commit, encoded.location)
            .map(Some)
    }

    /// Advances the checkpoint on disk over `records` (durable, in commit
    /// order): loads it, indexes the records after it, forgets the commits
    /// the log no longer holds, and writes the result. Does nothing (and
    /// says so at debug level) when the records do not continue it.
    /// Returns the new checkpoint's commit.
    pub fn advance(&self, records: &[DurableRecord]) -> Result<Option<u64>, Error> {
        let _job = self.job();
        if self.stopped() {
            return Ok(None);
        }
        // Only jobs change the checkpoint, and this one holds `_job`.
        let k = self.commit();
        let fresh: Vec<&DurableRecord> = records.iter().filter(|r| r.commit > k).collect();
        let Some(first) = fresh.first() else {
            return Ok(None);
        };
        if first.commit != k + 1 {
            tracing::debug!(
                checkpoint = k,
                first = first.commit,
                "index checkpoint not advanced: the records do not continue it"
            );
            return Ok(None);
        }
        let (mut index, mut max_tx) = if k == 0 {
            (PathIndex::new(), 0)
        } else {
            match read_checkpoint(&self.dir) {
                Ok(Some(c)) if c.commit == k => (c.index, c.max_tx_id),
                other => {
                    tracing::warn!(
                        file = %checkpoint_path(&self.dir).display(),
                        expected = k,
                        found = ?other.map(|c| c.map(|c| c.commit)),
                        "index checkpoint changed on disk; not advancing it"
                    );
                    let mut st = self.lock();
                    st.commit = 0;
                    self.commit.store(0, std::sync::atomic::Ordering::Release);
                    return Ok(None);
                }
            }
        };
        for (i, r) in fresh.into_iter().enumerate() {
            if i % 1024 == 1023 && self.stopped() {
                return Ok(None);
            }
            index
                .insert_patch(r.commit, &r.entry.patch, r.location)
                .map_err(|e| {
                    let path = segment_path(&self.dir, r.location.segment);
                    Error::corrupt(&path, r.location.offset, e.to_string())
                })?;
            max_tx = max_tx.max(r.entry.tx_id);
        }
        if self.stopped() {
            return Ok(None);
        }
        if let Some(first) = self.first_segment()? {
            index.forget_before(first);
        }
        let encoded = EncodedCheckpoint::of(&self.dir, &index, max_tx)?;
        drop(index);
        let mut st = self.lock();
        if st.closed || self.stopped() || encoded.commit <= st.commit {
            return Ok(None);
        }
        self.put(&mut st, &encoded.bytes, encoded.commit, encoded.location)
            .map(Some)
    }

    /// The first commit of the oldest segment in `wal/`.
    fn first_segment(&self) -> Result<Option<u64>, Error> {
        Ok(list_wal(&self.dir)?.segments.first().copied())
    }

    /// Makes commit `commit` durable (syncs its segment), then writes
    /// `bytes` atomically.
    fn put(
        &self,
        st: &mut WriterState,
        bytes: &[u8],
        commit: u64,
        loc: Option<Location>,
    ) -> Result<u64, Error> {
        if let Some(loc) = loc {
            // Plain file calls, not `FileOps`: this only re-syncs what the
            // log writer wrote (a no-op unless open found unsynced records),
            // and every `FileOps` call of this writer stays under `ckpt/`.
            let p = segment_path(&self.dir, loc.segment);
            match File::open(&p) {
                Ok(f) => f.sync_data().map_err(|e| Error::io("sync", &p, &e))?,
                // Compacted meanwhile: its records are covered by a snapshot.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("open", &p, &e)),
            }
        }
        let cdir = checkpoint_dir(&self.dir);
        crate::disk::layout::ensure_subdir(&*self.fs, &cdir, self.umask)?;
        create_new_file(&*self.fs, &cdir, CHECKPOINT_FILE, bytes, self.umask)?;
        st.commit = commit;
        self.commit
            .store(commit, std::sync::atomic::Ordering::Release);
        tracing::debug!(commit, bytes = bytes.len(), "index checkpoint written");
        Ok(commit)
    }
}
