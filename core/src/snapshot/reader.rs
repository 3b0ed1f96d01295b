//! The snapshot reader: verifies header, footer and fence index on open, then
//! reads sub-paths by decoding only the blocks that hold them.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::kpath::{KPath, Segment};
use crate::node::Node;

use super::codec::{
    Cursor, FOOTER_LEN, FRAME_HEADER_LEN, Footer, HEADER_LEN, Header, check_frame, decode_index,
    le_u32,
};
use super::tree::Assembler;
use super::{Entry, EntryBody, LEAF_MAX_DEPTH, RESTART_INTERVAL, SnapshotError};

/// Positional reads from a snapshot's bytes.
pub trait ReadAt {
    /// Total length in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Fills `buf` from `offset`; an error if fewer bytes exist.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for File {
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let src = usize::try_from(offset)
            .ok()
            .and_then(|o| self.get(o..o.checked_add(buf.len())?))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl ReadAt for Vec<u8> {
    fn size(&self) -> io::Result<u64> {
        self.as_slice().size()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.as_slice().read_exact_at(buf, offset)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn size(&self) -> io::Result<u64> {
        (**self).size()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for std::sync::Arc<T> {
    fn size(&self) -> io::Result<u64> {
        (**self).size()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
}

/// Adapts any `Read + Seek` to [`ReadAt`] (reads are serialized by a mutex).
pub struct SeekSource<R>(Mutex<R>);

impl<R: Read + Seek> SeekSource<R> {
    /// Wraps a reader.
    pub fn new(inner: R) -> SeekSource<R> {
        SeekSource(Mutex::new(inner))
    }
}

impl<R: Read + Seek> ReadAt for SeekSource<R> {
    fn size(&self) -> io::Result<u64> {
        let mut r = self
            .0
            .lock()
            .map_err(|_| io::Error::other("reader mutex poisoned"))?;
        r.seek(SeekFrom::End(0))
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut r = self
            .0
            .lock()
            .map_err(|_| io::Error::other("reader mutex poisoned"))?;
        r.seek(SeekFrom::Start(offset))?;
        r.read_exact(buf)
    }
}

/// What [`SnapshotReader::lookup`] found.
pub(crate) enum Lookup {
    /// The entry at the path.
    Entry(EntryBody),
    /// The path lies inside a leaf entry; this is the node there.
    InLeaf(Node),
    /// Nothing at the path.
    Absent,
}

#[derive(Clone, Debug)]
struct BlockMeta {
    fence: KPath,
    offset: u64,
    len: u32,
    entries: u32,
}

/// A verified, open snapshot. Reads take `&self` (positional reads), so
/// one reader can serve concurrent lookups.
pub struct SnapshotReader<S = File> {
    src: S,
    size: u64,
    commit: u64,
    entry_count: u64,
    blocks: Vec<BlockMeta>,
    decoded: AtomicU64,
}

impl<S> std::fmt::Debug for SnapshotReader<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReader")
            .field("commit", &self.commit)
            .field("size", &self.size)
            .field("blocks", &self.blocks.len())
            .field("entries", &self.entry_count)
            .finish()
    }
}

fn io_at(offset: u64) -> impl FnOnce(io::Error) -> SnapshotError {
    move |source| SnapshotError::Io { offset, source }
}

impl SnapshotReader<File> {
    /// Opens and verifies the snapshot file at `path`.
    pub fn open_path(path: impl AsRef<Path>) -> Result<SnapshotReader<File>, SnapshotError> {
        let file = File::open(path).map_err(io_at(0))?;
        SnapshotReader::open(file)
    }
}

/// Decodes one entry body (untrusted bytes at file offset `at`).
fn decode_body(bytes: &[u8], at: u64) -> Result<EntryBody, SnapshotError> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    de.set_max_depth(4 * LEAF_MAX_DEPTH + 16);
    serde::Deserialize::deserialize(&mut de)
        .map_err(|e| SnapshotError::corrupt(at, format!("undecodable entry body: {e}")))
}

/// A block's frame, read and checksum-verified.
struct Block {
    frame: Vec<u8>,
    base: u64,
}

impl Block {
    fn payload(&self) -> &[u8] {
        self.frame.get(FRAME_HEADER_LEN as usize..).unwrap_or(&[])
    }
}

/// Walks the entries of one block, checking order, fence and count.
struct Scan<'a> {
    c: Cursor<'a>,
    /// The restart table: offsets (into the entries) of every
    /// `RESTART_INTERVAL`-th entry, u32 little-endian each.
    restarts: &'a [u8],
    path: Vec<Segment>,
    /// Index in the block of the next entry.
    count: u32,
    meta: &'a BlockMeta,
    next_fence: Option<&'a KPath>,
}

impl<'a> Scan<'a> {
    fn new(
        payload: &'a [u8],
        base: u64,
        meta: &'a BlockMeta,
        next_fence: Option<&'a KPath>,
    ) -> Result<Scan<'a>, SnapshotError> {
        let len = payload.len();
        let trailer = len
            .checked_sub(4)
            .ok_or_else(|| SnapshotError::corrupt(base, "block too short for its restart table"))?;
        let r = le_u32(&payload[trailer..]) as usize;
        let want = (meta.entries as usize).div_ceil(RESTART_INTERVAL);
        if r != want {
            return Err(SnapshotError::corrupt(
                base + trailer as u64,
                format!(
                    "block has {r} restart points, its {} entries need {want}",
                    meta.entries
                ),
            ));
        }
        let table = trailer.checked_sub(r * 4).ok_or_else(|| {
            SnapshotError::corrupt(base + trailer as u64, "restart table larger than its block")
        })?;
        Ok(Scan {
            c: Cursor::new(&payload[..table], base),
            restarts: &payload[table..trailer],
            path: Vec::new(),
            count: 0,
            meta,
            next_fence,
        })
    }

