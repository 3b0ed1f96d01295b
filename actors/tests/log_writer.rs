//! Durable write path: numbering, recovery, faults, conflicts, supervision.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kameo::Actor;
use kameo::actor::{ActorRef, Spawn};
use kameo::message::{Context, Message};
use logd_actors::error::{Error, from_send};
use logd_actors::fileops::{FileOps, RealFs};
use logd_actors::log_writer::{
    Append, AppendMayLead, AppendOutcome, Appended, Appender, DecidedOrLead, DurableBatch, Flush,
    LogWriter, Seal, WaitAcked, WriterArgs,
};
use logd_actors::options::{Durability, Options};
use logd_actors::recovery::{DirLock, Recovered, recover};
use logd_actors::supervisor::{Started, start};
use logd_core::wal::{self, EntryMeta};
use logd_core::{KPath, Node};

#[derive(Debug, Default)]
struct FaultFs {
    fail_sync: AtomicBool,
    fail_write: AtomicBool,
    panic_sync_once: AtomicBool,
    slow_sync_ms: AtomicU64,
    syncs: AtomicU64,
}

impl FileOps for FaultFs {
    fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.fail_write.load(Ordering::SeqCst) {
            // A short write, then the error.
            RealFs.write_at(file, &buf[..buf.len() / 2], offset)?;
            return Err(io::Error::other("injected write failure"));
        }
        RealFs.write_at(file, buf, offset)
    }
    fn sync(&self, file: &File) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        let ms = self.slow_sync_ms.load(Ordering::SeqCst);
        if ms > 0 {
            std::thread::sleep(Duration::from_millis(ms));
        }
        if self.panic_sync_once.swap(false, Ordering::SeqCst) {
            panic!("injected panic in sync");
        }
        if self.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected fsync failure"));
        }
        RealFs.sync(file)
    }
}

/// Records every batch it is shown.
#[derive(Debug, Default)]
struct Observer {
    seen: Arc<Mutex<Vec<u64>>>,
}

impl Actor for Observer {
    type Args = Arc<Mutex<Vec<u64>>>;
    type Error = kameo::error::Infallible;
    async fn on_start(seen: Self::Args, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(Observer { seen })
    }
}

impl Message<DurableBatch> for Observer {
    type Reply = ();
    async fn handle(&mut self, msg: DurableBatch, _: &mut Context<Self, ()>) {
        let mut g = self.seen.lock().unwrap();
        g.extend(msg.records.iter().map(|r| r.commit));
    }
}

struct Store {
    _lock: DirLock,
    recovered: Recovered,
    started: Started,
}

async fn open_with(
    dir: &Path,
    options: Options,
    fs: Arc<dyn FileOps>,
    observer: Option<logd_actors::log_writer::CommitObserver>,
) -> Result<Store, Error> {
    let lock = DirLock::acquire(dir, &options)?;
    let recovered = recover(dir, &options, &*fs)?;
    let args = WriterArgs::new(dir.to_path_buf(), options, fs, observer, &recovered);
    let started = start(args).await?;
    Ok(Store {
        _lock: lock,
        recovered,
        started,
    })
}

async fn open(dir: &Path) -> Store {
    open_with(dir, Options::default(), Arc::new(RealFs), None)
        .await
        .unwrap()
}

fn p(s: &str) -> KPath {
    KPath::parse(s).unwrap()
}

fn append_msg(path: &str, value: i64) -> Append {
    Append {
        patch: Node::object([(path, Node::int(value))]),
        tx_id: value as u64,
        participants: vec![],
        meta: EntryMeta::default(),
        checks: vec![],
        read_commit: 0,
        when: None,
    }
}

async fn append(w: &ActorRef<LogWriter>, msg: Append) -> Result<AppendOutcome, Error> {
    w.ask(msg).await.map_err(from_send)
}

async fn append_ok(w: &ActorRef<LogWriter>, msg: Append) -> Appended {
    match append(w, msg).await.unwrap() {
        AppendOutcome::Appended(a) => a,
        other => panic!("expected append, got {other:?}"),
    }
}

/// A writer that indexes through an `IndexWriter` and tells a follower that
/// records what it sees, as the store wires it.
struct Indexed {
    lock: DirLock,
    shared: logd_actors::index::SharedIndex,
    followed: Arc<Mutex<Vec<u64>>>,
    index: ActorRef<logd_actors::index::IndexActor>,
    started: Started,
}

