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
//! acknowledged (group commit), and a follower, if any, is told. Records
//! that arrive while a batch is in flight form the next batch.
//!
//! Who runs a flush: when the batch holds an [`AppendLeading`] record (the
//! store's commit path, through [`Appender`]), no observer must be awaited
//! and the runtime is multi-threaded, the writer hands the whole batch to
//! that record's caller ([`FlushLead`]), which does the I/O on its own task
//! in `block_in_place` and acknowledges the others; a lone committer then
//! pays for no extra task and no wake-up after its write. Otherwise a flush
//! task does it (see `run_flush`). Either way the writer gets the file back
//! ([`FlushDone`]) before it starts the next flush, so flushes stay serial.
//!
//! # Flush invariants
//!
//! 1. **Only one flush owns the file.** The open segment file (`Io`) is
//!    either in the writer or in the one running flush: `maybe_flush` takes
//!    it, the flush gives it back with [`FlushDone`], and no flush starts
//!    while it is out. Asserted where it comes back (`flush_done`).
//! 2. **The I/O gate is held until every ack is sent.** A flush task or a
//!    leader holds `WriterShared::gate` from before its write until its
//!    batch is settled (every caller acknowledged or failed); a restarting
//!    writer takes the gate before it rescans the files, so it never sees a
//!    batch half acknowledged. Asserted in `Flushed::settle`.
//! 3. **A batch of an older generation is refused.** Each incarnation of
//!    the writer bumps `WriterShared::generation`; `flush_blocking` refuses,
//!    under the gate, a batch an older incarnation sequenced (the files
//!    were rescanned since), and the writer ignores a [`FlushDone`], `Kick`
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
pub use crate::disk::record::{CommitObserver, Committed, CommittedRecord};
use crate::error::Error;
use crate::index::IndexSink;
use crate::open::recovery::{self, Recovered, SegmentInfo};
use crate::options::{Durability, Options};

/// The reply to [`AppendLeading`].
#[derive(Debug)]
pub enum Led {
    /// The append is decided: durable, or a conflict.
    Done(AppendOutcome),
    /// The caller is to write its record's batch: call [`FlushLead::run`].
    /// Dropping it instead hands the batch back to a flush task.
    Lead(FlushLead),
}

/// Where an appended record went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Its commit number.
    pub commit: u64,
    /// Where it is in the log.
    pub location: Location,
}

/// The reply to an [`Append`].
#[derive(Clone, Debug, PartialEq)]
pub enum AppendOutcome {
    /// Durable (and observed by the index); this is its commit.
    Appended(Appended),
    /// A check failed: `commit`, after the read commit, affected `path`.
    /// Nothing was appended and no commit number was used.
    Conflict {
        /// The checked path.
        path: KPath,
        /// The latest commit that affected it.
        commit: u64,
    },
}

/// How many times a small batch goes round the mailbox waiting for more.
const MAX_KICK_ROUNDS: u8 = 8;

/// The conflict index keeps at least this many recent commits exactly when
/// it is pruned. A transaction checks against the commit it read right
/// before its append, a few batches back at most; a check reading further
/// back than this gets a conservative conflict and re-reads.
const CONFLICT_WINDOW: u64 = 1 << 16;

