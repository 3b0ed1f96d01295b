//! The read path: `read_state_at(path, commit)` in the caller's task.
//!
//! This module owns [`Reader`]: it plans over the index the [`IndexActor`]
//! shares ([`SharedIndex`]: one lookup under a short read lock, in the
//! caller's task, no mailbox round trip; without a shared index it asks the
//! actor), fetches the planned records, and folds them with
//! [`logd_core::read::execute`]. Records come from a shared [`RecordCache`]
//! (the index fills it with every durable batch, so recent commits never
//! touch the disk) or by positional, CRC-checked reads of the segment files
//! (`wal::read_at`). Open segment files come from the store's one cache,
//! the [`Catalog`]'s, which compaction prunes as it deletes files (a read
//! in flight keeps its `Arc<File>` even if compaction unlinks it).
//!
//! Every answer is the one the log gives, cache or not: a commit below the
//! catalogue's horizon (the oldest readable commit) is
//! [`Error::Compacted`] even where the materialized state or the record
//! cache still holds it, and a read that loses a race with compaction (its
//! record or file went away under it) reports `Compacted` too.
//!
//! Reads whose plan replays many records (the root, or a wide subtree) go
//! through the *materialized state*: the root folded up to some commit, kept
//! in memory and moved forward by the new commits only, plus a few bounded
//! checkpoints at older commits for reads in the past. Its oracle is the
//! plain fold: both must give the same node, which the tests check.
//!
//! A read of any path at or after the materialized commit is also served
//! from it when that is cheap: the plan is made from the materialized commit
//! (`PlanFrom { base }`), only the node at the plan's read root is cloned
//! out of the materialized root (never the whole document, unless the path
//! is the root), and only the few records after it are folded. The
//! materialized state is only looked at with `try_lock`: a read never waits
//! behind another read that is moving it forward.
//!
//! It never writes files and never decides which commits matter (the index
//! does).

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kameo::actor::ActorRef;
use logd_core::index::ReadPlan;
use logd_core::read::{self, ReadError};
use logd_core::wal::{Entry, Location};
use logd_core::{KPath, Node, Value};
use tracing::instrument;

use crate::error::{Error, from_send};
pub use crate::index::cache::RecordCache;
use crate::index::catalog::Catalog;
use crate::index::{Affecting, IndexActor, PlanFrom, SharedIndex};

/// Plans that replay more records than this go through the materialized state.
pub const MATERIALIZE_THRESHOLD: usize = 64;

/// The materialized state keeps an older folded root (a *kept root*, not
/// the index checkpoint) every this many commits, for reads in the past.
pub const KEEP_ROOT_EVERY: u64 = 512;

/// At most this many kept roots (older ones are thinned out).
pub const MAX_KEPT_ROOTS: usize = 16;

/// Roots of a document larger than this (estimated bytes) are not kept.
pub const MAX_KEPT_ROOT_BYTES: usize = 32 << 20;

/// A record as the fold sees it: a shared entry that borrows as its patch.
#[derive(Clone, Debug)]
pub struct PatchRef(pub Arc<Entry>);

impl Borrow<Node> for PatchRef {
    fn borrow(&self) -> &Node {
        &self.0.patch
    }
}

/// The root folded up to `commit`, and older checkpoints.
#[derive(Debug, Default)]
struct Materialized {
    commit: u64,
    root: Option<Node>,
    checkpoints: BTreeMap<u64, Arc<Option<Node>>>,
}

/// Reads the state at any path as of any retained commit.
#[derive(Debug)]
pub struct Reader {
    dir: PathBuf,
    index: ActorRef<IndexActor>,
    /// The index, read directly; `None`: every plan asks the actor.
    shared: Option<SharedIndex>,
    records: Arc<RecordCache>,
    /// The horizon and the segment-file cache.
    catalog: Catalog,
    last_acked: Arc<AtomicU64>,
    materialized: tokio::sync::Mutex<Materialized>,
}

/// Why fetching one record failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct FetchError(Error);