async fn open_indexed(dir: &Path) -> Indexed {
    use logd_actors::index::IndexActor;

    let options = Options::default();
    let lock = DirLock::acquire(dir, &options).unwrap();
    let recovered = recover(dir, &options, &RealFs).unwrap();
    let index_state = IndexActor::new();
    let shared = index_state.shared();
    let followed = Arc::new(Mutex::new(Vec::new()));
    let follower = Observer::spawn(followed.clone());
    let args = WriterArgs::new(
        dir.to_path_buf(),
        options,
        Arc::new(RealFs),
        None,
        &recovered,
    )
    .with_index(index_state.sink())
    .with_follower(follower.recipient::<DurableBatch>());
    let index = IndexActor::spawn(index_state);
    let started = start(args).await.unwrap();
    Indexed {
        lock,
        shared,
        followed,
        index,
        started,
    }
}

/// The follower saw commits `1..=last`, each once, in order. It is told
/// after the acks, so this waits (up to 2 s) for the last batch to land.
async fn assert_followed(followed: &Mutex<Vec<u64>>, last: u64) {
    for _ in 0..200 {
        if followed.lock().unwrap().len() as u64 >= last {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(*followed.lock().unwrap(), (1..=last).collect::<Vec<u64>>());
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_get_gap_free_ordered_commits() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let obs = Observer::spawn(seen.clone());
    let store = open_with(
        dir.path(),
        Options::default(),
        Arc::new(RealFs),
        Some(obs.clone().reply_recipient::<DurableBatch>()),
    )
    .await
    .unwrap();
    let w = store.started.writer.clone();
    let mut tasks = Vec::new();
    for t in 0..64i64 {
        let w = w.clone();
        let seen = seen.clone();
        let acked = store.started.last_acked.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..20i64 {
                let a = append_ok(&w, append_msg(&format!("k{t}"), t * 1000 + i)).await;
                // Acknowledged only after the observer saw it.
                assert!(seen.lock().unwrap().contains(&a.commit));
                assert!(acked.load(Ordering::SeqCst) >= a.commit);
                out.push((a, t * 1000 + i));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let mine = t.await.unwrap();
        // Each appender's own commits increase.
        assert!(mine.windows(2).all(|w| w[0].0.commit < w[1].0.commit));
        all.extend(mine);
    }
    all.sort_by_key(|(a, _)| a.commit);
    let commits: Vec<u64> = all.iter().map(|(a, _)| a.commit).collect();
    assert_eq!(commits, (1..=1280).collect::<Vec<_>>());
    // Locations increase with commit numbers (log order).
    assert!(
        all.windows(2)
            .all(|w| w[0].0.location.offset < w[1].0.location.offset)
    );
    assert_eq!(*seen.lock().unwrap(), commits);
    store.started.stop().await.unwrap();
    drop(store);

    let store = open(dir.path()).await;
    assert_eq!(store.recovered.last_commit, 1280);
    let f = File::open(last_segment(dir.path())).unwrap();
    for ((a, tx), r) in all.iter().zip(&store.recovered.records) {
        assert_eq!(r.commit, a.commit);
        assert_eq!(r.location, a.location);
        assert_eq!(r.entry.tx_id, *tx as u64);
        assert_eq!(wal::read_at(&f, a.location).unwrap(), *r.entry);
    }
    store.started.stop().await.unwrap();
}

#[tokio::test]
async fn reopen_resumes_numbering() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3u64 {
        let store = open(dir.path()).await;
        assert_eq!(store.recovered.last_commit, round * 5);
        assert_eq!(store.started.last_acked.load(Ordering::SeqCst), round * 5);
        let last = round * 5;
        if last > 0 {
            // After a restart, a check against a read before the last durable
            // commit is answered conservatively at that commit (no record is
            // replayed into the conflict index); one at it passes.
            let mut m = append_msg("a", 0);
            m.checks = vec![p("elsewhere")];
            m.read_commit = last - 1;
            assert_eq!(
                append(&store.started.writer, m).await.unwrap(),
                AppendOutcome::Conflict {
                    path: p("elsewhere"),
                    commit: last
                }
            );
        }
        for i in 0..5 {
            let mut m = append_msg("a", i);
            m.checks = vec![p("a")];
            m.read_commit = last + i as u64;
            let a = append_ok(&store.started.writer, m).await;
            assert_eq!(a.commit, last + i as u64 + 1);
        }
        store.started.stop().await.unwrap();
    }
}

#[tokio::test]
async fn torn_tail_is_truncated_at_every_byte_of_the_last_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let mut locs = Vec::new();
    for i in 0..3 {
        locs.push(
            append_ok(&store.started.writer, append_msg("a", i))
                .await
                .location,
        );
    }
    store.started.stop().await.unwrap();
    drop(store);
    let seg = last_segment(dir.path());
    let mut full = std::fs::read(&seg).unwrap();
    let last = locs[2];
    // Past the last record the writer leaves only zero fill.
    let end = (last.offset + u64::from(last.len)) as usize;
    assert!(full[end..].iter().all(|&b| b == 0));
    full.truncate(end);
    for cut in last.offset..full.len() as u64 {
        std::fs::write(&seg, &full[..cut as usize]).unwrap();
        let r = recover(dir.path(), &Options::default(), &RealFs).unwrap();
        assert_eq!(r.last_commit, 2, "cut at {cut}");
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), last.offset);
        if cut > last.offset {
            assert_eq!(r.truncated, Some((seg.clone(), last.offset)));
        }
    }
    // The next commit reuses the number that was never acknowledged.
    std::fs::write(&seg, &full[..full.len() - 1]).unwrap();
    let store = open(dir.path()).await;
    let a = append_ok(&store.started.writer, append_msg("b", 9)).await;
    assert_eq!(a.commit, 3);
    store.started.stop().await.unwrap();
}

