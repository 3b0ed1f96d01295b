//! The `Transaction` actor: one per transaction. It collects the patches of
//! its `n` participants, validates them once, sends ONE append to the log
//! writer and fans the single outcome out to every participant.
//!
//! # Flow
//!
//! 1. [`TxHandle::new_patcher`] reserves one of the `n` slots (the `n+1`-th
//!    gets [`Error::TxFull`]); reserving is a lock-free counter, no round trip.
//! 2. [`Patcher::commit`] sends the participant's patch to the actor over the
//!    transaction's flume channel and waits on the transaction's outcome
//!    channel (a `watch` every participant holds, which the actor publishes
//!    once). A participant that drops its `Patcher` without committing sends
//!    `Left`: the transaction ends at once with [`Error::TxAbandoned`].
//! 3. When all `n` patches have arrived the actor, once: reads the state at
//!    the transaction's read commit, evaluates every participant's match,
//!    checks `meta.seq` (no commit after `seq` affected a patched path, else
//!    [`Outcome::Stale`]), checks that the merged record applies (else
//!    [`Error::Patch`]; see `evaluate`), merges the patches with
//!    [`logd_core::patch::merge`] (else [`Error::Conflict`]) and sends one
//!    append carrying *checks*: the paths whose state the decision depended
//!    on, each of which must not have been affected after the read commit.
//!    The sequencer validates the checks against everything sequenced before
//!    the record, so the decision is serializable: no check-then-act window.
//!    If it answers `Conflict`, the actor re-reads and re-evaluates, at most
//!    [`MAX_ATTEMPTS`] times.
//! 4. Every participant receives the same result (also one whose first
//!    `commit()` future was dropped and who calls again, and one arriving
//!    after the actor stopped); the actor stops and leaves the registry, so
//!    a later [`TxRegistry::get`] gives `TxNotFound`. A store closing
//!    ([`TxRegistry::close_all`]) publishes [`Error::Closed`].
//!
//! A transaction that is not complete within its `max_duration` fails with
//! [`Error::TxTimeout`] for the participants that arrived, writes nothing and
//! stops.
//!
//! # One participant: decided inline
//!
//! A transaction of `n = 1` has nobody to wait for, so [`TxRegistry::spawn`]
//! spawns no actor for it: its one [`Patcher::commit`] runs the very same
//! decision (the shared `decide`: match, `seq`, applicability, merge, one
//! append with checks, re-evaluation on a sequencer conflict) in the
//! caller's task, and so saves the actor, its timer, its stream and two
//! mailbox hops per commit. What callers see is unchanged: while it is live
//! the transaction is in the registry ([`TxRegistry::get`] finds it), a
//! second [`TxHandle::new_patcher`] gets [`Error::TxFull`], `commit()` is
//! idempotent, and when it ends it leaves the registry. Its deadline is
//! checked lazily instead of by a timer: a transaction whose participant has
//! not committed within `max_duration` is over: `get`, `new_patcher` and a
//! late `commit` then see [`Error::TxNotFound`], exactly as after the actor
//! of a timed-out transaction stopped, and the registry drops such entries
//! when it next sweeps (amortized over [`TxRegistry::spawn`]).
//!
//! The actor never touches files itself: reads, index lookups and the append
//! go through a [`TxBackend`] (the storage layer wires it to the Index and
//! LogWriter actors; tests use an in-memory one).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use kameo::Actor;
use kameo::actor::{ActorRef, Spawn, WeakActorRef};
use kameo::error::ActorStopReason;
use kameo::message::{Context, Message, StreamMessage};
use logd_core::patch;
use logd_core::{KPath, Key, Node, Segment, Value};
use serde::{Deserialize, Serialize};
use tracing::{debug, instrument};

use crate::error::Error;

/// How often the actor re-evaluates after the sequencer reports a conflict.
pub const MAX_ATTEMPTS: usize = 16;

/// A transaction id: unique across restarts of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TxId(pub u64);

impl std::fmt::Display for TxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tx-{}", self.0)
    }
}

/// One participant's contribution: `data` is applied at `path`; when
/// `matches` is set, the state at its path must match its pattern.
#[derive(Clone, Debug, PartialEq)]
pub struct Patch {
    /// Where the data is applied.
    pub path: KPath,
    /// The patch applied at `path`.
    pub data: Node,
    /// An optional condition: the state at this path must match this pattern.
    pub matches: Option<(KPath, Node)>,
}

impl Patch {
    /// An unconditional patch of `data` at `path`.
    pub fn new(path: KPath, data: Node) -> Patch {
        Patch {
            path,
            data,
            matches: None,
        }
    }

