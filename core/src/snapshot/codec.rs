//! Byte-level pieces of the snapshot format: varints, path deltas, header,
//! footer and frame headers. Decoders take untrusted bytes and never panic,
//! never index out of bounds and never allocate more than the bytes they are
//! given could describe.

use crate::kpath::{KPath, Segment};

use super::{FORMAT_VERSION, SnapshotError};

pub(crate) const HEADER_MAGIC: &[u8; 8] = b"LOGDSNAP";
pub(crate) const FOOTER_MAGIC: &[u8; 8] = b"LOGDSNPF";
pub(crate) const HEADER_LEN: u64 = 28;
pub(crate) const FOOTER_LEN: u64 = 36;
pub(crate) const FRAME_HEADER_LEN: u64 = 8;

const SEG_FIELD: u8 = 0;
const SEG_INDEX: u8 = 1;
const SEG_SPARSE: u8 = 2;
/// A keyed segment `(k)`. Snapshots store positional paths, so writers never
/// produce one; it is encoded so that encoding is total.
const SEG_KEY: u8 = 3;

/// Appends `v` as unsigned LEB128.
pub(crate) fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_segment(buf: &mut Vec<u8>, seg: &Segment) {
    match seg {
        Segment::Field(f) => {
            buf.push(SEG_FIELD);
            put_varint(buf, f.len() as u64);
            buf.extend_from_slice(f.as_bytes());
        }
        Segment::Index(i) => {
            buf.push(SEG_INDEX);
            put_varint(buf, u64::from(*i));
        }
        Segment::Sparse(i) => {
            buf.push(SEG_SPARSE);
            put_varint(buf, u64::from(*i));
        }
        Segment::Key(k) => {
            buf.push(SEG_KEY);
            put_varint(buf, k.len() as u64);
            buf.extend_from_slice(k.as_bytes());
        }
    }
}

/// Appends `path` as a delta against `prev` (the previous path in the same
/// sequence, or `&[]` at the start of one).
pub(crate) fn put_path_delta(buf: &mut Vec<u8>, prev: &[Segment], path: &[Segment]) {
    let shared = prev.iter().zip(path).take_while(|(a, b)| a == b).count();
    put_varint(buf, shared as u64);
    put_varint(buf, (path.len() - shared) as u64);
    for seg in &path[shared..] {
        put_segment(buf, seg);
    }
}

