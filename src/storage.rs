//! The public store handle: [`Storage`], [`Tx`] and [`Patcher`].
//!
//! This module owns what a user holds: it takes the directory lock, runs the
//! one recovery scan, rebuilds the path index from it (from the index
//! checkpoint plus the records after it, when the checkpoint checks out;
//! see `logd_actors::recovery`), starts the actors
//! (the supervised log writer, the index, one transaction actor per
//! transaction) and hands out handles. It never writes log records itself
//! (the log writer does), never plans or folds reads (the reader does) and
//! never decides a transaction (its actor does). The one-call conveniences
//! (`patch`, `patch_if`, `get`, `put`, and `get_as` / `put_as` for serde
//! types) are one-participant transactions through the same path.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kameo::actor::{ActorRef, Spawn};
use logd_actors::catalog::Catalog;
use logd_actors::checkpoint::{CheckpointStatus, CheckpointWriter, EncodedCheckpoint, open_index};
use logd_actors::compactor::{Compact, CompactionReport, Compactor, CompactorArgs};
use logd_actors::engine::{Engine, TxIds};
use logd_actors::fileops::{FileOps, RealFs};
use logd_actors::index::IndexActor;
use logd_actors::log_writer::{Appender, DurableBatch, LogWriter, WriterArgs};
use logd_actors::reader::{Reader, RecordCache};
use logd_actors::recovery::{DirLock, Recovered, remove_leftovers};
use logd_actors::snapshotter::{
    SnapshotInfo, SnapshotTrigger, Snapshotter, SnapshotterArgs, SwitchAndSnapshot, TriggerWiring,
    UseCheckpoints,
};
use logd_actors::supervisor::{Started, Supervisor, start};
use logd_actors::transaction::{Outcome, Patch, PatchMeta, TxHandle, TxId, TxRegistry};
use logd_actors::watch::{CloseAll, WatchHub};
use logd_actors::{Error, Options};
use logd_core::{KPath, Node};

/// How many bytes of recent records the read path keeps in memory.
const RECORD_CACHE_BYTES: usize = 64 << 20;

/// Opening writes a fresh index checkpoint (in the background) when it
/// decoded at least this many records; closing advances it when at least
/// this many commits were made since it.
const CHECKPOINT_MIN_RECORDS: u64 = 1024;

/// The engine's actors, for callers (load tests, tools) that drive the
/// mailboxes directly.
#[derive(Clone, Debug)]
pub struct Actors {
    /// The supervisor of the log writer.
    pub supervisor: ActorRef<Supervisor>,
    /// The log writer: send it `Append`, `Seal`, `Flush`.
    pub log_writer: ActorRef<LogWriter>,
    /// The path index: send it `Plan`, `PlanFrom`, `PlanRead`, `Affecting`, `Stats`.
    pub index: ActorRef<IndexActor>,
    /// The snapshotter: send it `SwitchAndSnapshot`, `TakeSnapshot`.
    pub snapshotter: ActorRef<Snapshotter>,
    /// The compactor: send it `Compact`.
    pub compactor: ActorRef<Compactor>,
    /// The watch hub: send it `HubStats`.
    pub watch: ActorRef<WatchHub>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    pub(crate) options: Options,
    pub(crate) lock: Mutex<Option<DirLock>>,
    pub(crate) started: Started,
    pub(crate) index: ActorRef<IndexActor>,
    pub(crate) snapshotter: ActorRef<Snapshotter>,
    pub(crate) compactor: ActorRef<Compactor>,
    pub(crate) trigger: Option<ActorRef<SnapshotTrigger>>,
    pub(crate) engine: Arc<Engine>,
    pub(crate) registry: Arc<TxRegistry<Engine>>,
    pub(crate) tx_ids: TxIds,
    pub(crate) last_acked: Arc<AtomicU64>,
    pub(crate) closed: AtomicBool,
    /// Set by the first `close()`: turns `true` when its shutdown is done.
    pub(crate) closing: Mutex<Option<tokio::sync::watch::Receiver<bool>>>,
    pub(crate) truncated: Option<(PathBuf, u64)>,
    pub(crate) checkpoints: CheckpointWriter,
    pub(crate) records: Arc<RecordCache>,
    pub(crate) checkpoint_status: CheckpointStatus,
    /// The watch hub (see `crate::watch`), fed by the log writer.
    pub(crate) watch_hub: ActorRef<WatchHub>,
}

