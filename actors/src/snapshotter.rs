//! The snapshotter actor: writes `<dir>/snap/<commit>.snap`.
//!
//! This module owns [`Snapshotter`] and its message [`TakeSnapshot`]. A
//! snapshot at commit `c` is built by streaming the previous snapshot (the
//! newest at or before `c`, or the empty document) through
//! [`logd_core::snapshot::rewrite`] under the merged root patches of the
//! commits after it up to `c` (asked from the index, read from the log), so
//! memory is bounded by what the patches touch, not by the document. The
//! file is written to `<commit>.snap.tmp` through [`FileOps`], fsynced,
//! renamed, the directory fsynced, then reopened and verified block by block
//! before it enters the [`Catalog`].
//!
//! One snapshot at a time: the actor handles one message at a time, so a
//! second request *waits* for the first (and returns at once if the snapshot
//! it asks for already exists). Callers that would rather be refused use a
//! [`SnapshotGate`], which gives [`Error::SnapshotBusy`] while another
//! holder is in its seal-and-snapshot sequence.
//!
//! It never deletes files, never changes the index, and never writes a
//! snapshot at a commit whose records are not durable (callers pass the last
//! commit of a sealed segment, or any durable commit).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kameo::Actor;
use kameo::actor::ActorRef;
use kameo::message::{Context, Message};
use logd_core::node::Node;
use logd_core::snapshot::{SnapshotReader, SnapshotWriter, rewrite};
use tracing::{info, instrument};

use crate::catalog::{Catalog, SnapshotEntry, open_snapshot, snap_dir, snapshot_file_name};
use crate::error::Error;
use crate::fileops::FileOps;
use crate::index::{IndexActor, LastCommit, Records};
use crate::log_writer::{LogWriter, Seal};

/// What the snapshotter is started with.
#[derive(Clone, Debug)]
pub struct SnapshotterArgs {
    /// The store directory.
    pub dir: PathBuf,
    /// File operations (the write side goes through them).
    pub fs: Arc<dyn FileOps>,
    /// Permission bits cleared from the files it creates.
    pub umask: u32,
    /// The catalogue it reads the previous snapshot from and adds to.
    pub catalog: Catalog,
    /// The index, asked for the records to replay.
    pub index: ActorRef<IndexActor>,
}

/// The snapshotter actor (see the module docs). Spawn with
/// `Snapshotter::spawn(args)`.
#[derive(Debug)]
pub struct Snapshotter {
    args: SnapshotterArgs,
}

impl Actor for Snapshotter {
    type Args = SnapshotterArgs;
    type Error = Error;

    async fn on_start(args: SnapshotterArgs, _: ActorRef<Self>) -> Result<Self, Error> {
        let sdir = snap_dir(&args.dir);
        args.fs
            .create_dir(&sdir, 0o777 & !args.umask)
            .map_err(|e| Error::io("create dir", &sdir, &e))?;
        Ok(Snapshotter { args })
    }
}

/// Write the snapshot at commit `upto` (a durable, indexed commit; usually
/// the last commit of the segment just sealed). Replies with what was
/// written, or with the existing snapshot when there already is one at
/// `upto` (`replayed == 0`, `took == 0`).
#[derive(Clone, Copy, Debug)]
pub struct TakeSnapshot {
    /// The commit to snapshot.
    pub upto: u64,
}

/// A snapshot that was written (or already existed).
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotInfo {
    /// The commit it is at.
    pub commit: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// Number of blocks.
    pub blocks: u64,
    /// Number of entries.
    pub entries: u64,
    /// Its file.
    pub path: PathBuf,
    /// The commit of the snapshot it was rewritten from (0: the empty document).
    pub from: u64,
    /// How many commits were replayed on top of `from`.
    pub replayed: u64,
    /// How long writing it took (records read, rewrite, fsync, verification).
    pub took: Duration,
}

