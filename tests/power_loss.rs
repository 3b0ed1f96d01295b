//! Power-loss safety, proven on a simulated disk (`tests/simdisk`): what a
//! power cut can leave on the medium (not just what `kill -9` leaves, which
//! keeps the page cache) must open, keep every acknowledged commit exact at
//! its commit, and never reuse a commit number.
//!
//! `crash_states_recover` runs a real workload through `Storage` on a
//! [`SimDisk`] (commits, two-participant transactions, deletes, snapshots,
//! compaction with tiered retention, close), collects at every file-system
//! operation the images a power cut could leave under each crash model, and
//! opens every distinct image on the real file system. Then the double
//! fault of the power-loss issue: a process killed with unsynced data in
//! the page cache, a second process that opens that state, snapshots and
//! commits, and a power cut during the second run.
//!
//! Figures print with `--nocapture`; `LOGD_POWER_LOSS_ROUNDS=N` runs N
//! workloads (different seeds) instead of 3.
//!
//! Also here: the regression tests of the smaller items (store
//! creation, links, modes, leftovers below a snapshot, a snapshot beyond
//! the durable log).

mod common;
mod simdisk;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Fold, Rng, kp, seed_from_env};
use logd::{
    Cutoff, Durability, Error, Node, Options, Outcome, Patch, PatchMeta, Retention, Storage, patch,
};
use logd_actors::fileops::FileOps;
use simdisk::{Captured, CrashModel, Image, SimDisk};

/// The workload's options: durable, tiny segments (many seals), tiered
/// retention that really drops segments and snapshots.
fn workload_options() -> Options {
    let mut o = Options::default();
    o.durability = Durability::Immediate;
    o.segment_bytes = 700;
    o.commit_spin = Duration::ZERO;
    o.compaction = Retention::Tiered {
        keep_recent: Cutoff::Commits(4),
        per_tier: 1,
        first_tier: 4,
        multiplier: 2,
    };
    o
}

/// The workload's options for an existing store only (a lost store
/// directory must not come back empty).
fn reopen_options() -> Options {
    let mut o = workload_options();
    o.create = false;
    o
}

/// [`reopen_options`] for checking a crash image: buffered, since nothing
/// written there is acknowledged to anyone.
fn check_options() -> Options {
    let mut o = reopen_options();
    o.durability = Durability::Buffered {
        interval: Duration::from_millis(50),
    };
    o
}

/// One commit of `parts` (one participant each) in one transaction; acks it
/// on the disk and folds it. Returns the commit.
async fn commit_parts(s: &Storage, disk: &SimDisk, fold: &mut Fold, parts: Vec<(String, Node)>) {
    let tx = s.new_tx(parts.len(), PatchMeta::default()).await.unwrap();
    let mut patchers = Vec::new();
    for (p, d) in &parts {
        patchers.push(tx.new_patcher(Patch::new(kp(p), d.clone())).await.unwrap());
    }
    let outcomes = futures_join(patchers).await;
    let Outcome::Committed { commit } = outcomes[0] else {
        panic!("{outcomes:?}")
    };
    disk.ack(commit);
    let merged: Vec<_> = parts.iter().map(|(p, d)| (kp(p), d.clone())).collect();
    let root = patch::merge(&merged).unwrap();
    let prev = fold.states.last().cloned().flatten();
    assert_eq!(commit, fold.states.len() as u64);
    fold.states
        .push(patch::apply(prev.as_ref(), &root).unwrap());
}

/// Commits every patcher concurrently; every participant gets the same outcome.
async fn futures_join(patchers: Vec<logd::Patcher>) -> Vec<Outcome> {
    let handles: Vec<_> = patchers
        .into_iter()
        .map(|mut p| tokio::spawn(async move { p.commit().await.unwrap() }))
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    assert!(out.windows(2).all(|w| w[0] == w[1]), "{out:?}");
    out
}

