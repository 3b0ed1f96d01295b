//! Append throughput of the log writer: 1 and 64 concurrent appenders, in
//! both durability modes, through the store's commit path (`Appender`:
//! `AppendMayLead`, the caller running its batch's flush when handed it). Prints appends/s. `LOGD_BENCH_SECS` sets the run
//! time per case (default 2); `LOGD_BENCH_DIR` the parent directory of the
//! temporary stores (default: the system temp dir).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kameo::Actor;
use kameo::actor::{ActorRef, Spawn};
use kameo::message::{Context, Message};
use logd_actors::log_writer::DurableBatch;
use std::time::{Duration, Instant};

use logd_actors::RealFs;
use logd_actors::index::IndexActor;
use logd_actors::log_writer::{Append, AppendOutcome, Appender, WriterArgs};
use logd_actors::options::{Durability, Options};
use logd_actors::recovery::{DirLock, recover};
use logd_actors::supervisor::start;
use logd_core::Node;
use logd_core::wal::EntryMeta;

/// Counts batches (the writer's follower, told after each acknowledged batch).
struct Counter {
    batches: Arc<AtomicU64>,
}

impl Actor for Counter {
    type Args = Arc<AtomicU64>;
    type Error = kameo::error::Infallible;
    async fn on_start(batches: Self::Args, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(Counter { batches })
    }
}

impl Message<DurableBatch> for Counter {
    type Reply = ();
    async fn handle(&mut self, _: DurableBatch, _: &mut Context<Self, ()>) {
        self.batches.fetch_add(1, Ordering::Relaxed);
    }
}

fn record(i: u64) -> Append {
    let user = Node::object([
        ("name", Node::string(format!("user-{i}"))),
        ("n", Node::int(i as i64)),
        ("tags", Node::array([Node::string("a"), Node::string("b")])),
    ]);
    let users = Node::object([(format!("u{}", i % 500).as_str(), user)]);
    Append {
        patch: Node::object([("users", users)]),
        tx_id: i,
        participants: vec![],
        meta: EntryMeta::default(),
        checks: vec![],
        read_commit: 0,
        when: None,
    }
}

async fn case(durability: Durability, appenders: u64, secs: f64) -> (f64, f64) {
    let parent = std::env::var_os("LOGD_BENCH_DIR").map(std::path::PathBuf::from);
    let dir = match parent {
        Some(p) => tempfile::tempdir_in(p),
        None => tempfile::tempdir(),
    }
    .expect("temp dir");
    let mut options = Options::default();
    options.durability = durability;
    let _lock = DirLock::acquire(dir.path(), &options).expect("lock");
    let recovered = recover(dir.path(), &options, &RealFs).expect("recover");
    let batches = Arc::new(AtomicU64::new(0));
    let counter = Counter::spawn(batches.clone());
    // As in the store: every durable batch goes into a path index before
    // it is acknowledged.
    let index = IndexActor::new();
    let args = WriterArgs::new(
        dir.path().into(),
        options,
        Arc::new(RealFs),
        None,
        &recovered,
    )
    .with_index(index.sink())
    .with_follower(counter.recipient::<DurableBatch>());
    let started = start(args).await.expect("start");
    let appender = Appender::new(started.writer.clone(), Options::default().commit_spin);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..appenders {
        let appender = appender.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                match appender.append(record(t * 1_000_000 + n)).await {
                    Ok(AppendOutcome::Appended(_)) => n += 1,
                    other => panic!("append failed: {other:?}"),
                }
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    let rate = total as f64 / t0.elapsed().as_secs_f64();
    started.stop().await.expect("stop");
    // The follower is told after the acks: the last batch may not be counted.
    let per_batch = total as f64 / batches.load(Ordering::Relaxed).max(1) as f64;
    (rate, per_batch)
}

/// The disk's own rate of 200-byte positional writes each followed by
/// fdatasync, in a zero-filled file: the ceiling for one durable appender.
fn raw_fsync_rate(secs: f64) -> f64 {
    use std::os::unix::fs::FileExt;
    let dir = match std::env::var_os("LOGD_BENCH_DIR") {
        Some(p) => tempfile::tempdir_in(p),
        None => tempfile::tempdir(),
    }
    .expect("temp dir");
    let f = std::fs::File::create(dir.path().join("raw")).expect("create");
    f.write_all_at(&vec![0u8; 8 << 20], 0).expect("fill");
    f.sync_all().expect("sync");
    let rec = [7u8; 200];
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed().as_secs_f64() < secs {
        f.write_all_at(&rec, (n * 200) % (8 << 20)).expect("write");
        f.sync_data().expect("sync");
        n += 1;
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

fn main() {
    let secs: f64 = std::env::var("LOGD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for (name, d) in [
        ("immediate", Durability::Immediate),
        (
            "buffered(10ms)",
            Durability::Buffered {
                interval: Duration::from_millis(10),
            },
        ),
    ] {
        for n in [1, 64] {
            // The disk's fsync rate drifts with other load: measure it
            // right before each case.
            let raw = raw_fsync_rate(secs / 4.0);
            let (rate, per_batch) = rt.block_on(case(d, n, secs));
            println!(
                "append {name:>15} {n:>3} appenders: {rate:>10.0} appends/s ({per_batch:.1} per batch; raw fdatasync {raw:.0}/s)"
            );
        }
    }
}
