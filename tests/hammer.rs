//! Concurrency hammer through `logd::Storage`: transactions whose
//! participants join late, drop their `Patcher` without committing, commit
//! twice, or race `get_tx` against the transaction's timeout; and
//! `switch_and_snapshot` and `compact` called from many tasks while writers
//! and readers run. Every operation runs under `tokio::time::timeout` (a
//! deadlock fails the test instead of hanging it), and the final state is
//! checked against every acknowledgement, before and after a reopen.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Ack, Rng, latest_per_path};
use logd::{Cutoff, Error, Node, Options, Outcome, Patch, PatchMeta, Retention, Storage, TxId};
use tokio::time::timeout;

/// The longest any single operation may take.
const OP: Duration = Duration::from_secs(20);

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    timeout(OP, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {OP:?}: deadlock?"))
}

fn meta(max: Duration) -> PatchMeta {
    PatchMeta {
        max_duration: Some(max),
        ..PatchMeta::default()
    }
}

/// Joins transaction `id` as a participant writing `value` at `path`, after
/// `delay`; commits twice and checks both answers are the same.
async fn join(
    s: Storage,
    id: TxId,
    path: String,
    value: i64,
    delay: Duration,
) -> Result<Outcome, Error> {
    tokio::time::sleep(delay).await;
    let tx = s.get_tx(id).await?;
    let mut p = tx
        .new_patcher(Patch::new(common::kp(&path), Node::int(value)))
        .await?;
    let first = bounded("commit", p.commit()).await;
    let again = bounded("second commit", p.commit()).await;
    assert_eq!(first, again, "commit() is idempotent");
    first
}

