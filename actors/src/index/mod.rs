//! The path index: the [`SharedIndex`] readers plan over, the
//! [`IndexWriter`] the log writer puts durable batches in with, and the
//! [`IndexActor`], which answers lookups and read plans (with the
//! [`Catalog`], pinned to their files) and applies [`ForgetBefore`].
//!
//! The log writer puts every durable batch into the index through an
//! [`IndexWriter`] *before* it acknowledges the batch, so a read issued after
//! an acknowledgement is planned over an index that already holds the
//! commit. Readers plan over the [`SharedIndex`] (or send [`Plan`] and get
//! back a [`ReadPlan`]: the read root and the `(commit, location)` records
//! to replay). Reading those records and folding them
//! ([`logd_core::read::execute`]) happens in the reader's own task, so a read
//! holds the index for one lookup only and never blocks commits behind record
//! I/O or patch application.
//!
//! With a [`Catalog`] ([`IndexActor::with_catalog`]) it also answers
//! [`PlanRead`]: the plan starts from the newest snapshot at or before the
//! commit, and the reply pins that snapshot and the segment files to replay
//! ([`PinnedPlan`]). Because [`ForgetBefore`] is handled by this same actor,
//! a plan is always made over files the compactor has not yet deleted.
//!
//! # The read-shared index
//!
//! The [`PathIndex`] lives in a [`SharedIndex`] (`Arc<RwLock<PathIndex>>`).
//! Its writers are the [`IndexWriter`] (the log writer's flush, once per
//! durable batch; the actor's own [`DurableBatch`] handler, for writers wired
//! to it as their commit observer, uses the same code) and this actor's
//! [`ForgetBefore`] (the write methods are private to this module). Touched
//! paths are computed outside the write lock. Readers
//! ([`crate::read::Reader`], a transaction's `seq` check) plan directly in
//! their own task under a short read lock, without a mailbox round trip: a
//! read never blocks commits for longer than one lookup, and a commit never
//! waits behind record I/O or a fold. Because the log writer acknowledges a
//! batch only after it is in the index, a read that starts after an
//! acknowledgement plans over an index that holds it.
//!
//! This actor never writes files and never applies patches; it only opens a
//! segment file read-only the first time a plan needs it (cached in the
//! catalogue).

pub mod cache;
pub mod catalog;

use std::convert::Infallible;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use kameo::Actor;
use kameo::message::{Context, Message};
use logd_core::index::{IndexError, IndexStats, PathIndex, ReadPlan, touched_paths};
use logd_core::kpath::KPath;
use logd_core::node::Node;
use logd_core::wal::Location;
use tracing::{debug, error, instrument};

use crate::disk::record::{DurableBatch, DurableRecord};
use crate::index::cache::RecordCache;

use crate::error::Error;
use crate::index::catalog::{Catalog, PinnedPlan};

/// The path index, shared between its writers (an [`IndexWriter`], the
/// [`IndexActor`]) and readers, which plan under a short read lock. Cheap to
/// clone.
#[derive(Clone, Debug, Default)]
pub struct SharedIndex {
    inner: Arc<RwLock<PathIndex>>,
}

impl SharedIndex {
    /// Shares `index`.
    pub fn new(index: PathIndex) -> SharedIndex {
        SharedIndex {
            inner: Arc::new(RwLock::new(index)),
        }
    }

