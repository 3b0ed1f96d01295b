//! Snapshot file format: a streaming writer and a sub-path reader.
//!
//! A snapshot is the whole document as of one commit, laid out so that the
//! node at any path can be read by decoding only the blocks that hold it.
//! This module owns the byte format, its writer ([`SnapshotWriter`],
//! [`write_node`]), its reader ([`SnapshotReader`]) and the streaming
//! [`rewrite`] of a snapshot under later patches. It never decides *when* a
//! snapshot is written or where the file lives (that is the snapshotter
//! actor), and it never trusts a byte it reads: every length is checked
//! against the file size before anything is allocated, and every byte of a
//! valid file is covered by a CRC32 (crc32fast) or a structural check.
//!
//! # Entries
//!
//! The document is flattened into *entries* `(path, body)` sorted by
//! [`KPath`] order (segment by segment, a prefix first). Because all
//! descendants of a path sort contiguously right after it, the node at `p` is
//! rebuilt from one contiguous run of entries. A body ([`EntryBody`]) is
//!
//! * `Leaf(node)`: the whole subtree at the path (a scalar, or a container
//!   whose estimated encoded size is at most [`LEAF_MAX_BYTES`] and depth at
//!   most [`LEAF_MAX_DEPTH`]); no entry lies below a leaf;
//! * `Array { tag, len }`: a dense array; its elements follow as entries
//!   `p[0] .. p[len-1]`;
//! * `Object { tag, keys }`: an object (or sparse array) with its keys in
//!   *insertion* order (which differs from path order); its children follow
//!   as entries `p.key` / `p{i}`, one per key, in path order.
//!
//! Invariants of a valid entry stream (checked by the writer, re-checked by
//! every reader that assembles nodes):
//!
//! 1. paths strictly increase; the first entry (if any) is the root `""`;
//! 2. every non-root entry's parent path holds a container entry, and the
//!    children of a container are exactly the segments its body names: every
//!    one present, none extra (so an object has no duplicate keys there);
//! 3. no entry has a leaf entry as an ancestor.
//!
//! An empty entry stream is the absent document (`None`). A container with
//! duplicate keys cannot satisfy 2, so it is always stored as a leaf.
//!
//! # Byte layout (all integers little-endian; `varint` = unsigned LEB128)
//!
//! ```text
//! header  (28 B)  magic "LOGDSNAP" | version u32 = 1 | flags u32 = 0 | commit u64 | crc u32 (of the 24 bytes before)
//! blocks          frame*            (contiguous, the first at offset 28)
//! index           frame             (immediately after the last block)
//! footer  (36 B)  index_offset u64 | index_len u32 | reserved u32 = 0 | entry_count u64
//!                 | crc u32 (of the 24 bytes before) | magic "LOGDSNPF"
//!
//! frame           len u32 | crc u32 (of the 4 len bytes, then the payload) | payload (len bytes)
//! block payload   entry+ | restart u32 * r | r u32
//!                 (at least one entry; restart k = offset, from the payload
//!                 start, of entry k * RESTART_INTERVAL; r = ceil(entries / 16))
//! entry           path-delta | body_len varint | body (rmp-serde of EntryBody)
//! path-delta      shared varint | n varint | segment*n
//!                 (the path is the first `shared` segments of the previous
//!                 entry's path in the same block, then the n segments; a
//!                 restart entry (the first of a block, and every 16th) has
//!                 shared = 0; n >= 1 except for the root)
//! segment         0x00 len varint utf8-bytes (field) | 0x01 varint (index [i]) | 0x02 varint (sparse {i})
//! index payload   block_count varint | (block_len varint | entry_count varint | fence path-delta)*
//!                 (fence = the block's first path, delta against the previous fence)
//! ```
//!
//! `index_len` is the index frame's payload length; the index frame must end
//! exactly where the footer starts. Block offsets are not stored: block `i`
//! starts where block `i-1` ended (8 + its len), and the last block must end
//! exactly at `index_offset`. Fences strictly increase and the first is the
//! root. So every byte of a valid file is either inside a CRC-checked frame,
//! in the CRC-checked header or footer, or fixed by the magic; any single
//! changed byte is reported as [`SnapshotError::Corrupt`] (block frames when
//! the block is read, everything else by [`SnapshotReader::open`]).
//!
//! Paths are a hand-written varint encoding rather than rmp-serde so that a
//! reader can scan a block's paths without decoding any node; node payloads
//! (the bodies) are rmp-serde.
//!
//! # Reading a sub-path
//!
//! The reader keeps the fence index (one path per block) in memory. To read
//! `p` it binary-searches the last block whose fence is `<= p`, then that
//! block's restart points, and scans from there (at most 16 paths; bodies
//! are skipped) for the greatest entry `<= p`: if that
//! entry is `p`, the run of entries under `p` is assembled (continuing into
//! following blocks only while their fence is still under `p`); if it is a
//! leaf that is an ancestor of `p`, `p` is looked up inside the leaf;
//! otherwise `p` is absent. A read therefore decodes the blocks that hold
//! `p`'s run and nothing else (see [`SnapshotReader::blocks_decoded`]).