/// The conflict index is pruned (commits older than [`CONFLICT_WINDOW`]
/// forgotten) when it holds more path prefixes than this, or than twice
/// what it held after the last pruning: its memory follows the paths
/// written recently, not every path ever written.
const CONFLICT_PRUNE_MIN: usize = 1 << 16;

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
    pub index: Option<IndexSink>,
    /// Who is told of each durable batch after it is acknowledged (without
    /// waiting for it to be handled). See [`WriterArgs::with_follower`].
    pub follower: Option<Recipient<Committed>>,
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
            shared: Arc::new(shared),
        }
    }

    /// Puts every durable batch into `index` before acknowledging it: the
    /// store's read path sees a commit as soon as it is acknowledged, and
    /// the commit path has no hop to the index actor.
    pub fn with_index(mut self, index: IndexSink) -> WriterArgs {
        self.index = Some(index);
        self
    }

    /// Tells `follower` of every durable batch once it is acknowledged, in
    /// commit order (for work that must not delay commits, such as
    /// deciding when to take an automatic snapshot).
    pub fn with_follower(mut self, follower: Recipient<Committed>) -> WriterArgs {
        self.follower = Some(follower);
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

impl Init {
    /// The conflict index starts empty with its floor at the last durable
    /// commit: no record is replayed (opening a store does not pay for it).
    /// Every check made after a (re)start carries a read commit at or after
    /// that floor (transactions read at an acknowledged commit); an older
    /// one — a transaction that read before a supervised restart — is
    /// answered conservatively with a conflict at the floor, so it re-reads
    /// and retries instead of missing a change it cannot see.
    fn from_recovered(r: &Recovered) -> Init {
        Init {
            conflicts: ConflictIndex::with_base(r.last_commit),
            next_commit: r.last_commit + 1,
            // Appends never go into a sealed segment: the next one starts a
            // new segment (a seal is kept across a reopen).
            active: r.segments.last().filter(|s| !s.sealed).map(|s| ActiveSeg {
                first: s.first_commit,
                len: s.bytes,
                last: s.last_commit,
            }),
            sealed_tail: r.segments.last().filter(|s| s.sealed).cloned(),
        }
    }
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

/// How far ahead of the last record a segment is zero-filled.
const PREFILL: u64 = 1 << 20;

impl OpenSeg {
    /// Cuts the zero fill off and syncs: the segment ends at its last record.
    fn seal(self, fs: &dyn FileOps, dir: &std::path::Path) -> Result<(), Error> {
        let p = layout::segment_path(dir, self.segment);
        if self.filled > self.end {
            fs.truncate(&self.file, self.end)
                .map_err(|e| Error::io("truncate", &p, &e))?;
        }
        fs.sync(&self.file).map_err(|e| Error::io("sync", &p, &e))
    }
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
    /// An [`AppendLeading`] record; `None` once its caller leads the flush
    /// (the leader takes its own outcome from [`FlushLead::run`]).
    Leading(Option<ReplySender<Result<Led, Error>>>, Appended),
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
            Ack::Leading(Some(s), a) => s.send(Ok(Led::Done(AppendOutcome::Appended(a)))),
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
    records: Vec<CommittedRecord>,
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

    /// Takes the reply sender of the newest [`AppendLeading`] caller of the
    /// batch (the one most likely still running), to hand it the flush.
    fn take_leader(&mut self) -> Option<(ReplySender<Result<Led, Error>>, Appended)> {
        self.acks.iter_mut().rev().find_map(|a| match a {
            Ack::Leading(s @ Some(_), appended) => s.take().map(|s| (s, *appended)),
            _ => None,
        })
    }
}

/// A batch ready to be written, with everything its flush needs: run by a
/// flush task ([`run_flush`]) or by a leading appender ([`FlushLead`]).
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

/// The flush of one batch, handed to one of its appenders (see
/// [`AppendLeading`]). [`FlushLead::run`] does it; dropping a lead that was
/// not run (its caller gave up) hands the batch to a flush task, so the
/// other records of the batch are never stranded.
pub struct FlushLead {
    job: Option<Box<FlushJob>>,
    /// The leader's own record.
    own: Appended,
}

impl std::fmt::Debug for FlushLead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlushLead")
            .field("own", &self.own)
            .field(
                "records",
                &self.job.as_ref().map_or(0, |j| j.batch.records.len()),
            )
            .finish()
    }
}

impl Drop for FlushLead {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            job.spawn();
        }
    }
}

/// Whether this thread may call `block_in_place` (a multi-thread runtime's
/// worker or `block_on` thread).
fn can_block_in_place() -> bool {
    tokio::runtime::Handle::try_current().is_ok_and(|h| {
        matches!(
            h.runtime_flavor(),
            tokio::runtime::RuntimeFlavor::MultiThread
        )
    })
}

impl FlushLead {
    /// Writes and syncs the batch on this task (in `block_in_place`), puts
    /// it into the index, acknowledges every other record of it, and
    /// returns this caller's own outcome. Nothing in it awaits, so it cannot
    /// be cancelled half-way. On a runtime that cannot block in place
    /// (current-thread), a flush task of the writer's runtime does the work
    /// and this waits for it like any other appender.
    pub async fn run(mut self) -> Result<AppendOutcome, Error> {
        let Some(mut job) = self.job.take() else {
            return Err(failed_err("internal: a flush lead was run twice"));
        };
        if !can_block_in_place() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            job.batch.acks.push(Ack::Direct(tx, self.own));
            job.spawn();
            return rx
                .await
                .unwrap_or_else(|_| Err(failed_err("the log writer stopped before the flush")));
        }
        let FlushJob {
            args,
            io,
            batch,
            sync,
            generation,
            me,
            handle,
        } = *job;
        // The gate is held until the batch is acknowledged (as by a flush
        // task): a restart's rescan then sees `last_acked` past it and does
        // not show its records to the index and the follower again.
        // Only a restarting writer holds the gate outside a flush.
        let gate = args.shared.gate.try_lock();
        let flushed = match &gate {
            Ok(_) => {
                tokio::task::block_in_place(|| flush_blocking(&args, generation, io, batch, sync))
            }
            Err(_) => Flushed::refused(batch, "the log writer is restarting"),
        };
        let own = match &flushed.result {
            Ok(()) => Ok(AppendOutcome::Appended(self.own)),
            Err(f) => Err(f.error()),
        };
        let done = flushed.settle(&args, generation);
        drop(gate);
        // Sent even when the writer has nothing waiting: the wake-up then
        // overlaps this caller's next steps, and the writer is awake when
        // its next append arrives (leaving the file for the writer to pick
        // up instead made sequential commits 20% slower).
        if let Err(kameo::error::SendError::MailboxFull(done)) = me.tell(done).try_send() {
            handle.spawn(async move {
                let _ = me.tell(done).await;
            });
        }
        own
    }
}

