//! Shared helpers of the snapshot and compaction tests: a store wired from
//! the actors directly (writer -> bridge -> index with catalogue,
//! snapshotter, compactor) and an oracle fold.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kameo::Actor;
use kameo::actor::{ActorRef, Spawn};
use kameo::message::{Context, Message};
use logd_actors::catalog::{Catalog, Skipped};
use logd_actors::compactor::{Compactor, CompactorArgs};
use logd_actors::error::Error;
use logd_actors::fileops::{FileOps, RealFs};
use logd_actors::index::{IndexActor, IndexCommit, PlanRead};
use logd_actors::log_writer::{Append, AppendOutcome, DurableBatch, Seal, WriterArgs};
use logd_actors::options::{Options, Retention};
use logd_actors::recovery::{DirLock, SegmentInfo, recover};
use logd_actors::snapshotter::{
    SnapshotInfo, Snapshotter, SnapshotterArgs, SwitchAndSnapshot, TakeSnapshot,
};
use logd_actors::supervisor::{Started, start};
use logd_core::index::{PathIndex, touched_paths};
use logd_core::kpath::KPath;
use logd_core::node::{Node, Value};
use logd_core::patch;
use logd_core::wal::EntryMeta;

/// Forwards durable batches to the index (what the integrated store does).
#[derive(Actor)]
pub struct Bridge {
    index: ActorRef<IndexActor>,
}

impl Message<DurableBatch> for Bridge {
    type Reply = ();
    async fn handle(&mut self, msg: DurableBatch, _: &mut Context<Self, ()>) {
        let records = msg
            .records
            .iter()
            .map(|r| (r.commit, r.location, Arc::new(r.entry.patch.clone())))
            .collect();
        self.index.ask(IndexCommit { records }).await.unwrap();
    }
}

pub struct Store {
    pub dir: PathBuf,
    _lock: DirLock,
    pub started: Started,
    pub index: ActorRef<IndexActor>,
    pub catalog: Catalog,
    pub snapshotter: ActorRef<Snapshotter>,
    pub compactor: ActorRef<Compactor>,
    pub skipped: Vec<Skipped>,
}

pub fn options(policy: Retention) -> Options {
    let mut o = Options::default();
    o.compaction = policy;
    o
}

pub async fn open(dir: &Path, policy: Retention) -> Result<Store, Error> {
    open_with(dir, policy, Arc::new(RealFs)).await
}

pub async fn open_with(
    dir: &Path,
    policy: Retention,
    fs: Arc<dyn FileOps>,
) -> Result<Store, Error> {
    let options = options(policy);
    let lock = DirLock::acquire(dir, &options)?;
    let recovered = recover(dir, &options, &*fs)?;
    let (catalog, skipped) = Catalog::open_recovered(dir, &*fs, options.umask, &recovered)?;
    let mut index = PathIndex::new();
    for r in &recovered.records {
        index
            .insert(r.commit, &touched_paths(&r.entry.patch), r.location)
            .unwrap();
    }
    let index = IndexActor::spawn(IndexActor::with_catalog(index, catalog.clone()));
    let bridge = Bridge::spawn(Bridge {
        index: index.clone(),
    });
    let args = WriterArgs::new(
        dir.to_path_buf(),
        options.clone(),
        fs.clone(),
        Some(bridge.reply_recipient::<DurableBatch>()),
        &recovered,
    );
    let started = start(args).await?;
    let snapshotter = Snapshotter::spawn(SnapshotterArgs {
        dir: dir.to_path_buf(),
        fs: fs.clone(),
        umask: options.umask,
        catalog: catalog.clone(),
        index: index.clone(),
        records: None,
    });
    let compactor = Compactor::spawn(Compactor::new(CompactorArgs {
        dir: dir.to_path_buf(),
        fs,
        catalog: catalog.clone(),
        index: index.clone(),
        policy,
    }));
    Ok(Store {
        dir: dir.to_path_buf(),
        _lock: lock,
        started,
        index,
        catalog,
        snapshotter,
        compactor,
        skipped,
    })
}

impl Store {
    pub async fn append(&self, patch: Node) -> u64 {
        let out = self
            .started
            .writer
            .ask(Append {
                patch,
                tx_id: 1,
                participants: vec![],
                meta: EntryMeta::default(),
                checks: vec![],
                read_commit: 0,
                when: None,
            })
            .await
            .unwrap();
        match out {
            AppendOutcome::Appended(a) => a.commit,
            other => panic!("append: {other:?}"),
        }
    }

    /// Seals the active segment and snapshots its last commit.
    pub async fn switch_and_snapshot(&self) -> Result<Option<SnapshotInfo>, Error> {
        if std::env::var("LOGD_SNAP_MANUAL").is_err() {
            return self
                .snapshotter
                .ask(SwitchAndSnapshot {
                    writer: self.started.writer.clone(),
                })
                .await
                .map_err(logd_actors::error::from_send);
        }
        let sealed: Option<SegmentInfo> = self
            .started
            .writer
            .ask(Seal)
            .await
            .map_err(logd_actors::error::from_send)?;
        let Some(seg) = sealed else { return Ok(None) };
        self.snapshotter
            .ask(TakeSnapshot {
                upto: seg.last_commit,
            })
            .await
            .map(Some)
            .map_err(logd_actors::error::from_send)
    }

    pub async fn read(&self, path: &str, commit: u64) -> Result<Option<Node>, Error> {
        let plan = self
            .index
            .ask(PlanRead {
                path: KPath::parse(path).unwrap(),
                commit,
            })
            .await
            .map_err(logd_actors::error::from_send)?;
        tokio::task::spawn_blocking(move || plan.execute())
            .await
            .unwrap()
    }

    pub async fn close(self) {
        self.started.stop().await.unwrap();
        let _ = self.snapshotter.stop_gracefully().await;
        self.snapshotter.wait_for_shutdown().await;
        let _ = self.compactor.stop_gracefully().await;
        self.compactor.wait_for_shutdown().await;
        let _ = self.index.stop_gracefully().await;
        self.index.wait_for_shutdown().await;
    }
}

/// W1-shaped patch over `users` users; every 97th deletes a user and every
/// `rewrite`-th replaces the whole `users` object.
pub fn w1(i: u64, users: u64) -> Node {
    let user = format!("u{}", i % users);
    let body = if i.is_multiple_of(97) {
        Node::tagged("delete", Value::Null)
    } else {
        Node::object([
            ("name", Node::string(format!("user-{i}"))),
            ("n", Node::int(i as i64)),
            ("tags", Node::array([Node::string("a"), Node::string("b")])),
        ])
    };
    Node::object([("users", Node::object([(user, body)]))])
}

/// `docs[c]` = the document after commits 1..=c.
pub fn fold(patches: &[Node]) -> Vec<Option<Node>> {
    let mut docs = vec![None];
    let mut cur: Option<Node> = None;
    for p in patches {
        cur = patch::apply(cur.as_ref(), p).unwrap();
        docs.push(cur.clone());
    }
    docs
}

pub fn at(doc: &Option<Node>, path: &str) -> Option<Node> {
    doc.as_ref()
        .and_then(|d| d.get_path(&KPath::parse(path).unwrap()).cloned())
}

/// The document after every patch (no intermediate copies).
pub fn fold_last(patches: &[Node]) -> Option<Node> {
    let mut cur: Option<Node> = None;
    for p in patches {
        cur = patch::apply_owned(cur, p).unwrap();
    }
    cur
}
