//! Store options.
//!
//! This module owns [`Options`] and [`Durability`] with their defaults. It
//! never reads the environment or files; callers build options in code
//! (start from `Options::default()` and set fields).

use std::time::Duration;

pub use logd_core::retention::{Cutoff, Retention};

/// When an appended record counts as durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every batch is fsynced before any of its records is acknowledged.
    #[default]
    Immediate,
    /// Records are acknowledged after the write; the log is fsynced every
    /// `interval` (and on close, seal and flush). A crash can lose the last
    /// `interval` of acknowledged commits, never corrupt the store.
    Buffered {
        /// How often to fsync.
        interval: Duration,
    },
}

/// Options for opening a store. Start from [`Options::default`] and set
/// fields: more fields are added over time.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Options {
    /// When a commit counts as durable. Default: [`Durability::Immediate`].
    pub durability: Durability,
    /// Permission bits cleared from directories (`0o777 & !umask`) and files
    /// (`0o666 & !umask`) logd creates. Default `0o022`.
    pub umask: u32,
    /// A log segment is sealed and a new one started once it passes this
    /// size. Default 64 MiB.
    pub segment_bytes: u64,
    /// Largest encoded record (frame) accepted; larger appends get
    /// `Error::TooLarge`. Default 16 MiB.
    pub max_record_bytes: u32,
    /// How long a transaction may wait for its participants. Default 30 s.
    pub tx_timeout: Duration,
    /// When the store takes a snapshot on its own (besides explicit
    /// `switch_and_snapshot` calls). Default `None`: only when asked.
    pub snapshot_every: Option<SnapshotEvery>,
    /// Which snapshots and sealed segments compaction keeps. Default
    /// [`Retention::KeepAll`].
    pub compaction: Retention,
    /// How long a lone committer spins (yielding) for the log writer's
    /// reply before it sleeps; see `log_writer::Appender`. Default 60 µs;
    /// `Duration::ZERO` never spins (least CPU, slower sequential commits).
    pub commit_spin: Duration,
    /// Whether opening a directory that holds no store (no `meta` file)
    /// creates one. Default `true`, for embedding: the first open of a new
    /// directory makes the store. Set it to `false` wherever an empty store
    /// would be wrong rather than new (a mistyped path, a service whose
    /// store must already exist): such an open fails with
    /// `Error::NoStore` and writes nothing. The CLI sets it only for the
    /// commands that write.
    ///
    /// The store directory, and each directory logd creates in it, is made
    /// durable (its parent fsynced) before anything is written inside.
    pub create: bool,
}

/// How often the store snapshots on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotEvery {
    /// After this many commits since the last snapshot.
    Commits(u64),
    /// Whenever the log writer seals a segment (by size).
    Segment,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            durability: Durability::Immediate,
            umask: 0o022,
            segment_bytes: 64 << 20,
            max_record_bytes: 16 << 20,
            tx_timeout: Duration::from_secs(30),
            snapshot_every: None,
            compaction: Retention::KeepAll,
            commit_spin: Duration::from_micros(60),
            create: true,
        }
    }
}