/// The store's commit path into the log writer: sends [`AppendLeading`]
/// and runs the flush when handed the lead.
///
/// A lone committer (no other append in flight through this `Appender`)
/// also spins for the sequencer's reply, for up to `spin`, before it
/// sleeps: the writer answers in a few microseconds, but waking a sleeping
/// thread costs 25–40 µs on a small VM, a fifth of a durable commit. The
/// spin yields to the runtime between polls, and is skipped on a
/// current-thread runtime and whenever other appends are in flight (they
/// keep the writer busy, and sleeping frees the CPU for them).
#[derive(Clone, Debug)]
pub struct Appender {
    writer: ActorRef<LogWriter>,
    in_flight: Arc<AtomicUsize>,
    spin: Duration,
}

impl Appender {
    /// An appender to `writer` that spins for up to `spin` when alone
    /// (`Duration::ZERO`: never).
    pub fn new(writer: ActorRef<LogWriter>, spin: Duration) -> Appender {
        Appender {
            writer,
            in_flight: Arc::new(AtomicUsize::new(0)),
            spin,
        }
    }

    /// Appends `msg`; returns once it is durable (or decided otherwise).
    pub async fn append(&self, msg: Append) -> Result<AppendOutcome, Error> {
        let alone = self.in_flight.fetch_add(1, Ordering::AcqRel) == 0;
        let _in_flight = InFlight(&self.in_flight);
        let ask = std::future::IntoFuture::into_future(self.writer.ask(AppendLeading(msg)));
        let led = if alone && !self.spin.is_zero() && can_block_in_place() {
            spin_then_wait(ask, self.spin).await
        } else {
            ask.await
        }
        .map_err(crate::error::from_send)?;
        match led {
            Led::Done(outcome) => Ok(outcome),
            Led::Lead(lead) => lead.run().await,
        }
    }
}

/// Counts an append in flight until dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Polls `fut`, yielding to the runtime between polls, for up to `spin`;
/// then waits for it normally.
async fn spin_then_wait<F: std::future::Future>(fut: F, spin: Duration) -> F::Output {
    let until = std::time::Instant::now() + spin;
    let mut fut = std::pin::pin!(fut);
    loop {
        let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await;
        if let std::task::Poll::Ready(out) = polled {
            return out;
        }
        if std::time::Instant::now() >= until {
            return fut.await;
        }
        tokio::task::yield_now().await;
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

/// Recovery for a restarted incarnation: waits for any flush of the old one,
/// rescans the files (every frame's CRC; only the records after the last
/// acknowledged commit are decoded), and hands durable records nobody has
/// seen (written by a batch that never got acknowledged) to the index, the
/// observer and the follower.
async fn restart_recovery(args: &WriterArgs) -> Result<Init, Error> {
    let _gate = args.shared.gate.lock().await;
    let dir = args.dir.clone();
    let options = args.options.clone();
    let fs = args.fs.clone();
    // No flush runs (the gate is held): nothing is acknowledged meanwhile.
    let acked = args.shared.last_acked.load(Ordering::SeqCst);
    let recovered =
        tokio::task::spawn_blocking(move || recovery::recover_after(&dir, &options, &*fs, acked))
            .await
            .map_err(|e| failed_err(&format!("recovery task failed: {e}")))??;
    let unseen: Vec<CommittedRecord> = recovered
        .records
        .iter()
        .filter(|r| r.commit > acked)
        .cloned()
        .collect();
    if !unseen.is_empty() {
        tracing::warn!(
            from = unseen[0].commit,
            to = recovered.last_commit,
            "restart found durable records that were never acknowledged"
        );
        if let Some(index) = &args.index {
            index
                .absorb(&unseen)
                .map_err(|e| failed_err(&format!("cannot index a durable batch: {e}")))?;
        }
        if let Some(obs) = &args.observer {
            obs.ask(Committed {
                records: unseen.clone(),
            })
            .await
            .map_err(|e| failed_err(&format!("commit observer failed: {e:?}")))?;
        }
        if let Some(f) = &args.follower {
            let _ = f.tell(Committed { records: unseen }).await;
        }
    }
    args.shared
        .last_acked
        .fetch_max(recovered.last_commit, Ordering::SeqCst);
    tracing::info!(last_commit = recovered.last_commit, "log writer restarted");
    Ok(Init::from_recovered(&recovered))
}

/// Asks the writer to sync every `interval` until it answers `false` (a
/// newer incarnation runs) or stops. It holds a strong ref: a writer in
/// buffered mode lives until it is stopped (`Started::stop`).
fn spawn_ticker(me: ActorRef<LogWriter>, generation: u64, interval: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match me.ask(SyncTick { generation }).await {
                Ok(true) => {}
                _ => break,
            }
        }
    });
}