#[tokio::test]
async fn flipped_bit_mid_segment_is_reported_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let mut locs = Vec::new();
    for i in 0..5 {
        locs.push(
            append_ok(&store.started.writer, append_msg("a", i))
                .await
                .location,
        );
    }
    store.started.stop().await.unwrap();
    drop(store);
    let seg = last_segment(dir.path());
    let mut bytes = std::fs::read(&seg).unwrap();
    let victim = locs[1];
    bytes[victim.offset as usize + 10] ^= 0x04;
    std::fs::write(&seg, &bytes).unwrap();
    match recover(dir.path(), &Options::default(), &RealFs) {
        Err(Error::Corrupt { file, offset, .. }) => {
            assert_eq!(file, seg);
            assert_eq!(offset, victim.offset);
        }
        other => panic!("expected corrupt, got {other:?}"),
    }
    // Nothing was truncated.
    assert_eq!(std::fs::read(&seg).unwrap(), bytes);
    assert!(matches!(
        open_with(dir.path(), Options::default(), Arc::new(RealFs), None).await,
        Err(Error::Corrupt { .. })
    ));
}

#[tokio::test]
async fn corruption_in_an_earlier_segment_and_gaps_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for i in 0..2 {
        append_ok(&store.started.writer, append_msg("a", i)).await;
    }
    let sealed = store.started.writer.ask(Seal).await.unwrap().unwrap();
    assert_eq!((sealed.first_commit, sealed.last_commit), (1, 2));
    let a = append_ok(&store.started.writer, append_msg("a", 3)).await;
    assert_eq!((a.commit, a.location.segment), (3, 3));
    store.started.stop().await.unwrap();
    drop(store);
    // Cut the sealed (not last) segment: that is corruption, not a torn tail.
    let first = dir.path().join("wal").join(wal::segment_file_name(1));
    let full = std::fs::read(&first).unwrap();
    std::fs::write(&first, &full[..full.len() - 3]).unwrap();
    assert!(matches!(
        recover(dir.path(), &Options::default(), &RealFs),
        Err(Error::Corrupt { file, .. }) if file == first
    ));
    std::fs::write(&first, &full).unwrap();
    // A gap between segments.
    let second = dir.path().join("wal").join(wal::segment_file_name(3));
    let gap = dir.path().join("wal").join(wal::segment_file_name(4));
    std::fs::rename(&second, &gap).unwrap();
    assert!(matches!(
        recover(dir.path(), &Options::default(), &RealFs),
        Err(Error::Corrupt { file, .. }) if file == gap
    ));
}

#[tokio::test]
async fn segments_roll_past_segment_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options::default();
    o.segment_bytes = 200;
    let store = open_with(dir.path(), o.clone(), Arc::new(RealFs), None)
        .await
        .unwrap();
    let mut segs = BTreeSet::new();
    for i in 0..20 {
        segs.insert(
            append_ok(&store.started.writer, append_msg("a", i))
                .await
                .location
                .segment,
        );
    }
    assert!(segs.len() > 3);
    store.started.stop().await.unwrap();
    drop(store);
    let store = open_with(dir.path(), o, Arc::new(RealFs), None)
        .await
        .unwrap();
    assert_eq!(store.recovered.last_commit, 20);
    assert_eq!(store.recovered.segments.len(), segs.len());
    store.started.stop().await.unwrap();
}