    fn restart(&self, k: usize) -> usize {
        self.restarts
            .get(k * 4..k * 4 + 4)
            .map_or(usize::MAX, |b| le_u32(b) as usize)
    }

    /// Positions the scan at the last restart point whose path is `<= p`
    /// (binary search; decodes only the restart entries' paths).
    fn seek(&mut self, p: &[Segment]) -> Result<(), SnapshotError> {
        let (mut lo, mut hi) = (0usize, self.restarts.len() / 4);
        let mut probe = self.c.clone_at_start();
        let mut tmp = Vec::new();
        // Invariant: restart `lo` is <= p (restart 0 is the fence), `hi` is > p.
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            probe.set_pos(self.restart(mid))?;
            probe.path_delta(&mut tmp, false)?;
            if tmp.as_slice() <= p {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        if lo > 0 {
            self.c.set_pos(self.restart(lo))?;
            self.path.clear();
            self.count = (lo * RESTART_INTERVAL) as u32;
        }
        Ok(())
    }

    /// The next entry's file offset and body bytes; its path is `self.path`.
    fn next(&mut self) -> Result<Option<(u64, &'a [u8])>, SnapshotError> {
        if self.c.at_end() {
            if self.count != self.meta.entries {
                return Err(self.c.corrupt(format!(
                    "block holds {} entries, the index says {}",
                    self.count, self.meta.entries
                )));
            }
            if let Some(next) = self.next_fence
                && self.path.as_slice() >= next.segments()
            {
                return Err(self
                    .c
                    .corrupt("block's last path is not below the next fence"));
            }
            return Ok(None);
        }
        let at = self.c.offset();
        if self.count >= self.meta.entries {
            return Err(SnapshotError::corrupt(
                at,
                "more entries than the index says",
            ));
        }
        let i = self.count as usize;
        if i.is_multiple_of(RESTART_INTERVAL) && self.restart(i / RESTART_INTERVAL) != self.c.pos()
        {
            return Err(SnapshotError::corrupt(
                at,
                "restart table does not point at this entry",
            ));
        }
        self.c.path_delta(&mut self.path, self.count > 0)?;
        if self.count == 0 && self.path.as_slice() != self.meta.fence.segments() {
            return Err(SnapshotError::corrupt(
                at,
                "block's first path differs from its fence",
            ));
        }
        self.count += 1;
        let n = self.c.len_varint()?;
        let body = self.c.bytes(n)?;
        Ok(Some((at, body)))
    }
}

impl<S: ReadAt> SnapshotReader<S> {
    /// Opens a snapshot: verifies the header, footer and fence index (their
    /// magics, CRCs, and that every length and offset fits the file).
    pub fn open(src: S) -> Result<SnapshotReader<S>, SnapshotError> {
        let size = src.size().map_err(io_at(0))?;
        if size < HEADER_LEN + FOOTER_LEN {
            return Err(SnapshotError::corrupt(
                size,
                format!("truncated: {size} bytes is shorter than a header and footer"),
            ));
        }
        let mut hb = [0u8; HEADER_LEN as usize];
        src.read_exact_at(&mut hb, 0).map_err(io_at(0))?;
        let header = Header::decode(&hb)?;
        let footer_at = size - FOOTER_LEN;
        let mut fb = [0u8; FOOTER_LEN as usize];
        src.read_exact_at(&mut fb, footer_at)
            .map_err(io_at(footer_at))?;
        let footer = Footer::decode(&fb, footer_at)?;
        let index_end = footer
            .index_offset
            .checked_add(FRAME_HEADER_LEN + u64::from(footer.index_len));
        if footer.index_offset < HEADER_LEN || index_end != Some(footer_at) {
            return Err(SnapshotError::corrupt(
                footer_at,
                format!(
                    "fence index at {} (+{} bytes) does not end at the footer ({footer_at})",
                    footer.index_offset, footer.index_len
                ),
            ));
        }
        let mut frame = vec![0u8; (FRAME_HEADER_LEN + u64::from(footer.index_len)) as usize];
        src.read_exact_at(&mut frame, footer.index_offset)
            .map_err(io_at(footer.index_offset))?;
        check_frame(&frame, footer.index_offset, "fence index")?;
        let raw = decode_index(
            &frame[FRAME_HEADER_LEN as usize..],
            footer.index_offset + FRAME_HEADER_LEN,
        )?;
        let mut blocks = Vec::with_capacity(raw.len());
        let mut off = HEADER_LEN;
        let mut entries: u64 = 0;
        for (len, n, fence) in raw {
            let end = off
                .checked_add(FRAME_HEADER_LEN + u64::from(len))
                .filter(|&e| e <= footer.index_offset)
                .ok_or_else(|| {
                    SnapshotError::corrupt(off, "block runs past the start of the fence index")
                })?;
            blocks.push(BlockMeta {
                fence,
                offset: off,
                len,
                entries: n,
            });
            entries += u64::from(n);
            off = end;
        }
        if off != footer.index_offset {
            return Err(SnapshotError::corrupt(
                off,
                format!(
                    "blocks end at {off} but the fence index starts at {}",
                    footer.index_offset
                ),
            ));
        }
        if entries != footer.entry_count {
            return Err(SnapshotError::corrupt(
                footer_at + 16,
                format!(
                    "footer counts {} entries, the blocks {entries}",
                    footer.entry_count
                ),
            ));
        }
        Ok(SnapshotReader {
            src,
            size,
            commit: header.commit,
            entry_count: entries,
            blocks,
            decoded: AtomicU64::new(0),
        })
    }

