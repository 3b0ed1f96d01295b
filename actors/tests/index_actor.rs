//! The index actor: batches in, plans out, reads executed in the caller's
//! task equal the root fold; refused batches change nothing; concurrent
//! readers never see a wrong answer while a writer indexes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use kameo::actor::{ActorRef, Spawn};
use kameo::error::SendError;
use logd_actors::index::{
    Affecting, ForgetBefore, IndexActor, IndexCommit, LastCommit, LocationOf, Plan, Stats,
};
use logd_core::index::IndexError;
use logd_core::kpath::KPath;
use logd_core::node::{Node, Value};
use logd_core::patch;
use logd_core::read::execute;
use logd_core::wal::Location;

fn p(s: &str) -> KPath {
    KPath::parse(s).unwrap()
}

fn loc(c: u64) -> Location {
    Location {
        segment: 1,
        offset: c * 64,
        len: 64,
    }
}

/// W1-shaped patch: `users.u{i % users}` = `{name, n, tags}`, with a delete
/// now and then.
fn patch_for(i: u64, users: u64) -> Node {
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

struct Store {
    records: HashMap<u64, Arc<Node>>,
    /// `docs[c]`: the document after commit `c` (only when asked for).
    docs: Vec<Option<Node>>,
    /// The document after the last commit.
    last: Option<Node>,
}

/// `n` commits; every `rewrite`-th one replaces the whole `users` object.
fn history(n: u64, users: u64, rewrite: Option<u64>, keep_docs: bool) -> Store {
    let mut records = HashMap::new();
    let mut docs = vec![None];
    let mut cur: Option<Node> = None;
    for c in 1..=n {
        let patch = match rewrite {
            Some(every) if c % every == 0 => {
                let users_now = cur
                    .as_ref()
                    .and_then(|d: &Node| d.field("users"))
                    .cloned()
                    .unwrap_or_else(Node::null);
                Node::object([(
                    "users",
                    Node::tagged(
                        "replace",
                        Value::Object(vec![
                            ("from".into(), users_now),
                            ("to".into(), Node::object([("fresh", Node::int(c as i64))])),
                        ]),
                    ),
                )])
            }
            _ => patch_for(c, users),
        };
        cur = patch::apply_owned(cur, &patch).unwrap();
        if keep_docs {
            docs.push(cur.clone());
        }
        records.insert(c, Arc::new(patch));
    }
    Store {
        records,
        docs,
        last: cur,
    }
}

async fn index_all(actor: &ActorRef<IndexActor>, store: &Store, from: u64, to: u64, batch: u64) {
    let mut c = from;
    while c <= to {
        let end = (c + batch - 1).min(to);
        let records = (c..=end)
            .map(|k| (k, loc(k), store.records[&k].clone()))
            .collect();
        let last = actor.ask(IndexCommit { records }).await.unwrap();
        assert_eq!(last, Some(end));
        c = end + 1;
    }
}

async fn read(
    actor: &ActorRef<IndexActor>,
    store: &Store,
    path: &KPath,
    commit: u64,
) -> Result<Option<Node>, SendError<Plan, IndexError>> {
    let plan = actor
        .ask(Plan {
            path: path.clone(),
            commit,
        })
        .await?;
    let got = execute(&plan, None, |c, l| -> Result<Arc<Node>, Infallible> {
        assert_eq!(l, loc(c));
        Ok(store.records[&c].clone())
    })
    .unwrap();
    Ok(got)
}

#[tokio::test]
async fn planned_reads_equal_the_root_fold() {
    let store = history(1200, 40, Some(250), true);
    let actor = IndexActor::spawn(IndexActor::new());
    assert_eq!(actor.ask(LastCommit).await.unwrap(), None);
    index_all(&actor, &store, 1, 1200, 37).await;
    assert_eq!(actor.ask(LastCommit).await.unwrap(), Some(1200));
    let paths = [
        "",
        "users",
        "users.u7",
        "users.u7.name",
        "users.u7.tags[1]",
        "users.u39.n",
        "users.fresh",
        "users.nobody",
        "other",
    ];
    for c in (0..=1200).step_by(13).chain([249, 250, 251, 1200]) {
        let doc = store.docs[c as usize].as_ref();
        for s in paths {
            let path = p(s);
            let got = read(&actor, &store, &path, c).await.unwrap();
            assert_eq!(
                got.as_ref(),
                doc.and_then(|d| d.get_path(&path)),
                "{s} at {c}"
            );
        }
    }
    assert_eq!(
        actor.ask(LocationOf { commit: 17 }).await.unwrap(),
        Some(loc(17))
    );
    let stats = actor.ask(Stats).await.unwrap();
    assert_eq!(stats.commits, 1200);
    assert!(stats.approx_bytes > 0);
    actor.kill();
}

#[tokio::test]
async fn refused_batches_change_nothing() {
    let store = history(10, 3, None, false);
    let actor = IndexActor::spawn(IndexActor::new());
    index_all(&actor, &store, 1, 3, 3).await;
    let bad = IndexCommit {
        records: [4, 6]
            .into_iter()
            .map(|k| (k, loc(k), store.records[&k].clone()))
            .collect(),
    };
    match actor.ask(bad).await {
        Err(SendError::HandlerError(IndexError::OutOfOrder { commit, expected })) => {
            assert_eq!((commit, expected), (6, 5));
        }
        other => panic!("expected OutOfOrder, got {other:?}"),
    }
    assert_eq!(actor.ask(LastCommit).await.unwrap(), Some(3));
    index_all(&actor, &store, 4, 10, 4).await;
    // Reads past the end are refused, not guessed.
    match actor
        .ask(Plan {
            path: p("users"),
            commit: 11,
        })
        .await
    {
        Err(SendError::HandlerError(IndexError::FutureCommit { commit, last })) => {
            assert_eq!((commit, last), (11, 10));
        }
        other => panic!("expected FutureCommit, got {other:?}"),
    }
    // After forgetting, a replay from the empty document is refused.
    assert_eq!(
        actor.ask(ForgetBefore { commit: 5 }).await.unwrap(),
        Some(5)
    );
    match actor
        .ask(Plan {
            path: p("users.u1"),
            commit: 10,
        })
        .await
    {
        Err(SendError::HandlerError(IndexError::Compacted { base, oldest })) => {
            assert_eq!((base, oldest), (0, 5));
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    // Listing from before the oldest held commit is refused, not shortened.
    match actor
        .ask(Affecting {
            path: p("users.u1"),
            from: 0,
            to: 10,
        })
        .await
    {
        Err(SendError::HandlerError(logd_actors::Error::Compacted { commit, oldest })) => {
            assert_eq!((commit, oldest), (0, 4));
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    let hits = actor
        .ask(Affecting {
            path: p("users.u1"),
            from: 4,
            to: 10,
        })
        .await
        .unwrap();
    assert_eq!(hits, vec![7, 10]);
    actor.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_see_only_indexed_commits() {
    let store = Arc::new(history(1500, 50, Some(400), true));
    let actor = IndexActor::spawn(IndexActor::new());
    let writer = {
        let actor = actor.clone();
        let store = store.clone();
        tokio::spawn(async move {
            index_all(&actor, &store, 1, 1500, 7).await;
        })
    };
    let mut readers = Vec::new();
    for r in 0..4u64 {
        let actor = actor.clone();
        let store = store.clone();
        readers.push(tokio::spawn(async move {
            let mut checked = 0;
            for i in 0..300u64 {
                let last = actor.ask(LastCommit).await.unwrap().unwrap_or(0);
                let c = (i * 31 + r * 7) % (last + 1);
                let path = p(&format!("users.u{}", (i + r) % 50));
                let got = read(&actor, &store, &path, c).await.unwrap();
                let want = store.docs[c as usize]
                    .as_ref()
                    .and_then(|d| d.get_path(&path));
                assert_eq!(got.as_ref(), want, "{path} at {c}");
                checked += 1;
            }
            checked
        }));
    }
    writer.await.unwrap();
    let mut total = 0;
    for r in readers {
        total += r.await.unwrap();
    }
    assert_eq!(total, 1200);
    actor.kill();
}

/// The shape of the design target (`docs/DESIGN.md` §7 W5): a leaf read after 5,000
/// commits over 500 users plans a handful of records, in microseconds.
#[tokio::test]
async fn leaf_plans_stay_small() {
    let store = history(5000, 500, None, false);
    let actor = IndexActor::spawn(IndexActor::new());
    index_all(&actor, &store, 1, 5000, 64).await;
    let path = p("users.u42");
    let plan = actor
        .ask(Plan {
            path: path.clone(),
            commit: 5000,
        })
        .await
        .unwrap();
    assert_eq!(plan.root, path);
    assert_eq!(plan.records.len(), 10);
    let got = read(&actor, &store, &path, 5000).await.unwrap();
    let want = store.last.as_ref().and_then(|d| d.get_path(&path));
    assert_eq!(got.as_ref(), want);
    assert!(want.is_some());
    let n = 2000u32;
    let start = Instant::now();
    for _ in 0..n {
        let got = read(&actor, &store, &path, 4999).await.unwrap();
        std::hint::black_box(got);
    }
    let per = start.elapsed() / n;
    eprintln!("leaf read through the actor (plan + fold): {per:?}");
    actor.kill();
}

/// The read-shared index: plans made directly (no mailbox) while the actor
/// indexes batches equal the actor's own plans, a commit is plannable as
/// soon as its batch is acknowledged (`IndexCommit` replied), and reads
/// through shared plans equal the root fold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_plans_see_every_acknowledged_commit() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let store = Arc::new(history(1500, 50, Some(400), true));
    let actor = IndexActor::new();
    let shared = actor.shared();
    let actor = IndexActor::spawn(actor);
    let acked = Arc::new(AtomicU64::new(0));
    let writer = {
        let (actor, store, acked) = (actor.clone(), store.clone(), acked.clone());
        tokio::spawn(async move {
            let mut c = 1;
            while c <= 1500 {
                let end = (c + 6).min(1500);
                index_all(&actor, &store, c, end, 7).await;
                acked.store(end, Ordering::Release);
                c = end + 1;
            }
        })
    };
    let mut readers = Vec::new();
    for r in 0..3u64 {
        let (actor, store, acked, shared) =
            (actor.clone(), store.clone(), acked.clone(), shared.clone());
        readers.push(tokio::spawn(async move {
            let mut checked = 0;
            for i in 0..400u64 {
                let current = acked.load(Ordering::Acquire);
                let c = if i % 2 == 0 {
                    current
                } else {
                    (i * 31 + r) % (current + 1)
                };
                let path = p(&format!("users.u{}", (i + r) % 50));
                let plan = shared.plan(&path, 0, c).unwrap();
                let via_actor = actor
                    .ask(Plan {
                        path: path.clone(),
                        commit: c,
                    })
                    .await
                    .unwrap();
                assert_eq!(plan, via_actor, "{path} at {c}");
                let got = execute(&plan, None, |k, _| -> Result<Arc<Node>, Infallible> {
                    Ok(store.records[&k].clone())
                })
                .unwrap();
                let want = store.docs[c as usize]
                    .as_ref()
                    .and_then(|d| d.get_path(&path));
                assert_eq!(got.as_ref(), want, "{path} at {c}");
                checked += 1;
            }
            checked
        }));
    }
    writer.await.unwrap();
    for r in readers {
        assert_eq!(r.await.unwrap(), 400);
    }
    assert_eq!(shared.last_commit().unwrap(), Some(1500));
    assert!(matches!(
        shared.plan(&p("users.u1"), 0, 1501),
        Err(logd_actors::Error::FutureCommit {
            commit: 1501,
            current: 1500
        })
    ));
    actor.kill();
}

/// The log writer's way in: a sink taken before the actor is spawned writes
/// the same index (and record cache) the actor plans over; a batch shown
/// again is skipped, a gap is refused.
#[tokio::test]
async fn the_sink_skips_what_it_holds_and_refuses_gaps() {
    use logd_actors::log_writer::DurableRecord;
    use logd_actors::reader::RecordCache;
    use logd_core::wal::{Entry, EntryMeta};

    let store = history(8, 3, None, true);
    let rec = |c: u64| DurableRecord {
        commit: c,
        location: loc(c),
        entry: Arc::new(Entry {
            commit: c,
            tx_id: c,
            timestamp: 0,
            patch: (*store.records[&c]).clone(),
            participants: vec![],
            meta: EntryMeta::default(),
        }),
    };
    let batch = |from: u64, to: u64| (from..=to).map(rec).collect::<Vec<_>>();
    let cache = Arc::new(RecordCache::new(1 << 20));
    let state = IndexActor::new().with_records(cache.clone());
    let sink = state.sink();
    let actor = IndexActor::spawn(state);

    sink.absorb(&batch(1, 3)).unwrap();
    sink.absorb(&batch(2, 5)).unwrap(); // 2 and 3 again: skipped
    assert_eq!(actor.ask(LastCommit).await.unwrap(), Some(5));
    match sink.absorb(&batch(7, 8)) {
        Err(IndexError::OutOfOrder { commit, expected }) => assert_eq!((commit, expected), (7, 6)),
        other => panic!("expected OutOfOrder, got {other:?}"),
    }
    assert_eq!(actor.ask(LastCommit).await.unwrap(), Some(5));
    for c in 1..=5 {
        assert_eq!(
            actor.ask(LocationOf { commit: c }).await.unwrap(),
            Some(loc(c))
        );
        assert_eq!(cache.get(c).map(|e| e.commit), Some(c));
    }
    assert!(cache.get(7).is_none());
    // What the sink wrote plans exactly like what the actor indexes.
    sink.absorb(&batch(6, 8)).unwrap();
    for c in 0..=8 {
        for s in ["", "users", "users.u1", "users.u2.name"] {
            let path = p(s);
            let got = read(&actor, &store, &path, c).await.unwrap();
            let want = store.docs[c as usize].as_ref();
            assert_eq!(
                got.as_ref(),
                want.and_then(|d| d.get_path(&path)),
                "{s} at {c}"
            );
        }
    }
    actor.kill();
}
