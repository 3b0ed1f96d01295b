//! The log writer: the only writer of the log, and the sequencer.
//!
//! This module owns the [`LogWriter`] actor and its messages. The actor
//! validates each [`Append`]'s checks against everything sequenced before it
//! (including earlier records of the same batch, via
//! [`logd_core::conflict::ConflictIndex`]), assigns the next commit number,
//! encodes the record into the pending batch, and returns at once with a
//! delegated reply. One batch at a time is flushed: one positional write
//! per segment touched, one fsync, then, on that same thread, the batch goes
//! into the index ([`WriterArgs::with_index`]); a commit observer, if any,
//! is asked and awaited; only then is every record of the batch
//! acknowledged (group commit), and a follower, if any, is told. A watch
//! feed, if any ([`WriterArgs::with_feed`]), is told of the batch right
//! after `last_acked` moves past it and before its callers are answered.
//! Records that arrive while a batch is in flight form the next batch.
//!
//! Who runs a flush: when the batch holds an [`AppendMayLead`] record (the
//! store's commit path, through [`Appender`]), no observer must be awaited
//! and the runtime is multi-threaded, the writer hands the whole batch to
//! that record's caller ([`BatchFlush`]), which does the I/O on its own task
//! in `block_in_place` and acknowledges the others; a lone committer then
//! pays for no extra task and no wake-up after its write. Otherwise a flush
//! task does it (see `run_flush`). Either way the writer gets the file back
//! (`FlushDone`) before it starts the next flush, so flushes stay serial.
//!
//! # Files
//!
//! - this file: the actor, its state and the types its flushes share;
//! - `sequence`: conflict checks, commit numbers, the pending batch, and the
//!   messages that add to it or wait for it;
//! - `flush`: one batch's write, fsync, index insertion and
//!   acknowledgements, and what the writer does when a flush is done;
//! - `lead`: who runs a flush (a flush task, or an appender handed the
//!   batch), and [`Appender`];
//! - `restart`: the starting point from a recovery, and a restarted
//!   incarnation's rescan.
//!
//! # Flush invariants
//!
//! 1. **Only one flush owns the file.** The open segment file (`Io`) is
//!    either in the writer or in the one running flush: `maybe_flush` takes
//!    it, the flush gives it back with `FlushDone`, and no flush starts
//!    while it is out. Asserted where it comes back (`flush_done`).
//! 2. **The I/O gate is held until every ack is sent.** A flush task or a
//!    leader holds `WriterShared::gate` from before its write until its
//!    batch is settled (every caller acknowledged or failed); a restarting
//!    writer takes the gate before it rescans the files, so it never sees a
//!    batch half acknowledged. Asserted in `Flushed::settle`.
//! 3. **A batch of an older generation is refused.** Each incarnation of
//!    the writer bumps `WriterShared::generation`; `flush_blocking` refuses,
//!    under the gate, a batch an older incarnation sequenced (the files
//!    were rescanned since), and the writer ignores a `FlushDone`, `Kick`
//!    or `SyncTick` of an older one. Asserted in `flush_blocking` (the
//!    check runs under the gate).
//! 4. **`last_acked` moves before any ack.** `Flushed::settle` raises
//!    `WriterShared::last_acked` past the batch's last record before it
//!    answers any caller, so no caller holds a commit above `last_acked`
//!    (a restart does not hand it to the index again, and [`WaitAcked`]
//!    answers it at once). Asserted for each acknowledged record.
//!
//! It never acknowledges what was not durable (per `Options::durability`),
//! never reuses a commit number that was acknowledged, and after a failed
//! write or fsync it refuses every further append (fail-stop) until the store
//! is reopened. A panic is left to the supervisor, which restarts the actor
//! from the files on disk.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kameo::Actor;
use kameo::actor::{ActorRef, Recipient, WeakActorRef};
use kameo::error::ActorStopReason;
use kameo::message::{Context, Message};
use kameo::reply::{DelegatedReply, ReplySender};
use logd_core::conflict::ConflictIndex;
use logd_core::index::touched_paths;
use logd_core::wal::{self, Entry, EntryMeta, HEADER_LEN, Location, ParticipantRecord};
use logd_core::{KPath, Node};

use crate::disk::fileops::FileOps;
use crate::disk::layout;
pub use crate::disk::record::{
    CommitObserver, Committed, CommittedRecord, DurableBatch, DurableRecord,
};
use crate::error::Error;
use crate::index::IndexWriter;
use crate::open::recovery::{self, Recovered, SegmentInfo};
use crate::options::{Durability, Options};

mod flush;
mod lead;
mod restart;
mod sequence;