/// An open store. Cheap to clone; every clone is the same store.
#[derive(Clone, Debug)]
pub struct Storage {
    pub(crate) inner: Arc<Inner>,
}

/// A transaction: hand its [`Tx::id`] to the other participants, who find it
/// with [`Storage::get_tx`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Tx {
    handle: TxHandle<Engine>,
}

/// One commit, as [`Storage::history`] lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct CommitInfo {
    /// The commit number.
    pub commit: u64,
    /// The transaction that made it.
    pub tx_id: TxId,
    /// When it was made (the transaction's `when`, else the time it was sequenced).
    pub when: std::time::SystemTime,
    /// The transaction's label.
    pub label: Option<String>,
    /// Each participant's path.
    pub paths: Vec<KPath>,
}

/// One participant of a transaction; [`Patcher::commit`] contributes its
/// patch and waits for the transaction's single outcome.
#[derive(Debug)]
pub struct Patcher {
    inner: logd_actors::transaction::Patcher,
}

impl Storage {
    /// Opens (or creates) the store in `dir`: takes `<dir>/LOCK`
    /// ([`Error::Locked`] if another opener has it), recovers the log
    /// (truncating a torn tail of the last segment), rebuilds the path index
    /// and starts the actors.
    ///
    /// # Cancellation safety
    ///
    /// Not cancel-safe. Dropping the future part way releases the lock and
    /// stops what it started, but the recovery scan, once running on a
    /// blocking thread, finishes by itself (it may cut a torn tail, as any
    /// open would). Nothing is appended to the log; open again to retry.
    pub async fn open(dir: impl AsRef<Path>, options: Options) -> Result<Storage, Error> {
        let (storage, recovered) = Storage::open_with(dir, options, Arc::new(RealFs)).await?;
        // Freeing every recovered record of a long log takes a while: not
        // on the caller's time.
        tokio::task::spawn_blocking(move || drop(recovered));
        Ok(storage)
    }