#[tokio::test]
async fn fsync_failure_fail_stops_and_reopen_is_consistent() {
    for fail_write in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(FaultFs::default());
        let store = open_with(dir.path(), Options::default(), fs.clone(), None)
            .await
            .unwrap();
        let w = store.started.writer.clone();
        for i in 0..3 {
            append_ok(&w, append_msg("a", i)).await;
        }
        if fail_write {
            fs.fail_write.store(true, Ordering::SeqCst);
        } else {
            fs.fail_sync.store(true, Ordering::SeqCst);
        }
        let e = append(&w, append_msg("a", 3)).await.unwrap_err();
        let op = if fail_write { "write" } else { "sync" };
        assert!(matches!(&e, Error::Io { op: o, .. } if *o == op), "{e:?}");
        assert_eq!(store.started.last_acked.load(Ordering::SeqCst), 3);
        fs.fail_sync.store(false, Ordering::SeqCst);
        fs.fail_write.store(false, Ordering::SeqCst);
        // Fail-stop: later appends are refused even though the disk is back.
        assert!(matches!(
            append(&w, append_msg("a", 4)).await,
            Err(Error::WriterFailed { .. })
        ));
        assert!(matches!(
            w.ask(Seal).await.map_err(from_send),
            Err(Error::WriterFailed { .. })
        ));
        let _ = store.started.stop().await;
        drop(store);

        let store = open(dir.path()).await;
        let r = &store.recovered;
        // Every acknowledged commit is there; numbering is gap-free.
        assert!(r.last_commit >= 3);
        let commits: Vec<u64> = r.records.iter().map(|r| r.commit).collect();
        assert_eq!(commits, (1..=r.last_commit).collect::<Vec<_>>());
        let a = append_ok(&store.started.writer, append_msg("a", 5)).await;
        assert_eq!(a.commit, r.last_commit + 1);
        store.started.stop().await.unwrap();
    }
}

#[tokio::test]
async fn too_large_keeps_the_writer_usable() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options::default();
    o.max_record_bytes = 200;
    let store = open_with(dir.path(), o, Arc::new(RealFs), None)
        .await
        .unwrap();
    let w = &store.started.writer;
    let mut big = append_msg("a", 1);
    big.patch = Node::object([("a", Node::string("x".repeat(500)))]);
    match append(w, big).await {
        Err(Error::TooLarge { bytes, max }) => {
            assert!(bytes > 500);
            assert_eq!(max, 200);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(append_ok(w, append_msg("a", 2)).await.commit, 1);
    store.started.stop().await.unwrap();
}

#[tokio::test]
async fn lock_is_exclusive_within_and_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    assert!(matches!(
        open_with(dir.path(), Options::default(), Arc::new(RealFs), None).await,
        Err(Error::Locked { dir: d, holder }) if d == dir.path() && holder == Some(std::process::id())
    ));
    let status = std::process::Command::new("flock")
        .arg("-n")
        .arg(dir.path().join("LOCK"))
        .arg("true")
        .status();
    if let Ok(status) = status {
        assert!(!status.success(), "another process got the lock");
    }
    store.started.stop().await.unwrap();
    drop(store);
    let store = open(dir.path()).await;
    store.started.stop().await.unwrap();
}

