//! Watch (issue 16): the fold property over random histories, slow
//! consumers under many writers, compaction racing replay, close and drop.
//!
//! The oracle: folding a watch's events ([`WatchEvent::apply_to`]) from its
//! first state gives, after every event, the state at the watched path as
//! of that event's commit — taken from the root state read right after each
//! commit (before any compaction could remove it). On top of that: event
//! commits strictly increase (no duplicate), every commit that changed the
//! path is an event (no gap), and, where `history` still answers, the event
//! commits are exactly the commits `history` lists.
//!
//! Long variants: `LOGD_WATCH_CASES` (random histories, default 6),
//! `LOGD_WATCH_SEED`, `LOGD_WATCH_WRITES` (commits per writer in the
//! slow-consumer test, default 40).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Rng, kp, runtime};
use futures::StreamExt;
use logd::{
    Change, Cutoff, Error, KPath, Node, Options, Outcome, Patch, PatchMeta, Retention, Storage,
    Watch, WatchEvent, WatchOptions,
};

/// Paths participants write (fields, dense and sparse elements, nested).
const WRITE_PATHS: &[&str] = &[
    "a", "b", "o.x", "o.y", "o", "arr[0]", "arr[1]", "arr[2]", "sp{0}", "sp{3}", "arr", "n.m.k",
];

/// Paths watched: the root, written paths, ancestors and descendants of
/// them, and paths never written.
const WATCH_PATHS: &[&str] = &[
    "", "a", "o", "o.x", "arr", "arr[1]", "arr[2].v", "sp", "sp{3}", "n", "n.m.k", "zz.never",
    "o.x.v",
];

fn data(rng: &mut Rng) -> Node {
    let n = rng.below(6) as i64;
    match rng.below(9) {
        0..=3 => Node::int(n),
        4 | 5 => {
            if rng.below(2) == 0 {
                Node::tagged("delete", logd::Value::Null)
            } else {
                Node::tagged("delete", logd::Value::Int(n))
            }
        }
        6 => Node::object([("v", Node::int(n))]),
        _ => Node::array([Node::int(n), Node::int(n + 1), Node::int(n + 2)]),
    }
}

/// Runs one transaction of `parts` (each participant in its own task);
/// the commit, if it committed.
async fn run_tx(s: &Storage, parts: Vec<(KPath, Node)>) -> Option<u64> {
    let tx = s.new_tx(parts.len(), PatchMeta::default()).await.ok()?;
    let id = tx.id();
    let mut tasks = Vec::new();
    for (path, data) in parts {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let tx = s.get_tx(id).await?;
            let mut p = tx.new_patcher(Patch::new(path, data)).await?;
            p.commit().await
        }));
    }
    let mut out = None;
    for t in tasks {
        if let Ok(Ok(Ok(Outcome::Committed { commit }))) =
            tokio::time::timeout(Duration::from_secs(20), t).await
        {
            out = Some(commit);
        }
    }
    out
}

/// What a consumer collected: the events, and the error that ended the
/// stream (if one did).
#[derive(Debug, Default)]
struct Seen {
    events: Vec<WatchEvent>,
    error: Option<Error>,
}

/// Reads `w` until an event at or after `stop` (read from the shared
/// cell once set), an error, or `limit`. Pauses now and then (a slow
/// consumer) when `pauses`.
async fn consume(
    mut w: Watch,
    stop: Arc<std::sync::atomic::AtomicU64>,
    pauses: bool,
    seed: u64,
) -> Seen {
    let mut seen = Seen::default();
    let mut rng = Rng::new(seed);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stop_at = stop.load(std::sync::atomic::Ordering::SeqCst);
        if stop_at > 0
            && seen
                .events
                .last()
                .is_some_and(|e| !e.is_replay_complete() && e.commit() >= stop_at)
        {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "consumer did not finish: {seen:?}"
        );
        if pauses && rng.below(8) == 0 {
            tokio::time::sleep(Duration::from_millis(rng.below(20))).await;
        }
        match tokio::time::timeout(Duration::from_millis(200), w.next()).await {
            Err(_) => {}
            Ok(None) => return seen,
            Ok(Some(Ok(e))) => seen.events.push(e),
            Ok(Some(Err(e))) => {
                seen.error = Some(e);
                assert!(w.next().await.is_none(), "the stream ends after an error");
                return seen;
            }
        }
    }
}