    /// [`Storage::open`] with explicit file operations (fault injection);
    /// also returns what recovery found. Cancellation: as [`Storage::open`].
    pub async fn open_with(
        dir: impl AsRef<Path>,
        options: Options,
        fs: Arc<dyn FileOps>,
    ) -> Result<(Storage, Recovered), Error> {
        let dir = dir.as_ref().to_path_buf();
        let lock = DirLock::acquire_with(&dir, &options, &*fs)?;
        // The index and the snapshot trigger get their refs before they are
        // spawned: the log writer's arguments name the trigger (its
        // follower), and other actors name the index.
        let index_actor = IndexActor::prepare();
        let index = index_actor.actor_ref().clone();
        let trigger_actor = options
            .snapshot_every
            .map(|_| SnapshotTrigger::prepare_with_mailbox(kameo::mailbox::unbounded()));
        let trigger = trigger_actor.as_ref().map(|t| t.actor_ref().clone());
        let (
            recovered,
            checkpoint_status,
            path_index,
            catalog,
            skipped,
            options,
            fs,
            fresh_checkpoint,
        ) = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || {
                let (mut recovered, index, status) = open_index(&dir, &options, &*fs)?;
                // A long decode, or a damaged checkpoint: save what open
                // built for the next one.
                let ignored = matches!(status, CheckpointStatus::Ignored { .. });
                let fresh = if recovered.records.len() as u64 >= CHECKPOINT_MIN_RECORDS
                    || (ignored && recovered.last_commit > 0)
                {
                    EncodedCheckpoint::of(&dir, &index, recovered.max_tx_id)
                        .map_err(
                            |e| tracing::warn!(error = %e, "cannot encode the index checkpoint"),
                        )
                        .ok()
                } else {
                    None
                };
                let (catalog, skipped) =
                    Catalog::open_recovered(&dir, &*fs, options.umask, &recovered)?;
                // A snapshot covers any gap in the log (or open failed just
                // above): what lies below it is left over.
                remove_leftovers(&*fs, &dir, &mut recovered)?;
                Ok::<_, Error>((
                    recovered, status, index, catalog, skipped, options, fs, fresh,
                ))
            })
            .await
            .map_err(|e| Error::WriterFailed {
                reason: format!("recovery task failed: {e}"),
            })??
        };
        for s in &skipped {
            tracing::warn!(snapshot = ?s, "skipped an unusable snapshot");
        }
        let records = Arc::new(RecordCache::new(RECORD_CACHE_BYTES));
        let index_state =
            IndexActor::with_catalog(path_index, catalog.clone()).with_records(records.clone());
        let shared_index = index_state.shared();
        // Durable batches go into the index from the writer's flush itself.
        let mut args = WriterArgs::new(dir.clone(), options.clone(), fs.clone(), None, &recovered)
            .with_index(index_state.sink());
        if let Some(t) = &trigger {
            args = args.with_follower(t.clone().recipient::<DurableBatch>());
        }
        // Watches follow the durable batches from the last recovered commit.
        let watch_hub = WatchHub::spawn_with_mailbox(
            WatchHub::new(recovered.last_commit),
            kameo::mailbox::unbounded(),
        );
        args = args.with_feed(watch_hub.clone().recipient::<DurableBatch>());
        index_actor.spawn(index_state);
        let tx_ids = TxIds::open_deferred(
            dir.clone(),
            recovered.meta.clone(),
            recovered.max_tx_id,
            fs.clone(),
            options.umask,
        );
        // Transaction ids are reserved (a meta rewrite, two fsyncs) by the
        // first `new_tx`, not here: opening a store does not wait for it,
        // and a store only read from never rewrites meta.
        let snapshotter = Snapshotter::spawn(SnapshotterArgs {
            dir: dir.clone(),
            fs: fs.clone(),
            umask: options.umask,
            catalog: catalog.clone(),
            index: index.clone(),
            records: Some(records.clone()),
        });
        let checkpoints =
            open_checkpoints(&dir, &fs, &options, &checkpoint_status, fresh_checkpoint);
        snapshotter
            .tell(UseCheckpoints(checkpoints.for_background()))
            .await
            .map_err(|_| Error::Closed)?;
        // Automatic snapshots: the trigger follows the log writer's batches.
        if let (Some(t), Some(every)) = (trigger_actor, options.snapshot_every) {
            let last = recovered
                .segments
                .iter()
                .rev()
                .find(|s| s.last_commit >= s.first_commit)
                .map(|s| (s.last_commit, s.first_commit));
            t.spawn(SnapshotTrigger::new(
                snapshotter.clone(),
                catalog.clone(),
                every,
                !matches!(options.durability, logd_actors::Durability::Immediate),
                last,
            ));
        }
        let compactor = Compactor::spawn(Compactor::new(CompactorArgs {
            dir: dir.clone(),
            fs: fs.clone(),
            catalog: catalog.clone(),
            index: index.clone(),
            policy: options.compaction,
        }));
        let started = start(args).await?;
        if let Some(t) = &trigger {
            t.tell(TriggerWiring {
                writer: started.writer.clone(),
                compactor: compactor.clone(),
            })
            .await
            .map_err(|_| Error::Closed)?;
        }
        let last_acked = started.last_acked.clone();
        let records_cache = records.clone();
        let reader = Arc::new(
            Reader::new(dir.clone(), index.clone(), records, last_acked.clone())
                .with_shared_index(shared_index)
                .with_catalog(catalog),
        );
        let engine = Arc::new(Engine {
            writer: started.writer.clone(),
            appender: Appender::new(started.writer.clone(), options.commit_spin),
            index: index.clone(),
            reader,
            last_acked: last_acked.clone(),
        });
        let storage = Storage {
            inner: Arc::new(Inner {
                dir,
                options,
                lock: Mutex::new(Some(lock)),
                started,
                index,
                snapshotter,
                compactor,
                trigger,
                engine,
                registry: Arc::new(TxRegistry::default()),
                tx_ids,
                last_acked,
                closed: AtomicBool::new(false),
                closing: Mutex::new(None),
                truncated: recovered.truncated.clone(),
                checkpoints,
                records: records_cache,
                checkpoint_status,
                watch_hub,
            }),
        };
        Ok((storage, recovered))
    }

    /// What opening did with the index checkpoint (used, absent, or
    /// ignored and why).
    pub fn checkpoint_status(&self) -> &CheckpointStatus {
        &self.inner.checkpoint_status
    }

    /// Where opening cut a torn tail off the last log segment (file and
    /// offset), if it did. A torn tail is what a crash in the middle of a
    /// write leaves: in `Immediate` mode the cut record was never
    /// acknowledged, unless the medium damaged it after the fsync, which no
    /// checksum can tell from a torn write. Check this (it is also logged
    /// with `tracing::warn!`) if every acknowledged commit matters to you.
    pub fn truncated_tail(&self) -> Option<(&Path, u64)> {
        self.inner
            .truncated
            .as_ref()
            .map(|(path, offset)| (path.as_path(), *offset))
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// The last durable, indexed commit (0 for an empty store). A read
    /// issued after a commit was acknowledged sees it.
    pub fn current_commit(&self) -> u64 {
        self.inner.last_acked.load(Ordering::SeqCst)
    }

    /// The actor refs.
    pub fn actors(&self) -> Actors {
        Actors {
            supervisor: self.inner.started.supervisor.clone(),
            log_writer: self.inner.started.writer.clone(),
            index: self.inner.index.clone(),
            snapshotter: self.inner.snapshotter.clone(),
            compactor: self.inner.compactor.clone(),
            watch: self.inner.watch_hub.clone(),
        }
    }

    pub(crate) fn check_open(&self) -> Result<(), Error> {
        if self.inner.closed.load(Ordering::SeqCst) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Starts a transaction of `participants` patches. Its actor waits up to
    /// `meta.max_duration` (default [`Options::tx_timeout`]) for all of them.
    ///
    /// # Cancellation safety
    ///
    /// Cancel-safe: it never waits, so its first poll completes it; a
    /// future dropped unpolled has done nothing. (The first `new_tx` of a
    /// store reserves transaction ids with a synchronous meta rewrite.)
    pub async fn new_tx(&self, participants: usize, meta: PatchMeta) -> Result<Tx, Error> {
        self.check_open()?;
        let id = self.inner.tx_ids.next()?;
        let handle = self.inner.registry.spawn(
            self.inner.engine.clone(),
            id,
            participants,
            meta,
            self.inner.options.tx_timeout,
        )?;
        Ok(Tx { handle })
    }

    /// The live transaction `id` ([`Error::TxNotFound`] for an unknown or
    /// finished one).
    ///
    /// # Cancellation safety
    ///
    /// Cancel-safe: it never waits; dropping it has no effect.
    pub async fn get_tx(&self, id: TxId) -> Result<Tx, Error> {
        self.check_open()?;
        self.inner.registry.get(id).map(|handle| Tx { handle })
    }

    /// The node at `path` as of `commit` (`None` where it does not exist).
    /// `commit` after [`Storage::current_commit`] is [`Error::FutureCommit`];
    /// a malformed path is [`Error::InvalidPath`]. A commit below the
    /// oldest readable one is [`Error::Compacted`], whatever the caches
    /// still hold.
    ///
    /// # Cancellation safety
    ///
    /// Cancel-safe: a read changes nothing but caches, and a dropped read
    /// leaves them consistent (the materialized state is advanced between
    /// awaits, never across one).
    pub async fn read_state_at(&self, path: &str, commit: u64) -> Result<Option<Node>, Error> {
        self.check_open()?;
        let path = KPath::parse(path)?;
        self.inner.engine.reader.read(&path, commit).await
    }

    /// [`Storage::read_state_at`] with a parsed path. Cancel-safe, as it is.
    pub async fn read_path_at(&self, path: &KPath, commit: u64) -> Result<Option<Node>, Error> {
        self.check_open()?;
        self.inner.engine.reader.read(path, commit).await
    }

    /// The commits in `(from, to]` that changed `path` (or anything below or
    /// above it that reaches it), oldest first, with their time, transaction
    /// and label. `to` after the current commit is [`Error::FutureCommit`];
    /// a range reaching below the oldest retained commit, also one that a
    /// compaction running meanwhile removes, is [`Error::Compacted`]: the
    /// list is complete or it is an error.
    ///
    /// # Cancellation safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn history(&self, path: &str, from: u64, to: u64) -> Result<Vec<CommitInfo>, Error> {
        self.check_open()?;
        let path = KPath::parse(path)?;
        let current = self.current_commit();
        if to > current {
            return Err(Error::FutureCommit {
                commit: to,
                current,
            });
        }
        let commits = self
            .inner
            .index
            .ask(logd_actors::index::Affecting { path, from, to })
            .await
            .map_err(logd_actors::error::from_send)?;
        let mut out = Vec::with_capacity(commits.len());
        for commit in commits {
            let entry = self.inner.engine.reader.entry(commit).await?;
            out.push(CommitInfo {
                commit,
                tx_id: TxId(entry.tx_id),
                when: std::time::UNIX_EPOCH + std::time::Duration::from_nanos(entry.timestamp),
                label: entry.meta.label.clone(),
                paths: entry.participants.iter().map(|p| p.path.clone()).collect(),
            });
        }
        Ok(out)
    }

    /// Seals the active log segment (writers go on in a fresh one and never
    /// wait for the snapshot) and writes a snapshot of the state at the sealed
    /// segment's last commit. Concurrent calls are serialized by the
    /// snapshotter actor. `None` for an empty store. Then applies the
    /// retention policy ([`Options::compaction`]).
    ///
    /// # Cancellation safety
    ///
    /// Dropping the future does not stop a snapshot already requested: the
    /// snapshotter seals the segment and writes the snapshot to the end (a
    /// later call returns it). The retention pass that follows may not run;
    /// the next `compact()` or snapshot runs it. Calling it again is safe.
    pub async fn switch_and_snapshot(&self) -> Result<Option<SnapshotInfo>, Error> {
        self.check_open()?;
        let info = self
            .inner
            .snapshotter
            .ask(SwitchAndSnapshot {
                writer: self.inner.started.writer.clone(),
            })
            .await
            .map_err(logd_actors::error::from_send)?;
        if info.is_some() {
            self.compact().await?;
        }
        Ok(info)
    }

    /// Removes the snapshots and sealed segments the retention policy no
    /// longer needs (after the index stops pointing at them). Reads of
    /// commits that are no longer reconstructible get [`Error::Compacted`].
    ///
    /// # Cancellation safety
    ///
    /// Dropping the future does not stop a compaction already requested:
    /// the compactor carries it out to the end (each step leaves the store
    /// readable). Calling it again is safe.
    pub async fn compact(&self) -> Result<CompactionReport, Error> {
        self.check_open()?;
        self.inner
            .compactor
            .ask(Compact)
            .await
            .map_err(logd_actors::error::from_send)
    }

    /// Makes everything durable, stops the actors and releases the lock.
    /// When at least 1,024 commits were made since the index checkpoint, it
    /// is advanced first (so the next open decodes few records); background
    /// checkpoint jobs are stopped (a file write in flight is waited for).
    /// Later calls (on any clone) wait until that is done and return
    /// `Ok(())`; other operations on a closed store fail with
    /// [`Error::Closed`]. Waiting participants get [`Error::Closed`].
    ///
    /// # Cancellation safety
    ///
    /// Cancel-safe: the shutdown runs in a task of its own, so dropping the
    /// future does not interrupt it; the store is closed (and the lock
    /// released) when it ends, and a later `close()` waits for that.
    pub async fn close(&self) -> Result<(), Error> {
        // Decided under the lock, awaited after it (the guard is not `Send`).
        let (first, mut done) = {
            let mut closing = self.inner.closing.lock().map_err(|_| Error::Closed)?;
            match &*closing {
                Some(rx) => (None, rx.clone()),
                None => {
                    let (tx, rx) = tokio::sync::watch::channel(false);
                    *closing = Some(rx.clone());
                    self.inner.closed.store(true, Ordering::SeqCst);
                    let me = self.clone();
                    let task = tokio::spawn(async move {
                        let r = me.shut_down().await;
                        let _ = tx.send(true);
                        r
                    });
                    (Some(task), rx)
                }
            }
        };
        if let Some(task) = first {
            return task.await.unwrap_or_else(|e| {
                Err(Error::WriterFailed {
                    reason: format!("close task failed: {e}"),
                })
            });
        }
        let _ = done.wait_for(|d| *d).await;
        Ok(())
    }

    /// The shutdown `close()` runs once, in a task of its own.
    async fn shut_down(&self) -> Result<(), Error> {
        self.inner.checkpoints.stop_background();
        self.inner.registry.close_all();
        // Every watch ends with `Closed`; new ones are refused.
        let _ = self.inner.watch_hub.ask(CloseAll).await;
        let result = self.inner.started.stop().await;
        let _ = self.inner.watch_hub.stop_gracefully().await;
        if let Some(t) = &self.inner.trigger {
            let _ = t.stop_gracefully().await;
            t.wait_for_shutdown().await;
        }
        let _ = self.inner.snapshotter.stop_gracefully().await;
        self.inner.snapshotter.wait_for_shutdown().await;
        let _ = self.inner.compactor.stop_gracefully().await;
        self.inner.compactor.wait_for_shutdown().await;
        if result.is_ok() {
            self.advance_checkpoint().await;
        }
        let _ = self.inner.index.stop_gracefully().await;
        self.inner.index.wait_for_shutdown().await;
        // Waits for a checkpoint file write in flight: none may follow the
        // unlock (background jobs stop at their next check).
        let writer = self.inner.checkpoints.clone();
        let _ = tokio::task::spawn_blocking(move || writer.close()).await;
        if let Ok(mut g) = self.inner.lock.lock() {
            g.take();
        }
        result
    }

    /// At close, once the log is flushed: advances the index checkpoint
    /// over the commits made since it, when there are enough of them to
    /// make the next open noticeably slower (their records mostly come from
    /// the record cache). Failures are logged; close goes on.
    async fn advance_checkpoint(&self) {
        let writer = self.inner.checkpoints.clone();
        let from = writer.commit();
        let last = self.current_commit();
        if last < from.saturating_add(CHECKPOINT_MIN_RECORDS) {
            return;
        }
        let locs = match self
            .inner
            .index
            .ask(logd_actors::index::Records { from, to: last })
            .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(checkpoint = from, error = ?e, "index checkpoint not advanced at close");
                return;
            }
        };
        let dir = self.inner.dir.clone();
        let cache = self.inner.records.clone();
        let done = tokio::task::spawn_blocking(move || {
            let records = logd_actors::checkpoint::read_records(&dir, &locs, &|c| cache.get(c))?;
            writer.advance(&records)
        })
        .await;
        match done {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "index checkpoint not advanced at close"),
            Err(e) => tracing::warn!(error = %e, "index checkpoint task failed at close"),
        }
    }

    /// Whether [`Storage::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }
}