    /// The commit this snapshot is at.
    pub fn commit(&self) -> u64 {
        self.commit
    }

    /// File size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Number of blocks.
    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// Number of entries.
    pub fn entry_count(&self) -> u64 {
        self.entry_count
    }

    /// How many blocks this reader has read and checksum-verified so far
    /// (every read, including repeated ones: there is no cache here).
    pub fn blocks_decoded(&self) -> u64 {
        self.decoded.load(Ordering::Relaxed)
    }

    fn load(&self, i: usize) -> Result<Block, SnapshotError> {
        let meta = self
            .blocks
            .get(i)
            .ok_or_else(|| SnapshotError::corrupt(0, "block index out of range"))?;
        let mut frame = vec![0u8; FRAME_HEADER_LEN as usize + meta.len as usize];
        self.src
            .read_exact_at(&mut frame, meta.offset)
            .map_err(io_at(meta.offset))?;
        check_frame(&frame, meta.offset, "block")?;
        self.decoded.fetch_add(1, Ordering::Relaxed);
        Ok(Block {
            frame,
            base: meta.offset + FRAME_HEADER_LEN,
        })
    }

    fn scan<'a>(&'a self, i: usize, block: &'a Block) -> Result<Scan<'a>, SnapshotError> {
        Scan::new(
            block.payload(),
            block.base,
            &self.blocks[i],
            self.blocks.get(i + 1).map(|m| &m.fence),
        )
    }