/// Four commits at once (one batch, or several, possibly across a seal),
/// each acked as it returns, folded in commit order.
async fn burst(s: &Storage, disk: &Arc<SimDisk>, fold: &mut Fold, i: usize) {
    let mut tasks = Vec::new();
    for j in 0..4 {
        let (s, disk) = (s.clone(), disk.clone());
        let path = format!("c.k{j}");
        let data = Node::object([
            ("v", Node::int(i as i64)),
            ("pad", Node::string("y".repeat(60))),
        ]);
        tasks.push(tokio::spawn(async move {
            let Outcome::Committed { commit } =
                common::commit_one(&s, &path, data.clone()).await.unwrap()
            else {
                panic!("not committed")
            };
            disk.ack(commit);
            (commit, path, data)
        }));
    }
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.unwrap());
    }
    done.sort_by_key(|d| d.0);
    for (commit, path, data) in done {
        assert_eq!(commit, fold.states.len() as u64);
        let root = patch::merge(&[(kp(&path), data)]).unwrap();
        let prev = fold.states.last().cloned().flatten();
        fold.states
            .push(patch::apply(prev.as_ref(), &root).unwrap());
    }
}

/// The workload: `steps` random steps of commits, concurrent bursts,
/// transactions, deletes, snapshots and compactions.
async fn workload(s: &Storage, disk: &Arc<SimDisk>, fold: &mut Fold, rng: &mut Rng, steps: usize) {
    for i in 0..steps {
        match rng.below(11) {
            10 => burst(s, disk, fold, i).await,
            0 => {
                s.switch_and_snapshot().await.unwrap();
            }
            1 => {
                s.compact().await.unwrap();
            }
            2 => {
                let k = rng.below(4);
                let parts = vec![
                    (format!("a.k{k}"), Node::int(i as i64)),
                    (
                        format!("b.k{k}"),
                        Node::object([("at", Node::int(i as i64))]),
                    ),
                ];
                commit_parts(s, disk, fold, parts).await;
            }
            3 => {
                let k = rng.below(4);
                let del = Node::tagged("delete", logd::Value::Null);
                // Deleting an absent path is refused; only delete what exists.
                let last = fold.states.last().cloned().flatten();
                let path = kp(&format!("a.k{k}"));
                if last.and_then(|n| n.get_path(&path).cloned()).is_some() {
                    commit_parts(s, disk, fold, vec![(format!("a.k{k}"), del)]).await;
                }
            }
            _ => {
                let k = rng.below(4);
                let v = Node::object([
                    ("v", Node::int(i as i64)),
                    ("pad", Node::string("x".repeat(40))),
                ]);
                commit_parts(s, disk, fold, vec![(format!("a.k{k}"), v)]).await;
            }
        }
    }
}

/// Shuffles `v` with `rng` (Fisher-Yates).
fn rng_shuffle(v: &mut [usize], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i as u64 + 1) as usize);
    }
}

/// What exploring crash states found.
#[derive(Debug, Default)]
struct Tally {
    explored: BTreeMap<CrashModel, u64>,
    distinct: u64,
    opened: u64,
    empty: u64,
    lost: Vec<String>,
}