    /// The same patch with a condition.
    pub fn with_match(mut self, path: KPath, pattern: Node) -> Patch {
        self.matches = Some((path, pattern));
        self
    }
}

/// Transaction metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PatchMeta {
    /// A label recorded in the log entry.
    pub label: Option<String>,
    /// How long the transaction may wait for its participants
    /// (default: `Options::tx_timeout`).
    pub max_duration: Option<Duration>,
    /// Optimistic concurrency: the transaction is [`Outcome::Stale`] when any
    /// commit after `seq` affected a patched path.
    pub seq: Option<u64>,
    /// The time recorded in the log entry (default: now).
    pub when: Option<SystemTime>,
}

/// What a transaction did; every participant receives the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Committed as this commit number.
    Committed {
        /// The commit number.
        commit: u64,
    },
    /// A participant's match did not hold; nothing was written.
    NotMatched,
    /// A commit after `meta.seq` affected a patched path; nothing was written.
    Stale {
        /// The newest commit that affected a patched path.
        latest: u64,
    },
}

/// The one append a transaction sends to the sequencer.
#[derive(Clone, Debug)]
pub struct AppendRequest {
    /// The transaction id.
    pub tx_id: TxId,
    /// The merged root patch.
    pub patch: Node,
    /// Each participant's path and match, in arrival order.
    pub participants: Vec<(KPath, Option<(KPath, Node)>)>,
    /// The transaction's label.
    pub label: Option<String>,
    /// The transaction's `seq`, if any.
    pub seq: Option<u64>,
    /// The time to record.
    pub when: SystemTime,
    /// Paths that must not have been affected by any commit after `read_commit`.
    pub checks: Vec<KPath>,
    /// The commit the decision was made at.
    pub read_commit: u64,
}

/// The sequencer's answer to an [`AppendRequest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendAnswer {
    /// Durable and indexed as this commit.
    Appended {
        /// The commit number.
        commit: u64,
    },
    /// A check failed: some commit after `read_commit` affected a checked path.
    Conflict {
        /// The commit that affected it.
        commit: u64,
    },
}

/// What a transaction needs from the store. The storage layer implements it
/// over the Index and LogWriter actors.
pub trait TxBackend: Send + Sync + 'static {
    /// The last acknowledged (durable and indexed) commit.
    fn current_commit(&self) -> u64;

    /// The state at `path` as of `commit`.
    fn read(
        &self,
        path: &KPath,
        commit: u64,
    ) -> impl Future<Output = Result<Option<Node>, Error>> + Send;

    /// The newest commit in `(from, to]` that affects any of `paths`.
    fn latest_affecting(
        &self,
        paths: &[KPath],
        from: u64,
        to: u64,
    ) -> impl Future<Output = Result<Option<u64>, Error>> + Send;

    /// Waits until `commit` is acknowledged (durable and indexed), so that
    /// a re-evaluation after a sequencer conflict reads the commit that
    /// caused it instead of spinning on a stale state.
    fn wait_for(&self, commit: u64) -> impl Future<Output = Result<(), Error>> + Send;

    /// Sequences one record (validating its checks), makes it durable and indexed.
    fn append(
        &self,
        request: AppendRequest,
    ) -> impl Future<Output = Result<AppendAnswer, Error>> + Send;
}

/// What a participant sends to the transaction's actor.
enum Arrival {
    /// Its patch (it now waits for the outcome on the transaction's
    /// [`Done`] channel).
    Patch(Patch),
    /// It dropped its `Patcher` without committing: the transaction can
    /// never complete.
    Left,
}

/// The transaction's one outcome, published once by its actor (`None`
/// until decided). Every participant watches it, so a participant whose
/// `commit()` future was dropped still finds the outcome when it calls
/// again, and a participant that arrives after the actor stopped (closing,
/// timeout) finds why instead of waiting for an answer nobody sends.
type Done = tokio::sync::watch::Receiver<Option<Result<Outcome, Error>>>;

/// Waits for the outcome on `done`. A sender dropped without publishing
/// one (the actor is gone) reads as [`Error::Closed`].
async fn outcome_of(done: &mut Done) -> Result<Outcome, Error> {
    match done.wait_for(Option::is_some).await {
        Ok(v) => v.clone().unwrap_or(Err(Error::Closed)),
        Err(_) => Err(Error::Closed),
    }
}

/// The live transactions of a store, by id.
pub struct TxRegistry<B: TxBackend> {
    live: Mutex<Live<B>>,
}

/// The registry's map, and when to next sweep out expired inline
/// transactions.
struct Live<B: TxBackend> {
    map: HashMap<TxId, TxHandle<B>>,
    sweep_at: usize,
    /// Set by [`TxRegistry::close_all`]: no transaction starts after it.
    closed: bool,
}