enum Sequenced {
    Now(Result<AppendOutcome, Error>),
    Pending(Appended, CommittedRecord, Vec<KPath>),
}

impl LogWriter {
    fn sequence(&mut self, msg: Append) -> Sequenced {
        if let Some(reason) = &self.failed {
            return Sequenced::Now(Err(failed_err(reason)));
        }
        let current = self.next_commit - 1;
        if msg.read_commit > current {
            return Sequenced::Now(Err(Error::FutureCommit {
                commit: msg.read_commit,
                current,
            }));
        }
        if let Some(c) = self.conflicts.check(&msg.checks, msg.read_commit) {
            return Sequenced::Now(Ok(AppendOutcome::Conflict {
                path: c.path,
                commit: c.commit,
            }));
        }
        let commit = self.next_commit;
        let entry = Entry {
            commit,
            tx_id: msg.tx_id,
            timestamp: msg.when.unwrap_or_else(now_nanos),
            patch: msg.patch,
            participants: msg.participants,
            meta: msg.meta,
        };
        self.scratch.clear();
        let frame_len = match wal::encode_entry_into(&mut self.scratch, &entry) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "record could not be encoded");
                // Not a size: say what the encoder refused.
                return Sequenced::Now(Err(Error::InvalidArgument {
                    reason: format!("the record cannot be encoded: {e}"),
                }));
            }
        };
        if frame_len as u64 > u64::from(self.args.options.max_record_bytes) {
            return Sequenced::Now(Err(Error::TooLarge {
                bytes: frame_len as u64,
                max: u64::from(self.args.options.max_record_bytes),
            }));
        }
        let ends = touched_paths(&entry.patch);
        self.conflicts.record_ends(commit, ends.iter());
        if self.conflicts.entries() > self.conflict_prune_at {
            self.conflicts
                .forget_through(commit.saturating_sub(CONFLICT_WINDOW));
            self.conflict_prune_at = (2 * self.conflicts.entries()).max(CONFLICT_PRUNE_MIN);
        }
        self.next_commit += 1;

        let roll = match self.active {
            None => true,
            Some(seg) => {
                seg.len > HEADER_LEN && seg.len + frame_len as u64 > self.args.options.segment_bytes
            }
        };
        if roll {
            self.sealed_tail = None;
            self.active = Some(ActiveSeg {
                first: commit,
                len: HEADER_LEN,
                last: commit - 1,
            });
            self.batch.close_active = false;
        }
        let Some(seg) = self.active.as_mut() else {
            return Sequenced::Now(Err(failed_err("no active segment")));
        };
        let location = Location {
            segment: seg.first,
            offset: seg.len,
            len: frame_len as u32,
        };
        match self.batch.chunks.last_mut() {
            Some(ch) if ch.segment == seg.first && !roll => {
                ch.bytes.extend_from_slice(&self.scratch)
            }
            _ => self.batch.chunks.push(Chunk {
                segment: seg.first,
                create: roll,
                offset: seg.len,
                bytes: self.scratch.clone(),
            }),
        }
        seg.len += frame_len as u64;
        seg.last = commit;
        let appended = Appended { commit, location };
        let record = CommittedRecord {
            commit,
            location,
            entry: Arc::new(entry),
        };
        Sequenced::Pending(appended, record, ends)
    }

    /// Starts a flush if none is running and there is work: hands it to
    /// the batch's newest [`AppendLeading`] caller when no observer must be
    /// awaited (and this is a multi-thread runtime), else to a flush task.
    fn maybe_flush(&mut self, me: &ActorRef<LogWriter>) {
        if self.batch.is_empty() || self.io.is_none() || self.failed.is_some() {
            return;
        }
        let Some(io) = self.io.take() else { return };
        let mut batch = std::mem::take(&mut self.batch);
        if !batch.records.is_empty() {
            self.last_batch = batch.records.len();
        }
        let sync = batch.sync || matches!(self.args.options.durability, Durability::Immediate);
        let leader = if self.args.observer.is_none() && can_block_in_place() {
            batch.take_leader()
        } else {
            None
        };
        let job = FlushJob {
            args: self.args.clone(),
            io,
            batch,
            sync,
            generation: self.generation,
            me: me.clone(),
            handle: tokio::runtime::Handle::current(),
        };
        match leader {
            // Should the caller be gone, the lead's drop spawns the flush.
            Some((sender, own)) => sender.send(Ok(Led::Lead(FlushLead {
                job: Some(Box::new(job)),
                own,
            }))),
            None => job.spawn(),
        }
    }

    /// Queues a [`Kick`] that flushes once the batch has `target` records
    /// (or after a few rounds); flushes now if the mailbox is full.
    fn kick(&mut self, me: &ActorRef<LogWriter>, target: usize) {
        let kick = Kick {
            generation: self.generation,
        };
        if me.tell(kick).try_send().is_ok() {
            self.kick_pending = true;
            self.kick_rounds = 0;
            self.kick_target = target;
        } else {
            self.maybe_flush(me);
        }
    }

    /// Handles a finished flush; returns the records to tell the follower.
    fn flush_done(
        &mut self,
        msg: FlushDone,
        me: &ActorRef<LogWriter>,
    ) -> Result<Vec<CommittedRecord>, Error> {
        if msg.generation != self.generation {
            return Ok(Vec::new());
        }
        // Invariant 1: the file was out with this flush.
        debug_assert!(
            self.io.is_none(),
            "a flush gave the segment file back while the writer held it"
        );
        self.io = msg.io;
        match msg.result {
            Ok(needs_sync) => {
                // Flushes are serial: a synced flush covers every earlier write.
                self.dirty = needs_sync;
                self.wake_waiters();
                // The appenders just acknowledged will likely append again:
                // let them join the waiting batch (one fsync for both groups).
                let waiting = self.batch.records.len();
                if waiting > 0 && !self.kick_pending {
                    self.kick(me, waiting + self.last_batch);
                } else if !self.kick_pending {
                    self.maybe_flush(me);
                }
                Ok(msg.records)
            }
            Err(FlushFailure::Failed(e)) => {
                let reason = e.to_string();
                self.fail_pending(&reason);
                self.failed = Some(reason);
                Ok(Vec::new())
            }
            Err(FlushFailure::Panicked(reason)) => {
                self.fail_pending(&reason);
                Err(failed_err(&reason))
            }
        }
    }

    /// Adds a sequenced record to the batch and flushes it now, or once the
    /// appends already queued have joined it.
    fn enqueue(
        &mut self,
        ack: Ack,
        record: CommittedRecord,
        ends: Vec<KPath>,
        me: &ActorRef<LogWriter>,
    ) {
        self.batch.ends.push(ends);
        self.batch.acks.push(ack);
        self.batch.records.push(record);
        // Let appends that are already queued join this batch: the flush
        // starts when the kick comes round the mailbox.
        if self.io.is_some() && !self.kick_pending {
            if self.batch.records.len() >= self.last_batch {
                // A lone appender: nobody to wait for.
                self.maybe_flush(me);
            } else {
                self.kick(me, self.last_batch);
            }
        }
    }

    fn fail_pending(&mut self, reason: &str) {
        let batch = std::mem::take(&mut self.batch);
        for a in batch.acks {
            a.fail(failed_err(reason));
        }
        for (_, w) in self.waiters.drain(..) {
            w.send(Err(failed_err(reason)));
        }
    }

    /// Answers the [`WaitAcked`] callers whose commit is now acknowledged.
    fn wake_waiters(&mut self) {
        if self.waiters.is_empty() {
            return;
        }
        let acked = self.args.shared.last_acked.load(Ordering::SeqCst);
        let mut i = 0;
        while i < self.waiters.len() {
            if self.waiters[i].0 <= acked {
                let (_, w) = self.waiters.swap_remove(i);
                w.send(Ok(acked));
            } else {
                i += 1;
            }
        }
    }
}

