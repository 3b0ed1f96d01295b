//! Automatic snapshots (`Options::snapshot_every`) through `logd::Storage`:
//! commits and sealed segments trigger snapshots on their own, reads stay
//! equal to the fold at every commit across them and after a reopen, and a
//! failed snapshot does not stop later ones.

mod common;
use common::commit;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use logd::{Durability, KPath, Node, Options, Retention, SnapshotEvery, Storage, patch};
use logd_actors::{FileOps, RealFs};

fn options(every: SnapshotEvery, durability: Durability) -> Options {
    let mut o = Options::default();
    o.durability = durability;
    o.snapshot_every = Some(every);
    o
}

fn buffered() -> Durability {
    Durability::Buffered {
        interval: Duration::from_millis(5),
    }
}

/// Commits `n` more patches (a mix of sets, overwrites and deletes) and
/// extends `states` (index = commit) with the fold.
async fn run(s: &Storage, states: &mut Vec<Option<Node>>, n: usize) {
    for _ in 0..n {
        let i = states.len() as i64;
        let path = format!("users.u{}", i % 11);
        let data = if i % 13 == 0 {
            Node::tagged("delete", logd::Value::Null)
        } else {
            Node::object([("n", Node::int(i)), ("tag", Node::string(format!("t{i}")))])
        };
        let c = commit(s, &path, data.clone()).await;
        assert_eq!(c as usize, states.len());
        let root = patch::merge(&[(KPath::parse(&path).unwrap(), data)]).unwrap();
        let prev = states.last().cloned().flatten();
        states.push(patch::apply(prev.as_ref(), &root).unwrap());
    }
}

/// Snapshot commits on disk, ascending.
fn snapshots(dir: &Path) -> Vec<u64> {
    let mut out: Vec<u64> = std::fs::read_dir(dir.join("snap"))
        .map(|rd| {
            rd.filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".snap")?.parse().ok()
            })
            .collect()
        })
        .unwrap_or_default();
    out.sort_unstable();
    out
}

/// Segment first commits on disk, ascending.
fn segments(dir: &Path) -> Vec<u64> {
    let mut out: Vec<u64> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".seg")?.parse().ok()
        })
        .collect();
    out.sort_unstable();
    out
}

