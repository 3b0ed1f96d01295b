//! Read-only inspection of a store directory: [`check`] verifies every
//! checksum of every file, [`stats`] summarises an open store.
//!
//! The index checkpoint (`ckpt/index.ckpt`) is reported apart from the problems:
//! it is only an accelerator, which opening ignores when it is damaged.
//!
//! This module only ever opens files for reading: it never takes the
//! directory lock, never truncates, renames or writes anything, so it is safe
//! to run next to a live store (a record being appended at that moment may be
//! reported as a torn tail).

use std::path::{Path, PathBuf};

use logd_core::index::IndexStats;
use logd_core::wal::{self, TailStatus};

use crate::Storage;

/// One problem found by [`check`]: which file, where, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file (relative to the store directory when it is inside it).
    pub file: PathBuf,
    /// Byte offset of the bad data in that file.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.file.display(),
            self.offset,
            self.reason
        )
    }
}

/// What [`check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Segment files scanned.
    pub segments: usize,
    /// Good log records found.
    pub records: u64,
    /// Snapshot files read.
    pub snapshots: usize,
    /// Snapshot entries read.
    pub snapshot_entries: u64,
    /// Whether a meta file was present (and checked).
    pub meta: bool,
    /// The index checkpoint: `None` when absent, else its commit, or why it
    /// does not decode (not counted as a problem: opening ignores it).
    pub checkpoint: Option<Result<u64, Problem>>,
    /// Every problem, in file order.
    pub problems: Vec<Problem>,
}

impl CheckReport {
    /// No problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn files_in(dir: &Path, ext: &str, report: &mut CheckReport, rel: &Path) -> Vec<PathBuf> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            report.problems.push(Problem {
                file: rel.to_path_buf(),
                offset: 0,
                reason: format!("cannot list directory: {e}"),
            });
            return Vec::new();
        }
    };
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|x| x.to_str()) == Some(ext))
        .collect();
    out.sort();
    out
}

fn relative(dir: &Path, p: &Path) -> PathBuf {
    p.strip_prefix(dir)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| p.to_path_buf())
}

