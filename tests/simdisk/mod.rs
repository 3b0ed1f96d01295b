//! A simulated disk for power-loss tests: a [`FileOps`] that models a
//! volatile page cache over a durable medium.
//!
//! Every operation is done on the real file system (so the store under test
//! reads back what it wrote, as it would from the page cache) and is also
//! applied to a model with two layers:
//!
//! * a file's writes and truncations become durable only at a `sync` of
//!   that file;
//! * creates, renames, unlinks and `mkdir`s are operations on their parent
//!   directory and become durable only at a `sync_dir` of that directory.
//!
//! Every operation not yet durable stays in a pending list, in order, with
//! its sequence number. [`SimDisk::crash_states`] turns the model at the
//! current instant into on-medium images under four models (the ones of
//! ALICE, CrashMonkey and LazyFS):
//!
//! * [`CrashModel::Synced`]: only what was synced;
//! * [`CrashModel::Prefix`]: synced, plus every pending operation up to a
//!   sequence number (each distinct prefix);
//! * [`CrashModel::TornWrite`]: synced, plus the newest pending write of a
//!   file torn at 512-byte sectors (each prefix of its sectors);
//! * [`CrashModel::DirReorder`]: synced, plus a subset (not a prefix) of a
//!   directory's pending operations.
//!
//! [`Image::materialize`] writes an image into a fresh directory, where the
//! test opens it with the real file system. Operations that do not go
//! through `FileOps` (the `LOCK` file, reads) are not modelled: the lock
//! holds no data.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use logd_actors::fileops::{FileOps, RealFs};

/// What a name points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entry {
    /// A regular file (a model inode).
    File(usize),
    /// A directory.
    Dir,
}

/// One operation not yet durable.
#[derive(Clone, Debug)]
enum Pending {
    /// `data` written at `offset` of an inode.
    Write { offset: u64, data: Vec<u8> },
    /// An inode cut (or extended with zeros) to `len`.
    Truncate { len: u64 },
    /// Directory entries changed: each name set (`Some`) or removed (`None`).
    Names(Vec<(PathBuf, Option<Entry>)>),
}

/// An on-medium image: names and file contents.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Image {
    /// Every name (absolute paths under the root), with what it points at.
    pub names: BTreeMap<PathBuf, Entry>,
    /// Contents of the inodes the names point at.
    pub files: BTreeMap<usize, Vec<u8>>,
}

/// How a crash image was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CrashModel {
    /// Only what was synced.
    Synced,
    /// Synced plus a prefix of the pending operations.
    Prefix,
    /// Synced plus a torn (sector-prefix) pending write.
    TornWrite,
    /// Synced plus a subset of a directory's pending operations.
    DirReorder,
}

impl CrashModel {
    /// Every model.
    pub const ALL: [CrashModel; 4] = [
        CrashModel::Synced,
        CrashModel::Prefix,
        CrashModel::TornWrite,
        CrashModel::DirReorder,
    ];
}

#[derive(Debug, Default)]
struct Model {
    /// Durable names and inode contents.
    durable: Image,
    /// What the page cache shows: names and contents.
    volatile: Image,
    /// Pending operations per inode, in order (sequence number, op).
    file_pending: HashMap<usize, Vec<(u64, Pending)>>,
    /// Pending name operations per parent directory.
    dir_pending: BTreeMap<PathBuf, Vec<(u64, Pending)>>,
    /// Real inode number -> model inode.
    by_real: HashMap<u64, usize>,
    next_ino: usize,
    seq: u64,
}

/// Crash images collected at every operation (see [`SimDisk::capturing`]).
#[derive(Debug, Default)]
pub struct Captured {
    /// Distinct images, each with the most commits acknowledged at any
    /// instant it could have been left by a crash, and the model that made
    /// it first.
    pub images: HashMap<u64, (Image, u64, CrashModel)>,
    /// Crash states explored, per model (with repeats).
    pub explored: BTreeMap<CrashModel, u64>,
    /// (durable, volatile, acked) at operations with pending data: a
    /// process killed there leaves `volatile` in the page cache.
    pub kills: Vec<(Image, Image, u64)>,
    /// The indexes in `kills` where a truncation was pending (a seal's cut
    /// before its fsync: the double fault of the power-loss issue).
    pub kills_in_seal: Vec<usize>,
}

/// The simulated disk. Put it behind an `Arc<dyn FileOps>`.
#[derive(Debug)]
pub struct SimDisk {
    model: Mutex<Model>,
    /// Per-model limit of images per crash point, when capturing.
    capture: Option<usize>,
    /// The highest commit acknowledged so far.
    acked: std::sync::atomic::AtomicU64,
    captured: Mutex<Captured>,
}

