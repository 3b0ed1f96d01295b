//! The snapshot catalogue: which snapshot files exist, open and verified,
//! plus the open log segment files readers replay from.
//!
//! This module owns [`Catalog`] (a cheap-to-clone shared handle), the
//! snapshot file names (`<dir>/snap/<commit>.snap`, 20 zero-padded digits),
//! [`Catalog::open`] (list, verify, skip corrupt snapshots with a warning),
//! the *horizon* (the oldest commit still readable), and [`PinnedPlan`]: a read
//! plan together with the snapshot it starts from and the segment files it
//! replays, all held by `Arc`, so a reader in flight finishes correctly even
//! if compaction unlinks those files meanwhile (an open fd survives unlink).
//!
//! It writes no snapshot and deletes none that holds data (the snapshotter
//! and the compactor do, through `FileOps`), and never decides what to keep.
//! At open it does touch `snap/`, through `FileOps`: it creates the
//! directory when missing, removes unfinished `*.snap.tmp` files and
//! snapshots that fail their check (with a warning), and fsyncs the files it
//! keeps and the directory. It also holds the store's one cache of open
//! segment files ([`Catalog::segment`]), which compaction prunes
//! ([`Catalog::forget_segment`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use logd_core::index::ReadPlan;
use logd_core::node::Node;
use logd_core::read::{ReadError, execute};
use logd_core::snapshot::SnapshotReader;
use logd_core::wal::{self, Location};

use crate::disk::fileops::FileOps;
use crate::disk::layout::segment_path;
use crate::disk::record::read_record;
use crate::error::Error;
use crate::open::recovery::Recovered;

/// The directory holding the snapshots, inside a store directory.
pub fn snap_dir(dir: &Path) -> PathBuf {
    dir.join("snap")
}

/// File name of the snapshot at `commit`: 20 zero-padded digits + `.snap`.
pub fn snapshot_file_name(commit: u64) -> String {
    format!("{commit:020}.snap")
}

/// The commit of a snapshot file name made by [`snapshot_file_name`].
pub fn parse_snapshot_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".snap")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The path of the snapshot at `commit`.
pub fn snapshot_path(dir: &Path, commit: u64) -> PathBuf {
    snap_dir(dir).join(snapshot_file_name(commit))
}

/// One snapshot in the catalogue.
#[derive(Clone, Debug)]
pub struct SnapshotEntry {
    /// The commit it is at.
    pub commit: u64,
    /// Its file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// When it was written (the file's modification time at open).
    pub taken: SystemTime,
    /// The open, verified reader (shared; keeps the file open).
    pub reader: Arc<SnapshotReader<File>>,
}

#[derive(Debug, Default)]
struct State {
    snapshots: BTreeMap<u64, SnapshotEntry>,
    segments: BTreeMap<u64, Arc<File>>,
    horizon: u64,
}

/// The shared snapshot catalogue (see the module docs). Clones share state.
#[derive(Clone, Debug)]
pub struct Catalog {
    dir: PathBuf,
    state: Arc<Mutex<State>>,
}

/// A snapshot file that [`Catalog::open`] refused, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// The error (`Error::Corrupt` names the offset).
    pub error: Error,
}

