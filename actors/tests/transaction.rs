//! The Transaction actor against an in-memory backend: a sequencer that folds
//! `patch::apply` over its history and validates checks with the brute-force
//! `affects` relation. These tests pin the actor's semantics (barrier, one
//! append, identical outcomes, timeouts, no lost updates) independently of the
//! real log writer; `tests/transactions.rs` of the root crate repeats the
//! important ones through `logd::Storage`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use logd_actors::error::Error;
use logd_actors::transaction::{
    AppendAnswer, AppendRequest, Outcome, Patch, PatchMeta, TxBackend, TxId, TxRegistry,
};
use logd_core::index::{affects, touched_paths};
use logd_core::{KPath, Node, Value, patch};

#[derive(Default)]
struct MemBackend {
    history: Mutex<Vec<(Node, Vec<KPath>)>>,
    current: AtomicU64,
    appends: AtomicUsize,
    /// Delay inside append, to widen race windows.
    append_delay: Option<Duration>,
}

impl MemBackend {
    fn state_at(&self, commit: u64) -> Option<Node> {
        let h = self.history.lock().unwrap();
        let mut doc = None;
        for (p, _) in h.iter().take(commit as usize) {
            doc = patch::apply_owned(doc, p).unwrap();
        }
        doc
    }
}

impl TxBackend for MemBackend {
    fn current_commit(&self) -> u64 {
        self.current.load(Ordering::Acquire)
    }

    async fn read(&self, path: &KPath, commit: u64) -> Result<Option<Node>, Error> {
        Ok(self
            .state_at(commit)
            .and_then(|d| d.get_path(path).cloned()))
    }

    async fn latest_affecting(
        &self,
        paths: &[KPath],
        from: u64,
        to: u64,
    ) -> Result<Option<u64>, Error> {
        let h = self.history.lock().unwrap();
        let mut latest = None;
        for c in (from + 1)..=to {
            let ends = &h[c as usize - 1].1;
            if ends.iter().any(|e| paths.iter().any(|p| affects(e, p))) {
                latest = Some(c);
            }
        }
        Ok(latest)
    }

    async fn wait_for(&self, _commit: u64) -> Result<(), Error> {
        Ok(()) // appends are acknowledged as they are sequenced
    }

    async fn append(&self, req: AppendRequest) -> Result<AppendAnswer, Error> {
        if let Some(d) = self.append_delay {
            tokio::time::sleep(d).await;
        }
        let mut h = self.history.lock().unwrap();
        for c in (req.read_commit + 1)..=(h.len() as u64) {
            let ends = &h[c as usize - 1].1;
            if ends
                .iter()
                .any(|e| req.checks.iter().any(|p| affects(e, p)))
            {
                return Ok(AppendAnswer::Conflict { commit: c });
            }
        }
        let ends = touched_paths(&req.patch);
        h.push((req.patch, ends));
        let commit = h.len() as u64;
        self.current.store(commit, Ordering::Release);
        self.appends.fetch_add(1, Ordering::Relaxed);
        Ok(AppendAnswer::Appended { commit })
    }
}

fn p(s: &str) -> KPath {
    KPath::parse(s).unwrap()
}

fn setup(backend: MemBackend) -> (Arc<MemBackend>, Arc<TxRegistry<MemBackend>>) {
    (Arc::new(backend), Arc::new(TxRegistry::default()))
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn new_tx(
    b: &Arc<MemBackend>,
    r: &Arc<TxRegistry<MemBackend>>,
    n: usize,
    meta: PatchMeta,
) -> logd_actors::transaction::TxHandle<MemBackend> {
    let id = TxId(NEXT_ID.fetch_add(1, Ordering::Relaxed));
    r.spawn(b.clone(), id, n, meta, Duration::from_secs(5))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_participants_one_commit_same_outcome() {
    let (b, r) = setup(MemBackend::default());
    let tx = new_tx(&b, &r, 8, PatchMeta::default());
    let id = tx.id();
    let mut tasks = Vec::new();
    for i in [5usize, 2, 7, 0, 3, 6, 1, 4] {
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis((i * 3) as u64)).await;
            let tx = r.get(id).unwrap();
            let mut patcher = tx
                .new_patcher(Patch::new(p(&format!("users.u{i}")), Node::int(i as i64)))
                .unwrap();
            let first = patcher.commit().await;
            let again = patcher.commit().await;
            assert_eq!(first, again, "commit is idempotent");
            first
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap().unwrap());
    }
    assert!(
        outcomes
            .iter()
            .all(|o| *o == Outcome::Committed { commit: 1 })
    );
    assert_eq!(b.appends.load(Ordering::Relaxed), 1, "exactly one append");
    let doc = b.state_at(1).unwrap();
    for i in 0..8 {
        assert_eq!(
            doc.get_path(&p(&format!("users.u{i}"))),
            Some(&Node::int(i))
        );
    }
    // Finished transactions leave the registry.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(matches!(r.get(id), Err(Error::TxNotFound { .. })));
}