/// The checks of the module docs for one watch of `path` started at
/// `start` (init or not), against `roots` (the root after each commit).
fn check_watch(
    label: &str,
    path: &str,
    start: u64,
    init: bool,
    seen: &Seen,
    roots: &BTreeMap<u64, Option<Node>>,
    history: Option<Vec<u64>>,
) {
    let at = |c: u64| -> Option<Node> {
        roots
            .range(..=c)
            .next_back()
            .and_then(|(_, r)| r.as_ref())
            .and_then(|r| r.get_path(&kp(path)))
            .cloned()
    };
    if let Some(e) = &seen.error {
        assert!(
            matches!(e, Error::Compacted { .. }),
            "{label}: only compaction may end a watch here: {e}"
        );
    }
    let mut events = seen.events.iter();
    let mut state = if init {
        let Some(first) = events.next() else {
            assert!(seen.error.is_some(), "{label}: no initial state");
            return;
        };
        assert_eq!(first.commit(), start, "{label}: initial state's commit");
        assert!(matches!(first.change(), Change::State(_)), "{label}");
        first.apply_to(None).unwrap()
    } else {
        at(start)
    };
    assert_eq!(state, at(start), "{label}: state at start {start}");
    let mut last = start;
    let mut commits = Vec::new();
    let mut markers = 0;
    for e in events {
        assert_eq!(e.path(), &kp(path), "{label}");
        if e.is_replay_complete() {
            markers += 1;
            assert!(e.commit() >= last, "{label}: marker after its replay");
            continue;
        }
        assert!(
            !matches!(e.change(), Change::State(_)),
            "{label}: a state after the first event"
        );
        assert!(
            e.commit() > last,
            "{label}: commits increase: {} after {last}",
            e.commit()
        );
        assert!(
            e.when().is_some() && e.tx_id().is_some(),
            "{label}: commit metadata"
        );
        // No gap: every commit in between left the path as it was.
        for c in last + 1..e.commit() {
            assert_eq!(
                at(c),
                state,
                "{label}: commit {c} changed {path:?} without an event"
            );
        }
        state = e.apply_to(state).unwrap();
        assert_eq!(
            state,
            at(e.commit()),
            "{label}: fold at commit {}",
            e.commit()
        );
        last = e.commit();
        commits.push(last);
    }
    assert!(markers <= 1, "{label}: one replay marker");
    if seen.error.is_none() {
        assert_eq!(markers, 1, "{label}: the replay marker");
    }
    if let (Some(h), None) = (history, &seen.error) {
        let h: Vec<u64> = h.into_iter().filter(|&c| c <= last).collect();
        assert_eq!(commits, h, "{label}: the commits history lists");
    }
}

fn options(compact: bool, small_segments: bool) -> Options {
    let mut o = common::buffered();
    if small_segments {
        o.segment_bytes = 1024;
    }
    if compact {
        o.compaction = Retention::Tiered {
            keep_recent: Cutoff::Commits(8),
            per_tier: 1,
            first_tier: 8,
            multiplier: 2,
        };
    }
    o
}

struct Started {
    label: String,
    path: &'static str,
    start: u64,
    init: bool,
    task: tokio::task::JoinHandle<Seen>,
}