    /// The read lock. A poisoned lock means a writer (the index actor or
    /// the log writer's flush) panicked in the middle of a write: readers
    /// get [`Error::Closed`] rather than plan over a half-made change.
    fn read(&self) -> Result<RwLockReadGuard<'_, PathIndex>, Error> {
        self.inner.read().map_err(|_| Error::Closed)
    }

    /// For the writers themselves (a panicked write stopped its writer).
    fn read_own(&self) -> RwLockReadGuard<'_, PathIndex> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_own(&self) -> RwLockWriteGuard<'_, PathIndex> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`PathIndex::plan`] of `path` as of `commit`, replaying from the
    /// state at `base`; index errors are mapped by [`Error::from_index`].
    pub fn plan(&self, path: &KPath, base: u64, commit: u64) -> Result<ReadPlan, Error> {
        self.read()?
            .plan(path, base, commit)
            .map_err(|e| Error::from_index(e, commit))
    }

    /// [`PathIndex::affecting`]: the commits in `(from, to]` that can change
    /// the node at `path`, ascending. A range reaching below the commits
    /// still held (compacted away) is [`Error::Compacted`] rather than a
    /// silently shorter list.
    pub fn affecting(&self, path: &KPath, from: u64, to: u64) -> Result<Vec<u64>, Error> {
        let index = self.read()?;
        complete(&index, from, to)?;
        Ok(index.affecting(path, from, to))
    }

    /// The newest of [`PathIndex::affecting`] over several paths.
    pub fn latest_affecting(
        &self,
        paths: &[KPath],
        from: u64,
        to: u64,
    ) -> Result<Option<u64>, Error> {
        let index = self.read()?;
        complete(&index, from, to)?;
        Ok(paths
            .iter()
            .filter_map(|p| index.affecting(p, from, to).last().copied())
            .max())
    }

    /// Where the record of `commit` lives (`None` when not held).
    pub fn location(&self, commit: u64) -> Result<Option<Location>, Error> {
        Ok(self.read()?.location(commit))
    }

    /// The newest indexed commit (`None` before the first).
    pub fn last_commit(&self) -> Result<Option<u64>, Error> {
        Ok(self.read()?.last_commit())
    }
}

/// Fails with [`Error::Compacted`] when `(from, to]` reaches below the
/// commits `index` still holds: `commit` is `from`, `oldest` the smallest
/// `from` that can be answered.
fn complete(index: &PathIndex, from: u64, to: u64) -> Result<(), Error> {
    let oldest = index.complete_from();
    if from < to && from < oldest {
        return Err(Error::Compacted {
            commit: from,
            oldest,
        });
    }
    Ok(())
}

/// Puts durable batches into a [`SharedIndex`] (and a [`RecordCache`], for
/// readers). The log writer holds one and calls [`IndexWriter::absorb`] right
/// after a batch's fsync, on the thread that did the I/O, before it
/// acknowledges any record of the batch: read-after-ack holds without a
/// message round trip to the [`IndexActor`]. Get it with
/// [`IndexActor::sink`] before spawning the actor. Cheap to clone.
#[derive(Clone, Debug)]
pub struct IndexWriter {
    index: SharedIndex,
    records: Option<Arc<RecordCache>>,
}

impl IndexWriter {
    /// Indexes the records of `batch` (in commit order) that the index does
    /// not hold yet; records it already holds are skipped, so a batch shown
    /// twice (after a writer restart) is harmless. The patches are walked
    /// before the write lock is taken: readers wait for the inserts only.
    /// A record that does not continue the index is an error, and nothing
    /// from it on is inserted.
    pub fn absorb(&self, batch: &[DurableRecord]) -> Result<(), IndexError> {
        let next = self.index.read_own().next_commit();
        let touched: Vec<Vec<KPath>> = batch
            .iter()
            .map(|rec| {
                if fresh(next, rec.commit) {
                    touched_paths(&rec.entry.patch)
                } else {
                    Vec::new() // skipped below
                }
            })
            .collect();
        self.absorb_ends(batch, touched)
    }

    /// [`IndexWriter::absorb`] with the records' end paths already known
    /// (`ends[i]` is [`touched_paths`] of `batch[i]`'s patch; the log writer
    /// computes them once, when it sequences the record). Lists that do not
    /// pair up with the records are ignored and the paths computed again.
    pub fn absorb_ends(
        &self,
        batch: &[DurableRecord],
        ends: Vec<Vec<KPath>>,
    ) -> Result<(), IndexError> {
        if ends.len() != batch.len() {
            return self.absorb(batch);
        }
        let mut index = self.index.write_own();
        for (rec, paths) in batch.iter().zip(&ends) {
            // Another writer (a restart's replay) may have inserted it meanwhile.
            if !fresh(index.next_commit(), rec.commit) {
                continue;
            }
            index.insert(rec.commit, paths, rec.location)?;
            if let Some(cache) = &self.records {
                cache.insert(rec.commit, rec.entry.clone(), rec.location.len as usize);
            }
        }
        Ok(())
    }
}

