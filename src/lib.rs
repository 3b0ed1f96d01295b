//! logd: an embedded, versioned document store for Tony documents.
//!
//! Every change is a patch committed through a transaction; every commit gets a
//! number; the state at any path can be read as of any retained commit.
//!
//! The public API is [`Storage`] (open, transactions, reads, close), [`Tx`]
//! and [`Patcher`] (the participants of a transaction), the document model
//! ([`Node`], [`Value`], [`Key`], [`Tag`]), kinded paths ([`KPath`]) and the
//! patch engine ([`patch`]); [`diff::diff`] builds the patch between two states;
//! [`Storage::watch`] follows a path's changes ([`watch`]).

#![warn(missing_docs)]

pub mod diff;
pub mod inspect;
pub mod json;
mod storage;
pub mod watch;

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
pub use watch::{Change, Watch, WatchEvent, WatchFrom, WatchOptions};

/// The engine's internals, for tools and load tests that drive the actors'
/// mailboxes directly (see [`Storage::actors`]).
pub mod actors {
    pub use logd_actors::compactor;
    pub use logd_actors::index;
    pub use logd_actors::log_writer;
    pub use logd_actors::snapshotter;
    pub use logd_actors::transaction;
    pub use logd_actors::watch;
}

/// The README's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
