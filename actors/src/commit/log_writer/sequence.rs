//! Sequencing: each append's checks against everything sequenced before it,
//! its commit number, its bytes in the pending batch; and the messages that
//! add to the batch ([`Append`], [`Seal`], [`Flush`]) or wait for it
//! ([`WaitAcked`]), and the `Kick` that lets queued appends join a batch.

#[allow(clippy::wildcard_imports)]
use super::*;

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
pub(super) const CONFLICT_PRUNE_MIN: usize = 1 << 16;

pub(super) enum Sequenced {
    Now(Result<AppendOutcome, Error>),
    Pending(Appended, DurableRecord, Vec<KPath>),
}

impl LogWriter {
    pub(super) fn sequence(&mut self, msg: Append) -> Sequenced {
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
        let record = DurableRecord {
            commit,
            location,
            entry: Arc::new(entry),
        };
        Sequenced::Pending(appended, record, ends)
    }

    /// Queues a [`Kick`] that flushes once the batch has `target` records
    /// (or after a few rounds); flushes now if the mailbox is full.
    pub(super) fn kick(&mut self, me: &ActorRef<LogWriter>, target: usize) {
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

    /// Adds a sequenced record to the batch and flushes it now, or once the
    /// appends already queued have joined it.
    pub(super) fn enqueue(
        &mut self,
        ack: Ack,
        record: DurableRecord,
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