#[tokio::test]
async fn conflict_checks_including_within_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultFs::default());
    let store = open_with(dir.path(), Options::default(), fs.clone(), None)
        .await
        .unwrap();
    let w = store.started.writer.clone();
    let mut m = append_msg("a", 1);
    m.patch = Node::object([("a", Node::object([("b", Node::int(1))]))]);
    assert_eq!(append_ok(&w, m).await.commit, 1);
    let checked = |path: &str, read_commit: u64| {
        let mut m = append_msg("z", 0);
        m.checks = vec![p(path)];
        m.read_commit = read_commit;
        m
    };
    assert_eq!(
        append(&w, checked("a.b.c", 0)).await.unwrap(),
        AppendOutcome::Conflict {
            path: p("a.b.c"),
            commit: 1
        }
    );
    assert_eq!(
        append(&w, checked("a", 0)).await.unwrap(),
        AppendOutcome::Conflict {
            path: p("a"),
            commit: 1
        }
    );
    // No commit number was used by the conflicts.
    assert_eq!(append_ok(&w, checked("a.c", 0)).await.commit, 2);
    assert_eq!(append_ok(&w, checked("a.b", 1)).await.commit, 3);
    assert!(matches!(
        append(&w, checked("a", 99)).await,
        Err(Error::FutureCommit {
            commit: 99,
            current: 3
        })
    ));

    // Within one batch: keep a flush in flight so the next two land together.
    fs.slow_sync_ms.store(150, Ordering::SeqCst);
    let w1 = w.clone();
    let slow = tokio::spawn(async move { append_ok(&w1, append_msg("q", 1)).await });
    tokio::time::sleep(Duration::from_millis(30)).await;
    let w2 = w.clone();
    let first = tokio::spawn(async move {
        let mut m = append_msg("x", 1);
        m.patch = Node::object([("x", Node::object([("y", Node::int(1))]))]);
        append_ok(&w2, m).await
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let second = append(&w, checked("x.y", 4)).await.unwrap();
    let first = first.await.unwrap();
    let slow = slow.await.unwrap();
    assert_eq!(slow.commit, 4);
    assert_eq!(first.commit, 5);
    assert_eq!(
        second,
        AppendOutcome::Conflict {
            path: p("x.y"),
            commit: 5
        }
    );
    fs.slow_sync_ms.store(0, Ordering::SeqCst);
    store.started.stop().await.unwrap();
}

#[tokio::test]
async fn buffered_mode_acks_and_syncs_on_a_timer() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options::default();
    o.durability = Durability::Buffered {
        interval: Duration::from_millis(20),
    };
    let store = open_with(dir.path(), o.clone(), Arc::new(RealFs), None)
        .await
        .unwrap();
    let w = &store.started.writer;
    for i in 0..10 {
        assert_eq!(append_ok(w, append_msg("a", i)).await.commit, i as u64 + 1);
    }
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(w.ask(Flush).await.unwrap(), 10);
    store.started.stop().await.unwrap();
    drop(store);
    let store = open_with(dir.path(), o, Arc::new(RealFs), None)
        .await
        .unwrap();
    assert_eq!(store.recovered.last_commit, 10);
    store.started.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_is_restarted_after_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultFs::default());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let obs = Observer::spawn(seen.clone());
    let store = open_with(
        dir.path(),
        Options::default(),
        fs.clone(),
        Some(obs.reply_recipient::<DurableBatch>()),
    )
    .await
    .unwrap();
    let w = store.started.writer.clone();
    for i in 0..3 {
        append_ok(&w, append_msg("a", i)).await;
    }
    fs.panic_sync_once.store(true, Ordering::SeqCst);
    let e = tokio::time::timeout(Duration::from_secs(5), append(&w, append_msg("a", 3)))
        .await
        .expect("a panic must not hang the caller");
    assert!(matches!(e, Err(Error::WriterFailed { .. })), "{e:?}");
    // 3, or 4 once the restart has found the written record and shown it
    // to the observer.
    let acked = store.started.last_acked.load(Ordering::SeqCst);
    assert!((3..=4).contains(&acked), "{acked}");
    // The restarted writer serves appends again; the record whose sync
    // panicked was written, so the restart found it and showed it to the
    // observer before taking new work.
    let mut next = None;
    for _ in 0..50 {
        let r = tokio::time::timeout(Duration::from_secs(1), append(&w, append_msg("a", 4))).await;
        match r.unwrap_or(Err(Error::Closed)) {
            Ok(AppendOutcome::Appended(a)) => {
                next = Some(a);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let next = next.expect("writer was not restarted");
    assert_eq!(next.commit, 5);
    assert_eq!(*seen.lock().unwrap(), vec![1, 2, 3, 4, 5]);
    assert_eq!(store.started.last_acked.load(Ordering::SeqCst), 5);
    store.started.stop().await.unwrap();
    drop(store);
    let store = open(dir.path()).await;
    assert_eq!(store.recovered.last_commit, 5);
    store.started.stop().await.unwrap();
}

#[tokio::test]
async fn directories_honour_the_umask_option() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let mut o = Options::default();
    o.umask = 0o077;
    let store = open_with(&store_dir, o, Arc::new(RealFs), None)
        .await
        .unwrap();
    append_ok(&store.started.writer, append_msg("a", 1)).await;
    for d in [store_dir.clone(), store_dir.join("wal")] {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
    let seg = last_segment(&store_dir);
    let mode = std::fs::metadata(&seg).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o077, 0, "{mode:o}");
    let meta = logd_actors::recovery::read_meta(&store_dir).unwrap();
    assert_eq!(meta.wal_format, wal::FORMAT_VERSION);
    store.started.stop().await.unwrap();
}

/// `WaitAcked` answers when the flush covering the commit is done (never
/// before its acknowledgement), at once for acknowledged commits, refuses
/// commits not sequenced, and fails waiters when the flush fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_acked_answers_when_the_covering_flush_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultFs::default());
    let store = open_with(dir.path(), Options::default(), fs.clone(), None)
        .await
        .unwrap();
    let w = store.started.writer.clone();
    let acked = store.started.last_acked.clone();
    assert!(matches!(
        w.ask(WaitAcked { commit: 1 }).await.map_err(from_send),
        Err(Error::FutureCommit {
            commit: 1,
            current: 0
        })
    ));
    fs.slow_sync_ms.store(60, Ordering::SeqCst);
    let in_flight = {
        let w = w.clone();
        tokio::spawn(async move { append_ok(&w, append_msg("a", 1)).await })
    };
    tokio::time::sleep(Duration::from_millis(15)).await;
    assert_eq!(acked.load(Ordering::SeqCst), 0, "still syncing");
    let got = w.ask(WaitAcked { commit: 1 }).await.map_err(from_send);
    assert_eq!(got, Ok(1));
    assert!(
        acked.load(Ordering::SeqCst) >= 1,
        "answered only once acknowledged"
    );
    assert_eq!(in_flight.await.unwrap().commit, 1);
    fs.slow_sync_ms.store(0, Ordering::SeqCst);
    assert_eq!(
        w.ask(WaitAcked { commit: 1 }).await.map_err(from_send),
        Ok(1)
    );

    // A failing flush fails its waiters too.
    fs.slow_sync_ms.store(60, Ordering::SeqCst);
    fs.fail_sync.store(true, Ordering::SeqCst);
    let failing = {
        let w = w.clone();
        tokio::spawn(async move { append(&w, append_msg("a", 2)).await })
    };
    tokio::time::sleep(Duration::from_millis(15)).await;
    let got = w.ask(WaitAcked { commit: 2 }).await.map_err(from_send);
    assert!(matches!(got, Err(Error::WriterFailed { .. })), "{got:?}");
    assert!(failing.await.unwrap().is_err());
    fs.fail_sync.store(false, Ordering::SeqCst);
    let _ = store.started.stop().await;
}

