//! Crash test: `logd stress` runs as a child process and is SIGKILLed at
//! random moments — at random times, after random numbers of acks, and
//! right as a snapshot or a compaction starts — over and over on the same
//! store. After every kill the store is reopened and checked:
//!
//! * every acknowledged commit is there with its exact value at its commit
//!   (`read_state_at(path, commit)`), or, below the compaction horizon,
//!   `Error::Compacted` — never a different value;
//! * the newest value of every path is readable at the current commit and
//!   is its last ack or the one write that was in flight at the kill, and a
//!   K-participant transaction's paths hold the same value (atomicity);
//! * commit numbers have no gaps: `history("", from, current)` lists exactly
//!   `from+1..=current` over the retained range;
//! * the store accepts a write after reopen (and the next cycle's child keeps
//!   writing on it).
//!
//! About one cycle in six runs with `--durability buffered`: there a crash
//! may lose the newest acks (never fsynced), but what survives must still be
//! a gap-free prefix with every surviving ack exact.
//!
//! Default: 40 kills (10–30 s). `LOGD_CRASH_KILLS=<n>` for a long run,
//! `LOGD_CRASH_SEED=<n>` for other kill schedules.

mod common;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Ack, Rng, latest_per_path, parse_ack, seed_from_env};
use logd::{Error, Node, Options, Storage, Value};

/// Each cycle writes values from `cycle * CYCLE_VALUES + 1` on.
const CYCLE_VALUES: i64 = 10_000_000;

/// When a cycle's kill comes.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// This long after the first ack.
    Time(Duration),
    /// This long after the spawn (during start-up and recovery, often).
    Startup(Duration),
    /// After this many acks.
    Acks(usize),
    /// This long after the n-th `snap-start`.
    SnapStart(usize, Duration),
    /// This long after the n-th `compact-start`.
    CompactStart(usize, Duration),
}

/// What one child run acknowledged and where the kill landed.
#[derive(Debug, Default)]
struct Run {
    acks: Vec<Ack>,
    in_snapshot: bool,
    in_compaction: bool,
    snapshots: usize,
    compactions: usize,
    killed: bool,
}

/// One cycle's parameters.
#[derive(Clone, Debug)]
struct Plan {
    writers: usize,
    participants: usize,
    snapshot_every_ms: u64,
    keep_recent: u64,
    value_base: i64,
    /// `--durability buffered`: acks are not durable; a crash may lose the
    /// newest ones, but what survives is a gap-free prefix, exact.
    buffered: bool,
    kill: KillAt,
}

impl Plan {
    fn prefix(&self) -> String {
        format!("k{}", self.participants)
    }

    fn random(rng: &mut Rng, cycle: u64) -> Plan {
        let kill = match rng.below(8) {
            0 => KillAt::Time(Duration::from_millis(rng.range(20, 600))),
            1 => KillAt::Startup(Duration::from_millis(rng.range(1, 40))),
            2 => KillAt::Acks(rng.range(1, 1500) as usize),
            3 | 4 => KillAt::SnapStart(
                rng.range(1, 4) as usize,
                Duration::from_micros(rng.range(0, 2000)),
            ),
            _ => KillAt::CompactStart(rng.range(1, 4) as usize, Duration::ZERO),
        };
        Plan {
            writers: [1, 2, 4, 8][rng.below(4) as usize],
            participants: [1, 1, 2, 3][rng.below(4) as usize],
            snapshot_every_ms: [5, 15, 40][rng.below(3) as usize],
            keep_recent: [0, 30, 300, 300][rng.below(4) as usize],
            value_base: cycle as i64 * CYCLE_VALUES,
            buffered: rng.below(6) == 0,
            kill,
        }
    }
}

