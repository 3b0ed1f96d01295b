//! logd: an embedded, versioned document store for Tony documents.
//!
//! Every change is a patch committed through a transaction; every commit gets
//! a number, gap-free from 1; the state at any path can be read exactly as of
//! any retained commit. In the default durable mode a commit is acknowledged
//! only after its record is fsynced, so every acknowledged commit survives a
//! crash or a power cut.
//!
//! # A first program
//!
//! ```
//! use logd::{Options, Outcome, Storage};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     # let tmp = tempfile::tempdir()?;
//!     # let dir = tmp.path();
//!     // Creates the store if `dir` holds none (see `Options::create`).
//!     let store = Storage::open(dir, Options::default()).await?;
//!
//!     // One call, one commit: the patch merges into the state at the path.
//!     let Outcome::Committed { commit } = store.patch("users.ada", "{name: Ada, born: 1815}".parse()?).await?
//!     else { unreachable!("a lone patch has nothing to conflict with") };
//!     store.patch("users.ada", "{born: 1816}".parse()?).await?;
//!
//!     // The current state, and the state as of any retained commit.
//!     assert_eq!(store.get("users.ada.born").await?, Some("1816".parse()?));
//!     assert_eq!(store.read_state_at("users.ada.born", commit).await?, Some("1815".parse()?));
//!
//!     // Which commits touched a path.
//!     let history = store.history("users", 0, store.current_commit()).await?;
//!     assert_eq!(history.len(), 2);
//!
//!     store.close().await?;
//!     Ok(())
//! }
//! ```
//!
//! Several participants (tasks, or request handlers that know only a
//! transaction's id) can contribute patches at different paths to one
//! transaction that commits atomically: see [`Storage::new_tx`],
//! [`Storage::get_tx`], [`Tx::new_patcher`] and [`Patcher::commit`]. A
//! conditional write is [`Storage::patch_if`]; serde types go in and out
//! with [`Storage::put_as`] and [`Storage::get_as`].
//!
//! # What you need to know
//!
//! - **A tokio runtime.** The engine's actors are tokio tasks (kameo):
//!   call [`Storage::open`] from inside a runtime (`#[tokio::main]`, either
//!   flavour); without one it panics, as `tokio::spawn` does.
//! - **One opener per store.** `open` takes `<dir>/LOCK`; a second opener,
//!   in this process or another, gets [`Error::Locked`] naming the holder's
//!   pid. Clone the [`Storage`] (it is a handle) to share it between tasks.
//! - **Cancellation.** Every async method documents what dropping its
//!   future does, under a "Cancellation safety" heading. In short: reads and
//!   `close` are cancel-safe; a dropped [`Patcher::commit`] never loses the
//!   outcome (call it again); a dropped `open` releases the lock.
//! - **Errors** are one typed enum, [`Error`]: patches that do not apply,
//!   conflicts, reads below the retention horizon ([`Error::Compacted`]),
//!   corruption with file and offset, a closed store.
//! - **Close** with [`Storage::close`]: it makes everything durable (what a
//!   relaxed [`Durability`] left unsynced too), advances the index
//!   checkpoint so the next open is fast, stops the actors and releases the
//!   lock. In the durable mode no acknowledged commit depends on it: each
//!   was synced before it was acknowledged.
//! - **Logging** is [`tracing`](https://docs.rs/tracing): the actors' handlers
//!   run in spans and log recovery, snapshots, compaction and failures.
//!   Install any subscriber to see them, for example
//!   `tracing_subscriber::fmt().with_env_filter("logd=info").init()`.
//!
//! # Map
//!
//! The public API is [`Storage`] (open, transactions, reads, close), [`Tx`]
//! and [`Patcher`] (the participants of a transaction), the document model
//! ([`Node`], [`Value`], [`Key`], [`Tag`]), kinded paths ([`KPath`]; every
//! method that takes a `&str` path parses it the same way), the patch engine
//! ([`patch`]) and the text format ([`text`]); [`diff::diff`] builds the patch
//! between two states, [`json`] maps documents to and from JSON losslessly;
//! [`Storage::watch`] follows a path's changes ([`watch`]). The format itself
//! is described in `docs/TONY.md` in the repository.

#![warn(missing_docs)]

pub mod client;
pub mod diff;
pub mod inspect;
pub mod json;
pub mod server;
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
    pub use logd_actors::watch::{HubStats, WatchHub};
    pub use logd_actors::{FileOps, RealFs};
    pub use logd_core::wal::EntryMeta;
}

/// The README's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
