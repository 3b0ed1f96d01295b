//! Injected I/O faults through the `FileOps` seam (`Storage::open_with`).
//!
//! A small workload (open, commits, a 2-participant transaction, two
//! `switch_and_snapshot`s, a `compact` that deletes files, close) runs once
//! on a counting [`FaultFs`] to number every write-side file operation; then,
//! for every call number N and every fault kind that applies to that call
//! (EIO on write, EIO on fsync, ENOSPC, short write, EIO on
//! open/rename/truncate/remove), the workload runs again with that fault at
//! call N. Every operation runs under a timeout (no hang) and returns
//! `Ok` or a typed `Error` (no panic: a panic hook counts them). Afterwards a
//! power loss is simulated (every file cut back to what was last fsynced
//! through the seam), the store is reopened on the real file system, and:
//! every acknowledged commit is there with its exact value (or
//! `Error::Compacted` below the horizon), commit numbers have no gaps, and a
//! new write gets the next commit number.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Fault, FaultFs, Op};
use logd::{Cutoff, Error, Node, Options, Outcome, Patch, PatchMeta, Retention, Storage, Value};

static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            prev(info);
        }));
    });
}

const STEP: Duration = Duration::from_secs(10);

fn options() -> Options {
    let mut o = Options::default();
    // Keep one recent commit: the second snapshot lets compaction delete
    // the first snapshot and the segments before it.
    o.compaction = Retention::Tiered {
        keep_recent: Cutoff::Commits(1),
        per_tier: 0,
        first_tier: 1,
        multiplier: 2,
    };
    o
}

/// An acknowledged write.
#[derive(Clone, Debug, PartialEq)]
struct Acked {
    commit: u64,
    path: &'static str,
    value: i64,
}

/// What a workload run saw.
#[derive(Debug, Default)]
struct Seen {
    acked: Vec<Acked>,
    errors: Vec<Error>,
    opened: bool,
}

async fn step<T>(
    what: &str,
    seen: &mut Seen,
    f: impl std::future::Future<Output = Result<T, Error>>,
) -> Option<T> {
    match tokio::time::timeout(STEP, f).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            seen.errors.push(e);
            None
        }
        Err(_) => panic!("{what} hangs"),
    }
}

async fn one(s: &Storage, seen: &mut Seen, path: &'static str, value: i64) {
    let r = step("commit", seen, async {
        let tx = s.new_tx(1, PatchMeta::default()).await?;
        let mut p = tx
            .new_patcher(Patch::new(common::kp(path), Node::int(value)))
            .await?;
        p.commit().await
    })
    .await;
    match r {
        Some(Outcome::Committed { commit }) => seen.acked.push(Acked {
            commit,
            path,
            value,
        }),
        Some(other) => panic!("unconditional write gave {other:?}"),
        None => {}
    }
}

async fn pair(s: &Storage, seen: &mut Seen, value: i64) {
    let tx = match step("new_tx", seen, s.new_tx(2, PatchMeta::default())).await {
        Some(tx) => tx,
        None => return,
    };
    let (a, b) = (tx.clone(), tx);
    let ra = tokio::spawn(async move {
        let mut p = a
            .new_patcher(Patch::new(common::kp("t.p0"), Node::int(value)))
            .await?;
        p.commit().await
    });
    let rb = tokio::spawn(async move {
        let mut p = b
            .new_patcher(Patch::new(common::kp("t.p1"), Node::int(value)))
            .await?;
        p.commit().await
    });
    let (ra, rb) = tokio::time::timeout(STEP, async { (ra.await, rb.await) })
        .await
        .expect("2-participant transaction hangs");
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra, rb, "participants see different outcomes");
    match ra {
        Ok(Outcome::Committed { commit }) => {
            for path in ["t.p0", "t.p1"] {
                seen.acked.push(Acked {
                    commit,
                    path,
                    value,
                });
            }
        }
        Ok(other) => panic!("unconditional transaction gave {other:?}"),
        Err(e) => seen.errors.push(e),
    }
}

/// The workload; every step is attempted whatever failed before.
async fn workload(dir: &Path, fs: Arc<FaultFs>) -> Seen {
    let mut seen = Seen::default();
    let opened = step(
        "open",
        &mut seen,
        Storage::open_with(dir, options(), fs.clone()),
    )
    .await;
    let Some((s, _)) = opened else {
        return seen;
    };
    seen.opened = true;
    one(&s, &mut seen, "a", 1).await;
    one(&s, &mut seen, "b", 2).await;
    step("snapshot", &mut seen, s.switch_and_snapshot()).await;
    pair(&s, &mut seen, 3).await;
    one(&s, &mut seen, "a", 4).await;
    step("snapshot", &mut seen, s.switch_and_snapshot()).await;
    one(&s, &mut seen, "c", 5).await;
    step("compact", &mut seen, s.compact()).await;
    one(&s, &mut seen, "a", 6).await;
    step("close", &mut seen, s.close()).await;
    drop(s);
    seen
}