mod batch;
mod codec;
mod reader;
mod rewrite;
mod tree;
mod writer;

use serde::{Deserialize, Serialize};

use crate::kpath::KPath;
use crate::node::{Key, Node, Tag};

pub use reader::{Entries, ReadAt, SeekSource, SnapshotReader};
pub use rewrite::{rewrite, rewrite_with};
pub use writer::{SnapshotWriter, WriteOptions, write_node, write_node_with};

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// A block is closed once its payload reaches this many bytes (a single
/// larger entry makes one larger block).
pub const BLOCK_TARGET_BYTES: usize = 32 * 1024;
/// Every this many entries a block restarts its path compression and
/// records the entry's offset, so a reader binary-searches a block instead
/// of scanning it.
pub const RESTART_INTERVAL: usize = 16;
/// A container whose estimated encoded size is at most this is stored whole,
/// as one leaf entry.
pub const LEAF_MAX_BYTES: usize = 512;
/// A container nested deeper than this is never stored whole (keeps leaf
/// decoding shallow; see [`LEAF_MAX_BYTES`]).
pub const LEAF_MAX_DEPTH: usize = 32;

/// One entry of the flattened document (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Where the entry sits.
    pub path: KPath,
    /// What it holds.
    pub body: EntryBody,
}

/// The body of an [`Entry`].
///
/// The serde shape is part of the file format (rmp-serde, variant names);
/// do not reorder or rename.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EntryBody {
    /// The whole subtree at the entry's path.
    Leaf(Node),
    /// A dense array of `len` elements, which follow as their own entries.
    Array {
        /// The array node's tag.
        tag: Option<Tag>,
        /// Number of elements.
        len: u32,
    },
    /// An object or sparse array; its children follow as their own entries.
    Object {
        /// The object node's tag.
        tag: Option<Tag>,
        /// The keys in insertion order (no duplicates).
        keys: Vec<Key>,
    },
}

/// What [`SnapshotWriter::finish`] (and [`write_node`], [`rewrite`]) wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The commit the snapshot is at.
    pub commit: u64,
    /// Total bytes written, header to footer.
    pub bytes: u64,
    /// Number of blocks.
    pub blocks: u64,
    /// Number of entries.
    pub entries: u64,
}

/// Why a snapshot could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes are not a valid snapshot (checksum, magic, bounds or structure).
    #[error("corrupt snapshot at offset {offset}: {reason}")]
    Corrupt {
        /// Byte offset (from the start of the file) of the bad data.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// The file is a snapshot of a format version this build does not read.
    #[error("snapshot format version {found} is not supported (this build reads {FORMAT_VERSION})")]
    Version {
        /// The version in the file's header.
        found: u32,
    },
    /// Reading or writing failed.
    #[error("snapshot I/O error at offset {offset}: {source}")]
    Io {
        /// Byte offset of the failed operation.
        offset: u64,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The writer was given an entry that breaks the entry-stream invariants
    /// (out of order, not a child of an open container, missing children, ...).
    #[error("invalid snapshot entry at {path:?}: {reason}")]
    InvalidEntry {
        /// The entry's path, printed.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// Something exceeds what the format can represent (a block over 4 GiB, an
    /// array over `u32::MAX` elements, a deeply nested container with duplicate keys).
    #[error("too large for a snapshot at {path:?}: {reason}")]
    TooLarge {
        /// Where, printed.
        path: String,
        /// What.
        reason: String,
    },
    /// A patch given to [`rewrite`] failed to apply.
    #[error("patch {index} failed during snapshot rewrite: {source}")]
    Patch {
        /// Position of the patch in the sequence given to [`rewrite`].
        index: usize,
        /// The patch error.
        #[source]
        source: crate::patch::PatchError,
    },
}

impl SnapshotError {
    pub(crate) fn corrupt(offset: u64, reason: impl Into<String>) -> SnapshotError {
        SnapshotError::Corrupt {
            offset,
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(path: &KPath, reason: impl Into<String>) -> SnapshotError {
        SnapshotError::InvalidEntry {
            path: path.to_string(),
            reason: reason.into(),
        }
    }
}
