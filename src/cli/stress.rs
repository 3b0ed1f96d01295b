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
//!
//! `--quiet` prints no per-commit lines, only the summary (on stdout; it
//! goes to stderr otherwise). With `--json` each line is a JSON object and
//! the summary is the last line. Ctrl-C stops the writers, closes the
//! store and prints the summary (`interrupted`).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::Ctx;
use super::out::{CliError, Code};

use logd::actors::SwitchAndSnapshot;
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
    /// No line per commit: only the summary, on stdout.
    #[arg(long)]
    pub quiet: bool,
}

/// The error a writer returns when stdout was closed (the run ends quietly).
const BROKEN_PIPE: &str = "broken pipe";

/// How the writers print and when they stop.
#[derive(Clone)]
struct Run {
    json: bool,
    quiet: bool,
    stop: Arc<AtomicBool>,
    deadline: Instant,
}

impl Run {
    fn going(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < self.deadline
    }

    /// An event line (`snap-start` ...), unless quiet.
    fn event(&self, text: &str, json: serde_json::Value) -> Result<(), String> {
        match (self.quiet, self.json) {
            (true, _) => Ok(()),
            (false, true) => line(format_args!("{json}")),
            (false, false) => line(format_args!("{text}")),
        }
    }

    fn ack(&self, commit: u64, path: &str, value: i64) -> Result<(), String> {
        match (self.quiet, self.json) {
            (true, _) => Ok(()),
            (false, true) => line(format_args!(
                "{}",
                serde_json::json!({"ack": commit, "path": path, "value": value})
            )),
            (false, false) => line(format_args!("ack {commit} {path} {value}")),
        }
    }
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
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                BROKEN_PIPE.to_string()
            } else {
                format!("cannot write to stdout: {e}")
            }
        })
}

/// Every `every`: seal + snapshot (`snap-start` / `snap-done <commit>`),
/// then compact (`compact-start` / `compact-done <oldest> <segments>
/// <snapshots>`), until `deadline`. Returns how many snapshots were taken.
async fn snapshots(storage: Storage, every: Duration, run: Run) -> Result<u64, String> {
    let actors = storage.actors();
    let mut taken = 0;
    loop {
        tokio::time::sleep(every).await;
        if !run.going() {
            return Ok(taken);
        }
        run.event("snap-start", serde_json::json!({"event": "snap-start"}))?;
        let info = actors
            .snapshotter
            .ask(SwitchAndSnapshot {
                writer: actors.log_writer.clone(),
            })
            .await
            .map_err(|e| format!("snapshot failed: {}", logd_actors::error::from_send(e)))?;
        let commit = info.map_or(0, |i| i.commit);
        run.event(
            &format!("snap-done {commit}"),
            serde_json::json!({"event": "snap-done", "commit": commit}),
        )?;
        taken += 1;
        run.event(
            "compact-start",
            serde_json::json!({"event": "compact-start"}),
        )?;
        let report = storage
            .compact()
            .await
            .map_err(|e| format!("compaction failed: {e}"))?;
        run.event(
            &format!(
                "compact-done {} {} {}",
                report.oldest_commit,
                report.dropped_segments.len(),
                report.dropped_snapshots.len()
            ),
            serde_json::json!({
                "event": "compact-done",
                "oldest": report.oldest_commit,
                "segments": report.dropped_segments.len(),
                "snapshots": report.dropped_snapshots.len(),
            }),
        )?;
    }
}

async fn writer(
    storage: Storage,
    prefix: String,
    (w, k): (usize, usize),
    base: i64,
    run: Run,
) -> Result<u64, String> {
    let paths: Vec<String> = if k == 1 {
        vec![format!("{prefix}.w{w}")]
    } else {
        (0..k).map(|j| format!("{prefix}.w{w}.p{j}")).collect()
    };
    let mut value: i64 = base;
    let mut commits = 0;
    while run.going() {
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
                    run.ack(commit, p, value)?;
                }
                commits += 1;
            }
            other => return Err(format!("writer {w}: unexpected outcome {other:?}")),
        }
    }
    Ok(commits)
}

/// Runs the load and prints a summary (see the module docs).
pub async fn run(args: &StressArgs, ctx: &Ctx) -> Result<Code, CliError> {
    let dir = &ctx.dir;
    if args.writers == 0 || args.participants == 0 {
        return Err(CliError::usage(
            "--writers and --txs-participants must be at least 1",
        ));
    }
    let mut options = Options::default();
    options.durability = match args.durability.as_str() {
        "immediate" => Durability::Immediate,
        "buffered" => Durability::Buffered {
            interval: Duration::from_millis(10),
        },
        other => {
            return Err(CliError::usage(format!(
                "bad --durability {other:?}: immediate or buffered"
            )));
        }
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
        .map_err(|e| CliError::store(&format!("cannot open store {}", dir.display()), e))?;
    let start = Instant::now();
    let run = Run {
        json: ctx.json,
        quiet: args.quiet,
        stop: Arc::new(AtomicBool::new(false)),
        deadline: start + Duration::from_secs_f64(args.duration.max(0.0)),
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    let on_signal = {
        let (stop, interrupted) = (run.stop.clone(), interrupted.clone());
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.store(true, Ordering::SeqCst);
                stop.store(true, Ordering::SeqCst);
            }
        })
    };
    let mut handles = Vec::new();
    for w in 0..args.writers {
        handles.push(tokio::spawn(writer(
            storage.clone(),
            args.prefix.clone(),
            (w, args.participants),
            args.value_base,
            run.clone(),
        )));
    }
    let snapper = (args.snapshot_every_ms > 0).then(|| {
        tokio::spawn(snapshots(
            storage.clone(),
            Duration::from_millis(args.snapshot_every_ms),
            run.clone(),
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
    on_signal.abort();
    let closed = storage.close().await;
    if let Some(e) = first_error {
        if e == BROKEN_PIPE {
            return Err(CliError {
                code: Code::Ok,
                message: None,
            });
        }
        return Err(CliError::failure(e));
    }
    closed.map_err(|e| CliError::store("close failed", e))?;
    let secs = start.elapsed().as_secs_f64();
    let rate = total as f64 / secs.max(1e-9);
    let interrupted = interrupted.load(Ordering::SeqCst);
    if ctx.json {
        super::out::out!(
            "{}",
            serde_json::json!({
                "summary": {
                    "commits": total,
                    "writers": args.writers,
                    "participants": args.participants,
                    "seconds": secs,
                    "commits_per_sec": rate,
                    "snapshots": snaps,
                    "interrupted": interrupted,
                }
            })
        )?;
    } else {
        let text = format!(
            "stress: {total} commits by {} writers in {secs:.2} s ({rate:.0} commits/s), {snaps} snapshots{}",
            args.writers,
            if interrupted { ", interrupted" } else { "" }
        );
        if args.quiet {
            super::out::line(&text)?;
        } else {
            eprintln!("{text}");
        }
    }
    Ok(Code::Ok)
}
