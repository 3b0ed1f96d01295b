//! The index checkpoint format: a [`PathIndex`] saved to bytes, so a store
//! reopens without decoding and re-indexing every old record.
//!
//! This module owns the byte layout of `<dir>/index.ckpt` and the two pure
//! functions [`encode`] and [`decode`]. It never reads or writes files,
//! never decides when a checkpoint is written or whether one may be used
//! (the opener checks it against the log, see `logd_actors::recovery`), and
//! never panics or allocates from an untrusted length on damaged bytes:
//! every defect is a typed [`CheckpointError`] with the offset where it was
//! found.
//!
//! # Layout
//!
//! All integers are little-endian. A 48-byte header:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `LOGDIDX\0` |
//! | 8 | 4 | format version ([`VERSION`]) |
//! | 12 | 4 | `frame_crc`: the CRC stored in the log frame of commit `N` (0 when `N` is 0) |
//! | 16 | 8 | `commit`: the last commit the index knows (`N`) |
//! | 24 | 8 | `max_tx_id`: the largest transaction id in commits `<= N` |
//! | 32 | 8 | body length in bytes |
//! | 40 | 4 | CRC32 of the body |
//! | 44 | 4 | CRC32 of bytes 0..44 |
//!
//! then the body, in unsigned LEB128 varints (`z` marks a zigzag-encoded
//! signed delta):
//!
//! ```text
//! started u8 · base
//! names: count, then per name: byte length, UTF-8 bytes
//! nodes: count (root included); per node id: [id > 0: parent, seg kind u8, seg value]
//!        ends count, first end - base, then each next end - previous - 1
//! locations: count; per location: z(segment - previous segment),
//!            z(offset - end of the previous frame), frame length
//! ```
//!
//! The file's length must be exactly header + body.
//!
//! # Invariants checked by [`decode`]
//!
//! * header CRC, magic, version, body length and body CRC;
//! * names are distinct UTF-8; every node's parent has a smaller id (so the
//!   trie is a tree rooted at node 0); a field segment names an existing
//!   name; no two children of a node share a segment;
//! * every node's ends are strictly ascending and lie within the commits
//!   the index holds (`base ..= commit`);
//! * an index that never started holds nothing; a started one knows
//!   exactly the commits up to `commit` (`base + locations - 1 == commit`).
//!
//! Children lists, the edge and name maps, `subtree_last` (the newest end
//! at or below each node) and the end count are rebuilt, not stored: they
//! follow from the fields above, and rebuilding them leaves damaged bytes
//! nothing to contradict. A decoded index answers every query exactly as
//! the encoded one did.

use super::{NO_PARENT, PathIndex, PathNode, ROOT, Seg};
use crate::wal::Location;

/// Magic bytes at the start of a checkpoint.
pub const MAGIC: [u8; 8] = *b"LOGDIDX\0";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Bytes of the header.
pub const HEADER_LEN: usize = 48;

/// What went wrong decoding a checkpoint. `offset` is the byte offset in
/// the file where the defect was found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("index checkpoint error at offset {offset}: {kind}")]
pub struct CheckpointError {
    /// Byte offset in the file.
    pub offset: u64,
    /// What failed.
    pub kind: CheckpointErrorKind,
}

/// The kinds of [`CheckpointError`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointErrorKind {
    /// The bytes end before the header or body does.
    #[error("truncated: need {needed} bytes, {available} available")]
    Truncated {
        /// Bytes needed.
        needed: u64,
        /// Bytes present.
        available: u64,
    },
    /// Not a checkpoint (wrong magic).
    #[error("wrong magic")]
    BadMagic,
    /// A format version this build does not know.
    #[error("unsupported format version {version}")]
    Unsupported {
        /// The version field.
        version: u32,
    },
    /// A CRC does not match.
    #[error("{what} checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BadCrc {
        /// `header` or `body`.
        what: &'static str,
        /// The stored CRC.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// Bytes after the body.
    #[error("{extra} bytes after the body")]
    TrailingBytes {
        /// How many.
        extra: u64,
    },
    /// The body passed its CRC but breaks an invariant of the module docs.
    #[error("invalid body: {reason}")]
    Invalid {
        /// Which invariant.
        reason: String,
    },
}

