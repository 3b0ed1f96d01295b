//! Layer 6, maintenance in the background: snapshots (and what triggers
//! them) and compaction.

pub mod compactor;
pub mod snapshotter;
