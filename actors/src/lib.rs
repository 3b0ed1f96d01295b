//! `logd-actors`: logd's concurrency and I/O scheduling, as kameo actors.
//!
//! Actors own state and files; the pure logic they run lives in
//! `logd-core`. Each actor's messages sit directly above their handlers.
//!
//! # Layers
//!
//! The modules form one order: each module uses only the modules listed
//! above it (and its own submodules), never one below it, so the crate has
//! no import cycle. `tests/layers.rs` reads this list and fails on an
//! upward `crate::` path; a new module goes into the list where its imports
//! allow.
//!
//! 1. [`error`]: the one [`Error`] type
//! 2. [`options`]: [`Options`] and [`Durability`]
//! 3. [`disk::fileops`]: [`FileOps`], the write-side file operations, injectable for tests
//! 4. [`disk::layout`]: where each file of a store lives; creating directories and files durably
//! 5. [`disk::record`]: a durable record with its commit and location, and a batch of them
//! 6. [`disk::lock`]: the store's `LOCK`
//! 7. [`open::recovery`]: `meta` and the one recovery scan of the log
//! 8. [`open::checkpoint`]: the index checkpoint, and opening the index from it
//! 9. [`index::cache`]: the record cache of recent durable records
//! 10. [`index::catalog`]: the snapshot catalogue, the read horizon, pinned read plans, open segment files
//! 11. [`index`]: the shared path index, its writer, and the index actor
//! 12. [`read`]: the read path ([`read::Reader`])
//! 13. [`commit::transaction`]: transactions and their registry
//! 14. [`commit::log_writer`]: the sequencer: conflict checks, commit numbers, group commit, fsync
//! 15. [`commit::engine`]: the transactions' backend: the log writer and the reader wired together
//! 16. [`watch`]: the watch hub, fed by the log writer's durable batches, and the change feed of a path
//! 17. [`maintain::compactor`]: applying the retention policy: forget, then delete files
//! 18. [`maintain::snapshotter`]: writing snapshots, and the trigger that asks for them
//! 19. [`supervisor`]: spawning the log writer and restarting it after a panic
//!
//! The module paths from before the layers (`logd_actors::log_writer`,
//! `logd_actors::reader`, ...) are re-exported below.

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
pub mod watch;

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