impl Message<TakeSnapshot> for Snapshotter {
    type Reply = Result<SnapshotInfo, Error>;

    async fn handle(
        &mut self,
        msg: TakeSnapshot,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.take(msg).await
    }
}

/// Seal the log writer's active segment, then snapshot the last commit of
/// the sealed segment (`switch_and_snapshot`). When the active segment
/// holds no record, snapshots the newest indexed commit instead (returning
/// the existing snapshot when there is one at it). Replies `None` for a
/// store without commits. Serialized with every other snapshot request.
#[derive(Clone, Debug)]
pub struct SwitchAndSnapshot {
    /// The log writer to seal.
    pub writer: ActorRef<LogWriter>,
}

impl Message<SwitchAndSnapshot> for Snapshotter {
    type Reply = Result<Option<SnapshotInfo>, Error>;

    async fn handle(
        &mut self,
        msg: SwitchAndSnapshot,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let sealed = msg
            .writer
            .ask(Seal)
            .await
            .map_err(crate::error::from_send)?;
        let upto = match sealed {
            Some(seg) => seg.last_commit,
            None => self
                .args
                .index
                .ask(LastCommit)
                .await
                .map_err(|_| Error::Closed)?
                .unwrap_or(0),
        };
        if upto == 0 {
            return Ok(None);
        }
        self.take(TakeSnapshot { upto }).await.map(Some)
    }
}

impl Snapshotter {
    #[instrument(name = "snapshotter.take", skip_all, fields(upto = msg.upto))]
    async fn take(&mut self, msg: TakeSnapshot) -> Result<SnapshotInfo, Error> {
        let start = Instant::now();
        let cat = &self.args.catalog;
        let prev = cat.newest_at_or_before(msg.upto);
        if let Some(p) = &prev {
            if p.commit == msg.upto {
                return Ok(SnapshotInfo {
                    commit: p.commit,
                    bytes: p.bytes,
                    blocks: p.reader.block_count() as u64,
                    entries: p.reader.entry_count(),
                    path: p.path.clone(),
                    from: p.commit,
                    replayed: 0,
                    took: Duration::ZERO,
                });
            }
        }
        let from = prev.as_ref().map_or(0, |p| p.commit);
        let records = self
            .args
            .index
            .ask(Records { from, to: msg.upto })
            .await
            .map_err(|e| match e {
                kameo::error::SendError::HandlerError(e) => Error::Snapshot {
                    file: crate::catalog::snapshot_path(&self.args.dir, msg.upto),
                    reason: format!("cannot list the commits to replay: {e}"),
                },
                _ => Error::Closed,
            })?;
        let args = self.args.clone();
        let upto = msg.upto;
        let entry =
            tokio::task::spawn_blocking(move || build(&args, prev.as_ref(), &records, upto))
                .await
                .map_err(|e| Error::Snapshot {
                    file: crate::catalog::snapshot_path(&self.args.dir, msg.upto),
                    reason: format!("snapshot task failed: {e}"),
                })??;
        let info = SnapshotInfo {
            commit: entry.commit,
            bytes: entry.bytes,
            blocks: entry.reader.block_count() as u64,
            entries: entry.reader.entry_count(),
            path: entry.path.clone(),
            from,
            replayed: (upto - from),
            took: start.elapsed(),
        };
        self.args.catalog.insert(entry);
        info!(
            commit = info.commit,
            bytes = info.bytes,
            from,
            took_ms = info.took.as_millis() as u64,
            "snapshot written"
        );
        Ok(info)
    }
}

/// Writes through `FileOps::write_at` at a running offset.
struct OpsWriter<'a> {
    fs: &'a dyn FileOps,
    file: &'a File,
    offset: u64,
}