/// The registry sweeps expired inline transactions when it holds at least
/// this many (and then twice as many as after the last sweep).
const SWEEP_MIN: usize = 1024;

impl<B: TxBackend> Default for TxRegistry<B> {
    fn default() -> Self {
        TxRegistry {
            live: Mutex::new(Live {
                map: HashMap::new(),
                sweep_at: SWEEP_MIN,
                closed: false,
            }),
        }
    }
}

impl<B: TxBackend> std::fmt::Debug for TxRegistry<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxRegistry")
            .field("live", &self.len())
            .finish()
    }
}

impl<B: TxBackend> TxRegistry<B> {
    /// The live transaction `id`, or `TxNotFound` for unknown or finished ones.
    pub fn get(&self, id: TxId) -> Result<TxHandle<B>, Error> {
        let not_found = Error::TxNotFound { id: id.0 };
        let mut live = self.live.lock().map_err(|_| not_found.clone())?;
        let handle = live.map.get(&id).ok_or(not_found.clone())?;
        if handle.expired(Instant::now()) {
            live.map.remove(&id);
            return Err(not_found);
        }
        Ok(handle.clone())
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.live
            .lock()
            .map(|mut m| {
                m.map.retain(|_, h| !h.expired(now));
                m.map.len()
            })
            .unwrap_or(0)
    }

    /// Whether no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn remove(&self, id: TxId) {
        if let Ok(mut live) = self.live.lock() {
            live.map.remove(&id);
        }
    }

    /// Ends every live transaction (the store is closing): participants
    /// waiting for others get [`Error::Closed`] now instead of at their
    /// deadline; a transaction already deciding finishes its decision
    /// first. The registry is left empty and closed: a later
    /// [`TxRegistry::spawn`] gets [`Error::Closed`] (so a `new_tx` racing
    /// `close()` either is ended here or never starts).
    pub fn close_all(&self) {
        let drained: Vec<TxHandle<B>> = match self.live.lock() {
            Ok(mut live) => {
                live.closed = true;
                live.map.drain().map(|(_, h)| h).collect()
            }
            Err(_) => return,
        };
        for handle in drained {
            if let Route::Actor { actor, .. } = &handle.route
                && actor.tell(Abort).try_send().is_err()
            {
                // A full or closed mailbox: stopping still answers the
                // waiting participants (`on_stop`).
                actor.kill();
            }
        }
    }

    /// Sweeps expired inline transactions when due. Called with the lock held.
    fn sweep(live: &mut Live<B>) {
        if live.map.len() >= live.sweep_at {
            let now = Instant::now();
            live.map.retain(|_, h| !h.expired(now));
            live.sweep_at = (2 * live.map.len()).max(SWEEP_MIN);
        }
    }

    /// Starts a new transaction with `participants` slots and registers it:
    /// an actor for several participants, the inline path (module docs)
    /// for one.
    pub fn spawn(
        self: &Arc<Self>,
        backend: Arc<B>,
        id: TxId,
        participants: usize,
        meta: PatchMeta,
        timeout: Duration,
    ) -> Result<TxHandle<B>, Error> {
        if participants == 0 {
            return Err(Error::InvalidArgument {
                reason: "a transaction needs at least one participant".into(),
            });
        }
        let deadline = meta.max_duration.unwrap_or(timeout);
        // Under the lock from the `closed` check to the insert: `close_all`
        // either sees this transaction (and aborts it) or it never starts.
        let mut live = self.live.lock().map_err(|_| Error::Closed)?;
        if live.closed {
            return Err(Error::Closed);
        }
        Self::sweep(&mut live);
        let route = if participants == 1 {
            Route::Inline(Arc::new(Inline {
                id,
                meta,
                backend,
                registry: Arc::downgrade(self),
                expires: Instant::now().checked_add(deadline),
                taken: AtomicBool::new(false),
            }))
        } else {
            let (tx, rx) = flume::unbounded();
            let (done_tx, done) = tokio::sync::watch::channel(None);
            let actor = Transaction::spawn(Transaction {
                id,
                participants,
                meta,
                backend,
                arrived: Vec::with_capacity(participants),
                registry: Arc::downgrade(self),
                timer: None,
                deadline,
                done: done_tx,
            });
            let _stream = actor.attach_stream(rx.into_stream(), (), ());
            Route::Actor {
                arrivals: tx,
                actor,
                done,
            }
        };
        let handle = TxHandle {
            id,
            participants,
            reserved: Arc::new(AtomicUsize::new(0)),
            route,
        };
        live.map.insert(id, handle.clone());
        Ok(handle)
    }
}

