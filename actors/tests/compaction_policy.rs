//! Compaction: keeps exactly what the policy says, reads outside the
//! horizon get `Compacted`, reads inside (and reads planned before the
//! compaction) stay correct, across a reopen and an interrupted compaction.

mod snapshot_common;

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use logd_actors::Error;
use logd_actors::compactor::CompactAt;
use logd_actors::fileops::{FileOps, RealFs};
use logd_actors::index::PlanRead;
use logd_actors::options::{Cutoff, Retention};
use logd_core::retention::plan_compaction;
use snapshot_common::{Store, at, fold, open, open_with, w1};

const POLICY: Retention = Retention::Tiered {
    keep_recent: Cutoff::Commits(100),
    per_tier: 1,
    first_tier: 50,
    multiplier: 2,
};

fn files(dir: &Path, sub: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join(sub))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// 610 commits, a seal + snapshot every 50.
async fn build(store: &Store) {
    for i in 1..=610u64 {
        store.append(w1(i, 20)).await;
        if i % 50 == 0 && i <= 600 {
            store.switch_and_snapshot().await.unwrap().unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_what_the_policy_says() {
    let dir = tempfile::tempdir().unwrap();
    let patches: Vec<_> = (1..=610u64).map(|i| w1(i, 20)).collect();
    let docs = fold(&patches);
    let store = open(dir.path(), POLICY).await.unwrap();
    build(&store).await;

    // A read planned before the compaction, from a snapshot it will drop.
    let early = store
        .index
        .ask(PlanRead {
            path: "users".parse().unwrap(),
            commit: 120,
        })
        .await
        .unwrap();
    assert_eq!(early.plan.base, 100);

    let now = SystemTime::now();
    let snaps: Vec<(u64, SystemTime)> = store
        .catalog
        .list()
        .iter()
        .map(|s| (s.commit, s.taken))
        .collect();
    let segments: Vec<(u64, u64)> = (0..12)
        .map(|k| (k * 50 + 1, k * 50 + 50))
        .chain([(601, 610)])
        .collect();
    let want = plan_compaction(&POLICY, &snaps, &segments, now, 610);
    // B = 511: 550..600 recent; 500 anchor (tier 0); 450 (tier 1: 51..=150),
    // 350 (tier 2: 151..=350 -> newest 350), tier 3 (351..=750): 150.
    assert_eq!(want.drop_snapshots, vec![50, 100, 200, 250, 300, 400]);
    assert_eq!(want.oldest_reconstructible, 150);

    let report = store.compactor.ask(CompactAt { now }).await.unwrap();
    assert_eq!(report.dropped_snapshots, want.drop_snapshots);
    assert_eq!(report.dropped_segments, want.drop_segments);
    assert_eq!(
        report.dropped_segments,
        vec![(1, 50), (51, 100), (101, 150)]
    );
    assert_eq!(report.oldest_commit, 150);
    assert!(report.bytes_freed > 0);
    assert_eq!(
        files(dir.path(), "snap"),
        [150, 350, 450, 500, 550, 600]
            .iter()
            .map(|c| format!("{c:020}.snap"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        files(dir.path(), "wal").first().unwrap(),
        &format!("{:020}.seg", 151)
    );

    // The read planned before still finishes correctly (its files are pinned).
    let got = tokio::task::spawn_blocking(move || early.execute())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, at(&docs[120], "users"));

    for c in 0..=610u64 {
        let got = store.read("users.u5", c).await;
        if c < 150 {
            assert_eq!(
                got,
                Err(Error::Compacted {
                    commit: c,
                    oldest: 150
                }),
                "at {c}"
            );
        } else {
            assert_eq!(got.unwrap(), at(&docs[c as usize], "users.u5"), "at {c}");
        }
    }
    // Compacting again changes nothing.
    let again = store.compactor.ask(CompactAt { now }).await.unwrap();
    assert!(again.dropped_snapshots.is_empty() && again.dropped_segments.is_empty());
    assert_eq!(again.oldest_commit, 150);
    store.close().await;

    // Reopen: the horizon comes back from the files.
    let store = open(dir.path(), POLICY).await.unwrap();
    assert_eq!(store.catalog.horizon(), 150);
    assert!(matches!(
        store.read("", 149).await,
        Err(Error::Compacted { oldest: 150, .. })
    ));
    for c in (150..=610u64).step_by(7) {
        assert_eq!(store.read("", c).await.unwrap(), docs[c as usize], "at {c}");
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_all_and_age_policies() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Retention::KeepAll).await.unwrap();
    build(&store).await;
    let r = store
        .compactor
        .ask(CompactAt {
            now: SystemTime::now(),
        })
        .await
        .unwrap();
    assert!(r.dropped_snapshots.is_empty() && r.dropped_segments.is_empty());
    assert_eq!(r.oldest_commit, 0);
    store.close().await;
    // Age: everything older than a day is thinned out to the anchor.
    let age = Retention::Tiered {
        keep_recent: Cutoff::Age(Duration::from_secs(86_400)),
        per_tier: 0,
        first_tier: 1,
        multiplier: 1,
    };
    let store = open(dir.path(), age).await.unwrap();
    let later = SystemTime::now() + Duration::from_secs(2 * 86_400);
    let r = store.compactor.ask(CompactAt { now: later }).await.unwrap();
    // Nothing is recent: B = 611, the anchor (and newest) is 600.
    assert_eq!(
        r.dropped_snapshots,
        (1..=11).map(|k| k * 50).collect::<Vec<_>>()
    );
    assert_eq!(r.oldest_commit, 600);
    assert_eq!(r.dropped_segments.len(), 12);
    let docs = fold(&(1..=610u64).map(|i| w1(i, 20)).collect::<Vec<_>>());
    for c in 600..=610u64 {
        assert_eq!(store.read("", c).await.unwrap(), docs[c as usize]);
    }
    assert!(matches!(
        store.read("", 599).await,
        Err(Error::Compacted { oldest: 600, .. })
    ));
    store.close().await;
    let store = open(dir.path(), age).await.unwrap();
    assert_eq!(store.read("", 610).await.unwrap(), docs[610]);
    store.close().await;
}

/// Fails every `remove` after the first `allow`.
#[derive(Debug)]
struct FailRemoves {
    allow: AtomicUsize,
}

impl FileOps for FailRemoves {
    fn remove(&self, path: &Path) -> io::Result<()> {
        let left = self.allow.load(Ordering::SeqCst);
        if left == 0 {
            return Err(io::Error::other("injected: crash before this remove"));
        }
        self.allow.store(left - 1, Ordering::SeqCst);
        RealFs.remove(path)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_compaction_leaves_a_store_that_opens() {
    let docs = fold(&(1..=610u64).map(|i| w1(i, 20)).collect::<Vec<_>>());
    // Stop after 0, 1, 2, 4 and 7 removals (segments go first, then snapshots).
    for allow in [0usize, 1, 2, 4, 7] {
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(FailRemoves {
            allow: AtomicUsize::new(usize::MAX),
        });
        let store = open_with(dir.path(), POLICY, fs.clone()).await.unwrap();
        build(&store).await;
        fs.allow.store(allow, Ordering::SeqCst);
        let r = store
            .compactor
            .ask(CompactAt {
                now: SystemTime::now(),
            })
            .await
            .map_err(logd_actors::error::from_send);
        assert!(matches!(r, Err(Error::Io { op: "remove", .. })), "{r:?}");
        if allow % 2 == 1 {
            // Retried in the same process: the leftovers go too.
            fs.allow.store(usize::MAX, Ordering::SeqCst);
            let r = store
                .compactor
                .ask(CompactAt {
                    now: SystemTime::now(),
                })
                .await
                .unwrap();
            assert_eq!(r.oldest_commit, 150);
            assert_eq!(files(dir.path(), "snap").len(), 6, "after {allow} removals");
            assert_eq!(
                files(dir.path(), "wal").first().unwrap(),
                &format!("{:020}.seg", 151)
            );
        }
        store.close().await;
        let store = open(dir.path(), POLICY).await.unwrap();
        let h = store.catalog.horizon();
        assert!(h <= 150, "horizon {h} after {allow} removals");
        for c in (h..=610).step_by(11).chain([610]) {
            assert_eq!(store.read("", c).await.unwrap(), docs[c as usize], "at {c}");
        }
        // Finishing the compaction after the reopen reaches the same state.
        let r = store
            .compactor
            .ask(CompactAt {
                now: SystemTime::now(),
            })
            .await
            .unwrap();
        assert_eq!(r.oldest_commit, 150);
        assert_eq!(files(dir.path(), "snap").len(), 6);
        assert_eq!(store.read("", 150).await.unwrap(), docs[150]);
        store.close().await;
    }
}
