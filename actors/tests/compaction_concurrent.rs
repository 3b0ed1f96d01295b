//! Writers appending concurrently with snapshots and compaction lose
//! nothing: every acknowledged commit is in the final state, readable
//! before and after a reopen, and concurrent readers never see an error
//! other than `Compacted` for commits behind the horizon.

mod snapshot_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use logd_actors::Error;
use logd_actors::compactor::CompactAt;
use logd_actors::options::{Cutoff, Retention};
use logd_actors::snapshotter::SnapshotGate;
use logd_core::node::Node;
use snapshot_common::{Store, open};

const POLICY: Retention = Retention::Tiered {
    keep_recent: Cutoff::Commits(20),
    per_tier: 1,
    first_tier: 10,
    multiplier: 2,
};

fn patch(task: u64, k: u64) -> Node {
    Node::object([(
        format!("t{task}"),
        Node::object([(format!("k{k}"), Node::int(k as i64))]),
    )])
}

fn check(doc: &Node, tasks: u64, per_task: u64) {
    for t in 0..tasks {
        let sub = doc.field(&format!("t{t}")).unwrap();
        for k in 0..per_task {
            assert_eq!(
                sub.field(&format!("k{k}")),
                Some(&Node::int(k as i64)),
                "t{t}.k{k}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_lose_nothing_under_snapshots_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path(), POLICY).await.unwrap());
    let (tasks, per_task) = (4u64, 150u64);
    let mut writers = Vec::new();
    for t in 0..tasks {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for k in 0..per_task {
                store.append(patch(t, k)).await;
            }
        }));
    }
    let done = Arc::new(AtomicBool::new(false));
    // A reader at the newest commit, all along.
    let reader = {
        let store = store.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut reads = 0;
            while !done.load(Ordering::SeqCst) {
                let last = store
                    .index
                    .ask(logd_actors::index::LastCommit)
                    .await
                    .unwrap()
                    .unwrap_or(0);
                match store.read("t1", last).await {
                    Ok(_) => reads += 1,
                    Err(Error::Compacted { .. }) => {}
                    Err(e) => panic!("read at {last}: {e:?}"),
                }
            }
            reads
        })
    };
    let gate = SnapshotGate::new();
    let mut snapshots = 0;
    let mut compacted = 0;
    while writers.iter().any(|w| !w.is_finished()) {
        let guard = gate.try_enter().unwrap();
        assert!(matches!(gate.try_enter(), Err(Error::SnapshotBusy)));
        if store.switch_and_snapshot().await.unwrap().is_some() {
            snapshots += 1;
        }
        drop(guard);
        let r = store
            .compactor
            .ask(CompactAt {
                now: SystemTime::now(),
            })
            .await
            .unwrap();
        compacted += r.dropped_segments.len();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let reads = reader.await.unwrap();
    let last = tasks * per_task;
    assert!(snapshots >= 2, "{snapshots} snapshots");
    assert!(compacted >= 1, "{compacted} segments compacted");
    assert!(reads > 0);
    let doc = store.read("", last).await.unwrap().unwrap();
    check(&doc, tasks, per_task);
    let store = Arc::into_inner(store).unwrap();
    Store::close(store).await;
    let store = open(dir.path(), POLICY).await.unwrap();
    let doc = store.read("", last).await.unwrap().unwrap();
    check(&doc, tasks, per_task);
    store.close().await;
}
