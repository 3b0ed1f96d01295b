//! The index actor: owns the [`PathIndex`] (and, later, the snapshot
//! catalogue) and answers lookups.
//!
//! The log writer sends [`IndexCommit`] for every batch *before* it
//! acknowledges the batch, so a read issued after an acknowledgement is
//! planned over an index that already holds the commit. Readers send [`Plan`]
//! and get back a [`ReadPlan`]: the read root and the `(commit, location)`
//! records to replay. Reading those records and folding them
//! ([`logd_core::read::execute`]) happens in the reader's own task, so a read
//! holds the actor for one lookup only and never blocks commits behind record
//! I/O or patch application.
//!
//! With a [`Catalog`] ([`IndexActor::with_catalog`]) it also answers
//! [`PlanRead`]: the plan starts from the newest snapshot at or before the
//! commit, and the reply pins that snapshot and the segment files to replay
//! ([`BasePlan`]). Because [`ForgetBefore`] is handled by this same actor,
//! a plan is always made over files the compactor has not yet deleted.
//!
//! This actor never writes files and never applies patches; it only opens a
//! segment file read-only the first time a plan needs it (cached in the
//! catalogue).

use std::convert::Infallible;
use std::sync::Arc;

use kameo::Actor;
use kameo::message::{Context, Message};
use logd_core::index::{IndexError, IndexStats, PathIndex, ReadPlan, touched_paths};
use logd_core::kpath::KPath;
use logd_core::node::Node;
use logd_core::wal::Location;
use tracing::{debug, error, instrument};

use crate::log_writer::Committed;
use crate::reader::RecordCache;

use crate::catalog::{BasePlan, Catalog};
use crate::error::Error;