/// Opens `img` (its store at `root/store`) on the real file system and
/// checks it against `fold` with `acked` commits acknowledged. Returns the
/// store's current commit, or an error describing what went wrong.
async fn verify(img: &Image, root: &Path, acked: u64, fold: &Fold) -> Result<Option<u64>, String> {
    let tmp = tempfile::tempdir().unwrap();
    img.materialize(root, tmp.path()).unwrap();
    let dir = tmp.path().join("store");
    let s = match Storage::open(&dir, check_options()).await {
        Ok(s) => s,
        Err(Error::NoStore { .. }) if acked == 0 => return Ok(None),
        Err(e) => return Err(format!("open refused with {acked} acked: {e}")),
    };
    let current = s.current_commit();
    let mut bad = None;
    if current < acked {
        bad = Some(format!("{acked} acked, {current} recovered"));
    } else if current > fold.last() {
        bad = Some(format!(
            "commit {current} out of nowhere (made {})",
            fold.last()
        ));
    } else {
        let h = common::horizon(&s).await;
        for c in h..=current {
            let got = s
                .read_state_at("", c)
                .await
                .map_err(|e| format!("read at {c}: {e}"));
            match got {
                Ok(g) if g == fold.states[c as usize] => {}
                Ok(g) => {
                    bad = Some(format!(
                        "at {c}: read {g:?}, committed {:?}",
                        fold.states[c as usize]
                    ));
                    break;
                }
                Err(e) => {
                    bad = Some(e);
                    break;
                }
            }
        }
        // No commit number is reused: the next commit follows the last.
        if bad.is_none() {
            match common::commit_one(&s, "probe", Node::int(1)).await {
                Ok(Outcome::Committed { commit }) if commit == current + 1 => {}
                other => bad = Some(format!("probe commit after {current}: {other:?}")),
            }
        }
    }
    s.close().await.map_err(|e| format!("close: {e}"))?;
    match bad {
        Some(b) => Err(b),
        None => Ok(Some(current)),
    }
}

async fn explore(cap: Captured, root: &Path, fold: &Fold, t: &mut Tally, label: &str) {
    for (m, n) in cap.explored {
        *t.explored.entry(m).or_default() += n;
    }
    t.distinct += cap.images.len() as u64;
    for (img, acked, model) in cap.images.into_values() {
        match verify(&img, root, acked, fold).await {
            Ok(Some(_)) => t.opened += 1,
            Ok(None) => t.empty += 1,
            Err(e) => {
                if let Some(d) = std::env::var_os("LOGD_POWER_LOSS_DUMP") {
                    // Keep the failing image for a look with `logd check`.
                    let to = Path::new(&d).join(format!("fail-{}", t.lost.len()));
                    if std::fs::create_dir_all(&to).is_ok() {
                        let _ = img.materialize(root, &to);
                    }
                }
                t.lost.push(format!("{label} {model:?}: {e}"))
            }
        }
    }
}

/// One round: the workload on a capturing disk, every crash state checked,
/// then the double fault from a few kill points.
async fn round(seed: u64, t: &mut Tally, double_faults: usize) {
    let mut rng = Rng::new(seed);
    let root_dir = tempfile::tempdir().unwrap();
    let root = root_dir.path();
    let disk = Arc::new(SimDisk::new(root).capturing(16));
    let mut fold = Fold::new();
    let s = Storage::open_with(
        root.join("store"),
        workload_options(),
        disk.clone() as Arc<dyn FileOps>,
    )
    .await
    .unwrap()
    .0;
    workload(&s, &disk, &mut fold, &mut rng, 40).await;
    s.close().await.unwrap();
    let cap = disk.take_captured();
    let kills = cap.kills.clone();
    // Kill points inside a seal (records cut but not yet synced) first,
    // then random ones.
    let mut picks: Vec<usize> = cap.kills_in_seal.clone();
    rng_shuffle(&mut picks, &mut rng);
    picks.truncate(double_faults);
    while picks.len() < 2 * double_faults && !kills.is_empty() {
        picks.push(rng.below(kills.len() as u64) as usize);
    }
    explore(cap, root, &fold, t, &format!("seed {seed}")).await;

    // The double fault: killed at a point with unsynced data (the page
    // cache survives), reopened, written and snapshotted, then a power cut.
    for i in picks {
        let (durable, volatile, acked) = kills[i].clone();
        let root2_dir = tempfile::tempdir().unwrap();
        let root2 = root2_dir.path();
        volatile.materialize(root, root2).unwrap();
        let disk2 = Arc::new(
            SimDisk::resume(
                root2,
                durable.rebased(root, root2),
                volatile.rebased(root, root2),
            )
            .capturing(6)
            .acked_before(acked),
        );
        let s = match Storage::open_with(
            root2.join("store"),
            reopen_options(),
            disk2.clone() as Arc<dyn FileOps>,
        )
        .await
        {
            Ok((s, _)) => s,
            Err(Error::NoStore { .. }) if acked == 0 => continue,
            Err(e) => {
                t.lost
                    .push(format!("seed {seed} kill: reopen refused: {e}"));
                continue;
            }
        };
        let current = s.current_commit();
        let mut fold2 = Fold {
            states: fold.states[..=current as usize].to_vec(),
        };
        // Commits first: without open's fsync they would land after
        // records that only the page cache held.
        workload(&s, &disk2, &mut fold2, &mut rng, 4).await;
        s.switch_and_snapshot().await.unwrap();
        workload(&s, &disk2, &mut fold2, &mut rng, 4).await;
        s.close().await.unwrap();
        explore(
            disk2.take_captured(),
            root2,
            &fold2,
            t,
            &format!("seed {seed} double fault"),
        )
        .await;
    }
}