impl Write for OpsWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.fs.write_at(self.file, buf, self.offset)?;
        self.offset += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn build(
    args: &SnapshotterArgs,
    prev: Option<&SnapshotEntry>,
    records: &[(u64, logd_core::wal::Location)],
    upto: u64,
) -> Result<SnapshotEntry, Error> {
    let sdir = snap_dir(&args.dir);
    let name = snapshot_file_name(upto);
    let dst = sdir.join(&name);
    let tmp = sdir.join(format!("{name}.tmp"));
    let mut patches: Vec<Node> = Vec::with_capacity(records.len());
    let mut expect = prev.map_or(0, |p| p.commit) + 1;
    for &(commit, loc) in records {
        if commit != expect {
            return Err(Error::Snapshot {
                file: dst,
                reason: format!("the index lacks commit {expect} (got {commit})"),
            });
        }
        expect += 1;
        let entry = args.catalog.read_record(loc)?;
        if entry.commit != commit {
            return Err(Error::corrupt(
                crate::recovery::segment_path(&args.dir, loc.segment),
                loc.offset,
                format!("record holds commit {}, expected {commit}", entry.commit),
            ));
        }
        patches.push(entry.patch);
    }
    if expect != upto + 1 {
        return Err(Error::Snapshot {
            file: dst,
            reason: format!("the index holds commits only up to {}", expect - 1),
        });
    }
    let file = args
        .fs
        .create(&tmp, 0o666 & !args.umask)
        .map_err(|e| Error::io("create", &tmp, &e))?;
    let result = write_tmp(args, &file, &tmp, prev, &patches, upto);
    if let Err(e) = result {
        // Best effort: a leftover temp file is removed at the next open.
        let _ = args.fs.remove(&tmp);
        return Err(e);
    }
    drop(file);
    args.fs
        .rename(&tmp, &dst)
        .map_err(|e| Error::io("rename", &tmp, &e))?;
    args.fs
        .sync_dir(&sdir)
        .map_err(|e| Error::io("sync dir", &sdir, &e))?;
    open_snapshot(&dst, upto, true)
}

fn write_tmp(
    args: &SnapshotterArgs,
    file: &File,
    tmp: &Path,
    prev: Option<&SnapshotEntry>,
    patches: &[Node],
    upto: u64,
) -> Result<(), Error> {
    let out = BufWriter::with_capacity(
        256 << 10,
        OpsWriter {
            fs: &*args.fs,
            file,
            offset: 0,
        },
    );
    let written = match prev {
        Some(p) => rewrite(&*p.reader, patches, out, upto),
        None => {
            let mut empty = Vec::new();
            SnapshotWriter::new(&mut empty, 0)
                .and_then(SnapshotWriter::finish)
                .and_then(|_| SnapshotReader::open(empty))
                .and_then(|r| rewrite(&r, patches, out, upto))
        }
    };
    written.map_err(|e| match e {
        logd_core::snapshot::SnapshotError::Io { source, .. } => Error::io("write", tmp, &source),
        other => Error::from_snapshot(tmp, &other),
    })?;
    args.fs.sync(file).map_err(|e| Error::io("sync", tmp, &e))
}

/// Serializes seal-and-snapshot sequences across callers: [`SnapshotGate::try_enter`]
/// gives [`Error::SnapshotBusy`] while another guard is alive. Clones share the gate.
#[derive(Clone, Debug, Default)]
pub struct SnapshotGate(Arc<AtomicBool>);

/// Holds a [`SnapshotGate`] until dropped.
#[derive(Debug)]
pub struct GateGuard(Arc<AtomicBool>);

impl SnapshotGate {
    /// A new, open gate.
    pub fn new() -> SnapshotGate {
        SnapshotGate::default()
    }

    /// Enters the gate, or [`Error::SnapshotBusy`] when it is held.
    pub fn try_enter(&self) -> Result<GateGuard, Error> {
        if self.0.swap(true, Ordering::AcqRel) {
            return Err(Error::SnapshotBusy);
        }
        Ok(GateGuard(self.0.clone()))
    }
}

impl Drop for GateGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