/// Runs one random history; returns `[watches, events, replacements, ended by Compacted]`.
async fn one_history(seed: u64, ops: usize) -> [u64; 4] {
    let mut rng = Rng::new(seed);
    let compact = rng.below(2) == 0;
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path(), options(compact, rng.below(2) == 0))
        .await
        .unwrap();
    let mut roots = BTreeMap::from([(0u64, None)]);
    let stop = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut started: Vec<Started> = Vec::new();
    for i in 0..ops {
        match rng.below(20) {
            0 => {
                let _ = s.switch_and_snapshot().await.unwrap();
            }
            1 if compact => {
                let _ = s.compact().await.unwrap();
            }
            2..=4 => {
                // A watch: a random path, from now or a random retained commit.
                let path = WATCH_PATHS[rng.below(WATCH_PATHS.len() as u64) as usize];
                let init = rng.below(3) != 0;
                let cur = s.current_commit();
                let from = if rng.below(3) == 0 {
                    None
                } else {
                    Some(rng.range(0, cur))
                };
                let mut o = match from {
                    None => WatchOptions::default(),
                    Some(c) => WatchOptions::from_commit(c),
                };
                if !init {
                    o = o.no_init();
                }
                let small = rng.below(3) == 0;
                if small {
                    o = o.buffer(1 + rng.below(3) as usize);
                }
                match s.watch(path, o).await {
                    Ok(w) => {
                        let start = w.start_commit();
                        assert_eq!(start, from.unwrap_or(start));
                        let label = format!(
                            "seed {seed} op {i}: watch {path:?} from {from:?} (start {start}, init {init}, small {small})"
                        );
                        let task = tokio::spawn(consume(w, stop.clone(), small, rng.next_u64()));
                        started.push(Started {
                            label,
                            path,
                            start,
                            init,
                            task,
                        });
                    }
                    Err(Error::Compacted { commit, oldest }) => {
                        assert!(
                            compact && commit < oldest,
                            "seed {seed}: {commit} < {oldest}"
                        );
                    }
                    Err(e) => panic!("seed {seed}: watch {path:?} from {from:?}: {e}"),
                }
            }
            _ => {
                let n = 1 + rng.below(3) as usize;
                let parts: Vec<(KPath, Node)> = (0..n)
                    .map(|_| {
                        let p = WRITE_PATHS[rng.below(WRITE_PATHS.len() as u64) as usize];
                        (kp(p), data(&mut rng))
                    })
                    .collect();
                if let Some(c) = run_tx(&s, parts).await {
                    // Read at once: compaction may remove it later.
                    roots.insert(c, s.read_state_at("", c).await.unwrap());
                }
            }
        }
    }
    // A last commit that affects every path and changes none: `{}` at the
    // root (the root is an object by now, or becomes `{}`).
    let last = match run_tx(
        &s,
        vec![(KPath::root(), Node::new(logd::Value::Object(Vec::new())))],
    )
    .await
    {
        Some(c) => c,
        None => panic!("seed {seed}: the closing commit"),
    };
    roots.insert(last, s.read_state_at("", last).await.unwrap());
    stop.store(last, std::sync::atomic::Ordering::SeqCst);
    let mut figures = [0u64; 4];
    for st in started {
        let seen = st.task.await.unwrap();
        figures[0] += 1;
        figures[1] += seen.events.len() as u64;
        figures[2] += seen
            .events
            .iter()
            .filter(|e| matches!(e.change(), Change::Replace(_)))
            .count() as u64;
        figures[3] += u64::from(seen.error.is_some());
        let history = s
            .history(st.path, st.start, last)
            .await
            .ok()
            .map(|h| h.iter().map(|c| c.commit).collect());
        check_watch(
            &st.label, st.path, st.start, st.init, &seen, &roots, history,
        );
    }
    s.close().await.unwrap();
    figures
}

