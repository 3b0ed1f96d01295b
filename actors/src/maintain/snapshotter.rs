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
//! Snapshots on its own ([`crate::options::SnapshotEvery`]) come from a
//! [`SnapshotTrigger`]: the log writer's follower when automatic snapshots
//! are on (it is told of every durable batch after the batch is
//! acknowledged, so commits never wait for it). It counts commits and
//! notices sealed segments, and when one is due it *tries* to
//! post an [`AutoSnapshot`] to this actor without waiting (at most one is
//! outstanding), so writers never wait for a snapshot. The snapshotter
//! handles it like an explicit request (serialized with them), then asks the
//! compactor to apply the retention policy; failures are logged and leave
//! the trigger ready for the next one.
//!
//! The patches replayed on top of the previous snapshot come from the
//! shared [`RecordCache`] when it still holds them (the records of recent
//! commits, already decoded), else from the log.
//!
//! After each snapshot it also advances the index checkpoint
//! ([`crate::open::checkpoint::CheckpointWriter`], handed over with
//! [`UseCheckpoints`]) to the snapshot's commit, on the writer's
//! low-priority worker after the reply ([`CheckpointWriter::submit`]), from the records
//! the snapshot replayed (plus, when the
//! checkpoint is older than the previous snapshot, the ones between, from
//! the record cache or the log): callers never wait for it, and a failure
//! is only logged.
//!
//! It never deletes files, never changes the index, and never writes a
//! snapshot at a commit whose records are not durable (callers pass the last
//! commit of a sealed segment, or any durable commit; automatic snapshots in
//! buffered mode flush the log first).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kameo::Actor;
use kameo::actor::ActorRef;
use kameo::message::{Context, Message};
use logd_core::snapshot::{SnapshotReader, SnapshotWriter, rewrite};
use logd_core::wal::Entry;
use tracing::{info, instrument, warn};

use crate::commit::log_writer::{LogWriter, Seal};
use crate::disk::fileops::FileOps;
use crate::disk::record::DurableBatch;
use crate::disk::record::DurableRecord;
use crate::error::Error;
use crate::index::cache::RecordCache;
use crate::index::catalog::{Catalog, SnapshotEntry, open_snapshot, snap_dir, snapshot_file_name};
use crate::index::{IndexActor, LastCommit, Records};
use crate::maintain::compactor::{Compact, Compactor};
use crate::open::checkpoint::{CheckpointWriter, read_records};
use crate::options::SnapshotEvery;

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
    /// Decoded recent records (the index fills it), used before the log.
    pub records: Option<Arc<RecordCache>>,
}

/// The snapshotter actor (see the module docs). Spawn with
/// `Snapshotter::spawn(args)`.
#[derive(Debug)]
pub struct Snapshotter {
    args: SnapshotterArgs,
    /// Advanced after each snapshot, when set.
    checkpoints: Option<CheckpointWriter>,
}

/// Advance the index checkpoint with `0` after each snapshot from now on.
#[derive(Clone, Debug)]
pub struct UseCheckpoints(pub CheckpointWriter);

impl Message<UseCheckpoints> for Snapshotter {
    type Reply = ();

    async fn handle(&mut self, msg: UseCheckpoints, _ctx: &mut Context<Self, ()>) {
        self.checkpoints = Some(msg.0);
    }
}

impl Actor for Snapshotter {
    type Args = SnapshotterArgs;
    type Error = Error;

