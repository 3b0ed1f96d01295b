//! Snapshots and compaction through `logd::Storage`: reads equal the fold at
//! every retained commit across snapshot boundaries, reopen after a snapshot
//! works (the Go original fails exactly here), and compaction makes old
//! commits `Compacted` instead of answering differently.

mod common;
use common::commit;

use logd::{Cutoff, Durability, Error, KPath, Node, Options, Retention, Storage, patch};

fn options(compaction: Retention) -> Options {
    let mut o = Options::default();
    o.durability = Durability::Buffered {
        interval: std::time::Duration::from_millis(5),
    };
    o.compaction = compaction;
    o
}

/// Commits 3 × 60 patches with a snapshot after each round; returns the
/// folded state after every commit (index = commit).
async fn history(s: &Storage) -> Vec<Option<Node>> {
    let mut states = vec![None];
    for round in 0..3i64 {
        for i in 0..60i64 {
            let path = format!("users.u{}", i % 7);
            let data = Node::object([("n", Node::int(round * 100 + i))]);
            let c = commit(s, &path, data.clone()).await;
            assert_eq!(c as usize, states.len());
            let root = patch::merge(&[(KPath::parse(&path).unwrap(), data)]).unwrap();
            let prev = states.last().cloned().flatten();
            states.push(patch::apply(prev.as_ref(), &root).unwrap());
        }
        let info = s.switch_and_snapshot().await.unwrap().expect("a snapshot");
        assert_eq!(
            info.commit as usize,
            states.len() - 1,
            "snapshot at the sealed commit"
        );
    }
    states
}

async fn check(s: &Storage, states: &[Option<Node>], from: usize) {
    for (c, st) in states.iter().enumerate().skip(from) {
        assert_eq!(
            &s.read_state_at("", c as u64).await.unwrap(),
            st,
            "root at {c}"
        );
        let want = st
            .as_ref()
            .and_then(|n| n.get_path(&KPath::parse("users.u3").unwrap()))
            .cloned();
        assert_eq!(s.read_state_at("users.u3", c as u64).await.unwrap(), want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_keep_every_read_exact_and_reopen_works() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path(), options(Retention::KeepAll))
        .await
        .unwrap();
    let states = history(&s).await;
    check(&s, &states, 0).await;
    s.close().await.unwrap();
    let s = Storage::open(dir.path(), options(Retention::KeepAll))
        .await
        .unwrap();
    assert_eq!(s.current_commit() as usize, states.len() - 1);
    check(&s, &states, 0).await;
    let c = commit(&s, "after", Node::int(1)).await;
    assert_eq!(c as usize, states.len());
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_gives_compacted_never_a_different_answer() {
    let dir = tempfile::tempdir().unwrap();
    let policy = Retention::Tiered {
        keep_recent: Cutoff::Commits(30),
        per_tier: 0,
        first_tier: 10,
        multiplier: 2,
    };
    let s = Storage::open(dir.path(), options(policy)).await.unwrap();
    let states = history(&s).await;
    let report = s.compact().await.unwrap();
    let oldest = report.oldest_commit;
    assert!(oldest > 1, "something was compacted: {report:?}");
    for c in 1..oldest {
        match s.read_state_at("", c).await {
            Err(Error::Compacted { .. }) => {}
            other => panic!("commit {c}: {other:?}"),
        }
    }
    check(&s, &states, oldest as usize).await;
    s.close().await.unwrap();
    let s = Storage::open(dir.path(), options(policy)).await.unwrap();
    check(&s, &states, oldest as usize).await;
    assert!(matches!(
        s.read_state_at("", 1).await,
        Err(Error::Compacted { .. })
    ));
    s.close().await.unwrap();
}