#[test]
fn folding_events_gives_the_state_at_every_commit() {
    let cases = common::seed_from_env("LOGD_WATCH_CASES", 6);
    let seed = common::seed_from_env("LOGD_WATCH_SEED", 16);
    let rt = runtime();
    let mut total = [0u64; 4];
    for case in 0..cases {
        let f = rt.block_on(one_history(seed.wrapping_mul(1000).wrapping_add(case), 120));
        total.iter_mut().zip(f).for_each(|(t, f)| *t += f);
    }
    println!(
        "{cases} histories: {} watches, {} events ({} replacements), {} ended by Compacted",
        total[0], total[1], total[2], total[3]
    );
}

/// A watch of the root from commit `from` collects events until `last`.
async fn collect_until(w: &mut Watch, last: u64) -> Vec<WatchEvent> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out
        .last()
        .is_none_or(|e: &WatchEvent| e.commit() < last || e.is_replay_complete())
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = tokio::time::timeout(left, w.next())
            .await
            .expect("events in time")
            .expect("open")
            .expect("no error");
        out.push(e);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_consumer_under_64_writers_loses_nothing() {
    let per_writer = common::seed_from_env("LOGD_WATCH_WRITES", 40);
    let (_dir, s) = common::open_temp(common::buffered()).await;
    const BUFFER: usize = 16;
    let mut w = s
        .watch("", WatchOptions::default().buffer(BUFFER).no_init())
        .await
        .unwrap();
    let mut fast = s.watch("users", WatchOptions::default()).await.unwrap();
    let began = Instant::now();
    let writers: Vec<_> = (0..64)
        .map(|k| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..per_writer {
                    common::commit(&s, &format!("users.u{k}"), Node::int(i as i64)).await;
                }
            })
        })
        .collect();
    // Stop reading for a while: the buffer stays bounded meanwhile.
    let paused_until = Instant::now() + Duration::from_millis(300);
    let mut max_buffered = 0;
    while Instant::now() < paused_until {
        max_buffered = max_buffered.max(w.queued());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for t in writers {
        t.await.unwrap();
    }
    let elapsed = began.elapsed();
    let lags = s
        .actors()
        .watch
        .ask(logd::actors::HubStats)
        .await
        .unwrap()
        .lags;
    assert!(lags > 0, "the paused watch fell behind");
    let last = s.current_commit();
    assert_eq!(last, 64 * per_writer);
    assert!(max_buffered <= BUFFER, "buffered {max_buffered} > {BUFFER}");
    // The slow root watch gets every commit once, in order.
    let events = collect_until(&mut w, last).await;
    let commits: Vec<u64> = events
        .iter()
        .filter(|e| !e.is_replay_complete())
        .map(|e| e.commit())
        .collect();
    assert_eq!(commits, (1..=last).collect::<Vec<_>>());
    // The fast one folds to the final state.
    let mut state = None;
    for e in collect_until(&mut fast, last).await {
        state = e.apply_to(state).unwrap();
    }
    assert_eq!(state, s.read_state_at("users", last).await.unwrap());
    println!(
        "64 writers, {last} commits in {elapsed:?} while a root watch with a {BUFFER}-event buffer paused 300 ms (max buffered {max_buffered}, left the live feed {lags} times)"
    );
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_racing_replay_is_compacted_never_a_gap() {
    let mut o = common::buffered();
    o.segment_bytes = 512;
    o.compaction = Retention::Tiered {
        keep_recent: Cutoff::Commits(4),
        per_tier: 1,
        first_tier: 4,
        multiplier: 2,
    };
    let (_dir, s) = common::open_temp(o).await;
    let mut roots = BTreeMap::from([(0u64, None)]);
    for i in 0..60 {
        let c = common::commit(&s, &format!("k{}", i % 7), Node::int(i)).await;
        roots.insert(c, s.read_state_at("", c).await.unwrap());
    }
    let mut outcomes = (0, 0);
    for round in 0..12u64 {
        // A slow watch from an old commit while snapshots and compaction run.
        // Right at the horizon: the snapshots below soon move it past.
        let from = (common::horizon(&s).await + round % 3).min(s.current_commit());
        let w = match s.watch("", WatchOptions::from_commit(from).buffer(1)).await {
            Ok(w) => w,
            Err(Error::Compacted { commit, oldest }) => {
                assert!(commit < oldest);
                continue;
            }
            Err(e) => panic!("{e}"),
        };
        let stop = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = tokio::spawn(consume(w, stop.clone(), true, round));
        for i in 0..20 {
            let c = common::commit(&s, &format!("k{}", i % 7), Node::int(i)).await;
            roots.insert(c, s.read_state_at("", c).await.unwrap());
            if i % 5 == 0 {
                let _ = s.switch_and_snapshot().await.unwrap();
            }
        }
        let last = s.current_commit();
        stop.store(last, std::sync::atomic::Ordering::SeqCst);
        let seen = task.await.unwrap();
        match &seen.error {
            Some(Error::Compacted { .. }) => outcomes.1 += 1,
            None => outcomes.0 += 1,
            Some(e) => panic!("round {round}: {e}"),
        }
        check_watch(
            &format!("round {round}"),
            "",
            from,
            true,
            &seen,
            &roots,
            None,
        );
        // Root watch: every commit up to where it ended, none skipped.
        let commits: Vec<u64> = seen
            .events
            .iter()
            .skip(1)
            .filter(|e| !e.is_replay_complete())
            .map(|e| e.commit())
            .collect();
        let want: Vec<u64> = (from + 1..=commits.last().copied().unwrap_or(from)).collect();
        assert_eq!(commits, want, "round {round}: a gap");
    }
    println!(
        "compaction racing replay: {} complete, {} Compacted",
        outcomes.0, outcomes.1
    );
    // Below the horizon: at once.
    let h = common::horizon(&s).await;
    if h > 1 {
        assert!(matches!(
            s.watch("", WatchOptions::from_commit(h - 1)).await,
            Err(Error::Compacted { .. })
        ));
    }
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_ends_every_watch_and_drop_unsubscribes() {
    let (_dir, s) = common::open_temp(common::buffered()).await;
    common::commit(&s, "a", Node::int(1)).await;
    let hub = s.actors().watch;
    let stats = || async { hub.ask(logd::actors::HubStats).await.unwrap() };
    let dropped = s.watch("a", WatchOptions::default()).await.unwrap();
    let mut closed = s.watch("b", WatchOptions::default()).await.unwrap();
    assert_eq!(stats().await.watchers, 2);
    drop(dropped);
    closed.close();
    assert!(closed.next().await.is_none(), "closed: the stream ends");
    assert_eq!(
        stats().await.watchers,
        0,
        "dropped and closed watches are forgotten"
    );
    // Bad starts.
    assert!(matches!(
        s.watch("a", WatchOptions::from_commit(9)).await,
        Err(Error::FutureCommit { commit: 9, .. })
    ));
    assert!(matches!(
        s.watch("a(x)", WatchOptions::default()).await,
        Err(Error::InvalidPath { .. })
    ));
    // close() ends the open ones with Closed, also one mid-wait.
    let mut a = s.watch("a", WatchOptions::default()).await.unwrap();
    let mut root = s.watch("", WatchOptions::from_commit(0)).await.unwrap();
    assert!(matches!(a.next().await, Some(Ok(e)) if matches!(e.change(), Change::State(Some(_)))));
    let waiting = tokio::spawn(async move {
        let mut out = Vec::new();
        while let Some(e) = root.next().await {
            out.push(e);
        }
        out
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.close().await.unwrap();
    assert_eq!(
        a.next().await.map(|r| r.map(|_| ())),
        Some(Err(Error::Closed))
    );
    assert!(a.next().await.is_none());
    let out = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(out.last(), Some(Err(Error::Closed))),
        "{:?}",
        out.last()
    );
    assert!(matches!(
        s.watch("a", WatchOptions::default()).await,
        Err(Error::Closed)
    ));
}