/// The fixed-size header of a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointHeader {
    /// The last commit the index knows.
    pub commit: u64,
    /// The largest transaction id among the commits up to `commit`.
    pub max_tx_id: u64,
    /// The CRC stored in the log frame of `commit` (0 when `commit` is 0).
    pub frame_crc: u32,
    /// Body length in bytes.
    pub body_len: u64,
    /// CRC32 of the body.
    pub body_crc: u32,
}

/// A decoded checkpoint.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The last commit the index knows.
    pub commit: u64,
    /// The largest transaction id among the commits up to `commit`.
    pub max_tx_id: u64,
    /// The CRC stored in the log frame of `commit` (0 when `commit` is 0).
    pub frame_crc: u32,
    /// The index as of `commit`.
    pub index: PathIndex,
}

/// The last commit `index` knows (0 when it never started): the `commit`
/// a checkpoint of it carries.
pub fn commit_of(index: &PathIndex) -> u64 {
    index.next_commit().map_or(0, |n| n.saturating_sub(1))
}

/// Encodes `index` (as of its last known commit, [`commit_of`]) with the
/// largest transaction id of its commits and the CRC stored in the log
/// frame of that commit.
pub fn encode(index: &PathIndex, max_tx_id: u64, frame_crc: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(
        64 + index.names.iter().map(|n| n.len() + 2).sum::<usize>()
            + index.nodes.len() * 8
            + index.ends_total as usize * 2
            + index.locations.len() * 4,
    );
    body.push(u8::from(index.started));
    put(&mut body, index.base);
    put(&mut body, index.names.len() as u64);
    for name in &index.names {
        put(&mut body, name.len() as u64);
        body.extend_from_slice(name.as_bytes());
    }
    put(&mut body, index.nodes.len() as u64);
    for (id, node) in index.nodes.iter().enumerate() {
        if id != ROOT as usize {
            put(&mut body, u64::from(node.parent));
            let (kind, value) = match node.seg {
                Seg::Field(n) => (0u8, n),
                Seg::Index(i) => (1, i),
                Seg::Sparse(i) => (2, i),
            };
            body.push(kind);
            put(&mut body, u64::from(value));
        }
        put(&mut body, node.ends.len() as u64);
        let mut prev = None;
        for &e in &node.ends {
            let d = match prev {
                None => e.wrapping_sub(index.base),
                Some(p) => e.wrapping_sub(p).wrapping_sub(1),
            };
            put(&mut body, d);
            prev = Some(e);
        }
    }
    put(&mut body, index.locations.len() as u64);
    let (mut seg, mut end) = (0u64, 0u64);
    for loc in &index.locations {
        put(&mut body, zigzag(loc.segment.wrapping_sub(seg) as i64));
        if loc.segment != seg {
            end = 0;
        }
        put(&mut body, zigzag(loc.offset.wrapping_sub(end) as i64));
        put(&mut body, u64::from(loc.len));
        seg = loc.segment;
        end = loc.offset.wrapping_add(u64::from(loc.len));
    }
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&frame_crc.to_le_bytes());
    out.extend_from_slice(&commit_of(index).to_le_bytes());
    out.extend_from_slice(&max_tx_id.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    let hcrc = crc32fast::hash(&out[..44]);
    out.extend_from_slice(&hcrc.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn err(offset: u64, kind: CheckpointErrorKind) -> CheckpointError {
    CheckpointError { offset, kind }
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Decodes and checks the header alone (the first [`HEADER_LEN`] bytes).
pub fn decode_header(bytes: &[u8]) -> Result<CheckpointHeader, CheckpointError> {
    if bytes.len() < HEADER_LEN {
        return Err(err(
            0,
            CheckpointErrorKind::Truncated {
                needed: HEADER_LEN as u64,
                available: bytes.len() as u64,
            },
        ));
    }
    let stored = le32(bytes, 44);
    let computed = crc32fast::hash(&bytes[..44]);
    if stored != computed {
        return Err(err(
            44,
            CheckpointErrorKind::BadCrc {
                what: "header",
                stored,
                computed,
            },
        ));
    }
    if bytes[..8] != MAGIC {
        return Err(err(0, CheckpointErrorKind::BadMagic));
    }
    let version = le32(bytes, 8);
    if version != VERSION {
        return Err(err(8, CheckpointErrorKind::Unsupported { version }));
    }
    Ok(CheckpointHeader {
        commit: le64(bytes, 16),
        max_tx_id: le64(bytes, 24),
        frame_crc: le32(bytes, 12),
        body_len: le64(bytes, 32),
        body_crc: le32(bytes, 40),
    })
}

/// Decodes a whole checkpoint, checking every invariant of the module docs.
pub fn decode(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    let h = decode_header(bytes)?;
    let available = (bytes.len() - HEADER_LEN) as u64;
    if h.body_len > available {
        return Err(err(
            HEADER_LEN as u64,
            CheckpointErrorKind::Truncated {
                needed: HEADER_LEN as u64 + h.body_len,
                available: bytes.len() as u64,
            },
        ));
    }
    if h.body_len < available {
        return Err(err(
            HEADER_LEN as u64 + h.body_len,
            CheckpointErrorKind::TrailingBytes {
                extra: available - h.body_len,
            },
        ));
    }
    let body = &bytes[HEADER_LEN..];
    let computed = crc32fast::hash(body);
    if computed != h.body_crc {
        return Err(err(
            40,
            CheckpointErrorKind::BadCrc {
                what: "body",
                stored: h.body_crc,
                computed,
            },
        ));
    }
    let index = decode_body(body, h.commit)?;
    Ok(Checkpoint {
        commit: h.commit,
        max_tx_id: h.max_tx_id,
        frame_crc: h.frame_crc,
        index,
    })
}

/// A cursor over the body; offsets in errors are file offsets.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn offset(&self) -> u64 {
        (HEADER_LEN + self.pos) as u64
    }

    fn invalid(&self, reason: impl Into<String>) -> CheckpointError {
        err(
            self.offset(),
            CheckpointErrorKind::Invalid {
                reason: reason.into(),
            },
        )
    }

    fn truncated(&self, needed: usize) -> CheckpointError {
        err(
            self.offset(),
            CheckpointErrorKind::Truncated {
                needed: (HEADER_LEN + self.pos + needed) as u64,
                available: (HEADER_LEN + self.bytes.len()) as u64,
            },
        )
    }

    fn byte(&mut self) -> Result<u8, CheckpointError> {
        let b = *self.bytes.get(self.pos).ok_or_else(|| self.truncated(1))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, CheckpointError> {
        let start = self.pos;
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                self.pos = start;
                return Err(self.invalid("varint overflows 64 bits"));
            }
            v |= part << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        self.pos = start;
        Err(self.invalid("varint longer than 10 bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, CheckpointError> {
        let v = self.varint()?;
        u32::try_from(v).map_err(|_| self.invalid(format!("{what} {v} exceeds 32 bits")))
    }

    /// A count of items that each take at least one byte: never more than
    /// the bytes left (so no allocation is sized by an untrusted field).
    fn count(&mut self, what: &str) -> Result<usize, CheckpointError> {
        let n = self.varint()?;
        let left = (self.bytes.len() - self.pos) as u64;
        if n > left {
            return Err(self.invalid(format!("{what} count {n} exceeds the {left} bytes left")));
        }
        Ok(n as usize)
    }

    fn bytes(&mut self, n: usize) -> Result<&[u8], CheckpointError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(self.truncated(n));
        };
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

fn decode_body(body: &[u8], commit: u64) -> Result<PathIndex, CheckpointError> {
    let mut c = Cursor {
        bytes: body,
        pos: 0,
    };
    let started = match c.byte()? {
        0 => false,
        1 => true,
        b => return Err(c.invalid(format!("started flag {b}"))),
    };
    let base = c.varint()?;
    let mut index = PathIndex::new();
    index.started = started;
    index.base = base;

    let names = c.count("name")?;
    index.names.reserve(names);
    index.name_ids.reserve(names);
    for id in 0..names {
        let len = c.count("name byte")?;
        let at = c.offset();
        let raw = c.bytes(len)?;
        let name = std::str::from_utf8(raw).map_err(|_| {
            err(
                at,
                CheckpointErrorKind::Invalid {
                    reason: format!("name {id} is not UTF-8"),
                },
            )
        })?;
        let name: Box<str> = name.into();
        if index.name_ids.insert(name.clone(), id as u32).is_some() {
            return Err(c.invalid(format!("name {id} repeats an earlier name")));
        }
        index.names.push(name);
    }

    // The commits the index holds; checked against the ends below.
    let nodes = c.count("node")?;
    if nodes == 0 {
        return Err(c.invalid("no root node"));
    }
    index.nodes.reserve(nodes.saturating_sub(1));
    index.edges.reserve(nodes.saturating_sub(1));
    let mut ends_total = 0u64;
    for id in 0..nodes {
        let id = u32::try_from(id)
            .ok()
            .filter(|&i| i != NO_PARENT)
            .ok_or_else(|| c.invalid("too many nodes"))?;
        if id != ROOT {
            let parent = c.u32("parent")?;
            if parent >= id {
                return Err(c.invalid(format!(
                    "node {id} has parent {parent}, not an earlier node"
                )));
            }
            let kind = c.byte()?;
            let value = c.u32("segment")?;
            let seg = match kind {
                0 if (value as usize) < index.names.len() => Seg::Field(value),
                0 => {
                    return Err(c.invalid(format!(
                        "node {id} names field {value}, which does not exist"
                    )));
                }
                1 => Seg::Index(value),
                2 => Seg::Sparse(value),
                k => return Err(c.invalid(format!("node {id} has segment kind {k}"))),
            };
            if index.edges.insert((parent, seg), id).is_some() {
                return Err(c.invalid(format!("node {id} repeats a sibling's segment")));
            }
            index.nodes[parent as usize].children.push(id);
            index.nodes.push(PathNode {
                parent,
                seg,
                children: Vec::new(),
                ends: Vec::new(),
                subtree_last: 0,
            });
        }
        let n = c.count("end")?;
        let mut ends = Vec::with_capacity(n);
        let mut prev: Option<u64> = None;
        for _ in 0..n {
            let d = c.varint()?;
            let e = match prev {
                None => base.checked_add(d),
                Some(p) => p.checked_add(d).and_then(|x| x.checked_add(1)),
            };
            let e = e
                .filter(|&e| e >= base && e <= commit && e > 0)
                .ok_or_else(|| {
                    c.invalid(format!(
                        "node {id} ends at a commit outside {base}..={commit}"
                    ))
                })?;
            ends.push(e);
            prev = Some(e);
        }
        ends_total += n as u64;
        index.nodes[id as usize].ends = ends;
    }
    index.ends_total = ends_total;

    let locs = c.count("location")?;
    index.locations.reserve(locs);
    let (mut seg, mut end) = (0u64, 0u64);
    for _ in 0..locs {
        let ds = unzigzag(c.varint()?);
        let segment = seg.wrapping_add(ds as u64);
        if segment != seg {
            end = 0;
        }
        let doff = unzigzag(c.varint()?);
        let offset = end.wrapping_add(doff as u64);
        let len = c.u32("frame length")?;
        index.locations.push(Location {
            segment,
            offset,
            len,
        });
        seg = segment;
        end = offset.wrapping_add(u64::from(len));
    }
    if c.pos != body.len() {
        return Err(c.invalid("bytes left after the locations"));
    }

    // The numbering must agree with the header's commit.
    let known = if !started {
        (base == 0 && locs == 0 && ends_total == 0 && commit == 0).then_some(())
    } else {
        base.checked_add(locs as u64)
            .filter(|&next| next >= 1 && next - 1 == commit && base >= 1)
            .map(drop)
    };
    if known.is_none() {
        return Err(c.invalid(format!(
            "base {base} and {locs} locations do not end at commit {commit}"
        )));
    }

    // Rebuild subtree_last: children have larger ids than their parents.
    for id in (0..index.nodes.len()).rev() {
        let node = &index.nodes[id];
        let below = node
            .subtree_last
            .max(node.ends.last().copied().unwrap_or(0));
        let parent = node.parent;
        index.nodes[id].subtree_last = below;
        if parent != NO_PARENT {
            let p = &mut index.nodes[parent as usize];
            p.subtree_last = p.subtree_last.max(below);
        }
    }
    Ok(index)
}

fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kpath::{KPath, Segment};
    use proptest::prelude::*;

    /// Structural equality: same trie (ids, segments, names), ends,
    /// subtree_last, locations and numbering.
    fn assert_same(a: &PathIndex, b: &PathIndex) {
        assert_eq!(a.started, b.started);
        assert_eq!(a.base, b.base);
        assert_eq!(a.locations, b.locations);
        assert_eq!(a.names, b.names);
        assert_eq!(a.ends_total, b.ends_total);
        assert_eq!(a.nodes.len(), b.nodes.len());
        for (x, y) in a.nodes.iter().zip(&b.nodes) {
            assert_eq!(x.parent, y.parent);
            assert_eq!(x.seg, y.seg);
            assert_eq!(x.children, y.children);
            assert_eq!(x.ends, y.ends);
            assert_eq!(x.subtree_last, y.subtree_last);
        }
        assert_eq!(a.edges, b.edges);
        assert_eq!(a.name_ids, b.name_ids);
    }

    /// Answers of every query over `paths` and commits `0..=hi`.
    fn assert_same_answers(a: &PathIndex, b: &PathIndex, paths: &[KPath], hi: u64) {
        assert_eq!(a.last_commit(), b.last_commit());
        assert_eq!(a.first_commit(), b.first_commit());
        assert_eq!(a.next_commit(), b.next_commit());
        assert_eq!(a.complete_from(), b.complete_from());
        let (sa, sb) = (a.stats(), b.stats());
        assert_eq!(
            (sa.commits, sa.nodes, sa.names, sa.ends),
            (sb.commits, sb.nodes, sb.names, sb.ends)
        );
        for c in 0..=hi + 1 {
            assert_eq!(a.location(c), b.location(c));
        }
        for p in paths {
            for from in 0..=hi {
                for to in [from, from + 1, hi, hi + 1] {
                    assert_eq!(
                        a.affecting(p, from, to),
                        b.affecting(p, from, to),
                        "{p} {from} {to}"
                    );
                    assert_eq!(a.plan(p, from, to), b.plan(p, from, to), "{p} {from} {to}");
                }
            }
        }
    }

    fn seg() -> impl Strategy<Value = Segment> {
        prop_oneof![
            prop::sample::select(vec!["a", "b", "users", "x y", "é"])
                .prop_map(|s| Segment::Field(s.to_string())),
            (0u32..3).prop_map(Segment::Index),
            (0u32..3).prop_map(Segment::Sparse),
        ]
    }

    fn path() -> impl Strategy<Value = KPath> {
        prop::collection::vec(seg(), 0..4).prop_map(KPath::from_segments)
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(Vec<KPath>, u32),
        Forget(u64),
        Start(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (prop::collection::vec(path(), 0..3), 1u32..200).prop_map(|(p, l)| Op::Insert(p, l)),
            1 => (0u64..40).prop_map(Op::Forget),
            1 => (1u64..20).prop_map(Op::Start),
        ]
    }

    fn build(ops: &[Op]) -> PathIndex {
        let mut idx = PathIndex::new();
        let mut seg = 1u64;
        let mut offset = 24u64;
        for op in ops {
            match op {
                Op::Insert(paths, len) => {
                    let commit = idx.next_commit().unwrap_or(1);
                    if commit.is_multiple_of(7) {
                        seg = commit;
                        offset = 24;
                    }
                    let loc = Location {
                        segment: seg,
                        offset,
                        len: *len,
                    };
                    offset += u64::from(*len);
                    idx.insert(commit, paths, loc)
                        .unwrap_or_else(|e| panic!("{e}"));
                }
                Op::Forget(c) => idx.forget_before(*c),
                Op::Start(c) => idx.start_at(*c),
            }
        }
        idx
    }

    fn probe_paths() -> Vec<KPath> {
        [
            "",
            "a",
            "a.b",
            "a[0]",
            "a[0].b",
            "a{1}",
            "users",
            "users.a",
            "b[2].a",
            "\"x y\".é",
            "zz",
        ]
        .iter()
        .map(|s| KPath::parse(s).unwrap_or_else(|e| panic!("{e}")))
        .collect()
    }

    #[test]
    fn empty_and_started_indexes_round_trip() {
        let empty = PathIndex::new();
        let bytes = encode(&empty, 0, 0);
        let back = decode(&bytes).unwrap();
        assert_eq!(back.commit, 0);
        assert_same(&empty, &back.index);
        let mut started = PathIndex::new();
        started.start_at(9);
        let back = decode(&encode(&started, 3, 0)).unwrap();
        assert_eq!((back.commit, back.max_tx_id), (8, 3));
        assert_same(&started, &back.index);
    }

    #[test]
    fn header_fields_are_checked() {
        let mut idx = PathIndex::new();
        let loc = Location {
            segment: 1,
            offset: 24,
            len: 10,
        };
        idx.insert(1, &[KPath::parse("a").unwrap()], loc).unwrap();
        let good = encode(&idx, 5, 77);
        assert_eq!(decode_header(&good).unwrap().commit, 1);
        assert_eq!(decode_header(&good).unwrap().frame_crc, 77);
        let mut bad = good.clone();
        bad[0] ^= 1;
        assert!(matches!(
            decode(&bad).unwrap_err().kind,
            CheckpointErrorKind::BadCrc { what: "header", .. }
        ));
        // A header that is self-consistent but names another version.
        let mut other = good.clone();
        other[8] = 2;
        let crc = crc32fast::hash(&other[..44]);
        other[44..48].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            decode(&other).unwrap_err().kind,
            CheckpointErrorKind::Unsupported { version: 2 }
        ));
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            decode(&long).unwrap_err().kind,
            CheckpointErrorKind::TrailingBytes { extra: 1 }
        ));
    }

    #[test]
    fn a_self_consistent_body_that_breaks_an_invariant_is_refused() {
        // A node whose parent is itself, with valid CRCs.
        let mut body = vec![1u8];
        put(&mut body, 1); // base
        put(&mut body, 0); // names
        put(&mut body, 2); // nodes
        put(&mut body, 0); // root: no ends
        put(&mut body, 1); // node 1: parent 1
        body.push(1);
        put(&mut body, 0);
        put(&mut body, 0);
        put(&mut body, 0); // locations
        let out = framed(0, &body);
        assert!(matches!(
            decode(&out).unwrap_err().kind,
            CheckpointErrorKind::Invalid { .. }
        ));
    }

    /// `body` behind a valid header (magic, version, `commit`, no tx id or
    /// frame CRC) with good CRCs: only the body's own checks stand.
    fn framed(commit: u64, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&commit.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        let h = crc32fast::hash(&out[..44]);
        out.extend_from_slice(&h.to_le_bytes());
        out.extend_from_slice(body);
        out
    }

    proptest! {
        #[test]
        fn round_trip_answers_exactly(ops in prop::collection::vec(op(), 0..40), tx in any::<u64>()) {
            let idx = build(&ops);
            let bytes = encode(&idx, tx, 9);
            let back = decode(&bytes).unwrap_or_else(|e| panic!("{e}"));
            prop_assert_eq!(back.commit, commit_of(&idx));
            prop_assert_eq!(back.max_tx_id, tx);
            assert_same(&idx, &back.index);
            let hi = idx.next_commit().unwrap_or(1);
            assert_same_answers(&idx, &back.index, &probe_paths(), hi);
            // The decoded index keeps working like the original.
            let (mut a, mut b) = (idx.clone(), back.index);
            a.forget_before(hi / 2);
            b.forget_before(hi / 2);
            let next = a.next_commit().unwrap_or(1);
            let loc = Location { segment: 1, offset: 0, len: 9 };
            let p = KPath::parse("a.b").unwrap();
            prop_assert_eq!(a.insert(next, std::slice::from_ref(&p), loc), b.insert(next, std::slice::from_ref(&p), loc));
            assert_same_answers(&a, &b, &probe_paths(), next);
        }

        #[test]
        fn damaged_bytes_are_a_typed_error(
            ops in prop::collection::vec(op(), 1..30),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
            cut in any::<prop::sample::Index>(),
        ) {
            let idx = build(&ops);
            let bytes = encode(&idx, 1, 1);
            let mut flipped = bytes.clone();
            let i = at.index(flipped.len());
            flipped[i] ^= 1 << bit;
            prop_assert!(decode(&flipped).is_err(), "flip at {} accepted", i);
            let n = cut.index(bytes.len());
            prop_assert!(decode(&bytes[..n]).is_err(), "cut at {} accepted", n);
        }

        #[test]
        fn garbage_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..200), commit in 0u64..50) {
            // Valid header and CRCs around arbitrary bytes: only the body checks stand.
            let out = framed(commit, &body);
            if let Ok(c) = decode(&out) {
                // Whatever decodes must be usable without panics.
                let hi = c.index.next_commit().unwrap_or(1);
                for p in probe_paths() {
                    let _ = c.index.plan(&p, 0, hi.saturating_sub(1));
                    let _ = c.index.affecting(&p, 0, hi);
                }
            }
        }
    }
}