/// A seal survives a reopen: appends after it go to a new segment, and the
/// first `Seal` after the reopen names the sealed segment once more (so a
/// snapshot a crash prevented can still be taken); an unsealed segment is
/// appended to after a reopen, as is one whose torn tail was cut.
#[tokio::test]
async fn a_seal_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for i in 0..3 {
        append_ok(&store.started.writer, append_msg("a", i)).await;
    }
    let sealed = store.started.writer.ask(Seal).await.unwrap().unwrap();
    assert_eq!((sealed.first_commit, sealed.last_commit), (1, 3));
    store.started.stop().await.unwrap();
    drop(store);

    let store = open(dir.path()).await;
    let segs = &store.recovered.segments;
    assert_eq!(segs.len(), 1);
    assert!(segs[0].sealed, "{segs:?}");
    let again = store.started.writer.ask(Seal).await.unwrap();
    assert_eq!(again.map(|s| (s.first_commit, s.last_commit)), Some((1, 3)));
    assert_eq!(store.started.writer.ask(Seal).await.unwrap(), None);
    let a = append_ok(&store.started.writer, append_msg("a", 3)).await;
    assert_eq!((a.commit, a.location.segment), (4, 4));
    append_ok(&store.started.writer, append_msg("a", 4)).await;
    store.started.stop().await.unwrap();
    drop(store);

    // The new segment was not sealed: a reopen appends to it.
    let store = open(dir.path()).await;
    let segs = &store.recovered.segments;
    assert_eq!(
        segs.iter().map(|s| s.sealed).collect::<Vec<_>>(),
        [true, false]
    );
    let a = append_ok(&store.started.writer, append_msg("a", 5)).await;
    assert_eq!((a.commit, a.location.segment), (6, 4));
    store.started.stop().await.unwrap();
    drop(store);

    // A torn tail cut at open leaves the segment open for appends.
    let last = last_segment(dir.path());
    let len = std::fs::metadata(&last).unwrap().len();
    let store = open(dir.path()).await;
    let end = store.recovered.segments[1].bytes;
    store.started.stop().await.unwrap();
    drop(store);
    assert!(len > end, "the appended-to segment keeps its zero fill");
    let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    f.set_len(end - 3).unwrap(); // cut into commit 6
    drop(f);
    let store = open(dir.path()).await;
    assert_eq!(store.recovered.last_commit, 5);
    assert!(store.recovered.truncated.is_some());
    assert!(!store.recovered.segments[1].sealed);
    let a = append_ok(&store.started.writer, append_msg("a", 6)).await;
    assert_eq!((a.commit, a.location.segment), (6, 4));
    store.started.stop().await.unwrap();
}

/// Appends through the store's commit path ([`Appender`]): the caller may be
/// handed its batch's flush.
async fn lead_ok(a: &Appender, msg: Append) -> Appended {
    match a.append(msg).await.unwrap() {
        AppendOutcome::Appended(a) => a,
        other => panic!("expected append, got {other:?}"),
    }
}