use flush::{run_flush, spawn_ticker};
pub use lead::{AppendMayLead, Appender, BatchFlush, DecidedOrLead};
use restart::restart_recovery;
use sequence::CONFLICT_PRUNE_MIN;
pub use sequence::{Append, AppendOutcome, Appended, Flush, Seal, WaitAcked};

enum FlushFailure {
    /// A write, sync, index or observer step failed: the writer stops
    /// accepting appends (fail-stop).
    Failed(Error),
    /// The I/O code panicked: the writer stops and is restarted from disk.
    Panicked(String),
}

impl FlushFailure {
    /// What the batch's callers are told.
    fn error(&self) -> Error {
        match self {
            FlushFailure::Failed(e) => e.clone(),
            FlushFailure::Panicked(reason) => failed_err(reason),
        }
    }
}

/// State shared by every incarnation of the writer (it survives restarts).
#[derive(Debug, Default)]
pub struct WriterShared {
    /// The last acknowledged commit (durable and observed).
    pub last_acked: Arc<AtomicU64>,
    /// Held by a flush task while it does I/O; a restarted writer takes it
    /// before it rescans the files, so it never races an old flush.
    gate: tokio::sync::Mutex<()>,
    /// Bumped by each incarnation; stale internal messages are ignored.
    generation: AtomicU64,
    /// The state found by the first recovery, consumed by the first start.
    initial: std::sync::Mutex<Option<Init>>,
}

/// How to build a [`LogWriter`] (its `Args`; cloned for every restart).
#[derive(Clone, Debug)]
pub struct WriterArgs {
    /// The store directory.
    pub dir: PathBuf,
    /// The options.
    pub options: Options,
    /// The file operations (real or fault-injecting).
    pub fs: Arc<dyn FileOps>,
    /// Who sees each durable batch before it is acknowledged (asked, and
    /// awaited: one round trip per batch).
    pub observer: Option<CommitObserver>,
    /// The index each durable batch goes into before it is acknowledged,
    /// on the thread that did the batch's I/O (no message round trip). See
    /// [`WriterArgs::with_index`].
    pub index: Option<IndexWriter>,
    /// Who is told of each durable batch after it is acknowledged (without
    /// waiting for it to be handled). See [`WriterArgs::with_follower`].
    pub follower: Option<Recipient<DurableBatch>>,
    /// Who is told of each durable batch as soon as it is visible, before
    /// its callers are acknowledged (a `tell` that never waits). See
    /// [`WriterArgs::with_feed`].
    pub feed: Option<Recipient<DurableBatch>>,
    /// State shared across restarts.
    pub shared: Arc<WriterShared>,
}

impl WriterArgs {
    /// Arguments for a writer that resumes from `recovered` (the result of
    /// [`recovery::recover`] on `dir`).
    pub fn new(
        dir: PathBuf,
        options: Options,
        fs: Arc<dyn FileOps>,
        observer: Option<CommitObserver>,
        recovered: &Recovered,
    ) -> WriterArgs {
        let shared = WriterShared {
            last_acked: Arc::new(AtomicU64::new(recovered.last_commit)),
            ..WriterShared::default()
        };
        if let Ok(mut g) = shared.initial.lock() {
            *g = Some(Init::from_recovered(recovered));
        }
        WriterArgs {
            dir,
            options,
            fs,
            observer,
            index: None,
            follower: None,
            feed: None,
            shared: Arc::new(shared),
        }
    }

    /// Puts every durable batch into `index` before acknowledging it: the
    /// store's read path sees a commit as soon as it is acknowledged, and
    /// the commit path has no hop to the index actor.
    pub fn with_index(mut self, index: IndexWriter) -> WriterArgs {
        self.index = Some(index);
        self
    }

    /// Tells `follower` of every durable batch once it is acknowledged, in
    /// commit order (for work that must not delay commits, such as
    /// deciding when to take an automatic snapshot).
    pub fn with_follower(mut self, follower: Recipient<DurableBatch>) -> WriterArgs {
        self.follower = Some(follower);
        self
    }

    /// Tells `feed` (the watch hub, `crate::watch::WatchHub`) of every
    /// durable batch, in commit order, right after it became visible
    /// (durable, indexed, `last_acked` past it) and before any of its
    /// callers is acknowledged, from the thread that flushed it: a `tell`
    /// into an unbounded mailbox, so writers never wait for it. A failed
    /// batch is never fed.
    pub fn with_feed(mut self, feed: Recipient<DurableBatch>) -> WriterArgs {
        self.feed = Some(feed);
        self
    }
}