/// How a transaction's participants reach its decision.
enum Route<B: TxBackend> {
    /// Several participants: the transaction's actor collects them.
    Actor {
        arrivals: flume::Sender<Arrival>,
        actor: ActorRef<Transaction<B>>,
        done: Done,
    },
    /// One participant: decided in its own task.
    Inline(Arc<Inline<B>>),
}

impl<B: TxBackend> Clone for Route<B> {
    fn clone(&self) -> Self {
        match self {
            Route::Actor {
                arrivals,
                actor,
                done,
            } => Route::Actor {
                arrivals: arrivals.clone(),
                actor: actor.clone(),
                done: done.clone(),
            },
            Route::Inline(i) => Route::Inline(i.clone()),
        }
    }
}

/// A one-participant transaction, decided inline.
struct Inline<B: TxBackend> {
    id: TxId,
    meta: PatchMeta,
    backend: Arc<B>,
    registry: std::sync::Weak<TxRegistry<B>>,
    /// `None`: a deadline too far away to represent.
    expires: Option<Instant>,
    /// Set by the one `commit` that decides it.
    taken: AtomicBool,
}

impl<B: TxBackend> Inline<B> {
    fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }

    fn leave_registry(&self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.remove(self.id);
        }
    }
}

/// The inline decision, type-erased so that [`Patcher`] need not know the
/// backend.
trait InlineDecide: Send + Sync {
    fn decide_inline(self: Arc<Self>, patch: Patch) -> Decision;

    /// Its one participant dropped its `Patcher` (before committing, or
    /// with its decision unfinished): the transaction is over.
    fn abandon(&self);
}

/// An inline decision in flight, kept by its [`Patcher`] so that a dropped
/// `commit()` future does not lose it: the next `commit()` resumes it.
type Decision = Pin<Box<dyn Future<Output = Result<Outcome, Error>> + Send>>;

impl<B: TxBackend> InlineDecide for Inline<B> {
    fn decide_inline(self: Arc<Self>, patch: Patch) -> Decision {
        Box::pin(async move {
            let not_found = Error::TxNotFound { id: self.id.0 };
            // Past its deadline the transaction is over (as if its actor had
            // timed out and stopped), and it decides only once.
            if self.expired(Instant::now()) || self.taken.swap(true, Ordering::AcqRel) {
                self.leave_registry();
                return Err(not_found);
            }
            let result = decide(&*self.backend, self.id, &self.meta, &[&patch]).await;
            self.leave_registry();
            result
        })
    }

    fn abandon(&self) {
        self.taken.store(true, Ordering::Release);
        self.leave_registry();
    }
}

/// A handle on a live transaction; cheap to clone and to pass between tasks.
pub struct TxHandle<B: TxBackend> {
    id: TxId,
    participants: usize,
    reserved: Arc<AtomicUsize>,
    route: Route<B>,
}

impl<B: TxBackend> Clone for TxHandle<B> {
    fn clone(&self) -> Self {
        TxHandle {
            id: self.id,
            participants: self.participants,
            reserved: self.reserved.clone(),
            route: self.route.clone(),
        }
    }
}

impl<B: TxBackend> std::fmt::Debug for TxHandle<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxHandle")
            .field("id", &self.id)
            .field("participants", &self.participants)
            .field("inline", &matches!(self.route, Route::Inline(_)))
            .finish()
    }
}

impl<B: TxBackend> TxHandle<B> {
    /// The transaction's id.
    pub fn id(&self) -> TxId {
        self.id
    }

    /// The transaction's actor (for load tests driving it directly);
    /// `None` for a one-participant transaction, which has no actor.
    pub fn actor(&self) -> Option<&ActorRef<Transaction<B>>> {
        match &self.route {
            Route::Actor { actor, .. } => Some(actor),
            Route::Inline(_) => None,
        }
    }

    /// Whether this is an inline transaction past its deadline (an actor's
    /// transaction leaves the registry by itself).
    fn expired(&self, now: Instant) -> bool {
        match &self.route {
            Route::Inline(i) => i.expired(now),
            Route::Actor { .. } => false,
        }
    }