    async fn on_start(args: SnapshotterArgs, _: ActorRef<Self>) -> Result<Self, Error> {
        let sdir = snap_dir(&args.dir);
        crate::disk::layout::ensure_subdir(&*args.fs, &sdir, args.umask)?;
        Ok(Snapshotter {
            args,
            checkpoints: None,
        })
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
        if let Some(p) = &prev
            && p.commit == msg.upto
        {
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
        let from = prev.as_ref().map_or(0, |p| p.commit);
        let records = self
            .args
            .index
            .ask(Records { from, to: msg.upto })
            .await
            .map_err(|e| match e {
                kameo::error::SendError::HandlerError(e) => Error::Snapshot {
                    file: crate::index::catalog::snapshot_path(&self.args.dir, msg.upto),
                    reason: format!("cannot list the commits to replay: {e}"),
                },
                _ => Error::Closed,
            })?;
        let args = self.args.clone();
        let upto = msg.upto;
        let (entry, replayed) = tokio::task::spawn_blocking(move || {
            build(&args, prev.as_ref(), &records, upto)
                .map(|(entry, patches)| (entry, records.into_iter().zip(patches).collect()))
        })
        .await
        .map_err(|e| Error::Snapshot {
            file: crate::index::catalog::snapshot_path(&self.args.dir, msg.upto),
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
        self.advance_checkpoint(from, upto, replayed).await;
        Ok(info)
    }

    /// Advances the index checkpoint to `upto` on a blocking thread (not
    /// waited for): `replayed` are the records of `(from, upto]`; older ones
    /// the checkpoint lacks are listed by the index now and read there.
    async fn advance_checkpoint(
        &self,
        from: u64,
        upto: u64,
        replayed: Vec<((u64, logd_core::wal::Location), Arc<Entry>)>,
    ) {
        let Some(w) = self.checkpoints.clone() else {
            return;
        };
        let k = w.commit();
        if k >= upto {
            return;
        }
        // The checkpoint may lag the previous snapshot (its own job still
        // queued, or one that failed): add the commits in between when the
        // index still lists them. If it does not, the job still runs: by
        // then the queued job before it may have caught up to `from`.
        let missing = if k < from {
            match self.args.index.ask(Records { from: k, to: from }).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(checkpoint = k, error = ?e, "index checkpoint lags the snapshots");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let dir = self.args.dir.clone();
        let cache = self.args.records.clone();
        // Not waited for: closing the store makes it stop.
        w.submit(move |w| {
            let cached = |c: u64| cache.as_ref().and_then(|r| r.get(c));
            let mut all = match read_records(&dir, &missing, &cached) {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "index checkpoint not advanced: cannot read records");
                    return;
                }
            };
            all.extend(
                replayed
                    .into_iter()
                    .map(|((commit, location), entry)| DurableRecord {
                        commit,
                        location,
                        entry,
                    }),
            );
            match w.advance(&all) {
                Ok(Some(c)) => tracing::debug!(commit = c, "index checkpoint advanced"),
                Ok(None) => {}
                Err(e) => warn!(error = %e, "index checkpoint not advanced"),
            }
        });
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

/// Writes the snapshot at `upto`; also returns the replayed records'
/// entries (in the order of `records`).
fn build(
    args: &SnapshotterArgs,
    prev: Option<&SnapshotEntry>,
    records: &[(u64, logd_core::wal::Location)],
    upto: u64,
) -> Result<(SnapshotEntry, Vec<Arc<Entry>>), Error> {
    let sdir = snap_dir(&args.dir);
    let name = snapshot_file_name(upto);
    let dst = sdir.join(&name);
    let tmp = sdir.join(format!("{name}.tmp"));
    let mut patches: Vec<Arc<Entry>> = Vec::with_capacity(records.len());
    let mut expect = prev.map_or(0, |p| p.commit) + 1;
    for &(commit, loc) in records {
        if commit != expect {
            return Err(Error::Snapshot {
                file: dst,
                reason: format!("the index lacks commit {expect} (got {commit})"),
            });
        }
        expect += 1;
        let cached = args.records.as_ref().and_then(|c| c.get(commit));
        let entry = match cached {
            Some(e) => e,
            None => Arc::new(args.catalog.read_record(commit, loc)?),
        };
        patches.push(entry);
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
    open_snapshot(&dst, upto, true).map(|entry| (entry, patches))
}

fn write_tmp(
    args: &SnapshotterArgs,
    file: &File,
    tmp: &Path,
    prev: Option<&SnapshotEntry>,
    patches: &[Arc<Entry>],
    upto: u64,
) -> Result<(), Error> {
    let patches = patches.iter().map(|e| &e.patch);
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

/// Marks an [`AutoSnapshot`] as outstanding; cleared when dropped (handled,
/// failed, or never delivered), so a failure never wedges later snapshots.
#[derive(Debug)]
pub struct Outstanding(Arc<AtomicBool>);

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Take a snapshot on the store's own initiative (posted by a
/// [`SnapshotTrigger`]): flush the log first when `flush` is given (buffered
/// durability), snapshot `upto`, then ask `compactor` to compact. Replies
/// nothing: failures are logged with `tracing::warn!`.
#[derive(Debug)]
pub struct AutoSnapshot {
    /// The commit to snapshot (durable once `flush` has run, if given).
    pub upto: u64,
    /// The log writer to flush before snapshotting.
    pub flush: Option<ActorRef<LogWriter>>,
    /// The compactor to run afterwards.
    pub compactor: Option<ActorRef<Compactor>>,
    /// Cleared when this request is done.
    pub outstanding: Outstanding,
    /// Told [`Recheck`] when this request is done (a snapshot may have come
    /// due meanwhile, with no commit after it to notice).
    pub trigger: Option<ActorRef<SnapshotTrigger>>,
}

impl Message<AutoSnapshot> for Snapshotter {
    type Reply = ();

    async fn handle(&mut self, msg: AutoSnapshot, _ctx: &mut Context<Self, ()>) {
        if let Some(w) = &msg.flush
            && let Err(e) = w.ask(crate::commit::log_writer::Flush).await
        {
            match crate::error::from_send(e) {
                // The store is closing: nothing to snapshot any more.
                Error::Closed => {
                    tracing::debug!(upto = msg.upto, "automatic snapshot skipped: closed")
                }
                e => {
                    warn!(upto = msg.upto, error = %e, "automatic snapshot: cannot flush the log")
                }
            }
            return;
        }
        let taken = self.take(TakeSnapshot { upto: msg.upto }).await;
        drop(msg.outstanding);
        match taken {
            Ok(info) => {
                info!(
                    commit = info.commit,
                    from = info.from,
                    "automatic snapshot written"
                );
                if let Some(c) = &msg.compactor
                    && let Err(e) = c.ask(Compact).await
                {
                    let e = crate::error::from_send(e);
                    warn!(error = %e, "compaction after an automatic snapshot failed");
                }
            }
            Err(e) => warn!(upto = msg.upto, error = %e, "automatic snapshot failed"),
        }
        if let Some(t) = &msg.trigger {
            // Best effort: a full mailbox means commits are flowing, and
            // each batch looks again anyway.
            let _ = t.tell(Recheck).try_send();
        }
    }
}

/// The log writer's follower when [`SnapshotEvery`] is set (see the module
/// docs): watches every durable batch and posts an [`AutoSnapshot`] when
/// one is due. Spawn with `SnapshotTrigger::spawn`, hand
/// `recipient::<DurableBatch>()` to the log writer
/// ([`crate::commit::log_writer::WriterArgs::with_follower`]), then send it
/// [`TriggerWiring`] once the writer runs.
#[derive(Debug)]
pub struct SnapshotTrigger {
    snapshotter: ActorRef<Snapshotter>,
    catalog: Catalog,
    every: SnapshotEvery,
    /// Flush the log before an automatic snapshot of a mid-segment commit.
    buffered: bool,
    writer: Option<ActorRef<LogWriter>>,
    compactor: Option<ActorRef<Compactor>>,
    /// Its own ref (set at start), handed to the snapshotter for [`Recheck`].
    me: Option<ActorRef<SnapshotTrigger>>,
    outstanding: Arc<AtomicBool>,
    /// The newest commit seen and the segment it is in.
    last: Option<(u64, u64)>,
    /// The last commits of the sealed segments not yet snapshotted, oldest
    /// first: every seal gets its snapshot, also when seals come faster
    /// than snapshots (one was lost when only the newest was kept).
    sealed: std::collections::VecDeque<u64>,
    /// No automatic snapshot is posted for commits at or before this one
    /// (the last one posted).
    posted: u64,
}

impl kameo::Actor for SnapshotTrigger {
    type Args = SnapshotTrigger;
    type Error = kameo::error::Infallible;

    async fn on_start(mut args: SnapshotTrigger, me: ActorRef<Self>) -> Result<Self, Self::Error> {
        args.me = Some(me);
        Ok(args)
    }
}

impl SnapshotTrigger {
    /// A trigger posting to `snapshotter` per
    /// `every`; `buffered` when the log is not fsynced before acknowledging
    /// (the snapshotter then flushes it first). `last` is the newest commit
    /// at open and the segment holding it (from recovery), if any.
    pub fn new(
        snapshotter: ActorRef<Snapshotter>,
        catalog: Catalog,
        every: SnapshotEvery,
        buffered: bool,
        last: Option<(u64, u64)>,
    ) -> SnapshotTrigger {
        SnapshotTrigger {
            snapshotter,
            catalog,
            every,
            buffered,
            writer: None,
            compactor: None,
            me: None,
            outstanding: Arc::new(AtomicBool::new(false)),
            last,
            sealed: std::collections::VecDeque::new(),
            posted: 0,
        }
    }

    /// The commit an automatic snapshot is due at now, if any, and whether
    /// it is the end of a sealed segment (durable without a flush).
    fn due(&self) -> Option<(u64, bool)> {
        let (last, _) = self.last?;
        match self.every {
            SnapshotEvery::Segment => self
                .sealed
                .iter()
                .find(|&&c| c > self.posted)
                .map(|&c| (c, true)),
            SnapshotEvery::Commits(n) => {
                let base = self
                    .catalog
                    .newest()
                    .map_or(0, |s| s.commit)
                    .max(self.posted);
                (last >= base.saturating_add(n.max(1))).then_some((last, false))
            }
        }
    }

    fn maybe_post(&mut self) {
        let Some((upto, sealed)) = self.due() else {
            return;
        };
        if self.outstanding.swap(true, Ordering::AcqRel) {
            return; // one at a time; the next batch looks again
        }
        let msg = AutoSnapshot {
            upto,
            flush: if self.buffered && !sealed {
                self.writer.clone()
            } else {
                None
            },
            compactor: self.compactor.clone(),
            outstanding: Outstanding(self.outstanding.clone()),
            trigger: self.me.clone(),
        };
        if self.buffered && !sealed && msg.flush.is_none() {
            return; // not wired yet: cannot make `upto` durable (msg drop clears the flag)
        }
        match self.snapshotter.tell(msg).try_send() {
            Ok(()) => {
                self.posted = upto;
                self.sealed.retain(|&c| c > upto);
            }
            Err(e) => {
                tracing::debug!(upto, error = ?e, "automatic snapshot not posted; will retry");
            }
        }
    }
}

/// Gives a [`SnapshotTrigger`] the actors started after it.
#[derive(Clone, Debug)]
pub struct TriggerWiring {
    /// The log writer (flushed before snapshots in buffered mode).
    pub writer: ActorRef<LogWriter>,
    /// The compactor (run after each automatic snapshot).
    pub compactor: ActorRef<Compactor>,
}

impl Message<TriggerWiring> for SnapshotTrigger {
    type Reply = ();

    async fn handle(&mut self, msg: TriggerWiring, _ctx: &mut Context<Self, ()>) {
        self.writer = Some(msg.writer);
        self.compactor = Some(msg.compactor);
    }
}

/// Look again whether an automatic snapshot is due (sent by the
/// snapshotter when an [`AutoSnapshot`] is done).
#[derive(Clone, Copy, Debug)]
pub struct Recheck;

impl Message<Recheck> for SnapshotTrigger {
    type Reply = ();

    async fn handle(&mut self, _: Recheck, _ctx: &mut Context<Self, ()>) {
        self.maybe_post();
    }
}

/// Notes the batch's commits and segments (the log writer tells it of each
/// durable batch after acknowledging it), then checks whether an automatic
/// snapshot is due.
impl Message<DurableBatch> for SnapshotTrigger {
    type Reply = ();

    async fn handle(&mut self, msg: DurableBatch, _ctx: &mut Context<Self, ()>) {
        for rec in &msg.records {
            let (commit, segment) = (rec.commit, rec.location.segment);
            match self.last {
                Some((c, _)) if commit <= c => continue, // shown again after a restart
                Some((c, seg)) if seg != segment => self.sealed.push_back(c),
                _ => {}
            }
            self.last = Some((commit, segment));
        }
        self.maybe_post();
    }
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
