//! `logd-actors`: logd's concurrency and I/O scheduling, as kameo actors.
//!
//! One module per actor, its messages beside it. Actors own state and files;
//! the pure logic they run lives in `logd-core`.
//!
//! | module | owns |
//! |---|---|
//! | [`error`] | the one [`Error`] type |
//! | [`options`] | [`Options`] and [`Durability`] |
//! | [`fileops`] | [`FileOps`]: the write-side file operations, injectable for tests |
//! | [`recovery`] | `LOCK`, `meta`, and the single recovery scan of the log |
//! | [`log_writer`] | the sequencer: conflict checks, commit numbers, group commit, fsync |
//! | [`supervisor`] | spawning and restarting the actors |
//! | [`index`] | the index actor |
//! | [`catalog`] | the snapshot catalogue, the read horizon, pinned read plans |
//! | [`snapshotter`] | writing snapshots (rewrite from the previous one) |
//! | [`compactor`] | applying the retention policy: forget, then delete files |
//! | [`watch`] | the watch hub and the change feed of a path |

#![warn(missing_docs)]

pub mod catalog;
pub mod checkpoint;
pub mod compactor;
pub mod engine;
pub mod error;
pub mod fileops;
pub mod index;
pub mod log_writer;
pub mod options;
pub mod reader;
pub mod recovery;
pub mod snapshotter;
pub mod supervisor;
pub mod transaction;
pub mod watch;

pub use error::Error;
pub use fileops::{FileOps, RealFs};
pub use options::{Cutoff, Durability, Options, Retention, SnapshotEvery};