impl Reader {
    /// A reader of the store in `dir`.
    pub fn new(
        dir: PathBuf,
        index: ActorRef<IndexActor>,
        records: Arc<RecordCache>,
        last_acked: Arc<AtomicU64>,
    ) -> Reader {
        Reader {
            dir: dir.clone(),
            index,
            shared: None,
            records,
            catalog: Catalog::empty(&dir),
            last_acked,
            materialized: tokio::sync::Mutex::new(Materialized::default()),
        }
    }

    /// The same reader, with the store's catalogue (its horizon and its
    /// segment-file cache) instead of an empty one of its own.
    pub fn with_catalog(mut self, catalog: Catalog) -> Reader {
        self.catalog = catalog;
        self
    }

    /// The same reader, planning over `shared` (the index of the actor it
    /// was given: [`IndexActor::shared`]) instead of asking the actor.
    pub fn with_shared_index(mut self, shared: SharedIndex) -> Reader {
        self.shared = Some(shared);
        self
    }

    /// The newest commit in `(from, to]` that affects any of `paths`
    /// (e.g. a transaction's `seq` check).
    pub async fn latest_affecting(
        &self,
        paths: &[KPath],
        from: u64,
        to: u64,
    ) -> Result<Option<u64>, Error> {
        if let Some(shared) = &self.shared {
            return shared.latest_affecting(paths, from, to);
        }
        let mut latest = None;
        for path in paths {
            let commits = self
                .index
                .ask(Affecting {
                    path: path.clone(),
                    from,
                    to,
                })
                .await
                .map_err(from_send)?;
            latest = latest.max(commits.last().copied());
        }
        Ok(latest)
    }

