//! `logd stress`: a load generator through the public API. Prints one line
//! per acknowledged write, `ack <commit> <path> <value>`, flushed as it
//! happens, so a crash test can compare what was acknowledged with what
//! survives.
//!
//! With `--snapshot-every-ms M` a background task seals the log and writes a
//! snapshot every M ms, then compacts (with `--keep-recent N`, compaction
//! really deletes files), printing `snap-start`, `snap-done <commit>`,
//! `compact-start` and `compact-done <oldest> <segments> <snapshots>` around
//! each step, so a crash test can aim its kills at those moments. It never
//! touches store files itself.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use logd::actors::snapshotter::SwitchAndSnapshot;
use logd::{Cutoff, Durability, Node, Options, Outcome, Patch, PatchMeta, Retention, Storage};

/// Options of `logd stress`.
#[derive(clap::Args, Debug)]
pub struct StressArgs {
    /// Concurrent writers.
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Participants per transaction (K>1: K paths per commit).
    #[arg(long = "txs-participants", default_value_t = 1)]
    pub participants: usize,
    /// `immediate` (fsync before ack, the default) or `buffered`.
    #[arg(long, default_value = "immediate")]
    pub durability: String,
    /// Seal, snapshot and compact every M milliseconds (0: never).
    #[arg(long = "snapshot-every-ms", default_value_t = 0)]
    pub snapshot_every_ms: u64,
    /// Retention: keep only the last N commits readable (plus what the
    /// tiered policy keeps), so compaction deletes files. 0: keep all.
    #[arg(long = "keep-recent", default_value_t = 0)]
    pub keep_recent: u64,
    /// The top-level field the writers write under (`<prefix>.w<i>`).
    #[arg(long, default_value = "stress")]
    pub prefix: String,
    /// Values written start after this number (so runs on one store write
    /// distinct values).
    #[arg(long = "value-base", default_value_t = 0)]
    pub value_base: i64,
}

/// Prints one line with a single write (a kill never leaves half of it
/// followed by a newline), then flushes.
fn line(text: std::fmt::Arguments<'_>) -> Result<(), String> {
    let mut buf = text.to_string();
    buf.push('\n');
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    out.write_all(buf.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))
}

fn ack(commit: u64, path: &str, value: i64) -> Result<(), String> {
    line(format_args!("ack {commit} {path} {value}"))
}

/// Every `every`: seal + snapshot (`snap-start` / `snap-done <commit>`),
/// then compact (`compact-start` / `compact-done <oldest> <segments>
/// <snapshots>`), until `deadline`. Returns how many snapshots were taken.
async fn snapshots(storage: Storage, every: Duration, deadline: Instant) -> Result<u64, String> {
    let actors = storage.actors();
    let mut taken = 0;
    loop {
        tokio::time::sleep(every).await;
        if Instant::now() >= deadline {
            return Ok(taken);
        }
        line(format_args!("snap-start"))?;
        let info = actors
            .snapshotter
            .ask(SwitchAndSnapshot {
                writer: actors.log_writer.clone(),
            })
            .await
            .map_err(|e| format!("snapshot failed: {}", logd_actors::error::from_send(e)))?;
        let commit = info.map_or(0, |i| i.commit);
        line(format_args!("snap-done {commit}"))?;
        taken += 1;
        line(format_args!("compact-start"))?;
        let report = storage
            .compact()
            .await
            .map_err(|e| format!("compaction failed: {e}"))?;
        line(format_args!(
            "compact-done {} {} {}",
            report.oldest_commit,
            report.dropped_segments.len(),
            report.dropped_snapshots.len()
        ))?;
    }
}

async fn writer(
    storage: Storage,
    prefix: String,
    (w, k): (usize, usize),
    base: i64,
    deadline: Instant,
) -> Result<u64, String> {
    let paths: Vec<String> = if k == 1 {
        vec![format!("{prefix}.w{w}")]
    } else {
        (0..k).map(|j| format!("{prefix}.w{w}.p{j}")).collect()
    };
    let mut value: i64 = base;
    let mut commits = 0;
    while Instant::now() < deadline {
        value += 1;
        let tx = storage
            .new_tx(k, PatchMeta::default())
            .await
            .map_err(|e| e.to_string())?;
        let mut tasks = Vec::with_capacity(k);
        for p in &paths {
            let path = logd::KPath::parse(p).map_err(|e| e.to_string())?;
            let mut patcher = tx
                .new_patcher(Patch::new(path, Node::int(value)))
                .await
                .map_err(|e| e.to_string())?;
            tasks.push(tokio::spawn(async move { patcher.commit().await }));
        }
        let mut outcome = None;
        for t in tasks {
            let o = t
                .await
                .map_err(|e| format!("participant task failed: {e}"))?
                .map_err(|e| format!("writer {w}: {e}"))?;
            outcome = Some(o);
        }
        match outcome {
            Some(Outcome::Committed { commit }) => {
                for p in &paths {
                    ack(commit, p, value)?;
                }
                commits += 1;
            }
            other => return Err(format!("writer {w}: unexpected outcome {other:?}")),
        }
    }
    Ok(commits)
}

/// Runs the load and prints a summary on stderr.
pub async fn run(args: &StressArgs, dir: &Path) -> Result<(), String> {
    if args.writers == 0 || args.participants == 0 {
        return Err("--writers and --txs-participants must be at least 1".into());
    }
    let mut options = Options::default();
    options.durability = match args.durability.as_str() {
        "immediate" => Durability::Immediate,
        "buffered" => Durability::Buffered {
            interval: Duration::from_millis(10),
        },
        other => return Err(format!("bad --durability {other:?}: immediate or buffered")),
    };
    if args.keep_recent > 0 {
        options.compaction = Retention::Tiered {
            keep_recent: Cutoff::Commits(args.keep_recent),
            per_tier: 0,
            first_tier: 1,
            multiplier: 2,
        };
    }
    let storage = Storage::open(dir, options)
        .await
        .map_err(|e| format!("cannot open store {}: {e}", dir.display()))?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration.max(0.0));
    let mut handles = Vec::new();
    for w in 0..args.writers {
        handles.push(tokio::spawn(writer(
            storage.clone(),
            args.prefix.clone(),
            (w, args.participants),
            args.value_base,
            deadline,
        )));
    }
    let snapper = (args.snapshot_every_ms > 0).then(|| {
        tokio::spawn(snapshots(
            storage.clone(),
            Duration::from_millis(args.snapshot_every_ms),
            deadline,
        ))
    });
    let mut total = 0;
    let mut first_error = None;
    for h in handles {
        match h.await {
            Ok(Ok(n)) => total += n,
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(format!("writer task failed: {e}"));
            }
        }
    }
    let mut snaps = 0;
    if let Some(h) = snapper {
        match h.await {
            Ok(Ok(n)) => snaps = n,
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(format!("snapshot task failed: {e}"));
            }
        }
    }
    let closed = storage.close().await;
    if let Some(e) = first_error {
        return Err(e);
    }
    closed.map_err(|e| format!("close failed: {e}"))?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "stress: {total} commits by {} writers in {secs:.2} s ({:.0} commits/s), {snaps} snapshots",
        args.writers,
        total as f64 / secs.max(1e-9)
    );
    Ok(())
}
