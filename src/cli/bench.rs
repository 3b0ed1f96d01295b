//! `logd bench`: the standard workloads W1–W9 of `docs/DESIGN.md` §7.
//!
//! This module owns the workload definitions, their timing and the report
//! (a table, or one JSON object with `--json`). It drives the store only
//! through the public `logd` API, in a fresh directory it creates under
//! `--dir` and removes afterwards; it never touches another directory.
//!
//! Workloads, in the order they run (each on the store the previous left):
//! - W1: sequential one-participant commits to `users.u{i%500}` with
//!   `{name: "user-i", n: i, tags: [a, b]}`;
//! - W2: the same from 16 concurrent tasks;
//! - W3: `switch_and_snapshot` after W1+W2 (seal, snapshot, apply the
//!   default keep-all retention);
//! - W4: read `""` at the current commit (median of many);
//! - W5: read `users.u{k}` at the current commit (median of many);
//! - W6: read `""` at an old commit ([`OLD_COMMIT`], or half of W1 when
//!   W1 is smaller);
//! - W7: close + reopen (median of a few);
//! - W8: 8-participant transactions (8 tasks join one tx via `get_tx`, each
//!   patching its own path), in transactions per second;
//! - W9: 64 concurrent one-participant writers, in commits per second.
//! - W10: W9 again while 10,000 watches follow `users.u{k}` (one each, `k`
//!   in `0..10000`) and 10 follow the root: commits per second and their
//!   ratio to W9, watch events delivered per second (until the last one),
//!   and the latency from a commit's acknowledgement (its `commit()`
//!   returning) to each delivery, p50 and p99. The hub is fed just before
//!   the acknowledgement, so a delivery can come first: that counts as 0.
//!
//! `LOGD_BENCH_CPU=1` also prints the CPU time per operation of W1, W8 and
//! W9 on stderr; `LOGD_BENCH_ONLY=w9` runs W9 alone on an empty store, `=w1` stops
//! after W1, `LOGD_BENCH_KEEP=1` keeps the store (profiling aids).
//!
//! `--quick` shrinks the counts (finishes well within 60 s); the
//! environment variable `LOGD_BENCH_TINY=1` shrinks them further still (for
//! the CLI test; the numbers are then only a smoke test).

use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use logd::{Durability, KPath, Node, Options, Outcome, Patch, PatchMeta, Storage};

/// The old commit W6 reads at (when W1 has at least twice as many commits).
pub const OLD_COMMIT: u64 = 1000;

/// Options of `logd bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// A shorter run (within 60 s).
    #[arg(long)]
    pub quick: bool,
    /// `immediate` (fsync before ack) or `buffered`.
    #[arg(long, default_value = "immediate")]
    pub durability: String,
}

/// How much work each workload does.
#[derive(Clone, Copy, Debug)]
struct Counts {
    /// Which size this is ("full", "quick", "tiny").
    name: &'static str,
    w1: u64,
    w2: u64,
    /// Most iterations of a read workload.
    reads: usize,
    /// Time budget of a read workload.
    read_budget: Duration,
    w7: usize,
    w8: u64,
    w9: u64,
}

impl Counts {
    fn pick(quick: bool) -> Counts {
        let tiny = std::env::var("LOGD_BENCH_TINY").is_ok_and(|v| !v.is_empty() && v != "0");
        if tiny {
            Counts {
                name: "tiny (LOGD_BENCH_TINY)",
                w1: 100,
                w2: 100,
                reads: 20,
                read_budget: Duration::from_millis(200),
                w7: 1,
                w8: 5,
                w9: 128,
            }
        } else if quick {
            Counts {
                name: "quick (--quick: reduced counts)",
                w1: 500,
                w2: 500,
                reads: 200,
                read_budget: Duration::from_secs(2),
                w7: 3,
                w8: 100,
                w9: 4_000,
            }
        } else {
            Counts {
                name: "full",
                w1: 2_000,
                w2: 2_000,
                reads: 2_000,
                read_budget: Duration::from_secs(8),
                w7: 5,
                w8: 500,
                w9: 20_000,
            }
        }
    }
}