/// A flush task: waits for the I/O gate, writes and syncs the batch (in
/// `block_in_place` on the multi-thread runtime, else on the blocking
/// pool), asks the observer, acknowledges, and tells the writer.
async fn run_flush(job: FlushJob) {
    let FlushJob {
        args,
        io,
        batch,
        sync,
        generation,
        me,
        ..
    } = job;
    let gate = args.shared.gate.lock().await;
    // A syncing flush on the multi-thread runtime runs the write and fsync
    // right here, in `block_in_place` (tokio moves this worker's other
    // tasks to another thread): the commit's critical path then has no
    // hand-off to a blocking-pool thread and back, which costs most on a
    // busy machine (an A/B run of `logd bench` gave W1 3.0k vs 1.7k/s).
    // A write without fsync (buffered mode) is too short to be worth the
    // core hand-off, and the current-thread runtime (most tests) cannot
    // block in place: both go to the blocking pool. A panic is caught
    // either way.
    let mut flushed = if sync && can_block_in_place() {
        tokio::task::block_in_place(|| flush_blocking(&args, generation, io, batch, sync))
    } else {
        let a = args.clone();
        match tokio::task::spawn_blocking(move || flush_blocking(&a, generation, io, batch, sync))
            .await
        {
            Ok(flushed) => flushed,
            // Cancelled (the runtime is shutting down): the batch's callers
            // see their replies dropped, and the writer stops.
            Err(e) => {
                tracing::error!(error = %e, "log I/O task failed");
                let reason = format!("the log I/O task failed: {e}");
                let _ = me
                    .tell(FlushDone {
                        generation,
                        io: None,
                        result: Err(FlushFailure::Panicked(reason)),
                        records: Vec::new(),
                    })
                    .await;
                return;
            }
        }
    };
    if let (Ok(()), Some(obs), false) =
        (&flushed.result, &args.observer, flushed.records.is_empty())
        && let Err(e) = obs
            .ask(Committed {
                records: flushed.records.clone(),
            })
            .await
    {
        let reason = format!("commit observer failed: {e:?}");
        tracing::error!(%reason, "log writer stops");
        flushed.result = Err(FlushFailure::Failed(failed_err(&reason)));
    }
    let done = flushed.settle(&args, generation);
    // Held until here: see `FlushLead::run`.
    drop(gate);
    let _ = me.tell(done).await;
}

