//! logd: an embedded, versioned document store for Tony documents.
//!
//! Every change is a patch committed through a transaction; every commit gets a
//! number; the state at any path can be read as of any retained commit.
//!
//! The public API is [`Storage`] (open, transactions, reads, close), [`Tx`]
//! and [`Patcher`] (the participants of a transaction), the document model
//! ([`Node`], [`Value`], [`Key`], [`Tag`]), kinded paths ([`KPath`]) and the
//! patch engine ([`patch`]); [`diff::diff`] builds the patch between two states.

#![warn(missing_docs)]

pub mod diff;
pub mod inspect;
pub mod json;
mod storage;

pub use logd_actors::checkpoint::CheckpointStatus;
pub use logd_actors::compactor::CompactionReport;
pub use logd_actors::snapshotter::SnapshotInfo;
pub use logd_actors::transaction::{Outcome, Patch, PatchMeta, TxId};
pub use logd_actors::{Cutoff, Durability, Error, Options, Retention, SnapshotEvery};
pub use logd_core::kpath::{KPath, KPathError, Segment};
pub use logd_core::node::{Key, Kind, MAX_NESTING, Node, Tag, Value};
pub use logd_core::patch;
pub use logd_core::text;
pub use storage::{Actors, CommitInfo, Patcher, Storage, Tx, ValueError};

/// The engine's actors and the messages a tool or a load test sends them
/// directly (see [`Storage::actors`]), and what [`Storage::open_with`]
/// takes and returns. A curated set: the rest of `logd-actors` is internal.
pub mod actors {
    pub use logd_actors::commit::log_writer::{
        Append, AppendOutcome, Appended, Flush, LogWriter, Seal,
    };
    pub use logd_actors::index::{Affecting, IndexActor, LastCommit, PlanRead, Stats};
    pub use logd_actors::maintain::compactor::{Compact, CompactAt, Compactor};
    pub use logd_actors::maintain::snapshotter::{Snapshotter, SwitchAndSnapshot, TakeSnapshot};
    pub use logd_actors::open::recovery::Recovered;
    pub use logd_actors::supervisor::Supervisor;
    pub use logd_actors::{FileOps, RealFs};
    pub use logd_core::wal::EntryMeta;
}

/// The README's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