/// Whether `commit` is not yet in an index whose next commit is `next`.
fn fresh(next: Option<u64>, commit: u64) -> bool {
    next.is_none_or(|n| commit >= n)
}

/// The index actor. Spawn it with `IndexActor::spawn(IndexActor::new())`
/// (kameo's `Spawn` trait), or from an index rebuilt at open.
#[derive(Actor, Debug, Default)]
pub struct IndexActor {
    index: SharedIndex,
    /// Where durable records observed from the log writer are kept for readers.
    records: Option<Arc<RecordCache>>,
    catalog: Option<Catalog>,
}

impl IndexActor {
    /// An actor over an empty index.
    pub fn new() -> IndexActor {
        IndexActor::default()
    }

    /// An actor over an existing index (e.g. rebuilt by scanning the log at open).
    pub fn with_index(index: PathIndex) -> IndexActor {
        IndexActor {
            index: SharedIndex::new(index),
            records: None,
            catalog: None,
        }
    }

    /// An actor over an existing index that also puts every record it is
    /// told about (through [`DurableBatch`]) into `records`, for readers.
    pub fn with_cache(index: PathIndex, records: Arc<RecordCache>) -> IndexActor {
        IndexActor {
            index: SharedIndex::new(index),
            records: Some(records),
            catalog: None,
        }
    }

    /// An actor over `index` whose [`PlanRead`]s start from the snapshots
    /// of `catalog`.
    pub fn with_catalog(index: PathIndex, catalog: Catalog) -> IndexActor {
        IndexActor {
            index: SharedIndex::new(index),
            records: None,
            catalog: Some(catalog),
        }
    }

    /// The same actor, also keeping every record it is told about (through
    /// [`DurableBatch`]) in `records`, for readers.
    pub fn with_records(mut self, records: Arc<RecordCache>) -> IndexActor {
        self.records = Some(records);
        self
    }

    /// The index this actor writes, for readers that plan without a mailbox
    /// round trip (take it before spawning the actor).
    pub fn shared(&self) -> SharedIndex {
        self.index.clone()
    }

    /// An [`IndexWriter`] into this actor's index and record cache, for the
    /// log writer (take it before spawning the actor, after
    /// [`IndexActor::with_records`]).
    pub fn sink(&self) -> IndexWriter {
        IndexWriter {
            index: self.index.clone(),
            records: self.records.clone(),
        }
    }
}

/// Index a batch of durable commits: `(commit, location, merged root patch)`,
/// in increasing commit order without gaps, continuing the index.
///
/// Replies with the last indexed commit. A batch that does not continue the
/// index exactly is refused whole ([`IndexError::OutOfOrder`]) and changes
/// nothing.
#[derive(Clone, Debug)]
pub struct IndexCommit {
    /// The records of the batch.
    pub records: Vec<(u64, Location, Arc<Node>)>,
}

impl Message<IndexCommit> for IndexActor {
    type Reply = Result<Option<u64>, IndexError>;

    #[instrument(name = "index.commit", skip_all, fields(records = msg.records.len()))]
    async fn handle(
        &mut self,
        msg: IndexCommit,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let touched: Vec<Vec<KPath>> = msg
            .records
            .iter()
            .map(|(_, _, patch)| touched_paths(patch))
            .collect();
        let mut index = self.index.write_own();
        // Refuse a batch that does not continue the index before touching it.
        let mut expected = index.next_commit();
        for (commit, _, _) in &msg.records {
            let want = expected.unwrap_or((*commit).max(1));
            if *commit != want {
                return Err(IndexError::OutOfOrder {
                    commit: *commit,
                    expected: want,
                });
            }
            expected = Some(want + 1);
        }
        for ((commit, location, _), paths) in msg.records.iter().zip(&touched) {
            index.insert(*commit, paths, *location)?;
        }
        let last = index.last_commit();
        debug!(?last, "indexed");
        Ok(last)
    }
}

