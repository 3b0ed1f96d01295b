//! The leader hand-off: who runs a batch's flush. With [`AppendMayLead`]
//! (sent by [`Appender`]), the writer hands the batch to that caller
//! ([`DecidedOrLead::Lead`] with a [`BatchFlush`]), which does the I/O on its own task;
//! otherwise a flush task does it.

use super::flush::flush_blocking;
use super::sequence::Sequenced;
#[allow(clippy::wildcard_imports)]
use super::*;

/// The reply to [`AppendMayLead`]: the append is decided, or the caller is
/// to run its batch's flush.
#[derive(Debug)]
pub enum DecidedOrLead {
    /// The append is decided: durable, or a conflict.
    Done(AppendOutcome),
    /// The caller is to write its record's batch: call [`BatchFlush::run`].
    /// Dropping it instead hands the batch back to a flush task.
    Lead(BatchFlush),
}

/// One batch's flush, handed to one of the batch's appenders to run (see
/// [`AppendMayLead`]). [`BatchFlush::run`] does it; dropping a lead that was
/// not run (its caller gave up) hands the batch to a flush task, so the
/// other records of the batch are never stranded.
pub struct BatchFlush {
    job: Option<Box<FlushJob>>,
    /// The leader's own record.
    own: Appended,
}

impl std::fmt::Debug for BatchFlush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchFlush")
            .field("own", &self.own)
            .field(
                "records",
                &self.job.as_ref().map_or(0, |j| j.batch.records.len()),
            )
            .finish()
    }
}

impl Drop for BatchFlush {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            job.spawn();
        }
    }
}

/// Whether this thread may call `block_in_place` (a multi-thread runtime's
/// worker or `block_on` thread).
pub(super) fn can_block_in_place() -> bool {
    tokio::runtime::Handle::try_current().is_ok_and(|h| {
        matches!(
            h.runtime_flavor(),
            tokio::runtime::RuntimeFlavor::MultiThread
        )
    })
}

impl BatchFlush {
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

/// The store's commit path into the log writer: sends [`AppendMayLead`]
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
        let ask = std::future::IntoFuture::into_future(self.writer.ask(AppendMayLead(msg)));
        let led = if alone && !self.spin.is_zero() && can_block_in_place() {
            spin_then_wait(ask, self.spin).await
        } else {
            ask.await
        }
        .map_err(crate::error::from_send)?;
        match led {
            DecidedOrLead::Done(outcome) => Ok(outcome),
            DecidedOrLead::Lead(lead) => lead.run().await,
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

impl LogWriter {
    /// Starts a flush if none is running and there is work: hands it to
    /// the batch's newest [`AppendMayLead`] caller when no observer must be
    /// awaited (and this is a multi-thread runtime), else to a flush task.
    pub(super) fn maybe_flush(&mut self, me: &ActorRef<LogWriter>) {
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
            Some((sender, own)) => sender.send(Ok(DecidedOrLead::Lead(BatchFlush {
                job: Some(Box::new(job)),
                own,
            }))),
            None => job.spawn(),
        }
    }
}

/// Append one record like [`Append`], offering to do its batch's I/O.
///
/// When the record's batch is ready to be written as soon as it is
/// sequenced (no flush is running), the writer hands the batch to this
/// caller ([`DecidedOrLead::Lead`]): the caller's own task then writes it, fsyncs it,
/// puts it into the index and acknowledges every record in it
/// ([`BatchFlush::run`]). That is the whole of a lone committer's path: no
/// flush task is started, and no thread wakes the caller after the fsync.
/// Otherwise the reply is [`DecidedOrLead::Done`], sent when another flush has made the
/// record durable, exactly as for [`Append`]. [`Appender::append`] does
/// both steps.
#[derive(Clone, Debug)]
pub struct AppendMayLead(pub Append);

impl Message<AppendMayLead> for LogWriter {
    type Reply = DelegatedReply<Result<DecidedOrLead, Error>>;

    async fn handle(
        &mut self,
        msg: AppendMayLead,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let (reply, sender) = ctx.reply_sender();
        match self.sequence(msg.0) {
            Sequenced::Now(r) => {
                if let Some(s) = sender {
                    s.send(r.map(DecidedOrLead::Done));
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