#[tokio::test]
async fn single_participant_fast_path_and_tx_full() {
    let (b, r) = setup(MemBackend::default());
    let tx = new_tx(&b, &r, 1, PatchMeta::default());
    let mut one = tx.new_patcher(Patch::new(p("a"), Node::int(1))).unwrap();
    assert!(matches!(
        tx.new_patcher(Patch::new(p("b"), Node::int(2))),
        Err(Error::TxFull {
            participants: 1,
            ..
        })
    ));
    assert_eq!(one.commit().await, Ok(Outcome::Committed { commit: 1 }));
}

/// Issue 15: a participant that drops its `Patcher` without committing
/// ends the transaction for the others at once with `TxAbandoned`.
#[tokio::test]
async fn a_dropped_patcher_abandons_the_transaction() {
    let (b, r) = setup(MemBackend::default());
    let tx = new_tx(&b, &r, 2, PatchMeta::default());
    let mut arrives = tx.new_patcher(Patch::new(p("a"), Node::int(1))).unwrap();
    let dropped = tx.new_patcher(Patch::new(p("b"), Node::int(2))).unwrap();
    drop(dropped);
    let started = Instant::now();
    let got = arrives.commit().await;
    assert!(matches!(got, Err(Error::TxAbandoned { .. })), "{got:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(b.appends.load(Ordering::Relaxed), 0, "nothing written");
}

#[tokio::test]
async fn timeout_when_a_participant_never_arrives() {
    let (b, r) = setup(MemBackend::default());
    let meta = PatchMeta {
        max_duration: Some(Duration::from_millis(100)),
        ..PatchMeta::default()
    };
    let tx = new_tx(&b, &r, 2, meta);
    // The second participant never registers (a dropped `Patcher` would
    // abandon the transaction at once: `a_dropped_patcher_abandons_...`).
    let mut arrives = tx.new_patcher(Patch::new(p("a"), Node::int(1))).unwrap();
    let started = Instant::now();
    let got = arrives.commit().await;
    assert!(matches!(got, Err(Error::TxTimeout { .. })), "{got:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(b.appends.load(Ordering::Relaxed), 0, "nothing written");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(matches!(r.get(tx.id()), Err(Error::TxNotFound { .. })));
}

#[tokio::test]
async fn conflicting_participant_paths_fail_everyone() {
    let (b, r) = setup(MemBackend::default());
    let tx = new_tx(&b, &r, 2, PatchMeta::default());
    let mut x = tx.new_patcher(Patch::new(p("a.b"), Node::int(1))).unwrap();
    let mut y = tx
        .new_patcher(Patch::new(p("a.b.c"), Node::int(2)))
        .unwrap();
    let (gx, gy) = tokio::join!(x.commit(), y.commit());
    assert!(matches!(gx, Err(Error::Conflict { .. })), "{gx:?}");
    assert_eq!(gx, gy);
    let tx = new_tx(&b, &r, 2, PatchMeta::default());
    let mut x = tx.new_patcher(Patch::new(p("a.b"), Node::int(1))).unwrap();
    let mut y = tx.new_patcher(Patch::new(p("a[0]"), Node::int(2))).unwrap();
    let (gx, gy) = tokio::join!(x.commit(), y.commit());
    assert!(matches!(gx, Err(Error::Conflict { .. })), "{gx:?}");
    assert_eq!(gx, gy);
    assert_eq!(b.appends.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn failing_patch_commits_nothing() {
    let (b, r) = setup(MemBackend::default());
    let tx = new_tx(&b, &r, 1, PatchMeta::default());
    let mut w = tx.new_patcher(Patch::new(p("a"), Node::int(1))).unwrap();
    assert_eq!(w.commit().await, Ok(Outcome::Committed { commit: 1 }));
    let bad: Node = Node::tagged(
        "replace",
        Value::Object(vec![
            ("from".into(), Node::int(7)),
            ("to".into(), Node::int(8)),
        ]),
    );
    let tx = new_tx(&b, &r, 1, PatchMeta::default());
    let mut w = tx.new_patcher(Patch::new(p("a"), bad)).unwrap();
    assert!(matches!(w.commit().await, Err(Error::Patch(_))));
    assert_eq!(b.appends.load(Ordering::Relaxed), 1);
}

/// Compare-and-set increments of one counter from many tasks: every
/// `Committed` outcome is exactly one increment.
async fn cas_counter(use_seq: bool) {
    let (b, r) = setup(MemBackend {
        append_delay: Some(Duration::from_micros(200)),
        ..MemBackend::default()
    });
    // Start the counter at 0 (a `null` pattern would match anything).
    let init = new_tx(&b, &r, 1, PatchMeta::default());
    let mut w = init
        .new_patcher(Patch::new(p("counter"), Node::int(0)))
        .unwrap();
    assert_eq!(w.commit().await, Ok(Outcome::Committed { commit: 1 }));
    let committed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (b, r, committed) = (b.clone(), r.clone(), committed.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                loop {
                    let at = b.current_commit();
                    let old =
                        b.read(&p("counter"), at)
                            .await
                            .unwrap()
                            .map_or(0, |n| match n.value {
                                Value::Int(i) => i,
                                _ => panic!("counter is an int"),
                            });
                    let meta = PatchMeta {
                        seq: use_seq.then_some(at),
                        ..PatchMeta::default()
                    };
                    let tx = new_tx(&b, &r, 1, meta);
                    let mut patch = Patch::new(p("counter"), Node::int(old + 1));
                    if !use_seq {
                        patch = patch.with_match(p("counter"), Node::int(old));
                    }
                    let mut w = tx.new_patcher(patch).unwrap();
                    match w.commit().await.unwrap() {
                        Outcome::Committed { .. } => {
                            committed.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Outcome::NotMatched | Outcome::Stale { .. } => continue,
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = committed.load(Ordering::Relaxed) as i64;
    assert_eq!(total, 16 * 50);
    let at = b.current_commit();
    assert_eq!(
        b.read(&p("counter"), at).await.unwrap(),
        Some(Node::int(total))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_lost_updates_with_matches() {
    cas_counter(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_lost_updates_with_seq() {
    cas_counter(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_transactions_finish_and_leave_nothing_behind() {
    let (b, r) = setup(MemBackend::default());
    let mut tasks = Vec::new();
    for i in 0..10_000u32 {
        let (b, r) = (b.clone(), r.clone());
        tasks.push(tokio::spawn(async move {
            let tx = new_tx(&b, &r, 1, PatchMeta::default());
            let mut w = tx
                .new_patcher(Patch::new(p(&format!("k{{{}}}", i % 97)), Node::int(1)))
                .unwrap();
            w.commit().await.unwrap()
        }));
    }
    for t in tasks {
        assert!(matches!(t.await.unwrap(), Outcome::Committed { .. }));
    }
    assert_eq!(b.current_commit(), 10_000);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(r.is_empty(), "{} transactions still live", r.len());
}

/// One participant is decided inline (no actor), with the actor's semantics:
/// live in the registry until it commits, `TxFull` for a second patcher
/// (also through a handle found with `get`), idempotent commit, matches and
/// `seq` checks, and it leaves the registry when decided.
#[tokio::test]
async fn one_participant_inline_keeps_the_semantics() {
    let (b, r) = setup(MemBackend::default());
    let tx = new_tx(&b, &r, 1, PatchMeta::default());
    assert!(tx.actor().is_none(), "n = 1 spawns no actor");
    let found = r.get(tx.id()).unwrap();
    let mut w = found.new_patcher(Patch::new(p("a"), Node::int(1))).unwrap();
    assert!(matches!(
        tx.new_patcher(Patch::new(p("b"), Node::int(2))),
        Err(Error::TxFull {
            participants: 1,
            ..
        })
    ));
    assert!(r.get(tx.id()).is_ok(), "live until it commits");
    assert_eq!(w.commit().await, Ok(Outcome::Committed { commit: 1 }));
    assert_eq!(w.commit().await, Ok(Outcome::Committed { commit: 1 }));
    assert_eq!(b.appends.load(Ordering::Relaxed), 1);
    assert!(matches!(r.get(tx.id()), Err(Error::TxNotFound { .. })));
    assert!(matches!(
        tx.new_patcher(Patch::new(p("b"), Node::int(2))),
        Err(Error::TxFull { .. })
    ));
    assert!(r.is_empty());

    let one = |patch: Patch, meta: PatchMeta| {
        let tx = new_tx(&b, &r, 1, meta);
        async move { tx.new_patcher(patch).unwrap().commit().await }
    };
    let stale = PatchMeta {
        seq: Some(0),
        ..PatchMeta::default()
    };
    assert_eq!(
        one(Patch::new(p("a"), Node::int(5)), stale).await,
        Ok(Outcome::Stale { latest: 1 })
    );
    let fresh = PatchMeta {
        seq: Some(1),
        ..PatchMeta::default()
    };
    let cas =
        |want: i64| Patch::new(p("a"), Node::int(want + 1)).with_match(p("a"), Node::int(want));
    assert_eq!(
        one(cas(7), PatchMeta::default()).await,
        Ok(Outcome::NotMatched)
    );
    assert_eq!(
        one(cas(1), fresh).await,
        Ok(Outcome::Committed { commit: 2 })
    );
    assert_eq!(
        b.appends.load(Ordering::Relaxed),
        2,
        "refused ones wrote nothing"
    );
    assert_eq!(
        b.state_at(2).unwrap().get_path(&p("a")),
        Some(&Node::int(2))
    );
    // A patch that cannot apply fails and writes nothing.
    let bad = Patch::new(p("a"), Node::tagged("strdiff", Value::Null));
    assert!(matches!(
        one(bad, PatchMeta::default()).await,
        Err(Error::Patch(_))
    ));
    assert_eq!(b.appends.load(Ordering::Relaxed), 2);
    assert!(r.is_empty());
}

/// An inline transaction whose participant did not commit within
/// `max_duration` is over, as if its actor had timed out and stopped: `get`,
/// `new_patcher` and a late `commit` see `TxNotFound`, nothing is written.
#[tokio::test]
async fn one_participant_past_its_deadline_is_over() {
    let (b, r) = setup(MemBackend::default());
    let meta = PatchMeta {
        max_duration: Some(Duration::from_millis(60)),
        ..PatchMeta::default()
    };
    let late = new_tx(&b, &r, 1, meta.clone());
    let mut w = late.new_patcher(Patch::new(p("a"), Node::int(1))).unwrap();
    let unused = new_tx(&b, &r, 1, meta.clone());
    let in_time = new_tx(&b, &r, 1, meta);
    let mut ok = in_time
        .new_patcher(Patch::new(p("b"), Node::int(1)))
        .unwrap();
    assert_eq!(ok.commit().await, Ok(Outcome::Committed { commit: 1 }));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(r.get(late.id()), Err(Error::TxNotFound { .. })));
    assert!(matches!(w.commit().await, Err(Error::TxNotFound { .. })));
    assert!(matches!(
        unused.new_patcher(Patch::new(p("c"), Node::int(1))),
        Err(Error::TxNotFound { .. })
    ));
    assert_eq!(b.appends.load(Ordering::Relaxed), 1, "nothing more written");
    assert!(r.is_empty(), "expired ones leave the registry");
}

/// Abandoned one-participant transactions (a patcher never committed) do not
/// pile up: the registry sweeps expired ones as new ones are spawned.
#[tokio::test]
async fn abandoned_one_participant_transactions_are_swept() {
    let (b, r) = setup(MemBackend::default());
    let meta = PatchMeta {
        max_duration: Some(Duration::from_millis(1)),
        ..PatchMeta::default()
    };
    let mut kept = Vec::new();
    for _ in 0..3000 {
        let tx = new_tx(&b, &r, 1, meta.clone());
        // On a loaded machine the 1 ms may pass before the patcher joins.
        if let Ok(w) = tx.new_patcher(Patch::new(p("a"), Node::int(1))) {
            kept.push(w);
        }
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Live ones are never swept.
    let live = new_tx(&b, &r, 1, PatchMeta::default());
    for _ in 0..3000 {
        new_tx(&b, &r, 1, meta.clone());
    }
    assert!(r.get(live.id()).is_ok());
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(r.len(), 1);
    let mut w = live.new_patcher(Patch::new(p("z"), Node::int(1))).unwrap();
    assert_eq!(w.commit().await, Ok(Outcome::Committed { commit: 1 }));
    assert!(r.is_empty());
}

/// Closing the store ends live transactions at once: a participant waiting
/// for one that never comes gets `Closed`, nothing is written, and the
/// registry is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_all_ends_waiting_transactions() {
    let (b, r) = setup(MemBackend::default());
    let tx = new_tx(&b, &r, 2, PatchMeta::default());
    let mut waiting = tx.new_patcher(Patch::new(p("a"), Node::int(1))).unwrap();
    let waiter = tokio::spawn(async move { waiting.commit().await });
    let inline = new_tx(&b, &r, 1, PatchMeta::default());
    tokio::time::sleep(Duration::from_millis(30)).await;
    r.close_all();
    let got = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .expect("the waiting participant is answered at once")
        .unwrap();
    assert_eq!(got, Err(Error::Closed));
    assert!(r.is_empty());
    assert!(matches!(r.get(inline.id()), Err(Error::TxNotFound { .. })));
    assert_eq!(b.appends.load(Ordering::Relaxed), 0);
}