/// Reopens on the real file system and checks the acks; returns the number
/// of acks verified exactly.
async fn check(dir: &Path, seen: &Seen, label: &str) -> usize {
    let s = tokio::time::timeout(STEP, Storage::open(dir, Options::default()))
        .await
        .unwrap_or_else(|_| panic!("{label}: reopen hangs"))
        .unwrap_or_else(|e| panic!("{label}: reopen failed: {e}"));
    let current = s.current_commit();
    // The current commit is readable before any new write (see
    // `reopen_with_an_empty_last_segment_after_compaction_reads_current`).
    let root = s.read_state_at("", current).await;
    assert!(root.is_ok(), "{label}: read at current {current}: {root:?}");
    // The store takes writes.
    let c = common::commit(&s, "after", Node::int(7)).await;
    assert_eq!(c, current + 1, "{label}: the store takes writes");
    let h = common::horizon(&s).await;
    let mut exact = 0;
    for a in &seen.acked {
        assert!(
            a.commit <= current,
            "{label}: ack {a:?} after current {current}"
        );
        let got = s.read_state_at(a.path, a.commit).await;
        if a.commit < h {
            assert!(
                matches!(got, Err(Error::Compacted { oldest, .. }) if oldest == h),
                "{label}: ack {a:?} below horizon {h}: {got:?}"
            );
        } else {
            assert_eq!(got, Ok(Some(Node::int(a.value))), "{label}: ack {a:?}");
            exact += 1;
        }
    }
    common::assert_gap_free(&s, h, 0, c, label).await;
    if let Ok(Some(t)) = s.read_state_at("t", current).await {
        let Value::Object(kv) = &t.value else {
            panic!("{label}: t is {t}")
        };
        assert_eq!(
            kv.len(),
            2,
            "{label}: the 2-participant commit is atomic: {t}"
        );
    }
    s.close().await.unwrap();
    exact
}

/// Found by the sweep below (fixed by `PathIndex::start_at`): when the newest segment holds no record
/// (its first write failed, or a crash came right after it was created)
/// and compaction deleted the segments before it, reopening gives a store
/// whose `current_commit()` is the snapshot's commit but whose index holds
/// no commit, so `read_state_at(_, current)` (and `history`, and snapshots)
/// fail with `FutureCommit { current: 0 }` until the next commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_with_an_empty_last_segment_after_compaction_reads_current() {
    let tmp = tempfile::tempdir().unwrap();
    // Find the first write into segment 3 in a clean run.
    let fs = Arc::new(FaultFs::counting());
    let seen = workload(tmp.path(), fs.clone()).await;
    assert!(seen.errors.is_empty());
    let n = fs
        .calls()
        .iter()
        .position(|(op, p)| *op == Op::Write && p.ends_with("00000000000000000003.seg"))
        .expect("a write into segment 3") as u64;
    let tmp = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultFs::failing(n, Fault::WriteEio));
    let seen = workload(tmp.path(), fs.clone()).await;
    assert!(fs.fired().is_some());
    assert_eq!(seen.acked.len(), 2, "commits 1 and 2 before the fault");
    let s = Storage::open(tmp.path(), Options::default()).await.unwrap();
    assert_eq!(s.current_commit(), 2);
    assert_eq!(s.read_state_at("b", 2).await, Ok(Some(Node::int(2))));
    // The records of commits 1 and 2 were compacted away: history says so
    // instead of listing nothing, and the empty range after them is fine.
    assert!(matches!(
        s.history("", 0, 2).await,
        Err(Error::Compacted {
            commit: 0,
            oldest: 2
        })
    ));
    assert_eq!(s.history("", 2, 2).await.map(|h| h.len()), Ok(0));
    // The next commit is 3, and reads at it and before it are exact.
    assert_eq!(common::commit(&s, "b", Node::int(3)).await, 3);
    assert_eq!(s.read_state_at("b", 2).await, Ok(Some(Node::int(2))));
    assert_eq!(s.history("", 2, 3).await.map(|h| h.len()), Ok(1));
    s.close().await.unwrap();
}

/// Which workload a sweep runs.
#[derive(Clone, Copy, Debug)]
enum Scenario {
    /// [`workload`] on an empty directory.
    Fresh,
    /// [`reopen_workload`] on a copy of a store with a torn tail and
    /// leftover temp files, so recovery's repairs meet the faults.
    Recover,
}