impl Catalog {
    /// An empty catalogue for the store at `dir` (no snapshot, horizon 0).
    pub fn empty(dir: &Path) -> Catalog {
        Catalog {
            dir: dir.to_path_buf(),
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// Opens the catalogue of the store at `dir`: creates `snap/` if needed,
    /// removes unfinished `*.snap.tmp` files, and opens every snapshot. The
    /// newest snapshots are verified block by block (every CRC) until one
    /// passes; older ones get the structural check of
    /// [`SnapshotReader::open`] (their blocks are checked when read). A
    /// snapshot that fails is logged with `tracing::warn!` (file and
    /// offset), left on disk, and skipped.
    pub fn open(
        dir: &Path,
        fs: &dyn FileOps,
        umask: u32,
    ) -> Result<(Catalog, Vec<Skipped>), Error> {
        let sdir = snap_dir(dir);
        crate::disk::layout::ensure_subdir(fs, &sdir, umask)?;
        let mut commits = Vec::new();
        for ent in std::fs::read_dir(&sdir).map_err(|e| Error::io("read dir", &sdir, &e))? {
            let ent = ent.map_err(|e| Error::io("read dir", &sdir, &e))?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(c) = parse_snapshot_file_name(name) {
                commits.push(c);
            } else if name.ends_with(".snap.tmp") {
                let p = sdir.join(name);
                tracing::warn!(file = %p.display(), "removing unfinished snapshot");
                fs.remove(&p).map_err(|e| Error::io("remove", &p, &e))?;
            }
        }
        commits.sort_unstable();
        let catalog = Catalog::empty(dir);
        let mut skipped = Vec::new();
        let mut verified_one = false;
        for &commit in commits.iter().rev() {
            let path = snapshot_path(dir, commit);
            match open_snapshot(&path, commit, !verified_one) {
                Ok(entry) => {
                    verified_one = true;
                    catalog.insert(entry);
                }
                Err(error) => {
                    let offset = match &error {
                        Error::Corrupt { offset, .. } => *offset,
                        _ => 0,
                    };
                    tracing::warn!(file = %path.display(), offset, %error, "skipping unusable snapshot");
                    skipped.push(Skipped { path, error });
                }
            }
        }
        Ok((catalog, skipped))
    }

    /// [`Catalog::open`] for a store whose log recovery found `recovered`,
    /// with the horizon set from where the retained log starts
    /// ([`Catalog::horizon_for_log`]). What a store calls at open.
    pub fn open_recovered(
        dir: &Path,
        fs: &dyn FileOps,
        umask: u32,
        recovered: &Recovered,
    ) -> Result<(Catalog, Vec<Skipped>), Error> {
        let (catalog, mut skipped) = Catalog::open(dir, fs, umask)?;
        // A snapshot is relied on only when it claims no commit beyond the
        // durable log (a snapshot of commits a power cut took back would
        // make new commits reuse their numbers), and only once it is
        // durable itself.
        for entry in catalog.list() {
            if entry.commit > recovered.last_commit {
                let error = Error::corrupt(
                    &entry.path,
                    0,
                    format!(
                        "snapshot at commit {} but the durable log ends at commit {}",
                        entry.commit, recovered.last_commit
                    ),
                );
                // Removed, not kept: once new commits pass its number it
                // would look valid, with the lost history in it.
                tracing::warn!(file = %entry.path.display(), %error, "removing a snapshot beyond the log");
                catalog.remove(entry.commit);
                fs.remove(&entry.path)
                    .map_err(|e| Error::io("remove", &entry.path, &e))?;
                skipped.push(Skipped {
                    path: entry.path,
                    error,
                });
            } else {
                crate::disk::layout::sync_file(fs, &entry.path)?;
            }
        }
        let sdir = snap_dir(dir);
        fs.sync_dir(&sdir)
            .map_err(|e| Error::io("sync dir", &sdir, &e))?;
        let log_first = recovered.segments.first().map(|s| s.first_commit);
        catalog.set_horizon(catalog.horizon_for_log(log_first)?);
        Ok((catalog, skipped))
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain maps behind, which
        // are still consistent: recover the guard.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds (or replaces) a snapshot.
    pub fn insert(&self, entry: SnapshotEntry) {
        self.lock().snapshots.insert(entry.commit, entry);
    }

    /// Removes a snapshot from the catalogue (readers holding it keep it).
    pub fn remove(&self, commit: u64) -> Option<SnapshotEntry> {
        self.lock().snapshots.remove(&commit)
    }

    /// The newest snapshot at or before `commit`.
    pub fn newest_at_or_before(&self, commit: u64) -> Option<SnapshotEntry> {
        self.lock()
            .snapshots
            .range(..=commit)
            .next_back()
            .map(|(_, e)| e.clone())
    }

    /// The newest snapshot.
    pub fn newest(&self) -> Option<SnapshotEntry> {
        self.lock().snapshots.values().next_back().cloned()
    }

    /// Every snapshot, oldest first.
    pub fn list(&self) -> Vec<SnapshotEntry> {
        self.lock().snapshots.values().cloned().collect()
    }

    /// The oldest commit readable (0: every commit, from the empty document).
    pub fn horizon(&self) -> u64 {
        self.lock().horizon
    }

    /// Sets the horizon (the compactor, before it forgets; the opener, from
    /// [`Catalog::horizon_for_log`]).
    pub fn set_horizon(&self, oldest: u64) {
        self.lock().horizon = oldest;
    }

    /// The horizon of a store whose retained log starts at `log_first`
    /// (`None`: no segment holds a record): 0 when the log starts at commit
    /// 1, else the oldest snapshot from which the log continues
    /// (`commit + 1 >= log_first`). A log that starts later with no such
    /// snapshot cannot be rebuilt: [`Error::Corrupt`] naming the segment.
    pub fn horizon_for_log(&self, log_first: Option<u64>) -> Result<u64, Error> {
        let Some(first) = log_first else {
            return Ok(self.lock().snapshots.keys().next().copied().unwrap_or(0));
        };
        if first <= 1 {
            return Ok(0);
        }
        let st = self.lock();
        st.snapshots
            .keys()
            .find(|&&c| c + 1 >= first)
            .copied()
            .ok_or_else(|| {
                Error::corrupt(
                    segment_path(&self.dir, first),
                    0,
                    format!(
                        "the log starts at commit {first} but no valid snapshot covers the commits before it"
                    ),
                )
            })
    }

    /// The open segment file whose first commit is `first` (opened
    /// read-only on first use and cached).
    pub fn segment(&self, first: u64) -> Result<Arc<File>, Error> {
        if let Some(f) = self.lock().segments.get(&first) {
            return Ok(f.clone());
        }
        let path = segment_path(&self.dir, first);
        let f = Arc::new(File::open(&path).map_err(|e| Error::io("open", &path, &e))?);
        Ok(self.lock().segments.entry(first).or_insert(f).clone())
    }

    /// Drops the cached segment file (after compaction removed it).
    pub fn forget_segment(&self, first: u64) {
        self.lock().segments.remove(&first);
    }

    /// Reads and checks the record of `commit` at `loc` (`read_record`),
    /// through the cache of open segment files.
    pub fn read_record(&self, commit: u64, loc: Location) -> Result<wal::Entry, Error> {
        let f = self.segment(loc.segment)?;
        read_record(&self.dir, &f, commit, loc)
    }

    /// Pins what `plan` needs: the snapshot at `plan.base` (when > 0) and
    /// the segment files of its records.
    pub fn pin(&self, plan: ReadPlan) -> Result<PinnedPlan, Error> {
        let base = if plan.base > 0 {
            let e = self.lock().snapshots.get(&plan.base).cloned();
            Some(e.ok_or(Error::Compacted {
                commit: plan.commit,
                oldest: self.horizon(),
            })?)
        } else {
            None
        };
        let mut segments: Vec<(u64, Arc<File>)> = Vec::new();
        for (_, loc) in &plan.records {
            if segments.last().is_none_or(|(s, _)| *s != loc.segment) {
                segments.push((loc.segment, self.segment(loc.segment)?));
            }
        }
        Ok(PinnedPlan {
            dir: self.dir.clone(),
            plan,
            base,
            segments,
        })
    }
}

/// Opens the snapshot at `path` and checks it is at `commit`; with `full`,
/// also reads every block (every CRC).
pub fn open_snapshot(path: &Path, commit: u64, full: bool) -> Result<SnapshotEntry, Error> {
    let reader = SnapshotReader::open_path(path).map_err(|e| Error::from_snapshot(path, &e))?;
    if reader.commit() != commit {
        return Err(Error::corrupt(
            path,
            16,
            format!(
                "header names commit {}, the file name {commit}",
                reader.commit()
            ),
        ));
    }
    if full {
        for entry in reader.entries() {
            entry.map_err(|e| Error::from_snapshot(path, &e))?;
        }
    }
    let taken = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Ok(SnapshotEntry {
        commit,
        path: path.to_path_buf(),
        bytes: reader.size(),
        taken,
        reader: Arc::new(reader),
    })
}

/// A read plan with its files pinned open: the base snapshot (`None`: the
/// empty document) and the segment files of its records. Run
/// [`PinnedPlan::execute`] on a blocking thread.
#[derive(Clone, Debug)]
pub struct PinnedPlan {
    dir: PathBuf,
    /// The plan (base = the snapshot's commit, or 0).
    pub plan: ReadPlan,
    /// The base snapshot.
    pub base: Option<SnapshotEntry>,
    segments: Vec<(u64, Arc<File>)>,
}

impl PinnedPlan {
    /// Reads the node at the plan's path as of its commit: the node at the
    /// read root from the base snapshot (only the blocks holding it), then
    /// the plan's records replayed on it.
    pub fn execute(&self) -> Result<Option<Node>, Error> {
        let base = match &self.base {
            Some(s) => s
                .reader
                .read_path(&self.plan.root)
                .map_err(|e| Error::from_snapshot(&s.path, &e))?,
            None => None,
        };
        let fetch = |commit: u64, loc: Location| -> Result<Node, Error> {
            let f = self
                .segments
                .iter()
                .find(|(s, _)| *s == loc.segment)
                .map(|(_, f)| f)
                .ok_or_else(|| {
                    Error::corrupt(
                        segment_path(&self.dir, loc.segment),
                        0,
                        "segment not pinned",
                    )
                })?;
            Ok(read_record(&self.dir, f, commit, loc)?.patch)
        };
        execute(&self.plan, base, fetch).map_err(|e| match e {
            ReadError::Fetch { source, .. } => source,
            other => Error::Snapshot {
                file: self.dir.clone(),
                reason: other.to_string(),
            },
        })
    }
}
