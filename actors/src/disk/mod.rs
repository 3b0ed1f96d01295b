//! Layer 1, the disk: what the store's files are and how they are touched.
//!
//! Nothing here spawns an actor or holds state beyond a file.

pub mod fileops;
pub mod layout;
pub mod lock;
pub mod record;
