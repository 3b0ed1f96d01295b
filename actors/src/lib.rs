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

#![warn(missing_docs)]

pub mod commit;
pub mod disk;
pub mod error;
pub mod index;
pub mod maintain;
pub mod open;
pub mod options;
pub mod read;
pub mod supervisor;

// The paths the modules had before the layers: kept for code outside the
// crate (and code written against them) so they keep compiling.
pub use commit::{engine, log_writer, transaction};
pub use disk::fileops;
pub use index::catalog;
pub use maintain::{compactor, snapshotter};
pub use open::{checkpoint, recovery};
pub use read as reader;

pub use error::Error;
pub use fileops::{FileOps, RealFs};
pub use options::{Cutoff, Durability, Options, Retention, SnapshotEvery};