/// The checkpoint writer of a store just opened; writes `fresh` (the
/// index open built, when it decoded many records) in the background.
fn open_checkpoints(
    dir: &Path,
    fs: &Arc<dyn FileOps>,
    options: &Options,
    status: &CheckpointStatus,
    fresh: Option<EncodedCheckpoint>,
) -> CheckpointWriter {
    let on_disk = match *status {
        CheckpointStatus::Used { commit } => Some(commit),
        _ => None,
    };
    let writer = CheckpointWriter::new(dir, fs.clone(), options.umask, on_disk);
    if let Some(encoded) = fresh {
        // Not waited for: closing the store makes it stop.
        writer.submit(move |w| {
            if let Err(e) = w.write_encoded(&encoded) {
                tracing::warn!(error = %e, "cannot write the index checkpoint");
            }
        });
    }
    writer
}

/// Why a one-call write or a typed read or write failed
/// ([`Storage::put`], [`Storage::get_as`], [`Storage::put_as`]).
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] Error),
    /// The value could not be converted (to or from `T`, or written as data).
    #[error("cannot convert: {0}")]
    Convert(String),
}

/// One-call conveniences: each is one transaction of one participant,
/// through the same path as [`Storage::new_tx`] and [`Patcher::commit`].
impl Storage {
    async fn commit_one(&self, patch: Patch, meta: PatchMeta) -> Result<Outcome, Error> {
        let tx = self.new_tx(1, meta).await?;
        let mut patcher = tx.new_patcher(patch).await?;
        patcher.commit().await
    }

