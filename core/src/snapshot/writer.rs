//! The streaming snapshot writer. Memory is one block of encoded entries, the
//! fence index (one path per block) and the validator's open containers; it
//! never holds the document.

use std::io::Write;

use crate::kpath::{KPath, Segment};
use crate::node::Node;

use super::codec::{
    Footer, HEADER_LEN, Header, encode_index, frame_header, put_path_delta, put_varint,
};
use super::tree::{BodyRef, Validator, depth_within, flatten};
use super::{
    BLOCK_TARGET_BYTES, EntryBody, LEAF_MAX_BYTES, LEAF_MAX_DEPTH, RESTART_INTERVAL, SnapshotError,
    SnapshotMeta,
};

/// Tuning of the writer. Readers need no options: any values give a valid file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// A block is closed once its payload reaches this many bytes.
    pub block_target_bytes: usize,
    /// Containers up to this estimated size are stored whole as one leaf
    /// ([`SnapshotWriter::push_node`], [`write_node`]); 0 splits every container.
    pub leaf_max_bytes: usize,
}

impl Default for WriteOptions {
    fn default() -> WriteOptions {
        WriteOptions {
            block_target_bytes: BLOCK_TARGET_BYTES,
            leaf_max_bytes: LEAF_MAX_BYTES,
        }
    }
}

/// Writes a snapshot to any [`Write`], entry by entry, in path order.
///
/// The header is written by [`SnapshotWriter::new`]; blocks are written as
/// they fill; the fence index and footer by [`SnapshotWriter::finish`]. A
/// writer that returned an error refuses further use (the output is then
/// not a valid snapshot and must be discarded). Writing no entries at all
/// gives the snapshot of the absent document.
///
/// Pass `&mut file` to keep the file for an `fsync` after `finish`.
pub struct SnapshotWriter<W: Write> {
    out: W,
    commit: u64,
    offset: u64,
    block: Vec<u8>,
    block_entries: u32,
    restarts: Vec<u32>,
    block_first: Option<KPath>,
    last_path: Vec<Segment>,
    scratch: Vec<u8>,
    index: Vec<(u32, u32, KPath)>,
    entries: u64,
    validator: Validator,
    poisoned: bool,
    opts: WriteOptions,
}

impl<W: Write> SnapshotWriter<W> {
    /// Starts a snapshot at `commit`, writing its header to `out`.
    pub fn new(out: W, commit: u64) -> Result<SnapshotWriter<W>, SnapshotError> {
        SnapshotWriter::with_options(out, commit, WriteOptions::default())
    }

    /// [`SnapshotWriter::new`] with explicit tuning.
    pub fn with_options(
        mut out: W,
        commit: u64,
        opts: WriteOptions,
    ) -> Result<SnapshotWriter<W>, SnapshotError> {
        out.write_all(&Header { commit }.encode())
            .map_err(|source| SnapshotError::Io { offset: 0, source })?;
        Ok(SnapshotWriter {
            out,
            commit,
            offset: HEADER_LEN,
            block: Vec::with_capacity(opts.block_target_bytes.min(1 << 20) + 1024),
            block_entries: 0,
            restarts: Vec::new(),
            block_first: None,
            last_path: Vec::new(),
            scratch: Vec::new(),
            index: Vec::new(),
            entries: 0,
            validator: Validator::default(),
            poisoned: false,
            opts,
        })
    }

    /// Appends one entry. Entries must come in strictly increasing path
    /// order and form a valid entry stream (see the module docs); anything
    /// else is [`SnapshotError::InvalidEntry`]. A leaf nested deeper than
    /// [`LEAF_MAX_DEPTH`] is [`SnapshotError::TooLarge`].
    pub fn push(&mut self, path: &KPath, body: &EntryBody) -> Result<(), SnapshotError> {
        if let EntryBody::Leaf(node) = body
            && !depth_within(node, LEAF_MAX_DEPTH)
        {
            return Err(SnapshotError::TooLarge {
                path: path.to_string(),
                reason: format!("a leaf nested deeper than {LEAF_MAX_DEPTH} levels"),
            });
        }
        self.push_ref(path, body.as_ref())
    }

    /// Appends every entry of `node` placed at `path` (its parent container
    /// entry must already be written, unless `path` is the root).
    pub fn push_node(&mut self, path: &KPath, node: &Node) -> Result<(), SnapshotError> {
        let mut path = path.clone();
        let leaf_max = self.opts.leaf_max_bytes;
        flatten(node, &mut path, leaf_max, &mut |p, body| {
            self.push_ref(p, body)
        })
    }

    pub(crate) fn push_ref(
        &mut self,
        path: &KPath,
        body: BodyRef<'_>,
    ) -> Result<(), SnapshotError> {
        if self.poisoned {
            return Err(SnapshotError::invalid(path, "the writer failed earlier"));
        }
        let r = self.push_inner(path, body);
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }

    /// Appends the first entry of a run copied from a verified snapshot;
    /// the entries below it that follow are only checked for order.
    pub(crate) fn push_opaque(
        &mut self,
        path: &KPath,
        body: BodyRef<'_>,
    ) -> Result<(), SnapshotError> {
        if self.poisoned {
            return Err(SnapshotError::invalid(path, "the writer failed earlier"));
        }
        let r = self
            .validator
            .push_opaque(path)
            .and_then(|()| self.encode(path, body));
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }

    /// Appends a whole block frame (header and payload, verified) copied
    /// from another snapshot. The block's entries run from `first` to
    /// `last`; `heads` are those that start copied runs (see
    /// `Validator::push_raw`).
    pub(crate) fn push_raw_block(
        &mut self,
        frame: &[u8],
        entries: u32,
        first: &KPath,
        heads: &[KPath],
        last: &KPath,
    ) -> Result<(), SnapshotError> {
        if self.poisoned {
            return Err(SnapshotError::invalid(first, "the writer failed earlier"));
        }
        let r = self.raw_inner(frame, entries, first, heads, last);
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }

    fn raw_inner(
        &mut self,
        frame: &[u8],
        entries: u32,
        first: &KPath,
        heads: &[KPath],
        last: &KPath,
    ) -> Result<(), SnapshotError> {
        self.validator.push_raw(first, heads, last)?;
        self.flush_block()?;
        let len = frame
            .len()
            .checked_sub(8)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| SnapshotError::invalid(first, "bad raw block frame"))?;
        self.write(frame)?;
        self.index.push((len, entries, first.clone()));
        self.entries += u64::from(entries);
        Ok(())
    }

    fn push_inner(&mut self, path: &KPath, body: BodyRef<'_>) -> Result<(), SnapshotError> {
        self.validator.push(path, &body)?;
        self.encode(path, body)
    }

    fn encode(&mut self, path: &KPath, body: BodyRef<'_>) -> Result<(), SnapshotError> {
        self.scratch.clear();
        rmp_serde::encode::write(&mut self.scratch, &body).map_err(|e| {
            SnapshotError::InvalidEntry {
                path: path.to_string(),
                reason: format!("cannot encode: {e}"),
            }
        })?;
        let segs = path.segments();
        if self.block_first.is_none() {
            self.block_first = Some(path.clone());
        }
        if (self.block_entries as usize).is_multiple_of(RESTART_INTERVAL) {
            let at = u32::try_from(self.block.len()).map_err(|_| SnapshotError::TooLarge {
                path: path.to_string(),
                reason: "a block over 4 GiB".into(),
            })?;
            self.restarts.push(at);
            self.last_path.clear();
        }
        put_path_delta(&mut self.block, &self.last_path, segs);
        let shared = self
            .last_path
            .iter()
            .zip(segs)
            .take_while(|(a, b)| a == b)
            .count();
        self.last_path.truncate(shared);
        self.last_path.extend_from_slice(&segs[shared..]);
        put_varint(&mut self.block, self.scratch.len() as u64);
        self.block.extend_from_slice(&self.scratch);
        self.block_entries += 1;
        self.entries += 1;
        if self.block.len() >= self.opts.block_target_bytes {
            self.flush_block()?;
        }
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        self.out
            .write_all(bytes)
            .map_err(|source| SnapshotError::Io {
                offset: self.offset,
                source,
            })?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn flush_block(&mut self) -> Result<(), SnapshotError> {
        let Some(first) = self.block_first.take() else {
            return Ok(());
        };
        for r in &self.restarts {
            self.block.extend_from_slice(&r.to_le_bytes());
        }
        self.block
            .extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
        self.restarts.clear();
        let head = frame_header(&self.block).map_err(|len| SnapshotError::TooLarge {
            path: first.to_string(),
            reason: format!("a block of {len} bytes (a single entry over 4 GiB?)"),
        })?;
        let block = std::mem::take(&mut self.block);
        self.write(&head)?;
        self.write(&block)?;
        self.index
            .push((block.len() as u32, self.block_entries, first));
        self.block = block;
        self.block.clear();
        self.block_entries = 0;
        Ok(())
    }

    /// Number of entries written so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Writes the last block, the fence index and the footer, and flushes.
    pub fn finish(mut self) -> Result<SnapshotMeta, SnapshotError> {
        if self.poisoned {
            return Err(SnapshotError::invalid(
                &KPath::root(),
                "the writer failed earlier",
            ));
        }
        self.validator.finish()?;
        self.flush_block()?;
        let index = encode_index(&self.index);
        let head = frame_header(&index).map_err(|len| SnapshotError::TooLarge {
            path: String::new(),
            reason: format!("a fence index of {len} bytes"),
        })?;
        let index_offset = self.offset;
        self.write(&head)?;
        self.write(&index)?;
        let footer = Footer {
            index_offset,
            index_len: index.len() as u32,
            entry_count: self.entries,
        };
        self.write(&footer.encode())?;
        self.out.flush().map_err(|source| SnapshotError::Io {
            offset: self.offset,
            source,
        })?;
        Ok(SnapshotMeta {
            commit: self.commit,
            bytes: self.offset,
            blocks: self.index.len() as u64,
            entries: self.entries,
        })
    }
}

/// Writes the snapshot of a whole document at `commit`, streaming its
/// entries (memory: one block plus the fence index, not a copy of `doc`).
pub fn write_node<W: Write>(
    out: W,
    commit: u64,
    doc: &Node,
) -> Result<SnapshotMeta, SnapshotError> {
    write_node_with(out, commit, doc, WriteOptions::default())
}

/// [`write_node`] with explicit tuning.
pub fn write_node_with<W: Write>(
    out: W,
    commit: u64,
    doc: &Node,
    opts: WriteOptions,
) -> Result<SnapshotMeta, SnapshotError> {
    let mut w = SnapshotWriter::with_options(out, commit, opts)?;
    w.push_node(&KPath::root(), doc)?;
    w.finish()
}