    /// Registers a participant; the `n+1`-th gets `TxFull`, a patch nested
    /// deeper than [`logd_core::node::MAX_NESTING`] gets
    /// [`Error::TooDeep`] (checked here, at the door, before it joins).
    pub fn new_patcher(&self, patch: Patch) -> Result<Patcher, Error> {
        check_nesting(&patch)?;
        let over = match &self.route {
            Route::Actor { arrivals, done, .. } => {
                arrivals.is_disconnected() || done.borrow().is_some()
            }
            Route::Inline(i) => i.expired(Instant::now()),
        };
        if over {
            return Err(Error::TxNotFound { id: self.id.0 });
        }
        self.reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.participants).then_some(n + 1)
            })
            .map_err(|_| Error::TxFull {
                id: self.id.0,
                participants: self.participants,
            })?;
        let to = match &self.route {
            Route::Actor { arrivals, done, .. } => To::Actor {
                arrivals: arrivals.clone(),
                done: done.clone(),
            },
            Route::Inline(i) => To::Inline {
                inline: i.clone(),
                pending: None,
            },
        };
        Ok(Patcher {
            tx: self.id,
            patch: Some(patch),
            to,
            outcome: None,
        })
    }
}

/// [`Error::TooDeep`] for a patch whose path plus data (or match path
/// plus pattern) nests deeper than the one limit.
fn check_nesting(patch: &Patch) -> Result<(), Error> {
    let max = logd_core::node::MAX_NESTING;
    let mut depth = patch.path.len().saturating_add(patch.data.nesting());
    if let Some((path, pattern)) = &patch.matches {
        depth = depth.max(path.len().saturating_add(pattern.nesting()));
    }
    if depth > max {
        return Err(Error::TooDeep { depth, max });
    }
    Ok(())
}

/// Where a participant's patch goes.
enum To {
    /// To the transaction's actor; the outcome comes on `done`.
    Actor {
        arrivals: flume::Sender<Arrival>,
        done: Done,
    },
    /// Decided in the participant's task; `pending` is the decision once
    /// started (behind a mutex only so that `Patcher` stays `Sync`; it is
    /// only ever reached through `&mut`).
    Inline {
        inline: Arc<dyn InlineDecide>,
        pending: Option<Mutex<Decision>>,
    },
}

/// One participant of a transaction.
pub struct Patcher {
    tx: TxId,
    patch: Option<Patch>,
    to: To,
    outcome: Option<Result<Outcome, Error>>,
}

impl std::fmt::Debug for Patcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Patcher")
            .field("tx", &self.tx)
            .field("patch", &self.patch)
            .field("inline", &matches!(self.to, To::Inline { .. }))
            .field("outcome", &self.outcome)
            .finish()
    }
}

impl std::fmt::Debug for Arrival {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arrival::Patch(p) => f.debug_struct("Arrival").field("path", &p.path).finish(),
            Arrival::Left => f.write_str("Left"),
        }
    }
}

impl Patcher {
    /// The transaction this participant belongs to.
    pub fn tx_id(&self) -> TxId {
        self.tx
    }

    /// Contributes this participant's patch and waits until every participant
    /// has arrived and the transaction has been decided. Every participant
    /// gets the same result; calling it again returns that result again.
    ///
    /// # Cancellation safety
    ///
    /// Cancel-safe in the sense that matters: dropping the future never
    /// loses the outcome. Once polled, the patch has been handed over (to
    /// the transaction's actor, or to a decision this `Patcher` keeps); a
    /// dropped future may leave it committed, and calling `commit()` again
    /// waits for (or resumes) that same decision and returns its outcome.
    /// Dropping the `Patcher` itself before its first `commit()` withdraws
    /// the participant: the others get [`Error::TxAbandoned`] at once. A
    /// `Patcher` dropped with a one-participant decision unfinished
    /// abandons that decision wherever it is: its append may or may not
    /// have reached the log (check with a read).
    pub async fn commit(&mut self) -> Result<Outcome, Error> {
        if let Some(done) = &self.outcome {
            return done.clone();
        }
        let result = match &mut self.to {
            To::Inline { inline, pending } => {
                if pending.is_none() {
                    match self.patch.take() {
                        Some(patch) => {
                            *pending = Some(Mutex::new(inline.clone().decide_inline(patch)));
                        }
                        None => return Err(Error::TxNotFound { id: self.tx.0 }),
                    }
                }
                match pending.as_mut().map(Mutex::get_mut) {
                    Some(Ok(decision)) => decision.as_mut().await,
                    // A poisoned lock: a poll of the decision panicked.
                    _ => Err(Error::Closed),
                }
            }
            To::Actor { arrivals, done } => {
                if let Some(patch) = self.patch.take() {
                    // A failed send means the actor is gone; `done` says why.
                    let _ = arrivals.send(Arrival::Patch(patch));
                }
                outcome_of(done).await
            }
        };
        if let To::Inline { pending, .. } = &mut self.to {
            *pending = None;
        }
        self.outcome = Some(result.clone());
        result
    }
}

impl Drop for Patcher {
    fn drop(&mut self) {
        if self.outcome.is_some() {
            return;
        }
        match &self.to {
            To::Actor { arrivals, .. } => {
                if self.patch.is_some() {
                    let _ = arrivals.send(Arrival::Left);
                }
            }
            To::Inline { inline, .. } => inline.abandon(),
        }
    }
}