    /// Commits `data` at `path` as a patch (merged into what is there, as
    /// `docs/TONY.md` says).
    pub async fn patch(&self, path: &str, data: Node) -> Result<Outcome, Error> {
        let patch = Patch::new(KPath::parse(path)?, data);
        self.commit_one(patch, PatchMeta::default()).await
    }

    /// [`Storage::patch`] when the state at `match_path` matches `pattern`;
    /// else [`Outcome::NotMatched`] and nothing is written.
    pub async fn patch_if(
        &self,
        path: &str,
        data: Node,
        match_path: &str,
        pattern: Node,
    ) -> Result<Outcome, Error> {
        let patch =
            Patch::new(KPath::parse(path)?, data).with_match(KPath::parse(match_path)?, pattern);
        self.commit_one(patch, PatchMeta::default()).await
    }

    /// The node at `path` at the current commit (`None` where absent).
    pub async fn get(&self, path: &str) -> Result<Option<Node>, Error> {
        self.read_state_at(path, self.current_commit()).await
    }

    /// Replaces the value at `path` with `data` (nothing of the old value
    /// is merged in): commits the patch from the current value to `data`
    /// ([`crate::diff::diff`]) with `seq` at the commit it read, so a
    /// concurrent change to the path gives [`Outcome::Stale`], not a mix.
    /// Op tags in `data` are stored as data where a value is replaced;
    /// over an absent node they are [`ValueError::Convert`].
    pub async fn put(&self, path: &str, data: Node) -> Result<Outcome, ValueError> {
        let kpath = KPath::parse(path).map_err(Error::from)?;
        let read = self.current_commit();
        let current = self.read_path_at(&kpath, read).await?;
        let patch = crate::diff::diff(current.as_ref(), Some(&data))
            .map_err(|e| ValueError::Convert(e.to_string()))?;
        let meta = PatchMeta {
            seq: Some(read),
            ..PatchMeta::default()
        };
        Ok(self.commit_one(Patch::new(kpath, patch), meta).await?)
    }