/// A lone `AppendMayLead` caller is handed its own flush; running it makes
/// the record durable. A lead dropped unrun is flushed by a task instead:
/// the record is acknowledged, and the writer takes further appends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_leading_append_flushes_itself_and_a_dropped_lead_is_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let w = store.started.writer.clone();
    let DecidedOrLead::Lead(lead) = w.ask(AppendMayLead(append_msg("a", 1))).await.unwrap() else {
        panic!("a lone caller is handed the flush");
    };
    assert_eq!(store.started.last_acked.load(Ordering::SeqCst), 0);
    let a = lead.run().await.unwrap();
    assert!(matches!(
        a,
        AppendOutcome::Appended(Appended { commit: 1, .. })
    ));
    assert_eq!(store.started.last_acked.load(Ordering::SeqCst), 1);

    let DecidedOrLead::Lead(lead) = w.ask(AppendMayLead(append_msg("a", 2))).await.unwrap() else {
        panic!("a lone caller is handed the flush");
    };
    drop(lead);
    let acked = tokio::time::timeout(Duration::from_secs(5), w.ask(WaitAcked { commit: 2 }))
        .await
        .expect("a dropped lead must not strand its batch")
        .unwrap();
    assert_eq!(acked, 2);
    let a = lead_ok(
        &Appender::new(w.clone(), Duration::ZERO),
        append_msg("a", 3),
    )
    .await;
    assert_eq!(a.commit, 3);
    // Right after a lone leader's flush, the writer answers at once.
    assert_eq!(w.ask(Flush).await.unwrap(), 3);
    assert_eq!(w.ask(Seal).await.unwrap().unwrap().last_commit, 3);
    // A caller that gives up right after sending (the lead is then
    // dropped with the unread reply) strands nothing either.
    {
        let ask = std::future::IntoFuture::into_future(w.ask(AppendMayLead(append_msg("a", 4))));
        let mut ask = std::pin::pin!(ask);
        let _ = std::future::poll_fn(|cx| std::task::Poll::Ready(ask.as_mut().poll(cx))).await;
    }
    let acked = tokio::time::timeout(Duration::from_secs(5), w.ask(WaitAcked { commit: 4 }))
        .await
        .expect("a dropped reply must not strand its batch")
        .unwrap();
    assert_eq!(acked, 4);
    store.started.stop().await.unwrap();
    drop(store);
    let store = open(dir.path()).await;
    let commits: Vec<u64> = store.recovered.records.iter().map(|r| r.commit).collect();
    assert_eq!(
        commits,
        (1..=store.recovered.last_commit).collect::<Vec<_>>()
    );
    assert_eq!(store.recovered.last_commit, 4);
    store.started.stop().await.unwrap();
}

/// With an index sink, each batch is in the index before any of its
/// records is acknowledged, and a follower is told of every batch, in
/// commit order, without holding acknowledgements back. 64 tasks commit,
/// most through `Appender` (leading flushes, spinning when alone), some
/// through plain `Append`; numbering stays gap-free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leading_appenders_keep_group_commit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let Indexed {
        lock: _lock,
        shared,
        followed,
        index,
        started,
    } = open_indexed(dir.path()).await;
    let appender = Appender::new(started.writer.clone(), Duration::from_micros(60));
    let mut tasks = Vec::new();
    for t in 0..64i64 {
        let w = started.writer.clone();
        let appender = appender.clone();
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..20i64 {
                let msg = append_msg(&format!("k{t}"), t * 1000 + i);
                let a = if t % 4 == 0 {
                    append_ok(&w, msg).await
                } else {
                    lead_ok(&appender, msg).await
                };
                let held = shared.last_commit().unwrap().unwrap_or(0);
                assert!(held >= a.commit, "acked {} but indexed {held}", a.commit);
                assert_eq!(shared.location(a.commit).unwrap(), Some(a.location));
                mine.push(a.commit);
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let mine = t.await.unwrap();
        assert!(mine.windows(2).all(|w| w[0] < w[1]));
        all.extend(mine);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=1280).collect::<Vec<u64>>());
    // Then a lone committer: its flushes are left for the writer to pick
    // up; a `WaitAcked`, a `Seal` and a `Flush` still answer at once.
    for i in 0..50 {
        assert_eq!(
            lead_ok(&appender, append_msg("lone", i)).await.commit,
            1281 + i as u64
        );
    }
    let w = &started.writer;
    assert_eq!(w.ask(WaitAcked { commit: 1330 }).await.unwrap(), 1330);
    assert_eq!(w.ask(Flush).await.unwrap(), 1330);
    let sealed = w.ask(Seal).await.unwrap().unwrap();
    assert_eq!(sealed.last_commit, 1330);
    assert_eq!(
        lead_ok(&appender, append_msg("lone", 99)).await.commit,
        1331
    );
    assert_followed(&followed, 1331).await;
    started.stop().await.unwrap();
    index.kill();
    drop(_lock);
    let store = open(dir.path()).await;
    assert_eq!(store.recovered.last_commit, 1331);
    store.started.stop().await.unwrap();
}

