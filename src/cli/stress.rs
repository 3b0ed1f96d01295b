//! `logd stress`: a load generator through the public API. Prints one line
//! per acknowledged write, `ack <commit> <path> <value>`, flushed as it
//! happens, so a crash test can compare what was acknowledged with what
//! survives.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use logd::{Durability, Node, Options, Outcome, Patch, PatchMeta, Storage};

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
}

fn ack(commit: u64, path: &str, value: i64) -> Result<(), String> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "ack {commit} {path} {value}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))
}

async fn writer(storage: Storage, w: usize, k: usize, deadline: Instant) -> Result<u64, String> {
    let paths: Vec<String> = if k == 1 {
        vec![format!("stress.w{w}")]
    } else {
        (0..k).map(|j| format!("stress.w{w}.p{j}")).collect()
    };
    let mut value: i64 = 0;
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
    let storage = Storage::open(dir, options)
        .await
        .map_err(|e| format!("cannot open store {}: {e}", dir.display()))?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration.max(0.0));
    let mut handles = Vec::new();
    for w in 0..args.writers {
        handles.push(tokio::spawn(writer(
            storage.clone(),
            w,
            args.participants,
            deadline,
        )));
    }
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
    let closed = storage.close().await;
    if let Some(e) = first_error {
        return Err(e);
    }
    closed.map_err(|e| format!("close failed: {e}"))?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "stress: {total} commits by {} writers in {secs:.2} s ({:.0} commits/s)",
        args.writers,
        total as f64 / secs.max(1e-9)
    );
    Ok(())
}