fn parent(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn apply_bytes(content: &mut Vec<u8>, op: &Pending) {
    match op {
        Pending::Write { offset, data } => {
            let end = *offset as usize + data.len();
            if content.len() < end {
                content.resize(end, 0);
            }
            content[*offset as usize..end].copy_from_slice(data);
        }
        Pending::Truncate { len } => content.resize(*len as usize, 0),
        Pending::Names(_) => {}
    }
}

fn apply_names(names: &mut BTreeMap<PathBuf, Entry>, op: &Pending) {
    if let Pending::Names(changes) = op {
        for (p, e) in changes {
            match e {
                Some(e) => {
                    names.insert(p.clone(), *e);
                }
                None => {
                    names.remove(p);
                }
            }
        }
    }
}

impl SimDisk {
    /// A disk whose only durable content is the existing directory `root`
    /// (empty as far as the model knows).
    pub fn new(root: &Path) -> SimDisk {
        let mut m = Model::default();
        m.durable.names.insert(root.to_path_buf(), Entry::Dir);
        m.volatile.names.insert(root.to_path_buf(), Entry::Dir);
        SimDisk {
            model: Mutex::new(m),
            capture: None,
            acked: Default::default(),
            captured: Default::default(),
        }
    }

    /// Collect crash images (at most `per_model` per model) after every
    /// operation, to be read with [`SimDisk::take_captured`].
    pub fn capturing(mut self, per_model: usize) -> SimDisk {
        self.capture = Some(per_model);
        self
    }

    /// Records that `commit` was acknowledged (call it after the commit
    /// returns: every crash point after this one must keep it).
    pub fn ack(&self, commit: u64) {
        self.acked
            .fetch_max(commit, std::sync::atomic::Ordering::SeqCst);
    }

    /// Sets the commits acknowledged before this disk's run (resume).
    pub fn acked_before(self, commit: u64) -> SimDisk {
        self.ack(commit);
        self
    }

    /// The images collected so far.
    pub fn take_captured(&self) -> Captured {
        std::mem::take(&mut *self.captured.lock().unwrap())
    }

    fn capture_now(&self, m: &Model) {
        let Some(limit) = self.capture else { return };
        use std::hash::{Hash, Hasher};
        let acked = self.acked.load(std::sync::atomic::Ordering::SeqCst);
        let mut cap = self.captured.lock().unwrap();
        for model in CrashModel::ALL {
            let images = m.crash_states(model, limit);
            *cap.explored.entry(model).or_default() += images.len() as u64;
            for img in images {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                img.hash(&mut h);
                let e = cap.images.entry(h.finish()).or_insert((img, acked, model));
                e.1 = e.1.max(acked);
            }
        }
        if !m.file_pending.is_empty() || !m.dir_pending.is_empty() {
            let truncating = m
                .file_pending
                .values()
                .flatten()
                .any(|(_, op)| matches!(op, Pending::Truncate { .. }));
            if truncating {
                let i = cap.kills.len();
                cap.kills_in_seal.push(i);
            }
            cap.kills
                .push((m.durable.clone(), m.volatile.clone(), acked));
        }
    }

    /// A disk that starts from a crashed run's state: `volatile` is what the
    /// page cache still shows (and what is on the real file system under
    /// the root, see [`Image::materialize`]), `durable` what the medium
    /// holds. Every difference between them is pending, as one write per
    /// file and one name operation per directory.
    pub fn resume(root: &Path, durable: Image, volatile: Image) -> SimDisk {
        let mut m = Model {
            next_ino: volatile
                .files
                .keys()
                .chain(durable.files.keys())
                .max()
                .map_or(0, |m| m + 1),
            ..Model::default()
        };
        for (ino, vol) in &volatile.files {
            if durable.files.get(ino) != Some(vol) {
                m.seq += 1;
                m.file_pending.entry(*ino).or_default().push((
                    m.seq,
                    Pending::Truncate {
                        len: vol.len() as u64,
                    },
                ));
                m.seq += 1;
                m.file_pending.entry(*ino).or_default().push((
                    m.seq,
                    Pending::Write {
                        offset: 0,
                        data: vol.clone(),
                    },
                ));
            }
        }
        let all: BTreeSet<&PathBuf> = durable.names.keys().chain(volatile.names.keys()).collect();
        for p in all {
            let (d, v) = (durable.names.get(p), volatile.names.get(p));
            if d != v {
                m.seq += 1;
                m.dir_pending
                    .entry(parent(p))
                    .or_default()
                    .push((m.seq, Pending::Names(vec![(p.clone(), v.copied())])));
            }
        }
        let _ = root;
        m.durable = durable;
        m.volatile = volatile;
        SimDisk {
            model: Mutex::new(m),
            capture: None,
            acked: Default::default(),
            captured: Default::default(),
        }
    }

    /// The number of operations recorded so far (crash points).
    pub fn ops(&self) -> u64 {
        self.model.lock().unwrap().seq
    }

    /// What the page cache shows now, and what the medium holds now.
    pub fn images(&self) -> (Image, Image) {
        let m = self.model.lock().unwrap();
        (m.durable.clone(), m.volatile.clone())
    }

    /// The on-medium images a power cut now could leave, under `model`,
    /// at most `limit` of them.
    pub fn crash_states(&self, model: CrashModel, limit: usize) -> Vec<Image> {
        self.model.lock().unwrap().crash_states(model, limit)
    }

    fn record(&self, file: Option<&File>, f: impl FnOnce(&mut Model, Option<usize>)) {
        let mut m = self.model.lock().unwrap();
        let ino = file
            .and_then(|file| file.metadata().ok())
            .and_then(|md| m.by_real.get(&md.ino()).copied());
        m.seq += 1;
        f(&mut m, ino);
        self.capture_now(&m);
    }
}

impl Model {
    /// See [`SimDisk::crash_states`].
    fn crash_states(&self, model: CrashModel, limit: usize) -> Vec<Image> {
        let m = self;
        let mut out = Vec::new();
        match model {
            CrashModel::Synced => out.push(m.durable.clone()),
            CrashModel::Prefix => {
                let mut seqs: Vec<u64> = m
                    .file_pending
                    .values()
                    .chain(m.dir_pending.values())
                    .flat_map(|v| v.iter().map(|(s, _)| *s))
                    .collect();
                seqs.sort_unstable();
                seqs.dedup();
                // The longest prefixes first: they hold the most.
                for &upto in seqs.iter().rev().take(limit) {
                    out.push(m.prefix_image(upto));
                }
            }
            CrashModel::TornWrite => {
                for (&ino, ops) in &m.file_pending {
                    let Some((i, (offset, data))) =
                        ops.iter()
                            .enumerate()
                            .rev()
                            .find_map(|(i, (_, op))| match op {
                                Pending::Write { offset, data } => Some((i, (*offset, data))),
                                _ => None,
                            })
                    else {
                        continue;
                    };
                    // Sector boundaries (file offsets, multiples of 512)
                    // strictly inside the write.
                    let end = offset + data.len() as u64;
                    let mut cut = (offset / 512 + 1) * 512;
                    while cut < end && out.len() < limit {
                        let mut img = m.durable.clone();
                        let content = img.files.entry(ino).or_default();
                        for (_, op) in &ops[..i] {
                            apply_bytes(content, op);
                        }
                        apply_bytes(
                            content,
                            &Pending::Write {
                                offset,
                                data: data[..(cut - offset) as usize].to_vec(),
                            },
                        );
                        out.push(img);
                        cut += 512;
                    }
                }
            }
            CrashModel::DirReorder => {
                for ops in m.dir_pending.values() {
                    let n = ops.len();
                    if n < 2 {
                        continue;
                    }
                    // Each single operation alone, and all but each one.
                    for skip in 0..n {
                        for keep_only in [true, false] {
                            if out.len() >= limit {
                                break;
                            }
                            let mut img = m.durable.clone();
                            for (j, (_, op)) in ops.iter().enumerate() {
                                if (j == skip) == keep_only {
                                    apply_names(&mut img.names, op);
                                }
                            }
                            fill_contents(&mut img, &m.volatile);
                            out.push(img);
                        }
                    }
                }
            }
        }
        out
    }
}

/// Inodes that names of `img` point at but whose durable content is
/// unknown to it get the content the medium had (`durable` of the model is
/// already in `img`); files named only through a persisted pending name
/// operation get their durable content, or nothing.
fn fill_contents(img: &mut Image, _volatile: &Image) {
    let wanted: BTreeSet<usize> = img
        .names
        .values()
        .filter_map(|e| match e {
            Entry::File(i) => Some(*i),
            Entry::Dir => None,
        })
        .collect();
    for i in wanted {
        img.files.entry(i).or_default();
    }
}

impl Model {
    /// Durable state plus every pending operation numbered up to `upto`.
    fn prefix_image(&self, upto: u64) -> Image {
        let mut img = self.durable.clone();
        for (&ino, ops) in &self.file_pending {
            let content = img.files.entry(ino).or_default();
            for (s, op) in ops {
                if *s <= upto {
                    apply_bytes(content, op);
                }
            }
        }
        for ops in self.dir_pending.values() {
            for (s, op) in ops {
                if *s <= upto {
                    apply_names(&mut img.names, op);
                }
            }
        }
        fill_contents(&mut img, &self.volatile);
        img
    }

    fn file_op(&mut self, ino: Option<usize>, op: Pending) {
        let Some(ino) = ino else { return };
        apply_bytes(self.volatile.files.entry(ino).or_default(), &op);
        let seq = self.seq;
        self.file_pending.entry(ino).or_default().push((seq, op));
    }

    fn name_op(&mut self, changes: Vec<(PathBuf, Option<Entry>)>) {
        let op = Pending::Names(changes);
        apply_names(&mut self.volatile.names, &op);
        let Pending::Names(changes) = &op else {
            unreachable!()
        };
        let dir = parent(&changes[0].0);
        let seq = self.seq;
        self.dir_pending.entry(dir).or_default().push((seq, op));
    }

    fn sync_file(&mut self, ino: Option<usize>) {
        let Some(ino) = ino else { return };
        if let Some(ops) = self.file_pending.remove(&ino) {
            let content = self.durable.files.entry(ino).or_default();
            for (_, op) in &ops {
                apply_bytes(content, op);
            }
        }
    }

    fn sync_dir(&mut self, dir: &Path) {
        if let Some(ops) = self.dir_pending.remove(dir) {
            for (_, op) in &ops {
                apply_names(&mut self.durable.names, op);
            }
        }
    }
}

impl Image {
    /// Writes the image's tree rooted at `root` (a name of the image) into
    /// `to`, which must exist and be empty. Names whose parent directory is
    /// not in the image are unreachable and skipped.
    pub fn materialize(&self, root: &Path, to: &Path) -> io::Result<()> {
        for (p, e) in &self.names {
            let Ok(rel) = p.strip_prefix(root) else {
                continue;
            };
            if rel.as_os_str().is_empty() {
                continue;
            }
            let reachable = p
                .ancestors()
                .skip(1)
                .take_while(|a| a.starts_with(root) && *a != root)
                .all(|a| self.names.get(a) == Some(&Entry::Dir));
            if !reachable {
                continue;
            }
            let dst = to.join(rel);
            match e {
                Entry::Dir => std::fs::create_dir_all(&dst)?,
                Entry::File(i) => {
                    if let Some(par) = dst.parent() {
                        std::fs::create_dir_all(par)?;
                    }
                    std::fs::write(&dst, self.files.get(i).map_or(&[][..], |v| v))?;
                }
            }
        }
        Ok(())
    }

    /// The same image with its root moved from `from` to `to` (to resume a
    /// run on a materialized copy).
    pub fn rebased(&self, from: &Path, to: &Path) -> Image {
        Image {
            names: self
                .names
                .iter()
                .filter_map(|(p, e)| Some((to.join(p.strip_prefix(from).ok()?), *e)))
                .collect(),
            files: self.files.clone(),
        }
    }
}

impl FileOps for SimDisk {
    fn create(&self, path: &Path, mode: u32) -> io::Result<File> {
        let f = RealFs.create(path, mode)?;
        let real = f.metadata()?.ino();
        self.record(None, |m, _| {
            let ino = m.next_ino;
            m.next_ino += 1;
            m.by_real.insert(real, ino);
            m.volatile.files.insert(ino, Vec::new());
            m.name_op(vec![(path.to_path_buf(), Some(Entry::File(ino)))]);
        });
        Ok(f)
    }

    fn open(&self, path: &Path) -> io::Result<File> {
        let f = RealFs.open(path)?;
        let real = f.metadata()?.ino();
        let mut m = self.model.lock().unwrap();
        if let Some(Entry::File(ino)) = m.volatile.names.get(path).copied() {
            m.by_real.insert(real, ino);
        }
        Ok(f)
    }

    fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        RealFs.write_at(file, buf, offset)?;
        self.record(Some(file), |m, ino| {
            m.file_op(
                ino,
                Pending::Write {
                    offset,
                    data: buf.to_vec(),
                },
            )
        });
        Ok(())
    }

    fn sync(&self, file: &File) -> io::Result<()> {
        RealFs.sync(file)?;
        self.record(Some(file), |m, ino| m.sync_file(ino));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)?;
        self.record(None, |m, _| {
            if let Some(e) = m.volatile.names.get(from).copied() {
                m.name_op(vec![
                    (from.to_path_buf(), None),
                    (to.to_path_buf(), Some(e)),
                ]);
            }
        });
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        RealFs.sync_dir(dir)?;
        self.record(None, |m, _| m.sync_dir(dir));
        Ok(())
    }

    fn truncate(&self, file: &File, len: u64) -> io::Result<()> {
        RealFs.truncate(file, len)?;
        self.record(Some(file), |m, ino| {
            m.file_op(ino, Pending::Truncate { len })
        });
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        RealFs.remove(path)?;
        self.record(None, |m, _| m.name_op(vec![(path.to_path_buf(), None)]));
        Ok(())
    }

    fn create_dir(&self, path: &Path, mode: u32) -> io::Result<()> {
        RealFs.create_dir(path, mode)?;
        self.record(None, |m, _| {
            m.name_op(vec![(path.to_path_buf(), Some(Entry::Dir))])
        });
        Ok(())
    }
}
