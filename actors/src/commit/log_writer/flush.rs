//! One batch's flush: the blocking write and fsync, the index, the
//! acknowledgements (`Flushed::settle`), the writer's bookkeeping when a
//! flush is done ([`FlushDone`]), and the periodic sync of buffered mode.
//! The invariants of the module docs of [`super`] are asserted here.

use super::lead::can_block_in_place;
#[allow(clippy::wildcard_imports)]
use super::*;

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

/// Asks the writer to sync every `interval` until it answers `false` (a
/// newer incarnation runs) or stops. It holds a strong ref: a writer in
/// buffered mode lives until it is stopped (`Started::stop`).
pub(super) fn spawn_ticker(me: ActorRef<LogWriter>, generation: u64, interval: Duration) {
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

impl LogWriter {
    /// Handles a finished flush; returns the records to tell the follower.
    fn flush_done(
        &mut self,
        msg: FlushDone,
        me: &ActorRef<LogWriter>,
    ) -> Result<Vec<DurableRecord>, Error> {
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
pub(super) async fn run_flush(job: FlushJob) {
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
            .ask(DurableBatch {
                records: flushed.records.clone(),
            })
            .await
    {
        let reason = format!("commit observer failed: {e:?}");
        tracing::error!(%reason, "log writer stops");
        flushed.result = Err(FlushFailure::Failed(failed_err(&reason)));
    }
    let done = flushed.settle(&args, generation);
    // Held until here: see `BatchFlush::run`.
    drop(gate);
    let _ = me.tell(done).await;
}

impl Flushed {
    /// A batch that was not written: every caller gets `reason`.
    pub(super) fn refused(batch: Batch, reason: &str) -> Flushed {
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
    pub(super) fn settle(self, args: &WriterArgs, generation: u64) -> FlushDone {
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
                if let (Some(feed), false) = (&args.feed, self.records.is_empty()) {
                    let batch = DurableBatch {
                        records: self.records.clone(),
                    };
                    if feed.tell(batch).try_send().is_err() {
                        tracing::debug!("the watch feed is gone");
                    }
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
pub(super) fn flush_blocking(
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
            let file = layout::create_new_file(
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

/// Internal: a flush (task or leader) finished. `result` says, when it
/// succeeded, whether a sync is still owed (a buffered write).
pub(super) struct FlushDone {
    generation: u64,
    io: Option<Io>,
    result: Result<bool, FlushFailure>,
    /// The records made durable and acknowledged, for the follower.
    records: Vec<DurableRecord>,
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
            if f.tell(DurableBatch { records }).await.is_err() {
                tracing::debug!("the commit follower is gone");
            }
        }
        Ok(())
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