/// What the blocking part of a flush hands back.
struct Flushed {
    /// `None` after a panic (the file state is unknown).
    io: Option<Io>,
    result: Result<(), FlushFailure>,
    acks: Vec<Ack>,
    records: Vec<CommittedRecord>,
    /// Written but not synced (buffered mode).
    needs_sync_later: bool,
}

impl Flushed {
    /// A batch that was not written: every caller gets `reason`.
    fn refused(batch: Batch, reason: &str) -> Flushed {
        Flushed {
            io: None,
            result: Err(FlushFailure::Failed(failed_err(reason))),
            acks: batch.acks,
            records: Vec::new(),
            needs_sync_later: false,
        }
    }

    /// Acknowledges every caller (after moving `last_acked` past the batch)
    /// or fails them all, and returns the writer's [`FlushDone`].
    fn settle(self, args: &WriterArgs, generation: u64) -> FlushDone {
        // Invariant 2: the caller holds the gate (or, for a refused batch,
        // a restarting writer does).
        debug_assert!(
            args.shared.gate.try_lock().is_err(),
            "a batch is settled outside the I/O gate"
        );
        match &self.result {
            Ok(()) => {
                if let Some(last) = self.records.last() {
                    args.shared
                        .last_acked
                        .fetch_max(last.commit, Ordering::SeqCst);
                }
                let acked = args.shared.last_acked.load(Ordering::SeqCst);
                for a in self.acks {
                    // Invariant 4.
                    debug_assert!(
                        a.commit().is_none_or(|c| c <= acked),
                        "commit {:?} acknowledged above last_acked {acked}",
                        a.commit()
                    );
                    a.succeed();
                }
            }
            Err(f) => {
                let e = f.error();
                for a in self.acks {
                    a.fail(e.clone());
                }
            }
        }
        FlushDone {
            generation,
            io: self.io,
            result: self.result.map(|()| self.needs_sync_later),
            records: self.records,
        }
    }
}

/// The blocking part of a flush, for the holder of the I/O gate: writes the
/// batch, syncs it if asked and puts it into the index. A batch of an
/// older incarnation of the writer is refused (the files were rescanned
/// since), and a panic is caught.
fn flush_blocking(
    args: &WriterArgs,
    generation: u64,
    mut io: Io,
    batch: Batch,
    sync: bool,
) -> Flushed {
    // Invariant 3: decided under the gate, which a restart takes before it
    // rescans the files.
    debug_assert!(
        args.shared.gate.try_lock().is_err(),
        "a flush runs outside the I/O gate"
    );
    if args.shared.generation.load(Ordering::SeqCst) != generation {
        return Flushed::refused(batch, "the log writer restarted");
    }
    let Batch {
        chunks,
        acks,
        records,
        ends,
        close_active,
        ..
    } = batch;
    let needs_sync_later = !sync && !chunks.is_empty();
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let fs = &*args.fs;
        write_batch(
            fs,
            &args.dir,
            args.options.umask,
            &mut io,
            &chunks,
            sync,
            close_active,
        )?;
        match &args.index {
            Some(index) => index
                .absorb_ends(&records, ends)
                .map_err(|e| failed_err(&format!("cannot index a durable batch: {e}"))),
            None => Ok(()),
        }
    }));
    let (io, result) = match run {
        Ok(Ok(())) => (Some(io), Ok(())),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "log write failed; the writer stops accepting appends");
            (Some(io), Err(FlushFailure::Failed(e)))
        }
        Err(_) => {
            let msg = "the log I/O thread panicked".to_string();
            tracing::error!(reason = %msg, "log writer I/O failed");
            (None, Err(FlushFailure::Panicked(msg)))
        }
    };
    Flushed {
        io,
        result,
        acks,
        records,
        needs_sync_later,
    }
}

