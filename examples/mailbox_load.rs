//! A load test that drives the log writer's mailbox directly: many tasks
//! send `Append` to `storage.actors().log_writer` and the run reports
//! appends per second. This bypasses transactions (no matches, no
//! conflict checks), so it measures the sequencer and the log alone.
//!
//! `cargo run --release --example mailbox_load -- [tasks] [appends-per-task]`

use std::time::Instant;

use logd::actors::{Append, AppendOutcome, EntryMeta};
use logd::{Node, Options, Storage};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs `tasks` × `per_task` appends in `dir`; returns (appends, appends/s).
pub async fn run(dir: &std::path::Path, tasks: u64, per_task: u64) -> Result<(u64, f64), BoxError> {
    let storage = Storage::open(dir, Options::default()).await?;
    let writer = storage.actors().log_writer;
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let writer = writer.clone();
        handles.push(tokio::spawn(async move {
            let mut last = 0;
            for i in 0..per_task {
                let append = Append {
                    patch: Node::object([(
                        "load",
                        Node::object([(format!("t{t}").as_str(), Node::int(i as i64))]),
                    )]),
                    tx_id: 0,
                    participants: vec![],
                    meta: EntryMeta::default(),
                    checks: vec![],
                    read_commit: 0,
                    when: None,
                };
                match writer.ask(append).await {
                    Ok(AppendOutcome::Appended(a)) => {
                        if a.commit <= last {
                            return Err(format!("commit {} after {last}", a.commit));
                        }
                        last = a.commit;
                    }
                    Ok(other) => return Err(format!("unexpected {other:?}")),
                    Err(e) => return Err(format!("append failed: {e}")),
                }
            }
            Ok(())
        }));
    }
    for h in handles {
        h.await?.map_err(BoxError::from)?;
    }
    let secs = start.elapsed().as_secs_f64();
    let n = tasks * per_task;
    if storage.current_commit() != n {
        return Err(format!(
            "expected commit {n}, store is at {}",
            storage.current_commit()
        )
        .into());
    }
    storage.close().await?;
    Ok((n, n as f64 / secs.max(1e-9)))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let tasks = args.next().map_or(Ok(16), |a| a.parse())?;
    let per_task = args.next().map_or(Ok(250), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let (n, rate) = run(dir.path(), tasks, per_task).await?;
    println!("{n} appends from {tasks} tasks: {rate:.0} appends/s");
    Ok(())
}