/// The actor of one transaction.
pub struct Transaction<B: TxBackend> {
    id: TxId,
    participants: usize,
    meta: PatchMeta,
    backend: Arc<B>,
    arrived: Vec<Patch>,
    registry: std::sync::Weak<TxRegistry<B>>,
    timer: Option<tokio::task::JoinHandle<()>>,
    deadline: Duration,
    /// Where the one outcome is published.
    done: tokio::sync::watch::Sender<Option<Result<Outcome, Error>>>,
}

impl<B: TxBackend> Actor for Transaction<B> {
    type Args = Self;
    type Error = std::convert::Infallible;

    async fn on_start(mut state: Self, actor_ref: ActorRef<Self>) -> Result<Self, Self::Error> {
        let weak = actor_ref.downgrade();
        let deadline = state.deadline;
        state.timer = Some(tokio::spawn(async move {
            tokio::time::sleep(deadline).await;
            if let Some(actor) = weak.upgrade() {
                let _ = actor.tell(Expire).await;
            }
        }));
        Ok(state)
    }

    async fn on_stop(
        &mut self,
        _actor_ref: WeakActorRef<Self>,
        _reason: ActorStopReason,
    ) -> Result<(), Self::Error> {
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
        if let Some(registry) = self.registry.upgrade() {
            registry.remove(self.id);
        }
        // Anyone still waiting (the actor stopped without deciding: killed
        // at close) hears about it.
        self.arrived.clear();
        self.publish(Err(Error::Closed));
        Ok(())
    }
}

/// The transaction's deadline passed.
#[derive(Debug)]
pub struct Expire;

impl<B: TxBackend> Message<Expire> for Transaction<B> {
    type Reply = ();

    #[instrument(level = "debug", skip_all, fields(tx = %self.id))]
    async fn handle(&mut self, _: Expire, ctx: &mut Context<Self, ()>) {
        debug!(arrived = self.arrived.len(), "transaction timed out");
        let err = Error::TxTimeout {
            id: self.id.0,
            after: self.deadline,
        };
        self.finish(Err(err), ctx);
    }
}

/// The store is closing: end the transaction with [`Error::Closed`].
#[derive(Debug)]
pub struct Abort;

impl<B: TxBackend> Message<Abort> for Transaction<B> {
    type Reply = ();

    async fn handle(&mut self, _: Abort, ctx: &mut Context<Self, ()>) {
        debug!(tx = %self.id, arrived = self.arrived.len(), "transaction aborted: store closing");
        self.finish(Err(Error::Closed), ctx);
    }
}

impl<B: TxBackend> Message<StreamMessage<Arrival, (), ()>> for Transaction<B> {
    type Reply = ();

    #[instrument(level = "debug", skip_all, fields(tx = %self.id))]
    async fn handle(&mut self, msg: StreamMessage<Arrival, (), ()>, ctx: &mut Context<Self, ()>) {
        let StreamMessage::Next(arrival) = msg else {
            return;
        };
        if self.done.borrow().is_some() {
            return;
        }
        match arrival {
            Arrival::Patch(p) => self.arrived.push(p),
            Arrival::Left => {
                debug!(arrived = self.arrived.len(), "a participant left");
                self.finish(Err(Error::TxAbandoned { id: self.id.0 }), ctx);
                return;
            }
        }
        if self.arrived.len() < self.participants {
            return;
        }
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
        let patches: Vec<&Patch> = self.arrived.iter().collect();
        let result = decide(&*self.backend, self.id, &self.meta, &patches).await;
        self.finish(result, ctx);
    }
}

impl<B: TxBackend> Transaction<B> {
    /// Publishes `result` to every participant (those that arrived and any
    /// that come later) and stops the actor.
    fn finish(&mut self, result: Result<Outcome, Error>, ctx: &mut Context<Self, ()>) {
        self.arrived.clear();
        self.publish(result);
        if let Some(registry) = self.registry.upgrade() {
            registry.remove(self.id);
        }
        ctx.stop();
    }

    /// Publishes `result` unless an outcome was already published.
    fn publish(&self, result: Result<Outcome, Error>) {
        self.done.send_if_modified(|v| {
            if v.is_some() {
                return false;
            }
            *v = Some(result);
            true
        });
    }
}