#[test]
fn crash_states_recover() {
    let rounds = seed_from_env("LOGD_POWER_LOSS_ROUNDS", 3);
    let base = seed_from_env("LOGD_POWER_LOSS_SEED", 0x5eed);
    let rt = common::runtime();
    let mut t = Tally::default();
    let started = std::time::Instant::now();
    for r in 0..rounds {
        rt.block_on(round(base + r, &mut t, 3));
    }
    let total: u64 = t.explored.values().sum();
    eprintln!(
        "power loss: {rounds} rounds, {total} crash states explored ({:?}), {} distinct: {} opened with every acknowledged commit exact, {} held no store yet, {} failures, {:.1} s",
        t.explored,
        t.distinct,
        t.opened,
        t.empty,
        t.lost.len(),
        started.elapsed().as_secs_f64()
    );
    for l in t.lost.iter().take(20) {
        eprintln!("LOST {l}");
    }
    assert!(
        t.lost.is_empty(),
        "{} crash states lost data or refused to open",
        t.lost.len()
    );
    assert!(
        total >= 5_000 || rounds < 2,
        "only {total} crash states explored"
    );
}

/// Power-loss item 4: a read of a missing directory does not create a
/// store, and a missing store is a typed error naming the path.
#[tokio::test]
async fn opening_a_missing_store_without_create_is_no_store_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = Options::default();
    o.create = false;
    for dir in [tmp.path().join("missing"), tmp.path().to_path_buf()] {
        match Storage::open(&dir, o.clone()).await {
            Err(Error::NoStore { dir: d }) => assert_eq!(d, dir),
            other => panic!("{other:?}"),
        }
    }
    assert!(!tmp.path().join("missing").exists());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

/// Power-loss item 5: a link named like the active segment made appends
/// and the seal's truncation hit a file outside the store.
#[tokio::test]
async fn a_symlinked_segment_is_refused_and_the_file_outside_is_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let s = Storage::open(&dir, Options::default()).await.unwrap();
    common::commit(&s, "a", Node::int(1)).await;
    s.close().await.unwrap();
    let outside = tmp.path().join("outside");
    std::fs::write(&outside, vec![7u8; 4096]).unwrap();
    let seg = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(&seg).unwrap();
    std::os::unix::fs::symlink(&outside, &seg).unwrap();
    match Storage::open(&dir, Options::default()).await {
        Err(Error::Symlink { path }) => assert_eq!(path, seg),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(&outside).unwrap(), vec![7u8; 4096]);
}