/// A leader whose fsync fails gets the error, as does every record of its
/// batch; the writer then refuses appends (fail-stop). A leader whose I/O
/// panics gets an error and the writer is restarted from disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_panicking_lead_fails_its_batch_and_never_hangs() {
    for panic in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(FaultFs::default());
        let store = open_with(dir.path(), Options::default(), fs.clone(), None)
            .await
            .unwrap();
        let w = store.started.writer.clone();
        let appender = Appender::new(w.clone(), Duration::from_micros(60));
        for i in 0..3 {
            lead_ok(&appender, append_msg("a", i)).await;
        }
        if panic {
            fs.panic_sync_once.store(true, Ordering::SeqCst);
        } else {
            fs.fail_sync.store(true, Ordering::SeqCst);
        }
        fs.slow_sync_ms.store(20, Ordering::SeqCst);
        let mut tasks = Vec::new();
        for t in 0..8 {
            let appender = appender.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::timeout(Duration::from_secs(5), appender.append(append_msg("b", t)))
                    .await
                    .expect("a failed flush must not hang its callers")
            }));
        }
        for t in tasks {
            let r = t.await.unwrap();
            if panic {
                // The batch that panicked fails; later ones may be served
                // by the restarted writer.
                assert!(
                    matches!(r, Err(Error::WriterFailed { .. }) | Ok(_)),
                    "{r:?}"
                );
            } else {
                assert!(r.is_err(), "{r:?}");
            }
        }
        fs.slow_sync_ms.store(0, Ordering::SeqCst);
        fs.fail_sync.store(false, Ordering::SeqCst);
        if panic {
            let mut ok = false;
            for _ in 0..50 {
                if let Ok(AppendOutcome::Appended(_)) = appender.append(append_msg("c", 0)).await {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(ok, "the writer was not restarted");
        } else {
            assert!(matches!(
                appender.append(append_msg("c", 0)).await,
                Err(Error::WriterFailed { .. })
            ));
            assert_eq!(store.started.last_acked.load(Ordering::SeqCst), 3);
        }
        let acked = store.started.last_acked.load(Ordering::SeqCst);
        let _ = store.started.stop().await;
        drop(store);
        let store = open(dir.path()).await;
        let r = &store.recovered;
        assert!(r.last_commit >= acked);
        let commits: Vec<u64> = r.records.iter().map(|r| r.commit).collect();
        assert_eq!(commits, (1..=r.last_commit).collect::<Vec<_>>());
        store.started.stop().await.unwrap();
    }
}

/// A caller on a current-thread runtime cannot block in place: handed the
/// lead by a writer on a multi-thread runtime, it has a flush task of the
/// writer's runtime do the work and waits for it.
#[test]
fn a_lead_handed_to_a_current_thread_caller_is_run_by_a_task() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(open(dir.path()));
    let appender = Appender::new(store.started.writer.clone(), Duration::from_micros(60));
    let caller = std::thread::spawn(move || {
        let local = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        local.block_on(async {
            let mut commits = Vec::new();
            for i in 0..20 {
                commits.push(lead_ok(&appender, append_msg("a", i)).await.commit);
            }
            commits
        })
    });
    assert_eq!(caller.join().unwrap(), (1..=20).collect::<Vec<u64>>());
    rt.block_on(async {
        assert_eq!(store.started.last_acked.load(Ordering::SeqCst), 20);
        store.started.stop().await.unwrap();
    });
}

/// In buffered mode a leader acknowledges after the write alone; the
/// writer's timer then syncs what was written, and an idle log is not
/// synced again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_leads_ack_after_the_write_and_the_timer_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultFs::default());
    let mut o = Options::default();
    o.durability = Durability::Buffered {
        interval: Duration::from_millis(50),
    };
    let store = open_with(dir.path(), o.clone(), fs.clone(), None)
        .await
        .unwrap();
    let appender = Appender::new(store.started.writer.clone(), o.commit_spin);
    // The first append also creates (and syncs) the segment.
    assert_eq!(lead_ok(&appender, append_msg("a", 0)).await.commit, 1);
    let after_first = fs.syncs.load(Ordering::SeqCst);
    for i in 1..20 {
        assert_eq!(
            lead_ok(&appender, append_msg("a", i)).await.commit,
            i as u64 + 1
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let synced = fs.syncs.load(Ordering::SeqCst);
    assert!(synced > after_first, "the timer never synced the writes");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fs.syncs.load(Ordering::SeqCst),
        synced,
        "an idle log is synced again"
    );
    store.started.stop().await.unwrap();
    drop(store);
    let store = open(dir.path()).await;
    assert_eq!(store.recovered.last_commit, 20);
    store.started.stop().await.unwrap();
}