/// The index actor. Spawn it with `IndexActor::spawn(IndexActor::new())`
/// (kameo's `Spawn` trait), or from an index rebuilt at open.
#[derive(Actor, Debug, Default)]
pub struct IndexActor {
    index: PathIndex,
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
            index,
            records: None,
            catalog: None,
        }
    }

    /// An actor over an existing index that also puts every record it is
    /// told about (through [`Committed`]) into `records`, for readers.
    pub fn with_cache(index: PathIndex, records: Arc<RecordCache>) -> IndexActor {
        IndexActor {
            index,
            records: Some(records),
            catalog: None,
        }
    }

    /// An actor over `index` whose [`PlanRead`]s start from the snapshots
    /// of `catalog`.
    pub fn with_catalog(index: PathIndex, catalog: Catalog) -> IndexActor {
        IndexActor {
            index,
            records: None,
            catalog: Some(catalog),
        }
    }

    /// The same actor, also keeping every record it is told about (through
    /// [`Committed`]) in `records`, for readers.
    pub fn with_records(mut self, records: Arc<RecordCache>) -> IndexActor {
        self.records = Some(records);
        self
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

/// The newest indexed commit (`None` before the first).
#[derive(Clone, Copy, Debug)]
pub struct LastCommit;

/// Where the record of `commit` lives (`None` when not held).
#[derive(Clone, Copy, Debug)]
pub struct LocationOf {
    /// The commit.
    pub commit: u64,
}

/// Approximate memory statistics of the index.
#[derive(Clone, Copy, Debug)]
pub struct Stats;

/// Forget every commit before `commit` (after a snapshot covers them).
#[derive(Clone, Copy, Debug)]
pub struct ForgetBefore {
    /// The first commit to keep.
    pub commit: u64,
}

impl Message<IndexCommit> for IndexActor {
    type Reply = Result<Option<u64>, IndexError>;

    #[instrument(name = "index.commit", skip_all, fields(records = msg.records.len()))]
    async fn handle(
        &mut self,
        msg: IndexCommit,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        // Refuse a batch that does not continue the index before touching it.
        let mut expected = self.index.next_commit();
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
        for (commit, location, patch) in &msg.records {
            self.index
                .insert(*commit, &touched_paths(patch), *location)?;
        }
        let last = self.index.last_commit();
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
        self.index.plan(&msg.path, msg.base, msg.commit)
    }
}

/// The log writer's durable batches. Records the index already holds (a
/// restarted writer shows its unacknowledged tail again) are skipped; a gap
/// is logged and leaves the index unchanged, so later reads fail loudly
/// instead of answering from an index that misses commits.
impl Message<Committed> for IndexActor {
    type Reply = ();

    #[instrument(name = "index.committed", level = "debug", skip_all, fields(records = msg.records.len()))]
    async fn handle(&mut self, msg: Committed, _ctx: &mut Context<Self, ()>) {
        for rec in &msg.records {
            let next = self.index.next_commit().unwrap_or(rec.commit);
            if rec.commit < next {
                continue;
            }
            if let Err(e) =
                self.index
                    .insert(rec.commit, &touched_paths(&rec.entry.patch), rec.location)
            {
                error!(commit = rec.commit, error = %e, "cannot index a durable record");
                return;
            }
            if let Some(cache) = &self.records {
                cache.insert(rec.commit, rec.entry.clone(), rec.location.len as usize);
            }
        }
    }
}

impl Message<Plan> for IndexActor {
    type Reply = Result<ReadPlan, IndexError>;

    #[instrument(name = "index.plan", skip_all, fields(path = %msg.path, commit = msg.commit))]
    async fn handle(&mut self, msg: Plan, _ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let plan = self.index.plan(&msg.path, 0, msg.commit)?;
        debug!(root = %plan.root, records = plan.records.len(), "planned");
        Ok(plan)
    }
}

impl Message<Affecting> for IndexActor {
    type Reply = Vec<u64>;

    #[instrument(name = "index.affecting", skip_all, fields(path = %msg.path, from = msg.from, to = msg.to))]
    async fn handle(
        &mut self,
        msg: Affecting,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.index.affecting(&msg.path, msg.from, msg.to)
    }
}

impl Message<LastCommit> for IndexActor {
    type Reply = Option<u64>;

    async fn handle(
        &mut self,
        _msg: LastCommit,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.index.last_commit()
    }
}

impl Message<LocationOf> for IndexActor {
    type Reply = Option<Location>;

    async fn handle(
        &mut self,
        msg: LocationOf,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.index.location(msg.commit)
    }
}

impl Message<Stats> for IndexActor {
    // `IndexStats` is not a kameo `Reply` itself; this cannot fail.
    type Reply = Result<IndexStats, Infallible>;

    async fn handle(&mut self, _msg: Stats, _ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        Ok(self.index.stats())
    }
}

impl Message<ForgetBefore> for IndexActor {
    type Reply = Option<u64>;

    #[instrument(name = "index.forget", skip_all, fields(commit = msg.commit))]
    async fn handle(
        &mut self,
        msg: ForgetBefore,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.index.forget_before(msg.commit);
        self.index.first_commit()
    }
}

impl Message<PlanRead> for IndexActor {
    type Reply = Result<BasePlan, Error>;

    #[instrument(name = "index.plan_read", skip_all, fields(path = %msg.path, commit = msg.commit))]
    async fn handle(
        &mut self,
        msg: PlanRead,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let horizon = self.catalog.as_ref().map_or(0, Catalog::horizon);
        let compacted = Error::Compacted {
            commit: msg.commit,
            oldest: horizon,
        };
        let last = self.index.next_commit().map_or(0, |n| n - 1);
        if msg.commit > last {
            return Err(Error::FutureCommit {
                commit: msg.commit,
                current: last,
            });
        }
        if msg.commit < horizon {
            return Err(compacted);
        }
        let base = self
            .catalog
            .as_ref()
            .and_then(|c| c.newest_at_or_before(msg.commit))
            .map_or(0, |s| s.commit);
        let plan = match self.index.plan(&msg.path, base, msg.commit) {
            Ok(p) => p,
            Err(IndexError::Compacted { .. }) => return Err(compacted),
            Err(IndexError::FutureCommit { commit, last }) => {
                return Err(Error::FutureCommit {
                    commit,
                    current: last,
                });
            }
            Err(e) => {
                return Err(Error::Snapshot {
                    file: std::path::PathBuf::new(),
                    reason: e.to_string(),
                });
            }
        };
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

impl Message<Records> for IndexActor {
    type Reply = Result<Vec<(u64, Location)>, IndexError>;

    async fn handle(&mut self, msg: Records, _ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        Ok(self.index.plan(&KPath::root(), msg.from, msg.to)?.records)
    }
}