/// Waits until `cond` holds on the snapshot list (automatic snapshots run
/// in the background).
async fn wait_for(dir: &Path, what: &str, cond: impl Fn(&[u64]) -> bool) -> Vec<u64> {
    let start = Instant::now();
    loop {
        let snaps = snapshots(dir);
        if cond(&snaps) {
            return snaps;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}; snapshots: {snaps:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn check(s: &Storage, states: &[Option<Node>]) {
    let leaf = KPath::parse("users.u4").unwrap();
    for (c, st) in states.iter().enumerate() {
        assert_eq!(
            &s.read_state_at("", c as u64).await.unwrap(),
            st,
            "root at {c}"
        );
        let want = st.as_ref().and_then(|n| n.get_path(&leaf)).cloned();
        assert_eq!(
            s.read_path_at(&leaf, c as u64).await.unwrap(),
            want,
            "users.u4 at {c}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_n_commits_snapshots_and_reads_stay_exact_across_reopen() {
    for durability in [Durability::Immediate, buffered()] {
        let dir = tempfile::tempdir().unwrap();
        let o = options(SnapshotEvery::Commits(40), durability);
        let s = Storage::open(dir.path(), o.clone()).await.unwrap();
        let mut states = vec![None];
        run(&s, &mut states, 130).await;
        // 130 commits, one snapshot due 40 commits after the last one: once
        // quiet, the newest snapshot is fewer than 40 commits behind.
        let snaps = wait_for(dir.path(), "snapshots up to the end", |v| {
            v.last().is_some_and(|&c| c > 130 - 40)
        })
        .await;
        assert!(snaps.len() >= 2, "{snaps:?}");
        let mut prev = 0;
        for &c in &snaps {
            assert!(
                c >= prev + 40,
                "{c} comes 40 commits after {prev}: {snaps:?}"
            );
            assert!(c <= 130);
            prev = c;
        }
        check(&s, &states).await;
        s.close().await.unwrap();

        // Reopen: the snapshots are used and reads stay exact; more commits
        // go on triggering snapshots.
        let s = Storage::open(dir.path(), o.clone()).await.unwrap();
        assert_eq!(s.current_commit(), 130);
        check(&s, &states).await;
        run(&s, &mut states, 60).await;
        let last = *snaps.last().unwrap();
        wait_for(dir.path(), "a snapshot after reopen", |v| {
            v.last().is_some_and(|&c| c >= last + 40 && c > 190 - 40)
        })
        .await;
        check(&s, &states).await;
        s.close().await.unwrap();
        let s = Storage::open(dir.path(), o).await.unwrap();
        check(&s, &states).await;
        s.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sealed_segment_is_snapshotted_at_its_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(SnapshotEvery::Segment, buffered());
    o.segment_bytes = 2048;
    let s = Storage::open(dir.path(), o.clone()).await.unwrap();
    let mut states = vec![None];
    run(&s, &mut states, 150).await;
    let segs = segments(dir.path());
    assert!(segs.len() >= 4, "small segments seal by size: {segs:?}");
    // Every sealed segment except possibly the newest one has a snapshot
    // at its last commit (the newest seal is noticed on the next commit).
    let sealed_ends: Vec<u64> = segs.windows(2).map(|w| w[1] - 1).collect();
    let want: Vec<u64> = sealed_ends[..sealed_ends.len() - 1].to_vec();
    let snaps = wait_for(dir.path(), "a snapshot per sealed segment", |v| {
        want.iter().all(|c| v.contains(c))
    })
    .await;
    for c in &snaps {
        assert!(
            sealed_ends.contains(c),
            "snapshot {c} is at a segment end {sealed_ends:?}"
        );
    }
    check(&s, &states).await;
    s.close().await.unwrap();
    let s = Storage::open(dir.path(), o).await.unwrap();
    check(&s, &states).await;
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_snapshots_are_followed_by_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(SnapshotEvery::Segment, buffered());
    o.segment_bytes = 2048;
    o.compaction = Retention::Tiered {
        keep_recent: logd::Cutoff::Commits(30),
        per_tier: 1,
        first_tier: 1_000_000,
        multiplier: 1,
    };
    let s = Storage::open(dir.path(), o.clone()).await.unwrap();
    let mut states = vec![None];
    run(&s, &mut states, 200).await;
    // Compaction runs after the automatic snapshots: old segments go.
    let start = Instant::now();
    while segments(dir.path()).first() == Some(&1) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no segment was compacted: {:?}",
            segments(dir.path())
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Every commit is either exact or reported as compacted, with no hole:
    // newest first, since an automatic snapshot still in flight may compact
    // more meanwhile (the horizon only rises, so once a commit reads as
    // compacted every older one must too).
    let mut exact = 0;
    let mut compacted_from = None;
    for (c, st) in states.iter().enumerate().skip(1).rev() {
        match s.read_state_at("", c as u64).await {
            Ok(n) => {
                assert_eq!(&n, st, "root at {c}");
                assert_eq!(
                    compacted_from, None,
                    "hole: {c} reads after a compacted commit"
                );
                exact += 1;
            }
            Err(logd::Error::Compacted { .. }) => {
                compacted_from.get_or_insert(c);
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(exact >= 30, "the recent commits stay readable");
    s.close().await.unwrap();
}

/// Real file operations, except that the first `fail` creations of a
/// snapshot temp file fail.
#[derive(Debug)]
struct FailSnapshots {
    fail: AtomicUsize,
    failed: AtomicUsize,
}

impl FileOps for FailSnapshots {
    fn create(&self, path: &Path, mode: u32) -> io::Result<File> {
        let is_snap = path.to_string_lossy().ends_with(".snap.tmp");
        if is_snap
            && self
                .fail
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(io::Error::other("injected: no space for snapshots"));
        }
        RealFs.create(path, mode)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_automatic_snapshot_does_not_stop_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FailSnapshots {
        fail: AtomicUsize::new(2),
        failed: AtomicUsize::new(0),
    });
    let o = options(SnapshotEvery::Commits(20), Durability::Immediate);
    let (s, _) = Storage::open_with(dir.path(), o.clone(), fs.clone())
        .await
        .unwrap();
    let mut states = vec![None];
    // Writers never wait: every commit is acknowledged although the first
    // snapshots fail.
    run(&s, &mut states, 120).await;
    let snaps = wait_for(dir.path(), "a snapshot after the failures", |v| {
        !v.is_empty()
    })
    .await;
    assert_eq!(
        fs.failed.load(Ordering::SeqCst),
        2,
        "both injected failures hit"
    );
    assert!(
        snaps.iter().all(|&c| c >= 40),
        "the first two due snapshots failed: {snaps:?}"
    );
    check(&s, &states).await;
    s.close().await.unwrap();
    // Closed: no snapshot is being written, and the failed ones left nothing.
    let leftovers: Vec<PathBuf> = std::fs::read_dir(dir.path().join("snap"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temp files left: {leftovers:?}");
    let s = Storage::open(dir.path(), o).await.unwrap();
    check(&s, &states).await;
    s.close().await.unwrap();
}