    /// The oldest readable commit (0: every commit, from the empty document).
    pub fn horizon(&self) -> u64 {
        self.catalog.horizon()
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The node at `path` as of `commit` (`None` where it does not exist).
    #[instrument(name = "read_state_at", level = "debug", skip(self), fields(path = %path))]
    pub async fn read(&self, path: &KPath, commit: u64) -> Result<Option<Node>, Error> {
        let current = self.last_acked.load(Ordering::Acquire);
        if commit > current {
            return Err(Error::FutureCommit { commit, current });
        }
        self.check_horizon(commit)?;
        let result = self.read_unchecked(path, commit).await;
        self.lost_to_compaction(commit, result)
    }

    /// [`Error::Compacted`] for a commit below the horizon: the caches may
    /// still hold it, the log does not. (Commit 0, the empty document,
    /// always reads.)
    fn check_horizon(&self, commit: u64) -> Result<(), Error> {
        let oldest = self.catalog.horizon();
        if commit > 0 && commit < oldest {
            return Err(Error::Compacted { commit, oldest });
        }
        Ok(())
    }

    /// A read or lookup that failed because compaction moved the horizon
    /// past `commit` while it ran (its record was forgotten, its file
    /// deleted) is [`Error::Compacted`], whatever the failure looked like.
    fn lost_to_compaction<T>(&self, commit: u64, result: Result<T, Error>) -> Result<T, Error> {
        match result {
            Err(e) if !matches!(e, Error::Compacted { .. }) => {
                self.check_horizon(commit)?;
                Err(e)
            }
            other => other,
        }
    }

    async fn read_unchecked(&self, path: &KPath, commit: u64) -> Result<Option<Node>, Error> {
        if let Some(done) = self.near_materialized(path, commit).await {
            return done;
        }
        let fast = match self.plan(path, 0, commit).await {
            Ok(plan) if plan.records.len() <= MATERIALIZE_THRESHOLD => self.execute(&plan, None),
            Ok(_) => self.read_materialized(path, commit).await,
            Err(e) => Err(e),
        };
        match fast {
            // Compaction dropped the start of the log: start from a snapshot.
            Err(Error::Compacted { .. }) => self.read_from_snapshot(path, commit).await,
            other => other,
        }
    }

    /// Plans from the newest snapshot at or before `commit` (the catalogue
    /// pins its files) and replays the later records, off the async threads.
    async fn read_from_snapshot(&self, path: &KPath, commit: u64) -> Result<Option<Node>, Error> {
        let plan = self
            .index
            .ask(crate::index::PlanRead {
                path: path.clone(),
                commit,
            })
            .await
            .map_err(|e| match e {
                kameo::error::SendError::HandlerError(e) => e,
                _ => Error::Closed,
            })?;
        tokio::task::spawn_blocking(move || plan.execute())
            .await
            .map_err(|e| Error::WriterFailed {
                reason: format!("read task failed: {e}"),
            })?
    }

    /// Serves a read at or after the materialized commit from the
    /// materialized root (see the module docs). `None` when the materialized
    /// state is busy, empty or newer than `commit`, or the plan from it is
    /// not small: the caller takes the other paths.
    async fn near_materialized(
        &self,
        path: &KPath,
        commit: u64,
    ) -> Option<Result<Option<Node>, Error>> {
        let m = self.materialized.try_lock().ok()?;
        if m.commit == 0 || m.commit > commit {
            return None;
        }
        let plan = self.plan(path, m.commit, commit).await.ok()?;
        if plan.records.len() > MATERIALIZE_THRESHOLD {
            return None;
        }
        let base = m
            .root
            .as_ref()
            .and_then(|r| r.get_path(&plan.root))
            .cloned();
        drop(m);
        Some(self.execute(&plan, base))
    }

    async fn plan(&self, path: &KPath, base: u64, commit: u64) -> Result<ReadPlan, Error> {
        if let Some(shared) = &self.shared {
            return shared.plan(path, base, commit);
        }
        self.index
            .ask(PlanFrom {
                path: path.clone(),
                base,
                commit,
            })
            .await
            .map_err(|e| match e {
                kameo::error::SendError::HandlerError(e) => Error::from_index(e, commit),
                _ => Error::Closed,
            })
    }

    fn execute(&self, plan: &ReadPlan, base: Option<Node>) -> Result<Option<Node>, Error> {
        read::execute(plan, base, |commit, loc| self.fetch(commit, loc)).map_err(|e| match e {
            ReadError::Fetch { source, .. } => source.0,
            ReadError::Index(e) => Error::from_index(e, plan.commit),
            other => Error::Corrupt {
                file: self.dir.join("wal"),
                offset: 0,
                reason: other.to_string(),
            },
        })
    }

    /// Serves a read from the materialized root: moves it forward when
    /// `commit` is at or after it, else starts from the nearest checkpoint.
    async fn read_materialized(&self, path: &KPath, commit: u64) -> Result<Option<Node>, Error> {
        let mut m = self.materialized.lock().await;
        if commit >= m.commit {
            let plan = self.plan(&KPath::root(), m.commit, commit).await?;
            let mut root = m.root.take();
            let mut at = m.commit;
            // Fold in chunks that end on checkpoint boundaries.
            let mut start = 0;
            while start < plan.records.len() {
                let mut end = start;
                while end < plan.records.len() {
                    let c = plan.records[end].0;
                    end += 1;
                    if c % KEEP_ROOT_EVERY == 0 {
                        break;
                    }
                }
                let chunk = ReadPlan {
                    records: plan.records[start..end].to_vec(),
                    ..plan.clone()
                };
                root = match self.execute(&chunk, root) {
                    Ok(r) => r,
                    Err(e) => {
                        // Leave the cache empty rather than half-advanced.
                        *m = Materialized::default();
                        return Err(e);
                    }
                };
                at = chunk.records.last().map_or(at, |r| r.0);
                if at % KEEP_ROOT_EVERY == 0 && !m.checkpoints.contains_key(&at) {
                    keep_checkpoint(&mut m.checkpoints, at, &root);
                }
                start = end;
            }
            m.commit = commit;
            m.root = root;
            return Ok(m.root.as_ref().and_then(|r| r.get_path(path).cloned()));
        }
        let (base_commit, base) = m
            .checkpoints
            .range(..=commit)
            .next_back()
            .map(|(c, n)| (*c, n.clone()))
            .unwrap_or((0, Arc::new(None)));
        drop(m);
        let plan = self.plan(path, base_commit, commit).await?;
        let base_at_root = base.as_ref().as_ref().and_then(|n| n.get_path(&plan.root));
        self.execute(&plan, base_at_root.cloned())
    }

    fn fetch(&self, commit: u64, loc: Location) -> Result<PatchRef, FetchError> {
        if let Some(e) = self.records.get(commit) {
            return Ok(PatchRef(e));
        }
        let entry = self.catalog.read_record(commit, loc).map_err(FetchError)?;
        let entry = Arc::new(entry);
        self.records.insert(commit, entry.clone(), loc.len as usize);
        Ok(PatchRef(entry))
    }

    /// The log record of `commit` (from the cache or the segment file);
    /// [`Error::Compacted`] below the horizon, also when compaction passes
    /// `commit` during the lookup.
    pub async fn entry(&self, commit: u64) -> Result<Arc<Entry>, Error> {
        self.check_horizon(commit)?;
        let result = self.entry_unchecked(commit).await;
        self.lost_to_compaction(commit, result)
    }

    async fn entry_unchecked(&self, commit: u64) -> Result<Arc<Entry>, Error> {
        let loc = match &self.shared {
            Some(shared) => shared.location(commit)?,
            None => self
                .index
                .ask(crate::index::LocationOf { commit })
                .await
                .map_err(|_| Error::Closed)?,
        };
        let current = self.last_acked.load(Ordering::Acquire);
        let loc = match loc {
            Some(loc) => loc,
            None if commit > current => return Err(Error::FutureCommit { commit, current }),
            // Acknowledged but not held: forgotten by a compaction.
            None => {
                return Err(Error::Compacted {
                    commit,
                    oldest: self.catalog.horizon().max(commit + 1),
                });
            }
        };
        self.fetch(commit, loc).map(|r| r.0).map_err(|e| e.0)
    }
}

/// Stores a checkpoint when the document is small enough, thinning older
/// checkpoints out (every other one) when there are too many.
fn keep_checkpoint(
    checkpoints: &mut BTreeMap<u64, Arc<Option<Node>>>,
    at: u64,
    root: &Option<Node>,
) {
    if root.as_ref().map_or(0, estimate_bytes) > MAX_KEPT_ROOT_BYTES {
        return;
    }
    checkpoints.insert(at, Arc::new(root.clone()));
    if checkpoints.len() > MAX_KEPT_ROOTS {
        let keys: Vec<u64> = checkpoints.keys().copied().collect();
        for (i, k) in keys.iter().enumerate() {
            if i % 2 == 1 && i + 1 < keys.len() {
                checkpoints.remove(k);
            }
        }
    }
}

/// A rough size of a document in memory, without recursion.
fn estimate_bytes(root: &Node) -> usize {
    let mut total = 0usize;
    let mut stack = vec![root];
    while let Some(n) = stack.pop() {
        total += std::mem::size_of::<Node>();
        match &n.value {
            Value::String(s) => total += s.len(),
            Value::Array(items) => stack.extend(items.iter()),
            Value::Object(kv) => {
                for (k, v) in kv {
                    if let logd_core::Key::Field(f) = k {
                        total += f.len();
                    }
                    stack.push(v);
                }
            }
            _ => {}
        }
        if total > MAX_KEPT_ROOT_BYTES {
            break;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::record::{DurableBatch, DurableRecord};
    use kameo::actor::Spawn;
    use logd_core::index::PathIndex;
    use logd_core::patch;
    use logd_core::wal::EntryMeta;

    fn p(s: &str) -> KPath {
        KPath::parse(s).unwrap()
    }

    /// Commit `c` of the test history: users `u{c % 20}` get an object,
    /// every 7th is deleted, every 50th commit replaces all of `users` by a
    /// scalar (so plans of a leaf must start above it), every 13th patches the root.
    fn patch_for(c: u64) -> Node {
        if c.is_multiple_of(50) {
            return Node::object([("users", Node::int(c as i64))]);
        }
        if c.is_multiple_of(13) {
            return Node::object([("meta", Node::int(c as i64))]);
        }
        let body = if c.is_multiple_of(7) {
            Node::tagged("delete", Value::Null)
        } else {
            Node::object([
                ("n", Node::int(c as i64)),
                ("tags", Node::array([Node::string("a")])),
            ])
        };
        Node::object([("users", Node::object([(format!("u{}", c % 20), body)]))])
    }

    fn record(c: u64) -> DurableRecord {
        DurableRecord {
            commit: c,
            location: Location {
                segment: 1,
                offset: c * 100,
                len: 100,
            },
            entry: Arc::new(Entry {
                commit: c,
                tx_id: c,
                timestamp: 0,
                patch: patch_for(c),
                participants: vec![],
                meta: EntryMeta::default(),
            }),
        }
    }

    /// Reads through the shared index, the materialized root (moved forward
    /// by root reads while commits arrive) and its checkpoints, and through
    /// the actor (no shared index), all equal the root fold, at the current
    /// commit and in the past, while a writer indexes and acknowledges
    /// commits concurrently; a read right after an acknowledgement sees it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_equal_the_root_fold_while_commits_arrive() {
        const N: u64 = 1200;
        let mut docs: Vec<Option<Node>> = vec![None];
        for c in 1..=N {
            let next = patch::apply_owned(docs[c as usize - 1].clone(), &patch_for(c)).unwrap();
            docs.push(next);
        }
        let docs = Arc::new(docs);
        let records = Arc::new(RecordCache::new(64 << 20));
        let actor = IndexActor::with_cache(PathIndex::new(), records.clone());
        let shared = actor.shared();
        let index = IndexActor::spawn(actor);
        let acked = Arc::new(AtomicU64::new(0));
        let dir = PathBuf::from("/nonexistent-logd-reader-test");
        let direct = Arc::new(
            Reader::new(dir.clone(), index.clone(), records.clone(), acked.clone())
                .with_shared_index(shared),
        );
        let via_actor = Arc::new(Reader::new(dir, index.clone(), records, acked.clone()));
        let writer = {
            let (index, acked, direct, docs) =
                (index.clone(), acked.clone(), direct.clone(), docs.clone());
            tokio::spawn(async move {
                for c in 1..=N {
                    index
                        .ask(DurableBatch {
                            records: vec![record(c)],
                        })
                        .await
                        .unwrap();
                    acked.store(c, Ordering::Release);
                    // Read-your-acknowledged-write, every few commits.
                    if c % 9 == 0 {
                        let path = p(&format!("users.u{}", c % 20));
                        let want = docs[c as usize].as_ref().and_then(|d| d.get_path(&path));
                        let got = direct.read(&path, c).await.unwrap();
                        assert_eq!(got.as_ref(), want, "{path} right after ack of {c}");
                    }
                }
            })
        };
        let mut readers = Vec::new();
        for r in 0..2u64 {
            let (direct, via_actor, acked, docs) = (
                direct.clone(),
                via_actor.clone(),
                acked.clone(),
                docs.clone(),
            );
            readers.push(tokio::spawn(async move {
                let mut checked = 0u64;
                let mut i = r;
                loop {
                    let current = acked.load(Ordering::Acquire);
                    let path = match i % 5 {
                        0 => KPath::root(),
                        1 => p("users"),
                        2 => p("meta"),
                        _ => p(&format!("users.u{}", i % 21)),
                    };
                    let at = if i % 3 == 0 {
                        current
                    } else {
                        (i * 37) % (current + 1)
                    };
                    let want = docs[at as usize].as_ref().and_then(|d| d.get_path(&path));
                    let reader = if i % 4 == 3 { &via_actor } else { &direct };
                    let got = reader.read(&path, at).await.unwrap();
                    assert_eq!(got.as_ref(), want, "{path} at {at} (current {current})");
                    checked += 1;
                    i += 2;
                    if current == N && checked > 400 {
                        break;
                    }
                    if i % 16 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                checked
            }));
        }
        writer.await.unwrap();
        for r in readers {
            assert!(r.await.unwrap() > 400);
        }
        // A future commit is refused, by both readers.
        for reader in [&direct, &via_actor] {
            assert_eq!(
                reader.read(&p("users.u1"), N + 1).await,
                Err(Error::FutureCommit {
                    commit: N + 1,
                    current: N
                })
            );
        }
        index.kill();
    }
}