    /// Block `i`'s whole frame (verified), its first and last paths, and
    /// its paths with `depth` segments.
    pub(crate) fn raw_block(
        &self,
        i: usize,
        depth: usize,
    ) -> Result<(Vec<u8>, KPath, Vec<KPath>, KPath), SnapshotError> {
        let meta = self
            .blocks
            .get(i)
            .ok_or_else(|| SnapshotError::corrupt(0, "block index out of range"))?;
        let mut frame = vec![0u8; FRAME_HEADER_LEN as usize + meta.len as usize];
        self.src
            .read_exact_at(&mut frame, meta.offset)
            .map_err(io_at(meta.offset))?;
        check_frame(&frame, meta.offset, "block")?;
        self.decoded.fetch_add(1, Ordering::Relaxed);
        let mut scan = Scan::new(
            &frame[FRAME_HEADER_LEN as usize..],
            meta.offset + FRAME_HEADER_LEN,
            meta,
            self.blocks.get(i + 1).map(|m| &m.fence),
        )?;
        let mut heads = Vec::new();
        while scan.next()?.is_some() {
            if scan.path.len() == depth {
                heads.push(KPath::from_segments(scan.path.clone()));
            }
        }
        let last = KPath::from_segments(scan.path);
        Ok((frame, meta.fence.clone(), heads, last))
    }

    /// The whole document (`None` for the snapshot of the absent document).
    pub fn read_root(&self) -> Result<Option<Node>, SnapshotError> {
        self.read_path(&KPath::root())
    }

    /// The node at `path`, or `None` where it does not exist. Decodes only
    /// the blocks that hold the entries of `path`'s subtree (or the leaf
    /// containing it).
    pub fn read_path(&self, path: &KPath) -> Result<Option<Node>, SnapshotError> {
        let p = path.segments();
        let first = self.blocks.partition_point(|m| m.fence.segments() <= p);
        let Some(mut b) = first.checked_sub(1) else {
            return Ok(None);
        };
        let mut block = self.load(b)?;
        let mut scan = self.scan(b, &block)?;
        scan.seek(p)?;
        // The greatest entry <= p when it is a strict ancestor of p.
        let mut ancestor: Option<(u64, &[u8], usize)> = None;
        let (at, body) = loop {
            let Some((at, body)) = scan.next()? else {
                return self.inside_leaf(ancestor, p);
            };
            let here = scan.path.as_slice();
            if here == p {
                break (at, body);
            }
            if here > p {
                return self.inside_leaf(ancestor, p);
            }
            ancestor = p.starts_with(here).then_some((at, body, here.len()));
        };
        let mut asm = Assembler::new();
        asm.push(p, decode_body(body, at)?, at)?;
        loop {
            let next = scan.next()?;
            match next {
                Some((at, body)) => {
                    if !scan.path.starts_with(p) {
                        return asm.finish(at);
                    }
                    asm.push(&scan.path, decode_body(body, at)?, at)?;
                }
                None => {
                    let end = block.base + block.payload().len() as u64;
                    let more = self
                        .blocks
                        .get(b + 1)
                        .is_some_and(|m| m.fence.segments().starts_with(p));
                    if !more {
                        return asm.finish(end);
                    }
                    b += 1;
                    drop(scan);
                    block = self.load(b)?;
                    scan = self.scan(b, &block)?;
                }
            }
        }
    }

    /// The entry at `path` itself (without assembling its subtree), or the
    /// node found inside the leaf that contains `path`, or nothing.
    pub(crate) fn lookup(&self, path: &KPath) -> Result<Lookup, SnapshotError> {
        let p = path.segments();
        let first = self.blocks.partition_point(|m| m.fence.segments() <= p);
        let Some(b) = first.checked_sub(1) else {
            return Ok(Lookup::Absent);
        };
        let block = self.load(b)?;
        let mut scan = self.scan(b, &block)?;
        scan.seek(p)?;
        let mut ancestor: Option<(u64, &[u8], usize)> = None;
        while let Some((at, body)) = scan.next()? {
            let here = scan.path.as_slice();
            if here == p {
                return Ok(Lookup::Entry(decode_body(body, at)?));
            }
            if here > p {
                break;
            }
            ancestor = p.starts_with(here).then_some((at, body, here.len()));
        }
        Ok(match self.inside_leaf(ancestor, p)? {
            Some(node) => Lookup::InLeaf(node),
            None => Lookup::Absent,
        })
    }