/// Reopens a damaged store (recovery truncates, removes leftovers), commits
/// once, snapshots, closes.
async fn reopen_workload(dir: &Path, fs: Arc<FaultFs>, base: &[Acked]) -> Seen {
    let mut seen = Seen {
        acked: base.to_vec(),
        ..Seen::default()
    };
    let opened = step(
        "open",
        &mut seen,
        Storage::open_with(dir, options(), fs.clone()),
    )
    .await;
    let Some((s, _)) = opened else {
        return seen;
    };
    seen.opened = true;
    one(&s, &mut seen, "d", 8).await;
    step("snapshot", &mut seen, s.switch_and_snapshot()).await;
    one(&s, &mut seen, "d", 9).await;
    step("close", &mut seen, s.close()).await;
    seen
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for ent in std::fs::read_dir(from).unwrap() {
        let ent = ent.unwrap();
        let dst = to.join(ent.file_name());
        if ent.file_type().unwrap().is_dir() {
            copy_dir(&ent.path(), &dst);
        } else {
            std::fs::copy(ent.path(), &dst).unwrap();
        }
    }
}

/// Builds the damaged store for [`Scenario::Recover`] in `dir`: the clean
/// workload, then the last record of the last segment cut in half, a
/// leftover segment temp file and a leftover snapshot temp file. Returns
/// the acks that must survive.
async fn damaged_template(dir: &Path) -> Vec<Acked> {
    let seen = workload(dir, Arc::new(FaultFs::counting())).await;
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    let last = seen.acked.iter().map(|a| a.commit).max().unwrap();
    let mut segs: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    segs.sort();
    let seg = segs.pop().unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    let scan = logd_core::wal::scan(&bytes).unwrap();
    let rec = scan.records.last().unwrap();
    assert_eq!(rec.entry.commit, last);
    let cut = rec.location.offset + u64::from(rec.location.len) / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(cut)
        .unwrap();
    std::fs::write(
        dir.join("wal/00000000000000000099.seg.tmp"),
        b"half a segment",
    )
    .unwrap();
    std::fs::write(
        dir.join("snap/00000000000000000099.snap.tmp"),
        b"half a snapshot",
    )
    .unwrap();
    seen.acked
        .into_iter()
        .filter(|a| a.commit != last)
        .collect()
}

async fn run(sc: Scenario, dir: &Path, fs: Arc<FaultFs>, base: &[Acked]) -> Seen {
    match sc {
        Scenario::Fresh => workload(dir, fs).await,
        Scenario::Recover => reopen_workload(dir, fs, base).await,
    }
}