    /// The subtree at `path` as a `T` (`None` where absent), through its
    /// JSON form ([`crate::json`]).
    pub async fn get_as<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, ValueError> {
        let Some(node) = self.get(path).await? else {
            return Ok(None);
        };
        let json = crate::json::to_string(&node).map_err(|e| ValueError::Convert(e.to_string()))?;
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| ValueError::Convert(e.to_string()))
    }

    /// Writes `value` at `path`, replacing what is there ([`Storage::put`]),
    /// through its JSON form (struct fields keep their order).
    pub async fn put_as<T: serde::Serialize + ?Sized>(
        &self,
        path: &str,
        value: &T,
    ) -> Result<Outcome, ValueError> {
        let json = serde_json::to_string(value).map_err(|e| ValueError::Convert(e.to_string()))?;
        let node = crate::json::from_str(&json).map_err(|e| ValueError::Convert(e.to_string()))?;
        self.put(path, node).await
    }
}

impl Tx {
    /// The transaction's id, to hand to the other participants.
    pub fn id(&self) -> TxId {
        self.handle.id()
    }

    /// Registers a participant with its patch; past the transaction's
    /// participant count this is [`Error::TxFull`]; a patch nested deeper
    /// than [`logd_core::node::MAX_NESTING`] (path plus data) is
    /// [`Error::TooDeep`].
    ///
    /// # Cancellation safety
    ///
    /// Cancel-safe: it never waits. Dropping the returned [`Patcher`]
    /// without committing withdraws the participant: the others get
    /// [`Error::TxAbandoned`] at once.
    pub async fn new_patcher(&self, patch: Patch) -> Result<Patcher, Error> {
        Ok(Patcher {
            inner: self.handle.new_patcher(patch)?,
        })
    }
}

