//! The index checkpoint (`ckpt/index.ckpt`), end to end.
//!
//! * A property test runs random commits, deletes, snapshots, compactions
//!   and reopens (some after damaging the checkpoint); after every reopen
//!   the store opened from the checkpoint answers exactly like a copy opened
//!   without it (full decode): reads of the root and a leaf at every commit,
//!   and `history` of several paths from every commit, errors included.
//! * Deterministic cases: a checkpoint written after a snapshot is used at
//!   open; a flipped byte anywhere, a cut at any length, a checkpoint from
//!   the future, one from another store, an older but valid one, and a
//!   leftover temp file all leave a store that opens and reads exactly.
//! * Close and open write one after a long run of commits.
//! * Faults injected into the checkpoint's own file operations (and a power
//!   loss after them) never cost a commit or a correct read.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Fault, FaultFs, Fold, runtime, small_segments};
use logd::{Cutoff, Durability, Error, KPath, Node, Options, Retention, Storage};
use logd_actors::checkpoint::{CheckpointStatus, checkpoint_path, read_checkpoint};
use proptest::prelude::*;

fn tiered() -> Retention {
    Retention::Tiered {
        keep_recent: Cutoff::Commits(10),
        per_tier: 1,
        first_tier: 8,
        multiplier: 2,
    }
}

/// Waits until the checkpoint on disk is at `commit` (background writes
/// are stopped by closing the store, so tests that need one wait for it).
async fn wait_for_checkpoint(dir: &Path, commit: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(c)) = read_checkpoint(dir)
            && c.commit == commit
        {
            return c.commit;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint at {commit} in {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One read's answer.
type Read = Result<Option<Node>, Error>;

/// Everything a reader can observe, for comparing two stores.
#[derive(Debug, PartialEq)]
struct Observed {
    current: u64,
    /// The root and `users.u2` at each commit.
    reads: Vec<(u64, Read, Read)>,
    history: Vec<(String, u64, Result<Vec<u64>, Error>)>,
}

async fn observe(s: &Storage) -> Observed {
    let current = s.current_commit();
    let leaf = KPath::parse("users.u2").unwrap();
    let mut reads = Vec::new();
    for c in 0..=current {
        let root = s.read_state_at("", c).await;
        let l = s.read_path_at(&leaf, c).await;
        reads.push((c, root, l));
    }
    let mut history = Vec::new();
    for p in ["", "users", "users.u1", "users.u2.sub", "users.u3.v", "t"] {
        for from in 0..=current {
            let h = s
                .history(p, from, current)
                .await
                .map(|l| l.iter().map(|c| c.commit).collect());
            history.push((p.to_string(), from, h));
        }
    }
    Observed {
        current,
        reads,
        history,
    }
}

/// Every readable commit reads as the model says; the others are compacted.
fn assert_exact(o: &Observed, m: &Fold, label: &str) {
    assert_eq!(o.current, m.last(), "{label}: current commit");
    let leaf = KPath::parse("users.u2").unwrap();
    let mut exact = false;
    for (c, root, l) in &o.reads {
        let want = &m.states[*c as usize];
        match (root, l) {
            (Ok(root), Ok(l)) => {
                assert_eq!(root, want, "{label}: root at {c}");
                let want_leaf = want.as_ref().and_then(|n| n.get_path(&leaf)).cloned();
                assert_eq!(l, &want_leaf, "{label}: users.u2 at {c}");
                exact = true;
            }
            (Err(Error::Compacted { .. }), _) | (_, Err(Error::Compacted { .. })) => {}
            other => panic!("{label}: reads at {c}: {other:?}"),
        }
    }
    assert!(exact || m.last() == 0, "{label}: nothing readable");
}

fn copy_dir(from: &Path, to: &Path, skip_checkpoint: bool) {
    std::fs::create_dir_all(to).unwrap();
    for ent in std::fs::read_dir(from).unwrap() {
        let ent = ent.unwrap();
        if skip_checkpoint && ent.file_name() == "ckpt" {
            continue;
        }
        let dst = to.join(ent.file_name());
        if ent.file_type().unwrap().is_dir() {
            copy_dir(&ent.path(), &dst, skip_checkpoint);
        } else {
            std::fs::copy(ent.path(), &dst).unwrap();
        }
    }
}

/// Opens `dir` (closed) and a copy of it without the checkpoint; both must
/// observe the same and match the model. Returns the store at `dir` and
/// what it did with the checkpoint.
async fn open_and_compare(
    dir: &Path,
    o: &Options,
    m: &Fold,
    label: &str,
) -> (Storage, CheckpointStatus) {
    let plain = tempfile::tempdir().unwrap();
    copy_dir(dir, plain.path(), true);
    let s = Storage::open(dir, o.clone()).await.unwrap();
    let status = s.checkpoint_status().clone();
    let full = Storage::open(plain.path(), o.clone()).await.unwrap();
    assert_eq!(full.checkpoint_status(), &CheckpointStatus::Absent);
    let (a, b) = (observe(&s).await, observe(&full).await);
    full.close().await.unwrap();
    assert_exact(&a, m, label);
    assert_eq!(a, b, "{label}: with checkpoint ({status:?}) vs full decode");
    (s, status)
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    None,
    Delete,
    Flip(u16, u8),
    Cut(u16),
}

#[derive(Clone, Debug)]
enum Op {
    Commit { n: u8, nested: bool, data: i8 },
    Delete { n: u8 },
    Snapshot,
    Compact,
    Reopen(Damage),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        4 => Just(Damage::None),
        1 => Just(Damage::Delete),
        1 => (any::<u16>(), 0u8..8).prop_map(|(a, b)| Damage::Flip(a, b)),
        1 => any::<u16>().prop_map(Damage::Cut),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..6, any::<bool>(), any::<i8>()).prop_map(|(n, nested, data)| Op::Commit { n, nested, data }),
        1 => (0u8..6).prop_map(|n| Op::Delete { n }),
        2 => Just(Op::Snapshot),
        1 => Just(Op::Compact),
        2 => damage().prop_map(Op::Reopen),
    ]
}