/// Checks every ack (exact at its commit, or `Compacted` below the horizon)
/// and the newest value of every path at the current commit.
async fn verify(s: &Storage, acks: &[Ack]) -> (usize, u64) {
    let h = common::horizon(s).await;
    let mut exact = 0;
    for a in acks {
        let got = bounded("read", s.read_state_at(&a.path, a.commit)).await;
        if a.commit < h {
            assert!(
                matches!(got, Err(Error::Compacted { oldest, .. }) if oldest == h),
                "{a:?}: {got:?}"
            );
        } else {
            assert_eq!(got, Ok(Some(Node::int(a.value))), "{a:?} (horizon {h})");
            exact += 1;
        }
    }
    let current = s.current_commit();
    for (path, a) in latest_per_path(acks) {
        let got = bounded("read", s.read_state_at(&path, current)).await;
        assert_eq!(got, Ok(Some(Node::int(a.value))), "{path} now");
    }
    (exact, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_dropped_double_and_racing_participants() {
    let (dir, s) = common::open_temp(Options::default()).await;
    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
    let mut rng = Rng::new(common::seed_from_env("LOGD_HAMMER_SEED", 7));
    let mut tasks = tokio::task::JoinSet::new();

    // Background writers.
    for w in 0..4 {
        let (s, acks) = (s.clone(), acks.clone());
        tasks.spawn(async move {
            for i in 1..=60i64 {
                let path = format!("bg.w{w}");
                let c = bounded("write", common::commit(&s, &path, Node::int(i))).await;
                acks.lock().unwrap().push(Ack {
                    commit: c,
                    path,
                    value: i,
                });
            }
        });
    }

    // Late joiners: three participants arriving at random times within the
    // deadline, each committing twice: one commit for all.
    for t in 0..16i64 {
        let tx = s.new_tx(3, meta(Duration::from_secs(5))).await.unwrap();
        let id = tx.id();
        let delays: Vec<u64> = (0..3).map(|_| rng.range(0, 150)).collect();
        let (s, acks) = (s.clone(), acks.clone());
        tasks.spawn(async move {
            let mut joins = Vec::new();
            for (j, d) in delays.into_iter().enumerate() {
                let path = format!("late.t{t}.p{j}");
                joins.push(tokio::spawn(join(
                    s.clone(),
                    id,
                    path,
                    t,
                    Duration::from_millis(d),
                )));
            }
            let mut outcomes = Vec::new();
            for j in joins {
                outcomes.push(bounded("participant", j).await.unwrap());
            }
            let Ok(Outcome::Committed { commit }) = outcomes[0] else {
                panic!("late joiners: {outcomes:?}")
            };
            assert!(outcomes.iter().all(|o| o == &outcomes[0]), "{outcomes:?}");
            for j in 0..3 {
                acks.lock().unwrap().push(Ack {
                    commit,
                    path: format!("late.t{t}.p{j}"),
                    value: t,
                });
            }
        });
    }

    // A participant that drops its Patcher abandons the transaction: the
    // others get `TxAbandoned` at once (or `TxNotFound` when they look for
    // it after it ended) and nothing is written.
    for t in 0..8 {
        let tx = s.new_tx(2, meta(Duration::from_millis(120))).await.unwrap();
        let s = s.clone();
        tasks.spawn(async move {
            let dropped = tx
                .new_patcher(Patch::new(
                    common::kp(&format!("dropped.t{t}.a")),
                    Node::int(1),
                ))
                .await
                .unwrap();
            drop(dropped);
            let r = join(s, tx.id(), format!("dropped.t{t}.b"), 1, Duration::ZERO).await;
            assert!(
                matches!(r, Err(Error::TxAbandoned { .. } | Error::TxNotFound { .. })),
                "dropped patcher: {r:?}"
            );
        });
    }

    // get_tx racing the timeout: whatever wins, both participants agree,
    // and the transaction is written if and only if it committed.
    let raced = Arc::new(Mutex::new((0usize, 0usize)));
    for t in 0..24i64 {
        let tx = s.new_tx(2, meta(Duration::from_millis(80))).await.unwrap();
        let id = tx.id();
        let d = rng.range(40, 120);
        let (s, acks, raced) = (s.clone(), acks.clone(), raced.clone());
        tasks.spawn(async move {
            let a = tokio::spawn(join(
                s.clone(),
                id,
                format!("race.t{t}.a"),
                t,
                Duration::ZERO,
            ));
            let b = join(
                s.clone(),
                id,
                format!("race.t{t}.b"),
                t,
                Duration::from_millis(d),
            )
            .await;
            let a = bounded("participant", a).await.unwrap();
            match (&a, &b) {
                (Ok(Outcome::Committed { commit }), _) => {
                    assert_eq!(a, b, "one outcome for both");
                    raced.lock().unwrap().0 += 1;
                    for p in ["a", "b"] {
                        acks.lock().unwrap().push(Ack {
                            commit: *commit,
                            path: format!("race.t{t}.{p}"),
                            value: t,
                        });
                    }
                }
                (Err(Error::TxTimeout { .. }), Err(Error::TxTimeout { .. }))
                | (Err(Error::TxTimeout { .. }), Err(Error::TxNotFound { .. })) => {
                    raced.lock().unwrap().1 += 1;
                    let now = s.current_commit();
                    for p in ["a", "b"] {
                        let path = format!("race.t{t}.{p}");
                        assert_eq!(s.read_state_at(&path, now).await, Ok(None), "{path}");
                    }
                }
                other => panic!("get_tx racing the timeout: {other:?}"),
            }
        });
    }

    while let Some(r) = bounded("tasks", tasks.join_next()).await {
        r.unwrap();
    }
    let acks = acks.lock().unwrap().clone();
    let (exact, _) = verify(&s, &acks).await;
    assert_eq!(exact, acks.len());
    for t in 0..8 {
        for p in ["a", "b"] {
            let path = format!("dropped.t{t}.{p}");
            assert_eq!(s.read_state_at(&path, s.current_commit()).await, Ok(None));
        }
    }
    s.close().await.unwrap();
    let s = Storage::open(dir.path(), Options::default()).await.unwrap();
    verify(&s, &acks).await;
    s.close().await.unwrap();
    let (won, lost) = *raced.lock().unwrap();
    eprintln!(
        "hammer: {} acks verified; 16 late-joiner txs, 8 dropped-patcher txs, \
         24 get_tx/timeout races ({won} committed, {lost} timed out)",
        acks.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_and_compactions_from_many_tasks_while_writing() {
    let mut o = Options::default();
    o.compaction = Retention::Tiered {
        keep_recent: Cutoff::Commits(40),
        per_tier: 1,
        first_tier: 20,
        multiplier: 2,
    };
    let (dir, s) = common::open_temp(o.clone()).await;
    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..6 {
        let (s, acks) = (s.clone(), acks.clone());
        writers.spawn(async move {
            for i in 1..=120i64 {
                let path = format!("w{w}");
                let c = bounded("write", common::commit(&s, &path, Node::int(i))).await;
                acks.lock().unwrap().push(Ack {
                    commit: c,
                    path: path.clone(),
                    value: i,
                });
                // Read-your-write while snapshots and compactions run.
                let now = s.current_commit();
                let got = bounded("read", s.read_state_at(&path, now)).await;
                assert_eq!(got, Ok(Some(Node::int(i))), "{path} at {now}");
            }
        });
    }
    let mut others = tokio::task::JoinSet::new();
    let counts = Arc::new(Mutex::new((0usize, 0usize, 0usize)));
    for k in 0..8 {
        let (s, stop, counts) = (s.clone(), stop.clone(), counts.clone());
        others.spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if k % 2 == 0 {
                    let info = bounded("switch_and_snapshot", s.switch_and_snapshot()).await;
                    match info {
                        Ok(_) => counts.lock().unwrap().0 += 1,
                        Err(Error::SnapshotBusy) => {}
                        Err(e) => panic!("switch_and_snapshot: {e}"),
                    }
                } else {
                    let r = bounded("compact", s.compact()).await.unwrap();
                    let mut c = counts.lock().unwrap();
                    c.1 += 1;
                    c.2 += r.dropped_segments.len() + r.dropped_snapshots.len();
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        });
    }
    while let Some(r) = bounded("writers", writers.join_next()).await {
        r.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    while let Some(r) = bounded("snapshotters", others.join_next()).await {
        r.unwrap();
    }
    let acks = acks.lock().unwrap().clone();
    let (exact, h) = verify(&s, &acks).await;
    common::assert_gap_free(&s, h, 0, s.current_commit(), "hammer").await;
    s.close().await.unwrap();
    let s = Storage::open(dir.path(), o).await.unwrap();
    let (after, _) = verify(&s, &acks).await;
    let c = common::commit(&s, "after", Node::int(1)).await;
    assert_eq!(c as usize, acks.len() + 1);
    s.close().await.unwrap();
    let (snaps, compactions, dropped) = *counts.lock().unwrap();
    eprintln!(
        "hammer: {} acks, {exact} exact (horizon {h}), {after} after reopen; \
         {snaps} snapshots and {compactions} compactions from 8 tasks, {dropped} files dropped",
        acks.len()
    );
    assert!(dropped > 0, "compaction deleted files");
}

/// `close()` while writers, readers and snapshots are in flight: every call
/// returns (a result or a typed error) promptly, nothing acknowledged is
/// lost, and the store reopens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_while_everything_is_in_flight() {
    let (dir, s) = common::open_temp(Options::default()).await;
    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..6 {
        let (s, acks) = (s.clone(), acks.clone());
        tasks.spawn(async move {
            for i in 1.. {
                let path = format!("w{w}");
                match bounded("write", common::commit_one(&s, &path, Node::int(i))).await {
                    Ok(Outcome::Committed { commit }) => acks.lock().unwrap().push(Ack {
                        commit,
                        path: path.clone(),
                        value: i,
                    }),
                    Ok(other) => panic!("{other:?}"),
                    Err(Error::Closed | Error::WriterFailed { .. }) => return,
                    Err(e) => panic!("write during close: {e}"),
                }
                match bounded("read", s.read_state_at(&path, s.current_commit())).await {
                    Ok(got) => assert_eq!(got, Some(Node::int(i))),
                    Err(Error::Closed) => return,
                    Err(e) => panic!("read during close: {e}"),
                }
            }
        });
    }
    {
        let s = s.clone();
        tasks.spawn(async move {
            loop {
                match bounded("snapshot", s.switch_and_snapshot()).await {
                    Ok(_) => {}
                    Err(Error::Closed | Error::WriterFailed { .. }) => return,
                    Err(e) => panic!("snapshot during close: {e}"),
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    bounded("close", s.close()).await.unwrap();
    while let Some(r) = bounded("tasks after close", tasks.join_next()).await {
        r.unwrap();
    }
    let acks = acks.lock().unwrap().clone();
    assert!(!acks.is_empty());
    let s = Storage::open(dir.path(), Options::default()).await.unwrap();
    let (exact, _) = verify(&s, &acks).await;
    assert_eq!(exact, acks.len());
    s.close().await.unwrap();
    eprintln!(
        "hammer: close under load: {} acks, all exact after reopen",
        acks.len()
    );
}

/// `Storage::close()` ends live transactions: a participant waiting in
/// `commit()` for a participant that never comes gets `Error::Closed` at
/// once, not after the transaction's `max_duration`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_ends_waiting_transactions() {
    let (_dir, s) = common::open_temp(Options::default()).await;
    let tx = s.new_tx(2, PatchMeta::default()).await.unwrap();
    let mut waiting = tx
        .new_patcher(Patch::new(common::kp("half.a"), Node::int(1)))
        .await
        .unwrap();
    let waiter = tokio::spawn(async move { waiting.commit().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    bounded("close", s.close()).await.unwrap();
    let r = timeout(Duration::from_secs(2), waiter).await;
    assert!(
        matches!(r, Ok(Ok(Err(Error::Closed | Error::TxNotFound { .. })))),
        "a participant waiting at close: {r:?}"
    );
}

/// Many tasks race for the seats of transactions: exactly `n` get a
/// `Patcher`, every other one `Error::TxFull` (or `Error::TxNotFound` once
/// the transaction is over), and the `n` commit as one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_for_seats_gives_exactly_n_patchers() {
    let (_dir, s) = common::open_temp(common::buffered()).await;
    let mut full = 0;
    for round in 0..20i64 {
        let n = 1 + (round as usize % 4);
        let tx = s.new_tx(n, PatchMeta::default()).await.unwrap();
        let id = tx.id();
        let mut tasks = tokio::task::JoinSet::new();
        for k in 0..12 {
            let s = s.clone();
            tasks.spawn(async move {
                let tx = s.get_tx(id).await?;
                let path = format!("seats.r{round}.k{k}");
                let mut p = tx
                    .new_patcher(Patch::new(common::kp(&path), Node::int(round)))
                    .await?;
                let o = bounded("commit", p.commit()).await?;
                Ok::<_, Error>((path, o))
            });
        }
        let mut seated = Vec::new();
        while let Some(r) = bounded("seat tasks", tasks.join_next()).await {
            match r.unwrap() {
                Ok(x) => seated.push(x),
                Err(Error::TxFull { participants, .. }) => {
                    assert_eq!(participants, n);
                    full += 1;
                }
                Err(Error::TxNotFound { .. }) => full += 1,
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert_eq!(seated.len(), n, "round {round}");
        let Outcome::Committed { commit } = seated[0].1 else {
            panic!("{seated:?}")
        };
        for (path, o) in &seated {
            assert_eq!(o, &Outcome::Committed { commit });
            assert_eq!(
                s.read_state_at(path, commit).await,
                Ok(Some(Node::int(round)))
            );
        }
        assert_eq!(s.history("", commit - 1, commit).await.unwrap().len(), 1);
    }
    assert_eq!(full, 20 * 12 - (1 + 2 + 3 + 4) * 5);
    s.close().await.unwrap();
}