/// Evaluates, merges and appends, retrying on sequencer conflicts: the one
/// decision of a transaction, whether its actor or (for one participant)
/// the participant's own task runs it.
async fn decide<B: TxBackend>(
    backend: &B,
    id: TxId,
    meta: &PatchMeta,
    patches: &[&Patch],
) -> Result<Outcome, Error> {
    let parts: Vec<(&KPath, &Node)> = patches.iter().map(|p| (&p.path, &p.data)).collect();
    let merged = patch::merge_refs(&parts).map_err(|e| Error::Conflict {
        path: String::new(),
        commit: 0,
        reason: e.to_string(),
    })?;
    // The first attempt moves the merged patch into its append; a retry
    // (after a sequencer conflict, rare) merges again rather than every
    // commit paying for a copy.
    let mut merged = Some(merged);
    let checks = checks_for(patches, meta.seq.is_some());
    // Most commits depend on no state (no match, no `seq`, no op that can
    // fail): they skip the evaluation, and the evaluation's future is boxed
    // only when it runs, so the commit's own future stays small.
    let stateless = meta.seq.is_none()
        && patches
            .iter()
            .all(|p| p.matches.is_none() && !needs_state(p));
    let mut last_conflict = 0;
    for attempt in 0..MAX_ATTEMPTS {
        let merged = match merged.take() {
            Some(m) => m,
            None => patch::merge_refs(&parts).map_err(|e| Error::Conflict {
                path: String::new(),
                commit: 0,
                reason: e.to_string(),
            })?,
        };
        let read_commit = backend.current_commit();
        if !stateless
            && let Some(outcome) =
                Box::pin(evaluate(backend, meta, patches, &merged, read_commit)).await?
        {
            return Ok(outcome);
        }
        // Boxed: the append's future is the largest part of a commit's;
        // inline, it would push every commit's future past the size at
        // which malloc consolidates its free lists.
        let answer = Box::pin(
            backend.append(AppendRequest {
                tx_id: id,
                patch: merged,
                participants: patches
                    .iter()
                    .map(|p| (p.path.clone(), p.matches.clone()))
                    .collect(),
                label: meta.label.clone(),
                seq: meta.seq,
                when: meta.when.unwrap_or_else(SystemTime::now),
                checks: checks.clone(),
                read_commit,
            }),
        )
        .await?;
        match answer {
            AppendAnswer::Appended { commit } => return Ok(Outcome::Committed { commit }),
            AppendAnswer::Conflict { commit } => {
                debug!(attempt, commit, "sequencer conflict; re-evaluating");
                last_conflict = commit;
                backend.wait_for(commit).await?;
            }
        }
    }
    Err(Error::Conflict {
        path: String::new(),
        commit: last_conflict,
        reason: format!("still conflicting after {MAX_ATTEMPTS} attempts"),
    })
}

/// Evaluates matches, `seq` and patch applicability at `read_commit`.
/// `Some(outcome)` ends the transaction without writing; `None` means
/// the append may go ahead.
///
/// Applicability is that of the *merged* record, the one thing stored: a
/// participant's patch below a dense index `x[i]` is stored inside an
/// `!arraydiff`, where `!delete v` compares `v` with the element (at a
/// field it ignores `v`), so checking each participant's patch at its own
/// path would let through records that cannot be replayed. The merged
/// patch is applied where it starts to depend on the state: at each
/// participant's *anchor* (its path cut before the first dense index; the
/// merge builds plain objects above it, which apply to any state).
async fn evaluate<B: TxBackend>(
    backend: &B,
    meta: &PatchMeta,
    patches: &[&Patch],
    merged: &Node,
    read_commit: u64,
) -> Result<Option<Outcome>, Error> {
    for p in patches {
        if let Some((path, pattern)) = &p.matches {
            let state = backend.read(path, read_commit).await?;
            if !patch::matches(state.as_ref(), pattern)? {
                return Ok(Some(Outcome::NotMatched));
            }
        }
    }
    if let Some(seq) = meta.seq {
        let paths: Vec<KPath> = patches.iter().map(|p| p.path.clone()).collect();
        if seq < read_commit
            && let Some(latest) = backend.latest_affecting(&paths, seq, read_commit).await?
        {
            return Ok(Some(Outcome::Stale { latest }));
        }
    }
    for p in patches {
        if needs_state(p) {
            check_index_in_range(backend, &p.path, read_commit).await?;
        }
    }
    for anchor in anchors(patches) {
        let (at, sub) = match sub_patch(merged, &anchor) {
            Some(sub) => (anchor, sub),
            // Not the merge's shape (cannot happen): check it all.
            None => (KPath::root(), merged),
        };
        let state = backend.read(&at, read_commit).await?;
        patch::apply(state.as_ref(), sub)?;
    }
    Ok(None)
}