fn apply_damage(dir: &Path, d: Damage) -> bool {
    let p = checkpoint_path(dir);
    let Ok(mut bytes) = std::fs::read(&p) else {
        return false;
    };
    match d {
        Damage::None => return false,
        Damage::Delete => std::fs::remove_file(&p).unwrap(),
        Damage::Flip(at, bit) => {
            let i = at as usize % bytes.len();
            bytes[i] ^= 1 << bit;
            std::fs::write(&p, bytes).unwrap();
        }
        Damage::Cut(at) => {
            bytes.truncate(at as usize % bytes.len());
            std::fs::write(&p, bytes).unwrap();
        }
    }
    true
}

/// Runs `ops`; with `settle`, waits after each snapshot until its checkpoint
/// is on disk (closing stops a background write that has not finished).
async fn run(
    ops: Vec<Op>,
    auto: bool,
    retention: Retention,
    settle: bool,
) -> Result<usize, TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let o = small_segments(auto, retention);
    let mut s = Storage::open(dir.path(), o.clone()).await.unwrap();
    let mut m = Fold::new();
    let mut used = 0;
    for op in ops {
        match op {
            Op::Commit { n, nested, data } => m.commit_user(&s, n, nested, data).await,
            Op::Delete { n } => m.delete_user(&s, n).await,
            Op::Snapshot => {
                let info = s.switch_and_snapshot().await.unwrap();
                if let (true, Some(info)) = (settle, info) {
                    wait_for_checkpoint(dir.path(), info.commit).await;
                }
            }
            Op::Compact => {
                s.compact().await.unwrap();
            }
            Op::Reopen(d) => {
                s.close().await.unwrap();
                let damaged = apply_damage(dir.path(), d);
                let label = format!("reopen at {} after {d:?}", m.last());
                let (next, status) = open_and_compare(dir.path(), &o, &m, &label).await;
                if damaged {
                    prop_assert!(
                        !matches!(status, CheckpointStatus::Used { .. }),
                        "{}: a damaged checkpoint was used: {:?}",
                        label,
                        status
                    );
                }
                used += matches!(status, CheckpointStatus::Used { .. }) as usize;
                s = next;
            }
        }
    }
    s.close().await.unwrap();
    let (s, status) = open_and_compare(dir.path(), &o, &m, "final reopen").await;
    used += matches!(status, CheckpointStatus::Used { .. }) as usize;
    s.close().await.unwrap();
    Ok(used)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    #[test]
    fn reopen_from_a_checkpoint_answers_like_a_full_decode(ops in prop::collection::vec(op(), 1..50)) {
        runtime().block_on(run(ops, false, tiered(), false))?;
    }

    #[test]
    fn the_same_with_automatic_snapshots(ops in prop::collection::vec(op(), 1..50)) {
        runtime().block_on(run(ops, true, tiered(), false))?;
    }
}