/// The blocking part of a flush.
fn write_batch(
    fs: &dyn FileOps,
    dir: &std::path::Path,
    umask: u32,
    io: &mut Io,
    chunks: &[Chunk],
    sync: bool,
    close_active: bool,
) -> Result<(), Error> {
    for ch in chunks {
        if ch.create {
            if let Some(old) = io.file.take() {
                old.seal(fs, dir)?;
            }
            let wdir = layout::wal_dir(dir);
            let file = layout::create_file_atomic(
                fs,
                &wdir,
                &wal::segment_file_name(ch.segment),
                &wal::encode_header(ch.segment),
                umask,
            )?;
            io.file = Some(OpenSeg {
                segment: ch.segment,
                file,
                end: HEADER_LEN,
                filled: HEADER_LEN,
            });
        }
        let path = layout::segment_path(dir, ch.segment);
        let Some(seg) = io.file.as_mut().filter(|s| s.segment == ch.segment) else {
            return Err(failed_err(
                "internal: batch names a segment that is not open",
            ));
        };
        let end = ch.offset + ch.bytes.len() as u64;
        // `>=`: the file of the segment being appended to always extends
        // past its last record; only a seal cuts it there (recovery tells a
        // sealed segment by that).
        if end >= seg.filled {
            // Zero-fill ahead so that most fsyncs need no size update.
            let target = end + PREFILL;
            let zeros = vec![0u8; (target - seg.filled) as usize];
            fs.write_at(&seg.file, &zeros, seg.filled)
                .map_err(|e| Error::io("write", &path, &e))?;
            seg.filled = target;
        }
        fs.write_at(&seg.file, &ch.bytes, ch.offset)
            .map_err(|e| Error::io("write", &path, &e))?;
        seg.end = seg.end.max(end);
    }
    if close_active {
        if let Some(old) = io.file.take() {
            old.seal(fs, dir)?;
        }
    } else if sync && let Some(seg) = &io.file {
        let p = layout::segment_path(dir, seg.segment);
        fs.sync(&seg.file).map_err(|e| Error::io("sync", &p, &e))?;
    }
    Ok(())
}

/// Append one transaction's record to the log.
#[derive(Clone, Debug)]
pub struct Append {
    /// The merged root patch.
    pub patch: Node,
    /// The transaction id.
    pub tx_id: u64,
    /// Every participant's path and match.
    pub participants: Vec<ParticipantRecord>,
    /// The transaction's metadata.
    pub meta: EntryMeta,
    /// Paths that no commit after `read_commit` may have affected.
    pub checks: Vec<KPath>,
    /// The commit the checks were evaluated at.
    pub read_commit: u64,
    /// The time to record (unix nanoseconds); `None` stamps the time of sequencing.
    pub when: Option<u64>,
}

impl Message<Append> for LogWriter {
    type Reply = DelegatedReply<Result<AppendOutcome, Error>>;

    async fn handle(&mut self, msg: Append, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let (reply, sender) = ctx.reply_sender();
        match self.sequence(msg) {
            Sequenced::Now(r) => {
                if let Some(s) = sender {
                    s.send(r);
                }
            }
            Sequenced::Pending(appended, record, ends) => {
                self.enqueue(Ack::Append(sender, appended), record, ends, ctx.actor_ref());
            }
        }
        reply
    }
}

/// Append one record like [`Append`], offering to do its batch's I/O.
///
/// When the record's batch is ready to be written as soon as it is
/// sequenced (no flush is running), the writer hands the batch to this
/// caller ([`Led::Lead`]): the caller's own task then writes it, fsyncs it,
/// puts it into the index and acknowledges every record in it
/// ([`FlushLead::run`]). That is the whole of a lone committer's path: no
/// flush task is started, and no thread wakes the caller after the fsync.
/// Otherwise the reply is [`Led::Done`], sent when another flush has made the
/// record durable, exactly as for [`Append`]. [`Appender::append`] does
/// both steps.
#[derive(Clone, Debug)]
pub struct AppendLeading(pub Append);

impl Message<AppendLeading> for LogWriter {
    type Reply = DelegatedReply<Result<Led, Error>>;

    async fn handle(
        &mut self,
        msg: AppendLeading,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let (reply, sender) = ctx.reply_sender();
        match self.sequence(msg.0) {
            Sequenced::Now(r) => {
                if let Some(s) = sender {
                    s.send(r.map(Led::Done));
                }
            }
            Sequenced::Pending(appended, record, ends) => {
                self.enqueue(
                    Ack::Leading(sender, appended),
                    record,
                    ends,
                    ctx.actor_ref(),
                );
            }
        }
        reply
    }
}

/// Seal the active segment: everything in it is made durable and the next
/// record starts a new segment. Replies with the sealed segment, or `None`
/// when the active segment holds no record. Right after a reopen of a log
/// whose newest segment was sealed (no record since), it replies with that
/// segment once more, so a snapshot a crash prevented can still be taken.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seal;

impl Message<Seal> for LogWriter {
    type Reply = DelegatedReply<Result<Option<SegmentInfo>, Error>>;

    async fn handle(&mut self, _: Seal, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let (reply, sender) = ctx.reply_sender();
        if let Some(reason) = &self.failed {
            if let Some(s) = sender {
                s.send(Err(failed_err(reason)));
            }
            return reply;
        }
        let info = match self.active.take() {
            Some(seg) if seg.last >= seg.first => Some(SegmentInfo {
                first_commit: seg.first,
                last_commit: seg.last,
                path: layout::segment_path(&self.args.dir, seg.first),
                bytes: seg.len,
                sealed: true,
            }),
            Some(empty) => {
                // An empty segment stays active.
                self.active = Some(empty);
                None
            }
            // Once, after a reopen: see `Seal`.
            None => self.sealed_tail.take(),
        };
        if info.is_some() {
            self.batch.close_active = true;
        }
        self.batch.sync = true;
        self.batch.acks.push(Ack::Seal(sender, info));
        self.maybe_flush(ctx.actor_ref());
        reply
    }
}