/// The writer's starting point, derived from a recovery.
#[derive(Debug)]
struct Init {
    conflicts: ConflictIndex,
    next_commit: u64,
    active: Option<ActiveSeg>,
    /// The newest segment, when it is sealed (then `active` is `None`).
    sealed_tail: Option<SegmentInfo>,
}

/// The sequencer's view of the active segment.
#[derive(Clone, Copy, Debug)]
struct ActiveSeg {
    first: u64,
    len: u64,
    last: u64,
}

/// The open segment file, owned by whoever does I/O.
#[derive(Debug)]
struct Io {
    file: Option<OpenSeg>,
}

/// The active segment file: records end at `end`; bytes up to `filled` are
/// allocated (zeros past `end`), so an fsync after a write inside them
/// flushes data only, not the file size.
#[derive(Debug)]
struct OpenSeg {
    segment: u64,
    file: File,
    end: u64,
    filled: u64,
}

/// Bytes for one segment in a batch.
#[derive(Debug)]
struct Chunk {
    segment: u64,
    create: bool,
    offset: u64,
    bytes: Vec<u8>,
}

enum Ack {
    Append(Option<ReplySender<Result<AppendOutcome, Error>>>, Appended),
    /// An [`AppendMayLead`] record; `None` once its caller leads the flush
    /// (the leader takes its own outcome from [`BatchFlush::run`]).
    Leading(Option<ReplySender<Result<DecidedOrLead, Error>>>, Appended),
    /// A leader that could not block in place waits here for a flush task.
    Direct(
        tokio::sync::oneshot::Sender<Result<AppendOutcome, Error>>,
        Appended,
    ),
    Seal(
        Option<ReplySender<Result<Option<SegmentInfo>, Error>>>,
        Option<SegmentInfo>,
    ),
    Flush(Option<ReplySender<Result<u64, Error>>>, u64),
}

impl Ack {
    /// The commit of an appended record's ack.
    fn commit(&self) -> Option<u64> {
        match self {
            Ack::Append(_, a) | Ack::Leading(_, a) | Ack::Direct(_, a) => Some(a.commit),
            Ack::Seal(..) | Ack::Flush(..) => None,
        }
    }

    fn fail(self, e: Error) {
        match self {
            Ack::Append(Some(s), _) => s.send(Err(e)),
            Ack::Leading(Some(s), _) => s.send(Err(e)),
            Ack::Direct(s, _) => {
                let _ = s.send(Err(e));
            }
            Ack::Seal(Some(s), _) => s.send(Err(e)),
            Ack::Flush(Some(s), _) => s.send(Err(e)),
            _ => {}
        }
    }

    fn succeed(self) {
        match self {
            Ack::Append(Some(s), a) => s.send(Ok(AppendOutcome::Appended(a))),
            Ack::Leading(Some(s), a) => s.send(Ok(DecidedOrLead::Done(AppendOutcome::Appended(a)))),
            Ack::Direct(s, a) => {
                let _ = s.send(Ok(AppendOutcome::Appended(a)));
            }
            Ack::Seal(Some(s), info) => s.send(Ok(info)),
            Ack::Flush(Some(s), c) => s.send(Ok(c)),
            _ => {}
        }
    }
}

#[derive(Default)]
struct Batch {
    chunks: Vec<Chunk>,
    acks: Vec<Ack>,
    records: Vec<DurableRecord>,
    /// Where each record's patch ends (`touched_paths`, computed once when
    /// sequencing), for the index.
    ends: Vec<Vec<KPath>>,
    /// Fsync at the end even in buffered mode.
    sync: bool,
    /// Sync and close the active file at the end (a seal with no record after it).
    close_active: bool,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.acks.is_empty() && !self.sync && !self.close_active
    }

    /// Takes the reply sender of the newest [`AppendMayLead`] caller of the
    /// batch (the one most likely still running), to hand it the flush.
    fn take_leader(&mut self) -> Option<(ReplySender<Result<DecidedOrLead, Error>>, Appended)> {
        self.acks.iter_mut().rev().find_map(|a| match a {
            Ack::Leading(s @ Some(_), appended) => s.take().map(|s| (s, *appended)),
            _ => None,
        })
    }
}

/// A batch ready to be written, with everything its flush needs: run by a
/// flush task ([`run_flush`]) or by a leading appender ([`BatchFlush`]).
struct FlushJob {
    args: WriterArgs,
    io: Io,
    batch: Batch,
    sync: bool,
    generation: u64,
    me: ActorRef<LogWriter>,
    /// The writer's runtime, where a flush task is spawned.
    handle: tokio::runtime::Handle,
}