/// A reader over an untrusted byte slice that knows the file offset of its
/// first byte, so every error names an absolute offset.
pub(crate) struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    base: u64,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(data: &'a [u8], base: u64) -> Cursor<'a> {
        Cursor { data, pos: 0, base }
    }

    /// A cursor over the same data, at its start.
    pub(crate) fn clone_at_start(&self) -> Cursor<'a> {
        Cursor {
            data: self.data,
            pos: 0,
            base: self.base,
        }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Moves to `pos`, which must lie within the data.
    pub(crate) fn set_pos(&mut self, pos: usize) -> Result<(), SnapshotError> {
        if pos >= self.data.len() {
            return Err(self.corrupt(format!("offset {pos} lies outside its block")));
        }
        self.pos = pos;
        Ok(())
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub(crate) fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    pub(crate) fn corrupt(&self, reason: impl Into<String>) -> SnapshotError {
        SnapshotError::corrupt(self.offset(), reason)
    }

    fn byte(&mut self) -> Result<u8, SnapshotError> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or_else(|| self.corrupt("unexpected end of data"))?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        if n > self.remaining() {
            return Err(self.corrupt(format!(
                "length {n} runs past the end of its frame ({} bytes left)",
                self.remaining()
            )));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn varint(&mut self) -> Result<u64, SnapshotError> {
        let start = self.offset();
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                return Err(SnapshotError::corrupt(start, "varint overflows 64 bits"));
            }
            v |= part << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(SnapshotError::corrupt(start, "varint longer than 10 bytes"))
    }

    /// A varint that must be a length fitting in what is left of the data.
    pub(crate) fn len_varint(&mut self) -> Result<usize, SnapshotError> {
        let start = self.offset();
        let v = self.varint()?;
        usize::try_from(v)
            .ok()
            .filter(|&n| n <= self.remaining())
            .ok_or_else(|| {
                SnapshotError::corrupt(
                    start,
                    format!("length {v} exceeds the {} bytes left", self.remaining()),
                )
            })
    }

    fn u32_varint(&mut self) -> Result<u32, SnapshotError> {
        let start = self.offset();
        let v = self.varint()?;
        u32::try_from(v)
            .map_err(|_| SnapshotError::corrupt(start, format!("index {v} exceeds u32")))
    }

    /// One segment, borrowing a field name from the data.
    fn segment(&mut self) -> Result<SegRef<'a>, SnapshotError> {
        let start = self.offset();
        match self.byte()? {
            SEG_FIELD => {
                let n = self.len_varint()?;
                let bytes = self.bytes(n)?;
                let s = std::str::from_utf8(bytes)
                    .map_err(|_| SnapshotError::corrupt(start, "field name is not UTF-8"))?;
                Ok(SegRef::Field(s))
            }
            SEG_INDEX => Ok(SegRef::Index(self.u32_varint()?)),
            SEG_SPARSE => Ok(SegRef::Sparse(self.u32_varint()?)),
            SEG_KEY => {
                let n = self.len_varint()?;
                let bytes = self.bytes(n)?;
                let s = std::str::from_utf8(bytes)
                    .map_err(|_| SnapshotError::corrupt(start, "key is not UTF-8"))?;
                Ok(SegRef::Key(s))
            }
            other => Err(SnapshotError::corrupt(
                start,
                format!("unknown path segment type {other}"),
            )),
        }
    }

    /// Reads a path delta, replacing `path` (the previous path of the
    /// sequence, empty at its start) with the next one, reusing its
    /// allocations. Checks that the new path is strictly greater than the
    /// previous one when `has_prev`.
    pub(crate) fn path_delta(
        &mut self,
        path: &mut Vec<Segment>,
        has_prev: bool,
    ) -> Result<(), SnapshotError> {
        let start = self.offset();
        let shared = self.varint()?;
        let shared = usize::try_from(shared)
            .ok()
            .filter(|&s| s <= path.len() && (has_prev || s == 0))
            .ok_or_else(|| {
                SnapshotError::corrupt(start, format!("shared prefix {shared} is too long"))
            })?;
        let n = self.varint()?;
        // Every segment takes at least two bytes.
        if n > (self.remaining() / 2) as u64 {
            return Err(SnapshotError::corrupt(
                start,
                format!("{n} path segments cannot fit in {} bytes", self.remaining()),
            ));
        }
        let n = n as usize;
        // How the new path compares with the previous one so far (the
        // shared prefix is equal; a restart entry may share more than it says).
        let mut ord = if has_prev {
            std::cmp::Ordering::Equal
        } else {
            std::cmp::Ordering::Greater
        };
        for k in 0..n {
            let seg = self.segment()?;
            let at = shared + k;
            if ord == std::cmp::Ordering::Equal {
                ord = path
                    .get(at)
                    .map_or(std::cmp::Ordering::Greater, |old| seg.cmp_owned(old));
            }
            if ord == std::cmp::Ordering::Less {
                return Err(SnapshotError::corrupt(start, "path does not increase"));
            }
            match path.get_mut(at) {
                Some(slot) => seg.assign(slot),
                None => path.push(seg.to_owned()),
            }
        }
        if ord != std::cmp::Ordering::Greater {
            return Err(SnapshotError::corrupt(start, "path does not increase"));
        }
        path.truncate(shared + n);
        Ok(())
    }
}

/// A decoded path segment that borrows its field name.
#[derive(Clone, Copy)]
enum SegRef<'a> {
    Field(&'a str),
    Index(u32),
    Sparse(u32),
    Key(&'a str),
}

impl SegRef<'_> {
    fn to_owned(self) -> Segment {
        match self {
            SegRef::Field(f) => Segment::Field(f.to_owned()),
            SegRef::Index(i) => Segment::Index(i),
            SegRef::Sparse(i) => Segment::Sparse(i),
            SegRef::Key(k) => Segment::Key(k.to_owned()),
        }
    }

    /// Overwrites `slot`, reusing its string buffer when both are fields.
    fn assign(self, slot: &mut Segment) {
        match (slot, self) {
            (Segment::Field(s), SegRef::Field(f)) => {
                s.clear();
                s.push_str(f);
            }
            (slot, seg) => *slot = seg.to_owned(),
        }
    }

    /// The same order as `Segment`'s: fields (bytewise) < `[i]` < `{i}` < `(k)`.
    fn cmp_owned(self, other: &Segment) -> std::cmp::Ordering {
        match (self, other) {
            (SegRef::Field(a), Segment::Field(b)) | (SegRef::Key(a), Segment::Key(b)) => {
                a.cmp(b.as_str())
            }
            (SegRef::Index(a), Segment::Index(b)) | (SegRef::Sparse(a), Segment::Sparse(b)) => {
                a.cmp(b)
            }
            (a, b) => {
                let ra = match a {
                    SegRef::Field(_) => 0,
                    SegRef::Index(_) => 1,
                    SegRef::Sparse(_) => 2,
                    SegRef::Key(_) => 3,
                };
                let rb = match b {
                    Segment::Field(_) => 0,
                    Segment::Index(_) => 1,
                    Segment::Sparse(_) => 2,
                    Segment::Key(_) => 3,
                };
                ra.cmp(&rb)
            }
        }
    }
}