/// Verifies every CRC of every file of the store in `dir`: each
/// `wal/*.seg` (header, every frame, with the records decoded), `meta`, and
/// each `snap/*.snap` (every block). Read-only: takes no lock and changes
/// nothing. A torn tail of the newest segment is reported too (recovery would
/// truncate it); zero fill after the last record is not a problem.
pub fn check(dir: impl AsRef<Path>) -> CheckReport {
    let dir = dir.as_ref();
    let mut report = CheckReport::default();
    if !dir.is_dir() {
        report.problems.push(Problem {
            file: dir.to_path_buf(),
            offset: 0,
            reason: "not a directory".into(),
        });
        return report;
    }
    // Log segments.
    let segs = files_in(&dir.join("wal"), "seg", &mut report, Path::new("wal"));
    for path in segs {
        let rel = relative(dir, &path);
        report.segments += 1;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                report.problems.push(Problem {
                    file: rel,
                    offset: 0,
                    reason: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        match wal::scan(&bytes) {
            Err(e) => report.problems.push(Problem {
                file: rel,
                offset: e.offset,
                reason: e.kind.to_string(),
            }),
            Ok(scan) => {
                report.records += scan.records.len() as u64;
                let name_first = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(wal::parse_segment_file_name);
                if let Some(first) = name_first
                    && first != scan.first_commit
                {
                    report.problems.push(Problem {
                        file: rel.clone(),
                        offset: 0,
                        reason: format!(
                            "header names first commit {} but the file name says {first}",
                            scan.first_commit
                        ),
                    });
                }
                match scan.tail {
                    TailStatus::Clean | TailStatus::Zeroed { .. } => {}
                    TailStatus::Torn { offset, error } => report.problems.push(Problem {
                        file: rel,
                        offset,
                        reason: format!("torn tail: {}", error.kind),
                    }),
                    TailStatus::Corrupt { error, next_good } => report.problems.push(Problem {
                        file: rel,
                        offset: error.offset,
                        reason: format!("{} (a good record follows at {next_good})", error.kind),
                    }),
                }
            }
        }
    }
    // Meta.
    let meta = dir.join("meta");
    match std::fs::read(&meta) {
        Ok(bytes) => {
            report.meta = true;
            if let Err(e) = logd_core::meta::decode(&bytes) {
                report.problems.push(Problem {
                    file: PathBuf::from("meta"),
                    offset: e.offset,
                    reason: e.reason,
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => report.problems.push(Problem {
            file: PathBuf::from("meta"),
            offset: 0,
            reason: format!("cannot read: {e}"),
        }),
    }
    // The index checkpoint.
    let ckpt = logd_actors::checkpoint::checkpoint_path(dir);
    report.checkpoint = match std::fs::read(&ckpt) {
        Ok(bytes) => Some(
            logd_core::index::checkpoint::decode(&bytes)
                .map(|c| c.commit)
                .map_err(|e| Problem {
                    file: relative(dir, &ckpt),
                    offset: e.offset,
                    reason: e.kind.to_string(),
                }),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(Err(Problem {
            file: relative(dir, &ckpt),
            offset: 0,
            reason: format!("cannot read: {e}"),
        })),
    };
    // Snapshots.
    let snaps = files_in(&dir.join("snap"), "snap", &mut report, Path::new("snap"));
    for path in snaps {
        let rel = relative(dir, &path);
        report.snapshots += 1;
        match logd_core::snapshot::SnapshotReader::open_path(&path) {
            Err(e) => report.problems.push(snapshot_problem(rel, e)),
            Ok(reader) => {
                for entry in reader.entries() {
                    match entry {
                        Ok(_) => report.snapshot_entries += 1,
                        Err(e) => {
                            report.problems.push(snapshot_problem(rel, e));
                            break;
                        }
                    }
                }
            }
        }
    }
    report
}

fn snapshot_problem(file: PathBuf, e: logd_core::snapshot::SnapshotError) -> Problem {
    match e {
        logd_core::snapshot::SnapshotError::Corrupt { offset, reason } => Problem {
            file,
            offset,
            reason,
        },
        other => Problem {
            file,
            offset: 0,
            reason: other.to_string(),
        },
    }
}

/// One file and its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSize {
    /// The file name (inside `wal/` or `snap/`).
    pub name: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// What [`stats`] reports about an open store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsReport {
    /// The current (last acknowledged) commit.
    pub commit: u64,
    /// The log segments, oldest first.
    pub segments: Vec<FileSize>,
    /// The snapshots, oldest first.
    pub snapshots: Vec<FileSize>,
    /// The path index's statistics.
    pub index: IndexStats,
    /// What opening did with the index checkpoint.
    pub checkpoint: logd_actors::checkpoint::CheckpointStatus,
    /// The index checkpoint file's size in bytes (0: absent).
    pub checkpoint_bytes: u64,
}

fn sizes(dir: &Path, ext: &str) -> Result<Vec<FileSize>, crate::Error> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("list", dir, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| io_error("list", dir, e))?;
        let path = entry.path();
        if path.extension().and_then(|x| x.to_str()) != Some(ext) {
            continue;
        }
        let md = entry.metadata().map_err(|e| io_error("stat", &path, e))?;
        out.push(FileSize {
            name: entry.file_name().to_string_lossy().into_owned(),
            bytes: md.len(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn io_error(op: &'static str, path: &Path, e: std::io::Error) -> crate::Error {
    crate::Error::Io {
        op,
        path: path.to_path_buf(),
        kind: e.kind(),
        message: e.to_string(),
    }
}

/// Commits, segments and snapshots with their sizes, and the index's
/// statistics, of an open store.
pub async fn stats(storage: &Storage) -> Result<StatsReport, crate::Error> {
    let commit = storage.current_commit();
    let dir = storage.dir().to_path_buf();
    let segments = sizes(&dir.join("wal"), "seg")?;
    let snapshots = sizes(&dir.join("snap"), "snap")?;
    let index = match storage.actors().index.ask(logd_actors::index::Stats).await {
        Ok(s) => s,
        Err(_) => return Err(crate::Error::Closed),
    };
    let checkpoint_bytes = std::fs::metadata(logd_actors::checkpoint::checkpoint_path(&dir))
        .map(|m| m.len())
        .unwrap_or(0);
    Ok(StatsReport {
        commit,
        segments,
        snapshots,
        index,
        checkpoint: storage.checkpoint_status().clone(),
        checkpoint_bytes,
    })
}
