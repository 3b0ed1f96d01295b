//! Log record and segment formats.

use serde::{Deserialize, Serialize};

/// Where a record lives: the segment (named by its first commit), the byte
/// offset of the record's frame in that file, and the frame's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Location {
    /// The segment's first commit number (its file name is `wal/<segment>.seg`, zero-padded).
    pub segment: u64,
    /// Byte offset of the record frame within the segment file.
    pub offset: u64,
    /// Length in bytes of the whole frame (header + payload).
    pub len: u32,
}