/// A fixed run that must use the checkpoint (the property test's runs may
/// happen not to): snapshots, compaction and reopens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_is_used_across_snapshots_and_compaction() {
    let mut ops = Vec::new();
    for round in 0..6u8 {
        for i in 0..9u8 {
            ops.push(Op::Commit {
                n: (round + i) % 6,
                nested: i % 3 == 0,
                data: (round * 9 + i) as i8,
            });
        }
        ops.push(Op::Snapshot);
        if round % 2 == 1 {
            ops.push(Op::Compact);
            ops.push(Op::Reopen(Damage::None));
        }
    }
    let used = run(ops, false, tiered(), true).await.unwrap();
    assert!(used >= 3, "the checkpoint was used at {used} reopens");
}

/// A golden store: commits, a snapshot (whose checkpoint is waited for),
/// then more commits; closed.
async fn golden(o: &Options, before: u8, after: u8, tag: &str) -> (tempfile::TempDir, Fold, u64) {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path(), o.clone()).await.unwrap();
    let mut m = Fold::new();
    for i in 0..before {
        let data = Node::object([(tag, Node::int(i64::from(i)))]);
        m.commit(&s, &format!("users.u{}", i % 5), data).await;
    }
    let snap = s.switch_and_snapshot().await.unwrap().unwrap().commit;
    assert_eq!(wait_for_checkpoint(dir.path(), snap).await, snap);
    for i in 0..after {
        let data = Node::object([(tag, Node::int(100 + i64::from(i)))]);
        m.commit(&s, &format!("users.u{}.v", i % 4), data).await;
    }
    s.close().await.unwrap();
    (dir, m, snap)
}

async fn open_copy(from: &Path, o: &Options, m: &Fold, label: &str) -> CheckpointStatus {
    let work = tempfile::tempdir().unwrap();
    copy_dir(from, work.path(), false);
    let (s, status) = open_and_compare(work.path(), o, m, label).await;
    s.close().await.unwrap();
    status
}