/// Runs `logd stress` on `dir` per `plan` and kills it with SIGKILL.
fn run_child(dir: &Path, plan: &Plan) -> Run {
    let stderr = std::fs::File::create(dir.with_extension("stderr")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_logd"))
        .arg("--dir")
        .arg(dir)
        .args(["stress", "--duration", "60"])
        .args(["--writers", &plan.writers.to_string()])
        .args(["--txs-participants", &plan.participants.to_string()])
        .args(["--snapshot-every-ms", &plan.snapshot_every_ms.to_string()])
        .args(["--keep-recent", &plan.keep_recent.to_string()])
        .args(["--value-base", &plan.value_base.to_string()])
        .args(["--prefix", &plan.prefix()])
        .args([
            "--durability",
            if plan.buffered {
                "buffered"
            } else {
                "immediate"
            },
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut r = std::io::BufReader::new(stdout);
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                // A line cut by the kill has no newline: it was never acked.
                Ok(_) if line.ends_with('\n') => {
                    line.pop();
                    if tx.send(line).is_err() {
                        break;
                    }
                }
                Ok(_) => break,
            }
        }
    });
    let mut run = Run::default();
    let started = Instant::now();
    let mut first_ack: Option<Instant> = None;
    // Whatever the plan, never wait longer than this for its moment.
    let give_up = started + Duration::from_secs(6);
    let mut kill_at: Option<Instant> = None;
    let handle = |line: &str, run: &mut Run, first_ack: &mut Option<Instant>| -> bool {
        if let Some(a) = parse_ack(line) {
            run.acks.push(a);
            first_ack.get_or_insert_with(Instant::now);
            return matches!(plan.kill, KillAt::Acks(n) if run.acks.len() >= n);
        }
        match line.split(' ').next() {
            Some("snap-start") => {
                run.in_snapshot = true;
                run.snapshots += 1;
                matches!(plan.kill, KillAt::SnapStart(n, _) if run.snapshots >= n)
            }
            Some("snap-done") => {
                run.in_snapshot = false;
                false
            }
            Some("compact-start") => {
                run.in_compaction = true;
                run.compactions += 1;
                matches!(plan.kill, KillAt::CompactStart(n, _) if run.compactions >= n)
            }
            Some("compact-done") => {
                run.in_compaction = false;
                false
            }
            _ => panic!("unexpected stress output {line:?}"),
        }
    };
    if let KillAt::Startup(d) = plan.kill {
        kill_at = Some(started + d);
    }
    loop {
        if let (KillAt::Time(d), Some(f)) = (plan.kill, first_ack) {
            kill_at.get_or_insert(f + d);
        }
        let now = Instant::now();
        let deadline = kill_at.unwrap_or(give_up).min(give_up);
        if now >= deadline {
            break;
        }
        match rx.recv_timeout(deadline - now) {
            Ok(line) => {
                if handle(&line, &mut run, &mut first_ack) {
                    let delay = match plan.kill {
                        KillAt::SnapStart(_, d) | KillAt::CompactStart(_, d) => d,
                        _ => Duration::ZERO,
                    };
                    kill_at = Some(Instant::now() + delay);
                    if delay.is_zero() {
                        break;
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    run.killed = child.try_wait().unwrap().is_none();
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    reader.join().unwrap();
    // Lines printed before the kill count too (acks, and markers: a
    // `snap-done` printed before the kill means it did not land inside).
    for line in rx.try_iter() {
        handle(&line, &mut run, &mut first_ack);
    }
    if !run.killed {
        let err = std::fs::read_to_string(dir.with_extension("stderr")).unwrap_or_default();
        panic!("stress exited before the kill ({status:?}): {err}");
    }
    run
}

fn int(n: &Option<Node>) -> Option<i64> {
    match n {
        Some(Node {
            value: Value::Int(i),
            ..
        }) => Some(*i),
        _ => None,
    }
}

/// Checks `acks` against the store: exact at their commits, or `Compacted`
/// below the horizon. Returns how many were read back exactly.
async fn check_acks(s: &Storage, acks: &[Ack], horizon: u64) -> usize {
    let mut exact = 0;
    for a in acks {
        let got = s.read_state_at(&a.path, a.commit).await;
        if a.commit < horizon {
            match got {
                Err(Error::Compacted { oldest, .. }) => {
                    assert_eq!(
                        oldest, horizon,
                        "ack {a:?}: Compacted names the oldest readable"
                    )
                }
                other => panic!("ack {a:?} below horizon {horizon}: {other:?}"),
            }
        } else {
            assert_eq!(
                got,
                Ok(Some(Node::int(a.value))),
                "ack {a:?} (horizon {horizon})"
            );
            exact += 1;
        }
    }
    exact
}

#[derive(Debug, Default)]
struct Figures {
    kills: usize,
    in_snapshot: usize,
    in_compaction: usize,
    acks: usize,
    verified: usize,
    compacted: usize,
    max_horizon: u64,
    commits: u64,
    buffered_runs: usize,
    buffered_lost: usize,
}

/// Reopens the store after a kill and checks it (see the module docs).
/// `acks` is every ack so far; `fresh` how many of them (at the end) came
/// from the last run.
async fn verify(
    dir: &Path,
    acks: &mut Vec<Ack>,
    fresh: usize,
    buffered: bool,
    from: u64,
    fig: &mut Figures,
) -> u64 {
    let s = tokio::time::timeout(
        Duration::from_secs(30),
        Storage::open(dir, Options::default()),
    )
    .await
    .expect("reopen hangs")
    .unwrap_or_else(|e| panic!("reopen after a kill failed: {e}"));
    let current = s.current_commit();
    let mut fresh = fresh;
    if buffered {
        // Buffered acks above what survived were never durable: forget them
        // (their commit numbers are handed out again).
        let before = acks.len();
        let run_start = before - fresh;
        let mut i = run_start;
        while i < acks.len() {
            if acks[i].commit > current {
                acks.remove(i);
            } else {
                i += 1;
            }
        }
        fig.buffered_lost += before - acks.len();
        fresh -= before - acks.len();
    }
    let max_ack = acks.iter().map(|a| a.commit).max().unwrap_or(0);
    assert!(current >= max_ack, "current {current} < acked {max_ack}");
    // The current commit is readable before any new write (an empty last
    // segment after compaction once left the index without it).
    let root = s.read_state_at("", current).await;
    assert!(root.is_ok(), "read at current {current}: {root:?}");
    // The store takes writes after the crash.
    let probe = 1_000_000_000 + current as i64;
    let c = common::commit(&s, "probe", Node::int(probe)).await;
    assert_eq!(c, current + 1);
    let h = common::horizon(&s).await;
    fig.max_horizon = fig.max_horizon.max(h);

    // This run's acks, exactly.
    let new = &acks[acks.len() - fresh..];
    let exact = check_acks(&s, new, h).await;
    fig.verified += exact;
    fig.compacted += new.len() - exact;

    // The newest value of every path: its last ack or the in-flight write.
    let latest = latest_per_path(acks);
    let mut groups: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (path, a) in &latest {
        let got = int(&s.read_state_at(path, current).await.unwrap());
        // The in-flight write of the cycle of the last ack, or the first
        // write of a later cycle that got no ack before its kill.
        let in_flight = |v: i64| {
            v == a.value + 1 || (v % CYCLE_VALUES == 1 && v / CYCLE_VALUES > a.value / CYCLE_VALUES)
        };
        assert!(
            got == Some(a.value) || got.is_some_and(in_flight),
            "{path} at {current} is {got:?}, last ack {a:?}"
        );
        if let Some((writer, _)) = path.rsplit_once(".p") {
            groups
                .entry(writer.to_owned())
                .or_default()
                .push(got.unwrap());
        }
    }
    for (writer, values) in groups {
        assert!(
            values.windows(2).all(|w| w[0] == w[1]),
            "transaction of {writer} not atomic: {values:?}"
        );
    }

    // No gaps in the retained range written since the last check.
    common::assert_gap_free(&s, h, from, current, "after a kill").await;

    acks.push(Ack {
        commit: c,
        path: "probe".into(),
        value: probe,
    });
    s.close().await.unwrap();
    fig.commits = c;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_no_acknowledged_commit() {
    let kills: usize = std::env::var("LOGD_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let seed = seed_from_env("LOGD_CRASH_SEED", 0x106d_c4a5);
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let started = Instant::now();
    let mut fig = Figures::default();
    let mut acks: Vec<Ack> = Vec::new();
    let mut checked_to = 0;
    for cycle in 0..kills as u64 {
        let plan = Plan::random(&mut rng, cycle + 1);
        let d = dir.clone();
        let p = plan.clone();
        let run = tokio::task::spawn_blocking(move || run_child(&d, &p))
            .await
            .unwrap();
        fig.kills += 1;
        fig.in_snapshot += run.in_snapshot as usize;
        fig.in_compaction += run.in_compaction as usize;
        fig.acks += run.acks.len();
        let fresh = run.acks.len();
        acks.extend(run.acks);
        fig.buffered_runs += plan.buffered as usize;
        checked_to = verify(&dir, &mut acks, fresh, plan.buffered, checked_to, &mut fig).await;
        if std::env::var_os("LOGD_CRASH_VERBOSE").is_some() {
            eprintln!(
                "cycle {cycle}: {plan:?}: {fresh} acks, snap {} compact {}",
                run.in_snapshot, run.in_compaction
            );
        }
    }
    // A last full pass: every ack of every cycle.
    let s = Storage::open(&dir, Options::default()).await.unwrap();
    let h = common::horizon(&s).await;
    let exact = check_acks(&s, &acks, h).await;
    s.close().await.unwrap();
    eprintln!(
        "crash: seed {seed:#x}: {} kills ({} during a snapshot, {} during a compaction), \
         {} acks ({} verified exactly after their kill, {} compacted away), \
         final pass {exact} exact of {} (horizon {h}), {} commits; {} runs buffered ({} of their acks lost, allowed), {:.1} s",
        fig.kills,
        fig.in_snapshot,
        fig.in_compaction,
        fig.acks,
        fig.verified,
        fig.compacted,
        acks.len(),
        fig.commits,
        fig.buffered_runs,
        fig.buffered_lost,
        started.elapsed().as_secs_f64()
    );
    assert!(fig.in_snapshot + fig.in_compaction > 0 || kills < 8);
}