/// Make everything sequenced so far durable (an fsync even in buffered
/// mode). Replies with the last durable commit.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flush;

impl Message<Flush> for LogWriter {
    type Reply = DelegatedReply<Result<u64, Error>>;

    async fn handle(&mut self, _: Flush, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let (reply, sender) = ctx.reply_sender();
        if let Some(reason) = &self.failed {
            if let Some(s) = sender {
                s.send(Err(failed_err(reason)));
            }
            return reply;
        }
        self.batch.sync = true;
        self.batch
            .acks
            .push(Ack::Flush(sender, self.next_commit - 1));
        self.maybe_flush(ctx.actor_ref());
        reply
    }
}

/// Internal: a flush (task or leader) finished. `result` says, when it
/// succeeded, whether a sync is still owed (a buffered write).
struct FlushDone {
    generation: u64,
    io: Option<Io>,
    result: Result<bool, FlushFailure>,
    /// The records made durable and acknowledged, for the follower.
    records: Vec<CommittedRecord>,
}

impl Message<FlushDone> for LogWriter {
    type Reply = Result<(), Error>;

    async fn handle(
        &mut self,
        msg: FlushDone,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        // A panicked flush stops this incarnation (an error from a `tell`
        // handler); the supervisor restarts it from disk.
        let records = self.flush_done(msg, ctx.actor_ref())?;
        if let (Some(f), false) = (&self.args.follower, records.is_empty()) {
            // Flushes are serial and so is this handler: the follower sees
            // batches in commit order.
            if f.tell(Committed { records }).await.is_err() {
                tracing::debug!("the commit follower is gone");
            }
        }
        Ok(())
    }
}

/// Internal: start a flush once the appends already queued in the mailbox
/// have joined the batch.
struct Kick {
    generation: u64,
}

impl Message<Kick> for LogWriter {
    type Reply = ();

    async fn handle(&mut self, msg: Kick, ctx: &mut Context<Self, Self::Reply>) {
        if msg.generation != self.generation {
            return;
        }
        // The appenders acknowledged by the last batch are likely still on
        // their way back: go round the mailbox a few more times while the
        // batch is much smaller than the last one (bounded, so a lone
        // appender never waits).
        if self.batch.records.len() < self.kick_target && self.kick_rounds < MAX_KICK_ROUNDS {
            let kick = Kick {
                generation: self.generation,
            };
            if ctx.actor_ref().tell(kick).try_send().is_ok() {
                self.kick_rounds += 1;
                // Give the woken appenders a turn on this worker thread.
                tokio::task::yield_now().await;
                return;
            }
        }
        self.kick_pending = false;
        self.kick_rounds = 0;
        self.maybe_flush(ctx.actor_ref());
    }
}

/// Wait until `commit` is acknowledged (durable and observed by the
/// index). Replies with the last acknowledged commit once it is at least
/// `commit`: at once when it already is, else when the flush that covers it
/// is done. Fails when the writer has failed (or stops first), and with
/// [`Error::FutureCommit`] for a commit not sequenced yet, which no flush
/// would ever cover.
#[derive(Clone, Copy, Debug)]
pub struct WaitAcked {
    /// The commit to wait for.
    pub commit: u64,
}

impl Message<WaitAcked> for LogWriter {
    type Reply = DelegatedReply<Result<u64, Error>>;

    async fn handle(
        &mut self,
        msg: WaitAcked,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let (reply, sender) = ctx.reply_sender();
        let Some(sender) = sender else {
            return reply;
        };
        let acked = self.args.shared.last_acked.load(Ordering::SeqCst);
        let sequenced = self.next_commit - 1;
        if let Some(reason) = &self.failed {
            sender.send(Err(failed_err(reason)));
        } else if msg.commit <= acked {
            sender.send(Ok(acked));
        } else if msg.commit > sequenced {
            sender.send(Err(Error::FutureCommit {
                commit: msg.commit,
                current: sequenced,
            }));
        } else {
            self.waiters.push((msg.commit, sender));
        }
        reply
    }
}

/// Internal: periodic sync in buffered mode. Replies whether to keep ticking.
struct SyncTick {
    generation: u64,
}

impl Message<SyncTick> for LogWriter {
    type Reply = bool;

    async fn handle(&mut self, msg: SyncTick, ctx: &mut Context<Self, Self::Reply>) -> bool {
        if msg.generation != self.generation {
            return false;
        }
        if self.dirty && self.io.is_some() && self.failed.is_none() {
            self.dirty = false;
            self.batch.sync = true;
            self.maybe_flush(ctx.actor_ref());
        }
        true
    }
}

/// The last acknowledged commit, as seen by [`WriterShared::last_acked`].
pub fn last_acked(shared: &WriterShared) -> u64 {
    shared.last_acked.load(Ordering::SeqCst)
}
