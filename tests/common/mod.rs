//! Helpers shared by the end-to-end tests: temp stores, one-patch commits,
//! a seeded random source, the `ack` lines of `logd stress`, and [`FaultFs`],
//! a `FileOps` that fails a chosen call with a chosen fault.
//!
//! Each test binary uses only part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use logd::{
    Durability, Error, KPath, Node, Options, Outcome, Patch, PatchMeta, Retention, SnapshotEvery,
    Storage, patch,
};
use logd_actors::fileops::{FileOps, RealFs};

/// Options with buffered durability (for tests about answers, not fsync).
pub fn buffered() -> Options {
    let mut o = Options::default();
    o.durability = Durability::Buffered {
        interval: Duration::from_millis(5),
    };
    o
}

/// A fresh store in a temp dir, with `options`.
pub async fn open_temp(options: Options) -> (tempfile::TempDir, Storage) {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path(), options).await.unwrap();
    (dir, s)
}

/// Parses a path (panics on a bad one: tests only).
pub fn kp(s: &str) -> KPath {
    KPath::parse(s).unwrap()
}

/// Commits one patch of `data` at `path` in a one-participant transaction.
pub async fn commit_one(s: &Storage, path: &str, data: Node) -> Result<Outcome, Error> {
    let tx = s.new_tx(1, PatchMeta::default()).await?;
    let mut p = tx
        .new_patcher(Patch::new(KPath::parse(path)?, data))
        .await?;
    p.commit().await
}

/// [`commit_one`] that must commit; returns the commit number.
pub async fn commit(s: &Storage, path: &str, data: Node) -> u64 {
    match commit_one(s, path, data).await {
        Ok(Outcome::Committed { commit }) => commit,
        other => panic!("commit at {path}: {other:?}"),
    }
}

/// The folded root after each commit (index = commit), kept beside a
/// store by the property tests: the oracle their reads are checked against.
#[derive(Clone, Debug)]
pub struct Fold {
    /// `states[c]`: the document after commit `c` (`states[0]` is empty).
    pub states: Vec<Option<Node>>,
}

impl Default for Fold {
    fn default() -> Fold {
        Fold { states: vec![None] }
    }
}

impl Fold {
    /// Nothing committed yet.
    pub fn new() -> Fold {
        Fold::default()
    }

    /// The last commit folded (0 before the first).
    pub fn last(&self) -> u64 {
        self.states.len() as u64 - 1
    }

    /// Commits `data` at `path` to `s` and folds it; the store must give it
    /// the next commit number.
    pub async fn commit(&mut self, s: &Storage, path: &str, data: Node) {
        let c = commit(s, path, data.clone()).await;
        assert_eq!(c, self.states.len() as u64, "commit at {path}");
        let root = patch::merge(&[(kp(path), data)]).unwrap();
        let prev = self.states.last().cloned().flatten();
        self.states
            .push(patch::apply(prev.as_ref(), &root).unwrap());
    }

    /// The property tests' write: `{v: data}` at `users.u{n}`, or at
    /// `users.u{n}.sub` when `nested`.
    pub async fn commit_user(&mut self, s: &Storage, n: u8, nested: bool, data: i8) {
        let path = if nested {
            format!("users.u{n}.sub")
        } else {
            format!("users.u{n}")
        };
        let data = Node::object([("v", Node::int(i64::from(data)))]);
        self.commit(s, &path, data).await;
    }

    /// The property tests' delete of `users.u{n}`.
    pub async fn delete_user(&mut self, s: &Storage, n: u8) {
        let data = Node::tagged("delete", logd::Value::Null);
        self.commit(s, &format!("users.u{n}"), data).await;
    }
}

/// Options for the snapshot property tests: buffered (2 ms), 1 KiB
/// segments, `retention`, and a snapshot every 7 commits when `auto`.
pub fn small_segments(auto: bool, retention: Retention) -> Options {
    let mut o = Options::default();
    o.durability = Durability::Buffered {
        interval: Duration::from_millis(2),
    };
    o.segment_bytes = 1024;
    o.compaction = retention;
    if auto {
        o.snapshot_every = Some(SnapshotEvery::Commits(7));
    }
    o
}

/// A two-worker multi-thread runtime, for property tests that block on
/// async runs.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A small seeded random source (splitmix64): tests need reproducible
/// choices, not statistical quality.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