impl Patcher {
    /// Contributes this participant's patch and waits until every
    /// participant has arrived and the transaction is decided; every
    /// participant gets the same result, and calling it again returns it
    /// again.
    ///
    /// A merged record that would not apply to the state it is sequenced on
    /// is refused with [`Error::Patch`] for every participant (nothing is
    /// written); a store closing meanwhile answers [`Error::Closed`].
    ///
    /// # Cancellation safety
    ///
    /// Dropping the future never loses the outcome. Once polled, the patch
    /// is handed over and may be committed; calling `commit()` again waits
    /// for (or, for a one-participant transaction, resumes) the same
    /// decision and returns its outcome, never `TxNotFound`. Dropping the
    /// `Patcher` itself while a one-participant decision is unfinished
    /// abandons it wherever it is: the commit may or may not have happened
    /// (read to find out).
    pub async fn commit(&mut self) -> Result<Outcome, Error> {
        self.inner.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use logd_actors::log_writer::{Append, AppendOutcome};
    use logd_core::wal::EntryMeta;

    fn rec(i: i64) -> Append {
        Append {
            patch: Node::object([("a", Node::int(i))]),
            tx_id: i as u64,
            participants: vec![],
            meta: EntryMeta::default(),
            checks: vec![],
            read_commit: 0,
            when: None,
        }
    }

    #[tokio::test]
    async fn open_append_close_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path(), Options::default()).await.unwrap();
        assert_eq!(s.current_commit(), 0);
        assert!(matches!(
            Storage::open(dir.path(), Options::default()).await,
            Err(Error::Locked { .. })
        ));
        let w = s.actors().log_writer;
        for i in 1..=3 {
            let out = w.ask(rec(i)).await.unwrap();
            assert!(matches!(out, AppendOutcome::Appended(a) if a.commit == i as u64));
            assert_eq!(s.current_commit(), i as u64);
        }
        assert_eq!(s.read_state_at("a", 2).await, Ok(Some(Node::int(2))));
        s.clone().close().await.unwrap();
        assert!(s.is_closed());
        s.close().await.unwrap();
        let s = Storage::open(dir.path(), Options::default()).await.unwrap();
        assert_eq!(s.current_commit(), 3);
        assert_eq!(s.truncated_tail(), None);
        assert_eq!(s.read_state_at("a", 3).await, Ok(Some(Node::int(3))));
        s.close().await.unwrap();
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct User {
        name: String,
        born: i64,
        langs: Vec<String>,
    }

