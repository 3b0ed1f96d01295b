//! Snapshots: reads planned from a snapshot base equal the fold from the
//! empty document at every commit, across snapshot boundaries and a
//! reopen; sub-path reads decode few blocks; a corrupt snapshot is skipped.

mod snapshot_common;

use std::time::Instant;

use logd_actors::options::Retention;
use logd_actors::snapshotter::SwitchAndSnapshot;
use logd_core::node::{Node, Value};
use snapshot_common::{at, fold, fold_last, open, w1};

/// Every `every`-th commit replaces `users` wholesale (a patch ending at a
/// shallow path), the rest are W1 upserts and deletes.
fn history(n: u64, users: u64) -> Vec<Node> {
    (1..=n)
        .map(|i| {
            if i % 53 == 0 {
                Node::object([("users", Node::object([("fresh", Node::int(i as i64))]))])
            } else if i % 71 == 0 {
                Node::object([("users", Node::tagged("delete", Value::Null))])
            } else {
                w1(i, users)
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_from_snapshots_equal_the_fold_at_every_commit() {
    let dir = tempfile::tempdir().unwrap();
    let patches = history(260, 20);
    let docs = fold(&patches);
    let store = open(dir.path(), Retention::KeepAll).await.unwrap();
    let mut snaps = Vec::new();
    for (i, p) in patches.iter().enumerate() {
        let c = store.append(p.clone()).await;
        assert_eq!(c, i as u64 + 1);
        if c % 40 == 0 || c == 7 {
            let info = store.switch_and_snapshot().await.unwrap().unwrap();
            assert_eq!(info.commit, c);
            assert_eq!(info.from, snaps.last().copied().unwrap_or(0));
            assert!(info.path.ends_with(format!("snap/{c:020}.snap")));
            snaps.push(c);
        }
    }
    // Taking the same snapshot again returns the existing one.
    let again = store
        .snapshotter
        .ask(logd_actors::snapshotter::TakeSnapshot { upto: 40 })
        .await
        .unwrap();
    assert_eq!((again.commit, again.replayed), (40, 0));

    let paths = [
        "",
        "users",
        "users.u3",
        "users.u3.name",
        "users.fresh",
        "nope",
    ];
    for c in 0..=260u64 {
        for path in paths {
            let got = store.read(path, c).await.unwrap();
            assert_eq!(got, at(&docs[c as usize], path), "read {path:?} at {c}");
        }
        let plan = store
            .index
            .ask(logd_actors::index::PlanRead {
                path: "users.u3".parse().unwrap(),
                commit: c,
            })
            .await
            .unwrap();
        let want_base = snaps.iter().copied().filter(|&s| s <= c).max().unwrap_or(0);
        assert_eq!(plan.plan.base, want_base, "base at {c}");
    }
    assert!(matches!(
        store.read("", 261).await,
        Err(logd_actors::Error::FutureCommit { commit: 261, .. })
    ));
    store.close().await;

    // Reopen: the catalogue finds the snapshots, reads agree again.
    let store = open(dir.path(), Retention::KeepAll).await.unwrap();
    assert!(store.skipped.is_empty());
    assert_eq!(
        store
            .catalog
            .list()
            .iter()
            .map(|s| s.commit)
            .collect::<Vec<_>>(),
        snaps
    );
    for c in (0..=260u64).step_by(3) {
        for path in paths {
            assert_eq!(
                store.read(path, c).await.unwrap(),
                at(&docs[c as usize], path)
            );
        }
    }
    store.close().await;
}

/// A W1 upsert with a 400-byte bio (so 500 users span many blocks).
fn big(i: u64, users: u64) -> Node {
    let mut p = w1(i, users);
    if let Value::Object(top) = &mut p.value
        && let Value::Object(us) = &mut top[0].1.value
        && let Value::Object(fields) = &mut us[0].1.value
    {
        fields.push(("bio".into(), Node::string("x".repeat(400))));
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_path_read_decodes_few_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Retention::KeepAll).await.unwrap();
    let users = 500;
    let n = if std::env::var("LOGD_LONG_TESTS").is_ok() {
        4000
    } else {
        1500
    };
    let patches: Vec<Node> = (1..=n).map(|i| big(i, users)).collect();
    let last = fold_last(&patches);
    for p in &patches {
        store.append(p.clone()).await;
    }
    let t = Instant::now();
    let info = store.switch_and_snapshot().await.unwrap().unwrap();
    eprintln!(
        "snapshot of {n} commits over {users} users: {:?} (inside the actor {:?}), {} bytes, {} blocks",
        t.elapsed(),
        info.took,
        info.bytes,
        info.blocks
    );
    assert!(info.blocks >= 8, "{info:?}");
    let snap = store.catalog.newest().unwrap();
    let before = snap.reader.blocks_decoded();
    let got = store.read("users.u123", n).await.unwrap();
    assert_eq!(got, at(&last, "users.u123"));
    let decoded = snap.reader.blocks_decoded() - before;
    assert!(decoded <= 2, "decoded {decoded} of {} blocks", info.blocks);
    // One more commit on top: the read still starts from the snapshot.
    let c = store.append(w1(n + 1, users)).await;
    let before = snap.reader.blocks_decoded();
    let got = store.read("users.u7.name", c).await.unwrap();
    let mut all = patches.clone();
    all.push(w1(n + 1, users));
    assert_eq!(got, at(&fold_last(&all), "users.u7.name"));
    assert!(snap.reader.blocks_decoded() - before <= 2);

    // A second snapshot, rewritten from the first.
    for i in n + 2..=n + 200 {
        store.append(w1(i, users)).await;
        all.push(w1(i, users));
    }
    let t = Instant::now();
    let info2 = store.switch_and_snapshot().await.unwrap().unwrap();
    eprintln!(
        "incremental snapshot (+{} commits): {:?}, {} bytes",
        info2.replayed,
        t.elapsed(),
        info2.bytes
    );
    assert_eq!(info2.from, info.commit);
    assert_eq!(store.read("", n + 200).await.unwrap(), fold_last(&all));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_snapshot_is_skipped_for_an_older_one() {
    let dir = tempfile::tempdir().unwrap();
    let patches = history(150, 30);
    let docs = fold(&patches);
    let store = open(dir.path(), Retention::KeepAll).await.unwrap();
    for (i, p) in patches.iter().enumerate() {
        store.append(p.clone()).await;
        if i + 1 == 60 || i + 1 == 120 {
            store.switch_and_snapshot().await.unwrap().unwrap();
        }
    }
    let newest = store.catalog.newest().unwrap();
    store.close().await;
    // Flip a byte inside the newest snapshot's first block.
    let mut bytes = std::fs::read(&newest.path).unwrap();
    bytes[40] ^= 0x5a;
    std::fs::write(&newest.path, &bytes).unwrap();
    // And leave an unfinished temp file behind.
    let tmp = dir.path().join("snap/00000000000000000130.snap.tmp");
    std::fs::write(&tmp, b"partial").unwrap();

    let store = open(dir.path(), Retention::KeepAll).await.unwrap();
    assert_eq!(store.skipped.len(), 1);
    assert_eq!(store.skipped[0].path, newest.path);
    assert!(
        matches!(&store.skipped[0].error, logd_actors::Error::Corrupt { file, .. } if *file == newest.path),
        "{:?}",
        store.skipped[0].error
    );
    assert!(!tmp.exists());
    assert_eq!(
        store
            .catalog
            .list()
            .iter()
            .map(|s| s.commit)
            .collect::<Vec<_>>(),
        vec![60]
    );
    for c in 0..=150u64 {
        assert_eq!(store.read("", c).await.unwrap(), docs[c as usize], "at {c}");
        assert_eq!(
            store.read("users.u4", c).await.unwrap(),
            at(&docs[c as usize], "users.u4")
        );
    }
    // A new snapshot at the same commit replaces the corrupt file.
    let info = store
        .snapshotter
        .ask(logd_actors::snapshotter::TakeSnapshot { upto: 120 })
        .await
        .unwrap();
    assert_eq!((info.commit, info.from), (120, 60));
    assert_eq!(store.read("", 140).await.unwrap(), docs[140]);
    store.close().await;
    let store = open(dir.path(), Retention::KeepAll).await.unwrap();
    assert!(store.skipped.is_empty());
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_switch_and_snapshot_calls_are_serialized() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Retention::KeepAll).await.unwrap();
    let switch = || {
        store.snapshotter.ask(SwitchAndSnapshot {
            writer: store.started.writer.clone(),
        })
    };
    // Nothing to snapshot in an empty store.
    assert_eq!(switch().await.unwrap(), None);
    let patches: Vec<Node> = (1..=30).map(|i| w1(i, 5)).collect();
    for p in &patches {
        store.append(p.clone()).await;
    }
    let (a, b, c) = tokio::join!(switch(), switch(), switch());
    for r in [a, b, c] {
        let info = r.unwrap().unwrap();
        assert_eq!(info.commit, 30);
    }
    assert_eq!(store.catalog.list().len(), 1);
    assert_eq!(store.read("", 30).await.unwrap(), fold_last(&patches));
    store.close().await;
}