/// The measured results (None: not measured).
#[derive(Debug, Default)]
struct Results {
    w1_commits_per_s: Option<f64>,
    w2_commits_per_s: Option<f64>,
    w3_snapshot_ms: Option<f64>,
    w4_read_root_us: Option<f64>,
    w5_read_leaf_us: Option<f64>,
    w6_read_old_us: Option<f64>,
    w7_reopen_ms: Option<f64>,
    w8_tx_per_s: Option<f64>,
    w9_commits_per_s: Option<f64>,
    w10_commits_per_s: Option<f64>,
    w10_ratio_to_w9: Option<f64>,
    w10_events_per_s: Option<f64>,
    w10_latency_p50_ms: Option<f64>,
    w10_latency_p99_ms: Option<f64>,
    peak_rss_mb: Option<f64>,
}

impl Results {
    fn entries(&self) -> [(&'static str, Option<f64>); 15] {
        [
            ("w1_commits_per_s", self.w1_commits_per_s),
            ("w2_commits_per_s", self.w2_commits_per_s),
            ("w3_snapshot_ms", self.w3_snapshot_ms),
            ("w4_read_root_us", self.w4_read_root_us),
            ("w5_read_leaf_us", self.w5_read_leaf_us),
            ("w6_read_old_us", self.w6_read_old_us),
            ("w7_reopen_ms", self.w7_reopen_ms),
            ("w8_tx_per_s", self.w8_tx_per_s),
            ("w9_commits_per_s", self.w9_commits_per_s),
            ("w10_commits_per_s", self.w10_commits_per_s),
            ("w10_ratio_to_w9", self.w10_ratio_to_w9),
            ("w10_events_per_s", self.w10_events_per_s),
            ("w10_latency_p50_ms", self.w10_latency_p50_ms),
            ("w10_latency_p99_ms", self.w10_latency_p99_ms),
            ("peak_rss_mb", self.peak_rss_mb),
        ]
    }

    fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (k, v) in self.entries() {
            if let Some(v) = v {
                map.insert(k.to_string(), serde_json::json!(v));
            }
        }
        serde_json::Value::Object(map)
    }
}

/// Parses `--durability`.
fn durability(s: &str) -> Result<Durability, String> {
    match s {
        "immediate" => Ok(Durability::Immediate),
        "buffered" => Ok(Durability::Buffered {
            interval: Duration::from_millis(5),
        }),
        other => Err(format!(
            "--durability must be `immediate` or `buffered`, not `{other}`"
        )),
    }
}

fn path(s: &str) -> Result<KPath, String> {
    KPath::parse(s).map_err(|e| format!("bad path {s:?}: {e}"))
}

/// The W1/W2 record for `i`.
pub(super) fn user(i: u64) -> Result<Patch, String> {
    let data = Node::object([
        ("name", Node::string(format!("user-{i}"))),
        ("n", Node::int(i as i64)),
        ("tags", Node::array([Node::string("a"), Node::string("b")])),
    ]);
    Ok(Patch::new(path(&format!("users.u{}", i % 500))?, data))
}

/// One one-participant commit of `patch`.
pub(super) async fn commit_one(s: &Storage, patch: Patch) -> Result<u64, String> {
    let tx = s
        .new_tx(1, PatchMeta::default())
        .await
        .map_err(|e| format!("new_tx: {e}"))?;
    let mut w = tx
        .new_patcher(patch)
        .await
        .map_err(|e| format!("new_patcher: {e}"))?;
    match w.commit().await.map_err(|e| format!("commit: {e}"))? {
        Outcome::Committed { commit } => Ok(commit),
        other => Err(format!("unexpected outcome {other:?}")),
    }
}