/// Runs `sc` once to count calls, then once per call × fault kind ×
/// once/sticky; prints and checks the figures.
async fn sweep(sc: Scenario) {
    count_panics();
    let started = Instant::now();
    let template = tempfile::tempdir().unwrap();
    let base = match sc {
        Scenario::Fresh => Vec::new(),
        Scenario::Recover => damaged_template(template.path()).await,
    };
    let prepare = |into: &Path| {
        if let Scenario::Recover = sc {
            copy_dir(template.path(), into);
        }
    };
    // Count the calls of a clean run (and check it, power loss included).
    let tmp = tempfile::tempdir().unwrap();
    prepare(tmp.path());
    let fs = Arc::new(FaultFs::counting());
    let seen = run(sc, tmp.path(), fs.clone(), &base).await;
    assert!(seen.errors.is_empty(), "clean run: {:?}", seen.errors);
    fs.lose_unsynced(tmp.path());
    let exact = check(tmp.path(), &seen, "clean").await;
    assert!(exact > 0);
    let calls = fs.calls();
    let mut ops: std::collections::BTreeMap<Op, usize> = Default::default();
    for (op, _) in &calls {
        *ops.entry(*op).or_default() += 1;
    }

    let mut cases = Vec::new();
    for (n, (op, _)) in calls.iter().enumerate() {
        for fault in Fault::ALL {
            if fault.applies_to(*op) {
                for sticky in [false, true] {
                    cases.push((n as u64, fault, sticky));
                }
            }
        }
    }
    if let Ok(only) = std::env::var("LOGD_FAULT_ONLY") {
        cases.retain(|(n, f, st)| format!("{f:?}:{n}:{st}") == only);
    }
    let (mut fired, mut not_fired, mut with_errors, mut acks, mut cut) = (0, 0, 0, 0, 0);
    let mut open_failed = 0;
    // Two cases at a time: each is mostly waiting on fsync.
    for chunk in cases.chunks(2) {
        let mut set = tokio::task::JoinSet::new();
        for &(n, fault, sticky) in chunk {
            let tmp = tempfile::tempdir().unwrap();
            prepare(tmp.path());
            let base = base.clone();
            set.spawn(async move {
                let fs = Arc::new(if sticky {
                    FaultFs::failing_from(n, fault)
                } else {
                    FaultFs::failing(n, fault)
                });
                let seen = run(sc, tmp.path(), fs.clone(), &base).await;
                let lost = fs.lose_unsynced(tmp.path());
                let label = format!(
                    "{sc:?}: {fault:?} at call {n}, sticky {sticky} ({:?})",
                    fs.fired()
                );
                let exact = check(tmp.path(), &seen, &label).await;
                let fired = fs.fired().is_some();
                (fired, !seen.errors.is_empty(), seen.opened, exact, lost)
            });
        }
        while let Some(r) = set.join_next().await {
            let (f, e, o, exact, lost) = r.unwrap();
            if f {
                fired += 1;
            } else {
                not_fired += 1;
            }
            with_errors += e as usize;
            open_failed += !o as usize;
            acks += exact;
            cut += lost;
        }
    }
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "something panicked");
    eprintln!(
        "faults ({sc:?}): {} calls per run {ops:?}; {} fault cases (call × kind × once/sticky), \
         {fired} fired, {not_fired} did not (the run took another path), {with_errors} runs saw \
         errors, {open_failed} failed to open; {acks} acks verified after reopen; power loss \
         cut {cut} files; {:.1} s",
        calls.len(),
        cases.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(fired * 10 >= cases.len() * 9, "most faults must fire");
    assert_eq!(
        with_errors, fired,
        "every injected fault reaches a caller as an error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_at_every_call_keeps_acknowledged_commits() {
    sweep(Scenario::Fresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_during_recovery_keep_acknowledged_commits() {
    sweep(Scenario::Recover).await;
}

/// Faults under concurrency: writers (group commit), a snapshot loop and a
/// compaction loop run together on a `FaultFs` that fails a random call
/// (seeded: kind, once or sticky). Nothing may hang or panic; after a power
/// loss every acknowledged commit must still be there exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_faults_under_concurrent_load() {
    count_panics();
    let started = Instant::now();
    let rounds = common::seed_from_env("LOGD_FAULT_ROUNDS", 48);
    let mut rng = common::Rng::new(common::seed_from_env("LOGD_FAULT_SEED", 0xfa17));
    let (mut acks_total, mut fired, mut cut) = (0, 0, 0);
    for round in 0..rounds {
        let fault = Fault::ALL[rng.below(Fault::ALL.len() as u64) as usize];
        let n = rng.range(5, 150);
        let sticky = rng.below(2) == 0;
        let fs = Arc::new(if sticky {
            FaultFs::failing_from(n, fault)
        } else {
            FaultFs::failing_after(n, fault)
        });
        let tmp = tempfile::tempdir().unwrap();
        let label = format!("round {round}: {fault:?} at {n}, sticky {sticky}");
        let acked = Arc::new(std::sync::Mutex::new(Vec::<Acked>::new()));
        let opened =
            tokio::time::timeout(STEP, Storage::open_with(tmp.path(), options(), fs.clone()))
                .await
                .unwrap_or_else(|_| panic!("{label}: open hangs"));
        if let Ok((s, _)) = opened {
            let mut tasks = tokio::task::JoinSet::new();
            const PATHS: [&str; 4] = ["w0", "w1", "w2", "w3"];
            for path in PATHS {
                let (s, acked) = (s.clone(), acked.clone());
                tasks.spawn(async move {
                    let mut seen = Seen::default();
                    for v in 1..=40 {
                        one(&s, &mut seen, path, v).await;
                    }
                    acked.lock().unwrap().extend(seen.acked);
                });
            }
            for k in 0..2 {
                let s = s.clone();
                tasks.spawn(async move {
                    let mut seen = Seen::default();
                    for _ in 0..6 {
                        if k == 0 {
                            step("snapshot", &mut seen, s.switch_and_snapshot()).await;
                        } else {
                            step("compact", &mut seen, s.compact()).await;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                });
            }
            while let Some(r) = tokio::time::timeout(STEP * 3, tasks.join_next())
                .await
                .unwrap_or_else(|_| panic!("{label}: the load hangs"))
            {
                r.unwrap();
            }
            let mut seen = Seen::default();
            step("close", &mut seen, s.close()).await;
        }
        fired += fs.fired().is_some() as usize;
        cut += fs.lose_unsynced(tmp.path());
        let seen = Seen {
            acked: acked.lock().unwrap().clone(),
            ..Seen::default()
        };
        acks_total += check(tmp.path(), &seen, &label).await;
    }
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "something panicked");
    eprintln!(
        "faults (concurrent): {rounds} rounds, {fired} faults fired, {acks_total} acks verified \
         after a simulated power loss (cut {cut} files), {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