/// Plan a read of `path` as of `commit`, replaying from the state at `base`
/// (a commit whose state the caller already holds, e.g. a checkpoint or a
/// snapshot; 0 = the empty document).
#[derive(Clone, Debug)]
pub struct PlanFrom {
    /// The path to read.
    pub path: KPath,
    /// The commit whose state the replay starts from.
    pub base: u64,
    /// The commit to read as of.
    pub commit: u64,
}

impl Message<PlanFrom> for IndexActor {
    type Reply = Result<ReadPlan, IndexError>;

    #[instrument(name = "index.plan_from", level = "debug", skip_all, fields(path = %msg.path, base = msg.base, commit = msg.commit))]
    async fn handle(
        &mut self,
        msg: PlanFrom,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.index.read_own().plan(&msg.path, msg.base, msg.commit)
    }
}

/// The log writer's durable batches. Records the index already holds (a
/// restarted writer shows its unacknowledged tail again) are skipped; a gap
/// is logged and leaves the index unchanged, so later reads fail loudly
/// instead of answering from an index that misses commits.
impl Message<DurableBatch> for IndexActor {
    type Reply = ();

    #[instrument(name = "index.committed", level = "debug", skip_all, fields(records = msg.records.len()))]
    async fn handle(&mut self, msg: DurableBatch, _ctx: &mut Context<Self, ()>) {
        if let Err(e) = self.sink().absorb(&msg.records) {
            error!(error = %e, "cannot index a durable batch");
        }
    }
}

/// Plan a read of `path` as of `commit` (replayed from the empty document
/// until snapshots exist). Replies with the plan, or
/// [`IndexError::FutureCommit`] / [`IndexError::Compacted`].
#[derive(Clone, Debug)]
pub struct Plan {
    /// The path to read.
    pub path: KPath,
    /// The commit to read as of.
    pub commit: u64,
}

impl Message<Plan> for IndexActor {
    type Reply = Result<ReadPlan, IndexError>;

    #[instrument(name = "index.plan", skip_all, fields(path = %msg.path, commit = msg.commit))]
    async fn handle(&mut self, msg: Plan, _ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let plan = self.index.read_own().plan(&msg.path, 0, msg.commit)?;
        debug!(root = %plan.root, records = plan.records.len(), "planned");
        Ok(plan)
    }
}

/// The commits in `(from, to]` that can change the node at `path`
/// ([`PathIndex::affecting`]), ascending; e.g. for a transaction's `seq`
/// check.
#[derive(Clone, Debug)]
pub struct Affecting {
    /// The path.
    pub path: KPath,
    /// Exclusive lower bound.
    pub from: u64,
    /// Inclusive upper bound.
    pub to: u64,
}

impl Message<Affecting> for IndexActor {
    type Reply = Result<Vec<u64>, Error>;

    #[instrument(name = "index.affecting", skip_all, fields(path = %msg.path, from = msg.from, to = msg.to))]
    async fn handle(
        &mut self,
        msg: Affecting,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.index.affecting(&msg.path, msg.from, msg.to)
    }
}

/// The newest indexed commit (`None` before the first), also when
/// compaction made the index forget it: the store's last commit, which
/// snapshots and compaction plan with.
#[derive(Clone, Copy, Debug)]
pub struct LastCommit;

impl Message<LastCommit> for IndexActor {
    type Reply = Option<u64>;

    async fn handle(
        &mut self,
        _msg: LastCommit,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.index.read_own().newest_commit()
    }
}

