//! The model-based suite of issue 15: seeded random histories of
//! multi-participant transactions (matches, deletes inside arrays, sparse
//! arrays, conflicting paths), snapshots, compaction with tiered retention,
//! reopens and cancelled `commit()` calls, checked against a fold of the
//! merged patches (`common::Fold`'s states) at every retained commit and
//! path. Shrinks with proptest; the seed is fixed (reproducible) unless
//! `LOGD_MODEL_SEED` is set, and `LOGD_MODEL_CASES` sets the number of runs
//! (default 24; a long soak prints its figures).
//!
//! It would have caught bug 1 (a committed record that does not apply to
//! the fold), bug 2 (`switch_and_snapshot` returning `None`), bug 4 (a read
//! below the horizon answered from a cache), and bug 6 (a re-called
//! `commit()` after a cancelled one), each as a failing assertion below.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Fold, kp, runtime};
use logd::{
    Cutoff, Error, KPath, Node, Options, Outcome, Patch, PatchMeta, Retention, Storage, patch,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// The paths participants write: fields, a dense array's elements, a
/// sparse array's elements, and nested fields (so that some pairs
/// conflict: equal, nested, or mixed accessors).
const PATHS: &[&str] = &[
    "a", "b", "o.x", "o.y", "o", "arr[0]", "arr[1]", "arr[2]", "sp{0}", "sp{3}", "arr",
];

/// The paths every check reads, besides the root.
const READ_PATHS: &[&str] = &["a", "o", "o.x", "arr", "arr[1]", "sp", "sp{3}"];

#[derive(Clone, Debug)]
enum Data {
    Int(i8),
    /// `!delete v`
    Delete(Option<i8>),
    /// `{v: n}`
    Obj(i8),
    /// `[n, n+1, n+2]`
    Arr(i8),
}

impl Data {
    fn node(&self) -> Node {
        match self {
            Data::Int(n) => Node::int(i64::from(*n)),
            Data::Delete(None) => Node::tagged("delete", logd::Value::Null),
            Data::Delete(Some(n)) => Node::tagged("delete", logd::Value::Int(i64::from(*n))),
            Data::Obj(n) => Node::object([("v", Node::int(i64::from(*n)))]),
            Data::Arr(n) => {
                let n = i64::from(*n);
                Node::array([Node::int(n), Node::int(n + 1), Node::int(n + 2)])
            }
        }
    }
}

#[derive(Clone, Debug)]
struct Part {
    path: usize,
    data: Data,
    /// A match at this path: its current value (`true`: must hold) or a
    /// value it cannot have (`false`).
    matches: Option<bool>,
    /// Drop the first `commit()` future after one poll, then call again.
    cancel: bool,
}

#[derive(Clone, Debug)]
enum Op {
    Tx(Vec<Part>),
    Snapshot,
    Compact,
    Reopen,
}

fn data() -> impl Strategy<Value = Data> {
    prop_oneof![
        4 => (0i8..6).prop_map(Data::Int),
        2 => prop::option::of(0i8..6).prop_map(Data::Delete),
        1 => (0i8..6).prop_map(Data::Obj),
        2 => (0i8..4).prop_map(Data::Arr),
    ]
}

fn part() -> impl Strategy<Value = Part> {
    (
        0..PATHS.len(),
        data(),
        prop::option::weighted(0.2, any::<bool>()),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(path, data, matches, cancel)| Part {
            path,
            data,
            matches,
            cancel,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => prop::collection::vec(part(), 1..4).prop_map(Op::Tx),
        2 => Just(Op::Snapshot),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

fn options() -> Options {
    let mut o = common::buffered();
    o.segment_bytes = 1024;
    o.compaction = Retention::Tiered {
        keep_recent: Cutoff::Commits(6),
        per_tier: 1,
        first_tier: 8,
        multiplier: 2,
    };
    o
}

/// What the model says a transaction does to `state`: the new state, or
/// why nothing is written.
enum Expect {
    Commit(Option<Node>),
    NotMatched,
    Fails(String),
}

/// A participant's path, data and match.
type ModelPart = (KPath, Node, Option<(KPath, Node)>);

/// A participant as it runs: [`ModelPart`] plus whether its first
/// `commit()` is cancelled.
type RunPart = (KPath, Node, Option<(KPath, Node)>, bool);

fn expect(state: Option<&Node>, parts: &[ModelPart]) -> Expect {
    let merged = match patch::merge(
        &parts
            .iter()
            .map(|(p, d, _)| (p.clone(), d.clone()))
            .collect::<Vec<_>>(),
    ) {
        Ok(m) => m,
        Err(e) => return Expect::Fails(format!("merge: {e}")),
    };
    for (_, _, m) in parts {
        if let Some((path, pattern)) = m {
            let at = state.and_then(|s| s.get_path(path));
            match patch::matches(at, pattern) {
                Ok(true) => {}
                Ok(false) => return Expect::NotMatched,
                Err(e) => return Expect::Fails(format!("match: {e}")),
            }
        }
    }
    match patch::apply(state, &merged) {
        Ok(next) => Expect::Commit(next),
        Err(e) => Expect::Fails(format!("apply: {e}")),
    }
}

/// Runs one transaction of `parts`, each participant in its own task
/// (the others join with `get_tx`); a `cancel` participant's first
/// `commit()` is dropped after one poll.
async fn run_tx(s: &Storage, parts: &[RunPart]) -> Vec<Result<Outcome, Error>> {
    let tx = s.new_tx(parts.len(), PatchMeta::default()).await.unwrap();
    let id = tx.id();
    let mut tasks = Vec::new();
    for (path, data, m, cancel) in parts.iter().cloned() {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let tx = s.get_tx(id).await?;
            let mut p = Patch::new(path, data);
            if let Some((mp, pat)) = m {
                p = p.with_match(mp, pat);
            }
            let mut w = tx.new_patcher(p).await?;
            if cancel {
                let _ = tokio::time::timeout(Duration::ZERO, w.commit()).await;
            }
            let first = w.commit().await;
            assert_eq!(first, w.commit().await, "commit() is idempotent");
            first
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        let r = tokio::time::timeout(Duration::from_secs(20), t)
            .await
            .expect("a participant is answered")
            .unwrap();
        out.push(r);
    }
    out
}

/// Every retained commit reads as the fold (root and [`READ_PATHS`]);
/// every commit below the retained range is `Compacted` for every path.
async fn check(s: &Storage, fold: &Fold, label: &str) -> Result<(), TestCaseError> {
    let last = fold.last();
    prop_assert_eq!(s.current_commit(), last, "{}: current commit", label);
    let h = common::horizon(s).await;
    for c in 1..=last {
        let st = fold.states[c as usize].as_ref();
        for path in std::iter::once("").chain(READ_PATHS.iter().copied()) {
            let got = s.read_state_at(path, c).await;
            if c < h {
                prop_assert!(
                    matches!(got, Err(Error::Compacted { .. })),
                    "{}: {:?} at {} below horizon {}: {:?}",
                    label,
                    path,
                    c,
                    h,
                    got
                );
            } else {
                let want = st.and_then(|n| n.get_path(&kp(path))).cloned();
                prop_assert_eq!(
                    got,
                    Ok(want),
                    "{}: {:?} at {} (horizon {})",
                    label,
                    path,
                    c,
                    h
                );
            }
        }
    }
    Ok(())
}

/// Figures of one run, summed over runs for the soak's report.
#[derive(Default)]
struct Figures {
    committed: AtomicU64,
    refused: AtomicU64,
    not_matched: AtomicU64,
    snapshots: AtomicU64,
    reopens: AtomicU64,
}

async fn run(ops: Vec<Op>, figures: &Figures) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Storage::open(dir.path(), options()).await.unwrap();
    let mut fold = Fold::new();
    for (i, op) in ops.into_iter().enumerate() {
        match op {
            Op::Tx(parts) => {
                let state = fold.states.last().cloned().flatten();
                let parts: Vec<_> = parts
                    .iter()
                    .map(|p| {
                        let path = kp(PATHS[p.path]);
                        let m = p.matches.map(|holds| {
                            let cur = state.as_ref().and_then(|n| n.get_path(&path)).cloned();
                            let pattern = match (holds, cur) {
                                (true, Some(n)) => n,
                                (true, None) => Node::tagged("pass", logd::Value::Null),
                                (false, _) => Node::string("never"),
                            };
                            (path.clone(), pattern)
                        });
                        (path, p.data.node(), m, p.cancel)
                    })
                    .collect();
                let model: Vec<_> = parts
                    .iter()
                    .map(|(p, d, m, _)| (p.clone(), d.clone(), m.clone()))
                    .collect();
                let want = expect(state.as_ref(), &model);
                let before = s.current_commit();
                let got = run_tx(&s, &parts).await;
                prop_assert!(
                    got.iter().all(|g| g == &got[0]),
                    "op {}: one outcome for all: {:?}",
                    i,
                    got
                );
                match (&got[0], want) {
                    (Ok(Outcome::Committed { commit }), Expect::Commit(next)) => {
                        prop_assert_eq!(*commit, fold.last() + 1);
                        fold.states.push(next);
                        figures.committed.fetch_add(1, Ordering::Relaxed);
                    }
                    (Ok(Outcome::Committed { commit }), Expect::Fails(why)) => {
                        prop_assert!(
                            false,
                            "op {}: committed {} a record the fold refuses ({})",
                            i,
                            commit,
                            why
                        );
                    }
                    (Ok(Outcome::NotMatched), Expect::NotMatched) => {
                        figures.not_matched.fetch_add(1, Ordering::Relaxed);
                    }
                    (Err(Error::Patch(_) | Error::Conflict { .. }), Expect::Fails(_)) => {
                        figures.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    // The store may refuse what the fold accepts only for a
                    // dense index past the array's end (checked up front).
                    (Err(Error::Patch(_)), Expect::Commit(_))
                        if parts.iter().any(|(p, ..)| p.to_string().contains('[')) =>
                    {
                        figures.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    (other, want) => {
                        let want = match want {
                            Expect::Commit(_) => "commit".to_owned(),
                            Expect::NotMatched => "not matched".to_owned(),
                            Expect::Fails(w) => format!("failure ({w})"),
                        };
                        prop_assert!(
                            false,
                            "op {}: got {:?}, the model expects {}",
                            i,
                            other,
                            want
                        );
                    }
                }
                if !matches!(got[0], Ok(Outcome::Committed { .. })) {
                    prop_assert_eq!(s.current_commit(), before, "op {}: nothing written", i);
                }
            }
            Op::Snapshot => {
                let info = s.switch_and_snapshot().await.unwrap();
                prop_assert_eq!(
                    info.is_some(),
                    fold.last() > 0,
                    "op {}: a snapshot exactly when there are commits",
                    i
                );
                figures.snapshots.fetch_add(1, Ordering::Relaxed);
                check(&s, &fold, &format!("op {i} (snapshot)")).await?;
            }
            Op::Compact => {
                s.compact().await.unwrap();
                check(&s, &fold, &format!("op {i} (compact)")).await?;
            }
            Op::Reopen => {
                s.close().await.unwrap();
                s = Storage::open(dir.path(), options()).await.unwrap();
                figures.reopens.fetch_add(1, Ordering::Relaxed);
                check(&s, &fold, &format!("op {i} (reopen)")).await?;
            }
        }
    }
    check(&s, &fold, "end").await?;
    s.close().await.unwrap();
    let s = Storage::open(dir.path(), options()).await.unwrap();
    check(&s, &fold, "end, reopened").await?;
    s.close().await.unwrap();
    Ok(())
}

/// The model-based suite (module docs).
#[test]
fn random_histories_match_the_fold_of_merged_patches() {
    let cases = common::seed_from_env("LOGD_MODEL_CASES", 24) as u32;
    let seed = common::seed_from_env("LOGD_MODEL_SEED", 0x15_15_15);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let rt = runtime();
    let figures = Figures::default();
    let started = std::time::Instant::now();
    let result = runner.run(&prop::collection::vec(op(), 10..60), |ops| {
        rt.block_on(run(ops, &figures))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!(
        "model: seed {seed:#x}, {cases} runs in {:?}: {} commits, {} refused, {} not matched, {} snapshots, {} reopens",
        started.elapsed(),
        figures.committed.load(Ordering::Relaxed),
        figures.refused.load(Ordering::Relaxed),
        figures.not_matched.load(Ordering::Relaxed),
        figures.snapshots.load(Ordering::Relaxed),
        figures.reopens.load(Ordering::Relaxed),
    );
}

/// The balance of `acct.a{i}` at `commit`.
async fn balance(s: &Storage, i: usize, commit: u64) -> Result<i64, Error> {
    match s.read_state_at(&format!("acct.a{i}"), commit).await? {
        Some(n) => match n.value {
            logd::Value::Int(v) => Ok(v),
            _ => panic!("acct.a{i} at {commit}: {n}"),
        },
        None => panic!("acct.a{i} at {commit}: absent"),
    }
}

/// The sum of all balances at every retained commit from `from` on.
async fn check_total(s: &Storage, accounts: usize, total: i64, label: &str) -> u64 {
    let last = s.current_commit();
    let h = common::horizon(s).await.max(1);
    let mut checked = 0;
    for c in h..=last {
        // Automatic snapshots and compaction run in the background: the
        // horizon may pass `c` during this loop (then `Compacted` is right).
        let root = match s.read_state_at("acct", c).await {
            Err(Error::Compacted { oldest, .. }) if oldest > c => continue,
            other => other.unwrap(),
        };
        checked += 1;
        let Some(Node {
            value: logd::Value::Object(kv),
            ..
        }) = &root
        else {
            panic!("{label}: acct at {c}: {root:?}");
        };
        assert_eq!(kv.len(), accounts, "{label}: accounts at {c}");
        let sum: i64 = kv
            .iter()
            .map(|(_, v)| match v.value {
                logd::Value::Int(n) => n,
                _ => panic!("{label}: {v}"),
            })
            .sum();
        assert_eq!(sum, total, "{label}: total at commit {c}");
    }
    checked
}

/// Concurrent transfers between accounts, each a 2-participant transaction
/// whose participants match the balances they read (so a lost update is
/// `NotMatched`, never a wrong sum), with `commit()` calls cancelled at
/// random points and called again, snapshots and compaction running
/// alongside, and `close()` racing all of it at the end: the total balance
/// holds at every retained commit, before and after a reopen, and every
/// task ends. `LOGD_MODEL_SOAK_SECS` runs longer (default 2 s) and prints
/// its figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_keep_the_total_at_every_commit_while_closing() {
    const ACCOUNTS: usize = 6;
    const START: i64 = 100;
    let secs = common::seed_from_env("LOGD_MODEL_SOAK_SECS", 2);
    let seed = common::seed_from_env("LOGD_MODEL_SEED", 0x15_15_15);
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path(), options()).await.unwrap();
    {
        let tx = s.new_tx(ACCOUNTS, PatchMeta::default()).await.unwrap();
        let mut ws = Vec::new();
        for i in 0..ACCOUNTS {
            ws.push(
                tx.new_patcher(Patch::new(kp(&format!("acct.a{i}")), Node::int(START)))
                    .await
                    .unwrap(),
            );
        }
        let mut tasks = Vec::new();
        for mut w in ws {
            tasks.push(tokio::spawn(async move { w.commit().await }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(Outcome::Committed { commit: 1 }));
        }
    }
    let total = START * ACCOUNTS as i64;
    let committed = std::sync::Arc::new(AtomicU64::new(0));
    let lost = std::sync::Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..4u64 {
        let (s, committed, lost) = (s.clone(), committed.clone(), lost.clone());
        tasks.spawn(async move {
            let mut rng = common::Rng::new(seed ^ (t + 1));
            loop {
                let from = rng.below(ACCOUNTS as u64) as usize;
                let to = (from + 1 + rng.below(ACCOUNTS as u64 - 1) as usize) % ACCOUNTS;
                let amount = rng.range(1, 10) as i64;
                let at = s.current_commit();
                let (Ok(a), Ok(b)) = (balance(&s, from, at).await, balance(&s, to, at).await)
                else {
                    return;
                };
                let Ok(tx) = s.new_tx(2, PatchMeta::default()).await else {
                    return;
                };
                let id = tx.id();
                let cancel = rng.below(4) == 0;
                let s2 = s.clone();
                let other = tokio::spawn(async move {
                    let tx = s2.get_tx(id).await?;
                    let path = kp(&format!("acct.a{to}"));
                    let mut w = tx
                        .new_patcher(
                            Patch::new(path.clone(), Node::int(b + amount))
                                .with_match(path, Node::int(b)),
                        )
                        .await?;
                    w.commit().await
                });
                let path = kp(&format!("acct.a{from}"));
                let mine = async {
                    let mut w = tx
                        .new_patcher(
                            Patch::new(path.clone(), Node::int(a - amount))
                                .with_match(path, Node::int(a)),
                        )
                        .await?;
                    if cancel {
                        let _ = tokio::time::timeout(Duration::from_micros(50), w.commit()).await;
                    }
                    w.commit().await
                };
                let bound = Duration::from_secs(10);
                let x = tokio::time::timeout(bound, mine)
                    .await
                    .expect("participant a answered");
                let y = tokio::time::timeout(bound, other)
                    .await
                    .expect("participant b answered")
                    .unwrap();
                match (&x, &y) {
                    (Ok(Outcome::Committed { .. }), _) => {
                        assert_eq!(x, y, "one outcome");
                        committed.fetch_add(1, Ordering::Relaxed);
                    }
                    (Ok(Outcome::NotMatched), _) | (Err(Error::Conflict { .. }), _) => {
                        lost.fetch_add(1, Ordering::Relaxed);
                    }
                    (Err(Error::Closed), _) | (_, Err(Error::Closed)) => return,
                    (Err(Error::TxNotFound { .. }), _) if s.is_closed() => return,
                    other => panic!("transfer: {other:?}"),
                }
            }
        });
    }
    let maint = {
        let s = s.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                tokio::time::sleep(Duration::from_millis(40)).await;
                match s.switch_and_snapshot().await {
                    Ok(_) => n += 1,
                    Err(Error::Closed) => return n,
                    Err(e) => panic!("snapshot: {e}"),
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(secs)).await;
    // Check the invariant while the writers go on, then close under them.
    let checked = check_total(&s, ACCOUNTS, total, "live").await;
    tokio::time::timeout(Duration::from_secs(10), s.close())
        .await
        .expect("close ends")
        .unwrap();
    while let Some(r) = tokio::time::timeout(Duration::from_secs(10), tasks.join_next())
        .await
        .expect("every transfer task ends after close")
    {
        r.unwrap();
    }
    let snapshots = maint.await.unwrap();
    let s = Storage::open(dir.path(), options()).await.unwrap();
    let after = check_total(&s, ACCOUNTS, total, "reopened").await;
    s.close().await.unwrap();
    eprintln!(
        "transfers: {} committed, {} lost races, {snapshots} snapshots; total checked at {checked} commits live, {after} after reopen",
        committed.load(Ordering::Relaxed),
        lost.load(Ordering::Relaxed),
    );
    assert!(committed.load(Ordering::Relaxed) > 0);
}