impl FlushJob {
    /// Runs the flush on a task of the writer's runtime.
    fn spawn(self) {
        let handle = self.handle.clone();
        handle.spawn(run_flush(self));
    }
}

/// The log writer actor. Spawn it through [`crate::supervisor`]; talk to it
/// with [`Append`], [`Seal`] and [`Flush`].
pub struct LogWriter {
    args: WriterArgs,
    generation: u64,
    conflicts: ConflictIndex,
    /// Prune `conflicts` when it holds more entries than this.
    conflict_prune_at: usize,
    next_commit: u64,
    active: Option<ActiveSeg>,
    /// The newest segment when it was found sealed at start and nothing
    /// was appended since (see [`Seal`]).
    sealed_tail: Option<SegmentInfo>,
    batch: Batch,
    /// `None` while a flush task owns it.
    io: Option<Io>,
    /// Set once a write or sync failed: every append is refused.
    failed: Option<String>,
    /// Written but not yet fsynced (buffered mode).
    dirty: bool,
    /// A [`Kick`] is queued.
    kick_pending: bool,
    /// Records in the last batch flushed, and how often the current batch
    /// was sent round the mailbox again to wait for them.
    last_batch: usize,
    kick_rounds: u8,
    /// The batch size a queued [`Kick`] waits for.
    kick_target: usize,
    scratch: Vec<u8>,
    /// [`WaitAcked`] callers, answered as flushes complete.
    waiters: Vec<(u64, ReplySender<Result<u64, Error>>)>,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("dir", &self.args.dir)
            .field("next_commit", &self.next_commit)
            .field("failed", &self.failed)
            .finish()
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn failed_err(reason: &str) -> Error {
    Error::WriterFailed {
        reason: reason.to_string(),
    }
}

impl Actor for LogWriter {
    type Args = WriterArgs;
    type Error = Error;

    async fn on_start(args: WriterArgs, actor_ref: ActorRef<Self>) -> Result<Self, Error> {
        let generation = args.shared.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let initial = args.shared.initial.lock().ok().and_then(|mut g| g.take());
        let init = match initial {
            Some(init) => init,
            None => restart_recovery(&args).await?,
        };
        let io = match init.active {
            Some(seg) => {
                let path = layout::segment_path(&args.dir, seg.first);
                let f = args
                    .fs
                    .open(&path)
                    .map_err(|e| Error::io("open", &path, &e))?;
                let filled = f
                    .metadata()
                    .map_err(|e| Error::io("stat", &path, &e))?
                    .len()
                    .max(seg.len);
                Io {
                    file: Some(OpenSeg {
                        segment: seg.first,
                        file: f,
                        end: seg.len,
                        filled,
                    }),
                }
            }
            None => Io { file: None },
        };
        if let Durability::Buffered { interval } = args.options.durability {
            spawn_ticker(actor_ref.clone(), generation, interval);
        }
        Ok(LogWriter {
            generation,
            conflicts: init.conflicts,
            conflict_prune_at: CONFLICT_PRUNE_MIN,
            next_commit: init.next_commit,
            active: init.active,
            sealed_tail: init.sealed_tail,
            batch: Batch::default(),
            io: Some(io),
            failed: None,
            dirty: false,
            kick_pending: false,
            last_batch: 0,
            kick_rounds: 0,
            kick_target: 0,
            scratch: Vec::new(),
            waiters: Vec::new(),
            args,
        })
    }

    async fn on_stop(
        &mut self,
        _: WeakActorRef<Self>,
        reason: ActorStopReason,
    ) -> Result<(), Error> {
        let batch = std::mem::take(&mut self.batch);
        // Stopped by the store closing: what was not written gets `Closed`
        // (a transaction deciding while `close()` runs reports that, not a
        // writer failure).
        let closed = matches!(reason, ActorStopReason::Normal);
        let reason = format!("log writer stopped: {reason:?}");
        let err = || {
            if closed {
                Error::Closed
            } else {
                failed_err(&reason)
            }
        };
        for a in batch.acks {
            a.fail(err());
        }
        for (_, w) in self.waiters.drain(..) {
            w.send(Err(err()));
        }
        Ok(())
    }
}

/// What the blocking part of a flush hands back.
struct Flushed {
    /// `None` after a panic (the file state is unknown).
    io: Option<Io>,
    result: Result<(), FlushFailure>,
    acks: Vec<Ack>,
    records: Vec<DurableRecord>,
    /// Written but not synced (buffered mode).
    needs_sync_later: bool,
}

/// The last acknowledged commit, as seen by [`WriterShared::last_acked`].
pub fn last_acked(shared: &WriterShared) -> u64 {
    shared.last_acked.load(Ordering::SeqCst)
}