/// A seed from `var` in the environment, else `default`.
pub fn seed_from_env(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One acknowledged write: `value` at `path` as of `commit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The commit.
    pub commit: u64,
    /// The path written.
    pub path: String,
    /// The integer written.
    pub value: i64,
}

/// Parses one `ack <commit> <path> <value>` line of `logd stress` (`None`
/// for any other line; a line cut by a kill is not an ack either).
pub fn parse_ack(line: &str) -> Option<Ack> {
    let mut it = line.split(' ');
    if it.next()? != "ack" {
        return None;
    }
    let commit = it.next()?.parse().ok()?;
    let path = it.next()?.to_owned();
    let value = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Some(Ack {
        commit,
        path,
        value,
    })
}

/// The newest ack of each path.
pub fn latest_per_path(acks: &[Ack]) -> BTreeMap<String, Ack> {
    let mut out: BTreeMap<String, Ack> = BTreeMap::new();
    for a in acks {
        match out.get(&a.path) {
            Some(b) if b.commit >= a.commit => {}
            _ => {
                out.insert(a.path.clone(), a.clone());
            }
        }
    }
    out
}

/// The oldest readable commit of `s` (0: every commit), found by probing
/// root reads: below it every read is `Compacted`, from it on none is.
pub async fn horizon(s: &Storage) -> u64 {
    probe_horizon(s, false).await
}

/// [`horizon`] on a store that may be damaged: a root read failing with
/// `Error::Corrupt` counts as not compacted.
pub async fn horizon_or_corrupt(s: &Storage) -> u64 {
    probe_horizon(s, true).await
}

async fn probe_horizon(s: &Storage, corrupt_ok: bool) -> u64 {
    let current = s.current_commit();
    if current == 0 {
        return 0;
    }
    // Commit 0 (the empty document) always reads; start from commit 1.
    // Invariant: reads at `hi` work; reads below `lo` are compacted.
    let (mut lo, mut hi) = (1u64, current);
    match s.read_state_at("", 1).await {
        Ok(_) => return 0,
        Err(Error::Corrupt { .. }) if corrupt_ok => return 0,
        Err(Error::Compacted { .. }) => {}
        Err(e) => panic!("root read at 1 (current {current}): {e}"),
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match s.read_state_at("", mid).await {
            Ok(_) => hi = mid,
            Err(Error::Corrupt { .. }) if corrupt_ok => hi = mid,
            Err(Error::Compacted { .. }) => lo = mid + 1,
            Err(e) => panic!("root read at {mid}: {e}"),
        }
    }
    hi
}

/// Checks that `history("", from, to)` lists every commit in `(from, to]`
/// (no gaps), `from` being at least the horizon `h`. One allowance: with
/// `h == 0` (commit 1 reads, so the probe cannot tell 0 from 1) the list
/// may start at 2 when commit 1 lives only in a snapshot (history from 0
/// is then `Compacted { oldest: 1 }`).
pub async fn assert_gap_free(s: &Storage, h: u64, from: u64, to: u64, label: &str) {
    let from = from.max(h);
    let snap1 = s.dir().join("snap").join(format!("{:020}.snap", 1));
    let (from, listed) = match s.history("", from, to).await {
        Err(logd::Error::Compacted { oldest: 1, .. }) if from == 0 && snap1.exists() => {
            (1, s.history("", 1, to).await)
        }
        other => (from, other),
    };
    let listed: Vec<u64> = listed
        .unwrap_or_else(|e| panic!("{label}: history: {e}"))
        .iter()
        .map(|c| c.commit)
        .collect();
    let start = from + 1;
    assert_eq!(
        listed,
        (start..=to).collect::<Vec<_>>(),
        "{label}: commits in ({from}, {to}]"
    );
}

/// The fault [`FaultFs`] injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// `write_at` fails with EIO, writing nothing.
    WriteEio,
    /// `sync` or `sync_dir` fails with EIO.
    SyncEio,
    /// `create`, `create_dir` or `write_at` fails with ENOSPC.
    Enospc,
    /// `write_at` writes a prefix of its buffer, then fails with ENOSPC.
    ShortWrite,
    /// `open`, `rename`, `truncate` or `remove` fails with EIO.
    OtherEio,
}

impl Fault {
    /// Every kind.
    pub const ALL: [Fault; 5] = [
        Fault::WriteEio,
        Fault::SyncEio,
        Fault::Enospc,
        Fault::ShortWrite,
        Fault::OtherEio,
    ];

    /// Whether this fault applies to an operation named `op` (see [`Op`]).
    pub fn applies_to(self, op: Op) -> bool {
        match self {
            Fault::WriteEio | Fault::ShortWrite => op == Op::Write,
            Fault::SyncEio => matches!(op, Op::Sync | Op::SyncDir),
            Fault::Enospc => matches!(op, Op::Write | Op::Create | Op::CreateDir),
            Fault::OtherEio => matches!(op, Op::Open | Op::Rename | Op::Truncate | Op::Remove),
        }
    }
}

/// The operations of the `FileOps` seam.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `create`
    Create,
    /// `open`
    Open,
    /// `write_at`
    Write,
    /// `sync`
    Sync,
    /// `rename`
    Rename,
    /// `sync_dir`
    SyncDir,
    /// `truncate`
    Truncate,
    /// `remove`
    Remove,
    /// `create_dir`
    CreateDir,
}

/// A `FileOps` over the real file system that numbers every call (from 0)
/// and fails call number `at` with `fault` (once), when the fault applies
/// to that call's operation. Records every call for the test to inspect.
///
/// It also tracks, per inode, how many bytes were last made durable by a
/// successful `sync`, so [`FaultFs::lose_unsynced`] can simulate a power
/// loss after the run: every file written through it is cut back to what
/// was synced (what a failed fsync leaves behind on Linux, at worst).
#[derive(Debug, Default)]
pub struct FaultFs {
    calls: AtomicU64,
    /// (first call to fail, fault, whether it keeps failing after).
    plan: Mutex<Option<(u64, Fault, bool)>>,
    /// One-shot at the first applicable call at or after the planned one.
    first_after: bool,
    log: Mutex<Vec<(Op, PathBuf)>>,
    fired: Mutex<Option<(u64, Op, PathBuf)>>,
    /// inode -> length at the last successful sync (or when first seen).
    synced: Mutex<BTreeMap<u64, u64>>,
    /// Number (and fail) only the index checkpoint's calls (under `ckpt/`)
    /// instead of every other call.
    checkpoint_only: bool,
}

/// Whether `path` lies in a store's index checkpoint directory (`ckpt/`).
/// Its writes run in the background, so numbering them with the others
/// would make call numbers differ between runs: a `FaultFs` passes them
/// through unnumbered unless it is [`FaultFs::checkpoint_only`].
pub fn in_checkpoint_dir(path: &Path) -> bool {
    path.components().any(|c| c.as_os_str() == "ckpt")
}

/// EIO (Linux errno 5).
fn eio() -> io::Error {
    io::Error::from_raw_os_error(5)
}

/// ENOSPC (Linux errno 28).
fn enospc() -> io::Error {
    io::Error::from_raw_os_error(28)
}

impl FaultFs {
    /// A `FaultFs` that fails nothing (to count calls).
    pub fn counting() -> FaultFs {
        FaultFs::default()
    }

    /// A `FaultFs` that numbers only the index checkpoint's calls and fails
    /// the one numbered `at` (and every later applicable one when
    /// `sticky`) with `fault`; every other call passes through.
    pub fn checkpoint_only(at: u64, fault: Fault, sticky: bool) -> FaultFs {
        FaultFs {
            plan: Mutex::new(Some((at, fault, sticky))),
            checkpoint_only: true,
            ..FaultFs::default()
        }
    }

    /// A `FaultFs` that fails call `at` with `fault` (once).
    pub fn failing(at: u64, fault: Fault) -> FaultFs {
        FaultFs {
            plan: Mutex::new(Some((at, fault, false))),
            ..FaultFs::default()
        }
    }

    /// A `FaultFs` that fails (once) the first call at or after `at` that
    /// `fault` applies to.
    pub fn failing_after(at: u64, fault: Fault) -> FaultFs {
        FaultFs {
            plan: Mutex::new(Some((at, fault, false))),
            first_after: true,
            ..FaultFs::default()
        }
    }

    /// A `FaultFs` that fails every call from `at` on that `fault`
    /// applies to (a disk that stays full or broken).
    pub fn failing_from(at: u64, fault: Fault) -> FaultFs {
        FaultFs {
            plan: Mutex::new(Some((at, fault, true))),
            ..FaultFs::default()
        }
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<(Op, PathBuf)> {
        self.log.lock().unwrap().clone()
    }

    /// The injected fault, once it fired: call number, operation, path.
    pub fn fired(&self) -> Option<(u64, Op, PathBuf)> {
        self.fired.lock().unwrap().clone()
    }

    /// Simulates a power loss: every regular file under `dir` that was
    /// written through this `FaultFs` is truncated to the length it had at
    /// its last successful `sync` (or when first touched). Returns how many
    /// files lost bytes.
    pub fn lose_unsynced(&self, dir: &Path) -> usize {
        use std::os::unix::fs::MetadataExt;
        let synced = self.synced.lock().unwrap().clone();
        let mut cut = 0;
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for ent in rd.flatten() {
                let p = ent.path();
                let Ok(md) = std::fs::symlink_metadata(&p) else {
                    continue;
                };
                if md.is_dir() {
                    stack.push(p);
                } else if let Some(&len) = synced.get(&md.ino())
                    && md.len() > len
                {
                    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
                    f.set_len(len).unwrap();
                    cut += 1;
                }
            }
        }
        cut
    }

    /// Called before a write-side change to `file`: a file seen for the
    /// first time counts as durable up to its current length (what it held
    /// before this run, or 0 when just created).
    fn wrote(&self, file: &File) {
        use std::os::unix::fs::MetadataExt;
        if let Ok(md) = file.metadata() {
            self.synced
                .lock()
                .unwrap()
                .entry(md.ino())
                .or_insert(md.len());
        }
    }

    fn synced(&self, file: &File) {
        use std::os::unix::fs::MetadataExt;
        if let Ok(md) = file.metadata() {
            self.synced.lock().unwrap().insert(md.ino(), md.len());
        }
    }

    /// Numbers the call; returns the fault to inject, if this is the one.
    fn enter(&self, op: Op, path: &Path) -> Option<Fault> {
        if in_checkpoint_dir(path) != self.checkpoint_only {
            return None;
        }
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        self.log.lock().unwrap().push((op, path.to_path_buf()));
        let mut plan = self.plan.lock().unwrap();
        match *plan {
            Some((at, fault, sticky))
                if (at == n || (sticky || self.first_after) && n > at) && fault.applies_to(op) =>
            {
                if !sticky {
                    *plan = None;
                }
                self.fired
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| (n, op, path.to_path_buf()));
                Some(fault)
            }
            _ => None,
        }
    }
}

/// A path for calls that take a file: the fd's target, when /proc has it.
fn file_path(f: &File) -> PathBuf {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap_or_default()
}

impl FileOps for FaultFs {
    fn create(&self, path: &Path, mode: u32) -> io::Result<File> {
        match self.enter(Op::Create, path) {
            Some(_) => Err(enospc()),
            None => RealFs.create(path, mode),
        }
    }

    fn open(&self, path: &Path) -> io::Result<File> {
        match self.enter(Op::Open, path) {
            Some(_) => Err(eio()),
            None => RealFs.open(path),
        }
    }

    fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        self.wrote(file);
        match self.enter(Op::Write, &file_path(file)) {
            Some(Fault::ShortWrite) => {
                let n = buf.len() / 2;
                if n > 0 {
                    RealFs.write_at(file, &buf[..n], offset)?;
                }
                Err(enospc())
            }
            Some(Fault::Enospc) => Err(enospc()),
            Some(_) => Err(eio()),
            None => RealFs.write_at(file, buf, offset),
        }
    }

    fn sync(&self, file: &File) -> io::Result<()> {
        match self.enter(Op::Sync, &file_path(file)) {
            Some(_) => Err(eio()),
            None => {
                RealFs.sync(file)?;
                self.synced(file);
                Ok(())
            }
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        match self.enter(Op::Rename, from) {
            Some(_) => Err(eio()),
            None => RealFs.rename(from, to),
        }
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        match self.enter(Op::SyncDir, dir) {
            Some(_) => Err(eio()),
            None => RealFs.sync_dir(dir),
        }
    }

    fn truncate(&self, file: &File, len: u64) -> io::Result<()> {
        self.wrote(file);
        match self.enter(Op::Truncate, &file_path(file)) {
            Some(_) => Err(eio()),
            None => RealFs.truncate(file, len),
        }
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        match self.enter(Op::Remove, path) {
            Some(_) => Err(eio()),
            None => RealFs.remove(path),
        }
    }

    fn create_dir(&self, path: &Path, mode: u32) -> io::Result<()> {
        match self.enter(Op::CreateDir, path) {
            Some(_) => Err(enospc()),
            None => RealFs.create_dir(path, mode),
        }
    }
}
