//! Layer 2, opening a store: the one recovery scan of the log and the index
//! checkpoint that lets an open skip decoding most of it.

pub mod checkpoint;
pub mod recovery;