/// Runs `n` commits from `tasks` concurrent tasks (task `t` commits the
/// indices `t, t + tasks, …` offset by `base`); returns commits per second.
async fn concurrent_commits(s: &Storage, n: u64, tasks: u64, base: u64) -> Result<f64, String> {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let s = s.clone();
        set.spawn(async move {
            let mut i = t;
            while i < n {
                commit_one(&s, user(base + i)?).await?;
                i += tasks;
            }
            Ok::<(), String>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r.map_err(|e| format!("writer task: {e}"))??;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Warms up, then times single reads until `max` iterations or `budget`;
/// returns the median in microseconds.
async fn median_read_us(
    s: &Storage,
    counts: &Counts,
    mut next: impl FnMut(usize) -> (String, u64),
) -> Result<f64, String> {
    for i in 0..3 {
        let (p, c) = next(i);
        s.read_state_at(&p, c)
            .await
            .map_err(|e| format!("read {p:?}@{c}: {e}"))?;
    }
    let mut times = Vec::with_capacity(counts.reads);
    let start = Instant::now();
    for i in 0..counts.reads {
        let (p, c) = next(i);
        let t = Instant::now();
        let got = s
            .read_state_at(&p, c)
            .await
            .map_err(|e| format!("read {p:?}@{c}: {e}"))?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
        if got.is_none() {
            return Err(format!("read {p:?}@{c} found nothing"));
        }
        if i >= 10 && start.elapsed() > counts.read_budget {
            break;
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// CPU time (user + system) of the whole process so far, in seconds, from
/// `/proc/self/stat` (clock ticks of 1/100 s).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let mut fields = after.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// With `LOGD_BENCH_CPU=1`, reports on stderr the CPU time per operation of
/// a write workload (a load-independent view of the commit path's cost on a
/// shared machine).
struct CpuProbe {
    on: bool,
    start: Option<f64>,
}

impl CpuProbe {
    fn start() -> CpuProbe {
        let on = std::env::var("LOGD_BENCH_CPU").is_ok_and(|v| !v.is_empty() && v != "0");
        CpuProbe {
            on,
            start: if on { cpu_seconds() } else { None },
        }
    }

    fn report(self, name: &str, ops: u64) {
        if let (true, Some(a), Some(b)) = (self.on, self.start, cpu_seconds()) {
            eprintln!("cpu {name}: {:.1} us/op", (b - a) * 1e6 / ops as f64);
        }
    }
}

/// Peak resident set size in MiB (`VmHWM` of /proc/self/status).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Runs the benchmark in a fresh directory under `dir`.
/// With `json` (the global `--json`) it prints one JSON object instead of a table.
pub async fn run(args: &BenchArgs, dir: &Path, json: bool) -> Result<(), String> {
    let durability = durability(&args.durability)?;
    let counts = Counts::pick(args.quick);
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let work = dir.join(format!(
        "bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let bar = if json {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(10);
        if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}") {
            b.set_style(style);
        }
        b
    };
    let result = workloads(&work, durability, &counts, &bar).await;
    bar.finish_and_clear();
    // `LOGD_BENCH_KEEP=1` keeps the store the workloads left (a profiling aid).
    let cleanup = if std::env::var_os("LOGD_BENCH_KEEP").is_some() {
        eprintln!("kept the bench store at {}", work.display());
        Ok(())
    } else {
        std::fs::remove_dir_all(&work)
    };
    let results = result?;
    cleanup.map_err(|e| format!("cannot remove {}: {e}", work.display()))?;
    if json {
        println!("{}", results.to_json());
    } else {
        print_table(&results, &args.durability, &counts);
    }
    Ok(())
}

async fn workloads(
    work: &Path,
    durability: Durability,
    counts: &Counts,
    bar: &ProgressBar,
) -> Result<Results, String> {
    let mut options = Options::default();
    options.durability = durability;
    let open = |o: Options| async move {
        Storage::open(work, o)
            .await
            .map_err(|e| format!("open {}: {e}", work.display()))
    };
    let mut s = open(options.clone()).await?;
    let mut r = Results::default();
    let only = std::env::var("LOGD_BENCH_ONLY").unwrap_or_default();
    if only.eq_ignore_ascii_case("w9") {
        // A profiling aid: W9 alone, on an empty store.
        let cpu = CpuProbe::start();
        r.w9_commits_per_s = Some(concurrent_commits(&s, counts.w9, 64, 0).await?);
        cpu.report("W9", counts.w9);
        s.close().await.map_err(|e| format!("close: {e}"))?;
        return Ok(r);
    }

    bar.set_message("W1 sequential commits");
    let start = Instant::now();
    let cpu = CpuProbe::start();
    for i in 0..counts.w1 {
        commit_one(&s, user(i)?).await?;
    }
    r.w1_commits_per_s = Some(counts.w1 as f64 / start.elapsed().as_secs_f64());
    cpu.report("W1", counts.w1);
    bar.inc(1);
    if only.eq_ignore_ascii_case("w1") {
        s.close().await.map_err(|e| format!("close: {e}"))?;
        return Ok(r);
    }

    bar.set_message("W2 16 concurrent writers");
    r.w2_commits_per_s = Some(concurrent_commits(&s, counts.w2, 16, counts.w1).await?);
    bar.inc(1);

    bar.set_message("W3 switch_and_snapshot");
    let t = Instant::now();
    s.switch_and_snapshot().await.map_err(|e| e.to_string())?;
    r.w3_snapshot_ms = Some(t.elapsed().as_secs_f64() * 1e3);
    bar.inc(1);

    let current = s.current_commit();
    bar.set_message("W4 read root");
    r.w4_read_root_us = Some(median_read_us(&s, counts, |_| (String::new(), current)).await?);
    bar.inc(1);

    bar.set_message("W5 read leaf");
    let users = (counts.w1 + counts.w2).min(500) as usize;
    r.w5_read_leaf_us = Some(
        median_read_us(&s, counts, |i| {
            (format!("users.u{}", (i * 7919) % users), current)
        })
        .await?,
    );
    bar.inc(1);

    let old = old_commit(counts);
    bar.set_message("W6 read root at an old commit");
    r.w6_read_old_us = Some(median_read_us(&s, counts, |_| (String::new(), old)).await?);
    bar.inc(1);

    bar.set_message("W7 close + reopen");
    let mut times = Vec::new();
    for _ in 0..counts.w7 {
        let t = Instant::now();
        s.close().await.map_err(|e| format!("close: {e}"))?;
        s = open(options.clone()).await?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if s.current_commit() != current {
            return Err(format!(
                "reopen found commit {}, expected {current}",
                s.current_commit()
            ));
        }
    }
    times.sort_by(f64::total_cmp);
    r.w7_reopen_ms = times.get(times.len() / 2).copied();
    bar.inc(1);

    bar.set_message("W8 8-participant transactions");
    let cpu = CpuProbe::start();
    r.w8_tx_per_s = Some(eight_participant(&s, counts.w8).await?);
    cpu.report("W8", counts.w8);
    bar.inc(1);

    bar.set_message("W9 64 concurrent writers");
    let cpu = CpuProbe::start();
    r.w9_commits_per_s = Some(concurrent_commits(&s, counts.w9, 64, 0).await?);
    cpu.report("W9", counts.w9);
    bar.inc(1);

    bar.set_message("W10 64 writers, 10,010 watches");
    let w10 = super::bench_watch::w10(&s, counts.w9).await?;
    r.w10_commits_per_s = Some(w10.commits_per_s);
    r.w10_ratio_to_w9 = r.w9_commits_per_s.map(|w9| w10.commits_per_s / w9);
    r.w10_events_per_s = Some(w10.events_per_s);
    r.w10_latency_p50_ms = Some(w10.p50_ms);
    r.w10_latency_p99_ms = Some(w10.p99_ms);
    bar.inc(1);

    s.close().await.map_err(|e| format!("close: {e}"))?;
    r.peak_rss_mb = peak_rss_mb();
    Ok(r)
}

/// The commit W6 reads at.
fn old_commit(counts: &Counts) -> u64 {
    if counts.w1 >= 2 * OLD_COMMIT {
        OLD_COMMIT
    } else {
        (counts.w1 / 2).max(1)
    }
}

/// `n` transactions of 8 participants, each from its own task joining via
/// `get_tx` and patching `team.m{j}`; returns transactions per second.
async fn eight_participant(s: &Storage, n: u64) -> Result<f64, String> {
    let start = Instant::now();
    for round in 0..n {
        let tx = s
            .new_tx(8, PatchMeta::default())
            .await
            .map_err(|e| format!("new_tx: {e}"))?;
        let id = tx.id();
        let mut set = tokio::task::JoinSet::new();
        for j in 0..8u64 {
            let s = s.clone();
            set.spawn(async move {
                let tx = s.get_tx(id).await.map_err(|e| format!("get_tx: {e}"))?;
                let patch = Patch::new(
                    path(&format!("team.m{j}"))?,
                    Node::object([("round", Node::int(round as i64))]),
                );
                let mut w = tx
                    .new_patcher(patch)
                    .await
                    .map_err(|e| format!("new_patcher: {e}"))?;
                w.commit().await.map_err(|e| format!("commit: {e}"))
            });
        }
        let mut first: Option<Outcome> = None;
        while let Some(out) = set.join_next().await {
            let out = out.map_err(|e| format!("participant task: {e}"))??;
            if !matches!(out, Outcome::Committed { .. }) {
                return Err(format!("8-participant tx: unexpected outcome {out:?}"));
            }
            if let Some(f) = &first
                && *f != out
            {
                return Err(format!("participants disagree: {f:?} vs {out:?}"));
            }
            first = Some(out);
        }
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn print_table(r: &Results, durability: &str, counts: &Counts) {
    let old = old_commit(counts);
    let fmt = |v: Option<f64>| match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
        None => "n/a".to_string(),
    };
    println!(
        "logd bench: durability {durability}, counts {}",
        counts.name
    );
    let rows: [(&str, String, Option<f64>, &str); 15] = [
        (
            "W1",
            format!("{} sequential commits", counts.w1),
            r.w1_commits_per_s,
            "commits/s (target >= 4000)",
        ),
        (
            "W2",
            format!("{} commits, 16 tasks", counts.w2),
            r.w2_commits_per_s,
            "commits/s",
        ),
        (
            "W3",
            "switch_and_snapshot".into(),
            r.w3_snapshot_ms,
            "ms (target <= 10)",
        ),
        (
            "W4",
            "read \"\" at current".into(),
            r.w4_read_root_us,
            "us median (target <= 1000)",
        ),
        (
            "W5",
            "read users.u{k} at current".into(),
            r.w5_read_leaf_us,
            "us median (target <= 20)",
        ),
        (
            "W6",
            format!("read \"\" at commit {old}"),
            r.w6_read_old_us,
            "us median (target <= 2000)",
        ),
        (
            "W7",
            "close + reopen".into(),
            r.w7_reopen_ms,
            "ms median (target <= 20)",
        ),
        (
            "W8",
            format!("{} tx of 8 participants", counts.w8),
            r.w8_tx_per_s,
            "tx/s",
        ),
        (
            "W9",
            format!("{} commits, 64 tasks", counts.w9),
            r.w9_commits_per_s,
            "commits/s (target >= 50000)",
        ),
        (
            "W10",
            format!("W9 + {} watches", super::bench_watch::WATCHES),
            r.w10_commits_per_s,
            "commits/s",
        ),
        (
            "",
            "ratio to W9".into(),
            r.w10_ratio_to_w9,
            "(target >= 0.8)",
        ),
        (
            "",
            "events delivered".into(),
            r.w10_events_per_s,
            "events/s",
        ),
        ("", "ack -> delivery p50".into(), r.w10_latency_p50_ms, "ms"),
        (
            "",
            "ack -> delivery p99".into(),
            r.w10_latency_p99_ms,
            "ms (target <= 5)",
        ),
        ("RSS", "peak (VmHWM)".into(), r.peak_rss_mb, "MiB"),
    ];
    for (id, what, v, unit) in rows {
        println!("{id:<4} {what:<30} {:>10}  {unit}", fmt(v));
    }
}