fn is_ignored(s: &CheckpointStatus) -> bool {
    matches!(s, CheckpointStatus::Ignored { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_stale_or_foreign_checkpoints_are_ignored() {
    let o = small_segments(false, Retention::KeepAll);
    let (g, m, snap) = golden(&o, 30, 6, "a").await;
    let status = open_copy(g.path(), &o, &m, "undamaged").await;
    assert_eq!(status, CheckpointStatus::Used { commit: snap });
    let ckpt = std::fs::read(checkpoint_path(g.path())).unwrap();

    // Every byte flipped (one bit each), and every cut: never used, never
    // a failed open, reads exact.
    let work = tempfile::tempdir().unwrap();
    copy_dir(g.path(), work.path(), false);
    let p = checkpoint_path(work.path());
    let mut ignored = 0;
    for i in 0..ckpt.len() {
        let mut b = ckpt.clone();
        b[i] ^= 1 << (i % 8);
        std::fs::write(&p, &b).unwrap();
        let s = Storage::open(work.path(), o.clone()).await.unwrap();
        assert!(is_ignored(s.checkpoint_status()), "flip at {i}");
        let c = s.current_commit();
        assert_eq!(c, m.last());
        assert_eq!(s.read_state_at("", c).await.unwrap(), m.states[c as usize]);
        assert_eq!(
            s.read_state_at("", snap).await.unwrap(),
            m.states[snap as usize]
        );
        s.close().await.unwrap();
        ignored += 1;
    }
    for len in 0..ckpt.len() {
        std::fs::write(&p, &ckpt[..len]).unwrap();
        let s = Storage::open(work.path(), o.clone()).await.unwrap();
        assert!(is_ignored(s.checkpoint_status()), "cut at {len}");
        assert_eq!(s.current_commit(), m.last());
        s.close().await.unwrap();
    }
    eprintln!(
        "checkpoint: {ignored} flips and {} cuts ignored",
        ckpt.len()
    );
    // A sample of them in full (every read and history against a full decode).
    for i in [0, 9, 17, 44, 47, 48, ckpt.len() / 2, ckpt.len() - 1] {
        let mut b = ckpt.clone();
        b[i] ^= 0x10;
        let w = tempfile::tempdir().unwrap();
        copy_dir(g.path(), w.path(), false);
        std::fs::write(checkpoint_path(w.path()), &b).unwrap();
        let (s, status) = open_and_compare(w.path(), &o, &m, &format!("flip at {i}")).await;
        assert!(is_ignored(&status));
        s.close().await.unwrap();
    }

    // From the future: the same store, later (commits and a snapshot more),
    // copied into the earlier one.
    let later = tempfile::tempdir().unwrap();
    copy_dir(g.path(), later.path(), false);
    {
        let s = Storage::open(later.path(), o.clone()).await.unwrap();
        let mut lm = m.clone();
        for i in 0..5 {
            lm.commit(&s, "users.u1", Node::int(i)).await;
        }
        let at = s.switch_and_snapshot().await.unwrap().unwrap().commit;
        wait_for_checkpoint(later.path(), at).await;
        s.close().await.unwrap();
    }
    let w = tempfile::tempdir().unwrap();
    copy_dir(g.path(), w.path(), false);
    std::fs::copy(checkpoint_path(later.path()), checkpoint_path(w.path())).unwrap();
    let (s, status) = open_and_compare(w.path(), &o, &m, "future checkpoint").await;
    assert!(is_ignored(&status), "{status:?}");
    wait_for_checkpoint(w.path(), m.last()).await;
    s.close().await.unwrap();
    // Ignored ones are replaced at open: the next open uses the new one.
    let s = Storage::open(w.path(), o.clone()).await.unwrap();
    assert_eq!(
        s.checkpoint_status(),
        &CheckpointStatus::Used { commit: m.last() }
    );
    s.close().await.unwrap();

    // From another store with the same number of commits (different data
    // of the same shape): the locations or the last record's CRC differ.
    let (other, _, other_snap) = golden(&o, 30, 6, "b").await;
    assert_eq!(other_snap, snap);
    let w = tempfile::tempdir().unwrap();
    copy_dir(g.path(), w.path(), false);
    std::fs::copy(checkpoint_path(other.path()), checkpoint_path(w.path())).unwrap();
    let (s, status) = open_and_compare(w.path(), &o, &m, "foreign checkpoint").await;
    assert!(is_ignored(&status), "{status:?}");
    s.close().await.unwrap();

    // An older but valid checkpoint of the same store is used.
    let newer = tempfile::tempdir().unwrap();
    copy_dir(g.path(), newer.path(), false);
    let mut nm = m.clone();
    {
        let s = Storage::open(newer.path(), o.clone()).await.unwrap();
        for i in 0..4 {
            nm.commit(&s, "users.u4", Node::int(i)).await;
        }
        let at = s.switch_and_snapshot().await.unwrap().unwrap().commit;
        wait_for_checkpoint(newer.path(), at).await;
        s.close().await.unwrap();
    }
    std::fs::write(checkpoint_path(newer.path()), &ckpt).unwrap();
    let status = open_copy(newer.path(), &o, &nm, "older checkpoint").await;
    assert_eq!(status, CheckpointStatus::Used { commit: snap });

    // A leftover temp file (a crash while writing one) is removed.
    let w = tempfile::tempdir().unwrap();
    copy_dir(g.path(), w.path(), false);
    let tmp = checkpoint_path(w.path()).with_extension("ckpt.tmp");
    std::fs::write(&tmp, &ckpt[..ckpt.len() / 2]).unwrap();
    let (s, status) = open_and_compare(w.path(), &o, &m, "leftover temp file").await;
    assert_eq!(status, CheckpointStatus::Used { commit: snap });
    assert!(!tmp.exists());
    s.close().await.unwrap();
}

/// Close advances the checkpoint after many commits; open writes one after
/// a long decode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_and_open_write_checkpoints_after_long_runs() {
    let o = small_segments(false, Retention::KeepAll);
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path(), o.clone()).await.unwrap();
    let mut m = Fold::new();
    for i in 0..1100i64 {
        m.commit(&s, &format!("users.u{}", i % 40), Node::int(i))
            .await;
    }
    s.close().await.unwrap();
    let at = read_checkpoint(dir.path()).unwrap().map(|c| c.commit);
    assert_eq!(at, Some(1100), "close wrote a checkpoint");
    let s = Storage::open(dir.path(), o.clone()).await.unwrap();
    assert_eq!(
        s.checkpoint_status(),
        &CheckpointStatus::Used { commit: 1100 }
    );
    for c in [1, 40, 555, 1099, 1100] {
        assert_eq!(s.read_state_at("", c).await.unwrap(), m.states[c as usize]);
    }
    let h = s.history("users.u7", 0, 1100).await.unwrap();
    assert_eq!(h.len(), 1100 / 40 + 1);
    s.close().await.unwrap();

    std::fs::remove_file(checkpoint_path(dir.path())).unwrap();
    let s = Storage::open(dir.path(), o.clone()).await.unwrap();
    assert_eq!(s.checkpoint_status(), &CheckpointStatus::Absent);
    wait_for_checkpoint(dir.path(), 1100).await;
    s.close().await.unwrap();
    let at = read_checkpoint(dir.path()).unwrap().map(|c| c.commit);
    assert_eq!(
        at,
        Some(1100),
        "open wrote a checkpoint after a long decode"
    );
    let (s, status) = open_and_compare(dir.path(), &o, &m, "after open wrote it").await;
    assert_eq!(status, CheckpointStatus::Used { commit: 1100 });
    s.close().await.unwrap();
}

/// Faults in the checkpoint's own writes (each call, each kind, once or
/// for good), then a power loss: the store opens, nothing acknowledged is
/// lost, every read is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_in_checkpoint_writes_cost_nothing() {
    let mut o = small_segments(false, Retention::KeepAll);
    o.durability = Durability::Immediate;
    let mut cases = 0;
    let mut fired = 0;
    for at in 0..7u64 {
        for fault in Fault::ALL {
            for sticky in [false, true] {
                let dir = tempfile::tempdir().unwrap();
                let fs = Arc::new(FaultFs::checkpoint_only(at, fault, sticky));
                let (s, _) = Storage::open_with(dir.path(), o.clone(), fs.clone())
                    .await
                    .unwrap();
                let mut m = Fold::new();
                for round in 0..3 {
                    for i in 0..4 {
                        m.commit(&s, &format!("users.u{i}"), Node::int(round)).await;
                    }
                    let snap = s.switch_and_snapshot().await.unwrap().unwrap().commit;
                    // Let the background write run (or fail on the fault).
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while fs.fired().is_none()
                        && read_checkpoint(dir.path())
                            .ok()
                            .flatten()
                            .is_none_or(|c| c.commit < snap)
                    {
                        assert!(Instant::now() < deadline, "no checkpoint at {snap}");
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                m.commit(&s, "users.u1", Node::int(9)).await;
                s.close().await.unwrap();
                cases += 1;
                fired += fs.fired().is_some() as usize;
                fs.lose_unsynced(dir.path());
                let label = format!("{fault:?} at checkpoint call {at}, sticky {sticky}");
                let (s, _) = open_and_compare(dir.path(), &o, &m, &label).await;
                s.close().await.unwrap();
            }
        }
    }
    eprintln!("checkpoint: {cases} fault cases, {fired} fired");
    assert!(
        fired * 2 >= cases,
        "most faults must fire ({fired} of {cases})"
    );
}
