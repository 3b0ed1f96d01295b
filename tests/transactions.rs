//! Multi-participant transactions through `logd::Storage`: the barrier, one
//! commit for all, identical outcomes, timeouts, and no lost updates under
//! contention (matches and `seq`), all on a real, durable store.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::kp as p;
use logd::{Error, Node, Options, Outcome, Patch, PatchMeta, Storage, Value};

async fn open() -> (tempfile::TempDir, Storage) {
    common::open_temp(Options::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_tasks_one_commit() {
    let (_d, s) = open().await;
    let tx = s
        .new_tx(
            8,
            PatchMeta {
                label: Some("eight".into()),
                ..PatchMeta::default()
            },
        )
        .await
        .unwrap();
    let id = tx.id();
    let mut tasks = Vec::new();
    for i in [3u64, 7, 1, 0, 6, 2, 5, 4] {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(i * 5)).await;
            let tx = s.get_tx(id).await.unwrap();
            let mut w = tx
                .new_patcher(Patch::new(p(&format!("team.m{i}")), Node::int(i as i64)))
                .await
                .unwrap();
            let a = w.commit().await;
            assert_eq!(a, w.commit().await);
            a
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), Ok(Outcome::Committed { commit: 1 }));
    }
    assert_eq!(s.current_commit(), 1);
    let team = s.read_state_at("team", 1).await.unwrap().unwrap();
    let Value::Object(kv) = &team.value else {
        panic!("{team}")
    };
    assert_eq!(kv.len(), 8);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(matches!(s.get_tx(id).await, Err(Error::TxNotFound { .. })));
    s.close().await.unwrap();
}

#[tokio::test]
async fn tx_full_and_timeout_write_nothing() {
    let (_d, s) = open().await;
    let tx = s.new_tx(1, PatchMeta::default()).await.unwrap();
    let mut w = tx
        .new_patcher(Patch::new(p("a"), Node::int(1)))
        .await
        .unwrap();
    assert!(matches!(
        tx.new_patcher(Patch::new(p("b"), Node::int(1))).await,
        Err(Error::TxFull { .. })
    ));
    assert_eq!(w.commit().await, Ok(Outcome::Committed { commit: 1 }));

    let tx = s
        .new_tx(
            2,
            PatchMeta {
                max_duration: Some(Duration::from_millis(150)),
                ..PatchMeta::default()
            },
        )
        .await
        .unwrap();
    let mut w = tx
        .new_patcher(Patch::new(p("x"), Node::int(1)))
        .await
        .unwrap();
    let started = Instant::now();
    assert!(matches!(w.commit().await, Err(Error::TxTimeout { .. })));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(s.current_commit(), 1, "nothing written");
    assert_eq!(s.read_state_at("x", 1).await, Ok(None));
    s.close().await.unwrap();
}

#[tokio::test]
async fn matches_not_matched_and_conflicting_paths() {
    let (_d, s) = open().await;
    assert_eq!(common::commit(&s, "flag", Node::string("on")).await, 1);

    let tx = s.new_tx(2, PatchMeta::default()).await.unwrap();
    let mut a = tx
        .new_patcher(Patch::new(p("x"), Node::int(1)).with_match(p("flag"), Node::string("off")))
        .await
        .unwrap();
    let mut b = tx
        .new_patcher(Patch::new(p("y"), Node::int(2)))
        .await
        .unwrap();
    let (ra, rb) = tokio::join!(a.commit(), b.commit());
    assert_eq!(ra, Ok(Outcome::NotMatched));
    assert_eq!(ra, rb);

    let tx = s.new_tx(2, PatchMeta::default()).await.unwrap();
    let mut a = tx
        .new_patcher(Patch::new(p("m.b"), Node::int(1)))
        .await
        .unwrap();
    let mut b = tx
        .new_patcher(Patch::new(p("m[0]"), Node::int(2)))
        .await
        .unwrap();
    let (ra, rb) = tokio::join!(a.commit(), b.commit());
    assert!(matches!(ra, Err(Error::Conflict { .. })), "{ra:?}");
    assert_eq!(ra, rb);
    assert_eq!(s.current_commit(), 1);
    s.close().await.unwrap();
}

async fn counter(s: &Storage, at: u64) -> i64 {
    match s.read_state_at("counter", at).await.unwrap() {
        Some(Node {
            value: Value::Int(i),
            ..
        }) => i,
        other => panic!("counter is {other:?}"),
    }
}

/// 16 tasks × 50 compare-and-set increments: the counter ends equal to the
/// number of `Committed` outcomes.
async fn no_lost_updates(use_seq: bool) {
    let (_d, s) = open().await;
    common::commit(&s, "counter", Node::int(0)).await;
    let committed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (s, committed) = (s.clone(), committed.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                loop {
                    let at = s.current_commit();
                    let old = counter(&s, at).await;
                    let meta = PatchMeta {
                        seq: use_seq.then_some(at),
                        ..PatchMeta::default()
                    };
                    let mut patch = Patch::new(p("counter"), Node::int(old + 1));
                    if !use_seq {
                        patch = patch.with_match(p("counter"), Node::int(old));
                    }
                    let tx = s.new_tx(1, meta).await.unwrap();
                    let mut w = tx.new_patcher(patch).await.unwrap();
                    match w.commit().await.unwrap() {
                        Outcome::Committed { .. } => {
                            committed.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Outcome::NotMatched | Outcome::Stale { .. } => {}
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = committed.load(Ordering::Relaxed) as i64;
    assert_eq!(n, 800);
    assert_eq!(counter(&s, s.current_commit()).await, n);
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_lost_updates_with_matches() {
    no_lost_updates(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_lost_updates_with_seq() {
    no_lost_updates(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_transactions() {
    let (_d, s) = open().await;
    let mut tasks = Vec::new();
    for i in 0..10_000u32 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            common::commit_one(&s, &format!("users.u{}", i % 500), Node::int(i as i64))
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        assert!(matches!(t.await.unwrap(), Outcome::Committed { .. }));
    }
    assert_eq!(s.current_commit(), 10_000);
    s.close().await.unwrap();
}

#[tokio::test]
async fn tx_ids_are_unique_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path(), Options::default()).await.unwrap();
    let a = s.new_tx(1, PatchMeta::default()).await.unwrap().id();
    let b = s.new_tx(1, PatchMeta::default()).await.unwrap().id();
    assert_ne!(a, b);
    s.close().await.unwrap();
    let s = Storage::open(dir.path(), Options::default()).await.unwrap();
    let c = s.new_tx(1, PatchMeta::default()).await.unwrap().id();
    assert!(c > b, "{c} after {b}");
    s.close().await.unwrap();
}