/// Power-loss item 6: modes are exactly `0o666 & !umask` and
/// `0o777 & !umask`, looser than the process umask too, and a rewrite of
/// `meta` keeps the mode the user gave it.
#[tokio::test]
async fn modes_are_exact_and_rewrites_keep_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mut o = Options::default();
    o.umask = 0o002;
    let s = Storage::open(&dir, o.clone()).await.unwrap();
    common::commit(&s, "a", Node::int(1)).await;
    s.switch_and_snapshot().await.unwrap();
    s.close().await.unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    // The test process runs with umask 022: 0o775 / 0o664 prove it is not applied.
    assert_eq!(mode(&dir), 0o775);
    assert_eq!(mode(&dir.join("wal")), 0o775);
    assert_eq!(mode(&dir.join("meta")), 0o664);
    for sub in ["wal", "snap"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            assert_eq!(mode(&e.unwrap().path()), 0o664, "{sub}");
        }
    }
    std::fs::set_permissions(dir.join("meta"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = Storage::open(&dir, o).await.unwrap();
    common::commit(&s, "a", Node::int(2)).await; // reserves tx ids: rewrites meta
    s.close().await.unwrap();
    assert_eq!(mode(&dir.join("meta")), 0o600);
}

/// Copies the regular files of `from` into `to`, recursively.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(e.file_name()));
        } else if e.file_name() != "LOCK" {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// Power-loss item 3: compaction's unlinks persisted out of order leave a
/// gap in the log below a durable snapshot; that is not corruption, and
/// the leftovers are removed at open.
#[tokio::test]
async fn a_gap_in_the_log_below_a_snapshot_opens_and_leftovers_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mut o = workload_options();
    o.compaction = Retention::KeepAll;
    let s = Storage::open(&dir, o.clone()).await.unwrap();
    let mut fold = Fold::new();
    for i in 0..30 {
        fold.commit(&s, &format!("k{}", i % 3), Node::int(i)).await;
    }
    s.switch_and_snapshot().await.unwrap();
    for i in 30..35 {
        fold.commit(&s, &format!("k{}", i % 3), Node::int(i)).await;
    }
    s.close().await.unwrap();
    let mut segs: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    assert!(segs.len() >= 4, "{segs:?}");
    // Of the segments below the snapshot, the unlink of the second one
    // reached the disk and that of the first did not.
    std::fs::remove_file(&segs[1]).unwrap();
    let s = Storage::open(&dir, o).await.unwrap();
    assert!(!segs[0].exists(), "the leftover below the gap is removed");
    let h = common::horizon(&s).await;
    assert_eq!(h, 30);
    for c in h..=35 {
        assert_eq!(
            s.read_state_at("", c).await.unwrap(),
            fold.states[c as usize]
        );
    }
    s.close().await.unwrap();
}

/// Power-loss item 1: a snapshot that claims commits beyond the durable
/// log (they were in a dead process's page cache, and a power cut took
/// them) is removed, never used: new commits take those numbers, and reads
/// at them show the new commits, not the lost ones.
#[tokio::test]
async fn a_snapshot_beyond_the_durable_log_is_never_used() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let before = tmp.path().join("before");
    let s = Storage::open(&dir, Options::default()).await.unwrap();
    for i in 1..=3 {
        common::commit(&s, "k", Node::int(i)).await;
    }
    s.close().await.unwrap();
    copy_tree(&dir, &before); // the durable medium: three commits
    let s = Storage::open(&dir, Options::default()).await.unwrap();
    for i in 4..=5 {
        common::commit(&s, "k", Node::int(i)).await;
    }
    s.switch_and_snapshot().await.unwrap(); // a snapshot at 5
    s.close().await.unwrap();
    // Power cut: the log's commits 4 and 5 are lost, the snapshot is not.
    copy_tree(&dir.join("snap"), &before.join("snap"));
    let s = Storage::open(&before, Options::default()).await.unwrap();
    assert_eq!(s.current_commit(), 3);
    assert!(s.read_state_at("", 5).await.is_err());
    for i in 40..=42 {
        common::commit(&s, "k", Node::int(i)).await;
    }
    s.close().await.unwrap();
    let s = Storage::open(&before, Options::default()).await.unwrap();
    assert_eq!(s.read_state_at("k", 5).await.unwrap(), Some(Node::int(41)));
    assert_eq!(s.read_state_at("k", 3).await.unwrap(), Some(Node::int(3)));
    s.close().await.unwrap();
}