    /// Resolves `p` inside the leaf entry that is its closest ancestor, if
    /// the greatest entry before `p` was such a leaf.
    fn inside_leaf(
        &self,
        ancestor: Option<(u64, &[u8], usize)>,
        p: &[Segment],
    ) -> Result<Option<Node>, SnapshotError> {
        let Some((at, body, depth)) = ancestor else {
            return Ok(None);
        };
        match decode_body(body, at)? {
            EntryBody::Leaf(node) => {
                let rest = KPath::from_segments(p[depth..].to_vec());
                Ok(node.get_path(&rest).cloned())
            }
            _ => Ok(None),
        }
    }

    /// Streams every entry in path order, one block in memory at a time.
    pub fn entries(&self) -> Entries<'_, S> {
        Entries {
            reader: self,
            next_block: 0,
            pending: Vec::new().into_iter(),
            failed: false,
        }
    }

    /// Decodes all entries of block `i`.
    fn block_entries(&self, i: usize) -> Result<Vec<Entry>, SnapshotError> {
        let block = self.load(i)?;
        let mut scan = self.scan(i, &block)?;
        // Every entry takes at least three bytes.
        let cap = (self.blocks[i].entries as usize).min(block.payload().len() / 3);
        let mut out = Vec::with_capacity(cap);
        while let Some((at, body)) = scan.next()? {
            out.push(Entry {
                path: KPath::from_segments(scan.path.clone()),
                body: decode_body(body, at)?,
            });
        }
        Ok(out)
    }
}

/// Iterator over a snapshot's entries ([`SnapshotReader::entries`]). After
/// an error it ends.
pub struct Entries<'r, S> {
    reader: &'r SnapshotReader<S>,
    next_block: usize,
    pending: std::vec::IntoIter<Entry>,
    failed: bool,
}

impl<S: ReadAt> Entries<'_, S> {
    /// Moves forward so that the next entry returned is the first one `>= q`
    /// (or a little before it), without decoding the blocks in between.
    pub(crate) fn skip_to(&mut self, q: &KPath) {
        let blocks = &self.reader.blocks;
        // The block that would hold q.
        let b = blocks
            .partition_point(|m| m.fence.segments() <= q.segments())
            .saturating_sub(1);
        if b >= self.next_block {
            self.next_block = b;
            self.pending = Vec::new().into_iter();
        }
    }

    /// When the iterator stands at a block boundary and the next block lies
    /// entirely inside `in_range` (checked on its fence and on the fence of
    /// the block after it: entries between them are in between) and holds at
    /// least `min_len` payload bytes: that block's number.
    pub(crate) fn whole_block_in(
        &self,
        in_range: impl Fn(&KPath) -> bool,
        min_len: usize,
    ) -> Option<usize> {
        if self.failed || self.pending.len() > 0 {
            return None;
        }
        let blocks = &self.reader.blocks;
        let i = self.next_block;
        let (this, next) = (blocks.get(i)?, blocks.get(i + 1)?);
        (this.len as usize >= min_len && in_range(&this.fence) && in_range(&next.fence))
            .then_some(i)
    }

    /// Reads block `i` (from [`Entries::whole_block_in`]) raw and moves past
    /// it: its frame, entry count, first path, paths of `depth` segments,
    /// last path.
    #[allow(clippy::type_complexity)]
    pub(crate) fn take_raw_block(
        &mut self,
        i: usize,
        depth: usize,
    ) -> Result<(Vec<u8>, u32, KPath, Vec<KPath>, KPath), SnapshotError> {
        let (frame, first, heads, last) = self.reader.raw_block(i, depth)?;
        self.next_block = i + 1;
        Ok((frame, self.reader.blocks[i].entries, first, heads, last))
    }
}

impl<S: ReadAt> Iterator for Entries<'_, S> {
    type Item = Result<Entry, SnapshotError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed {
                return None;
            }
            if let Some(e) = self.pending.next() {
                return Some(Ok(e));
            }
            if self.next_block >= self.reader.blocks.len() {
                return None;
            }
            let i = self.next_block;
            self.next_block += 1;
            match self.reader.block_entries(i) {
                Ok(v) => self.pending = v.into_iter(),
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