/// The fixed-size file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) commit: u64,
}

impl Header {
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut b = [0u8; HEADER_LEN as usize];
        b[0..8].copy_from_slice(HEADER_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        // 12..16: flags, zero.
        b[16..24].copy_from_slice(&self.commit.to_le_bytes());
        let crc = crc32fast::hash(&b[0..24]);
        b[24..28].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8; HEADER_LEN as usize]) -> Result<Header, SnapshotError> {
        if &b[0..8] != HEADER_MAGIC {
            return Err(SnapshotError::corrupt(0, "not a logd snapshot (bad magic)"));
        }
        if crc32fast::hash(&b[0..24]) != le_u32(&b[24..28]) {
            return Err(SnapshotError::corrupt(24, "header checksum mismatch"));
        }
        let version = le_u32(&b[8..12]);
        if version != FORMAT_VERSION {
            return Err(SnapshotError::Version { found: version });
        }
        if le_u32(&b[12..16]) != 0 {
            return Err(SnapshotError::corrupt(12, "unknown header flags"));
        }
        Ok(Header {
            commit: le_u64(&b[16..24]),
        })
    }
}

/// The fixed-size file footer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Footer {
    pub(crate) index_offset: u64,
    pub(crate) index_len: u32,
    pub(crate) entry_count: u64,
}

impl Footer {
    pub(crate) fn encode(&self) -> [u8; FOOTER_LEN as usize] {
        let mut b = [0u8; FOOTER_LEN as usize];
        b[0..8].copy_from_slice(&self.index_offset.to_le_bytes());
        b[8..12].copy_from_slice(&self.index_len.to_le_bytes());
        // 12..16 reserved, zero.
        b[16..24].copy_from_slice(&self.entry_count.to_le_bytes());
        let crc = crc32fast::hash(&b[0..24]);
        b[24..28].copy_from_slice(&crc.to_le_bytes());
        b[28..36].copy_from_slice(FOOTER_MAGIC);
        b
    }

    /// Decodes the footer found at file offset `at`.
    pub(crate) fn decode(b: &[u8; FOOTER_LEN as usize], at: u64) -> Result<Footer, SnapshotError> {
        if &b[28..36] != FOOTER_MAGIC {
            return Err(SnapshotError::corrupt(
                at + 28,
                "bad footer magic (truncated or not a snapshot)",
            ));
        }
        if crc32fast::hash(&b[0..24]) != le_u32(&b[24..28]) {
            return Err(SnapshotError::corrupt(at + 24, "footer checksum mismatch"));
        }
        if le_u32(&b[12..16]) != 0 {
            return Err(SnapshotError::corrupt(
                at + 12,
                "reserved footer bytes are not zero",
            ));
        }
        Ok(Footer {
            index_offset: le_u64(&b[0..8]),
            index_len: le_u32(&b[8..12]),
            entry_count: le_u64(&b[16..24]),
        })
    }
}

/// The 8-byte header of a frame (`len`, `crc`) for `payload`.
pub(crate) fn frame_header(payload: &[u8]) -> Result<[u8; 8], u64> {
    let len = u32::try_from(payload.len()).map_err(|_| payload.len() as u64)?;
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(payload);
    let mut b = [0u8; 8];
    b[0..4].copy_from_slice(&len.to_le_bytes());
    b[4..8].copy_from_slice(&h.finalize().to_le_bytes());
    Ok(b)
}