/// Where the record of `commit` lives (`None` when not held).
#[derive(Clone, Copy, Debug)]
pub struct LocationOf {
    /// The commit.
    pub commit: u64,
}

impl Message<LocationOf> for IndexActor {
    type Reply = Option<Location>;

    async fn handle(
        &mut self,
        msg: LocationOf,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.index.read_own().location(msg.commit)
    }
}

/// Approximate memory statistics of the index.
#[derive(Clone, Copy, Debug)]
pub struct Stats;

impl Message<Stats> for IndexActor {
    // `IndexStats` is not a kameo `Reply` itself; this cannot fail.
    type Reply = Result<IndexStats, Infallible>;

    async fn handle(&mut self, _msg: Stats, _ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        Ok(self.index.read_own().stats())
    }
}

/// Forget every commit before `commit` (after a snapshot covers them).
#[derive(Clone, Copy, Debug)]
pub struct ForgetBefore {
    /// The first commit to keep.
    pub commit: u64,
}

impl Message<ForgetBefore> for IndexActor {
    type Reply = Option<u64>;

    #[instrument(name = "index.forget", skip_all, fields(commit = msg.commit))]
    async fn handle(
        &mut self,
        msg: ForgetBefore,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let mut index = self.index.write_own();
        index.forget_before(msg.commit);
        index.first_commit()
    }
}

/// Plan a read of `path` as of `commit` from the newest snapshot at or
/// before it (the empty document when there is none or the actor has no
/// catalogue). Replies with the plan and what it pins, or
/// [`Error::FutureCommit`] / [`Error::Compacted`].
#[derive(Clone, Debug)]
pub struct PlanRead {
    /// The path to read.
    pub path: KPath,
    /// The commit to read as of.
    pub commit: u64,
}

impl Message<PlanRead> for IndexActor {
    type Reply = Result<PinnedPlan, Error>;

    #[instrument(name = "index.plan_read", skip_all, fields(path = %msg.path, commit = msg.commit))]
    async fn handle(
        &mut self,
        msg: PlanRead,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let horizon = self.catalog.as_ref().map_or(0, Catalog::horizon);
        let index = self.index.read_own();
        let last = index.next_commit().map_or(0, |n| n - 1);
        if msg.commit > last {
            return Err(Error::FutureCommit {
                commit: msg.commit,
                current: last,
            });
        }
        let compacted = Error::Compacted {
            commit: msg.commit,
            oldest: horizon,
        };
        if msg.commit < horizon {
            return Err(compacted);
        }
        let base = self
            .catalog
            .as_ref()
            .and_then(|c| c.newest_at_or_before(msg.commit))
            .map_or(0, |s| s.commit);
        let plan = match index.plan(&msg.path, base, msg.commit) {
            Ok(p) => p,
            // The catalogue's horizon, not the index's, is the oldest readable commit.
            Err(IndexError::Compacted { .. }) => return Err(compacted),
            Err(e) => return Err(Error::from_index(e, msg.commit)),
        };
        drop(index);
        debug!(base, root = %plan.root, records = plan.records.len(), "planned");
        match &self.catalog {
            Some(c) => c.pin(plan),
            None => Err(Error::Snapshot {
                file: std::path::PathBuf::new(),
                reason: "the index actor has no catalogue (spawn it with IndexActor::with_catalog)"
                    .into(),
            }),
        }
    }
}

/// The commits in `(from, to]` with their record locations, ascending
/// (e.g. what the snapshotter replays on top of the snapshot at `from`).
/// Fails with [`IndexError::Compacted`] when some were forgotten.
#[derive(Clone, Copy, Debug)]
pub struct Records {
    /// Exclusive lower bound.
    pub from: u64,
    /// Inclusive upper bound.
    pub to: u64,
}

impl Message<Records> for IndexActor {
    type Reply = Result<Vec<(u64, Location)>, IndexError>;

    async fn handle(&mut self, msg: Records, _ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        Ok(self
            .index
            .read_own()
            .plan(&KPath::root(), msg.from, msg.to)?
            .records)
    }
}