    #[tokio::test]
    async fn one_call_patch_get_put_and_typed_values() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path(), Options::default()).await.unwrap();
        let t = |x: &str| logd_core::text::parse(x).unwrap();
        let o = s.patch("u.ada", t("{name: Ada, extra: 1}")).await.unwrap();
        assert_eq!(o, Outcome::Committed { commit: 1 });
        assert_eq!(
            s.get("u.ada.name").await.unwrap(),
            Some(Node::string("Ada"))
        );
        let o = s.patch_if(
            "u.ada.born",
            Node::int(1815),
            "u.ada.name",
            Node::string("Grace"),
        );
        assert_eq!(o.await.unwrap(), Outcome::NotMatched);
        let o = s.patch_if(
            "u.ada.born",
            Node::int(1815),
            "u.ada.name",
            Node::string("Ada"),
        );
        assert_eq!(o.await.unwrap(), Outcome::Committed { commit: 2 });
        // put_as replaces: `extra` is gone; fields keep their order.
        let ada = User {
            name: "Ada Lovelace".into(),
            born: 1815,
            langs: vec!["en".into(), "fr".into()],
        };
        s.put_as("u.ada", &ada).await.unwrap();
        assert_eq!(
            s.get("u.ada").await.unwrap().unwrap().to_string(),
            "{name: \"Ada Lovelace\", born: 1815, langs: [en, fr]}"
        );
        assert_eq!(s.get_as::<User>("u.ada").await.unwrap(), Some(ada));
        assert_eq!(s.get_as::<User>("u.nobody").await.unwrap(), None);
        // A shape that does not fit T, and a bad path, are typed errors.
        assert!(matches!(
            s.get_as::<User>("u.ada.name").await,
            Err(ValueError::Convert(_))
        ));
        assert!(matches!(
            s.put("a..b", Node::null()).await,
            Err(ValueError::Store(Error::InvalidPath { .. }))
        ));
        s.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_cut_tail_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path(), Options::default()).await.unwrap();
        let w = s.actors().log_writer;
        let mut ends = Vec::new();
        for i in 1..=3 {
            match w.ask(rec(i)).await.unwrap() {
                AppendOutcome::Appended(a) => ends.push(a.location),
                other => panic!("{other:?}"),
            }
        }
        s.close().await.unwrap();
        // Cut the last record in half, as a crash mid-write would.
        let last = ends[2];
        let seg = logd_actors::recovery::segment_path(dir.path(), last.segment);
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(last.offset + u64::from(last.len) / 2).unwrap();
        drop(f);
        let s = Storage::open(dir.path(), Options::default()).await.unwrap();
        assert_eq!(s.current_commit(), 2);
        assert_eq!(s.truncated_tail(), Some((seg.as_path(), last.offset)));
        assert_eq!(s.read_state_at("a", 2).await, Ok(Some(Node::int(2))));
        s.close().await.unwrap();
    }
}