/// Checks a whole frame read from file offset `at` against the length the
/// index (or footer) expects; returns the payload.
pub(crate) fn check_frame(frame: &[u8], at: u64, what: &str) -> Result<(), SnapshotError> {
    let (head, payload) = frame.split_at_checked(8).ok_or_else(|| {
        SnapshotError::corrupt(at, format!("{what} frame shorter than its header"))
    })?;
    let len = le_u32(&head[0..4]);
    if u64::from(len) != payload.len() as u64 {
        return Err(SnapshotError::corrupt(
            at,
            format!(
                "{what} frame length {len} differs from the {} bytes the index gives it",
                payload.len()
            ),
        ));
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&head[0..4]);
    h.update(payload);
    if h.finalize() != le_u32(&head[4..8]) {
        return Err(SnapshotError::corrupt(
            at + 4,
            format!("{what} checksum mismatch"),
        ));
    }
    Ok(())
}

pub(crate) fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Reads a fence-index payload: `(block_len, entry_count, fence)` per block.
pub(crate) fn decode_index(
    payload: &[u8],
    base: u64,
) -> Result<Vec<(u32, u32, KPath)>, SnapshotError> {
    let mut c = Cursor::new(payload, base);
    let count_at = c.offset();
    let count = c.varint()?;
    // Each block's index record takes at least four bytes.
    if count > (c.remaining() / 4) as u64 {
        return Err(SnapshotError::corrupt(
            count_at,
            format!(
                "{count} blocks cannot fit in a {}-byte index",
                payload.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(count as usize);
    let mut path = Vec::new();
    for i in 0..count {
        let at = c.offset();
        let len = c.varint()?;
        let len = u32::try_from(len)
            .map_err(|_| SnapshotError::corrupt(at, format!("block length {len} exceeds u32")))?;
        let at = c.offset();
        let n = c.varint()?;
        let n = u32::try_from(n)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| SnapshotError::corrupt(at, format!("bad block entry count {n}")))?;
        let at = c.offset();
        c.path_delta(&mut path, i > 0)?;
        if i == 0 && !path.is_empty() {
            return Err(SnapshotError::corrupt(
                at,
                "the first fence is not the root",
            ));
        }
        out.push((len, n, KPath::from_segments(path.clone())));
    }
    if !c.at_end() {
        return Err(c.corrupt("trailing bytes after the fence index"));
    }
    Ok(out)
}

/// Encodes a fence-index payload.
pub(crate) fn encode_index(blocks: &[(u32, u32, KPath)]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(blocks.len() * 16 + 8);
    put_varint(&mut buf, blocks.len() as u64);
    let mut prev: &[Segment] = &[];
    for (len, n, fence) in blocks {
        put_varint(&mut buf, u64::from(*len));
        put_varint(&mut buf, u64::from(*n));
        put_path_delta(&mut buf, prev, fence.segments());
        prev = fence.segments();
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip_and_overflow() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut c = Cursor::new(&b, 0);
            assert_eq!(c.varint().ok(), Some(v));
            assert!(c.at_end());
        }
        let over = [0xffu8; 10];
        assert!(Cursor::new(&over, 0).varint().is_err());
        let mut b = vec![0xff; 9];
        b.push(0x02);
        assert!(Cursor::new(&b, 0).varint().is_err());
    }

    #[test]
    fn borrowed_segment_order_matches_segment_order() {
        let segs = [
            Segment::Field(String::new()),
            Segment::Field("a".into()),
            Segment::Field("ab".into()),
            Segment::Field("b".into()),
            Segment::Field("é".into()),
            Segment::Index(0),
            Segment::Index(7),
            Segment::Index(u32::MAX),
            Segment::Sparse(0),
            Segment::Sparse(3),
            Segment::Key(String::new()),
            Segment::Key("jane".into()),
        ];
        for a in &segs {
            let mut buf = Vec::new();
            put_segment(&mut buf, a);
            let r = Cursor::new(&buf, 0).segment().ok();
            for b in &segs {
                assert_eq!(r.map(|r| r.cmp_owned(b)), Some(a.cmp(b)), "{a:?} vs {b:?}");
            }
            let mut slot = Segment::Field("zzz".into());
            if let Some(r) = r {
                r.assign(&mut slot);
            }
            assert_eq!(&slot, a);
        }
    }

    #[test]
    fn header_footer_round_trip() {
        let h = Header { commit: 42 };
        assert_eq!(Header::decode(&h.encode()).ok(), Some(h));
        let f = Footer {
            index_offset: 99,
            index_len: 7,
            entry_count: 3,
        };
        assert_eq!(Footer::decode(&f.encode(), 0).ok(), Some(f));
    }
}