/// The path above the first dense index of `path` (all of it when it has
/// none): where the merged patch of a participant at `path` stops being
/// plain objects.
fn anchor(path: &KPath) -> KPath {
    let segs = path.segments();
    let end = segs
        .iter()
        .position(|s| matches!(s, Segment::Index(_)))
        .unwrap_or(segs.len());
    KPath::from_segments(segs[..end].to_vec())
}

/// The anchors of the participants whose patch needs the state, without
/// those below another one (whose check covers them).
fn anchors(patches: &[&Patch]) -> Vec<KPath> {
    let mut all: Vec<KPath> = patches
        .iter()
        .filter(|p| needs_state(p))
        .map(|p| anchor(&p.path))
        .collect();
    all.sort();
    let mut out: Vec<KPath> = Vec::with_capacity(all.len());
    for a in all {
        // In path order, everything below a path follows it directly.
        if !out.last().is_some_and(|last| last.is_prefix_of(&a)) {
            out.push(a);
        }
    }
    out
}

/// The part of the merged root patch at `path` (fields and sparse indices
/// only), following the plain objects the merge built.
fn sub_patch<'a>(merged: &'a Node, path: &KPath) -> Option<&'a Node> {
    let mut node = merged;
    for seg in path.segments() {
        if node.tag.is_some() {
            return None;
        }
        let Value::Object(entries) = &node.value else {
            return None;
        };
        node = entries.iter().find_map(|(k, v)| {
            let hit = match (k, seg) {
                (Key::Field(f), Segment::Field(g)) => f == g,
                (Key::Index(i), Segment::Sparse(j)) => i == j,
                _ => false,
            };
            hit.then_some(v)
        })?;
    }
    Some(node)
}

/// Whether applying this participant's patch depends on the current state:
/// it holds an op that can fail, or its path steps through a dense index
/// (the merge turns `x[i]` into an `!arraydiff`, which needs an array there).
fn needs_state(p: &Patch) -> bool {
    can_fail(&p.data)
        || p.path
            .segments()
            .iter()
            .any(|s| matches!(s, Segment::Index(_)))
}

/// Whether applying `patch` can fail on some document: some op in some tag
/// chain other than `!delete`, `!nullify` and `!pass` (which ignore their
/// value) could refuse it.
fn can_fail(patch: &Node) -> bool {
    let mut chain = patch.tag.clone();
    while let Some(tag) = chain {
        let (head, rest) = tag.split_first();
        if patch::is_patch_op(head.name) {
            return !matches!(head.name, "delete" | "nullify" | "pass");
        }
        chain = rest;
    }
    match &patch.value {
        Value::Object(kv) => kv.iter().any(|(_, v)| can_fail(v)),
        Value::Array(items) => items.iter().any(can_fail),
        _ => false,
    }
}

/// For a path through a dense index `x[i]`, the array at `x` must exist and
/// be long enough, or the merged `!arraydiff` would not apply.
async fn check_index_in_range<B: TxBackend>(
    backend: &B,
    path: &KPath,
    read_commit: u64,
) -> Result<(), Error> {
    let segs = path.segments();
    for (depth, seg) in segs.iter().enumerate() {
        if let Segment::Index(i) = seg {
            let parent = KPath::from_segments(segs[..depth].to_vec());
            let state = backend.read(&parent, read_commit).await?;
            let len = match state.as_ref().map(|n| &n.value) {
                Some(Value::Array(items)) => items.len(),
                _ => {
                    return Err(Error::Patch(patch::PatchError::TypeMismatch {
                        op: "arraydiff".into(),
                        expected: "an array".into(),
                        found: state.map_or("absent".into(), |n| n.kind().to_string()),
                        at: parent,
                    }));
                }
            };
            if (*i as usize) >= len {
                return Err(Error::Patch(patch::PatchError::BadArgument {
                    op: "arraydiff".into(),
                    reason: format!("index {i} is beyond the array's length {len}"),
                    at: parent,
                }));
            }
        }
    }
    Ok(())
}

/// The paths a transaction's decision depends on: every match path; every
/// patched path whose patch needs the current state; and, with `seq`, every
/// patched path. Blind writes of data that always applies need no check.
fn checks_for(patches: &[&Patch], seq: bool) -> Vec<KPath> {
    let mut checks = Vec::new();
    for p in patches {
        if let Some((path, _)) = &p.matches {
            checks.push(path.clone());
        }
        if seq || needs_state(p) {
            checks.push(p.path.clone());
            // The merged record is checked from the anchor down.
            checks.push(anchor(&p.path));
            // A dense index also depends on the array's length.
            if let Some(parent) = p.path.parent()
                && matches!(p.path.last(), Some(Segment::Index(_)))
            {
                checks.push(parent);
            }
        }
    }
    checks.sort();
    checks.dedup();
    checks
}
